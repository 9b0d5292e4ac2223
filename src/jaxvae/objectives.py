"""Variational bounds on log p(x), per example, in nats (higher is better).

Each function takes a batch x of shape (n, d) and returns values of shape (n,); the
caller reduces them (training minimizes the weighted mean of -bound over the batch).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.distributions import kl_terms
from jaxvae.model import VAE


class ElboTerms(NamedTuple):
    """ELBO = reconstruction - kl, each of shape (n,), in nats."""

    elbo: Array
    reconstruction: Array
    kl: Array


def elbo(vae: VAE, x: Array, *, key: Array, samples: int = 1, params: Array | None = None) -> ElboTerms:
    """ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)).

    The expectation is the mean over `samples` reparameterized draws z ~ q(z|x) (for the seed's
    q, z = mu + sigma * eps); the KL is in closed form where the pair (q, p) has one, otherwise the
    Monte Carlo estimate log q(z) - log p(z) at the same draws (`distributions.kl_terms`).
    q is the encoder's, or the posterior family at `params` (n, posterior.size) when given.
    """
    reconstruction, kl_parts = _reconstruction_and_kl(vae, x, key=key, samples=samples, params=params)
    kl = jnp.sum(kl_parts, axis=-1)
    return ElboTerms(reconstruction - kl, reconstruction, kl)


def _reconstruction_and_kl(
    vae: VAE, x: Array, *, key: Array, samples: int, params: Array | None = None
) -> tuple[Array, Array]:
    """The S-sample estimate of E_q[log p(x|z)], shape (n,), and the KL as `kl_terms` splits it, (n, terms)."""
    q = vae.encode(x) if params is None else vae.posterior(params)
    z, log_q = q.sample_and_log_prob(key, (samples,))  # (S, n, k), (S, n)
    reconstruction = jnp.mean(vae.decode(z).log_prob(x), axis=0)
    return reconstruction, kl_terms(q, vae.prior(), z, log_q)


def weighted_mean(values: Array, weights: Array) -> Array:
    """sum_i w_i v_i / sum_i w_i over the first axis: the mean over a batch whose padding has weight 0."""
    return jnp.tensordot(weights, values, axes=1) / jnp.sum(weights)


def free_bits_kl(kl_parts: Array, weights: Array, free_bits: float, latent_dim: int) -> Array:
    """sum_j max(lambda_j, mean over the batch of KL_j), a scalar in nats: the "free bits" of Kingma et al. (2016).

    kl_parts (n, terms): the KL split into terms, one per latent dimension where it separates, else one;
    weights (n,). Each term is granted its share of `free_bits` * latent_dim nats (lambda = `free_bits` per
    dimension, or latent_dim * free_bits for a single term); a term whose batch-mean KL is below its share
    costs the share and gets no gradient. With free_bits = 0 this is the batch mean of the summed KL.
    """
    share = free_bits * (latent_dim // kl_parts.shape[-1])
    return jnp.sum(jnp.maximum(share, weighted_mean(kl_parts, weights)))


def elbo_loss(
    vae: VAE, x: Array, weights: Array, *, key: Array, samples: int = 1, beta: Array | float = 1.0, free_bits=0.0
) -> tuple[Array, ElboTerms]:
    """The training loss -(mean_n E_q[log p(x|z)] - beta * free_bits_kl) and the true (beta = 1) ELBO terms.

    x (n, d) with weights (n,); the loss is a scalar, the terms have shape (n,). `beta` may be traced.
    """
    reconstruction, kl_parts = _reconstruction_and_kl(vae, x, key=key, samples=samples)
    kl_cost = free_bits_kl(kl_parts, weights, free_bits, vae.latent_dim)
    loss = beta * kl_cost - weighted_mean(reconstruction, weights)
    kl = jnp.sum(kl_parts, axis=-1)
    return loss, ElboTerms(reconstruction - kl, reconstruction, kl)


def kl_weight(beta: float, warmup_epochs: int, epoch: int) -> float:
    """The KL weight of epoch `epoch` (1-based): beta * (epoch - 1) / warmup_epochs, rising linearly
    from 0 in the first epoch to beta after `warmup_epochs` epochs, then beta; beta when there is no warm-up."""
    if warmup_epochs == 0:
        return beta
    return beta * min(1.0, (epoch - 1) / warmup_epochs)


def log_importance_weights(vae: VAE, x: Array, *, key: Array, samples: int, params: Array | None = None) -> Array:
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) for z_k ~ q(z|x), shape (samples, n); q is the encoder's,
    or the posterior family at `params` (n, posterior.size) when given."""
    q = vae.encode(x) if params is None else vae.posterior(params)
    z, log_q = q.sample_and_log_prob(key, (samples,))
    return vae.decode(z).log_prob(x) + vae.prior().log_prob(z) - log_q


def iwae(vae: VAE, x: Array, *, key: Array, samples: int) -> Array:
    """Importance-weighted bound L_K(x) = logsumexp_k log w_k - log K, shape (n,).

    L_1 is the ELBO in expectation; L_K rises towards log p(x) as K grows.
    """
    return log_mean_exp(log_importance_weights(vae, x, key=key, samples=samples))


def log_mean_exp(log_w: Array) -> Array:
    """log (1/K sum_k exp(log_w_k)) over the first axis, computed stably."""
    return jax.nn.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])
