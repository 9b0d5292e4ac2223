"""Variational bounds on log p(x), per example, in nats (higher is better), and the objectives that train on them.

The bound functions (`elbo`, `iwae`, `miwae`, `ciwae`) take a batch x of shape (n, d) and return values of
shape (n,); for a conditional model, with its condition c (n, m), bounds on log p(x | c). An objective is an
Equinox module: `objective(vae, x, weights, key=key, c=c)` returns the loss to minimize (a scalar: the
weighted mean over the batch of minus its bound, padding having weight 0) and the per-example bounds it
reports, a dict of (n,) arrays that always holds the true (beta = 1) `elbo`. Its scalar settings (beta, free
bits) are array fields, traced: a KL warm-up or a sweep changes them without compiling again. Each objective
knows the bound it trains: the key it reports it under (`bound_key`, what is validated for early stopping) and
its `name` as the literature writes it (ELBO, L_5, MIWAE(2, 5)). `builder.build_objective` makes one from a
run's configuration.

Gradient estimators (`Reparam`, `STL`, `DReG`) change the gradient: every reported bound, and the loss of
the importance-weighted objectives, is the standard estimator's on the same draws (the ELBO's loss with STL
estimates its KL at the draws instead of in closed form; see `Elbo`). They are written through three copies of
the log weights log w_k = log p(x, z_k) - log q(z_k | x) with equal values (`LogWeights`): one whose
gradient reaches what p depends on at fixed z (the decoder, the prior), one whose gradient reaches only
what q depends on (along z's path, and for `Reparam` through q's density too), and the standard one.
A bound that is a mean of L_K over groups of draws has per-draw weights dL/dlog w_k = w~_k / M (w~ the
weights normalized in each group); the estimators weight the encoder's path by w~_k / M (STL, the score
term dropped) or by w~_k^2 / M (DReG, Tucker et al. 2018), and the decoder by w~_k / M, as the standard
estimator does. A prior that depends on the encoder (the VampPrior) keeps that dependence, at the weight
w~_k / M, in the decoder's copy: the DReG identity replaces q's score term only, so the estimator stays
unbiased for IWAE.
"""

import abc
import math
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.distributions import Distribution, kl_terms
from jaxvae.model import LatentModel, posterior


class ElboTerms(NamedTuple):
    """ELBO = reconstruction - kl, each of shape (n,), in nats."""

    elbo: Array
    reconstruction: Array
    kl: Array


def elbo(
    vae: LatentModel,
    x: Array,
    *,
    key: Array,
    samples: int = 1,
    params: Array | None = None,
    c: Array | None = None,
) -> ElboTerms:
    """ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)), or with a condition c (n, m) ELBO(x | c) =
    E_q[log p(x|z, c)] - KL(q(z|x, c) || p(z|c)).

    The expectation is the mean over `samples` reparameterized draws z ~ q(z|x) (for the seed's
    q, z = mu + sigma * eps); the KL is in closed form where the pair (q, p) has one, otherwise the
    Monte Carlo estimate log q(z) - log p(z) at the same draws (`distributions.kl_terms`).
    q is the encoder's, or the model's `posterior_at(params)` for `params` (n, posterior.size) when given.
    """
    reconstruction, kl_parts = _reconstruction_and_kl(vae, x, key=key, samples=samples, params=params, c=c)
    kl = jnp.sum(kl_parts, axis=-1)
    return ElboTerms(reconstruction - kl, reconstruction, kl)


def _reconstruction_and_kl(
    vae: LatentModel, x: Array, *, key: Array, samples: int, params: Array | None = None, c: Array | None = None
) -> tuple[Array, Array]:
    """The S-sample estimate of E_q[log p(x|z, c)], shape (n,), and the KL as `kl_terms` splits it, (n, terms)."""
    q = posterior(vae, x, params, c)
    z, log_q = q.sample_and_log_prob(key, (samples,))  # (S, n, k), (S, n)
    reconstruction = jnp.mean(vae.decode(z, c).log_prob(x), axis=0)
    return reconstruction, kl_terms(q, vae.prior(c), z, log_q)


def weighted_mean(values: Array, weights: Array) -> Array:
    """sum_i w_i v_i / sum_i w_i over the first axis: the mean over a batch whose padding has weight 0."""
    return jnp.tensordot(weights, values, axes=1) / jnp.sum(weights)


