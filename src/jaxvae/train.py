"""Training: one compiled step, the whole epoch as one compiled `lax.scan`, checkpoints, resume.

A run folder holds `config.json`, `metrics.jsonl` (one JSON object per epoch), checkpoints under
`checkpoints/` and figures under `figures/`. Random keys are derived from the seed and the epoch,
so the same seed gives the same numbers and a resumed run continues the same stream.
"""

import json
import shutil
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
from jaxvae.objectives import elbo_loss, kl_weight, log_importance_weights, log_mean_exp

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
KEEP_CHECKPOINTS = 3
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


def batch_loss(params, static, x: Array, weights: Array, key: Array, beta: Array, config: TrainConfig):
    """The loss to minimize and the weighted sums over the batch of the per-example bounds.

    elbo: the loss is -(reconstruction - beta * KL), with free bits if set; iwae: the loss is -L_K.
    The sums are `elbo`, always the true (beta = 1) ELBO, and for iwae `iwae_bound`, L_K itself;
    iwae's ELBO is mean_k log w_k over the same K draws, an unbiased estimate.
    """
    vae = eqx.combine(params, static)
    if config.objective == "iwae":
        log_w = log_importance_weights(vae, x, key=key, samples=config.samples)
        bound = log_mean_exp(log_w)
        sums = {"elbo": jnp.sum(weights * jnp.mean(log_w, axis=0)), "iwae_bound": jnp.sum(weights * bound)}
        return -sums["iwae_bound"] / jnp.sum(weights), sums
    loss, terms = elbo_loss(vae, x, weights, key=key, samples=config.samples, beta=beta, free_bits=config.free_bits)
    return loss, {"elbo": jnp.sum(weights * terms.elbo)}


def make_step(static, optimizer: optax.GradientTransformation, config: TrainConfig):
    """One training step (gradient, Adam update, apply) on a batch x (B, d) with weights (B,), KL weight beta."""

    def step(params, opt_state, x, weights, key, beta):
        if config.binarize == "dynamic":
            key, bin_key = jax.random.split(key)
            x = jax.random.bernoulli(bin_key, x).astype(x.dtype)
        loss_and_grad = jax.value_and_grad(batch_loss, has_aux=True)
        (loss, sums), grads = loss_and_grad(params, static, x, weights, key, beta, config)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, sums, jnp.isfinite(loss)

    return step


def make_epoch(static, optimizer: optax.GradientTransformation, config: TrainConfig):
    """The whole epoch as one compiled program: shuffle, batch, and `lax.scan` the step.

    Returns epoch(params, opt_state, x_train, key, beta) -> (params, opt_state, mean bounds, all finite),
    the mean bounds a dict like `batch_loss`'s sums; beta, the KL weight, is traced (no recompilation).
    """
    step = make_step(static, optimizer, config)

    def epoch(params, opt_state, x, key, beta):
        n = x.shape[0]
        order_key, steps_key = jax.random.split(key)
        idx, weights = batch_indices(jax.random.permutation(order_key, n), min(config.batch_size, n))
        keys = jax.random.split(steps_key, idx.shape[0])

        def body(carry, batch):
            params, opt_state = carry
            i, w, k = batch
            params, opt_state, sums, finite = step(params, opt_state, x[i], w, k, beta)
            return (params, opt_state), (sums, finite)

        (params, opt_state), (sums, finite) = jax.lax.scan(body, (params, opt_state), (idx, weights, keys))
        return params, opt_state, jax.tree.map(lambda s: jnp.sum(s) / n, sums), jnp.all(finite)

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


