"""Training: one compiled step, the whole epoch as one compiled `lax.scan`, checkpoints, resume.

A run folder holds `config.json`, `metrics.jsonl` (one JSON object per epoch), checkpoints under
`checkpoints/` and figures under `figures/`. Random keys are derived from the seed and the epoch,
so the same seed gives the same numbers and a resumed run continues the same stream.
"""

import contextlib
import json
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from tqdm.auto import tqdm

from jaxvae import checkpoint
from jaxvae.config import BERNOULLI_FAMILY, RunConfig, TrainConfig
from jaxvae.data import (
    TEST_BINARIZATION_SEED,
    VALIDATION_BINARIZATION_SEED,
    Dataset,
    batch_indices,
    binarized,
    split_validation,
)
from jaxvae.errors import InputError
from jaxvae.evaluate import mean_elbo
from jaxvae.model import VAE
from jaxvae.objectives import elbo, iwae

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
BEST_CHECKPOINT = "best.eqx"  # the checkpoint of the best validation ELBO so far


class TrainState(NamedTuple):
    """Everything a run needs to continue: the model, Adam's moments and the epochs done."""

    vae: VAE
    opt_state: optax.OptState
    epoch: Array


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    return optax.adam(config.lr)


def init_state(config: RunConfig) -> TrainState:
    vae = VAE(config.model, key=jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 0))
    opt_state = make_optimizer(config.train).init(eqx.filter(vae, eqx.is_inexact_array))
    return TrainState(vae, opt_state, jnp.zeros((), jnp.int32))


def epoch_key(seed: int, epoch: int) -> Array:
    """The key of epoch `epoch` (1-based): data order, dynamic binarization, sampling noise."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 1), epoch)


def batch_loss(params, static, x: Array, weights: Array, key: Array, config: TrainConfig):
    """-(weighted mean of the per-example bound); also returns the weighted sum of the bound."""
    vae = eqx.combine(params, static)
    if config.objective == "iwae":
        bound = iwae(vae, x, key=key, samples=config.samples)
    else:
        bound = elbo(vae, x, key=key, samples=config.samples).elbo
    total = jnp.sum(weights * bound)
    return -total / jnp.sum(weights), total


def make_step(static, optimizer: optax.GradientTransformation, config: TrainConfig):
    """One training step (gradient, Adam update, apply) on a batch x (B, d) with weights (B,)."""

    def step(params, opt_state, x, weights, key):
        if config.binarize == "dynamic":
            key, bin_key = jax.random.split(key)
            x = jax.random.bernoulli(bin_key, x).astype(x.dtype)
        (loss, total), grads = jax.value_and_grad(batch_loss, has_aux=True)(params, static, x, weights, key, config)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, total, jnp.isfinite(loss)

    return step


def make_epoch(static, optimizer: optax.GradientTransformation, config: TrainConfig):
    """The whole epoch as one compiled program: shuffle, batch, and `lax.scan` the step.

    Returns epoch(params, opt_state, x_train, key) -> (params, opt_state, mean bound, all finite).
    """
    step = make_step(static, optimizer, config)

    def epoch(params, opt_state, x, key):
        n = x.shape[0]
        order_key, steps_key = jax.random.split(key)
        idx, weights = batch_indices(jax.random.permutation(order_key, n), min(config.batch_size, n))
        keys = jax.random.split(steps_key, idx.shape[0])

        def body(carry, batch):
            params, opt_state = carry
            i, w, k = batch
            params, opt_state, total, finite = step(params, opt_state, x[i], w, k)
            return (params, opt_state), (total, finite)

        (params, opt_state), (totals, finite) = jax.lax.scan(body, (params, opt_state), (idx, weights, keys))
        return params, opt_state, jnp.sum(totals) / n, jnp.all(finite)

    return jax.jit(epoch, donate_argnums=(0, 1))


def check_data(data: Dataset, config: RunConfig) -> None:
    """Raise InputError where the data cannot serve the model."""
    if data.x_train.shape[1] != config.model.data_dim:
        raise InputError(
            f"data examples have shape {tuple(data.shape)} ({data.x_train.shape[1]} values), "
            f"the model expects {config.model.data_shape} ({config.model.data_dim} values)"
        )
    if config.model.likelihood in BERNOULLI_FAMILY or config.train.binarize != "none":
        for x in (data.x_train, data.x_test):
            if x.min() < 0 or x.max() > 1:
                raise InputError(
                    f"values outside [0, 1] ({x.min():g} to {x.max():g}) cannot be modelled by "
                    f"--likelihood {config.model.likelihood} or binarized: rescale the data or use gaussian"
                )


def prepared_data(data: Dataset, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Train and test arrays after binarization; dynamic binarization of training data happens in the step."""
    test = binarized(data.x_test, config.binarize, TEST_BINARIZATION_SEED)
    train = data.x_train if config.binarize == "dynamic" else binarized(data.x_train, config.binarize, config.seed)
    return train, test


