"""Posterior families q(z|x): each maps the encoder's output for an example, a vector of `size`
parameters, to a distribution over z in R^k. Batching: parameters (..., size) -> batch shape (...).

`gaussian` gives the Gaussian part of q (all of it for the Gaussian families, the flow's base for IAF):
what a VampPrior mixes, since its components need log densities at arbitrary points cheaply.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.distributions import Distribution, FullNormal, InverseAutoregressiveFlow, Normal
from jaxvae.networks import MADE


class PosteriorFamily(eqx.Module):
    """A family q(z|x) over k = `latent_dim` latents at `size` parameters per example."""

    latent_dim: eqx.AbstractVar[int]

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """The number of parameters the encoder outputs per example."""

    @abc.abstractmethod
    def __call__(self, params: Array) -> Distribution:
        """q(z|x) at `params` (..., size): a distribution over (..., k)."""

    @abc.abstractmethod
    def gaussian(self, params: Array) -> Normal | FullNormal:
        """The Gaussian part of q at `params` (..., size)."""


class DiagonalGaussian(PosteriorFamily):
    """The seed's q(z|x) = N(mu, diag sigma^2): parameters (mu, log sigma^2), size 2k.

    `log_var_range` (low, high), when given, clips log sigma^2 to it (the VampPrior code's hardtanh(-6, 2));
    a clipped value has no gradient."""

    latent_dim: int = eqx.field(static=True)
    log_var_range: tuple[float, ...] = eqx.field(static=True, default=())

    @property
    def size(self) -> int:
        """The number of parameters the encoder outputs per example."""
        return 2 * self.latent_dim

    def __call__(self, params: Array) -> Normal:
        return self.gaussian(params)

    def gaussian(self, params: Array) -> Normal:
        """The diagonal Gaussian of `params` (..., size)."""
        mean, log_var = jnp.split(params, 2, axis=-1)
        if self.log_var_range:
            log_var = jnp.clip(log_var, *self.log_var_range)
        return Normal(mean, log_var)


class FullGaussian(PosteriorFamily):
    """q(z|x) = N(mu, L L^T) with L lower triangular: parameters (mu, log L_jj, the k(k-1)/2 entries
    below the diagonal row by row), size 2k + k(k-1)/2. The exponential keeps the diagonal positive."""

    latent_dim: int = eqx.field(static=True)

    @property
    def size(self) -> int:
        """The number of parameters the encoder outputs per example."""
        k = self.latent_dim
        return 2 * k + k * (k - 1) // 2

    def __call__(self, params: Array) -> FullNormal:
        return self.gaussian(params)

    def gaussian(self, params: Array) -> FullNormal:
        """The full-covariance Gaussian of `params` (..., size)."""
        k = self.latent_dim
        mean, log_diag, below = params[..., :k], params[..., k : 2 * k], params[..., 2 * k :]
        rows, cols = jnp.tril_indices(k, -1)
        scale = jnp.zeros(params.shape[:-1] + (k, k), params.dtype).at[..., rows, cols].set(below)
        return FullNormal(mean, scale + jnp.exp(log_diag)[..., None] * jnp.eye(k, dtype=params.dtype))


class IAF(PosteriorFamily):
    """Inverse autoregressive flow posterior (Kingma et al. 2016): a diagonal Gaussian and a context
    h from the encoder (parameters (mu, log sigma^2, h), size 2k + context_dim), then `steps` MADE steps
    shared by all examples (see distributions.InverseAutoregressiveFlow)."""

    steps: list[MADE]
    latent_dim: int = eqx.field(static=True)
    context_dim: int = eqx.field(static=True)

    def __init__(self, latent_dim: int, steps: int, *, key: Array, context_dim: int | None = None, hidden=None):
        """`context_dim` defaults to k and each MADE's `hidden` width to 4k."""
        self.latent_dim = latent_dim
        self.context_dim = latent_dim if context_dim is None else context_dim
        width = 4 * latent_dim if hidden is None else hidden
        self.steps = [MADE(latent_dim, self.context_dim, width, key=k) for k in jax.random.split(key, steps)]

    @property
    def size(self) -> int:
        """The number of parameters the encoder outputs per example."""
        return 2 * self.latent_dim + self.context_dim

    def __call__(self, params: Array) -> InverseAutoregressiveFlow:
        return InverseAutoregressiveFlow(self.gaussian(params), params[..., 2 * self.latent_dim :], self.steps)

    def gaussian(self, params: Array) -> Normal:
        """The flow's base, the diagonal Gaussian of the first 2k of `params` (..., size)."""
        mean, log_var = jnp.split(params[..., : 2 * self.latent_dim], 2, axis=-1)
        return Normal(mean, log_var)
