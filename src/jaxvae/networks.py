"""Encoder and decoder networks. Each `__call__` takes one example; batching is `jax.vmap`."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
}


class MLP(eqx.Module):
    """Fully connected layers with an activation between them and none after the last.

    Maps a vector of shape (in_size,) to (out_size,); `hidden` lists the hidden widths.
    """

    layers: list[eqx.nn.Linear]
    activation: str = eqx.field(static=True)

    def __init__(self, in_size: int, out_size: int, hidden: Sequence[int], activation: str, *, key: Array):
        sizes = [in_size, *hidden, out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = [eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)]
        self.activation = activation

    def __call__(self, x: Array) -> Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)
