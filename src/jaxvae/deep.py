"""Deep VAEs: L stochastic layers z = (z_1, ..., z_L), z_1 nearest the data.

The layers are drawn and scored as one vector (..., K), K = k_1 + ... + k_L (bottom layer first), so
every objective and evaluation that uses `encode`, `decode` and `prior` holds for a deep model as it is.
The generative path is p(z_L) prod_{l<L} p(z_l | z_{l+1}) p(x | z_1): the top prior any prior part,
each conditional a diagonal Gaussian from a network of the layer above. Two inference orders:

- `BottomUpVAE` (Burda et al. 2015): q(z_1 | x) prod_{l>1} q(z_l | z_{l-1}).
- `TopDownVAE` (Sønderby et al. 2016's Ladder VAE, Tomczak and Welling's 2-level HVAE): deterministic
  features d_1, ..., d_L of x, bottom-up; q(z_L | d_L); then for l < L a top-down state t_l of z_{l+1}
  gives both p(z_l | z_{l+1}) and, with d_l, q(z_l | x, z_{l+1}).

log w = log p(x | z_1) + sum_l [log p(z_l | z_{l+1}) - log q(z_l | ...)], and each layer's KL is
reported on its own (`Layered.kl_layers`).

A conditional deep model (`conditions` m > 0) takes the condition c (n, m) in every layer's networks: the
encoder's first layer, each conditional p(z_l | z_{l+1}, c) and q(z_l | z_{l-1}, c) (bottom-up) or each
top-down state t_l(z_{l+1}, c) (top-down, whose features d_l see c through d_1), the top prior p(z_L | c)
where it is a network or per class, and the decoder. The distributions over z hold c for their networks.
"""

import functools
import operator
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.distributions import (
    CLOSED_FORM_KL,
    ClosedFormKL,
    Distribution,
    Layered,
    MonteCarloKL,
    Normal,
    PixelDensity,
    kl_estimator,
    kl_normal,
)
from jaxvae.likelihoods import PixelLikelihood
from jaxvae.model import AmortizedModel, LatentModel
from jaxvae.networks import map_examples
from jaxvae.posteriors import DiagonalGaussian
from jaxvae.priors import Prior


class Conditional(eqx.Module):
    """A diagonal Gaussian over one layer from a network of what it is conditioned on: h (..., h_size) and
    a model's condition c (n, m) or None -> a Normal over (..., k). `network` maps one h (h_size,) (and one c
    (m,)) to the family's 2k parameters."""

    network: Callable[..., Array]
    family: DiagonalGaussian

    def __call__(self, h: Array, c: Array | None = None) -> Normal:
        return self.family(map_examples(self.network, h, c))


def _total(terms: list[Array]) -> Array:
    """The sum of the layers' terms, first to last."""
    return functools.reduce(operator.add, terms)


def _top_kl(q: Distribution, p: Distribution, z: Array, log_q: Array) -> Array:
    """KL(q(z_L | ...) || p(z_L)) at the draws z (S, ..., k_L) with log q = log_q (S, ...): (S, ...)."""
    return kl_estimator(q, p).per_draw(q, p, z, log_q)


class DownwardPrior(Layered):
    """p(z | c) = p(z_L | c) prod_{l<L} p(z_l | z_{l+1}, c): `top` over (k_L,) (or (n, k_L)); `down[l]`, for
    layer l + 1 (0-based l), maps z_{l+2} (..., k_{l+2}) and the `condition` c (n, m) or None to
    p(z_{l+1} | z_{l+2}, c). Ancestral draws, from the top; with a condition, `shape` draws per example
    (*shape, n, K)."""

    top: Distribution
    down: list
    condition: Array | None = None

    def _top_draws(self, key: Array, shape: tuple[int, ...]) -> Array:
        """`shape` draws of z_L, one per example of the condition (n, m) where p(z_L) is not of c (N(0, I))."""
        draws = self.top.sample(key, shape)
        if self.condition is not None and draws.ndim == len(shape) + 1:
            draws = self.top.sample(key, (*shape, *self.condition.shape[:-1]))
        return draws

    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        keys = jax.random.split(key, len(self.sizes))
        layers = [self._top_draws(keys[-1], shape)]
        for conditional, k in zip(reversed(self.down), reversed(keys[:-1]), strict=True):
            layers.insert(0, conditional(layers[0], self.condition).sample(k))
        return jnp.concatenate(layers, axis=-1)

    def means_below(self, top: Array) -> Array:
        """z (..., K) from the top layer's z_L (..., k_L), each layer below at its conditional mean
        E[z_l | z_{l+1}, c], from the top down."""
        layers = [top]
        for conditional in reversed(self.down):
            layers.insert(0, conditional(layers[0], self.condition).mean)
        return jnp.concatenate(layers, axis=-1)

    def log_prob(self, z: Array) -> Array:
        layers = self.layers(z)
        total = self.top.log_prob(layers[-1])
        for l, conditional in enumerate(self.down):
            total = total + conditional(layers[l + 1], self.condition).log_prob(layers[l])
        return total


