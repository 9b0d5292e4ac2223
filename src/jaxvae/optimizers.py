"""Optimizers beyond Optax's own, as Optax gradient transformations."""

import jax
import jax.numpy as jnp
import optax
from jax import Array


def normalized_gradients(eps: float = 1e-7) -> optax.GradientTransformation:
    """g / (||g||_2 + eps) for each array g of the gradient, separately."""
    return optax.stateless(lambda updates, params: jax.tree.map(lambda g: g / (jnp.linalg.norm(g) + eps), updates))


def adam_normgrad(lr: Array | float) -> optax.GradientTransformation:
    """Adam at `lr` on each parameter array's gradient divided by its L2 norm (+ 1e-7), as the VampPrior and
    Exemplar VAE code's `AdamNormGrad` (`utils/optimizer.py`) does."""
    return optax.chain(normalized_gradients(), optax.adam(lr))
