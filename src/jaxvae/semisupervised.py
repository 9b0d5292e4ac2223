"""The semi-supervised VAE M2 of Kingma, Rezende, Mohamed and Welling (2014): its bounds, its objective and its
classification scores.

M2 is p(y) p(z) p(x | y, z) with p(y) uniform over C classes, learned with q(z | x, y) q(y | x): a conditional
VAE on the one-hot label (`condition_dim` C) and a classifier, any network of one example x (d,) -> C logits.
A labelled example's bound is L(x, y) = B(x | y) + log p(y), B a bound on log p(x | y) (the ELBO, L_K, ...);
an unlabelled one's is U(x) = sum_y q(y | x) (L(x, y) - log q(y | x)), the sum over all C classes exact, in one
batched computation (`jax.vmap` over the one-hot classes: the networks add W_c c to their first layer apart
from W_x x, so W_x x is computed once for all classes). Over a data set of n_l labelled and n_u unlabelled
examples (N = n_l + n_u) the objective is the paper's J^alpha = sum_l L(x, y) + sum_u U(x) + alpha E_l[log q(y |
x)], with alpha = 0.1 N: each labelled example's log q(y | x) weighs alpha / n_l (in Kingma's code
`learn_yz_x_ss.py`, beta = alpha n_tot / n_labeled with alpha = 0.1).

Bounds are per example, in nats (higher is better); x (n, d), labels y (n,) integers or their one-hot (n, C).
"""

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxvae.model import LatentModel
from jaxvae.networks import map_examples
from jaxvae.objectives import Objective, elbo, iwae

PAPER_ALPHA = 0.1  # Kingma et al. (2014) train with alpha = 0.1 N


class SemiSupervisedVAE(eqx.Module):
    """M2's parts: `vae`, a conditional model of x given the one-hot label (`condition_dim` = C), and
    `classifier`, any network of one example x (d,) -> C logits of q(y | x)."""

    vae: LatentModel
    classifier: Callable[[Array], Array]

    @property
    def classes(self) -> int:
        """C, the number of classes: the conditional model's condition size."""
        return self.vae.condition_dim

    def log_q_y(self, x: Array) -> Array:
        """log q(y | x) of every class for x (n, d): (n, C), normalized over the classes."""
        return jax.nn.log_softmax(map_examples(self.classifier, x), axis=-1)

    def log_p_y(self) -> float:
        """log p(y) = -log C, the uniform prior's log-probability of every class."""
        return -math.log(self.classes)


def _alone(inner: Objective, vae: LatentModel, x: Array, c: Array, key: Array) -> tuple[Array, Array]:
    """(minus inner's loss, inner's reported bound) of one example x (d,) with its condition c (m,)."""
    loss, bounds = inner(vae, x[None], jnp.ones(1), key=key, c=c[None])
    return -loss, bounds[inner.bound_key][0]


def example_bounds(inner: Objective, vae: LatentModel, x: Array, c: Array, *, key: Array) -> tuple[Array, Array]:
    """(the bound that `inner` trains on log p(x | c), the bound it reports) of each of the examples x (n, d) with
    its condition, c (n, m) or one c (m,) for all, alone, each (n,): minus its loss as a batch of one, and its
    `bound_key` value, the same but where the loss weights the KL of z (a warm-up's beta, free bits): the true
    bound then. Its draws from `key` split over the examples; the gradient is inner's estimator's (DReG's
    surrogate has the bound's value); a batch setting such as free bits acts on each example alone. A shared c
    enters the networks once, not once per example."""
    alone = functools.partial(_alone, inner, vae)
    return jax.vmap(alone, in_axes=(0, 0 if c.ndim == 2 else None, 0))(x, c, jax.random.split(key, x.shape[0]))


def class_bounds(inner: Objective, model: SemiSupervisedVAE, x: Array, *, key: Array) -> tuple[Array, Array]:
    """L(x, y) = B(x | y) + log p(y) of every class y for x (n, d), B the bound `inner` trains, and the same of
    the bound it reports (`example_bounds`): (n, C) each, class y's draws those of `example_bounds` with the key
    `jax.random.split(key, C)[y]`. All classes in one computation, a `jax.vmap` over the examples of one over
    the one-hot y: with the classes the inner axis, the gradient's sum over the classes of each example's W_x x
    (computed once) is a sum over a middle axis, which XLA's CPU backend does far faster than one over the
    leading axis (0.2 against 8 ms for 10 x 200 x 500 numbers)."""
    class_keys = jax.random.split(key, model.classes)
    keys = jax.vmap(lambda k: jax.random.split(k, x.shape[0]), out_axes=1)(class_keys)  # (n, C) keys
    alone = functools.partial(_alone, inner, model.vae)

    def of_example(xi, ki):
        return jax.vmap(alone, in_axes=(None, 0, 0))(xi, jnp.eye(model.classes), ki)

    trained, reported = jax.vmap(of_example)(x, keys)  # (n, C) each
    return trained + model.log_p_y(), reported + model.log_p_y()


