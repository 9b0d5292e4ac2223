"""Encoder and decoder networks. Each `__call__` takes one example; batching is `jax.vmap`.

Their matrix products and convolutions are `Linear` and `Conv` layers, which compute in a dtype
(`product`) that `with_precision` sets on a whole model. An activation is a callable (`jax.nn.tanh`), kept
in the network that applies it; `builder.ACTIVATIONS` names those the options offer.
"""

import dataclasses
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import DTypeLike

Activation = Callable[[Array], Array]


def loops_on_host(static) -> bool:
    """Whether loops over the model `static` (its structure, arrays or not) run on the host over one compiled
    body rather than as a compiled loop (`lax.scan`, `lax.map`): on the CPU backend, where the model has an
    Equinox convolution. XLA's CPU convolutions run several times slower inside a compiled loop's body
    than compiled alone (github jax-ml/jax#12868; docs/performance.md). The loop strategy of training and
    evaluation follows it (`looping.for_model`)."""
    convolutions = (eqx.nn.Conv, eqx.nn.ConvTranspose)
    layers = jax.tree.leaves(static, is_leaf=lambda m: isinstance(m, convolutions))
    return jax.default_backend() == "cpu" and any(isinstance(m, convolutions) for m in layers)


def product(op: Callable, dtype: DTypeLike, *operands: Array) -> Array:
    """op(*operands), a matrix product or a convolution, in `dtype`: float32 as it is; another (bfloat16) with
    the operands rounded to it and the result returned in float32 (XLA accumulates bf16 products in fp32)."""
    if jnp.dtype(dtype) == jnp.float32:
        return op(*operands)
    return op(*(a.astype(dtype) for a in operands)).astype(jnp.float32)


def _matmul(a: Array, b: Array) -> Array:
    """a @ b, accumulated and returned in fp32 when the inputs are bf16, else in their own dtype."""
    return jnp.matmul(a, b, preferred_element_type=jnp.float32 if a.dtype == jnp.bfloat16 else None)


def dense(x: Array, weight: Array, dtype: DTypeLike) -> Array:
    """weight @ x for x (in,) and weight (out, in), in `dtype` (see `product`), computed as x @ weight.T: mapped
    over a batch (`jax.vmap`), that is one product with the examples as rows, which XLA's CPU backend runs
    without transposing its operands or its result (an M2 step 10 % faster than weight @ x)."""
    return product(_matmul, dtype, x, weight.T)


class Linear(eqx.Module):
    """x (in_size,) -> weight @ x + bias (out_size,), the product in `dtype` (`dense`)."""

    weight: Array  # (out_size, in_size)
    bias: Array  # (out_size,)
    dtype: DTypeLike = eqx.field(static=True, default=jnp.float32)

    def __call__(self, x: Array) -> Array:
        return dense(x, self.weight, self.dtype) + self.bias


def linear(in_size: int, out_size: int, *, key: Array) -> Linear:
    """A `Linear` layer initialized as Equinox's `eqx.nn.Linear` (uniform in +-1/sqrt(in_size))."""
    layer = eqx.nn.Linear(in_size, out_size, key=key)
    return Linear(layer.weight, jnp.asarray(layer.bias))


class Conv(eqx.Module):
    """An Equinox convolution (`eqx.nn.Conv2d` or `eqx.nn.ConvTranspose2d`), its product in `dtype`.

    In bf16, Equinox's layer returns the convolution in bf16, so it is rounded before the fp32 bias."""

    conv: eqx.nn.Conv2d | eqx.nn.ConvTranspose2d
    dtype: DTypeLike = eqx.field(static=True, default=jnp.float32)

    def __call__(self, x: Array) -> Array:
        return product(self._apply, self.dtype, self.conv.weight, x)

    def _apply(self, weight: Array, x: Array) -> Array:
        return eqx.tree_at(lambda c: c.weight, self.conv, weight)(x)


def split_condition(layer: Linear, in_size: int) -> tuple[Linear, Array | None]:
    """A layer of the concatenation [x, c] (in_size + m inputs) as the layer of x and W_c (out, m), its weight's
    columns split; (layer, None) when it has no more than in_size inputs (no condition)."""
    if layer.weight.shape[1] == in_size:
        return layer, None
    return Linear(layer.weight[:, :in_size], layer.bias, layer.dtype), layer.weight[:, in_size:]