def free_bits_kl(kl_parts: Array, weights: Array, free_bits: Array | float, dims: int | tuple[int, ...]) -> Array:
    """sum_j max(lambda_j, mean over the batch of KL_j), a scalar in nats: the "free bits" of Kingma et al. (2016).

    kl_parts (n, terms): the KL split into terms, one per latent dimension where it separates, one per
    layer of a deep model, else one; weights (n,). `dims` is the latent dimension, shared evenly by the
    terms, or the dimensions of each term (a deep model's layer sizes). Each term is granted `free_bits`
    nats per dimension it covers; a term whose batch-mean KL is below its share costs the share and gets no
    gradient. With free_bits = 0 this is the batch mean of the summed KL.
    """
    share = free_bits * (jnp.asarray(dims) if isinstance(dims, tuple) else dims // kl_parts.shape[-1])
    return jnp.sum(jnp.maximum(share, weighted_mean(kl_parts, weights)))


def elbo_loss(
    vae: LatentModel,
    x: Array,
    weights: Array,
    *,
    key: Array,
    samples: int = 1,
    beta: Array | float = 1.0,
    free_bits: Array | float = 0.0,
    c: Array | None = None,
) -> tuple[Array, ElboTerms]:
    """The training loss -(mean_n E_q[log p(x|z)] - beta * free_bits_kl) and the true (beta = 1) ELBO terms.

    x (n, d) with weights (n,) and the condition c (n, m) or None; the loss is a scalar, the terms have shape
    (n,). `beta` may be traced.
    """
    reconstruction, kl_parts = _reconstruction_and_kl(vae, x, key=key, samples=samples, c=c)
    kl_cost = free_bits_kl(kl_parts, weights, free_bits, vae.sizes if len(vae.sizes) > 1 else vae.latent_dim)
    loss = beta * kl_cost - weighted_mean(reconstruction, weights)
    kl = jnp.sum(kl_parts, axis=-1)
    return loss, ElboTerms(reconstruction - kl, reconstruction, kl)


def kl_weight(beta: float, warmup_epochs: int, epoch: int) -> float:
    """The KL weight of epoch `epoch` (1-based): beta * (epoch - 1) / warmup_epochs, rising linearly
    from 0 in the first epoch to beta after `warmup_epochs` epochs, then beta; beta when there is no warm-up."""
    if warmup_epochs == 0:
        return beta
    return beta * min(1.0, (epoch - 1) / warmup_epochs)


def log_importance_weights(
    vae: LatentModel, x: Array, *, key: Array, samples: int, params: Array | None = None, c: Array | None = None
) -> Array:
    """log p(x|z_k, c) + log p(z_k|c) - log q(z_k|x, c) for z_k ~ q(z|x, c), shape (samples, n), c (n, m) or
    None; q is the encoder's, or the model's `posterior_at(params)` for `params` (n, posterior.size) when given."""
    q = posterior(vae, x, params, c)
    z, log_q = q.sample_and_log_prob(key, (samples,))
    return vae.decode(z, c).log_prob(x) + vae.prior(c).log_prob(z) - log_q


def iwae(vae: LatentModel, x: Array, *, key: Array, samples: int, c: Array | None = None) -> Array:
    """Importance-weighted bound L_K(x) = logsumexp_k log w_k - log K, shape (n,) (of log p(x | c) with c).

    L_1 is the ELBO in expectation; L_K rises towards log p(x) as K grows.
    """
    return log_mean_exp(log_importance_weights(vae, x, key=key, samples=samples, c=c))


def miwae(vae: LatentModel, x: Array, *, key: Array, groups: int, samples: int, c: Array | None = None) -> Array:
    """MIWAE(M, K) = (1/M) sum_m L_K over M groups of K draws (Rainforth et al. 2018), shape (n,); draw
    m * K + k of `log_importance_weights(samples=M * K)` is draw k of group m."""
    return group_bound(log_importance_weights(vae, x, key=key, samples=groups * samples, c=c), groups)


def ciwae(
    vae: LatentModel, x: Array, *, key: Array, samples: int, beta: Array | float, c: Array | None = None
) -> Array:
    """CIWAE(beta) = beta * ELBO + (1 - beta) * L_K on the same K draws (Rainforth et al. 2018), shape (n,);
    the ELBO is mean_k log w_k."""
    return ciwae_bound(log_importance_weights(vae, x, key=key, samples=samples, c=c), beta)


def ciwae_bound(log_w: Array, beta: Array | float) -> Array:
    """beta * mean_k log w_k + (1 - beta) * L_K of the draws log_w (K, n): (n,)."""
    return beta * jnp.mean(log_w, axis=0) + (1 - beta) * log_mean_exp(log_w)


def log_mean_exp(log_w: Array) -> Array:
    """log (1/K sum_k exp(log_w_k)) over the first axis, computed stably."""
    return jax.nn.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


def group_bound(log_w: Array, groups: int) -> Array:
    """The mean over `groups` consecutive groups of the draws log_w (M * K, n) of each group's L_K: (n,)."""
    return jnp.mean(log_mean_exp(log_w.reshape(groups, -1, *log_w.shape[1:]).swapaxes(0, 1)), axis=0)


def group_weights(log_w: Array, groups: int) -> Array:
    """w~_k / M, the weights normalized within each of `groups` groups of log_w (M * K, n), over M: the
    derivative of `group_bound` by each log w_k, shape (M * K, n)."""
    grouped = log_w.reshape(groups, -1, *log_w.shape[1:])
    return (jax.nn.softmax(grouped, axis=1) / groups).reshape(log_w.shape)


def stopped(tree):
    """`tree` with every array's gradient stopped (its other leaves, e.g. activation functions, kept)."""
    arrays, rest = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.lax.stop_gradient(arrays), rest)


