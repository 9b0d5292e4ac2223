"""Many models in one program: seeds and sweeps of beta, lr or free bits trained together.

A sweep's members share the model and differ in their seed and in one scalar setting of the objective or
optimizer. They train in one process on one device, the training data in device memory once, in one of
two schedules (each a `loop.Trainer` for the epoch loop a single run uses too):

- step-major (`StepMajor`): `jax.vmap` over whole training states (Equinox's ensembling trick) makes one
  compiled epoch train every member step by step together: the matrix products grow by the number of
  members and the fixed costs of a step are paid once;
- member-major (`MemberMajor`): each member's whole epoch in turn, by one member epoch, so that the
  member's state stays in the cache while the stacked states of many would stream from memory.

`schedule` chooses (`sweep_schedule`): step-major on an accelerator, and on a CPU where the states are small
and fit the cache together; member-major elsewhere, and for a model that loops on the host (`looping`).
Each member is an ordinary run folder OUT/NAME (seed-3, beta-0.5, beta-0.5-seed-1) whose
numbers are those of `jaxvae train` with that seed and setting alone, up to the order of float sums, in
either schedule; OUT/sweep.json lists the members.

Members keep their own epoch count, so each stops on its own: a member that diverges keeps its last
good checkpoint and is frozen while the others go on; so is one that stops early or has trained its
epochs. A resumed sweep starts every member from its own latest checkpoint.
"""

import dataclasses
import functools
import itertools
import json
import shutil
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import Mesh
from tqdm.auto import tqdm

from jaxvae import board, checkpoint, loop, looping, memory, model_file, parallel, plots
from jaxvae.builder import build_binarization, build_objective, build_optimizer
from jaxvae.config import HardwareConfig, RunConfig, TrainConfig
from jaxvae.data import Dataset
from jaxvae.errors import Diverged, InputError
from jaxvae.keys import Run, run_key
from jaxvae.model import LatentModel
from jaxvae.runs import (
    CHECKPOINTS,
    CONFIG,
    FIGURES,
    METRICS,
    epoch_checkpoints,
    nothing_to_train,
    read_metrics,
)
from jaxvae.sweep_schedule import steps_together
from jaxvae.train import (
    UNOPTIMIZED,
    M2Members,
    TrainState,
    check_data,
    condition_rows,
    epoch_key,
    epoch_program,
    held_out_elbo,
    initial_state,
    make_step,
    resume_state,
    state_shapes,
)

SWEEP = "sweep.json"
CURVES = "training_curves.png"
SETTINGS = {"beta": "beta", "lr": "lr", "free-bits": "free_bits", "ciwae-beta": "ciwae_beta"}  # NAME -> field


def member_configs(config: RunConfig, seeds: int, sweep: tuple[str, tuple[float, ...]] | None) -> dict[str, RunConfig]:
    """name -> config of every member: seeds config.train.seed to seed + seeds - 1, times the values of
    `sweep` = (NAME, values), NAME one of SETTINGS; every pair when both are given."""
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    setting, values = sweep or (None, (None,))
    if setting is not None and setting not in SETTINGS:
        raise InputError(f"--sweep can vary {', '.join(SETTINGS)}, not {setting}")
    configs = {}
    for value, seed in itertools.product(values, range(config.train.seed, config.train.seed + seeds)):
        parts = ([f"{setting}-{value:g}"] if setting else []) + ([f"seed-{seed}"] if seeds > 1 or not setting else [])
        changes = {"seed": seed} | ({SETTINGS[setting]: value} if setting else {})
        configs["-".join(parts)] = dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))
    if len(configs) < len(values) * seeds:
        given = ", ".join(f"{v:g}" for v in values)
        raise InputError(f"--sweep {setting} lists a value twice (to 6 digits, as members are named): {given}")
    return configs


def is_sweep(out: Path) -> bool:
    """Whether `out` is a sweep folder (it holds sweep.json), not a single run's."""
    return (Path(out) / SWEEP).is_file()