def conditioned(layer: Linear, condition: Array | None, x: Array, c: Array | None) -> Array:
    """layer(x) + W_c c, the layer of [x, c] written apart (`condition` W_c (out, m), or None without one)."""
    if (c is None) != (condition is None):
        raise TypeError("a conditional network needs its condition c, an unconditional one takes none")
    h = layer(x)
    if c is None or condition is None:
        return h
    return h + dense(c, condition, layer.dtype)


def with_precision(model, dtype: DTypeLike):
    """`model` with every `Linear` and `Conv` layer's product in `dtype` (jnp.float32 or jnp.bfloat16); a
    user's own modules (e.g. of `eqx.nn.Linear`) compute as they are."""

    def is_layer(m) -> bool:
        return isinstance(m, Linear | Conv)

    return jax.tree.map(lambda m: dataclasses.replace(m, dtype=dtype) if is_layer(m) else m, model, is_leaf=is_layer)


def map_examples(fn: Callable, x: Array, c: Array | None = None):
    """Apply a one-example function `fn` to x of shape (..., d), keeping the leading axes; with a condition
    c (..., m), broadcast to x's leading axes (c (n, m) serves z (S, n, k)), `fn(x_i, c_i)`."""
    batch_shape = x.shape[:-1]
    if c is None:
        out = jax.vmap(fn)(x.reshape(-1, x.shape[-1]))
    else:
        c = jnp.broadcast_to(c, batch_shape + c.shape[-1:]).reshape(-1, c.shape[-1])
        out = jax.vmap(fn)(x.reshape(-1, x.shape[-1]), c)
    return jax.tree.map(lambda a: a.reshape(batch_shape + a.shape[1:]), out)


class MLP(eqx.Module):
    """Fully connected layers with an activation between them and none after the last.

    Maps a vector of shape (in_size,) to (out_size,); `hidden` lists the hidden widths; `activation` is a
    function of arrays applied elementwise (`jax.nn.tanh`).

    With `condition_dim` m > 0 it maps (x, c), c of shape (m,), adding `condition @ c` to the first layer's
    pre-activation: W_x x + W_c c + b. Its parameters are those of the layer of the concatenation [x, c]
    (drawn from the same key, its weight's columns split), but written apart: under a `jax.vmap` over
    conditions (every class for one x) the product W_x x does not depend on c and is computed once.
    """

    layers: list[Linear]
    condition: Array | None  # W_c (first width, m), or None without a condition
    activation: Activation = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        hidden: Sequence[int],
        activation: Activation,
        *,
        key: Array,
        condition_dim: int = 0,
    ):
        sizes = [in_size + condition_dim, *hidden, out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = [linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)]
        self.layers[0], self.condition = split_condition(self.layers[0], in_size)
        self.activation = activation

    def __call__(self, x: Array, c: Array | None = None) -> Array:
        layer, *rest = self.layers
        h = conditioned(layer, self.condition, x, c)
        for layer in rest:
            h = layer(self.activation(h))
        return h


def he_linear(in_size: int, out_size: int, *, key: Array) -> Linear:
    """A linear layer whose weight is drawn from N(0, 2 / in_size) (He et al. 2015), the bias as Equinox's."""
    weight_key, bias_key = jax.random.split(key)
    layer = linear(in_size, out_size, key=bias_key)
    weight = jnp.sqrt(2.0 / in_size) * jax.random.normal(weight_key, (out_size, in_size))
    return eqx.tree_at(lambda l: l.weight, layer, weight)


class GatedDense(eqx.Module):
    """h(x) * sigmoid(g(x)) with two linear layers h and g (Dauphin et al. 2017): (in_size,) -> (out_size,).

    As `GatedDense` in the VampPrior and Exemplar VAE code (`utils/nn.py`): no activation on h. With
    `condition_dim` m > 0 it maps (x, c), c (m,), h and g each the layer of [x, c] written apart (see `MLP`)."""

    h: Linear
    g: Linear
    h_condition: Array | None = None  # W_c (out_size, m) of h, or None without a condition
    g_condition: Array | None = None  # and of g

    def __init__(self, in_size: int, out_size: int, *, key: Array, condition_dim: int = 0):
        h_key, g_key = jax.random.split(key)
        self.h, self.h_condition = split_condition(he_linear(in_size + condition_dim, out_size, key=h_key), in_size)
        self.g, self.g_condition = split_condition(he_linear(in_size + condition_dim, out_size, key=g_key), in_size)

    def __call__(self, x: Array, c: Array | None = None) -> Array:
        return conditioned(self.h, self.h_condition, x, c) * jax.nn.sigmoid(conditioned(self.g, self.g_condition, x, c))


