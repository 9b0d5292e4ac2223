"""The VAE as a container of parts: an encoder network and a posterior family give q(z|x), a decoder
network and a likelihood family give p(x|z), and a prior gives p(z). Each part is an Equinox module;
`builder.build_model` makes them from a config, and any module with the right sizes may replace one.

Every objective, prior, evaluation and figure uses a model through one protocol, `LatentModel`: `encode(x)`
(q, a distribution over z), `decode(z)` (p(x|z)), `prior()` (p(z)), the latent layers' `sizes`, and where a
part needs them `top_gaussian(x)` (what a VampPrior mixes); an `AmortizedModel` also gives q at per-example
parameters (`posterior_parameters`, `posterior_at`), what the amortization gaps fit.
"""

import abc
from collections.abc import Callable

import equinox as eqx
from jax import Array

from jaxvae.distributions import Distribution, FullNormal, Normal, PixelDensity
from jaxvae.likelihoods import PixelLikelihood
from jaxvae.networks import map_examples
from jaxvae.posteriors import PosteriorFamily
from jaxvae.priors import Prior


class LatentModel(eqx.Module):
    """What every model gives objectives, priors, evaluations and figures: q(z|x), p(x|z) and p(z) over
    latents z of size `latent_dim`, in layers of `sizes` (one layer for `VAE`; several for the models of
    `deep`, concatenated bottom layer first)."""

    @property
    @abc.abstractmethod
    def sizes(self) -> tuple[int, ...]:
        """The latent layers' sizes (k_1, ..., k_L), bottom layer first; (k,) for one layer."""

    @property
    def latent_dim(self) -> int:
        """K = k_1 + ... + k_L, the size of z."""
        return sum(self.sizes)

    @abc.abstractmethod
    def encode(self, x: Array) -> Distribution:
        """q(z|x) for x of shape (..., d): a distribution over (..., K)."""

    @abc.abstractmethod
    def decode(self, z: Array) -> PixelDensity:
        """p(x|z) for z of shape (..., K): a distribution over (..., d)."""

    @abc.abstractmethod
    def prior(self) -> Distribution:
        """p(z), a distribution over (K,)."""

    def top_gaussian(self, x: Array) -> Normal | FullNormal:
        """A Gaussian q(z_L | x) over the top layer for x (..., d), what a VampPrior over it mixes."""
        raise NotImplementedError(f"{type(self).__name__} has no Gaussian q(z_L | x) for a VampPrior to mix")


class AmortizedModel(LatentModel):
    """A model whose q(z|x) is one family at per-example parameters: `encode(x)` is
    `posterior_at(posterior_parameters(x))`. Fitting those parameters per example gives the amortization gap."""

    @abc.abstractmethod
    def posterior_parameters(self, x: Array) -> Array:
        """The parameters of q(z|x) of each x (..., d): (..., P), what the encoder outputs."""

    @abc.abstractmethod
    def posterior_at(self, params: Array) -> Distribution:
        """q(z|x) at per-example parameters (..., P)."""

    def encode(self, x: Array) -> Distribution:
        """q(z|x) for x of shape (..., d): a distribution over (..., K)."""
        return self.posterior_at(self.posterior_parameters(x))


def posterior(model: LatentModel, x: Array, params: Array | None = None) -> Distribution:
    """q(z|x) for x (..., d): the model's, or with `params` (..., P) an `AmortizedModel`'s family at them."""
    if params is None:
        return model.encode(x)
    if not isinstance(model, AmortizedModel):
        raise TypeError(f"{type(model).__name__} has no per-example posterior parameters")
    return model.posterior_at(params)


class VAE(AmortizedModel):
    """A variational autoencoder over flattened data vectors of size d with latents of size k.

    `encoder` maps one example x (d,) to the posterior family's parameters (posterior.size,);
    `decoder` maps one z (k,) to the likelihood family's parameters (d,). Any Equinox module with
    those sizes may replace either (`eqx.tree_at(lambda m: m.encoder, vae, mine)`). `encode` and
    `decode` take any leading batch axes: x (..., d) -> q(z|x) over (..., k), z (..., k) -> p(x|z)
    over (..., d); `prior()` is p(z) over (k,).
    """

    encoder: Callable[[Array], Array]
    posterior: PosteriorFamily
    decoder: Callable[[Array], Array]
    likelihood: PixelLikelihood
    latent_prior: Prior

    def __new__(cls, *parts: object, **named_parts: object):
        """A VAE is made of its five parts; `VAE(config, key=key)`, which built one from a config up to
        jaxvae 0.1.0, fails with the name of what does that now."""
        if "key" in named_parts:
            raise TypeError("VAE(config, key=key) no longer builds a model: use jaxvae.build_model(config, key=key)")
        return super().__new__(cls)

    @property
    def sizes(self) -> tuple[int, ...]:
        """The latent layers' sizes: one layer of k, the posterior family's latent size."""
        return (self.posterior.latent_dim,)

    def prior(self) -> Distribution:
        """p(z), a distribution over (k,)."""
        return self.latent_prior(self)

    def posterior_parameters(self, x: Array) -> Array:
        """The encoder's output for x (..., d): (..., posterior.size)."""
        return map_examples(self.encoder, x)

    def posterior_at(self, params: Array) -> Distribution:
        """q(z|x) from per-example posterior parameters (..., posterior.size), what the encoder outputs."""
        return self.posterior(params)

    def decode(self, z: Array) -> PixelDensity:
        """p(x|z) for z of shape (..., k): a distribution over (..., d)."""
        return self.likelihood(map_examples(self.decoder, z))

    def top_gaussian(self, x: Array) -> Normal | FullNormal:
        """The Gaussian part of q(z|x) for x (..., d) (the flow's base for IAF), what a VampPrior mixes."""
        return self.posterior.gaussian(map_examples(self.encoder, x))
