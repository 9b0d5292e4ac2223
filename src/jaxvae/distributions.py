"""Distributions over vectors: the diagonal Normal and the pixel likelihoods.

Every distribution here is a small Equinox module over arrays whose last axis is the
event: `log_prob` sums over that axis and returns the batch shape, in nats.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

LOG_2PI = math.log(2 * math.pi)


class Normal(eqx.Module):
    """N(mean, diag exp(log_var)); used for the prior, the posterior and Gaussian pixels.

    The log-variance parameterization keeps the variance positive without a clamp.
    """

    mean: Array
    log_var: Array

    @property
    def std(self) -> Array:
        return jnp.exp(0.5 * self.log_var)

    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        """Reparameterized draws mean + std * eps, shape `shape + mean.shape`."""
        eps = jax.random.normal(key, shape + jnp.shape(self.mean))
        return self.mean + self.std * eps

    def log_prob(self, x: Array) -> Array:
        """log N(x | mean, var) summed over the last axis."""
        per_dim = -0.5 * (LOG_2PI + self.log_var + (x - self.mean) ** 2 * jnp.exp(-self.log_var))
        return jnp.sum(per_dim, axis=-1)


def kl_normal_per_dimension(q: Normal, p: Normal) -> Array:
    """KL(q || p) between diagonal Normals for each dimension (the last axis kept), in nats."""
    return 0.5 * (p.log_var - q.log_var + (jnp.exp(q.log_var) + (q.mean - p.mean) ** 2) * jnp.exp(-p.log_var) - 1.0)


def kl_normal(q: Normal, p: Normal) -> Array:
    """KL(q || p) between diagonal Normals, summed over the last axis, in nats."""
    return jnp.sum(kl_normal_per_dimension(q, p), axis=-1)


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
        return jax.nn.sigmoid(self.logits)

    def sample(self, key: Array) -> Array:
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
        return jnp.sum(x * self.logits - softplus(self.logits) + self.log_normalizer(), axis=-1)