class GatedConv(eqx.Module):
    """h(x) * sigmoid(g(x)) with two convolutions h and g of `kernel` x `kernel`, `stride` and padding
    kernel // 2: (in_channels, H, W) -> (out_channels, ceil(H / stride), ceil(W / stride)) for odd kernels.

    As `GatedConv2d` in the VampPrior and Exemplar VAE code (`utils/nn.py`), initialized as their
    convolutions are, by PyTorch's default (Equinox's: uniform in +-1/sqrt(fan-in))."""

    h: Conv
    g: Conv

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, *, key: Array):
        keys = jax.random.split(key)
        self.h, self.g = (
            Conv(eqx.nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, key=k))
            for k in keys
        )

    def __call__(self, x: Array) -> Array:
        return self.h(x) * jax.nn.sigmoid(self.g(x))


class GatedMLP(eqx.Module):
    """Gated dense layers of the `hidden` widths, then a linear layer: (in_size,) -> (out_size,).

    The encoder and decoder of the VampPrior and Exemplar VAE code, He-initialized as theirs
    (`BaseModel.he_initializer`). With `gated_out`, the last layer is gated too (features, not parameters).
    With `condition_dim` m > 0 it maps (x, c), c (m,), into the first gated layer (see `GatedDense`)."""

    layers: list[GatedDense]
    head: Linear | None

    def __init__(
        self,
        in_size: int,
        out_size: int,
        hidden: Sequence[int],
        *,
        key: Array,
        gated_out: bool = False,
        condition_dim: int = 0,
    ):
        sizes = [in_size, *hidden] + ([out_size] if gated_out else [])
        if condition_dim and len(sizes) < 2:
            raise ValueError("a conditional gated network takes c at its first gated layer: it needs one")
        keys = jax.random.split(key, len(sizes))
        conditions = [condition_dim] + [0] * (len(sizes) - 2)
        self.layers = [
            GatedDense(a, b, key=k, condition_dim=m)
            for a, b, k, m in zip(sizes[:-1], sizes[1:], keys[:-1], conditions, strict=True)
        ]
        self.head = None if gated_out else he_linear(sizes[-1], out_size, key=keys[-1])

    def __call__(self, x: Array, c: Array | None = None) -> Array:
        first, *rest = self.layers
        x = first(x, c)
        for layer in rest:
            x = layer(x)
        return x if self.head is None else self.head(x)


class Features(eqx.Module):
    """A network followed by its activation: (in_size,) -> features (out_size,), e.g. a deep model's d_l; a
    conditional network's (x, c) likewise."""

    network: MLP

    def __call__(self, x: Array, c: Array | None = None) -> Array:
        return self.network.activation(self.network(x, c))


def image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """(H, W) or (H, W, C) -> (H, W, C): the layout of a flat example x.reshape(H, W, C)."""
    return (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)


def halved(h: int, w: int) -> tuple[int, int]:
    """The output size of a 3x3 convolution with stride 2 and padding 1: half, rounded up."""
    return -(-h // 2), -(-w // 2)


class ConvEncoder(eqx.Module):
    """3x3 convolutions with stride 2 (each halves height and width), then a linear layer.

    Maps a flat image of shape (H * W * C,) to (out_size,); `channels` lists the convolutions' widths.
    With `condition_dim` m > 0 it maps (x, c), c (m,) entering at the linear layer: the layer of [features, c]
    written apart (see `MLP`).
    """

    convs: list[Conv]
    head: Linear
    condition: Array | None  # W_c (out_size, m) of the linear layer, or None without a condition
    shape: tuple[int, int, int] = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)

    def __init__(
        self,
        shape: Sequence[int],
        out_size: int,
        channels: Sequence[int],
        activation: Activation,
        *,
        key: Array,
        condition_dim: int = 0,
    ):
        h, w, c = self.shape = image_shape(shape)
        keys = jax.random.split(key, len(channels) + 1)
        widths = [c, *channels]
        self.convs = [
            Conv(eqx.nn.Conv2d(a, b, 3, stride=2, padding=1, key=k))
            for a, b, k in zip(widths[:-1], widths[1:], keys[:-1], strict=True)
        ]
        for _ in channels:
            h, w = halved(h, w)
        features = widths[-1] * h * w
        self.head, self.condition = split_condition(linear(features + condition_dim, out_size, key=keys[-1]), features)
        self.activation = activation

    def __call__(self, x: Array, c: Array | None = None) -> Array:
        h, w, channels = self.shape
        y = x.reshape(h, w, channels).transpose(2, 0, 1)  # channels first, as Conv2d wants
        for conv in self.convs:
            y = self.activation(conv(y))
        return conditioned(self.head, self.condition, y.reshape(-1), c)