def fit(config: RunConfig, data: Dataset, run_dir: Path, *, resume: bool = False, progress: bool = True) -> VAE:
    """Train, writing config, metrics, checkpoints and figures to `run_dir`; returns the model."""
    from jaxvae import plots

    check_data(data, config)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        state = init_state(config)
        if resume:
            state = checkpoint.restore(latest_checkpoint(run_dir), state)
            _truncate_metrics(run_dir / METRICS, int(state.epoch))
        else:
            config.save(run_dir / CONFIG)
            (run_dir / METRICS).write_text("")
        vae = _train_epochs(config, data, run_dir, state, progress)
    except BaseException:
        if created and not any((run_dir / CHECKPOINTS).glob("*.eqx")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    plots.write_figures(vae, data, config, run_dir / FIGURES, read_metrics(run_dir))
    return vae


def _train_epochs(config: RunConfig, data: Dataset, run_dir: Path, state: TrainState, progress: bool) -> VAE:
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
        began = time.perf_counter()
        beta = kl_weight(tc.beta, tc.kl_warmup_epochs, epoch)
        params, opt_state, train, finite = epoch_fn(
            params, opt_state, x_train, epoch_key(tc.seed, epoch), jnp.asarray(beta, jnp.float32)
        )
        train = {k: float(v) for k, v in train.items()}  # waits for the epoch
        train_elbo = train["elbo"]
        trained = time.perf_counter()
        if not bool(finite):
            raise FloatingPointError(
                f"non-finite loss in epoch {epoch}: stopped; the last good checkpoint is in {run_dir / CHECKPOINTS}"
            )
        vae = eqx.combine(params, static)
        test = {k: float(v) for k, v in mean_elbo(vae, x_test, test_key).items()}
        record = {
            "epoch": epoch,
            "train_elbo": train_elbo,
            "test_elbo": test["elbo"],
            "test_reconstruction": test["reconstruction"],
            "test_kl": test["kl"],
            "beta": beta,
            "seconds": time.perf_counter() - began,
            "examples_per_second": len(x_train) / (trained - began),
        }
        if "iwae_bound" in train:
            record["train_iwae_bound"] = train["iwae_bound"]
        if len(x_valid):
            record["validation_elbo"] = float(mean_elbo(vae, x_valid, valid_key)["elbo"])
        state = TrainState(vae, opt_state, jnp.asarray(epoch, jnp.int32))
        _save_checkpoint(run_dir, state)
        if record.get("validation_elbo", -np.inf) > best_elbo:
            best_elbo, best_epoch = record["validation_elbo"], epoch
            checkpoint.save(run_dir / CHECKPOINTS / BEST_CHECKPOINT, state)
        with open(run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(train_elbo=f"{train_elbo:.2f}", test_elbo=f"{test['elbo']:.2f}")
        if tc.early_stopping and epoch - best_epoch >= tc.early_stopping:
            break  # early stopping: no better validation ELBO for `early_stopping` epochs
    bar.close()
    return eqx.combine(params, static)


def _best_validation(records: list[dict]) -> tuple[float, int]:
    """(best validation ELBO, its epoch) among the epochs done; (-inf, last epoch) if none has one."""
    scored = [r for r in records if "validation_elbo" in r]
    if not scored:
        return -np.inf, records[-1]["epoch"] if records else 0
    best = max(scored, key=lambda r: r["validation_elbo"])
    return best["validation_elbo"], best["epoch"]


def _save_checkpoint(run_dir: Path, state: TrainState) -> None:
    folder = run_dir / CHECKPOINTS
    checkpoint.save(folder / f"epoch-{int(state.epoch):05d}.eqx", state)
    for old in sorted(folder.glob("epoch-*.eqx"))[:-KEEP_CHECKPOINTS]:
        old.unlink()


def latest_checkpoint(run_dir: Path) -> Path:
    found = sorted((run_dir / CHECKPOINTS).glob("epoch-*.eqx"))
    if not found:
        raise InputError(f"{run_dir} has no checkpoint to load")
    return found[-1]


def _truncate_metrics(path: Path, epochs: int) -> None:
    """Keep the metrics of the first `epochs` epochs: those the checkpoint includes."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= epochs]
    path.write_text("".join(line + "\n" for line in kept))


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def load(run_dir: str | Path) -> VAE:
    """The trained model of a run folder, from its latest checkpoint."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / CONFIG)
    return checkpoint.restore(latest_checkpoint(run_dir), init_state(config)).vae