class BottomUpPosterior(Layered):
    """q(z | x, c) = q(z_1 | x, c) prod_{l>1} q(z_l | z_{l-1}, c): `first` is q(z_1 | x, c) (batch shape (n,)),
    `up[l]` maps z_{l+1} and the `condition` c (n, m) or None to q(z_{l+2} | z_{l+1}, c) (0-based l)."""

    first: Distribution
    up: list
    condition: Array | None = None

    def sample_and_log_prob(self, key: Array, shape: tuple[int, ...] = ()) -> tuple[Array, Array]:
        keys = jax.random.split(key, len(self.sizes))
        z, log_q = self.first.sample_and_log_prob(keys[0], shape)
        layers = [z]
        for conditional, k in zip(self.up, keys[1:], strict=True):
            z, log_q_l = conditional(layers[-1], self.condition).sample_and_log_prob(k)
            layers.append(z)
            log_q = log_q + log_q_l
        return jnp.concatenate(layers, axis=-1), log_q

    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        return self.sample_and_log_prob(key, shape)[0]

    def _conditionals(self, layers: list[Array]) -> list[Distribution]:
        return [self.first] + [up(z, self.condition) for up, z in zip(self.up, layers[:-1], strict=True)]

    def log_prob(self, z: Array) -> Array:
        layers = self.layers(z)
        return _total([q.log_prob(zl) for q, zl in zip(self._conditionals(layers), layers, strict=True)])

    def kl_layers(self, p: DownwardPrior, z: Array) -> Array:
        """Layer l < L: log q(z_l | z_{l-1}) - log p(z_l | z_{l+1}) at the draws (z_{l+1} is drawn after z_l,
        from q(z_{l+1} | z_l), so no closed form holds); the top layer: KL(q(z_L | z_{L-1}) || p(z_L)), in
        closed form where the pair has one."""
        layers = self.layers(z)
        qs = self._conditionals(layers)
        terms = [
            q.log_prob(zl) - down(above, p.condition).log_prob(zl)
            for q, down, zl, above in zip(qs[:-1], p.down, layers[:-1], layers[1:], strict=True)
        ]
        terms.append(_top_kl(qs[-1], p.top, layers[-1], qs[-1].log_prob(layers[-1])))
        return jnp.stack(terms, axis=-1)

    def kl_estimator(self, p: DownwardPrior) -> MonteCarloKL:
        return MonteCarloKL()