class ConvDecoder(eqx.Module):
    """The mirror of `ConvEncoder`: a linear layer, then 3x3 transposed convolutions with stride 2.

    Maps (in_size,) to a flat image of shape (H * W * C,) (logits or means: no final activation);
    `channels` lists the widths in the encoder's order, so the decoder runs through them reversed. With
    `condition_dim` m > 0 it maps (z, c), c (m,) entering at the linear layer, as `MLP`'s first.
    """

    head: Linear
    condition: Array | None  # W_c of the linear layer, or None without a condition
    deconvs: list[Conv]
    shape: tuple[int, int, int] = eqx.field(static=True)
    start: tuple[int, int, int] = eqx.field(static=True)  # (C, H, W) after the linear layer
    activation: Activation = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        shape: Sequence[int],
        channels: Sequence[int],
        activation: Activation,
        *,
        key: Array,
        condition_dim: int = 0,
    ):
        h, w, c = self.shape = image_shape(shape)
        sizes = [(h, w)]  # sizes[i]: height and width after i halvings
        for _ in channels:
            sizes.append(halved(*sizes[-1]))
        widths = [c, *channels]
        keys = jax.random.split(key, len(channels) + 1)
        self.start = (widths[-1], *sizes[-1])
        stem = linear(in_size + condition_dim, widths[-1] * sizes[-1][0] * sizes[-1][1], key=keys[0])
        self.head, self.condition = split_condition(stem, in_size)
        self.deconvs = []
        for i in reversed(range(len(channels))):  # from level i + 1 up to level i
            (h_out, w_out), (h_in, w_in) = sizes[i], sizes[i + 1]
            extra = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))  # 0 or 1: undoes the rounding up
            deconv = eqx.nn.ConvTranspose2d(
                widths[i + 1], widths[i], 3, stride=2, padding=1, output_padding=extra, key=keys[i + 1]
            )
            self.deconvs.append(Conv(deconv))
        self.activation = activation

    def __call__(self, z: Array, c: Array | None = None) -> Array:
        y = conditioned(self.head, self.condition, z, c).reshape(self.start)
        for deconv in self.deconvs:
            y = deconv(self.activation(y))
        return y.transpose(1, 2, 0).reshape(-1)


class MaskedLinear(eqx.Module):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in): x (..., in) -> (..., out).

    The mask is a boolean array, so it is not a parameter and no optimizer changes it.
    """

    linear: Linear
    mask: Array

    def __call__(self, x: Array) -> Array:
        masked = jnp.where(self.mask, self.linear.weight, 0.0)
        return dense(x, masked, self.linear.dtype) + self.linear.bias


class MADE(eqx.Module):
    """An autoregressive network (Germain et al. 2015) for one step of an inverse autoregressive flow.

    Maps z (..., k) and a context h (..., c) to (m, g), each (..., k), where m_j and g_j depend on
    z_1..z_{j-1} and on all of h, through one masked hidden layer of `hidden` ELU units. The gate
    logits g start near `gate_bias` (Kingma et al. 2016 start the gates sigmoid(g) close to 1).
    """

    layer: MaskedLinear
    out: MaskedLinear

    def __init__(self, latent_dim: int, context_dim: int, hidden: int, *, gate_bias: float = 2.0, key: Array):
        k = latent_dim
        hidden_key, out_key = jax.random.split(key)
        inputs = jnp.concatenate([jnp.arange(1, k + 1), jnp.zeros(context_dim, int)])  # the context has degree 0
        units = jnp.arange(hidden) % k  # a unit of degree u sees inputs of degree <= u
        outputs = jnp.tile(jnp.arange(1, k + 1), 2)  # output j (degree j) sees units of degree < j
        self.layer = MaskedLinear(linear(k + context_dim, hidden, key=hidden_key), units[:, None] >= inputs)
        out = linear(hidden, 2 * k, key=out_key)
        out = eqx.tree_at(lambda l: l.bias, out, out.bias.at[k:].add(gate_bias))
        self.out = MaskedLinear(out, outputs[:, None] > units)

    def __call__(self, z: Array, context: Array) -> tuple[Array, Array]:
        hidden = jax.nn.elu(self.layer(jnp.concatenate([z, context], axis=-1)))
        m, g = jnp.split(self.out(hidden), 2, axis=-1)
        return m, g
