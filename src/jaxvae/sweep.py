"""Many models in one program: seeds and sweeps of beta, lr or free bits trained together.

A sweep's members share the model and differ in their seed and in one scalar setting of the objective or
optimizer. `jax.vmap` over whole training states (Equinox's ensembling trick) makes one compiled epoch
train every member: the training data are on the device once, the matrix products grow by the number of
members, and the fixed costs of a step are paid once. Each member is an ordinary run folder OUT/NAME
(seed-3, beta-0.5, beta-0.5-seed-1) whose numbers are those of `jaxvae train` with that seed and setting
alone, up to the order of float sums; OUT/sweep.json lists the members.

Members keep their own epoch count, so each stops on its own: a member that diverges keeps its last
good checkpoint and is frozen (a mask keeps its state) while the others go on; so is one that stops
early or has trained its epochs. A resumed sweep starts every member from its own latest checkpoint.
A sweep trains in one process on one device, with the training data in device memory.
"""

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import shutil
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from jaxvae import board, checkpoint, model_file, parallel, plots
from jaxvae.config import HardwareConfig, RunConfig, TrainConfig
from jaxvae.data import Dataset, binarized, split_validation
from jaxvae.errors import Diverged, InputError
from jaxvae.evaluate import mean_elbo
from jaxvae.keys import DataSeed, Run, run_key
from jaxvae.objectives import kl_weight, objective_from
from jaxvae.runs import (
    CHECKPOINTS,
    CONFIG,
    FIGURES,
    METRICS,
    best_validation,
    epoch_checkpoints,
    epoch_record,
    nothing_to_train,
    read_metrics,
    stopped_early,
    write_epoch,
)
from jaxvae.train import (
    TrainState,
    check_data,
    epoch_key,
    epoch_plan,
    initial_state,
    kl_estimator_of,
    make_optimizer,
    make_step,
    prepared_data,
    resume_state,
    scan_steps,
    state_shapes,
    stop_after_epoch_on_interrupt,
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
    """(bytes every sweep needs, bytes each member adds) on the device: the data, stored once (once per member
    when static binarization differs between seeds), and per member its training state twice (the state, and
    the gradients and updates of a step)."""
    config = next(iter(configs.values()))
    state = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state_shapes(config)))
    train, test = (4 * x.size for x in (data.x_train, data.x_test))
    if _per_member_data(configs):
        return test, 2 * state + train  # the validation examples are part of x_train's count
    return test + train, 2 * state


def _per_member_data(configs: dict[str, RunConfig]) -> bool:
    """Whether the members train on different data: static binarization with different seeds."""
    trains = [c.train for c in configs.values()]
    return trains[0].binarize == "static" and len({t.seed for t in trains}) > 1


