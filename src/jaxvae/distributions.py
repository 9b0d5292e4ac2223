"""Distributions over vectors: latent densities (diagonal and full Gaussians, mixtures, inverse
autoregressive flows), the pixel likelihoods, and the KL divergence chosen by the pair of types.

Every distribution here is a small Equinox module over arrays whose last axis is the event:
`log_prob` sums over that axis and returns the batch shape, in nats. Leading axes are batch axes.
"""

import abc
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

LOG_2PI = math.log(2 * math.pi)


class Distribution(eqx.Module):
    """A density over vectors of size k with reparameterized samples.

    `moment_draws`: 0 where `moments` is exact, else the number of draws behind its Monte Carlo estimate.
    """

    moment_draws: ClassVar[int] = 0

    @abc.abstractmethod
    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        """Reparameterized draws, shape `shape + batch shape + (k,)`."""

    @abc.abstractmethod
    def log_prob(self, z: Array) -> Array:
        """log density at z (..., k), summed over the last axis: the broadcast batch shape."""

    def sample_and_log_prob(self, key: Array, shape: tuple[int, ...] = ()) -> tuple[Array, Array]:
        """Draws as `sample` gives them and their log density (flows compute both in one pass)."""
        z = self.sample(key, shape)
        return z, self.log_prob(z)

    def log_prob_each(self, z: Array) -> Array:
        """log density of every z (..., k) under every member of a batch of shape (C,): shape (..., C)."""
        return self.log_prob(z[..., None, :])

    @abc.abstractmethod
    def moments(self, key: Array) -> tuple[Array, Array]:
        """Mean and standard deviation of each dimension, each of shape batch + (k,); `key` serves
        the Monte Carlo estimate of a distribution without closed-form moments."""

    @abc.abstractmethod
    def box(self, sds: float) -> tuple[Array, Array]:
        """(lo, hi), each (k,): a box holding every batch member's mean +- `sds` standard deviations."""


class PixelDensity(Protocol):
    """What a likelihood p(x|z) gives over data x (..., d): the pixels' means, draws and the log density."""

    @property
    def mean(self) -> Array:
        """E[x], (..., d)."""
        ...

    def sample(self, key: Array, /) -> Array:
        """A draw of x, (..., d)."""
        ...

    def log_prob(self, x: Array, /) -> Array:
        """log p(x) summed over the pixels: the batch shape (...)."""
        ...


class MonteCarloMoments(Distribution):
    """A distribution whose moments are Monte Carlo estimates from `moment_draws` draws."""

    moment_draws: ClassVar[int] = 100

    @property
    def mean(self) -> Array:
        """E[z], by Monte Carlo (`moments` with key 0)."""
        return self.moments(jax.random.PRNGKey(0))[0]

    @property
    def std(self) -> Array:
        """The standard deviation of each dimension, by Monte Carlo (`moments` with key 0)."""
        return self.moments(jax.random.PRNGKey(0))[1]

    def moments(self, key: Array) -> tuple[Array, Array]:
        """Monte Carlo: the mean and (unbiased-variance) std of `moment_draws` draws."""
        z = self.sample(key, (self.moment_draws,))
        return jnp.mean(z, axis=0), jnp.std(z, axis=0, ddof=1)

    def box(self, sds: float) -> tuple[Array, Array]:
        return _box_of(*self.moments(jax.random.PRNGKey(0)), sds)