def unlabelled_bound(log_q_y: Array, bounds: Array) -> Array:
    """U(x) = sum_y q(y | x) (L(x, y) - log q(y | x)) from log q(y | x) (n, C) and L(x, y) (n, C): (n,), a lower
    bound on log p(x) that the class bounds' gaps and KL(q(y | x) || p(y | x)) separate from it."""
    return jnp.sum(jnp.exp(log_q_y) * (bounds - log_q_y), axis=-1)


class M2(eqx.Module):
    """Kingma et al.'s objective for a step of B_l labelled and B_u unlabelled examples, the per-class bound
    `inner`'s (the ELBO, L_K, with its gradient estimator): the loss

        -[(n_l / B_l) sum_l (L(x, y) + (alpha / n_l) log q(y | x)) + (n_u / B_u) sum_u w_u U(x)] / N,

    N = n_l + n_u (`labelled`, `unlabelled`), w_u 0 for padding: one step's estimate of -J^alpha / N, unbiased
    where its examples are drawn at random. `alpha` is the paper's (`with_paper_alpha`: 0.1 N), traced. A KL
    weight (`with_kl_weight`, a warm-up's beta) weights the KL of z inside every L(x, y), labelled and per class
    in U(x), as the ELBO's of an unlabelled VAE; log p(y) and the entropy of q(y | x) keep their weight 1."""

    inner: Objective
    alpha: Array | float
    labelled: int = eqx.field(static=True)
    unlabelled: int = eqx.field(static=True)

    @classmethod
    def with_paper_alpha(cls, inner: Objective, labelled: int, unlabelled: int) -> "M2":
        """M2 with alpha = 0.1 N, as Kingma et al. (2014) train it."""
        return cls(inner, jnp.float32(PAPER_ALPHA * (labelled + unlabelled)), labelled, unlabelled)

    def with_kl_weight(self, beta: Array | float) -> "M2":
        """This objective with the per-class bound's KL of z weighted by `beta` (`Objective.with_kl_weight`)."""
        return eqx.tree_at(lambda m: m.inner, self, self.inner.with_kl_weight(beta))

    def __call__(
        self,
        model: SemiSupervisedVAE,
        x_labelled: Array,
        y_labelled: Array,
        x_unlabelled: Array,
        weights: Array,
        *,
        key: Array,
    ) -> tuple[Array, dict[str, Array]]:
        """(the loss, the batch's sums): x_labelled (B_l, d) with labels y_labelled (B_l,), x_unlabelled (B_u, d)
        with weights (B_u,) (0 for padding). The sums: `labelled_bound` of L(x, y), `log_q_y` of the labelled
        log q(y | x), `correct` of the labelled examples argmax q(y | x) classifies right, `unlabelled_bound`
        of w U(x), the bounds those the inner objective reports (the true ones under a KL weight), gradients
        stopped."""
        labelled_key, unlabelled_key = jax.random.split(key)
        log_q_l = model.log_q_y(x_labelled)
        c = jax.nn.one_hot(y_labelled, model.classes, dtype=jnp.float32)
        bound_l, reported_l = example_bounds(self.inner, model.vae, x_labelled, c, key=labelled_key)
        log_q_true = jnp.sum(c * log_q_l, axis=-1)
        bounds_u, reported_u = class_bounds(self.inner, model, x_unlabelled, key=unlabelled_key)
        log_q_u = model.log_q_y(x_unlabelled)
        n_l, n_u = self.labelled, self.unlabelled
        labelled_sum = jnp.sum(bound_l + model.log_p_y() + self.alpha / n_l * log_q_true) * n_l / x_labelled.shape[0]
        unlabelled_sum = jnp.sum(weights * unlabelled_bound(log_q_u, bounds_u)) * n_u / x_unlabelled.shape[0]
        loss = -(labelled_sum + unlabelled_sum) / (n_l + n_u)
        sums = {
            "labelled_bound": jnp.sum(reported_l + model.log_p_y()),
            "log_q_y": jnp.sum(log_q_true),
            "correct": jnp.sum(jnp.argmax(log_q_l, axis=-1) == y_labelled).astype(jnp.float32),
            "unlabelled_bound": jnp.sum(weights * unlabelled_bound(log_q_u, reported_u)),
        }
        return loss, jax.lax.stop_gradient(sums)


