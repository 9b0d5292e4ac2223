"""Distributions against independent references: scipy, full-covariance formulas, Monte Carlo, quadrature."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from jaxvae.distributions import Bernoulli, ContinuousBernoulli, Normal, kl_normal

rng = np.random.default_rng(0)


def test_normal_log_prob_matches_scipy():
    mean, log_var, x = rng.normal(size=(3, 4, 6))
    expected = stats.norm(mean, np.exp(0.5 * log_var)).logpdf(x).sum(-1)
    got = Normal(jnp.asarray(mean), jnp.asarray(log_var)).log_prob(jnp.asarray(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_kl_matches_full_covariance_formula():
    """KL(q||p) = 1/2 [tr(Sp^-1 Sq) + (mp-mq)^T Sp^-1 (mp-mq) - k + log det Sp - log det Sq]."""
    mq, lq, mp, lp = rng.normal(size=(4, 5))
    Sq, Sp = np.diag(np.exp(lq)), np.diag(np.exp(lp))
    Sp_inv = np.linalg.inv(Sp)
    expected = 0.5 * (
        np.trace(Sp_inv @ Sq) + (mp - mq) @ Sp_inv @ (mp - mq) - 5 + np.linalg.slogdet(Sp)[1] - np.linalg.slogdet(Sq)[1]
    )
    got = kl_normal(Normal(jnp.asarray(mq), jnp.asarray(lq)), Normal(jnp.asarray(mp), jnp.asarray(lp)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_kl_matches_monte_carlo():
    """E_q[log q(z) - log p(z)] from 400,000 draws; tolerance 5 standard errors."""
    q = Normal(jnp.array([0.5, -1.0, 2.0]), jnp.array([-1.0, 0.3, 0.0]))
    p = Normal(jnp.zeros(3), jnp.zeros(3))
    z = q.sample(jax.random.PRNGKey(1), (400_000,))
    log_ratio = np.asarray(q.log_prob(z) - p.log_prob(z), np.float64)
    stderr = log_ratio.std() / np.sqrt(len(log_ratio))
    assert abs(log_ratio.mean() - float(kl_normal(q, p))) < 5 * stderr
    assert float(kl_normal(q, q)) == pytest.approx(0.0, abs=1e-6)


def test_normal_sample_moments():
    q = Normal(jnp.array([1.0, -2.0]), jnp.log(jnp.array([0.25, 4.0])))
    z = np.asarray(q.sample(jax.random.PRNGKey(0), (200_000,)))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=5 * 2 / np.sqrt(200_000))
    np.testing.assert_allclose(z.var(0), [0.25, 4.0], rtol=0.02)


def test_bernoulli_log_prob_matches_scipy():
    logits = rng.normal(scale=3, size=(7, 10))
    x = rng.integers(0, 2, size=(7, 10))
    expected = stats.bernoulli(1 / (1 + np.exp(-logits))).logpmf(x).sum(-1)
    np.testing.assert_allclose(
        Bernoulli(jnp.asarray(logits)).log_prob(jnp.asarray(x, jnp.float32)), expected, rtol=1e-5
    )


def test_bernoulli_is_finite_and_exact_at_extreme_logits():
    """log(1 - sigmoid(100)) = -softplus(100) = -100; a sigmoid-then-log gives log(0 + eps) instead."""
    d = Bernoulli(jnp.array([100.0, -100.0]))
    np.testing.assert_allclose(d.log_prob(jnp.array([0.0, 1.0])), -200.0, rtol=1e-6)
    np.testing.assert_allclose(d.log_prob(jnp.array([1.0, 0.0])), 0.0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("logit", [-40.0, -5.0, -0.3, -1e-3, 0.0, 2e-3, 0.5, 7.0, 40.0])
def test_continuous_bernoulli_integrates_to_one(logit):
    d = ContinuousBernoulli(jnp.array([logit]))
    density = lambda x: float(jnp.exp(d.log_prob(jnp.array([x], jnp.float32))))  # noqa: E731
    with warnings.catch_warnings():  # float32 densities: quad warns of round-off well below the tolerance
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        total, _ = integrate.quad(density, 0, 1, points=[0.01, 0.99], limit=200)
        mean, _ = integrate.quad(lambda x: x * density(x), 0, 1, points=[0.01, 0.99], limit=200)
    assert total == pytest.approx(1.0, abs=2e-4)
    assert float(d.mean[0]) == pytest.approx(mean, abs=2e-4)


def test_continuous_bernoulli_normalizer_is_smooth_at_half():
    """log C(l) is even with log C(0) = log 2; the Taylor and exact branches agree where they meet."""
    l = jnp.array([-0.0101, -0.0099, 0.0, 0.0099, 0.0101])
    log_c = np.asarray(ContinuousBernoulli(l).log_normalizer())
    np.testing.assert_allclose(log_c, np.log(2 + np.asarray(l) ** 2 / 6), rtol=1e-6)
    grad = jax.grad(lambda t: ContinuousBernoulli(t).log_prob(jnp.full(1, 0.3)).sum())(jnp.zeros(1))
    assert np.all(np.isfinite(grad))


def test_continuous_bernoulli_sample_mean():
    d = ContinuousBernoulli(jnp.array([-3.0, 0.0, 0.004, 1.5, 60.0]))
    x = np.asarray(jax.vmap(d.sample)(jax.random.split(jax.random.PRNGKey(0), 100_000)))
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(x.mean(0), d.mean, atol=5 * 0.3 / np.sqrt(100_000))


def test_softplus_and_its_derivative_match_jax_nn_at_every_scale():
    """Against jax.nn.softplus and its derivative sigmoid, including l = 0 where max and |l| have kinks."""
    from jaxvae.distributions import softplus

    l = jnp.array([-1e4, -30.0, -1.0, -1e-8, 0.0, 1e-8, 2.0, 30.0, 1e4])
    np.testing.assert_allclose(softplus(l), jax.nn.softplus(l), rtol=1e-6, atol=0)
    np.testing.assert_allclose(jax.vmap(jax.grad(softplus))(l), jax.nn.sigmoid(l), rtol=1e-6, atol=0)


def test_continuous_bernoulli_matches_the_papers_formula_in_float64():
    """Loaiza-Ganem and Cunningham (2019), eq. 7, in terms of p = sigmoid(l):
    log p(x) = log C(p) + x log p + (1 - x) log(1 - p), C(p) = 2 artanh(1 - 2p) / (1 - 2p),
    evaluated in float64 NumPy, including logits inside the Taylor branch (|l| < 0.01) but not at 0."""
    logits = np.array([-30.0, -4.0, -0.5, -0.009, -1e-4, 3e-3, 0.011, 1.0, 12.0])
    x = np.linspace(0, 1, 7)[:, None]
    p = 1 / (1 + np.exp(-logits))
    expected = np.log(2 * np.arctanh(1 - 2 * p) / (1 - 2 * p)) + x * np.log(p) + (1 - x) * np.log1p(-p)
    d = ContinuousBernoulli(jnp.asarray(logits, jnp.float32)[:, None])  # one-pixel events: log_prob per logit
    got = d.log_prob(jnp.broadcast_to(jnp.asarray(x, jnp.float32), (7, len(logits)))[..., None])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
