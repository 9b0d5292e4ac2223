"""Training M2 (`semisupervised`): a few labelled examples and many unlabelled ones, every step a fixed ratio
of both (`labels.step_plan`), the epoch one compiled loop over the steps (`looping`), the optimizer,
binarization and gradient estimator of a `TrainConfig` as `train` builds them. `M2Trainer` trains an epoch at
a time; `train.fit` runs it in a run folder, with checkpoints and records (`jaxvae train --labels N`).

Random numbers: the labelled subset is drawn by the label seed; epoch e's step plan by a NumPy generator
seeded with (seed, e); its steps' keys (draws of z, dynamic binarization) fold e into the run's epoch key.
"""

import dataclasses
import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.sharding import Mesh

from jaxvae import looping, model_file, parallel
from jaxvae.builder import build_binarization, build_objective, build_optimizer, precision
from jaxvae.config import ModelConfig, TrainConfig
from jaxvae.errors import Diverged
from jaxvae.keys import Run, run_key
from jaxvae.labels import labelled_batch_size, labelled_subset, step_plan
from jaxvae.networks import with_precision
from jaxvae.semisupervised import M2, SemiSupervisedVAE, predict

PLAN_SEED = 1  # the NumPy generator of epoch e's step plan is seeded with (train seed, PLAN_SEED, e)


def build_semisupervised(config: ModelConfig, classes: int, *, key: Array) -> SemiSupervisedVAE:
    """M2's parts from `config`: the conditional model `build_model` makes of it with `condition_dim` C =
    `classes`, and a classifier x (d,) -> C logits, the network `builder.network` makes of the encoder's
    architecture, activation and widths (`model_file.build_m2` with the default function). The key's halves
    draw the two."""
    return model_file.build_m2(dataclasses.replace(config, condition_dim=classes), key, model_file.default_build)


def make_epoch(
    static, optimizer: optax.GradientTransformation, config: TrainConfig, mesh: Mesh | None = None
) -> Callable:
    """The compiled epoch: epoch(params, opt_state, x_l (n_l, d), y_l (n_l,), x_u (n_u, d), plan (a
    `labels.StepPlan`), key, objective (an `M2`)) -> (params, opt_state, the steps' summed figures, all finite),
    params and opt_state donated; each step draws its dynamic binarization of both batches, then takes an
    optimizer step on the objective's loss. With a `mesh`, each unlabelled batch and its weights are split
    across its devices (the few labelled draws of a step go whole to each)."""
    dtype, binarization = precision(config), build_binarization(config)

    def loss(params, x_l, y_l, x_u, w_u, key, objective):
        model = with_precision(eqx.combine(params, static), dtype)
        return objective(model, x_l, y_l, x_u, w_u, key=key)

    def step(carry, batch, x_l, y_l, x_u, objective):
        params, opt_state = carry
        unlabelled, w_u, labelled, key = batch
        key, xl = binarization.in_step(key, x_l[labelled])
        key, xu = binarization.in_step(key, x_u[unlabelled])
        xu, w_u = parallel.shard_batch(xu, mesh), parallel.shard_batch(w_u, mesh)
        (value, sums), grads = jax.value_and_grad(loss, has_aux=True)(
            params, xl, y_l[labelled], xu, w_u, key, objective
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), ({"loss": value, **sums}, jnp.isfinite(value))

    def epoch(loop, params, opt_state, x_l, y_l, x_u, plan, key, objective):
        batches = (*plan, jax.random.split(key, plan.unlabelled.shape[0]))
        (params, opt_state), (sums, finite) = loop.scan(step, (params, opt_state), batches, x_l, y_l, x_u, objective)
        return params, opt_state, jax.tree.map(jnp.sum, sums), jnp.all(finite)

    replicated = None if mesh is None else parallel.replicated(mesh)  # outputs as the inputs: no recompiling
    jit = functools.partial(jax.jit, donate_argnums=(0, 1), out_shardings=replicated)
    return looping.for_model(static).compile(epoch, jit)


_predict = eqx.filter_jit(predict)


def classify(model: SemiSupervisedVAE, x: np.ndarray, chunk: int = 2000) -> np.ndarray:
    """argmax_y q(y | x) of x (n, d), in chunks of `chunk` examples: (n,) int labels."""
    return np.concatenate([np.asarray(_predict(model, jnp.asarray(x[i : i + chunk]))) for i in range(0, len(x), chunk)])