class TopDownPosterior(Layered):
    """q(z | x) = q(z_L | d_L) prod_{l<L} q(z_l | d_l, t_l(z_{l+1})): `features` the d_l, each (n, h) for a
    batch of n examples; `top` maps d_L to q(z_L | x); `blocks[l]` (a `TopDownBlock`) gives layer l + 1's
    state, prior and posterior (0-based l), the state of z_{l+1} and the `condition` c (n, m) or None."""

    features: tuple
    top: Conditional
    blocks: list
    condition: Array | None = None

    def _posteriors(self, layer: Callable[[int, Normal], Array]) -> tuple[list[Normal], list[Array]]:
        """From the top: each layer's q and its z_l = layer(l, q); both lists bottom layer first."""
        qs, layers = [], []
        for l in reversed(range(len(self.sizes))):
            if layers:
                q = self.blocks[l].posterior(self.features[l], layers[-1], self.condition)
            else:
                q = self.top(self.features[l])
            qs.append(q)
            layers.append(layer(l, q))
        return qs[::-1], layers[::-1]

    def _drawn(self, key: Array, shape: tuple[int, ...]) -> tuple[list[Normal], list[Array]]:
        """Each layer's q and its draw with `key`, `shape` draws of the top layer (one of each below per draw)."""
        keys, top = jax.random.split(key, len(self.sizes)), len(self.sizes) - 1
        return self._posteriors(lambda l, q: q.sample(keys[l], shape if l == top else ()))

    def _at(self, z: Array) -> tuple[list[Normal], list[Array]]:
        """Each layer's q, at the layers of z (..., K)."""
        given = self.layers(z)
        return self._posteriors(lambda l, q: given[l])

    def sample(self, key: Array, shape: tuple[int, ...] = ()) -> Array:
        return jnp.concatenate(self._drawn(key, shape)[1], axis=-1)

    def sample_and_log_prob(self, key: Array, shape: tuple[int, ...] = ()) -> tuple[Array, Array]:
        qs, layers = self._drawn(key, shape)
        return jnp.concatenate(layers, axis=-1), _total([q.log_prob(zl) for q, zl in zip(qs, layers, strict=True)])

    def log_prob(self, z: Array) -> Array:
        qs, layers = self._at(z)
        return _total([q.log_prob(zl) for q, zl in zip(qs, layers, strict=True)])

    def kl_layers(self, p: DownwardPrior, z: Array) -> Array:
        """Layer l < L: KL(q(z_l | x, z_{l+1}) || p(z_l | z_{l+1})) in closed form at the draw z_{l+1}; the
        top layer: KL(q(z_L | x) || p(z_L)), in closed form where the pair has one."""
        qs, layers = self._at(z)
        pairs = zip(qs[:-1], p.down, layers[1:], strict=True)
        terms = [kl_normal(q, down(above, p.condition)) for q, down, above in pairs]
        terms.append(_top_kl(qs[-1], p.top, layers[-1], qs[-1].log_prob(layers[-1])))
        return jnp.stack(jnp.broadcast_arrays(*terms), axis=-1)

    def kl_estimator(self, p: DownwardPrior) -> ClosedFormKL | MonteCarloKL:
        closed_form = CLOSED_FORM_KL.get((Normal, type(p.top)))  # q(z_L | x) is Normal
        return MonteCarloKL() if closed_form is None else ClosedFormKL(closed_form)


class TopDownBlock(eqx.Module):
    """One layer l < L of a top-down model: `state` maps z_{l+1} (k_{l+1},) (and a conditional model's c (m,))
    to t_l (h,), shared by p(z_l | z_{l+1}) = `prior_head`(t_l) and q(z_l | x, z_{l+1}) =
    `posterior_head`([d_l, t_l])."""

    state: Callable[..., Array]
    prior_head: Conditional
    posterior_head: Conditional

    def prior(self, above: Array, c: Array | None = None) -> Normal:
        """p(z_l | z_{l+1}, c) for z_{l+1} (..., k_{l+1}) and c (n, m) or None."""
        return self.prior_head(map_examples(self.state, above, c))

    def posterior(self, features: Array, above: Array, c: Array | None = None) -> Normal:
        """q(z_l | x, z_{l+1}, c) for features d_l (n, h), z_{l+1} (..., n, k_{l+1}) and c (n, m) or None."""
        state = map_examples(self.state, above, c)
        features = jnp.broadcast_to(features, state.shape[:-1] + features.shape[-1:])
        return self.posterior_head(jnp.concatenate([features, state], axis=-1))


class Layers:
    """What both deep models share: their layer sizes, their condition's size and their decoder, p(x | z_1, c)
    (or of the bottom `decoder_layers` layers)."""

    layer_sizes: tuple[int, ...]
    conditions: int
    decoder: Callable[..., Array]
    likelihood: PixelLikelihood
    decoder_layers: int

    @property
    def sizes(self) -> tuple[int, ...]:
        """(k_1, ..., k_L), bottom layer first."""
        return self.layer_sizes

    @property
    def condition_dim(self) -> int:
        """m, the size of the condition per example (0: none)."""
        return self.conditions

    def decode(self, z: Array, c: Array | None = None) -> PixelDensity:
        """p(x | z_1, c), or p(x | z_1, ..., z_j, c) with j = `decoder_layers`, for z (..., K): over (..., d)."""
        return self.likelihood(map_examples(self.decoder, z[..., : sum(self.sizes[: self.decoder_layers])], c))


