"""How loops over batches run: inside one compiled program, or on the host over one compiled body.

A program is written once as `program(loop, *args)`, with `loop.scan` and `loop.map` where `jax.lax.scan`
and `jax.lax.map` would be; the loop strategy runs it:

- `COMPILED`: the program is compiled whole and its loops are `lax.scan` and `lax.map`;
- `ON_HOST`: the program runs on the host, and each loop calls one compiled body per iteration,
  dispatched without waiting. XLA's CPU convolutions run several times slower inside a compiled loop's
  body than compiled alone (github jax-ml/jax#12868; docs/performance.md).

`for_model` chooses once per model and device: on the host for a model with convolutions on a CPU
(`networks.loops_on_host`), else compiled. Loop bodies hold no loop of their own. The two strategies
compute the same values up to the order of float operations.
"""

import functools
from collections.abc import Callable
from typing import Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.networks import loops_on_host


class Loop(Protocol):
    """A loop strategy: how a program and the loops in it run."""

    def compile(self, program: Callable, jit: Callable = eqx.filter_jit) -> Callable:
        """program(loop, *args) as a function of args, ready to call (`jit`: how to compile it whole)."""

    def scan(self, step: Callable, carry, xs, *args):
        """`lax.scan(lambda c, x: step(c, x, *args), carry, xs)`: (the last carry, the stacked outputs)."""

    def map(self, fn: Callable, xs, *args):
        """`lax.map(lambda x: fn(x, *args), xs)`: the stacked outputs."""


class Compiled:
    """Every loop inside the one compiled program that holds it."""

    def compile(self, program, jit=eqx.filter_jit):
        return jit(functools.partial(program, self))

    def scan(self, step, carry, xs, *args):
        return jax.lax.scan(lambda c, x: step(c, x, *args), carry, xs)

    def map(self, fn, xs, *args):
        return jax.lax.map(lambda x: fn(x, *args), xs)


class OnHost:
    """Every loop on the host, over one compiled body (`eqx.filter_jit`: compiled once per body, shapes
    and static arguments); a scan's carry is donated to the next iteration."""

    def compile(self, program, jit=eqx.filter_jit):
        return functools.partial(program, self)

    def scan(self, step, carry, xs, *args):
        outputs = []
        for i in range(_length(xs)):
            carry, y = _scan_body((step, xs, np.int32(i), args), carry)
            outputs.append(y)
        return carry, _stack(outputs)

    def map(self, fn, xs, *args):
        return _stack([_map_body(fn, xs, np.int32(i), args) for i in range(_length(xs))])


COMPILED, ON_HOST = Compiled(), OnHost()


def for_model(model) -> Loop:
    """The loop strategy of `model` (a model or its structure) on this device: `ON_HOST` where
    `networks.loops_on_host`, else `COMPILED`."""
    return ON_HOST if loops_on_host(model) else COMPILED


def program(fn: Callable) -> Callable:
    """fn(loop, *args) as a function of (loop, *args) that compiles fn once per loop strategy (`Loop.compile`)."""
    compiled = {}

    @functools.wraps(fn)
    def run(loop: Loop, *args, **kwargs):
        if loop not in compiled:
            compiled[loop] = loop.compile(fn)
        return compiled[loop](*args, **kwargs)

    return run


@eqx.filter_jit(donate="all-except-first")
def _scan_body(inputs, carry):
    step, xs, i, args = inputs
    return step(carry, jax.tree.map(lambda a: a[i], xs), *args)


@eqx.filter_jit
def _map_body(fn, xs, i, args):
    return fn(jax.tree.map(lambda a: a[i], xs), *args)


def _length(xs) -> int:
    return jax.tree.leaves(xs)[0].shape[0]


def _stack(outputs: list):
    """The iterations' outputs (trees of one structure) stacked along a new leading axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outputs)


def batch_indices(order, batch_size: int):
    """Cut `order` (n,) into batches of indices (ceil(n / B), B) and weights (same shape).

    The last batch is padded with index 0 at weight 0, so every example is used exactly once and
    every batch has one shape (one compiled program); weighted means ignore the padding.
    """
    n = order.shape[0]
    n_batches = -(-n // batch_size)
    pad = n_batches * batch_size - n
    idx = jnp.concatenate([order, jnp.zeros(pad, order.dtype)]).reshape(n_batches, batch_size)
    weights = jnp.concatenate([jnp.ones(n), jnp.zeros(pad)]).reshape(n_batches, batch_size)
    return idx, weights