class M2Trainer:
    """M2's training on one data set, made once: the labelled subset, the step sizes, the objective, the
    optimizer and the compiled epoch; `epoch(e)` trains epoch e from the state it holds (`params`, `opt_state`).

    x_train (n, d) in [0, 1], of which `labels` keep their labels y_train (n,) (`labels.labelled_subset`, drawn
    by `label_seed`, default `config.seed`). Each step sees B_u = `config.batch_size` unlabelled and B_l
    labelled examples (default `labels.labelled_batch_size`); the per-class bound is `config`'s objective and
    gradient estimator, the classification term's weight the paper's `alpha` (default 0.1 N). `opt_state`: the
    optimizer's state to continue from (a resumed run's), else a fresh one. The trainer trains copies: `model`
    and `opt_state` stay as they are."""

    def __init__(
        self,
        model: SemiSupervisedVAE,
        x_train: np.ndarray,
        y_train: np.ndarray,
        config: TrainConfig,
        *,
        labels: int,
        label_seed: int | None = None,
        alpha: float | None = None,
        labelled_batch: int | None = None,
        opt_state: optax.OptState | None = None,
        mesh: Mesh | None = None,
    ):
        seed = config.seed if label_seed is None else label_seed
        kept, rest = labelled_subset(y_train, labels, model.classes, seed)
        x = build_binarization(config).training(np.asarray(x_train, np.float32), config.seed)
        data = (x[kept], np.asarray(y_train[kept], np.int32), x[rest])
        data = jax.tree.map(jnp.asarray, data) if mesh is None else parallel.replicate(data, mesh)
        self.x_l, self.y_l, self.x_u = data
        n_l, n_u = len(kept), len(rest)
        self.batch_u = min(config.batch_size, n_u)
        self.batch_l = labelled_batch or labelled_batch_size(self.batch_u, n_l, n_u)
        inner = build_objective(config)
        self.objective = (
            M2.with_paper_alpha(inner, n_l, n_u) if alpha is None else M2(inner, jnp.float32(alpha), n_l, n_u)
        )
        optimizer = build_optimizer(config)
        params, self.static = eqx.partition(model, eqx.is_inexact_array)
        opt_state = optimizer.init(params) if opt_state is None else opt_state
        if mesh is None:
            self.params, self.opt_state = jax.tree.map(jnp.copy, (params, opt_state))  # the epochs donate theirs
        else:
            self.params, self.opt_state = parallel.replicate((params, opt_state), mesh)
        self.run_epoch = make_epoch(self.static, optimizer, config, mesh)
        self.seed, self.mesh = config.seed, mesh

    def epoch(self, e: int, kl_weight: float | None = None) -> dict[str, float]:
        """Train epoch e (1-based), its step plan and keys derived from the seed and e (a resumed run continues
        the same stream), the KL of z weighted by `kl_weight` (a warm-up's beta; None: the config's `beta`).
        Returns the means of the epoch: `loss` per step; `labelled_bound`, `log_q_y` and `labelled_accuracy` per
        labelled draw; `unlabelled_bound` per unlabelled example (the bounds at KL weight 1). Raises `Diverged`
        on a non-finite loss."""
        n_l, n_u = self.objective.labelled, self.objective.unlabelled
        plan = step_plan(np.random.default_rng((self.seed, PLAN_SEED, e)), n_l, n_u, self.batch_u, self.batch_l)
        key = jax.random.fold_in(run_key(self.seed, Run.EPOCH), e)
        objective = self.objective if kl_weight is None else self.objective.with_kl_weight(jnp.float32(kl_weight))
        if self.mesh is not None:
            plan, key = parallel.replicate((plan, key), self.mesh)
        self.params, self.opt_state, sums, finite = self.run_epoch(
            self.params, self.opt_state, self.x_l, self.y_l, self.x_u, plan, key, objective
        )
        sums, finite = parallel.local_copy((sums, finite))
        if not bool(finite):
            raise Diverged(f"non-finite loss in epoch {e}: training stopped (try a smaller lr)")
        steps = plan.unlabelled.shape[0]
        draws = steps * self.batch_l
        return {
            "loss": float(sums["loss"]) / steps,
            "labelled_bound": float(sums["labelled_bound"]) / draws,
            "log_q_y": float(sums["log_q_y"]) / draws,
            "labelled_accuracy": float(sums["correct"]) / draws,
            "unlabelled_bound": float(sums["unlabelled_bound"]) / n_u,
        }

    def model(self) -> SemiSupervisedVAE:
        """The model now (on this process's first device)."""
        return eqx.combine(parallel.local_copy(self.params), self.static)
