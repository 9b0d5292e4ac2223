"""The one place where configuration names become parts: `build_model(config, key)` turns a `ModelConfig`
into a model (a `model.VAE`, or a `deep` model for several latent layers) of Equinox parts.

Adding a part means adding its module and one line here; nothing else switches on a name.
"""

import math

import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.config import ModelConfig
from jaxvae.likelihoods import BernoulliPixels, ContinuousBernoulliPixels, GaussianPixels
from jaxvae.model import VAE
from jaxvae.networks import MLP, ConvDecoder, ConvEncoder, GatedMLP
from jaxvae.posteriors import IAF, DiagonalGaussian, FullGaussian
from jaxvae.priors import GaussianMixture, StandardNormal, VampPrior


def build_model(config: ModelConfig, *, key: Array) -> VAE:
    """The model `config` describes, its parameters drawn from `key` (2,).

    The key's uses: split in two for the encoder and the decoder, fold_in 2 for the posterior family's
    own parameters (a flow), fold_in 3 for the prior's.
    """
    enc_key, dec_key = jax.random.split(key)
    d, k = config.data_dim, config.latent_dim
    posterior = posterior_family(config, k, key=jax.random.fold_in(key, 2))
    encoder = network(config, d, posterior.size, key=enc_key)
    decoder = network(config, k, d, key=dec_key, decoder=True)
    prior = latent_prior(config, k, key=jax.random.fold_in(key, 3))
    return VAE(encoder, posterior, decoder, likelihood_family(config), prior)


def posterior_family(config: ModelConfig, k: int, *, key: Array):
    """q's family over k latents (`--posterior`): diagonal, full or an inverse autoregressive flow."""
    family, steps = config.posterior_family
    if family == "iaf":
        return IAF(k, steps, key=key)
    if family == "full":
        return FullGaussian(k)
    return DiagonalGaussian(k, config.log_var_range)


def network(config: ModelConfig, in_size: int, out_size: int, *, key: Array, decoder: bool = False):
    """An encoder (x (d,) -> q's parameters) or, with `decoder`, a decoder (z -> the likelihood's parameters)
    of `config.architecture`; a decoder runs through the hidden widths in reverse."""
    hidden = tuple(reversed(config.hidden)) if decoder else config.hidden
    if config.architecture == "conv":
        if decoder:
            return ConvDecoder(in_size, config.data_shape, config.hidden, config.activation, key=key)
        return ConvEncoder(config.data_shape, out_size, config.hidden, config.activation, key=key)
    if config.architecture == "gated":
        return GatedMLP(in_size, out_size, hidden, key=key)
    return MLP(in_size, out_size, hidden, config.activation, key=key)


def likelihood_family(config: ModelConfig):
    """p(x|z)'s family over pixels (`--likelihood`, with `--gaussian-variance` and `--gaussian-std`)."""
    if config.likelihood == "gaussian":
        shape = (config.data_dim,) if config.gaussian_variance == "learned-pixel" else ()
        log_var = jnp.full(shape, 2 * math.log(config.gaussian_std), jnp.float32)
        return GaussianPixels(log_var, fixed=config.gaussian_variance == "fixed")
    if config.likelihood == "continuous-bernoulli":
        return ContinuousBernoulliPixels()
    return BernoulliPixels()


def latent_prior(config: ModelConfig, k: int, *, key: Array):
    """p(z) over k latents (`--prior`): N(0, I), a Gaussian mixture or the VampPrior."""
    prior, components = config.prior_family
    if prior == "mixture":
        return GaussianMixture(k, components, key=key)
    if prior == "vamp":
        return VampPrior(config.data_dim, components, key=key)
    return StandardNormal(k)