def check(configs: dict[str, RunConfig], data: Dataset, device_budget: int | None = None) -> None:
    """Raise InputError where the members cannot train together: data, processes, device memory."""
    if jax.process_count() > 1:
        raise InputError("--seeds and --sweep train in one process: leave out --coordinator")
    first = next(iter(configs.values()))
    shared = {name: getattr(first.train, name) for name in ("seed", *SETTINGS.values())}
    for config in configs.values():
        if (config.model, dataclasses.replace(config.train, **shared)) != (first.model, first.train):
            *others, last = SETTINGS.values()
            raise InputError(f"the members of a sweep may differ only in their seed, {', '.join(others)} and {last}")
    for config in configs.values():
        check_data(data, config)
    objective_from(first)  # InputError where the objective is not defined for the model
    budget = parallel.device_budget() if device_budget is None else device_budget
    shared, each = memory_needed(configs, data)
    n = len(configs)
    if shared + n * each > budget:
        fits = max(0, (budget - shared) // each)
        raise InputError(
            f"{n} members need {(shared + n * each) / 2**20:.1f} MiB of device memory, the budget is "
            f"{budget / 2**20:.1f} MiB (--device-memory-budget): at most {fits} members fit"
        )


def make_sweep_epoch(static, config: TrainConfig, data_axis: int | None, key_axis: int | None):
    """One epoch of every member as one compiled program: `jax.vmap` of the epoch over stacked states.

    Returns epoch(params, opt_state, x, keys (N, 2), objectives (stacked: scalars (N,)), lr (N,), active (N,))
    -> (params, opt_state, mean bounds (dicts of (N,)), finite (N,)); x is (n, d), or (N, n, d) with
    `data_axis` 0. A member that is not active, or whose epoch was not finite, keeps its state.
    With `key_axis` None, every member gets the same key: the same data order, one gather per batch.
    """

    def member_epoch(params, opt_state, x, key, objective, lr, active):
        step = make_step(static, make_optimizer(config, lr), config)
        idx, weights, keys = epoch_plan(key, x.shape[0], config.batch_size)
        trained = scan_steps(step, params, opt_state, (idx, weights, keys), lambda i: x[i], None, objective)
        new_params, new_opt_state, sums, finite = trained
        keep = active & finite
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(keep, new, old), (new_params, new_opt_state), (params, opt_state)
        )
        return params, opt_state, jax.tree.map(lambda s: s / x.shape[0], sums), finite

    in_axes = (0, 0, data_axis, key_axis, 0, 0, 0)
    return jax.jit(jax.vmap(member_epoch, in_axes=in_axes), donate_argnums=(0, 1))


