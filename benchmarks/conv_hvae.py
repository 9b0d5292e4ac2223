"""The gated convolutional 2-level HVAE of the Exemplar VAE code (`models/convHVAE_2level.py`, with
`models/AbsHModel.py`'s wiring) as a jaxvae model file, for the published table's ConvHVAE rows:

    jaxvae train --model benchmarks/conv_hvae.py:build --latent-dim 40,40 --inference top-down \
        --decoder-input all --architecture gated --hidden 300,300 --log-var-range=-6,2 ...

It is the configured top-down model (`jaxvae.build_model`) with their convolutional networks in place:

- the encoder: x -> (d_1, d_2), two stacks of five gated convolutions, `q_z1_layers_x` and `q_z_layers`,
  each ending in 6 channels at a quarter of the height and width (6 x 7 x 7 = 294 features of 28 x 28);
- q(z_2 | x): a linear head of d_2 (`q_z_mean`, `q_z_logvar`);
- q(z_1 | x, z_2): a gated dense layer of [d_1, t_1] to 300 (`q_z1_layers_joint`), then a linear head;
- the decoder: z_1 and z_2 each through a gated dense layer to 300 (`p_x_layers_z1`, `p_x_layers_z2`),
  together through one to an image (`p_x_layers_joint_pre`), then four gated 3 x 3 convolutions of 64
  channels (`p_x_layers_joint`) and a 1 x 1 convolution to the logits (`p_x_mean`).

p(z_1 | z_2) is the configured model's: the state t_1, two gated dense layers of z_2 (`--hidden 300,300`,
as their `p_z1_layers_z2`), and a linear head. Where theirs differs: q(z_1 | x, z_2) reads z_2 through
that shared state t_1, not through a gated layer of its own (`q_z1_layers_z2`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

import jaxvae
from jaxvae.deep import Conditional
from jaxvae.errors import InputError
from jaxvae.networks import Conv, GatedConv, GatedDense, Linear, he_linear, image_shape
from jaxvae.posteriors import DiagonalGaussian

# (out channels, kernel, stride) of each gated convolution
FEATURES_1 = ((32, 3, 1), (32, 3, 2), (64, 3, 1), (64, 3, 2), (6, 3, 1))  # q_z1_layers_x: d_1 for q(z_1 | x, z_2)
FEATURES_2 = ((32, 7, 1), (32, 3, 2), (64, 5, 1), (64, 3, 2), (6, 3, 1))  # q_z_layers: d_2 for q(z_2 | x)
DECODER = ((64, 3, 1),) * 4  # p_x_layers_joint
WIDTH = 300  # their fc_size


def gated_convs(in_channels: int, spec, *, key: Array) -> list[GatedConv]:
    """The gated convolutions of `spec` ((out channels, kernel, stride) each), from `in_channels` channels."""
    widths = [in_channels, *(channels for channels, _, _ in spec)]
    keys = jax.random.split(key, len(spec))
    return [
        GatedConv(a, b, kernel, stride, key=k)
        for a, b, (_, kernel, stride), k in zip(widths[:-1], widths[1:], spec, keys, strict=True)
    ]


class ConvStack(eqx.Module):
    """Gated convolutions of a flat image x (H * W * C,) -> the last one's output, flattened (c * h * w,)."""

    layers: list[GatedConv]
    shape: tuple[int, int, int] = eqx.field(static=True)  # (H, W, C) of x

    def __init__(self, shape: tuple[int, int, int], spec, *, key: Array):
        self.shape = shape
        self.layers = gated_convs(shape[2], spec, key=key)

    def __call__(self, x: Array) -> Array:
        h, w, c = self.shape
        y = x.reshape(h, w, c).transpose(2, 0, 1)  # channels first, as Conv2d wants
        for layer in self.layers:
            y = layer(y)
        return y.reshape(-1)


class TwoStacks(eqx.Module):
    """The encoder: x (d,) -> the features (d_1, d_2), one convolutional stack each."""

    first: ConvStack
    second: ConvStack

    def __call__(self, x: Array) -> tuple[Array, Array]:
        return self.first(x), self.second(x)


class GatedHead(eqx.Module):
    """q(z_1 | x, z_2)'s network: [d_1, t_1] -> a gated dense layer -> a linear layer to q's parameters."""

    joint: GatedDense
    head: Linear

    def __call__(self, h: Array) -> Array:
        return self.head(self.joint(h))


class ConvDecoder(eqx.Module):
    """z = [z_1, z_2] (k_1 + k_2,) -> the logits of a flat image (H * W * C,)."""

    z1: GatedDense
    z2: GatedDense
    joint: GatedDense
    convs: list[GatedConv]
    out: Conv
    k1: int = eqx.field(static=True)
    shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(self, k1: int, k2: int, shape: tuple[int, int, int], *, key: Array):
        keys = jax.random.split(key, 5)
        self.k1, self.shape = k1, shape
        h, w, c = shape
        self.z1, self.z2 = GatedDense(k1, WIDTH, key=keys[0]), GatedDense(k2, WIDTH, key=keys[1])
        self.joint = GatedDense(2 * WIDTH, h * w * c, key=keys[2])
        self.convs = gated_convs(c, DECODER, key=keys[4])
        self.out = Conv(eqx.nn.Conv2d(DECODER[-1][0], c, 1, key=keys[3]))

    def __call__(self, z: Array) -> Array:
        h, w, c = self.shape
        joint = self.joint(jnp.concatenate([self.z1(z[: self.k1]), self.z2(z[self.k1 :])]))
        y = joint.reshape(h, w, c).transpose(2, 0, 1)
        for conv in self.convs:
            y = conv(y)
        return self.out(y).transpose(1, 2, 0).reshape(-1)


def build(config: jaxvae.ModelConfig, key: Array):
    """The configured 2-level top-down model (`--latent-dim K1,K2 --inference top-down --decoder-input all`)
    of images (H, W) or (H, W, C), with the convolutional networks above."""
    if len(config.layers) != 2 or config.inference != "top-down" or config.decoder_input != "all":
        raise InputError("conv_hvae.py builds 2 layers: --latent-dim K1,K2 --inference top-down --decoder-input all")
    if len(config.data_shape) not in (2, 3):
        raise InputError(f"conv_hvae.py needs images of shape (H, W) or (H, W, C), got {config.data_shape}")
    vae = jaxvae.build_model(config, key=key)
    k1, k2 = config.layers
    shape = image_shape(config.data_shape)
    keys = jax.random.split(jax.random.fold_in(key, 100), 6)
    encoder = TwoStacks(ConvStack(shape, FEATURES_1, key=keys[0]), ConvStack(shape, FEATURES_2, key=keys[1]))
    d1, d2 = (a.shape[0] for a in jax.eval_shape(encoder, jnp.zeros(config.data_dim)))
    top = Conditional(he_linear(d2, 2 * k2, key=keys[2]), DiagonalGaussian(k2, config.log_var_range))
    state_width = config.hidden[-1]
    joint = GatedHead(GatedDense(d1 + state_width, WIDTH, key=keys[3]), he_linear(WIDTH, 2 * k1, key=keys[4]))
    posterior_head = Conditional(joint, DiagonalGaussian(k1, config.log_var_range))
    decoder = ConvDecoder(k1, k2, shape, key=keys[5])
    parts = lambda m: (m.encoder, m.top, m.blocks[0].posterior_head, m.decoder)  # noqa: E731
    return eqx.tree_at(parts, vae, (encoder, top, posterior_head, decoder))