def read_members(out: Path) -> list[str]:
    """The member names of the sweep in `out`, from its sweep.json."""
    try:
        return [m["name"] for m in json.loads((Path(out) / SWEEP).read_text())["members"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{Path(out) / SWEEP} is not a valid sweep file: {e}") from None


def _describe(name: str, config: RunConfig) -> dict:
    t = config.train
    return {"name": name, "seed": t.seed} | {field: getattr(t, field) for field in SETTINGS.values()}


def memory_needed(configs: dict[str, RunConfig], data: Dataset) -> tuple[int, int]:
    """(bytes every sweep needs, bytes each member adds) on the device: the data (each example with its condition,
    if any), stored once (once per member when static binarization differs between seeds), and per member its
    training state twice (the state, and the gradients and updates of a step)."""
    first = next(iter(configs.values()))
    state, m = state_bytes(first), first.model.condition_dim
    train, test = (4 * len(x) * (x.shape[1] + m) for x in (data.x_train, data.x_test))
    if _per_member_data(configs):
        return test, 2 * state + train  # the validation examples are part of x_train's count
    return test + train, 2 * state


def _per_member_data(configs: dict[str, RunConfig]) -> bool:
    """Whether the members train on different data: static binarization with different seeds."""
    trains = [c.train for c in configs.values()]
    return build_binarization(trains[0]).seeded and len({t.seed for t in trains}) > 1


def check(configs: dict[str, RunConfig], data: Dataset, device_budget: int | None = None) -> None:
    """Raise InputError where the members cannot train together: data, processes, device memory."""
    if jax.process_count() > 1:
        raise InputError("--seeds and --sweep train in one process: leave out --coordinator")
    first = next(iter(configs.values()))
    shared = {name: getattr(first.train, name) for name in ("seed", "label_seed", *SETTINGS.values())}
    for config in configs.values():
        if (config.model, dataclasses.replace(config.train, **shared)) != (first.model, first.train):
            *others, last = SETTINGS.values()
            raise InputError(f"the members of a sweep may differ only in their seed, {', '.join(others)} and {last}")
    for config in configs.values():
        check_data(data, config)
    budget = parallel.device_budget() if device_budget is None else device_budget
    shared, each = memory_needed(configs, data)
    n = len(configs)
    if shared + n * each > budget:
        fits = max(0, (budget - shared) // each)
        raise InputError(
            f"{n} members need {(shared + n * each) / 2**20:.1f} MiB of device memory, the budget is "
            f"{budget / 2**20:.1f} MiB (--device-memory-budget): at most {fits} members fit"
        )


def member_step(static, config: TrainConfig):
    """One member's training step, uncompiled: `train.make_step`'s step with the learning rate traced, passed
    after the objective (the optimizer's, `builder.build_optimizer`)."""

    def step(params, opt_state, x, weights, key, objective, lr):
        return make_step(static, build_optimizer(config, lr), config)(params, opt_state, x, weights, key, objective)

    return step


def member_epoch(static, config: TrainConfig):
    """One member's epoch, uncompiled: epoch(params, opt_state, x (n, d), key, objective, lr) -> (params,
    opt_state, mean bounds, all finite), the learning rate traced (`member_step`), its loops compiled."""
    return functools.partial(epoch_program(member_step(static, config), config.batch_size), looping.COMPILED)


def make_sweep_epoch(static, config: TrainConfig, data_axis: int | None, key_axis: int | None):
    """One epoch of every member as one compiled program: `jax.vmap` of the epoch over stacked states.

    Returns epoch(params, opt_state, x, keys (N, 2), objectives (stacked: scalars (N,)), lr (N,), active (N,))
    -> (params, opt_state, mean bounds (dicts of (N,)), finite (N,)); x is (n, d), or (N, n, d) with
    `data_axis` 0. A member that is not active, or whose epoch was not finite, keeps its state.
    With `key_axis` None, every member gets the same key: the same data order, one gather per batch.
    """
    epoch = member_epoch(static, config)

    def masked_epoch(params, opt_state, x, key, objective, lr, active):
        new_params, new_opt_state, means, finite = epoch(params, opt_state, x, key, objective, lr)
        keep = active & finite
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(keep, new, old), (new_params, new_opt_state), (params, opt_state)
        )
        return params, opt_state, means, finite

    in_axes = (0, 0, data_axis, key_axis, 0, 0, 0)
    return jax.jit(jax.vmap(masked_epoch, in_axes=in_axes), donate_argnums=(0, 1))


def stack(trees: list):
    """The trees (of one structure) with each array stacked along a new leading axis, one row per tree."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def state_bytes(config: RunConfig) -> int:
    """Bytes of one member's training state: its parameters and Adam's moments (`memory.train_state_bytes`)."""
    return memory.train_state_bytes(config)


def schedule(configs: dict[str, RunConfig]) -> type:
    """The members' schedule: `StepMajor` where `sweep_schedule.steps_together` holds for their states and
    the model loops compiled (`looping.for_model`; a model that loops on the host loops member by member),
    else `MemberMajor`; M2's members (a run with labels) one after another, `train.M2Members`."""
    config = next(iter(configs.values()))
    if config.train.labels:
        return M2Members
    compiled = looping.for_model(state_shapes(config).vae) is looping.COMPILED
    return StepMajor if compiled and steps_together(state_bytes(config), len(configs)) else MemberMajor


def initial_states(configs: dict[str, RunConfig]) -> TrainState:
    """The members' initial states stacked along a leading axis: one compiled program, the same values
    as `train.init_state` of each member."""
    config = next(iter(configs.values()))
    keys = jnp.stack([run_key(c.train.seed, Run.INIT) for c in configs.values()])
    initial = jax.jit(jax.vmap(functools.partial(initial_state, config, model_file.builder(config.model))))
    return initial.lower(keys).compile(UNOPTIMIZED)(keys)


def fit_sweep(
    configs: dict[str, RunConfig],
    data: Dataset,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    device_budget: int | None = None,
    trainer: type | None = None,
) -> dict[str, str]:
    """Train every member together, each into its run folder out/NAME; returns name -> how it ended
    ("finished", "stopped early at epoch E", "diverged in epoch E"). `trainer`: the schedule, `StepMajor`
    or `MemberMajor` (default: the one `schedule` chooses).

    With `resume`, each member continues from its own latest checkpoint; when no member has epochs left
    (`runs.nothing_to_train`), nothing is written and each member's reason is returned. A first Ctrl-C finishes the
    round, saves every member's checkpoint and raises KeyboardInterrupt; `Diverged` only when every
    member diverged. Writes out/sweep.json, and at the end each member's figures and out/training_curves.png.
    """
    out = Path(out)
    check(configs, data, device_budget)
    if resume:
        reasons = {
            name: nothing_to_train(config.train, out / name, build_objective(config.train).bound_key)
            for name, config in configs.items()
        }
        if all(reasons.values()):
            return {name: reason for name, reason in reasons.items() if reason}
    hardware = HardwareConfig(**parallel.describe(Mesh(np.asarray(jax.devices()[:1]), (parallel.DATA_AXIS,))))
    configs = {
        name: dataclasses.replace(config, model=model_file.relative_to(config.model, out / name), hardware=hardware)
        for name, config in configs.items()
    }
    created = not out.exists()
    try:
        try:
            for name, config in configs.items():
                (out / name).mkdir(parents=True, exist_ok=True)
                if not resume:
                    config.save(out / name / CONFIG)
                    checkpoint.write_atomically(out / name / METRICS, b"")
            described = {"members": [_describe(name, config) for name, config in configs.items()]}
            checkpoint.write_atomically(out / SWEEP, (json.dumps(described, indent=2) + "\n").encode())
        except OSError as e:
            raise InputError(f"cannot write the sweep folder {out}: {e.strerror}") from None
        if resume:
            state = stack([resume_state(config, out / name) for name, config in configs.items()])
        else:
            state = initial_states(configs)
        first = next(iter(configs.values()))
        training, x_test, x_valid = loop.held_out(condition_rows(data, first), first.train)
        epochs = (trainer or schedule(configs))(state, list(configs.values()), training_sets(configs, training))
        members = [
            loop.Member.resumed(name, config, out / name, int(done))
            for (name, config), done in zip(configs.items(), np.asarray(state.epoch), strict=True)
        ]
        ended = loop.train(members, epochs, x_test, x_valid, _report_diverged, progress=progress)
        if all(how.startswith("diverged") for how in ended.values()):
            diverged = "; ".join(f"{name} {how}" for name, how in ended.items())
            raise Diverged(f"every member diverged: {diverged} (try a smaller --lr)")
    except BaseException:
        if created and not any(out.glob(f"*/{CHECKPOINTS}/*.eqx")):
            shutil.rmtree(out, ignore_errors=True)
        raise
    trained = [name for name in configs if epoch_checkpoints(out / name)]
    for name in trained:
        vae = checkpoint.restore(epoch_checkpoints(out / name)[-1], state_shapes(configs[name])).vae
        metrics = read_metrics(out / name)
        figures = plots.write_figures(vae, data, configs[name], out / name / FIGURES, metrics)
        if configs[name].train.tensorboard:
            board.add_figures(out / name, figures, metrics[-1]["epoch"])
    plots.training_curves({name: read_metrics(out / name) for name in trained}, out / CURVES)
    return ended


def _report_diverged(member: loop.Member, epoch: int):
    found = epoch_checkpoints(member.run_dir)
    kept = f"; its last good checkpoint is {found[-1]}" if found else ""
    tqdm.write(f"jaxvae: {member.name}: non-finite loss in epoch {epoch}: it stopped{kept}", file=sys.stderr)


def training_sets(configs: dict[str, RunConfig], data: Dataset) -> list[Array]:
    """Each member's training array (n, d) on the device: one array shared by all, unless static
    binarization with different seeds gives each member its own (`loop.training_examples`)."""
    trains = [c.train for c in configs.values()]
    if _per_member_data(configs):
        return [jnp.asarray(loop.training_examples(data, t)) for t in trains]
    return [jnp.asarray(loop.training_examples(data, trains[0]), jnp.float32)] * len(trains)


def _epoch_inputs(configs: list[TrainConfig], objectives: list, plan: loop.Plan) -> tuple[list, list]:
    """Each member's epoch key and objective at its KL weight; a frozen member's (None in `plan`) those of
    epoch 0 at weight 1, which its masked epoch ignores."""
    keys, weighted = [], []
    for t, objective, planned in zip(configs, objectives, plan, strict=True):
        epoch, beta = planned or (0, 1.0)
        keys.append(epoch_key(t.seed, epoch))
        weighted.append(objective.with_kl_weight(jnp.float32(beta)))
    return keys, weighted


def _floats(means: dict, finite) -> tuple[dict[str, float], bool]:
    return {k: float(v) for k, v in means.items()}, bool(finite)


def shared_parts(vae: LatentModel) -> tuple:
    """(params, static) of the members' stacked models: the float arrays keep their leading member axis;
    the other arrays (a flow's masks), fixed by the sizes every member shares, are the first member's."""
    params, static = eqx.partition(vae, eqx.is_inexact_array)
    return params, jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, static)


class StepMajor(loop.Trainer):
    """The members step by step together (a `loop.Trainer`): their states stacked along a leading axis,
    every member's epoch one `jax.vmap`ped program (`make_sweep_epoch`), evaluated by a vmapped
    `mean_elbo`. The products grow by the number of members and each step's fixed costs are paid once."""

    def __init__(self, state: TrainState, configs: list[RunConfig], xs: list[Array]):
        self.configs = [c.train for c in configs]
        self.objectives = [build_objective(c.train) for c in configs]
        self.lr = jnp.asarray([t.lr for t in self.configs], jnp.float32)
        self.params, self.static = shared_parts(state.vae)
        self.opt_state, self.examples = state.opt_state, xs[0].shape[0]
        shared = all(x is xs[0] for x in xs)
        self.x, data_axis = (xs[0], None) if shared else (jnp.stack(xs), 0)
        tc = self.configs[0]
        self.epochs = {axis: make_sweep_epoch(self.static, tc, data_axis, axis) for axis in (None, 0)}
        vmapped = jax.vmap(lambda p, k, x: held_out_elbo(eqx.combine(p, self.static), x, k), in_axes=(0, 0, None))
        self.mean_elbos = jax.jit(vmapped)
        self.host = None  # a host copy of (params, opt_state), made once per epoch for the checkpoints

    def epoch(self, plan):
        keys, objectives = _epoch_inputs(self.configs, self.objectives, plan)
        active = [p is not None for p in plan]
        # one seed, its active members at one epoch: one key (data order) for all, one gather per batch
        one_order = len({t.seed for t in self.configs}) == 1 and len({p[0] for p in plan if p is not None}) == 1
        key_axis = None if one_order else 0
        key = keys[active.index(True)] if key_axis is None else jnp.stack(keys)
        self.params, self.opt_state, means, finite = self.epochs[key_axis](
            self.params, self.opt_state, self.x, key, stack(objectives), self.lr, jnp.asarray(active)
        )
        self.host = None
        means, finite = jax.device_get((means, finite))
        return [_floats({k: v[i] for k, v in means.items()}, finite[i]) if a else None for i, a in enumerate(active)]

    def evaluate(self, x, keys, active):
        means = jax.device_get(self.mean_elbos(self.params, jnp.stack(keys), x))
        return [{k: float(v[i]) for k, v in means.items()} if a else None for i, a in enumerate(active)]

    def model(self, i: int) -> LatentModel:
        return eqx.combine(jax.tree.map(lambda a: a[i], self.params), self.static)

    def state(self, i: int, epoch: int) -> TrainState:
        if self.host is None:
            self.host = jax.device_get((self.params, self.opt_state))
        params, opt_state = jax.tree.map(lambda a: a[i], self.host)
        return TrainState(eqx.combine(params, self.static), opt_state, jnp.asarray(epoch, jnp.int32))


class MemberMajor(loop.Trainer):
    """The members one after another (a `loop.Trainer`): each member's whole epoch in turn, its state
    resident in the cache, by one member epoch (`train.epoch_program` of `member_step`, the learning rate
    traced) looped as the model's loops are (`looping.for_model`), called once per member; all members'
    epochs are dispatched before the first result is read."""

    def __init__(self, state: TrainState, configs: list[RunConfig], xs: list[Array]):
        self.configs = [c.train for c in configs]
        self.objectives = [build_objective(c.train) for c in configs]
        params, self.static = shared_parts(state.vae)
        self.states = [jax.tree.map(lambda a, i=i: a[i], (params, state.opt_state)) for i in range(len(configs))]
        self.xs, self.examples = xs, xs[0].shape[0]
        tc = self.configs[0]
        epoch = epoch_program(member_step(self.static, tc), tc.batch_size)
        self.run_epoch = looping.for_model(self.static).compile(
            epoch, functools.partial(jax.jit, donate_argnums=(0, 1))
        )

    def epoch(self, plan):
        keys, objectives = _epoch_inputs(self.configs, self.objectives, plan)
        results = []
        for i, planned in enumerate(plan):
            if planned is None:
                results.append(None)
                continue
            lr = jnp.float32(self.configs[i].lr)
            params, opt_state, means, finite = self.run_epoch(*self.states[i], self.xs[i], keys[i], objectives[i], lr)
            self.states[i] = (params, opt_state)  # a diverged member's state is not written: it is frozen
            results.append((means, finite))
        return [None if r is None else _floats(*r) for r in jax.device_get(results)]

    def evaluate(self, x, keys, active):
        means = [held_out_elbo(self.model(i), x, keys[i]) if a else None for i, a in enumerate(active)]
        return [None if m is None else {k: float(v) for k, v in m.items()} for m in jax.device_get(means)]

    def model(self, i: int) -> LatentModel:
        return eqx.combine(self.states[i][0], self.static)

    def state(self, i: int, epoch: int) -> TrainState:
        return TrainState(self.model(i), self.states[i][1], jnp.asarray(epoch, jnp.int32))