class BottomUpVAE(Layers, AmortizedModel):
    """A deep VAE inferred bottom-up: `encoder` x (d,) -> `posterior`'s parameters for q(z_1 | x); `up[l]`
    gives q(z_{l+2} | z_{l+1}) and `down[l]` p(z_{l+1} | z_{l+2}) (0-based l, each a `Conditional`);
    `decoder` z_1 (k_1,) (or the bottom `decoder_layers` layers) -> the likelihood's parameters;
    `latent_prior` p(z_L). With `conditions` m > 0 every network takes the example's c (m,) too."""

    encoder: Callable[[Array], Array]
    posterior: DiagonalGaussian
    up: list[Conditional]
    down: list[Conditional]
    decoder: Callable[[Array], Array]
    likelihood: PixelLikelihood
    latent_prior: Prior
    layer_sizes: tuple[int, ...] = eqx.field(static=True)
    decoder_layers: int = eqx.field(static=True, default=1)
    conditions: int = eqx.field(static=True, default=0)

    def posterior_parameters(self, x: Array, c: Array | None = None) -> Array:
        """The encoder's output for x (..., d) and c (n, m) or None, the parameters of q(z_1 | x, c):
        (..., posterior.size)."""
        return map_examples(self.encoder, x, c)

    def posterior_at(self, params: Array, c: Array | None = None) -> BottomUpPosterior:
        """q(z | x, c) from per-example parameters of q(z_1 | x, c) (..., posterior.size), what the encoder
        outputs; the upper layers' q(z_l | z_{l-1}, c) are the model's own, of c (n, m) or None."""
        return BottomUpPosterior(self.sizes, self.posterior(params), self.up, c)

    def prior(self, c: Array | None = None) -> DownwardPrior:
        """p(z | c), a distribution over (K,), or per example over (n, K) for c (n, m)."""
        return DownwardPrior(self.sizes, self.latent_prior(self, c), self.down, c)


class TopDownVAE(Layers, LatentModel):
    """A deep VAE inferred top-down: `encoder` x (d,) -> the features (d_1, ..., d_L); `top` d_L -> q(z_L | x);
    `blocks[l]` layer l + 1's state, prior and posterior (0-based l); `decoder` z_1 (k_1,) (or the bottom
    `decoder_layers` layers) -> the likelihood's parameters; `latent_prior` p(z_L). With `conditions` m > 0
    the encoder's first trunk, the states and the decoder take the example's c (m,) too."""

    encoder: Callable[[Array], tuple[Array, ...]]
    top: Conditional
    blocks: list[TopDownBlock]
    decoder: Callable[[Array], Array]
    likelihood: PixelLikelihood
    latent_prior: Prior
    layer_sizes: tuple[int, ...] = eqx.field(static=True)
    decoder_layers: int = eqx.field(static=True, default=1)
    conditions: int = eqx.field(static=True, default=0)

    def encode(self, x: Array, c: Array | None = None) -> TopDownPosterior:
        """q(z | x, c) for x (..., d) and c (n, m) or None: a distribution over (..., K)."""
        return TopDownPosterior(self.sizes, map_examples(self.encoder, x, c), self.top, self.blocks, c)

    def prior(self, c: Array | None = None) -> DownwardPrior:
        """p(z | c), a distribution over (K,), or per example over (n, K) for c (n, m)."""
        downs = [block.prior for block in self.blocks]
        return DownwardPrior(self.sizes, self.latent_prior(self, c), downs, c)

    def top_gaussian(self, x: Array, c: Array | None = None) -> Normal:
        """q(z_L | x, c) for x (..., d) and c (n, m) or None, what a VampPrior over the top layer mixes."""
        return self.top(map_examples(self.encoder, x, c)[-1])


class LadderEncoder(eqx.Module):
    """The deterministic bottom-up pass: x (d,) -> (d_1, ..., d_L), d_1 = trunks[0](x), d_l = trunks[l-1](d_{l-1});
    with a condition c (m,), d_1 = trunks[0](x, c)."""

    trunks: list

    def __call__(self, x: Array, c: Array | None = None) -> tuple:
        first, *rest = self.trunks
        features = [first(x) if c is None else first(x, c)]
        for trunk in rest:
            features.append(trunk(features[-1]))
        return tuple(features)
