"""Variational bounds on log p(x), per example, in nats (higher is better).

Each function takes a batch x of shape (n, d) and returns values of shape (n,); the
caller reduces them (training minimizes the weighted mean of -bound over the batch).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.distributions import kl_normal
from jaxvae.model import VAE


class ElboTerms(NamedTuple):
    """ELBO = reconstruction - kl, each of shape (n,), in nats."""

    elbo: Array
    reconstruction: Array
    kl: Array


def elbo(vae: VAE, x: Array, *, key: Array, samples: int = 1) -> ElboTerms:
    """ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)).

    The expectation is the mean over `samples` reparameterized draws z = mu + sigma * eps;
    the KL is in closed form.
    """
    q = vae.encode(x)
    z = q.sample(key, (samples,))  # (S, n, k)
    reconstruction = jnp.mean(vae.decode(z).log_prob(x), axis=0)
    kl = kl_normal(q, vae.prior())
    return ElboTerms(reconstruction - kl, reconstruction, kl)


def log_importance_weights(vae: VAE, x: Array, *, key: Array, samples: int) -> Array:
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) for z_k ~ q(z|x), shape (samples, n)."""
    q = vae.encode(x)
    z = q.sample(key, (samples,))
    return vae.decode(z).log_prob(x) + vae.prior().log_prob(z) - q.log_prob(z)


def iwae(vae: VAE, x: Array, *, key: Array, samples: int) -> Array:
    """Importance-weighted bound L_K(x) = logsumexp_k log w_k - log K, shape (n,).

    L_1 is the ELBO in expectation; L_K rises towards log p(x) as K grows.
    """
    log_w = log_importance_weights(vae, x, key=key, samples=samples)
    return jax.nn.logsumexp(log_w, axis=0) - math.log(samples)