def stack(trees: list):
    """The trees (of one structure) with each array stacked along a new leading axis, one row per tree."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def initial_states(configs: dict[str, RunConfig]) -> TrainState:
    """The members' initial states stacked along a leading axis: one compiled program, the same values
    as `train.init_state` of each member."""
    config = next(iter(configs.values()))
    keys = jnp.stack([run_key(c.train.seed, Run.INIT) for c in configs.values()])
    initial = jax.jit(jax.vmap(functools.partial(initial_state, config, model_file.builder(config.model))))
    return initial.lower(keys).compile({"xla_backend_optimization_level": 0})(keys)


def fit_sweep(
    configs: dict[str, RunConfig],
    data: Dataset,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    device_budget: int | None = None,
) -> dict[str, str]:
    """Train every member together, each into its run folder out/NAME; returns name -> how it ended
    ("finished", "stopped early at epoch E", "diverged in epoch E").

    With `resume`, each member continues from its own latest checkpoint; when no member has epochs left
    (`runs.nothing_to_train`), nothing is written and each member's reason is returned. A first Ctrl-C finishes the
    round, saves every member's checkpoint and raises KeyboardInterrupt; `Diverged` only when every
    member diverged. Writes out/sweep.json, and at the end each member's figures and out/training_curves.png.
    """
    out = Path(out)
    check(configs, data, device_budget)
    if resume:
        reasons = {name: nothing_to_train(config.train, out / name) for name, config in configs.items()}
        if all(reasons.values()):
            return reasons
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
            members = [_describe(name, config) for name, config in configs.items()]
            checkpoint.write_atomically(out / SWEEP, (json.dumps({"members": members}, indent=2) + "\n").encode())
        except OSError as e:
            raise InputError(f"cannot write the sweep folder {out}: {e.strerror}") from None
        if resume:
            states = [resume_state(config, out / name) for name, config in configs.items()]
            state = stack(states)
        else:
            state = initial_states(configs)
        with contextlib.ExitStack() as contexts:
            stop = contexts.enter_context(stop_after_epoch_on_interrupt())
            events = {  # each member's TensorBoard writer, or None
                name: contexts.enter_context(board.writer(out / name, int(done), config.train.tensorboard))
                for (name, config), done in zip(configs.items(), np.asarray(state.epoch), strict=True)
            }
            ended = _train_members(configs, data, out, state, progress, stop, events)
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


def _train_members(
    configs: dict[str, RunConfig],
    data: Dataset,
    out: Path,
    state: TrainState,
    progress: bool,
    stop: list[bool],
    events: dict,
) -> dict[str, str]:
    """Train the members from `state` to their epochs; `events`: name -> the member's TensorBoard writer or
    None. Returns how each ended (see `fit_sweep`)."""
    names = list(configs)
    trains = [c.train for c in configs.values()]
    tc = trains[0]  # what the members share: epochs, batches, objective, binarization, validation, patience
    data, x_valid = split_validation(data, tc.validation_fraction)
    x_valid = jnp.asarray(binarized(x_valid, tc.binarize, DataSeed.VALIDATION_BINARIZATION))
    x_test = jnp.asarray(prepared_data(data, tc)[1])
    if _per_member_data(configs):
        x_train, data_axis = jnp.stack([prepared_data(data, t)[0] for t in trains]), 0
    else:
        x_train, data_axis = jnp.asarray(prepared_data(data, tc)[0], jnp.float32), None
    n = x_train.shape[-2]
    seeds = [t.seed for t in trains]
    key_axis = None if len(set(seeds)) == 1 else 0
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    opt_state = state.opt_state
    run_epoch = make_sweep_epoch(static, tc, data_axis, key_axis)
    evaluate = jax.jit(jax.vmap(lambda p, k, x: mean_elbo(eqx.combine(p, static), x, k), in_axes=(0, 0, None)))
    test_keys = jnp.stack([run_key(s, Run.TEST) for s in seeds])
    valid_keys = jnp.stack([run_key(s, Run.VALIDATION) for s in seeds])
    objectives = [objective_from(c) for c in configs.values()]
    lr = jnp.asarray([t.lr for t in trains], jnp.float32)
    done = [int(e) for e in np.asarray(state.epoch)]
    best = [best_validation(read_metrics(out / name)) for name in names]
    ended: dict[str, str] = {}
    kl = kl_estimator_of(eqx.combine(jax.tree.map(lambda a: a[0], params), static), x_test)
    bar = tqdm(total=tc.epochs - min(done), desc=f"training {len(names)} members", unit="epoch", disable=not progress)
    while True:
        for i, name in enumerate(names):
            if name not in ended and done[i] >= tc.epochs:
                ended[name] = "finished"
            elif name not in ended and stopped_early(tc, done[i], best[i][1]):
                ended[name] = f"stopped early at epoch {done[i]}"
        active = [name not in ended for name in names]
        if not any(active):
            break
        epochs = [e + 1 for e in done]
        keys = jnp.stack([epoch_key(s, e) for s, e in zip(seeds, epochs, strict=True)])
        weighted = [
            o.with_kl_weight(jnp.float32(kl_weight(t.beta, t.kl_warmup_epochs, e)))
            for o, t, e in zip(objectives, trains, epochs, strict=True)
        ]
        began = time.perf_counter()
        params, opt_state, train, finite = run_epoch(
            params, opt_state, x_train, keys if key_axis == 0 else keys[0], stack(weighted), lr, jnp.asarray(active)
        )
        plots.import_in_background()  # while the epoch computes, for the figures at the end
        train, finite = jax.device_get((train, finite))  # waits for the epoch
        trained = time.perf_counter()
        test = jax.device_get(evaluate(params, test_keys, x_test))
        valid = jax.device_get(evaluate(params, valid_keys, x_valid)["elbo"]) if len(x_valid) else None
        host_params, host_opt_state = jax.device_get((params, opt_state))
        seconds = time.perf_counter() - began
        for i, name in enumerate(names):
            if not active[i]:
                continue
            if not (finite[i] and math.isfinite(test["elbo"][i])):
                kept = f"; its last good checkpoint is {epoch_checkpoints(out / name)[-1]}" if done[i] else ""
                ended[name] = f"diverged in epoch {epochs[i]}"
                tqdm.write(f"jaxvae: {name}: non-finite loss in epoch {epochs[i]}: it stopped{kept}", file=sys.stderr)
                continue
            record = epoch_record(
                epochs[i],
                {k: v[i] for k, v in train.items()},
                {k: v[i] for k, v in test.items()},
                kl_weight(trains[i].beta, trains[i].kl_warmup_epochs, epochs[i]),
                kl,
                seconds,
                n / (trained - began),
                None if valid is None else valid[i],
            )
            member = jax.tree.map(lambda a, i=i: a[i], (host_params, host_opt_state))
            member_state = TrainState(eqx.combine(member[0], static), member[1], jnp.asarray(epochs[i], jnp.int32))
            improved = valid is not None and record["validation_elbo"] > best[i][0]
            if improved:
                best[i] = (record["validation_elbo"], epochs[i])
            if events[name] is not None:  # before the checkpoint: a resumed run purges events from its first epoch on
                board.add_epoch(events[name], record)
            write_epoch(out / name, record, member_state, trains[i].keep_checkpoints, improved)
            done[i] = epochs[i]
        bar.update(1)
        if stop[0]:
            bar.close()  # now, so that the command's message comes after the bar, not glued to it
            raise KeyboardInterrupt(f"stopped after epoch {max(done)}")
    bar.close()
    return {name: ended[name] for name in names}


def groups(out: Path) -> dict[str, list[str]]:
    """The members of a sweep grouped by their setting (all but the seed): group label -> member names."""
    members = json.loads((Path(out) / SWEEP).read_text())["members"]
    grouped: dict[str, list[str]] = {}
    for m in members:
        grouped.setdefault(m["name"].rsplit("seed-", 1)[0].rstrip("-") or "seeds", []).append(m["name"])
    return grouped


def mean_and_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of the members' values; the sd of one value is undefined:
    None."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def _mean_and_sd_per_dimension(rows: list[list]) -> tuple[list, list]:
    """mean_and_sd of each dimension of the members' per-dimension values (`kl_per_dim`); a dimension
    without a value (None, a flow's) has None for both."""
    stats = [mean_and_sd(column) if None not in column else (None, None) for column in zip(*rows, strict=True)]
    return [m for m, _ in stats], [s for _, s in stats]


def summarize(results: dict[str, dict], grouped: dict[str, list[str]]) -> dict[str, dict]:
    """Per group of members: their names and the mean and sd of every scalar figure of `results` (name ->
    `evaluate.report`) and of each dimension of `kl_per_dim`, over the members that have results; an sd
    over one member is None."""
    summaries = {}
    for label, names in grouped.items():
        names = [n for n in names if n in results]
        if names:
            keys = [k for k, v in results[names[0]].items() if isinstance(v, int | float)]
            stats = {k: mean_and_sd([results[n][k] for n in names]) for k in keys}
            if "kl_per_dim" in results[names[0]]:
                stats["kl_per_dim"] = _mean_and_sd_per_dimension([results[n]["kl_per_dim"] for n in names])
            summaries[label] = {
                "members": names,
                "mean": {k: m for k, (m, _) in stats.items()},
                "sd": {k: s for k, (_, s) in stats.items()},
            }
    return summaries


def summary(out: Path, ended: dict[str, str]) -> str:
    """The table printed at the end of a sweep: each member's last epoch and test ELBO, and for seeds,
    their mean +- standard deviation per setting."""
    lines = [f"{'member':<24} {'epochs':>6} {'test ELBO, nats':>16}  status"]
    final = {}
    for name, how in ended.items():
        records = read_metrics(out / name)
        if records:
            final[name] = records[-1]["test_elbo"]
        elbo = f"{final[name]:16.2f}" if name in final else f"{'-':>16}"
        lines.append(f"{name:<24} {len(records):>6} {elbo}  {how}")
    for label, names in groups(out).items():
        values = [final[n] for n in names if n in final]
        if len(names) > 1 and values:
            mean, sd = mean_and_sd(values)
            spread = "sd undefined" if sd is None else f"+- {sd:.2f}"  # one seed left (the others diverged)
            lines.append(f"{label + ': mean +- sd':<24} {'':>6} {mean:16.2f}  {spread} over {len(values)} seeds")
    return "\n".join(lines)
