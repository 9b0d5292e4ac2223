"""The one place where configuration names become parts: `build_model(config, key)` turns a `ModelConfig`
into a model (a `model.VAE`, or a `deep` model for several latent layers) of Equinox parts;
`build_objective`, `build_optimizer`, `build_binarization` and `precision` turn a `TrainConfig`'s names into
an objective, an Optax transformation, a binarization and a dtype.

Adding a part means adding its module (or function) and one line here; nothing else switches on a name.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import Array
from jax.typing import DTypeLike

from jaxvae import binarization, objectives
from jaxvae.config import ModelConfig, TrainConfig
from jaxvae.deep import BottomUpVAE, Conditional, LadderEncoder, TopDownBlock, TopDownVAE
from jaxvae.likelihoods import BernoulliPixels, ContinuousBernoulliPixels, GaussianPixels, NetworkGaussianPixels
from jaxvae.model import VAE
from jaxvae.networks import MLP, Activation, ConvDecoder, ConvEncoder, Features, GatedMLP, he_linear, linear
from jaxvae.optimizers import adam_normgrad
from jaxvae.posteriors import IAF, DiagonalGaussian, FullGaussian
from jaxvae.priors import GaussianMixture, PriorNetwork, StandardNormal, VampPrior

ACTIVATIONS: dict[str, Activation] = {  # `--activation`: jax.nn's functions (gelu: its tanh approximation)
    "tanh": jax.nn.tanh,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
}
PRECISIONS: dict[str, DTypeLike] = {"fp32": jnp.float32, "bf16": jnp.bfloat16}  # `--precision`: the products'
OPTIMIZERS = {"adam": optax.adam, "adam-normgrad": adam_normgrad}  # `--optimizer`: learning rate -> transformation
BINARIZATIONS = {  # `--binarize`
    "none": binarization.Unchanged,
    "static": binarization.Static,
    "dynamic": binarization.Dynamic,
    "threshold": binarization.Threshold,
    "redraw": binarization.Redraw,
}
GRADIENTS = {"reparam": objectives.Reparam, "stl": objectives.STL, "dreg": objectives.DReG}  # `--gradient`


def _scalar(value: float) -> Array:
    return jnp.asarray(value, jnp.float32)


OBJECTIVES: dict[str, Callable[[TrainConfig, objectives.Gradient], objectives.Objective]] = {  # `--objective`
    "elbo": lambda t, g: objectives.Elbo(_scalar(t.beta), _scalar(t.free_bits), t.samples, g),
    "iwae": lambda t, g: objectives.Iwae(t.samples, g),
    "miwae": lambda t, g: objectives.Miwae(t.groups, t.samples, g),
    "ciwae": lambda t, g: objectives.Ciwae(_scalar(t.ciwae_beta), t.samples, g),
    "piwae": lambda t, g: objectives.Piwae(t.groups, t.samples, g),
}


def build_objective(config: TrainConfig) -> objectives.Objective:
    """The objective `config` names (`objective`, `gradient`), with its settings, its scalars (beta, free bits,
    CIWAE's beta) as float32 arrays (traced: a KL warm-up or a sweep changes them without compiling again)."""
    return OBJECTIVES[config.objective](config, GRADIENTS[config.gradient]())


def build_binarization(config: TrainConfig) -> binarization.Binarization:
    """How `config.binarize` binarizes the data."""
    return BINARIZATIONS[config.binarize]()


def build_optimizer(config: TrainConfig, lr: Array | float | None = None) -> optax.GradientTransformation:
    """The Optax transformation `config.optimizer` names, at `lr` (default `config.lr`; a sweep's is traced)."""
    return OPTIMIZERS[config.optimizer](config.lr if lr is None else lr)


def precision(config: TrainConfig) -> DTypeLike:
    """The dtype of the networks' matrix products and convolutions in training (`networks.with_precision`)."""
    return PRECISIONS[config.precision]


def build_model(config: ModelConfig, *, key: Array) -> VAE | BottomUpVAE | TopDownVAE:
    """The model `config` describes, its parameters drawn from `key` (2,).

    The key's uses: split in two for the encoder and the decoder, fold_in 2 for the posterior family's
    own parameters (a flow), fold_in 3 for the prior's; a deep model's layers fold_in 4 + l. A conditional
    model's networks are those of the concatenations [x, c] and [z, c] (every layer's, in a deep model), drawn
    from the same keys.
    """
    if config.layers:
        return (top_down if config.inference == "top-down" else bottom_up)(config, key=key)
    enc_key, dec_key = jax.random.split(key)
    d, k, m = config.data_dim, config.latent_dim, config.condition_dim
    posterior = posterior_family(config, k, key=jax.random.fold_in(key, 2))
    encoder = network(config, d, posterior.size, key=enc_key, condition_dim=m)
    decoder, likelihood = decoder_and_likelihood(config, k, key=dec_key)
    prior = latent_prior(config, k, key=jax.random.fold_in(key, 3))
    return VAE(encoder, posterior, decoder, likelihood, prior, m)


def posterior_family(config: ModelConfig, k: int, *, key: Array):
    """q's family over k latents (`--posterior`): diagonal, full or an inverse autoregressive flow."""
    family, steps = config.posterior_family
    if family == "iaf":
        return IAF(k, steps, key=key)
    if family == "full":
        return FullGaussian(k)
    return DiagonalGaussian(k, config.log_var_range)


def network(
    config: ModelConfig, in_size: int, out_size: int, *, key: Array, decoder: bool = False, condition_dim: int = 0
):
    """An encoder (x (d,) -> q's parameters) or, with `decoder`, a decoder (z -> the likelihood's parameters)
    of `config.architecture`; a decoder runs through the hidden widths in reverse. With `condition_dim` m > 0
    it takes a condition c (m,) too, at its first dense layer (a conv network's linear layer), whose parameters
    are those of the layer of the concatenation [input, c]."""
    hidden = tuple(reversed(config.hidden)) if decoder else config.hidden
    m, act = condition_dim, ACTIVATIONS[config.activation]
    if config.architecture == "conv":
        if decoder:
            return ConvDecoder(in_size, config.data_shape, config.hidden, act, key=key, condition_dim=m)
        return ConvEncoder(config.data_shape, out_size, config.hidden, act, key=key, condition_dim=m)
    if config.architecture == "gated":
        return GatedMLP(in_size, out_size, hidden, key=key, condition_dim=m)
    return MLP(in_size, out_size, hidden, act, key=key, condition_dim=m)


def dense_widths(config: ModelConfig) -> tuple[int, ...]:
    """The widths of the dense hidden layers that `network` builds: `--hidden` for mlp and gated networks,
    none for conv, whose `--hidden` are channels."""
    return () if config.architecture == "conv" else config.hidden


def decoder_and_likelihood(config: ModelConfig, in_size: int, *, key: Array):
    """The decoder of (in_size,) latents (and the condition, for a conditional model) and p(x|z)'s family, the
    decoder giving the family's `outputs` per pixel."""
    likelihood = likelihood_family(config)
    out_size = likelihood.outputs * config.data_dim
    decoder = network(config, in_size, out_size, key=key, decoder=True, condition_dim=config.condition_dim)
    return decoder, likelihood


def likelihood_family(config: ModelConfig):
    """p(x|z)'s family over pixels (`--likelihood`, with `--gaussian-variance` and `--gaussian-std`): a network
    variance doubles the decoder's outputs (its `outputs`, which `decoder_and_likelihood` sizes the decoder by)."""
    if config.likelihood == "gaussian" and config.gaussian_variance == "network":
        return NetworkGaussianPixels(2 * math.log(config.gaussian_std))
    if config.likelihood == "gaussian":
        shape = (config.data_dim,) if config.gaussian_variance == "learned-pixel" else ()
        log_var = jnp.full(shape, 2 * math.log(config.gaussian_std), jnp.float32)
        return GaussianPixels(log_var, fixed=config.gaussian_variance == "fixed")
    if config.likelihood == "continuous-bernoulli":
        return ContinuousBernoulliPixels()
    return BernoulliPixels()


def latent_prior(config: ModelConfig, k: int, *, key: Array):
    """p(z) over k latents (`--prior`): N(0, I), a Gaussian mixture, the VampPrior, or p(z | c), a network of
    the condition of the encoder's widths giving a diagonal Gaussian (Sohn et al. 2015). A conditional model's
    mixture and VampPrior are one per class (the condition a label one-hot)."""
    prior, components = config.prior_family
    m = config.condition_dim
    if prior == "conditional":
        act = ACTIVATIONS[config.activation]
        return PriorNetwork(MLP(m, 2 * k, config.hidden, act, key=key))
    if prior == "mixture":
        return GaussianMixture(k, components, key=key, classes=m)
    if prior == "vamp":
        return VampPrior(config.data_dim, components, key=key, classes=m)
    return StandardNormal(k)


def bottom_up(config: ModelConfig, *, key: Array) -> BottomUpVAE:
    """Burda et al.'s deep model: x -> z_1 -> ... -> z_L, and back down, each arrow a network of
    `--hidden` widths (`--architecture` mlp or gated) giving a diagonal Gaussian."""
    enc_key, dec_key = jax.random.split(key)
    sizes, d, m = config.layers, config.data_dim, config.condition_dim
    posterior = DiagonalGaussian(sizes[0], config.log_var_range)
    up, down = [], []
    for l, (below, above) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        up_key, down_key = jax.random.split(jax.random.fold_in(key, 4 + l))
        up.append(gaussian_layer(config, below, above, key=up_key))
        down.append(gaussian_layer(config, above, below, key=down_key, decoder=True))
    encoder = network(config, d, posterior.size, key=enc_key, condition_dim=m)
    seen = decoder_layers(config)
    decoder, likelihood = decoder_and_likelihood(config, sum(sizes[:seen]), key=dec_key)
    prior = latent_prior(config, sizes[-1], key=jax.random.fold_in(key, 3))
    parts = (encoder, posterior, up, down, decoder, likelihood, prior)
    return BottomUpVAE(*parts, sizes, seen, m)


def top_down(config: ModelConfig, *, key: Array) -> TopDownVAE:
    """The Ladder VAE / HVAE form: features d_l of width h (the last `--hidden` width) bottom-up, each from
    a network of the other `--hidden` widths; for l < L a state t_l of z_{l+1} (the same networks), and
    linear heads for q(z_L | d_L), p(z_l | t_l) and q(z_l | [d_l, t_l]). A conditional model's c enters the
    first trunk (x, c) and every state (z_{l+1}, c)."""
    enc_key, dec_key = jax.random.split(key)
    sizes, d, h, m = config.layers, config.data_dim, config.hidden[-1], config.condition_dim
    trunks, blocks = [], []
    for l, k in enumerate(sizes):
        trunk_key, state_key, prior_key, posterior_key = jax.random.split(jax.random.fold_in(key, 4 + l), 4)
        trunks.append(features(config, d if l == 0 else h, h, key=trunk_key, condition_dim=m if l == 0 else 0))
        if l < len(sizes) - 1:
            blocks.append(
                TopDownBlock(
                    features(config, sizes[l + 1], h, key=state_key, condition_dim=m),
                    gaussian_head(config, h, k, key=prior_key),
                    gaussian_head(config, 2 * h, k, key=posterior_key),
                )
            )
    top = gaussian_head(config, h, sizes[-1], key=jax.random.fold_in(enc_key, 1))
    seen = decoder_layers(config)
    decoder, likelihood = decoder_and_likelihood(config, sum(sizes[:seen]), key=dec_key)
    prior = latent_prior(config, sizes[-1], key=jax.random.fold_in(key, 3))
    parts = (LadderEncoder(trunks), top, blocks, decoder, likelihood, prior)
    return TopDownVAE(*parts, sizes, seen, m)


def decoder_layers(config: ModelConfig) -> int:
    """How many latent layers, from the bottom, the decoder sees (`--decoder-input`)."""
    return len(config.layers) if config.decoder_input == "all" else 1


def gaussian_layer(config: ModelConfig, in_size: int, k: int, *, key: Array, decoder: bool = False) -> Conditional:
    """A diagonal Gaussian over k latents from a network of `config`'s widths of an (in_size,) input (and of
    the condition, for a conditional model)."""
    net = network(config, in_size, 2 * k, key=key, decoder=decoder, condition_dim=config.condition_dim)
    return Conditional(net, DiagonalGaussian(k, config.log_var_range))


def gaussian_head(config: ModelConfig, in_size: int, k: int, *, key: Array) -> Conditional:
    """A diagonal Gaussian over k latents from a linear layer of (in_size,) features."""
    layer = he_linear(in_size, 2 * k, key=key) if config.architecture == "gated" else linear(in_size, 2 * k, key=key)
    return Conditional(layer, DiagonalGaussian(k, config.log_var_range))


def features(config: ModelConfig, in_size: int, out_size: int, *, key: Array, condition_dim: int = 0):
    """(in_size,) -> features (out_size,): the other `--hidden` widths, then a gated layer (gated) or a
    linear layer and the activation (mlp); with `condition_dim` m > 0, of (in_size,) and c (m,)."""
    m, hidden = condition_dim, config.hidden[:-1]
    if config.architecture == "gated":
        return GatedMLP(in_size, out_size, hidden, key=key, gated_out=True, condition_dim=m)
    return Features(MLP(in_size, out_size, hidden, ACTIVATIONS[config.activation], key=key, condition_dim=m))