class Layered(MonteCarloMoments):
    """A distribution over the latent layers of a deep model, z = (z_1, ..., z_L) concatenated on the last
    axis (bottom layer first, `sizes` (k_1, ..., k_L)), whose moments are Monte Carlo estimates."""

    sizes: tuple[int, ...] = eqx.field(static=True)

    def layers(self, z: Array) -> list[Array]:
        """z (..., K) split into its layers, [(..., k_1), ..., (..., k_L)]."""
        edges = [sum(self.sizes[:i]) for i in range(1, len(self.sizes))]
        return jnp.split(z, edges, axis=-1)

    def kl_layers(self, p: Any, z: Array) -> Array:
        """The KL from the prior `p` over the same layers, one term per layer at the draws z (S, ..., K):
        (S, ..., L), nats.

        Only posteriors define it; see `deep`."""
        raise NotImplementedError(f"{type(self).__name__} is not a posterior")

    def kl_estimator(self, p: Any) -> "ClosedFormKL | MonteCarloKL":
        """`ClosedFormKL` of the top layer's pair where every layer's KL is in closed form given the draws of the
        layers it is conditioned on, else `MonteCarloKL`."""
        raise NotImplementedError(f"{type(self).__name__} is not a posterior")


def _box_of(mean: Array, std: Array, sds: float) -> tuple[Array, Array]:
    k = mean.shape[-1]
    return jnp.min((mean - sds * std).reshape(-1, k), 0), jnp.max((mean + sds * std).reshape(-1, k), 0)


class Normal(Distribution):
    """N(mean, diag exp(log_var)); used for the prior, the posterior and Gaussian pixels.

    The log-variance parameterization keeps the variance positive without a clamp.
    """

    mean: Array
    log_var: Array

    @property
    def std(self) -> Array:
        """exp(log_var / 2), the standard deviation of each dimension."""
        return jnp.exp(0.5 * self.log_var)

    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        """Reparameterized draws mean + std * eps, shape `shape + mean.shape`."""
        eps = jax.random.normal(key, shape + jnp.shape(self.mean))
        return self.mean + self.std * eps

    def log_prob(self, z: Array) -> Array:
        """log N(z | mean, var) summed over the last axis."""
        return jnp.sum(self.marginal_log_prob(z), axis=-1)

    def log_prob_each(self, z: Array) -> Array:
        """log N(z | mean_c, diag var_c) for every z (..., k) and every row c of mean (C, k): shape (..., C)."""
        if self.mean.ndim != 2:
            return super().log_prob_each(z)
        squares = squared_distances(z, self.mean, jnp.exp(-self.log_var))
        return -0.5 * (z.shape[-1] * LOG_2PI + jnp.sum(self.log_var, -1) + squares)

    def marginal_log_prob(self, z: Array) -> Array:
        """log N(z_j | mean_j, var_j) of each dimension (the last axis kept)."""
        return -0.5 * (LOG_2PI + self.log_var + (z - self.mean) ** 2 * jnp.exp(-self.log_var))

    def moments(self, key: Array | None = None) -> tuple[Array, Array]:
        return self.mean, self.std

    def box(self, sds: float) -> tuple[Array, Array]:
        return _box_of(self.mean, self.std, sds)


@jax.custom_vjp
def squared_distances(z: Array, centres: Array, precision: Array) -> Array:
    """sum_j (z_j - c_j)^2 p_j for every z (..., k) and every row of centres and precision (C, k): (..., C).

    The values are computed from the differences, exactly; the gradient with matrix products, as the
    square expanded (z^2 - 2 z c + c^2): XLA's CPU reductions over the broadcast (..., C, k) make the
    plain gradient 50 times slower than the forward pass.
    """
    return jnp.sum((z[..., None, :] - centres) ** 2 * precision, axis=-1)


def _squared_distances_forward(z, centres, precision):
    return squared_distances(z, centres, precision), (z, centres, precision)


def _squared_distances_backward(saved, cotangent):
    z, centres, precision = saved
    zs, g = z.reshape(-1, z.shape[-1]), cotangent.reshape(-1, cotangent.shape[-1])  # (N, k), (N, C)
    g_z, g_total = g.T @ zs, jnp.sum(g, axis=0)[:, None]  # sum_n g_nc z_n (C, k), sum_n g_nc (C, 1)
    d_z = 2 * (zs * (g @ precision) - g @ (centres * precision))
    d_centres = -2 * precision * (g_z - centres * g_total)
    d_precision = g.T @ zs**2 - 2 * centres * g_z + centres**2 * g_total
    return d_z.reshape(z.shape), d_centres, d_precision