class Diverged(FloatingPointError):
    """The loss or the parameters became NaN or infinite; the checkpoints hold the last good epoch."""


def fit(config: RunConfig, data: Dataset, run_dir: Path, *, resume: bool = False, progress: bool = True) -> VAE:
    """Train, writing config, metrics, checkpoints and figures to `run_dir`; returns the model.

    With `resume`, continue from the latest checkpoint (or from the start when a crash came before
    the first one). A first Ctrl-C finishes the epoch, saves its checkpoint and raises
    KeyboardInterrupt; a non-finite loss raises `Diverged`.
    """
    from jaxvae import plots

    check_data(data, config)
    created = not run_dir.exists()
    try:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not resume:
                config.save(run_dir / CONFIG)
                checkpoint.write_atomically(run_dir / METRICS, b"")
        except OSError as e:
            raise InputError(f"cannot write the run folder {run_dir}: {e.strerror}") from None
        state = resume_state(config, run_dir) if resume else init_state(config)
        with _stop_after_epoch_on_interrupt() as stop:
            vae = _train_epochs(config, data, run_dir, state, progress, stop)
    except BaseException:
        if created and not any((run_dir / CHECKPOINTS).glob("*.eqx")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    plots.write_figures(vae, data, config, run_dir / FIGURES, read_metrics(run_dir))
    return vae


def resume_state(config: RunConfig, run_dir: Path) -> TrainState:
    """The state of the latest checkpoint, with metrics.jsonl cut back to match it and config.json updated.

    Every file is written metrics line first, then checkpoint, so whatever moment a crash came,
    the metrics hold at least the epochs of the latest complete checkpoint.
    """
    checkpoint.remove_temporary_files(run_dir)
    checkpoint.remove_temporary_files(run_dir / CHECKPOINTS)
    state = init_state(config)
    found = epoch_checkpoints(run_dir)
    if found:
        state = checkpoint.restore(found[-1], state)
    done = int(state.epoch)
    if config.train.epochs < done:
        raise InputError(f"{run_dir} has trained {done} epochs already: --epochs must be at least {done}")
    _truncate_metrics(run_dir / METRICS, done)
    config.save(run_dir / CONFIG)  # --epochs and --keep-checkpoints may have changed
    return state


@contextlib.contextmanager
def _stop_after_epoch_on_interrupt():
    """While training, a first Ctrl-C (SIGINT) only sets `stop[0]`: the epoch finishes and its
    checkpoint is written before training stops; a second one interrupts at once."""
    stop = [False]
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop[0]:
            raise KeyboardInterrupt
        stop[0] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _train_epochs(
    config: RunConfig, data: Dataset, run_dir: Path, state: TrainState, progress: bool, stop: list[bool]
) -> VAE:
    tc = config.train
    data, x_valid = split_validation(data, tc.validation_fraction)
    x_valid = jax.device_put(binarized(x_valid, tc.binarize, VALIDATION_BINARIZATION_SEED))
    x_train, x_test = (jax.device_put(a) for a in prepared_data(data, tc))
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    epoch_fn = make_epoch(static, make_optimizer(tc), tc)
    opt_state, start = state.opt_state, int(state.epoch)
    test_key = jax.random.fold_in(jax.random.PRNGKey(tc.seed), 2)
    valid_key = jax.random.fold_in(jax.random.PRNGKey(tc.seed), 3)
    best_elbo, best_epoch = _best_validation(read_metrics(run_dir))
    bar = tqdm(range(start + 1, tc.epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        if _stopped_early(tc, epoch - 1, best_epoch):  # at the top, so that a resumed run stops as well
            break
        began = time.perf_counter()
        params, opt_state, train_elbo, finite = epoch_fn(params, opt_state, x_train, epoch_key(tc.seed, epoch))
        train_elbo = float(train_elbo)  # waits for the epoch
        trained = time.perf_counter()
        vae = eqx.combine(params, static)
        test = {k: float(v) for k, v in mean_elbo(vae, x_test, test_key).items()}
        if not (bool(finite) and math.isfinite(test["elbo"]) and _all_finite(params)):
            kept = f"; the last good checkpoint is {latest_checkpoint(run_dir)}" if epoch > 1 else ""
            raise Diverged(f"non-finite loss in epoch {epoch}: training stopped (try a smaller --lr){kept}")
        record = {
            "epoch": epoch,
            "train_elbo": train_elbo,
            "test_elbo": test["elbo"],
            "test_reconstruction": test["reconstruction"],
            "test_kl": test["kl"],
            "seconds": time.perf_counter() - began,
            "examples_per_second": len(x_train) / (trained - began),
        }
        if len(x_valid):
            record["validation_elbo"] = float(mean_elbo(vae, x_valid, valid_key)["elbo"])
        state = TrainState(vae, opt_state, jnp.asarray(epoch, jnp.int32))
        # metrics line, best, epoch checkpoint: the order resume_state relies on
        _append_metrics(run_dir / METRICS, record)
        if record.get("validation_elbo", -np.inf) > best_elbo:
            best_elbo, best_epoch = record["validation_elbo"], epoch
            checkpoint.save(run_dir / CHECKPOINTS / BEST_CHECKPOINT, state)
        _save_checkpoint(run_dir, state, tc.keep_checkpoints)
        bar.set_postfix(train_elbo=f"{train_elbo:.2f}", test_elbo=f"{test['elbo']:.2f}")
        if stop[0]:
            raise KeyboardInterrupt(f"stopped after epoch {epoch}")
    bar.close()
    return eqx.combine(params, static)


def _stopped_early(config: TrainConfig, epoch: int, best_epoch: int) -> bool:
    """Early stopping: no better validation ELBO for `config.early_stopping` epochs after `epoch`."""
    return bool(config.early_stopping) and epoch - best_epoch >= config.early_stopping


def _all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def _best_validation(records: list[dict]) -> tuple[float, int]:
    """(best validation ELBO, its epoch) among the epochs done; (-inf, last epoch) if none has one."""
    scored = [r for r in records if "validation_elbo" in r]
    if not scored:
        return -np.inf, records[-1]["epoch"] if records else 0
    best = max(scored, key=lambda r: r["validation_elbo"])
    return best["validation_elbo"], best["epoch"]


def _save_checkpoint(run_dir: Path, state: TrainState, keep: int) -> None:
    """checkpoints/epoch-NNNNN.eqx, keeping the latest `keep` of them."""
    checkpoint.save(run_dir / CHECKPOINTS / f"epoch-{int(state.epoch):05d}.eqx", state)
    for old in epoch_checkpoints(run_dir)[:-keep]:
        old.unlink()


def epoch_checkpoints(run_dir: Path) -> list[Path]:
    """The epoch checkpoints of a run, oldest first."""
    return sorted((run_dir / CHECKPOINTS).glob("epoch-*.eqx"))


def latest_checkpoint(run_dir: Path) -> Path:
    found = epoch_checkpoints(run_dir)
    if not found:
        raise InputError(f"{run_dir} has no checkpoint to load")
    return found[-1]


def _append_metrics(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _parse_metrics(path: Path) -> list[dict]:
    """The records of metrics.jsonl; an unfinished last line (a crash while writing it) is dropped."""
    lines = path.read_text().splitlines() if path.exists() else []
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise InputError(f"damaged {path}: line {number} is not JSON") from None
        if not (isinstance(record, dict) and isinstance(record.get("epoch"), int)):
            raise InputError(f"damaged {path}: line {number} is not an epoch record")
        records.append(record)
    return records


def _truncate_metrics(path: Path, epochs: int) -> None:
    """Keep the metrics of the first `epochs` epochs: those the checkpoint includes."""
    kept = [r for r in _parse_metrics(path) if r["epoch"] <= epochs]
    if [r["epoch"] for r in kept] != list(range(1, epochs + 1)):
        raise InputError(f"{path} does not hold the metrics of epochs 1 to {epochs}, which the checkpoint has")
    checkpoint.write_atomically(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def read_metrics(run_dir: Path) -> list[dict]:
    return _parse_metrics(run_dir / METRICS)


def load(run_dir: str | Path) -> VAE:
    """The trained model of a run folder, from its latest checkpoint."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / CONFIG)
    return checkpoint.restore(latest_checkpoint(run_dir), init_state(config)).vae
