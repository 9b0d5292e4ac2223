"""Held-out evaluation: means over examples of per-example bounds, in nats, in bounded memory."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.data import batch_indices
from jaxvae.model import VAE
from jaxvae.objectives import elbo


@eqx.filter_jit
def mean_elbo(vae: VAE, x: Array, key: Array, *, samples: int = 1, chunk: int = 1000) -> dict[str, Array]:
    """Means over the n examples of x (n, d) of the ELBO and its two terms, `chunk` examples at a time."""
    n = x.shape[0]
    idx, weights = batch_indices(jnp.arange(n), min(chunk, n))
    keys = jax.random.split(key, idx.shape[0])

    def one_chunk(args):
        i, w, k = args
        terms = elbo(vae, x[i], key=k, samples=samples)
        return jax.tree.map(lambda t: jnp.sum(w * t), terms)

    sums = jax.lax.map(one_chunk, (idx, weights, keys))
    return {name: jnp.sum(s) / n for name, s in sums._asdict().items()}
