"""Training: one compiled step, the epoch as a loop over it (`looping`: one compiled `lax.scan`, or on a
CPU for a model with convolutions a loop on the host over the compiled step), checkpoints, resume.

Training writes a run folder (see `runs`). Random keys are derived from the seed and the epoch,
so the same seed gives the same numbers and a resumed run continues the same stream.
"""

import dataclasses
import functools
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.sharding import Mesh
from jax.typing import DTypeLike

from jaxvae import board, checkpoint, loop, looping, model_file, parallel, plots, runs, semi_train
from jaxvae.builder import build_binarization, build_objective, build_optimizer, likelihood_family, precision
from jaxvae.checkpoint import restore
from jaxvae.config import HardwareConfig, RunConfig, TrainConfig
from jaxvae.data import NAMED_IDX, Dataset, split_validation
from jaxvae.errors import Diverged, InputError
from jaxvae.evaluate import mean_elbo
from jaxvae.keys import Run, run_key
from jaxvae.labels import labelled_subset
from jaxvae.looping import Loop, batch_indices
from jaxvae.model import LatentModel, split_condition
from jaxvae.model_file import Builder
from jaxvae.networks import with_precision
from jaxvae.objectives import Objective
from jaxvae.semisupervised import SemiSupervisedVAE, held_out_scores

UNOPTIMIZED: dict[str, Any] = {"xla_backend_optimization_level": 0}  # XLA's options for a program run once


class TrainState(NamedTuple):
    """Everything a run needs to continue: the model, Adam's moments and the epochs done. A run with labels
    holds M2's parts (a `SemiSupervisedVAE`) as its model."""

    vae: LatentModel
    opt_state: optax.OptState
    epoch: Array


def initial_state(config: RunConfig, build: Builder, key: Array) -> TrainState:
    """The state at epoch 0 from `key` (2,), the model built by `build` (with labels, M2's parts,
    `model_file.build_m2`): what `init_state` compiles, `sweep` vmaps."""
    if config.train.labels:
        vae = model_file.build_m2(config.model, key, build)
    else:
        vae = model_file.build(config.model, key, build)
    opt_state = build_optimizer(config.train).init(eqx.filter(vae, eqx.is_inexact_array))
    return TrainState(vae, opt_state, jnp.int32(0))  # pyright: ignore[reportArgumentType] (M2's parts)


def init_state(config: RunConfig, build: Builder | None = None) -> TrainState:
    """The initial model (built by `build`, default: the config's) and optimizer state, its arrays built
    by one compiled program (not op by op).

    The program runs once, so XLA compiles it without optimization: 0.5 s sooner (values may differ
    from an optimized compilation in the last bit).
    """
    initial = functools.partial(initial_state, config, build or model_file.builder(config.model))
    key = run_key(config.train.seed, Run.INIT)
    arrays = jax.jit(lambda k: eqx.filter(initial(k), eqx.is_array))
    arrays = arrays.lower(key).compile(UNOPTIMIZED)(key)
    _, rest = eqx.partition(eqx.filter_eval_shape(initial, key), lambda a: isinstance(a, jax.ShapeDtypeStruct))
    return eqx.combine(arrays, rest)  # rest: what is not an array, e.g. a user's activation function


def state_shapes(config: RunConfig, build: Builder | None = None) -> TrainState:
    """The structure of a run's state with `jax.ShapeDtypeStruct` leaves, what a checkpoint is read into:
    found by tracing alone, so reading a checkpoint neither compiles nor runs the initialization."""
    initial = functools.partial(initial_state, config, build or model_file.builder(config.model))
    return eqx.filter_eval_shape(initial, jax.ShapeDtypeStruct((2,), jnp.uint32))


def epoch_key(seed: int, epoch: int) -> Array:
    """The key of epoch `epoch` (1-based): data order, dynamic binarization, sampling noise."""
    return jax.random.fold_in(run_key(seed, Run.EPOCH), epoch)