squared_distances.defvjp(_squared_distances_forward, _squared_distances_backward)


def _distance_tangent(z: Array, centres: Array, precision: Array, dz: Array, dc: Array, dp: Array) -> Array:
    """The tangent of `squared_distances`, (..., C), in matrix products as its gradient: linear in (dz, dc, dp),
    its transpose contracts over z's leading axes, under `jax.vmap` too (where a custom gradient would be taken
    per example and summed)."""
    return (
        2 * (z * dz) @ precision.T
        - 2 * dz @ (centres * precision).T
        + z**2 @ dp.T
        - 2 * z @ (precision * dc + centres * dp).T
        + jnp.sum(2 * centres * precision * dc + centres**2 * dp, axis=-1)
    )


@jax.custom_jvp
def class_squared_distances(z: Array, c: Array, centres: Array, precision: Array) -> Array:
    """`squared_distances` of every z (..., k) to the C rows of its class's centres and precision: classes c
    (..., m) one-hot, centres and precision (m, C, k); (..., C). The values from the differences to the rows of
    z's class (gathered, exactly); the derivatives as against all m C rows, then selected by c (c is data, no
    derivative), so that the gradient of the centres is a matrix product over the examples."""
    labels = jnp.argmax(c, axis=-1)
    return jnp.sum((z[..., None, :] - centres[labels]) ** 2 * precision[labels], axis=-1)


@class_squared_distances.defjvp
def _class_squared_distances_jvp(primals, tangents):
    z, c, centres, precision = primals
    dz, _, dc, dp = tangents
    m, rows, k = centres.shape

    def flat(a):
        return a.reshape(m * rows, k)

    every = _distance_tangent(z, flat(centres), flat(precision), dz, flat(dc), flat(dp))  # (..., m C)
    selected = jnp.sum(every.reshape(*every.shape[:-1], m, rows) * c[..., None], axis=-2)
    return class_squared_distances(*primals), selected


class FullNormal(Distribution):
    """N(mean, L L^T) with a full covariance given by its Cholesky factor L (lower triangular,
    positive diagonal): mean (..., k), scale_tril (..., k, k)."""

    mean: Array
    scale_tril: Array

    @property
    def std(self) -> Array:
        """sqrt(Sigma_jj), the standard deviation of each dimension."""
        return jnp.sqrt(jnp.sum(self.scale_tril**2, axis=-1))

    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        """Reparameterized draws mean + L eps, shape `shape + mean.shape`."""
        eps = jax.random.normal(key, shape + jnp.shape(self.mean))
        return self.mean + jnp.matmul(self.scale_tril, eps[..., None])[..., 0]

    def log_prob(self, z: Array) -> Array:
        """-(k log 2 pi + |L^-1 (z - mean)|^2) / 2 - sum_j log L_jj."""
        diff = z - self.mean
        batch = jnp.broadcast_shapes(diff.shape[:-1], self.scale_tril.shape[:-2])
        k = diff.shape[-1]
        scale = jnp.broadcast_to(self.scale_tril, batch + (k, k))
        white = jax.scipy.linalg.solve_triangular(scale, jnp.broadcast_to(diff, batch + (k,))[..., None], lower=True)
        log_det = jnp.sum(jnp.log(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)), axis=-1)
        return -0.5 * (k * LOG_2PI + jnp.sum(white[..., 0] ** 2, axis=-1)) - log_det

    def marginal_log_prob(self, z: Array) -> Array:
        """log N(z_j | mean_j, Sigma_jj) of each dimension (the last axis kept)."""
        return Normal(self.mean, 2 * jnp.log(self.std)).marginal_log_prob(z)

    def moments(self, key: Array | None = None) -> tuple[Array, Array]:
        return self.mean, self.std

    def box(self, sds: float) -> tuple[Array, Array]:
        return _box_of(*self.moments(), sds)


