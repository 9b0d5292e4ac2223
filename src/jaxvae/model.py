"""The VAE as a container of parts: an encoder network and a posterior family give q(z|x), a decoder
network and a likelihood family give p(x|z), and a prior gives p(z). Each part is an Equinox module;
`builder.build_model` makes them from a config, and any module with the right sizes may replace one.

Every objective and evaluation uses the model through one protocol: `encode(x)` (q, a distribution over
z), `decode(z)` (p(x|z)) and `prior()` (p(z)).
"""

import abc

import equinox as eqx
from jax import Array

from jaxvae.distributions import Distribution
from jaxvae.networks import map_examples


class LatentModel(eqx.Module):
    """What every model gives objectives and evaluations: q(z|x), p(x|z) and p(z) over latents of size
    `latent_dim`; each model also names its layers' sizes, `sizes` (one layer for `VAE`; several for the
    models of `deep`)."""

    @property
    @abc.abstractmethod
    def latent_dim(self) -> int:
        """k, the size of z (every layer's, for a deep model)."""

    @abc.abstractmethod
    def encode(self, x: Array) -> Distribution:
        """q(z|x) for x of shape (..., d): a distribution over (..., k)."""

    @abc.abstractmethod
    def decode(self, z: Array):
        """p(x|z) for z of shape (..., k): a distribution over (..., d)."""

    @abc.abstractmethod
    def prior(self) -> Distribution:
        """p(z), a distribution over (k,)."""


class VAE(LatentModel):
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

    def __new__(cls, *parts: object, **named_parts: object):
        """A VAE is made of its five parts; `VAE(config, key=key)`, which built one from a config up to
        jaxvae 0.1.0, fails with the name of what does that now."""
        if "key" in named_parts:
            raise TypeError("VAE(config, key=key) no longer builds a model: use jaxvae.build_model(config, key=key)")
        return super().__new__(cls)

    @property
    def latent_dim(self) -> int:
        """k, the posterior family's latent size."""
        return self.posterior.latent_dim

    @property
    def sizes(self) -> tuple[int, ...]:
        """The latent layers' sizes: one layer of k."""
        return (self.latent_dim,)

    def prior(self) -> Distribution:
        """p(z), a distribution over (k,)."""
        return self.latent_prior(self)

    def encode(self, x: Array) -> Distribution:
        """q(z|x) for x of shape (..., d): a distribution over (..., k)."""
        return self.posterior_at(map_examples(self.encoder, x))

    def posterior_at(self, params: Array) -> Distribution:
        """q(z|x) from per-example posterior parameters (..., posterior.size), what the encoder outputs."""
        return self.posterior(params)

    def decode(self, z: Array):
        """p(x|z) for z of shape (..., k): a distribution over (..., d)."""
        return self.likelihood(map_examples(self.decoder, z))

    def top_gaussian(self, x: Array) -> Distribution:
        """The Gaussian part of q(z|x) for x (..., d) (the flow's base for IAF), what a VampPrior mixes."""
        return self.posterior.gaussian(map_examples(self.encoder, x))