def batch_loss(
    params, static, x: Array, weights: Array, key: Array, objective: Objective, dtype: DTypeLike = jnp.float32
):
    """The objective's loss to minimize and the weighted sums over the batch of its per-example bounds, the
    networks' products in `dtype`; x (B, d), or a conditional model's rows [x, c] (`split_condition`)."""
    vae = with_precision(eqx.combine(params, static), dtype)
    x, c = split_condition(vae, x)
    loss, bounds = objective(vae, x, weights, key=key, c=c)
    return loss, {name: jnp.sum(weights * bound) for name, bound in bounds.items()}


def make_step(static, optimizer: optax.GradientTransformation, config: TrainConfig):
    """One training step (gradient, Adam update, apply) on a batch x (B, d) with weights (B,) and the
    objective, whose scalars (the KL weight of a warm-up, a sweep member's setting) are traced. The networks'
    products run in `config.precision`."""
    dtype, binarization = precision(config), build_binarization(config)

    def step(params, opt_state, x, weights, key, objective):
        key, x = binarization.in_step(key, x)  # dynamic: exact on a one-hot condition (no draw < 0, every < 1)
        loss_and_grad = jax.value_and_grad(batch_loss, has_aux=True)
        (loss, sums), grads = loss_and_grad(params, static, x, weights, key, objective, dtype)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, sums, jnp.isfinite(loss)

    return step


def epoch_plan(key: Array, n: int, batch_size: int):
    """The batches of an epoch: example indices (N, B), weights (N, B) (0 for padding), step keys (N, 2)."""
    order_key, steps_key = jax.random.split(key)
    idx, weights = batch_indices(jax.random.permutation(order_key, n), min(batch_size, n))
    return idx, weights, jax.random.split(steps_key, idx.shape[0])


def batch_step(carry, batch, step, x, mesh: Mesh | None, objective, args: tuple):
    """`step` on one batch = (rows, weights, key), a `Loop.scan` step: the examples x[rows] (or, with x None,
    the rows themselves: a batch of examples) and their weights split across the devices of `mesh`; `args` go
    to `step` after the objective. Returns ((params, opt_state), (summed bounds, whether the loss is finite))."""
    params, opt_state = carry
    rows, w, k = batch
    xs = parallel.shard_batch(rows if x is None else x[rows], mesh)
    params, opt_state, sums, finite = step(params, opt_state, xs, parallel.shard_batch(w, mesh), k, objective, *args)
    return (params, opt_state), (sums, finite)


def run_steps(loop: Loop, step, params, opt_state, batches, x, mesh: Mesh | None, objective, args: tuple = ()):
    """`step` over batches = (rows, weights, keys) (see `batch_step`), looped by `loop`.

    Returns (params, opt_state, the summed bounds, whether every loss and the final parameters are finite).
    """
    carry = (params, opt_state)
    (params, opt_state), (sums, finite) = loop.scan(batch_step, carry, batches, step, x, mesh, objective, args)
    return params, opt_state, *totals(params, sums, finite)


def totals(params, sums, finite) -> tuple[dict[str, Array], Array]:
    """(the bounds summed over the steps, whether every step's loss and the final parameters are finite), from
    the steps' sums (dicts of (N,)) and finite flags (N,)."""
    return jax.tree.map(jnp.sum, sums), jnp.all(finite) & all_finite(params)