class Mixture(Distribution):
    """sum_c w_c p_c(z) with weights softmax(logits) (C,) (or (n, C), a mixture per example) and components: a
    distribution whose last batch axis has size C (e.g. a Normal with mean (C, k)). Its own batch shape is the
    components' less C."""

    logits: Array
    components: "Normal | FullNormal"

    def log_prob(self, z: Array) -> Array:
        """logsumexp_c (log w_c + log p_c(z))."""
        return jax.nn.logsumexp(jax.nn.log_softmax(self.logits) + self.components.log_prob_each(z), axis=-1)

    def marginal_log_prob(self, z: Array) -> Array:
        """log p(z_j) of each dimension: the mixture of the components' marginals (the last axis kept)."""
        per_component = self.components.marginal_log_prob(z[..., None, :])  # (..., C, k)
        return jax.nn.logsumexp(jax.nn.log_softmax(self.logits)[..., None] + per_component, axis=-2)

    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        """A component c ~ w, then z ~ p_c (reparameterized within the component, not through c)."""
        pick_key, draw_key = jax.random.split(key)
        draws = self.components.sample(draw_key, shape)  # (*shape, ..., C, k)
        c = jax.random.categorical(pick_key, self.logits, shape=draws.shape[:-2])
        return jnp.take_along_axis(draws, c[..., None, None], axis=-2)[..., 0, :]

    def moments(self, key: Array | None = None) -> tuple[Array, Array]:
        """E[z] = sum_c w_c m_c, Var[z] = sum_c w_c (s_c^2 + m_c^2) - E[z]^2, per dimension."""
        m, s = self.components.moments(key)
        w = jax.nn.softmax(self.logits)[..., None]
        mean = jnp.sum(w * m, axis=-2)
        return mean, jnp.sqrt(jnp.maximum(jnp.sum(w * (s**2 + m**2), axis=-2) - mean**2, 0.0))

    def box(self, sds: float) -> tuple[Array, Array]:
        return self.components.box(sds)


class ClassMixture(Distribution):
    """p(z | y) with one mixture per class: `per_class` a Mixture of logits (m, C) and components over (m, C, k),
    each example's class y given by c (n, m) one-hot; a distribution over (n, k), example i's the mixture of its
    class. With diagonal Normal components its log-density is taken against the classes' components directly
    (`class_squared_distances`), never through a per-example copy of their gradient; all else is that of
    `of_examples`."""

    per_class: Mixture
    c: Array

    @property
    def labels(self) -> Array:
        """Each example's class y, the index of its one-hot c: (n,) integers."""
        return jnp.argmax(self.c, axis=-1)

    def of_examples(self) -> Mixture:
        """The same as a Mixture of per-example arrays: logits (n, C), components over (n, C, k)."""
        labels = self.labels
        return jax.tree.map(lambda a: a[labels], self.per_class)

    def log_prob(self, z: Array) -> Array:
        """log p(z | y) of z (..., n, k): (..., n)."""
        normals = self.per_class.components
        if not isinstance(normals, Normal):
            return self.of_examples().log_prob(z)
        log_weights = jax.nn.log_softmax(self.per_class.logits)[self.labels]  # (n, C)
        log_dets = jnp.sum(normals.log_var, axis=-1)[self.labels]  # (n, C)
        squares = class_squared_distances(z, self.c, normals.mean, jnp.exp(-normals.log_var))  # (..., n, C)
        return jax.nn.logsumexp(log_weights - 0.5 * (z.shape[-1] * LOG_2PI + log_dets + squares), axis=-1)

    def marginal_log_prob(self, z: Array) -> Array:
        """log p(z_j | y) of each dimension of z (..., n, k): (..., n, k)."""
        return self.of_examples().marginal_log_prob(z)

    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        return self.of_examples().sample(key, shape)

    def moments(self, key: Array | None = None) -> tuple[Array, Array]:
        return self.of_examples().moments(key)

    def box(self, sds: float) -> tuple[Array, Array]:
        return self.of_examples().box(sds)