def unlabelled_elbo(model: SemiSupervisedVAE, x: Array, *, key: Array, samples: int = 1) -> tuple[Array, Array]:
    """U(x) for x (n, d) with the ELBO per class (`samples` draws of z each, class y's from `split(key, C)[y]`),
    and its reconstruction term sum_y q(y | x) E[log p(x | y, z)]: (n,) each."""
    classes, n = model.classes, x.shape[0]

    def of_class(one_hot, k):
        terms = elbo(model.vae, x, key=k, samples=samples, c=jnp.broadcast_to(one_hot, (n, classes)))
        return terms.elbo, terms.reconstruction

    bounds, reconstructions = jax.vmap(of_class)(jnp.eye(classes), jax.random.split(key, classes))  # (C, n) each
    log_q = model.log_q_y(x)
    reconstruction = jnp.sum(jnp.exp(log_q) * reconstructions.T, axis=-1)
    return unlabelled_bound(log_q, bounds.T + model.log_p_y()), reconstruction


def label_summed_out(model: SemiSupervisedVAE, log_p_x_given_y: Array) -> Array:
    """log p(x) = log sum_y p(y) p(x | y) from estimates of log p(x | y) (C, n), one row a class: (n,)."""
    return jax.nn.logsumexp(log_p_x_given_y, axis=0) + model.log_p_y()


def evidence_bounds(model: SemiSupervisedVAE, x: Array, *, key: Array, samples: int) -> dict[str, Array]:
    """Bounds on log p(x) with the label summed out, each (n,) for x (n, d): `unlabelled_bound`, U(x) with the
    ELBO per class (`samples` draws of z each); `iwae_bound`, log sum_y p(y) exp L_K(x | y) with K = `samples`,
    the log of an unbiased estimate of p(x) = sum_y p(y) p(x | y), so a bound in expectation, tighter than U."""
    elbo_key, iwae_key = jax.random.split(key)
    classes, n = model.classes, x.shape[0]

    def iwae_of_class(one_hot, k):
        return iwae(model.vae, x, key=k, samples=samples, c=jnp.broadcast_to(one_hot, (n, classes)))

    iwaes = jax.vmap(iwae_of_class)(jnp.eye(classes), jax.random.split(iwae_key, classes))
    return {
        "unlabelled_bound": unlabelled_elbo(model, x, key=elbo_key, samples=samples)[0],
        "iwae_bound": label_summed_out(model, iwaes),
    }


def predict(model: SemiSupervisedVAE, x: Array) -> Array:
    """argmax_y q(y | x) of x (n, d): (n,) int labels."""
    return jnp.argmax(model.log_q_y(x), axis=-1)


def confusion_matrix(y: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(C, C) counts: row the true label, column the predicted one."""
    counts = np.zeros((classes, classes), np.int64)
    np.add.at(counts, (np.asarray(y), np.asarray(predicted)), 1)
    return counts


def classification_errors(y: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, object]:
    """`classification_error`, the fraction of examples misclassified; `per_class`, that fraction among each
    true class's examples (C,) (NaN for a class without examples); `confusion`, the `confusion_matrix`."""
    counts = confusion_matrix(y, predicted, classes)
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = 1 - np.diag(counts) / totals
    return {
        "classification_error": float(1 - np.trace(counts) / counts.sum()),
        "per_class": per_class,
        "confusion": counts,
    }


def held_out_scores(model: SemiSupervisedVAE, rows: Array, key: Array, chunk: int = 1000) -> dict[str, float]:
    """M2's figures on held-out rows [x, one-hot y] (n, d + C), means over the examples: `elbo`, U(x) with one
    draw of the ELBO per class; its parts `reconstruction`, sum_y q(y | x) E[log p(x | y, z)], and `kl`, the
    rest (the KLs of z and of y); `classification_error`, the fraction argmax q(y | x) gets wrong. `chunk`
    examples at a time, chunk i's draws from `fold_in(key, i)`."""
    classes = model.classes
    sums = np.zeros(3)
    for i, start in enumerate(range(0, rows.shape[0], chunk)):
        part = rows[start : start + chunk]
        sums += np.asarray(_held_out_sums(model, part[:, :-classes], part[:, -classes:], jax.random.fold_in(key, i)))
    bound, reconstruction, errors = sums / rows.shape[0]
    return {
        "elbo": bound,
        "reconstruction": reconstruction,
        "kl": reconstruction - bound,
        "classification_error": errors,
    }


@eqx.filter_jit
def _held_out_sums(model: SemiSupervisedVAE, x: Array, c: Array, key: Array) -> Array:
    """The sums over x (n, d) with one-hot labels c (n, C) of U(x), of its reconstruction term and of the
    errors of argmax q(y | x): (3,)."""
    bound, reconstruction = unlabelled_elbo(model, x, key=key)
    errors = predict(model, x) != jnp.argmax(c, axis=-1)
    return jnp.stack([jnp.sum(bound), jnp.sum(reconstruction), jnp.sum(errors)])
