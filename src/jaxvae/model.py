"""The VAE: prior p(z) = N(0, I), encoder q(z|x), decoder p(x|z)."""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.config import ModelConfig
from jaxvae.distributions import Bernoulli, ContinuousBernoulli, Normal
from jaxvae.networks import MLP, ConvDecoder, ConvEncoder


def map_examples(fn: Callable, x: Array):
    """Apply a one-example function `fn` to x of shape (..., d), keeping the leading axes."""
    batch_shape = x.shape[:-1]
    out = jax.vmap(fn)(x.reshape(-1, x.shape[-1]))
    return jax.tree.map(lambda a: a.reshape(batch_shape + a.shape[1:]), out)


class VAE(eqx.Module):
    """A variational autoencoder over flattened data vectors of size d with latents of size k.

    `encode` and `decode` take any leading batch axes: x (..., d) -> q(z|x) over (..., k),
    z (..., k) -> p(x|z) over (..., d).
    """

    encoder: MLP | ConvEncoder
    decoder: MLP | ConvDecoder
    pixel_log_var: Array | None  # the Gaussian likelihood's log-variance: shape () if shared, (d,) per pixel
    likelihood: str = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    fixed_variance: bool = eqx.field(static=True)  # the Gaussian log-variance is a constant, not trained

    def __init__(self, config: ModelConfig, *, key: Array):
        enc_key, dec_key = jax.random.split(key)
        d, k = config.data_dim, config.latent_dim
        if config.architecture == "conv":
            self.encoder = ConvEncoder(config.data_shape, 2 * k, config.hidden, config.activation, key=enc_key)
            self.decoder = ConvDecoder(k, config.data_shape, config.hidden, config.activation, key=dec_key)
        else:
            self.encoder = MLP(d, 2 * k, config.hidden, config.activation, key=enc_key)
            self.decoder = MLP(k, d, tuple(reversed(config.hidden)), config.activation, key=dec_key)
        self.pixel_log_var = None
        if config.likelihood == "gaussian":
            shape = (d,) if config.gaussian_variance == "learned-pixel" else ()
            self.pixel_log_var = jnp.full(shape, 2 * math.log(config.gaussian_std), jnp.float32)
        self.likelihood = config.likelihood
        self.latent_dim = k
        self.fixed_variance = config.gaussian_variance == "fixed"

    def prior(self) -> Normal:
        return Normal(jnp.zeros(self.latent_dim), jnp.zeros(self.latent_dim))

    def encode(self, x: Array) -> Normal:
        """q(z|x) = N(mu(x), diag sigma^2(x)) for x of shape (..., d)."""
        mean, log_var = jnp.split(map_examples(self.encoder, x), 2, axis=-1)
        return Normal(mean, log_var)

    def decode(self, z: Array) -> Bernoulli | ContinuousBernoulli | Normal:
        """p(x|z) for z of shape (..., k): a distribution over (..., d)."""
        out = map_examples(self.decoder, z)
        if self.likelihood == "bernoulli":
            return Bernoulli(out)
        if self.likelihood == "continuous-bernoulli":
            return ContinuousBernoulli(out)
        log_var = jax.lax.stop_gradient(self.pixel_log_var) if self.fixed_variance else self.pixel_log_var
        return Normal(out, jnp.broadcast_to(log_var, out.shape))