class InverseAutoregressiveFlow(MonteCarloMoments):
    """q(z) of an inverse autoregressive flow (Kingma et al. 2016): z_0 = mu + sigma * eps from the
    Gaussian `base`, then T steps z_t = s_t * z_{t-1} + (1 - s_t) * m_t with gate s_t = sigmoid(g_t),
    where `(m_t, g_t) = steps[t](z_{t-1}, context)` is autoregressive in z_{t-1} (output j sees only
    inputs before j), so log q(z_T) = log q_0(z_0) - sum_t sum_j log s_tj. The order of z is reversed
    before every step but the first. base over (..., k), context (..., c); each step maps one z (k,) and
    one context (c,) to (m, g), each (k,), and is shared by every example.
    """

    base: Normal
    context: Array
    steps: Sequence[Callable]

    def _forward(self, z: Array) -> tuple[Array, Array]:
        """z_0 (..., k) -> (z_T, sum_t sum_j log s_tj), both with z_0's leading axes."""
        context = jnp.broadcast_to(self.context, z.shape[:-1] + self.context.shape[-1:])
        log_det = jnp.zeros(z.shape[:-1], z.dtype)
        for t, step in enumerate(self.steps):
            if t:
                z = z[..., ::-1]
            m, g = step(z, context)
            z = jax.nn.sigmoid(g) * z + jax.nn.sigmoid(-g) * m
            log_det = log_det + jnp.sum(jax.nn.log_sigmoid(g), axis=-1)
        return z, log_det

    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        return self.sample_and_log_prob(key, shape)[0]

    def sample_and_log_prob(self, key: Array, shape: tuple[int, ...] = ()) -> tuple[Array, Array]:
        z0 = self.base.sample(key, shape)
        z, log_det = self._forward(z0)
        return z, self.base.log_prob(z0) - log_det

    def log_prob(self, z: Array) -> Array:
        """By inverting the flow: step t's input is found one dimension at a time, k fixed-point
        passes z_{t-1} = (z_t - (1 - s_t) m_t) / s_t, exact after k passes as each step is autoregressive."""
        context = jnp.broadcast_to(self.context, z.shape[:-1] + self.context.shape[-1:])
        log_det = jnp.zeros(z.shape[:-1], z.dtype)
        for t in reversed(range(len(self.steps))):
            step, target = self.steps[t], z

            def invert_once(_, guess, step=step, target=target):
                m, g = step(guess, context)
                return (target - jax.nn.sigmoid(-g) * m) / jax.nn.sigmoid(g)

            z = jax.lax.fori_loop(0, z.shape[-1], invert_once, target)
            log_det = log_det + jnp.sum(jax.nn.log_sigmoid(step(z, context)[1]), axis=-1)
            if t:
                z = z[..., ::-1]
        return self.base.log_prob(z) - log_det


def kl_normal_per_dimension(q: Normal, p: Normal) -> Array:
    """KL(q || p) between diagonal Normals for each dimension (the last axis kept), in nats."""
    return 0.5 * (p.log_var - q.log_var + (jnp.exp(q.log_var) + (q.mean - p.mean) ** 2) * jnp.exp(-p.log_var) - 1.0)


def kl_normal(q: Normal, p: Normal) -> Array:
    """KL(q || p) between diagonal Normals, summed over the last axis, in nats."""
    return jnp.sum(kl_normal_per_dimension(q, p), axis=-1)


