"""The VAE as a container of parts: an encoder network and a posterior family give q(z|x), a decoder
network and a likelihood family give p(x|z), and a prior gives p(z). Each part is an Equinox module;
`builder.build_model` makes them from a config, and any module with the right sizes may replace one.

Every objective, prior, evaluation and figure uses a model through one protocol, `LatentModel`: `encode(x)`
(q, a distribution over z), `decode(z)` (p(x|z)), `prior()` (p(z)), the latent layers' `sizes`, and where a
part needs them `top_gaussian(x)` (what a VampPrior mixes); an `AmortizedModel` also gives q at per-example
parameters (`posterior_parameters`, `posterior_at`), what the amortization gaps fit.

A conditional model (`condition_dim` m > 0) is p(x | z, c) p(z | c) with q(z | x, c), for a condition c of
shape (n, m) per example (a class label one-hot): `encode(x, c)`, `decode(z, c)`, `prior(c)`,
`top_gaussian(x, c)`, `posterior_at(params, c)`. Without one (c None, m = 0) the model is p(x), as before.
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

    @property
    def condition_dim(self) -> int:
        """m, the size of the condition c per example; 0 for a model of p(x) alone."""
        return 0

    @abc.abstractmethod
    def encode(self, x: Array, c: Array | None = None) -> Distribution:
        """q(z|x, c) for x of shape (..., d) and c (n, m) or None: a distribution over (..., K)."""

    @abc.abstractmethod
    def decode(self, z: Array, c: Array | None = None) -> PixelDensity:
        """p(x|z, c) for z of shape (..., K) and c (n, m) or None: a distribution over (..., d)."""

    @abc.abstractmethod
    def prior(self, c: Array | None = None) -> Distribution:
        """p(z | c), a distribution over (K,), or with a prior network over (n, K) for c (n, m)."""

    def top_gaussian(self, x: Array, c: Array | None = None) -> Normal | FullNormal:
        """A Gaussian q(z_L | x, c) over the top layer for x (..., d) and c (n, m) or None, what a VampPrior over
        it mixes."""
        raise NotImplementedError(f"{type(self).__name__} has no Gaussian q(z_L | x) for a VampPrior to mix")


class AmortizedModel(LatentModel):
    """A model whose q(z|x) is one family at per-example parameters: `encode(x)` is
    `posterior_at(posterior_parameters(x))`. Fitting those parameters per example gives the amortization gap."""

    @abc.abstractmethod
    def posterior_parameters(self, x: Array, c: Array | None = None) -> Array:
        """The parameters of q(z|x, c) of each x (..., d): (..., P), what the encoder outputs."""

    @abc.abstractmethod
    def posterior_at(self, params: Array, c: Array | None = None) -> Distribution:
        """q(z|x, c) at per-example parameters (..., P); c (n, m) for the parts of q that are not amortized
        (a deep bottom-up model's upper layers), or None."""

    def encode(self, x: Array, c: Array | None = None) -> Distribution:
        """q(z|x, c) for x of shape (..., d): a distribution over (..., K)."""
        return self.posterior_at(self.posterior_parameters(x, c), c)


def posterior(model: LatentModel, x: Array, params: Array | None = None, c: Array | None = None) -> Distribution:
    """q(z|x, c) for x (..., d): the model's, or with `params` (..., P) an `AmortizedModel`'s family at them."""
    if params is None:
        return model.encode(x, c)
    if not isinstance(model, AmortizedModel):
        raise TypeError(f"{type(model).__name__} has no per-example posterior parameters")
    return model.posterior_at(params, c)


def split_condition(model: LatentModel, rows: Array) -> tuple[Array, Array | None]:
    """Rows (..., d + m) that carry each example x with its condition c, as training and held-out data do for a
    conditional model (m = `condition_dim`): (x (..., d), c (..., m)); (rows, None) for a model of p(x)."""
    m = model.condition_dim
    return (rows, None) if m == 0 else (rows[..., :-m], rows[..., -m:])


class VAE(AmortizedModel):
    """A variational autoencoder over flattened data vectors of size d with latents of size k.

    `encoder` maps one example x (d,) to the posterior family's parameters (posterior.size,);
    `decoder` maps one z (k,) to the likelihood family's parameters (d,). Any Equinox module with
    those sizes may replace either (`eqx.tree_at(lambda m: m.encoder, vae, mine)`). `encode` and
    `decode` take any leading batch axes: x (..., d) -> q(z|x) over (..., k), z (..., k) -> p(x|z)
    over (..., d); `prior()` is p(z) over (k,).

    With `conditions` m > 0 the networks take a second argument, the condition c (m,) of the example
    (`encoder(x, c)`, `decoder(z, c)`), and `encode(x, c)`, `decode(z, c)`, `prior(c)` need c (n, m).
    """

    encoder: Callable[..., Array]
    posterior: PosteriorFamily
    decoder: Callable[..., Array]
    likelihood: PixelLikelihood
    latent_prior: Prior
    conditions: int = eqx.field(static=True, default=0)

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

    @property
    def condition_dim(self) -> int:
        """m, the size of the condition per example (0: none)."""
        return self.conditions

    def prior(self, c: Array | None = None) -> Distribution:
        """p(z | c), a distribution over (k,), or (n, k) with a prior network."""
        return self.latent_prior(self, c)

    def posterior_parameters(self, x: Array, c: Array | None = None) -> Array:
        """The encoder's output for x (..., d) and c (n, m) or None: (..., posterior.size)."""
        return map_examples(self.encoder, x, c)

    def posterior_at(self, params: Array, c: Array | None = None) -> Distribution:
        """q(z|x) from per-example posterior parameters (..., posterior.size), what the encoder outputs (which
        saw c: the family maps them alone)."""
        return self.posterior(params)

    def decode(self, z: Array, c: Array | None = None) -> PixelDensity:
        """p(x|z, c) for z of shape (..., k) and c (n, m) or None: a distribution over (..., d)."""
        return self.likelihood(map_examples(self.decoder, z, c))

    def top_gaussian(self, x: Array, c: Array | None = None) -> Normal | FullNormal:
        """The Gaussian part of q(z|x, c) for x (..., d) (the flow's base for IAF), what a VampPrior mixes."""
        return self.posterior.gaussian(map_examples(self.encoder, x, c))