class LogWeights(NamedTuple):
    """log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x) of K draws z_k ~ q(z|x), three ways with equal
    values, each (K, n): `value` with the standard reparameterized gradient; `model` with z fixed, so that
    only what p depends on gets a gradient; `inference` with p's parameters stopped, so that only what q
    depends on does: along z's path, and through q's density with `Reparam` (stopped with STL and DReG)."""

    value: Array
    model: Array
    inference: Array


class Gradient(eqx.Module):
    """A gradient estimator: how the encoder's gradient weights each draw of a bound made of groups."""

    @abc.abstractmethod
    def encoder_log_q(self, q: Distribution, z: Array, log_q: Array) -> Array:
        """log q(z) as the encoder's gradient sees it, shape (K, n): `log_q` as drawn, or q's parameters stopped."""

    @abc.abstractmethod
    def path_weights(self, weights: Array, groups: int) -> Array:
        """The weight of each draw on the encoder's path, from `group_weights` (M * K, n)."""


class Reparam(Gradient):
    """The standard reparameterized gradient of the bound itself."""

    def encoder_log_q(self, q, z, log_q):
        return log_q

    def path_weights(self, weights, groups):
        return weights


class STL(Gradient):
    """Sticking the landing (Roeder et al. 2017): q's score term dropped (log q with its parameters stopped,
    the path through z kept). Unbiased for the ELBO, with zero variance where q is the exact posterior;
    biased for L_K with K > 1."""

    def encoder_log_q(self, q, z, log_q):
        return stopped(q).log_prob(z)

    def path_weights(self, weights, groups):
        return weights


class DReG(Gradient):
    """Doubly reparameterized gradients (Tucker et al. 2018): q's score term replaced by its reparameterized
    equal, which weighs the encoder's path by the squared normalized weights w~_k^2 (over the groups, M).
    Unbiased for L_K and MIWAE; at K = 1 it is STL."""

    def encoder_log_q(self, q, z, log_q):
        return stopped(q).log_prob(z)

    def path_weights(self, weights, groups):
        return groups * weights**2


def log_weights(
    vae: LatentModel, x: Array, *, key: Array, samples: int, gradient: Gradient, c: Array | None = None
) -> LogWeights:
    """The `LogWeights` of `samples` draws per example of x (n, d) (and its condition c (n, m), if any), for
    `gradient`'s encoder copy.

    Under `jax.jit` the copies share their forward computation (a stopped gradient is the identity there)."""
    q = vae.encode(x, c)
    z, log_q = q.sample_and_log_prob(key, (samples,))
    log_p = vae.decode(z, c).log_prob(x) + vae.prior(c).log_prob(z)
    fixed = jax.lax.stop_gradient(z)
    model = vae.decode(fixed, c).log_prob(x) + vae.prior(c).log_prob(fixed) - jax.lax.stop_gradient(log_q)
    frozen = stopped(vae)
    inference = frozen.decode(z, c).log_prob(x) + frozen.prior(c).log_prob(z) - gradient.encoder_log_q(q, z, log_q)
    return LogWeights(log_p - log_q, model, inference)