def kl_full_normal(q: FullNormal, p: Normal) -> Array:
    """KL(N(m, L L^T) || N(mu, diag v)) = (sum_j [(L L^T)_jj + (m_j - mu_j)^2] / v_j - k + sum_j log v_j)/2
    - sum_j log L_jj, shape (..., 1): one term, as it does not separate over dimensions."""
    variance = jnp.sum(q.scale_tril**2, axis=-1)
    log_det = jnp.sum(jnp.log(jnp.diagonal(q.scale_tril, axis1=-2, axis2=-1)), axis=-1)
    per_dim = (variance + (q.mean - p.mean) ** 2) * jnp.exp(-p.log_var) - 1.0 + p.log_var
    return (0.5 * jnp.sum(per_dim, axis=-1) - log_det)[..., None]


CLOSED_FORM_KL: dict[tuple[type, type], Callable[..., Array]] = {
    (Normal, Normal): kl_normal_per_dimension,
    (FullNormal, Normal): kl_full_normal,
}
"""KL(q || p) in closed form by (type(q), type(p)), split into terms over the last axis that sum to it:
one per latent dimension where the KL separates over dimensions, a single term otherwise."""


class ClosedFormKL(eqx.Module):
    """KL(q || p) in closed form: `kl(q, p)`, one of CLOSED_FORM_KL's."""

    kl: Callable[..., Array] = eqx.field(static=True)
    name: ClassVar[str] = "closed form"

    def terms(self, q: Distribution, p: Distribution, z: Array, log_q: Array) -> Array:
        """KL(q || p) as terms over the last axis, batch shape + (terms,); the draws are not used."""
        return self.kl(q, p)

    def per_draw(self, q: Distribution, p: Distribution, z: Array, log_q: Array) -> Array:
        """KL(q || p) at each of the draws z (S, ..., k) with log q = log_q (S, ...): the same for every draw."""
        return jnp.broadcast_to(jnp.sum(self.kl(q, p), axis=-1), log_q.shape)


class MonteCarloKL(eqx.Module):
    """KL(q || p) estimated at draws z ~ q: log q(z) - log p(z)."""

    name: ClassVar[str] = "monte carlo"

    def terms(self, q: Distribution, p: Distribution, z: Array, log_q: Array) -> Array:
        """mean_s [log q(z_s) - log p(z_s)] at the draws z (S, ..., k) with log q(z_s) = log_q (S, ...): one
        term, batch shape + (1,)."""
        return jnp.mean(self.per_draw(q, p, z, log_q), axis=0)[..., None]

    def per_draw(self, q: Distribution, p: Distribution, z: Array, log_q: Array) -> Array:
        """log q(z_s) - log p(z_s) at each draw, (S, ...)."""
        return log_q - p.log_prob(z)


def kl_estimator(q: Distribution, p: Distribution) -> ClosedFormKL | MonteCarloKL:
    """How KL(q || p) is computed: in closed form where the pair of types has one (`CLOSED_FORM_KL`), else by
    Monte Carlo; a deep model's posterior says for its layers (`Layered.kl_estimator`)."""
    if isinstance(q, Layered):
        return q.kl_estimator(p)
    closed_form = CLOSED_FORM_KL.get((type(q), type(p)))
    return MonteCarloKL() if closed_form is None else ClosedFormKL(closed_form)


def kl_terms(q: Distribution, p: Distribution, z: Array, log_q: Array) -> Array:
    """KL(q || p) as terms over the last axis (see CLOSED_FORM_KL), batch shape + (terms,), in nats, by
    `kl_estimator`'s estimator at the draws z (S, ..., k) with log q(z_s) = log_q (S, ...).

    A deep model's posterior gives one term per layer (`Layered.kl_layers`), averaged over the draws.
    """
    if isinstance(q, Layered):
        return jnp.mean(q.kl_layers(p, z), axis=0)
    return kl_estimator(q, p).terms(q, p, z, log_q)


