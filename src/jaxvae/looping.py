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
from typing import Any, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.networks import loops_on_host


class Loop(Protocol):
    """A loop strategy: how a program and the loops in it run."""

    def compile(self, program: Callable, jit: Callable = eqx.filter_jit) -> Callable:
        """program(loop, *args) as a function of args, ready to call (`jit`: how to compile it whole)."""
        ...

    def scan(self, step: Callable, carry, xs, *args) -> tuple[Any, Any]:
        """`lax.scan(lambda c, x: step(c, x, *args), carry, xs)`: (the last carry, the stacked outputs)."""
        ...

    def map(self, fn: Callable, xs, *args) -> Any:
        """`lax.map(lambda x: fn(x, *args), xs)`: the stacked outputs."""
        ...


class Compiled(Loop):
    """Every loop inside the one compiled program that holds it."""

    def compile(self, program, jit=eqx.filter_jit):
        return jit(functools.partial(program, self))

    def scan(self, step, carry, xs, *args):
        return jax.lax.scan(lambda c, x: step(c, x, *args), carry, xs)

    def map(self, fn, xs, *args):
        return jax.lax.map(lambda x: fn(x, *args), xs)


class OnHost(Loop):
    """Every loop on the host, over one compiled body (`jax.jit`, compiled once per body function, static
    arguments and shapes); a scan's carry is donated to the next iteration."""

    def compile(self, program, jit=eqx.filter_jit):
        return functools.partial(program, self)

    def scan(self, step, carry, xs, *args):
        body, dynamic = _compiled_body(step, args, scan=True), eqx.filter(args, eqx.is_array)
        outputs = []
        for i in range(_length(xs)):
            carry, y = body(carry, xs, np.int32(i), dynamic)
            outputs.append(y)
        return carry, _stack(outputs)

    def map(self, fn, xs, *args):
        body, dynamic = _compiled_body(fn, args, scan=False), eqx.filter(args, eqx.is_array)
        return _stack([body(xs, np.int32(i), dynamic) for i in range(_length(xs))])


COMPILED = Compiled()
"""The loop strategy that compiles a program whole, its loops `lax.scan` and `lax.map`."""

ON_HOST = OnHost()
"""The loop strategy that runs a program on the host, each loop over one compiled body."""


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


def _compiled_body(fn, args: tuple, *, scan: bool):
    """The compiled iteration of `OnHost`'s loop over `fn` with `args`, taking the arrays of args: for a scan
    body(carry, xs, i, arrays) -> fn(carry, xs[i], *args), its carry donated; else body(xs, i, arrays)
    -> fn(xs[i], *args). One per body function and the rest of args (functions, settings)."""
    static, treedef = jax.tree.flatten(eqx.filter(args, eqx.is_array, inverse=True))
    return _body(fn, treedef, tuple(static), scan)


@functools.lru_cache(maxsize=64)
def _body(fn, treedef, static: tuple, scan: bool):
    """`_compiled_body`'s program, the rest of the arguments flattened (`static`, `treedef`) so it is cached."""
    rest = jax.tree.unflatten(treedef, static)

    def at(xs, i):
        return jax.tree.map(lambda a: a[i], xs)

    def scan_step(carry, xs, i, arrays):
        return fn(carry, at(xs, i), *eqx.combine(arrays, rest))

    def map_step(xs, i, arrays):
        return fn(at(xs, i), *eqx.combine(arrays, rest))

    return jax.jit(scan_step, donate_argnums=0) if scan else jax.jit(map_step)


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
