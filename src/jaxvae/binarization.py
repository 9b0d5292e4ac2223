"""How data in [0, 1] are binarized (`--binarize`), each mode a part that `builder.build_binarization` makes.

A test or validation set is binarized once, with its own fixed seed (`held_out`); the training array once with
the run's seed (`training`), except by `Dynamic`, which draws every pixel again at each step (`in_step`).
`Redraw` is no binarization but the same kind of part: M1+M2's draw of each input from M1's q(z1|x) at each step.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxvae.data import binarize


class Binarization(eqx.Module):
    """A binarization mode. `binary`: whether it needs data in [0, 1]; `seeded`: whether the training array
    depends on the run's seed (runs of other seeds train on other data); `with_std`: whether each training row
    holds its input's standard deviation after it, [x, x_std, c] (held-out rows: [x, c])."""

    binary: ClassVar[bool] = True
    seeded: ClassVar[bool] = False
    with_std: ClassVar[bool] = False

    def held_out(self, x: np.ndarray, seed: int) -> np.ndarray:
        """A test or validation array x (n, d), binarized once with `seed`."""
        return x

    def training(self, x: np.ndarray, seed: int) -> np.ndarray:
        """The training array x (n, d) as the steps see it, with the run's `seed`."""
        return self.held_out(x, seed)

    def in_step(self, key: Array, x: Array) -> tuple[Array, Array]:
        """(the step's key left, its batch x (B, d)) after what the step itself draws."""
        return key, x


class Unchanged(Binarization):
    """No binarization: the data as they are, in any range."""

    binary: ClassVar[bool] = False


class Threshold(Binarization):
    """x > 0.5, the same for every seed."""

    def held_out(self, x, seed):
        return (x > 0.5).astype(np.float32)


class Static(Binarization):
    """One Bernoulli draw of every pixel, with probability its grey value, fixed for the whole run."""

    seeded: ClassVar[bool] = True

    def held_out(self, x, seed):
        return binarize(x, seed)


class Dynamic(Binarization):
    """A Bernoulli draw of every training pixel at each step (held-out sets: one draw, as `Static`)."""

    def held_out(self, x, seed):
        return binarize(x, seed)

    def training(self, x, seed):
        return x

    def in_step(self, key, x):
        key, draw_key = jax.random.split(key)
        return key, jax.random.bernoulli(draw_key, x).astype(x.dtype)


class Redraw(Binarization):
    """M1+M2 (Kingma et al. 2014): each training input drawn at each step from N(mean, std^2), the rows
    [mean, std] (B, 2k) -> (B, k), std that of M1's q(z1|x) (an .npz's `x_std_train`); held-out sets: the means."""

    binary: ClassVar[bool] = False
    with_std: ClassVar[bool] = True

    def in_step(self, key, x):
        key, draw_key = jax.random.split(key)
        mean, std = jnp.split(x, 2, axis=-1)
        return key, mean + std * jax.random.normal(draw_key, mean.shape, mean.dtype)