def all_finite(tree) -> Array:
    """Whether every value of every array in `tree` is finite, a boolean scalar."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def make_epoch(
    static,
    optimizer: optax.GradientTransformation,
    config: TrainConfig,
    mesh: Mesh | None = None,
    loop: Loop | None = None,
):
    """The whole epoch: shuffle, batch, and loop the step, by `loop` (default: the model's,
    `looping.for_model`): one compiled program, or a loop on the host over the compiled step.

    Returns epoch(params, opt_state, x_train, key, objective) -> (params, opt_state, mean bounds, all finite),
    the mean bounds a dict like `batch_loss`'s sums; the objective's scalars are traced (no recompilation).
    params and opt_state are donated. With a `mesh`, each batch is split across its devices (x_train and the
    parameters replicated).
    """
    loop = loop or looping.for_model(static)
    replicated = None if mesh is None else parallel.replicated(mesh)  # outputs as the inputs: no recompiling
    jit = functools.partial(jax.jit, donate_argnums=(0, 1), out_shardings=replicated)
    return loop.compile(epoch_program(make_step(static, optimizer, config), config.batch_size, mesh), jit)


def epoch_program(step, batch_size: int, mesh: Mesh | None = None):
    """The epoch as a program for a loop strategy (`Loop.compile`): epoch(loop, params, opt_state, x (n, d),
    key, objective, *args) -> (params, opt_state, mean bounds, all finite), shuffling x into batches of
    `batch_size` and looping `step` over them; `args` go to every step after the objective (a sweep
    member's traced learning rate, `sweep.member_step`)."""

    def epoch(loop, params, opt_state, x, key, objective, *args):
        batches = epoch_plan(key, x.shape[0], batch_size)
        params, opt_state, sums, finite = run_steps(loop, step, params, opt_state, batches, x, mesh, objective, args)
        return params, opt_state, jax.tree.map(lambda s: s / x.shape[0], sums), finite

    return epoch


def make_chunk(static, optimizer: optax.GradientTransformation, config: TrainConfig, mesh: Mesh | None = None):
    """Part of an epoch, for data that streams from the host, looped as the model's loops are
    (`looping.for_model`).

    Returns chunk(params, opt_state, xs (N, B, d), weights (N, B), keys (N, 2), objective)
    -> (params, opt_state, summed bounds (a dict), all finite).
    """
    step = make_step(static, optimizer, config)

    def chunk(loop, params, opt_state, xs, weights, keys, objective):
        return run_steps(loop, step, params, opt_state, (xs, weights, keys), None, mesh, objective)

    replicated = None if mesh is None else parallel.replicated(mesh)  # outputs as the inputs: no recompiling
    jit = functools.partial(jax.jit, donate_argnums=(0, 1), out_shardings=replicated)
    return looping.for_model(static).compile(chunk, jit)


def stream_epoch(
    chunk, params, opt_state, x: np.ndarray, key: Array, objective, batch_size: int, chunk_batches: int, mesh: Mesh
):
    """One epoch over host data x (n, d) (an array or a memory map), `chunk_batches` batches per transfer.

    The batches, weights and keys are those of `make_epoch` with the same key, so the result is the
    in-memory one. Each process reads only the rows of its own devices' part of each batch.
    Returns (params, opt_state, mean bounds, all finite) like `make_epoch`.
    """
    n, d = x.shape
    idx, weights, keys = (np.asarray(a) for a in _epoch_plan(key, n, batch_size))
    rows = parallel.batch_sharding(mesh, axis=1)
    sums, finite = [], []
    for start in range(0, len(idx), chunk_batches):
        i, w, k = (a[start : start + chunk_batches] for a in (idx, weights, keys))
        xs = jax.make_array_from_callback(
            i.shape + (d,),
            rows,
            lambda s, i=i: np.asarray(x[i[s[:2]]], np.float32),  # pyright: ignore[reportOptionalSubscript]
        )
        ws = jax.make_array_from_callback(w.shape, rows, lambda s, w=w: w[s])
        params, opt_state, chunk_sums, chunk_finite = chunk(
            params, opt_state, xs, ws, parallel.replicate(k, mesh), objective
        )
        sums.append(chunk_sums)
        finite.append(chunk_finite)
    means = jax.tree.map(lambda *s: sum(s) / n, *sums)  # device arrays: no wait for the last chunk
    return params, opt_state, means, jnp.all(jnp.stack(finite))


_epoch_plan = jax.jit(epoch_plan, static_argnums=(1, 2))


def check_data(data: Dataset, config: RunConfig, *, training: bool = True) -> None:
    """Raise InputError where the data cannot serve the model (or its batches cannot be split over the devices),
    or the model file builds networks of the wrong sizes. `training`: the hints may name training's options
    (not when a trained run's model evaluates other data)."""
    parallel.check_batch_size(min(config.train.batch_size, len(data.x_train)))
    if data.x_train.shape[1] != config.model.data_dim:
        raise InputError(
            f"data examples have shape {tuple(data.shape)} ({data.x_train.shape[1]} values), "
            f"the model expects {config.model.data_shape} ({config.model.data_dim} values)"
        )
    bounded, binarize = likelihood_family(config.model).unit_interval, config.train.binarize
    if training and binarize == "redraw" and data.x_std_train is None:
        raise InputError("--binarize redraw draws each input from N(x, x_std^2): the data need x_std_train")
    if bounded or build_binarization(config.train).binary:
        for x in (data.x_train, data.x_test):
            if x.min() < 0 or x.max() > 1:
                if bounded:
                    source = "--likelihood" if training else "the run's"
                    what = f"{source} {config.model.likelihood}"
                else:
                    what = f"binarization (--binarize {binarize})"
                fix = " or train with --likelihood gaussian" if training and bounded else ""
                raise InputError(
                    f"values outside [0, 1] ({x.min():g} to {x.max():g}) cannot be modelled by {what}: "
                    f"rescale the data to [0, 1]{fix}"
                )
    if training and config.train.labels:
        check_labels(data, config)
    check_condition(data, config)
    model_file.check(config.model, labels=bool(config.train.labels))


def check_labels(data: Dataset, config: RunConfig) -> None:
    """Raise InputError where M2's labelled subset cannot be drawn from the training examples left after the
    validation split (`labels.labelled_subset`: labels / C of each of the C = `condition_dim` classes)."""
    require_condition(data, "label", "--labels")
    training, _ = split_validation(data, config.train.validation_fraction)
    if training.y_train is not None:
        labelled_subset(training.y_train, config.train.labels, config.model.condition_dim, config.train.m2_label_seed)


def require_condition(data: Dataset, condition: str, option: str = "") -> None:
    """Raise InputError where the data lack what a run conditions on: labels (`condition` "label") or
    conditions c ("array": an .npz's `c`, or `c_train` and `c_test`); `option` names the option that asks for
    them in the message (default: --condition CONDITION)."""
    where, option = data.source or "the data", option or f"--condition {condition}"
    if condition == "label" and (data.y_train is None or data.y_test is None):
        raise InputError(f"{option} needs labelled data: {where} have no labels")
    if condition == "array" and (data.c_train is None or data.c_test is None):
        raise InputError(f"--condition array needs conditions: {where} have none (an .npz's array 'c')")


def check_condition(data: Dataset, config: RunConfig) -> None:
    """Raise InputError where a conditional run's data lack its condition: labels outside its C = `condition_dim`
    classes (`--condition label`), or conditions of another size than its m = `condition_dim` values, or
    binarized with the data (`--condition array`). M2's (a run with labels) is its labels."""
    condition, size = config.train.condition or ("label" if config.train.labels else ""), config.model.condition_dim
    if not condition:
        return
    require_condition(data, condition)
    if condition == "array" and data.c_train is not None:
        if data.c_train.shape[1] != size:
            raise InputError(
                f"the data's conditions have {data.c_train.shape[1]} values per example, the run's model takes {size}"
            )
        if build_binarization(config.train).binary:
            raise InputError(
                f"--binarize {config.train.binarize} would binarize the conditions with the data: "
                "--condition array takes --binarize none"
            )
    for y in (data.y_train, data.y_test) if condition == "label" else ():
        if y is not None and len(y) and (y.min() < 0 or y.max() >= size):
            raise InputError(f"labels {y.min()} to {y.max()} are outside the run's {size} classes 0 to {size - 1}")


def condition_rows(data: Dataset, config: RunConfig) -> Dataset:
    """The data a run trains and is evaluated on: for a conditional run, each example's row [x, c] (n, d + m)
    (`model.split_condition` splits it), c the one-hot label (`--condition label`) or the example's condition
    array flattened (`--condition array`), so that the validation split, binarization (exact on a one-hot
    label; refused with an array condition) and batching carry the condition with its example; else `data`.
    (With `--binarize redraw`, `loop.held_out` puts x_std into the training rows once the split is made.)"""
    condition = config.train.condition or ("label" if config.train.labels else "")  # M2's held-out labels too
    if condition == "label" and data.y_train is not None and data.y_test is not None:
        one_hot = np.eye(config.model.condition_dim, dtype=np.float32)
        c_train, c_test = one_hot[data.y_train], one_hot[data.y_test]
    elif condition == "array" and data.c_train is not None and data.c_test is not None:
        c_train, c_test = data.c_train, data.c_test
    else:
        return data
    x_train = np.concatenate([np.asarray(data.x_train, np.float32), c_train], axis=1)
    x_test = np.concatenate([np.asarray(data.x_test, np.float32), c_test], axis=1)
    return dataclasses.replace(data, x_train=x_train, x_test=x_test, shape=(x_train.shape[1],))


def _recording_data(config: RunConfig, data: Dataset) -> RunConfig:
    """`config` naming the data it trains on, so that a run's commands find them: `data.source` where
    `load_dataset` read them, else the config's own dataset made absolute, or "" (arrays made in Python) where
    it is the default, which names other data."""
    dataset = data.source
    if not dataset and config.train.dataset != TrainConfig.dataset:
        named = config.train.dataset in ("digits", *NAMED_IDX)
        dataset = config.train.dataset if named else str(Path(config.train.dataset).resolve())
    return dataclasses.replace(config, train=dataclasses.replace(config.train, dataset=dataset))


def fit(
    config: RunConfig,
    data: Dataset,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    device_budget: int | None = None,
    build: Builder | None = None,
) -> LatentModel | SemiSupervisedVAE:
    """Train, writing config, metrics, checkpoints and figures to `run_dir`; returns the model (M2's parts for a
    run with labels, `M2RunTrainer`).

    The model is `build_model(config.model)`, or what `build(config.model, key)` returns (any VAE, e.g. with
    the user's own encoder or decoder): the run then records the function (`model_file.source_of`).

    With `resume`, continue from the latest checkpoint (or from the start when a crash came before
    the first one); a run with nothing left to train (`runs.nothing_to_train`) is returned as it is,
    and nothing is written. A first Ctrl-C finishes the epoch, saves its checkpoint and raises
    KeyboardInterrupt; a non-finite loss raises `Diverged`.

    Training uses every device of every process (see `parallel`); only process 0 writes files.
    Training data larger than `device_budget` bytes per device (default `parallel.device_budget()`)
    streams from host memory in chunks instead of living on the devices.
    """
    run_dir = Path(run_dir)
    check_data(data, config)
    config = _recording_data(config, data)
    objective = build_objective(config.train)
    if resume and runs.nothing_to_train(config.train, run_dir, objective.bound_key):
        return load(run_dir, build)
    mesh = parallel.data_mesh()
    config = dataclasses.replace(config, hardware=HardwareConfig(**parallel.describe(mesh)))
    if build is not None:
        source, sha256 = model_file.source_of(build)
        model = dataclasses.replace(config.model, source=source, source_sha256=sha256)
        config = dataclasses.replace(config, model=model)
    config = dataclasses.replace(config, model=model_file.relative_to(config.model, run_dir))
    writer = parallel.is_writer()
    created = not run_dir.exists()
    try:
        if writer:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
                if not resume:
                    config.save(run_dir / runs.CONFIG)
                    checkpoint.write_atomically(run_dir / runs.METRICS, b"")
            except OSError as e:
                raise InputError(f"cannot write the run folder {run_dir}: {e.strerror}") from None
        state = resume_state(config, run_dir, build) if resume else init_state(config, build)
        training, x_test, x_valid = loop.held_out(condition_rows(data, config), config.train)
        if config.train.labels:
            trainer = M2RunTrainer(state, config.train, training.x_train, mesh)
        else:
            x_train = loop.training_examples(training, config.train)
            trainer = RunTrainer(state, config.train, objective, x_train, mesh, device_budget)
        member = loop.Member.resumed("run", config, run_dir, int(state.epoch))
        loop.train([member], trainer, x_test, x_valid, _raise_diverged, progress=progress, write=writer)
        vae = parallel.uncommitted(trainer.model(0))
    except BaseException:
        if writer and created and not any((run_dir / runs.CHECKPOINTS).glob("*.eqx")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if writer:
        metrics = runs.read_metrics(run_dir)
        figures = plots.write_figures(vae, data, config, run_dir / runs.FIGURES, metrics)
        if config.train.tensorboard:
            board.add_figures(run_dir, figures, metrics[-1]["epoch"])
    return vae


def _epoch_runner(static, tc: TrainConfig, x_train: np.ndarray, mesh: Mesh, device_budget: int | None):
    """run(params, opt_state, key, objective) -> one epoch: the data on the devices if it fits, else streamed;
    either looped as the model's loops are (`looping.for_model`)."""
    optimizer = build_optimizer(tc)
    budget = parallel.device_budget() if device_budget is None else device_budget
    n, d = x_train.shape
    if 4 * n * d <= budget and jax.process_count() == 1:
        epoch = make_epoch(static, optimizer, tc, mesh)
        x = parallel.replicate(np.asarray(x_train, np.float32), mesh)
        return lambda params, opt_state, key, objective: epoch(params, opt_state, x, key, objective)
    chunk = make_chunk(static, optimizer, tc, mesh)
    per_batch = 4 * d * min(tc.batch_size, n) // mesh.devices.size  # bytes of one batch on each device
    chunk_batches = max(1, budget // (2 * per_batch))  # two chunks in flight: one computing, one arriving
    return lambda params, opt_state, key, objective: stream_epoch(
        chunk, params, opt_state, x_train, key, objective, tc.batch_size, chunk_batches, mesh
    )


class RunTrainer(loop.Trainer):
    """A single run's epochs (a `loop.Trainer` of one member): its state replicated over the devices of
    `mesh`, each batch split across them, the training data x_train (n, d) on the devices when it fits
    `device_budget`, else streamed from the host (`stream_epoch`)."""

    def __init__(self, state: TrainState, config: TrainConfig, objective: Objective, x_train, mesh, device_budget):
        params, self.static = eqx.partition(state.vae, eqx.is_inexact_array)
        self.params, self.opt_state = parallel.replicate((params, state.opt_state), mesh)
        self.run_epoch = _epoch_runner(self.static, config, x_train, mesh, device_budget)
        self.seed, self.objective, self.examples = config.seed, objective, len(x_train)

    def epoch(self, plan: loop.Plan) -> list[tuple[dict[str, float], bool] | None]:
        (step,) = plan
        if step is None:  # frozen: a run's one member is not, while the loop trains it
            return [None]
        epoch, beta = step
        objective = self.objective.with_kl_weight(jnp.asarray(beta, jnp.float32))
        self.params, self.opt_state, train, finite = self.run_epoch(
            self.params, self.opt_state, epoch_key(self.seed, epoch), objective
        )
        train = {k: float(v.addressable_data(0)) for k, v in train.items()}  # waits for the epoch
        return [(train, bool(finite.addressable_data(0)))]

    def evaluate(self, x: Array, keys: list[Array], active: list[bool]) -> list[dict[str, float] | None]:
        return [{k: float(v) for k, v in held_out_elbo(self.model(0), x, keys[0]).items()}]

    def model(self, i: int) -> LatentModel:
        return eqx.combine(parallel.local_copy(self.params), self.static)

    def state(self, i: int, epoch: int) -> TrainState:
        return TrainState(self.model(0), parallel.local_copy(self.opt_state), jnp.asarray(epoch, jnp.int32))


class M2RunTrainer(loop.Trainer):
    """M2's epochs (`semi_train.M2Trainer`) as a `loop.Trainer` of one member: the training rows [x, one-hot y]
    (n, d + C), of which `config.labels` keep their labels, continued from `state`, on the devices of `mesh`
    (none: the default device)."""

    def __init__(self, state: TrainState, config: TrainConfig, rows: np.ndarray, mesh: Mesh | None = None):
        model = state.vae
        if not isinstance(model, SemiSupervisedVAE):
            raise TypeError(f"a run with labels trains M2's parts, not {type(model).__name__}")
        x, y = np.asarray(rows[:, : -model.classes]), np.argmax(rows[:, -model.classes :], axis=1)
        self.trainer = semi_train.M2Trainer(
            model,
            x,
            y,
            config,
            labels=config.labels,
            label_seed=config.m2_label_seed,
            alpha=config.alpha,
            labelled_batch=config.labelled_batch or None,
            opt_state=state.opt_state,
            mesh=mesh,
        )
        self.examples = len(x)

    def epoch(self, plan: loop.Plan) -> list[tuple[dict[str, float], bool] | None]:
        """The epoch's means (`M2Trainer.epoch` at the plan's KL weight), its unlabelled bound U(x) as `elbo`."""
        (step,) = plan
        if step is None:
            return [None]
        try:
            means = self.trainer.epoch(*step)
        except Diverged:
            return [({"elbo": float("nan")}, False)]
        return [({"elbo": means.pop("unlabelled_bound"), **means}, True)]

    def evaluate(self, x: Array, keys: list[Array], active: list[bool]) -> list[dict[str, float] | None]:
        return [held_out_scores(self.trainer.model(), x, keys[0])]

    def model(self, i: int) -> SemiSupervisedVAE:
        return self.trainer.model()

    def state(self, i: int, epoch: int) -> TrainState:
        epoch_done = jnp.asarray(epoch, jnp.int32)
        opt_state = parallel.local_copy(self.trainer.opt_state)
        return TrainState(self.trainer.model(), opt_state, epoch_done)  # pyright: ignore[reportArgumentType]


class M2Members(loop.Trainer):
    """The members of a sweep of M2 (`--labels` with `--seeds` or `--sweep`) one after another, each an
    `M2RunTrainer` from its row of the stacked `state` and its training rows in `xs`: the signature of the
    sweep's schedules (`sweep.schedule`)."""

    def __init__(self, state: TrainState, configs: list[RunConfig], xs: list[Array]):
        def row(i: int) -> TrainState:
            return jax.tree.map(lambda a: a[i] if eqx.is_array(a) else a, state)

        members = enumerate(zip(configs, xs, strict=True))
        self.members = [M2RunTrainer(row(i), config.train, np.asarray(x)) for i, (config, x) in members]
        self.examples = self.members[0].examples

    def epoch(self, plan: loop.Plan) -> list[tuple[dict[str, float], bool] | None]:
        return [None if step is None else m.epoch([step])[0] for m, step in zip(self.members, plan, strict=True)]

    def evaluate(self, x: Array, keys: list[Array], active: list[bool]) -> list[dict[str, float] | None]:
        members = zip(self.members, keys, active, strict=True)
        return [m.evaluate(x, [key], [True])[0] if a else None for m, key, a in members]

    def model(self, i: int) -> SemiSupervisedVAE:
        return self.members[i].model(0)

    def state(self, i: int, epoch: int) -> TrainState:
        return self.members[i].state(0, epoch)


def held_out_elbo(vae: LatentModel, rows: Array, key: Array) -> dict[str, Array]:
    """`evaluate.mean_elbo` of held-out rows (n, d), a conditional model's [x, c] (`model.split_condition`)."""
    x, c = split_condition(vae, rows)
    return mean_elbo(vae, x, key, c=c)


def _raise_diverged(member: loop.Member, epoch: int):
    kept = f"; the last good checkpoint is {runs.latest_checkpoint(member.run_dir)}" if epoch > 1 else ""
    raise Diverged(f"non-finite loss in epoch {epoch}: training stopped (try a smaller --lr){kept}")


def resume_state(config: RunConfig, run_dir: Path, build: Builder | None = None) -> TrainState:
    """The state of the latest checkpoint, with metrics.jsonl cut back to match it and config.json updated.

    Every file is written metrics line first, then checkpoint, so whatever moment a crash came,
    the metrics hold at least the epochs of the latest complete checkpoint.
    """
    writer = parallel.is_writer()
    if writer:
        checkpoint.remove_temporary_files(run_dir)
        checkpoint.remove_temporary_files(run_dir / runs.CHECKPOINTS)
    found = runs.epoch_checkpoints(run_dir)
    state = restore(found[-1], state_shapes(config, build)) if found else init_state(config, build)
    done = int(state.epoch)
    if config.train.epochs < done:
        raise InputError(f"{run_dir} has trained {done} epochs already: --epochs must be at least {done}")
    if writer:
        runs.truncate_metrics(run_dir / runs.METRICS, done)
        config.save(run_dir / runs.CONFIG)  # --epochs and --keep-checkpoints may have changed
    return state


def load(run_dir: str | Path, build: Builder | None = None, *, checkpoint: str = "latest") -> LatentModel:
    """The trained model of a run folder, from its latest checkpoint, or with `checkpoint="best"` from that
    of the best validation bound (`checkpoints/best.eqx`); `build` rebuilds a model whose function the run
    could not record (one defined outside a file)."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / runs.CONFIG)
    return restore(runs.model_checkpoint(run_dir, checkpoint), state_shapes(config, build)).vae
