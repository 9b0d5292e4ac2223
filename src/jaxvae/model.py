"""The VAE as four replaceable parts and a prior: encoder network and posterior family q(z|x),
decoder network and likelihood family p(x|z), prior p(z). Each part is an Equinox module."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.config import ModelConfig
from jaxvae.distributions import Distribution
from jaxvae.likelihoods import BernoulliPixels, ContinuousBernoulliPixels, GaussianPixels
from jaxvae.networks import MLP, ConvDecoder, ConvEncoder, GatedMLP, map_examples
from jaxvae.posteriors import IAF, DiagonalGaussian, FullGaussian
from jaxvae.priors import GaussianMixture, StandardNormal, VampPrior


class VAE(eqx.Module):
    """A variational autoencoder over flattened data vectors of size d with latents of size k.

    `encoder` maps one example x (d,) to the posterior family's parameters (posterior.size,);
    `decoder` maps one z (k,) to the likelihood family's parameters (d,). Any Equinox module with
    those sizes may replace either (`eqx.tree_at(lambda m: m.encoder, vae, mine)`). `encode` and
    `decode` take any leading batch axes: x (..., d) -> q(z|x) over (..., k), z (..., k) -> p(x|z)
    over (..., d); `prior()` is p(z) over (k,).
    """

    encoder: eqx.Module
    posterior: eqx.Module
    decoder: eqx.Module
    likelihood: eqx.Module
    latent_prior: eqx.Module
    latent_dim: int = eqx.field(static=True)

    def __init__(self, config: ModelConfig, *, key: Array):
        enc_key, dec_key = jax.random.split(key)
        d, k = config.data_dim, config.latent_dim
        family, count = config.posterior_family
        if family == "iaf":
            self.posterior = IAF(k, count, key=jax.random.fold_in(key, 2))
        elif family == "diagonal":
            self.posterior = DiagonalGaussian(k, config.log_var_range)
        else:
            self.posterior = FullGaussian(k)
        if config.architecture == "conv":
            self.encoder = ConvEncoder(
                config.data_shape, self.posterior.size, config.hidden, config.activation, key=enc_key
            )
            self.decoder = ConvDecoder(k, config.data_shape, config.hidden, config.activation, key=dec_key)
        elif config.architecture == "gated":
            self.encoder = GatedMLP(d, self.posterior.size, config.hidden, key=enc_key)
            self.decoder = GatedMLP(k, d, tuple(reversed(config.hidden)), key=dec_key)
        else:
            self.encoder = MLP(d, self.posterior.size, config.hidden, config.activation, key=enc_key)
            self.decoder = MLP(k, d, tuple(reversed(config.hidden)), config.activation, key=dec_key)
        if config.likelihood == "gaussian":
            shape = (d,) if config.gaussian_variance == "learned-pixel" else ()
            log_var = jnp.full(shape, 2 * math.log(config.gaussian_std), jnp.float32)
            self.likelihood = GaussianPixels(log_var, fixed=config.gaussian_variance == "fixed")
        else:
            self.likelihood = {"bernoulli": BernoulliPixels, "continuous-bernoulli": ContinuousBernoulliPixels}[
                config.likelihood
            ]()
        prior, components = config.prior_family
        prior_key = jax.random.fold_in(key, 3)
        if prior == "mixture":
            self.latent_prior = GaussianMixture(k, components, key=prior_key)
        elif prior == "vamp":
            self.latent_prior = VampPrior(d, components, key=prior_key)
        else:
            self.latent_prior = StandardNormal(k)
        self.latent_dim = k

    def prior(self) -> Distribution:
        """p(z), a distribution over (k,)."""
        return self.latent_prior(self)

    def encode(self, x: Array) -> Distribution:
        """q(z|x) for x of shape (..., d): a distribution over (..., k)."""
        return self.posterior(map_examples(self.encoder, x))

    def decode(self, z: Array):
        """p(x|z) for z of shape (..., k): a distribution over (..., d)."""
        return self.likelihood(map_examples(self.decoder, z))
