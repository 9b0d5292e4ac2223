"""Likelihood families p(x|z): each maps the decoder's output for an example (..., outputs * d) to a distribution
over x in R^d. `name` is what the explore page calls the family."""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.distributions import Bernoulli, ContinuousBernoulli, Normal, PixelDensity


class PixelLikelihood(eqx.Module):
    """A likelihood family: the decoder's output (..., outputs * d) -> p(x|z) over (..., d); `outputs`: the
    decoder's outputs per pixel; `unit_interval`: whether it models values in [0, 1] only."""

    name: ClassVar[str]
    unit_interval: ClassVar[bool] = True
    outputs: ClassVar[int] = 1

    @abc.abstractmethod
    def __call__(self, out: Array) -> PixelDensity: ...


class BernoulliPixels(PixelLikelihood):
    """Independent Bernoulli pixels; the decoder outputs their logits."""

    name: ClassVar[str] = "bernoulli"

    def __call__(self, out: Array) -> Bernoulli:
        return Bernoulli(out)


class ContinuousBernoulliPixels(PixelLikelihood):
    """Continuous Bernoulli pixels on [0, 1]; the decoder outputs their logits."""

    name: ClassVar[str] = "continuous-bernoulli"

    def __call__(self, out: Array) -> ContinuousBernoulli:
        return ContinuousBernoulli(out)


class GaussianPixels(PixelLikelihood):
    """N(x | decoder output, exp(log_var)): log_var has shape () (shared by all pixels) or (d,);
    `fixed` keeps it constant (no gradient)."""

    name: ClassVar[str] = "gaussian"
    unit_interval: ClassVar[bool] = False
    log_var: Array
    fixed: bool = eqx.field(static=True)

    def __call__(self, out: Array) -> Normal:
        log_var = jax.lax.stop_gradient(self.log_var) if self.fixed else self.log_var
        return Normal(out, jnp.broadcast_to(log_var, out.shape))


class NetworkGaussianPixels(PixelLikelihood):
    """N(x | mean, exp(log_var)) with both per pixel and example from the decoder, whose output (..., 2d) is
    [mean, log_var - offset] (Kingma et al. 2014's p(x | y, z) on M1's features). `offset`: 2 log of the
    standard deviation a zero output gives."""

    name: ClassVar[str] = "gaussian-network"
    unit_interval: ClassVar[bool] = False
    outputs: ClassVar[int] = 2
    offset: float = eqx.field(static=True)

    def __call__(self, out: Array) -> Normal:
        mean, log_var = jnp.split(out, 2, axis=-1)
        return Normal(mean, log_var + self.offset)
