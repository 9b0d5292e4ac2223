"""Priors: the mixture and the VampPrior against explicit float64 mixtures, their samples, and the
quadrature of a VampPrior model against an independent dense grid."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp, softmax

from jaxvae.builder import build_model
from jaxvae.config import ModelConfig
from jaxvae.evaluate import log_likelihood, log_likelihood_quadrature
from jaxvae.model import VAE
from jaxvae.networks import map_examples

rng = np.random.default_rng(0)


def trained_like(vae: VAE, scale: float = 1.0, seed: int = 0) -> VAE:
    """The model with every float parameter redrawn from N(0, scale^2): no symmetry left from initialization."""
    rng = np.random.default_rng(seed)
    leaves, tree = jax.tree.flatten(vae)
    redrawn = [
        jnp.asarray(scale * rng.normal(size=a.shape), a.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
        for a in leaves
    ]
    return jax.tree.unflatten(tree, redrawn)


def explicit_mixture_log_prob(weights, means, variances, z):
    """log sum_c w_c prod_j N(z_j | m_cj, v_cj) in float64 with scipy."""
    per_component = np.stack(
        [stats.multivariate_normal(m, np.diag(v)).logpdf(z) for m, v in zip(means, variances, strict=True)], -1
    )
    return logsumexp(np.log(weights) + per_component, axis=-1)


def test_mixture_prior_log_prob_matches_an_explicit_mixture():
    vae = trained_like(
        build_model(
            ModelConfig(data_shape=(6,), latent_dim=3, hidden=(5,), prior="mixture:4"), key=jax.random.PRNGKey(0)
        )
    )
    prior = vae.latent_prior
    z = rng.normal(size=(7, 3)) * 2
    expected = explicit_mixture_log_prob(
        softmax(np.asarray(prior.logits, np.float64)),
        np.asarray(prior.means, np.float64),
        np.exp(np.asarray(prior.log_vars, np.float64)),
        z,
    )
    np.testing.assert_allclose(vae.prior().log_prob(jnp.asarray(z, jnp.float32)), expected, rtol=1e-5)


def test_vamp_prior_is_the_mixture_of_the_encoders_posteriors_at_the_pseudo_inputs():
    """p(z) = (1/K) sum_k N(z | mu(u_k), diag sigma^2(u_k)), with mu and sigma from the encoder (float64)."""
    config = ModelConfig(data_shape=(6,), latent_dim=3, hidden=(5,), prior="vamp:4")
    vae = trained_like(build_model(config, key=jax.random.PRNGKey(1)), scale=0.5)
    out = np.asarray(map_examples(vae.encoder, vae.latent_prior.pseudo_inputs), np.float64)
    z = rng.normal(size=(7, 3))
    expected = explicit_mixture_log_prob(np.full(4, 0.25), out[:, :3], np.exp(out[:, 3:]), z)
    np.testing.assert_allclose(vae.prior().log_prob(jnp.asarray(z, jnp.float32)), expected, rtol=1e-5)


def test_prior_samples_follow_the_prior():
    """Mean and variance of 100,000 draws of each prior against the mixture's moments (5 standard errors),
    and the moments against the explicit sum_c w_c m_c and sum_c w_c (v_c + m_c^2) - mean^2."""
    for prior in ("mixture:3", "vamp:3"):
        vae = trained_like(
            build_model(ModelConfig(data_shape=(6,), latent_dim=2, hidden=(5,), prior=prior), key=jax.random.PRNGKey(2))
        )
        p = vae.prior()
        mean, std = p.moments()
        w = np.asarray(jax.nn.softmax(p.logits), np.float64)[:, None]
        m, s = (np.asarray(a, np.float64) for a in p.components.moments())
        np.testing.assert_allclose(mean, (w * m).sum(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std**2, (w * (s**2 + m**2)).sum(0) - (w * m).sum(0) ** 2, rtol=1e-4)
        z = np.asarray(p.sample(jax.random.PRNGKey(3), (100_000,)), np.float64)
        assert np.all(np.abs(z.mean(0) - np.asarray(mean)) < 5 * z.std(0) / np.sqrt(len(z)))
        np.testing.assert_allclose(z.std(0), std, rtol=0.02)


@pytest.mark.slow
def test_quadrature_of_a_vamp_prior_model_matches_an_independent_dense_grid():
    """k = 2, VampPrior with 3 pseudo-inputs, Bernoulli decoder: jaxvae's quadrature against log p(x)
    from a float64 numpy decoder and explicit prior summed on a 1000 x 1000 grid over [-12, 12]^2 (which
    holds every component's mean +- 6 standard deviations): agreement within 1e-3 nats. L_5000 is not above it."""
    config = ModelConfig(data_shape=(5,), latent_dim=2, hidden=(4,), prior="vamp:3")
    vae = trained_like(build_model(config, key=jax.random.PRNGKey(5)), scale=0.7, seed=2)
    vae = eqx.tree_at(lambda m: m.decoder.layers[-1].weight, vae, 3 * vae.decoder.layers[-1].weight)  # peaked p(x|z)
    x = (np.random.default_rng(1).random((3, 5)) < 0.5).astype(np.float32)
    out = np.asarray(map_examples(vae.encoder, vae.latent_prior.pseudo_inputs), np.float64)
    assert np.all(np.abs(out[:, :2]) + 6 * np.exp(0.5 * out[:, 2:]) < 12)
    t = np.linspace(-12, 12, 1000)
    z = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    log_prior = explicit_mixture_log_prob(np.full(3, 1 / 3), out[:, :2], np.exp(out[:, 2:]), z)
    (w1, b1), (w2, b2) = (
        (np.asarray(l.weight, np.float64), np.asarray(l.bias, np.float64)) for l in vae.decoder.layers
    )
    logits = np.tanh(z @ w1.T + b1) @ w2.T + b2  # (grid, d)
    cell = np.log((t[1] - t[0]) ** 2)
    expected = [
        logsumexp((xi * logits - np.logaddexp(0, logits)).sum(-1) + log_prior) + cell for xi in x.astype(np.float64)
    ]
    ours = np.asarray(log_likelihood_quadrature(vae, jnp.asarray(x)))
    np.testing.assert_allclose(ours, expected, atol=1e-3)
    iw = np.asarray(log_likelihood(vae, jnp.asarray(x), jax.random.PRNGKey(0), samples=5000))
    assert np.all(iw <= ours + 0.05)  # a lower bound (in expectation) on the exact value


@pytest.mark.slow
def test_squared_distances_gradient_matches_autodiff_of_the_plain_formula():
    """The hand-written gradient (matrix products) against jax.grad of sum_j (z_j - c_j)^2 p_j, float32."""
    from jaxvae.distributions import squared_distances

    z = jnp.asarray(rng.normal(size=(3, 4, 5)), jnp.float32)
    centres, precision = (jnp.asarray(a, jnp.float32) for a in (rng.normal(size=(6, 5)), rng.random((6, 5)) + 0.5))
    weights = jnp.asarray(rng.normal(size=(3, 4, 6)), jnp.float32)

    def plain(z, c, p):
        return jnp.sum(weights * jnp.sum((z[..., None, :] - c) ** 2 * p, -1))

    ours = jax.grad(lambda *a: jnp.sum(weights * squared_distances(*a)), argnums=(0, 1, 2))(z, centres, precision)
    for got, expected in zip(ours, jax.grad(plain, argnums=(0, 1, 2))(z, centres, precision), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        squared_distances(z, centres, precision), jnp.sum((z[..., None, :] - centres) ** 2 * precision, -1)
    )