def surrogate(w: LogWeights, gradient: Gradient, groups: int, model_groups: int | None = None) -> Array:
    """Per example (n,): the value of `group_bound(w.value, model_groups)` with the gradient of `gradient` for
    the bound of `groups` groups at the encoder and of `model_groups` (default `groups`) at the decoder."""
    model_groups = groups if model_groups is None else model_groups
    if isinstance(gradient, Reparam) and model_groups == groups:  # the bound itself
        return group_bound(w.value, groups)
    weights = gradient.path_weights(group_weights(jax.lax.stop_gradient(w.value), groups), groups)
    path = jnp.sum(jax.lax.stop_gradient(weights) * (w.inference - jax.lax.stop_gradient(w.inference)), axis=0)
    return group_bound(w.model, model_groups) + path


class Objective(eqx.Module):
    """A training objective: `objective(vae, x, weights, key=key, c=c)` -> (loss, bounds) for x (n, d) with weights
    (n,) and a conditional model's condition c (n, m) (None without one): the loss a scalar, the bounds a dict
    of per-example values (n,) in nats, `elbo` among them and `bound_key`, the bound it trains (at beta = 1),
    whose `name` is as the literature writes it."""

    bound_key: ClassVar[str]

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The trained bound as the literature writes it: ELBO, L_5 (K = 5), MIWAE(2, 5), CIWAE(0.5)."""

    @abc.abstractmethod
    def __call__(
        self, vae: LatentModel, x: Array, weights: Array, *, key: Array, c: Array | None = None
    ) -> tuple[Array, dict[str, Array]]: ...

    def with_kl_weight(self, beta: Array | float) -> "Objective":
        """This objective with its KL weighted by `beta` (an epoch of warm-up); unchanged where it has no KL weight."""
        return self


class Elbo(Objective):
    """The ELBO with S = `samples` draws, its KL weighted by `beta` and granted `free_bits` nats per latent
    dimension (Kingma et al. 2016): loss -(mean reconstruction - beta * free_bits_kl) with `Reparam` (the KL in
    closed form where the pair has one). STL and DReG (the same at one importance sample) estimate the KL at
    the draws with q's parameters stopped: loss -(mean reconstruction - beta * mean KL), without free bits.
    Reports `elbo`, the true (beta = 1) ELBO with the KL as `kl_terms` computes it."""

    beta: Array | float = 1.0
    free_bits: Array | float = 0.0
    samples: int = eqx.field(static=True, default=1)
    gradient: Gradient = Reparam()
    bound_key: ClassVar[str] = "elbo"

    @property
    def name(self) -> str:
        """ELBO."""
        return "ELBO"

    def __call__(self, vae, x, weights, *, key, c=None):
        if isinstance(self.gradient, Reparam):
            loss, terms = elbo_loss(
                vae, x, weights, key=key, samples=self.samples, beta=self.beta, free_bits=self.free_bits, c=c
            )
            return loss, {"elbo": terms.elbo}
        q = vae.encode(x, c)
        z, log_q = q.sample_and_log_prob(key, (self.samples,))
        reconstruction = jnp.mean(vae.decode(z, c).log_prob(x), axis=0)
        prior = vae.prior(c)
        kl = jnp.mean(self.gradient.encoder_log_q(q, z, log_q) - prior.log_prob(z), axis=0)
        loss = weighted_mean(self.beta * kl - reconstruction, weights)
        reported_kl = jnp.sum(jax.lax.stop_gradient(kl_terms(q, prior, z, log_q)), axis=-1)
        return loss, {"elbo": jax.lax.stop_gradient(reconstruction) - reported_kl}

    def with_kl_weight(self, beta):
        return eqx.tree_at(lambda o: o.beta, self, beta)


class Iwae(Objective):
    """The importance-weighted bound L_K with K = `samples` (Burda et al. 2015). Reports `elbo`
    (mean_k log w_k, an unbiased estimate on the same draws) and `iwae_bound`, L_K."""

    samples: int = eqx.field(static=True, default=1)
    gradient: Gradient = Reparam()
    bound_key: ClassVar[str] = "iwae_bound"

    @property
    def name(self) -> str:
        """L_K with K = `samples`."""
        return f"L_{self.samples}"

    def __call__(self, vae, x, weights, *, key, c=None):
        if isinstance(self.gradient, Reparam):  # the bound itself: no copies to differentiate
            log_w = log_importance_weights(vae, x, key=key, samples=self.samples, c=c)
            bound = log_mean_exp(log_w)
            return -jnp.sum(weights * bound) / jnp.sum(weights), {"elbo": jnp.mean(log_w, 0), "iwae_bound": bound}
        w = log_weights(vae, x, key=key, samples=self.samples, gradient=self.gradient, c=c)
        loss = -weighted_mean(surrogate(w, self.gradient, 1), weights)
        return loss, _reported(w.value, iwae_bound=log_mean_exp(w.value))


class Miwae(Objective):
    """MIWAE(M, K): the mean of M = `groups` independent L_K, K = `samples` (Rainforth et al. 2018). Reports
    `elbo`, `miwae_bound` and `iwae_bound`, L_MK over all M * K draws."""

    groups: int = eqx.field(static=True, default=1)
    samples: int = eqx.field(static=True, default=1)
    gradient: Gradient = Reparam()
    bound_key: ClassVar[str] = "miwae_bound"

    @property
    def name(self) -> str:
        """MIWAE(M, K) with M = `groups`, K = `samples`."""
        return f"MIWAE({self.groups}, {self.samples})"

    def __call__(self, vae, x, weights, *, key, c=None):
        w = log_weights(vae, x, key=key, samples=self.groups * self.samples, gradient=self.gradient, c=c)
        bound = surrogate(w, self.gradient, self.groups)
        return -weighted_mean(bound, weights), _reported(
            w.value, miwae_bound=group_bound(w.value, self.groups), iwae_bound=log_mean_exp(w.value)
        )


class Piwae(Objective):
    """PIWAE(M, K) (Rainforth et al. 2018): the decoder trained on L_MK and the encoder on MIWAE(M, K), from
    the same M * K draws. The loss is -L_MK. Reports `elbo`, `iwae_bound` (L_MK) and `miwae_bound`."""

    groups: int = eqx.field(static=True, default=1)
    samples: int = eqx.field(static=True, default=1)
    gradient: Gradient = Reparam()
    bound_key: ClassVar[str] = "iwae_bound"  # its loss

    @property
    def name(self) -> str:
        """L_MK, the bound the loss is."""
        return f"L_{self.groups * self.samples}"

    def __call__(self, vae, x, weights, *, key, c=None):
        w = log_weights(vae, x, key=key, samples=self.groups * self.samples, gradient=self.gradient, c=c)
        bound = surrogate(w, self.gradient, self.groups, model_groups=1)
        return -weighted_mean(bound, weights), _reported(
            w.value, iwae_bound=log_mean_exp(w.value), miwae_bound=group_bound(w.value, self.groups)
        )


class Ciwae(Objective):
    """CIWAE(beta) = beta * ELBO + (1 - beta) * L_K on the same K = `samples` draws (Rainforth et al. 2018);
    `beta` in [0, 1] is traced. Reports `elbo`, `iwae_bound` and `ciwae_bound`."""

    beta: Array | float = 0.5
    samples: int = eqx.field(static=True, default=1)
    gradient: Gradient = Reparam()
    bound_key: ClassVar[str] = "ciwae_bound"

    @property
    def name(self) -> str:
        """CIWAE(beta)."""
        return f"CIWAE({float(self.beta):g})"

    def __call__(self, vae, x, weights, *, key, c=None):
        w = log_weights(vae, x, key=key, samples=self.samples, gradient=self.gradient, c=c)
        elbo_part = surrogate(w, self.gradient, self.samples)  # the ELBO: the bound of K groups of one draw
        bound = self.beta * elbo_part + (1 - self.beta) * surrogate(w, self.gradient, 1)
        return -weighted_mean(bound, weights), _reported(
            w.value, iwae_bound=log_mean_exp(w.value), ciwae_bound=ciwae_bound(w.value, self.beta)
        )


def _reported(log_w: Array, **bounds: Array) -> dict[str, Array]:
    """The bounds an objective reports, gradients stopped: `elbo` (mean_k log w_k) and `bounds`, each (n,)."""
    return jax.lax.stop_gradient({"elbo": jnp.mean(log_w, axis=0), **bounds})