@jax.custom_jvp
def softplus(logits: Array) -> Array:
    """log(1 + e^l) = max(l, 0) + log1p(e^-|l|), stable for any l, with derivative sigmoid(l) (also at 0).

    The same function as `jax.nn.softplus`, whose `logaddexp` form is about twice as slow on CPU behind
    a decoder's matmul (benchmarks/eval_throughput.py).
    """
    return jnp.maximum(logits, 0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (logits,), (tangent,) = primals, tangents
    return softplus(logits), jax.nn.sigmoid(logits) * tangent


class Bernoulli(eqx.Module):
    """Independent Bernoulli pixels parameterized by logits (never by probabilities)."""

    logits: Array

    @property
    def mean(self) -> Array:
        """sigmoid(logits), the probability of each pixel being 1."""
        return jax.nn.sigmoid(self.logits)

    def sample(self, key: Array) -> Array:
        """Draws in {0, 1} of the shape of the logits (not reparameterizable: no gradient flows)."""
        return jax.random.bernoulli(key, self.mean).astype(self.logits.dtype)

    def log_prob(self, x: Array) -> Array:
        """sum_i x_i log p_i + (1 - x_i) log(1 - p_i), computed as x * l - softplus(l)."""
        return jnp.sum(x * self.logits - softplus(self.logits), axis=-1)


_CB_TAYLOR = 1e-2  # |logit| below which the continuous Bernoulli uses its Taylor series


def _safe_logit(logits: Array) -> Array:
    """Logits with the near-zero ones moved away, so both `where` branches stay finite."""
    return jnp.where(jnp.abs(logits) < _CB_TAYLOR, _CB_TAYLOR, logits)


class ContinuousBernoulli(eqx.Module):
    """Continuous Bernoulli on [0, 1] (Loaiza-Ganem and Cunningham 2019), from logits.

    p(x | l) = C(l) sigmoid(l)^x (1 - sigmoid(l))^(1 - x) with C(l) = l / tanh(l / 2),
    which tends to 2 as l -> 0; near 0 the Taylor series 2 + l^2/6 - l^4/360 is used.
    """

    logits: Array

    def log_normalizer(self) -> Array:
        """log C(l) per pixel."""
        l = _safe_logit(self.logits)
        exact = jnp.log(jnp.abs(l)) - jnp.log(jnp.tanh(jnp.abs(l) / 2))
        t = self.logits**2
        taylor = jnp.log(2 + t / 6 - t**2 / 360)
        return jnp.where(jnp.abs(self.logits) < _CB_TAYLOR, taylor, exact)

    @property
    def mean(self) -> Array:
        """E[x] = sigmoid(l) / tanh(l / 2) - 1 / l, which is 1/2 + l/12 near 0."""
        l = _safe_logit(self.logits)
        exact = jax.nn.sigmoid(l) / jnp.tanh(l / 2) - 1 / l
        return jnp.where(jnp.abs(self.logits) < _CB_TAYLOR, 0.5 + self.logits / 12, exact)

    def sample(self, key: Array) -> Array:
        """Inverse-CDF sampling, x = log(1 + u (e^l - 1)) / l, written for l < 0 and mirrored.

        x(l, u) = 1 - x(-l, 1 - u), so only the stable branch with a negative logit is evaluated.
        """
        u = jax.random.uniform(key, jnp.shape(self.logits), minval=1e-7, maxval=1 - 1e-7)
        negative = self.logits < 0
        a = -jnp.abs(_safe_logit(self.logits))
        v = jnp.where(negative, u, 1 - u)
        y = jnp.log1p(v * jnp.expm1(a)) / a
        y = jnp.where(jnp.abs(self.logits) < _CB_TAYLOR, v, y)
        return jnp.clip(jnp.where(negative, y, 1 - y), 0.0, 1.0)

    def log_prob(self, x: Array) -> Array:
        """sum_i log p(x_i | l_i) over the last axis, x in [0, 1]: the Bernoulli term plus log C(l)."""
        return jnp.sum(x * self.logits - softplus(self.logits) + self.log_normalizer(), axis=-1)
