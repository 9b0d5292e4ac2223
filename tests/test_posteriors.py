"""Posterior families: full-covariance Gaussian against scipy, inverse autoregressive flow against
autodiff Jacobians and an independent change of variables, and the KL chosen by the pair of types."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from jaxvae.distributions import FullNormal, InverseAutoregressiveFlow, Mixture, Normal, kl_estimator, kl_terms
from jaxvae.networks import MADE
from jaxvae.posteriors import IAF, FullGaussian

rng = np.random.default_rng(0)


def random_full_normal(batch: int, k: int) -> FullNormal:
    params = jnp.asarray(rng.normal(size=(batch, FullGaussian(k).size)), jnp.float32)
    return FullGaussian(k)(params)


def test_full_gaussian_parameters_give_a_cholesky_factor():
    """Lower triangular, positive diagonal exp(log L_jj), the entries below the diagonal as given."""
    k = 4
    params = rng.normal(size=FullGaussian(k).size)
    L = np.asarray(FullGaussian(k)(jnp.asarray(params, jnp.float32)).scale_tril)
    np.testing.assert_allclose(np.triu(L, 1), 0)
    np.testing.assert_allclose(np.diag(L), np.exp(params[k : 2 * k]), rtol=1e-6)
    np.testing.assert_allclose(L[np.tril_indices(k, -1)], params[2 * k :], rtol=1e-6)


def test_full_normal_log_prob_and_moments_match_scipy():
    q = random_full_normal(3, 3)
    z = rng.normal(size=(5, 3, 3))
    got = np.asarray(q.log_prob(jnp.asarray(z, jnp.float32)))
    for i in range(3):
        L = np.asarray(q.scale_tril[i], np.float64)
        dist = stats.multivariate_normal(np.asarray(q.mean[i], np.float64), L @ L.T)
        np.testing.assert_allclose(got[:, i], dist.logpdf(z[:, i]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(q.moments()[1][i], np.sqrt(np.diag(L @ L.T)), rtol=1e-5)


def test_full_normal_samples_have_its_covariance():
    """Covariance of 200,000 draws against L L^T, within 0.02 (the s.e. of each entry is about 0.003)."""
    q = random_full_normal(1, 3)
    z = np.asarray(q.sample(jax.random.PRNGKey(0), (200_000,)), np.float64)[:, 0]
    L = np.asarray(q.scale_tril[0], np.float64)
    np.testing.assert_allclose(np.cov(z.T), L @ L.T, atol=0.02 * max(1, np.abs(L @ L.T).max()))


@pytest.mark.slow
def test_full_normal_kl_matches_the_float64_formula_and_monte_carlo():
    """KL(N(m, S) || N(mu, diag v)) against numpy's 0.5 (tr(P^-1 S) + d^T P^-1 d - k + log|P| - log|S|),
    and the closed form against 100,000 draws of log q - log p (5 standard errors)."""
    q = random_full_normal(2, 3)
    p = Normal(jnp.asarray(rng.normal(size=3), jnp.float32), jnp.asarray(rng.normal(size=3), jnp.float32))
    got = np.asarray(kl_terms(q, p, None, None))
    assert got.shape == (2, 1) and kl_estimator(q, p).name == "closed form"
    P = np.diag(np.exp(np.asarray(p.log_var, np.float64)))
    for i in range(2):
        L = np.asarray(q.scale_tril[i], np.float64)
        S, d = L @ L.T, np.asarray(p.mean, np.float64) - np.asarray(q.mean[i], np.float64)
        expected = 0.5 * (
            np.trace(np.linalg.solve(P, S))
            + d @ np.linalg.solve(P, d)
            - 3
            + np.linalg.slogdet(P)[1]
            - np.linalg.slogdet(S)[1]
        )
        np.testing.assert_allclose(got[i, 0], expected, rtol=1e-5)
        z = q.sample(jax.random.PRNGKey(i), (100_000,))[:, i]
        log_ratio = np.asarray(FullNormal(q.mean[i], q.scale_tril[i]).log_prob(z) - p.log_prob(z), np.float64)
        assert abs(log_ratio.mean() - expected) < 5 * log_ratio.std() / np.sqrt(len(log_ratio))


@pytest.mark.slow
def test_monte_carlo_kl_is_unbiased_for_gaussian_pairs():
    """Against a one-component mixture prior, equal to N(mu, diag v) but with no closed form registered,
    the KL is the Monte Carlo mean of log q - log p: over 20,000 independent single draws its average is
    the closed form within 5 standard errors, for a diagonal and a full-covariance q."""
    mu, log_v = jnp.asarray(rng.normal(size=3), jnp.float32), jnp.asarray(rng.normal(size=3), jnp.float32)
    p, mixture = Normal(mu, log_v), Mixture(jnp.zeros(1), Normal(mu[None], log_v[None]))
    diagonal = Normal(jnp.asarray(rng.normal(size=3), jnp.float32), jnp.asarray(rng.normal(size=3), jnp.float32))
    full = random_full_normal(1, 3)
    for q in (diagonal, FullNormal(full.mean[0], full.scale_tril[0])):
        assert kl_estimator(q, mixture).name == "monte carlo"
        z, log_q = q.sample_and_log_prob(jax.random.PRNGKey(1), (20_000, 1))
        estimates = np.asarray(jax.vmap(lambda zi, li, q=q: kl_terms(q, mixture, zi, li))(z, log_q), np.float64)
        estimates = estimates.ravel()
        exact = float(jnp.sum(kl_terms(q, p, None, None)))
        assert abs(estimates.mean() - exact) < 5 * estimates.std() / np.sqrt(len(estimates))


def made_step(k: int = 4, c: int = 3, seed: int = 0) -> tuple[MADE, jax.Array]:
    made = MADE(k, c, 16, key=jax.random.PRNGKey(seed))
    # larger weights than at initialization, so that the test sees every connection the masks allow
    made = jax.tree.map(lambda a: 3 * a if eqx.is_inexact_array(a) else a, made)
    return made, jnp.asarray(rng.normal(size=c), jnp.float32)


def test_made_is_autoregressive():
    """d(m_j, g_j)/dz_i is zero for i >= j and not for every i < j (autodiff Jacobian)."""
    made, h = made_step()
    z = jnp.asarray(rng.normal(size=4), jnp.float32)
    for out in jax.jacfwd(lambda z: made(z, h))(z):
        J = np.asarray(out)
        np.testing.assert_array_equal(np.triu(J), 0)
        assert np.all(np.abs(np.tril(J, -1))[np.tril_indices(4, -1)] > 0)


def test_flow_step_log_determinant_is_slogdet_of_its_jacobian():
    """One IAF step z -> sigmoid(g) z + (1 - sigmoid(g)) m: log|det dz'/dz| from jnp.linalg.slogdet of
    jax.jacfwd equals sum_j log sigmoid(g_j), the term the flow subtracts."""
    made, h = made_step()
    flow = InverseAutoregressiveFlow(Normal(jnp.zeros(4), jnp.zeros(4)), h, [made])
    for z in rng.normal(size=(3, 4)):
        z = jnp.asarray(z, jnp.float32)
        _, log_det = flow._forward(z)
        sign, expected = jnp.linalg.slogdet(jax.jacfwd(lambda z: flow._forward(z)[0])(z))
        assert float(sign) > 0
        np.testing.assert_allclose(log_det, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_iaf_log_q_is_the_change_of_variables():
    """log q(z_T) from sample_and_log_prob = log N(z_0 | mu, sigma^2) - log|det dz_T/dz_0|, the determinant
    of the whole flow (two steps, the order reversed between them) from slogdet of jax.jacfwd in float64
    terms; and log_prob (which inverts the flow) gives the same value at the drawn z_T."""
    k, c = 4, 3
    family = IAF(k, 2, key=jax.random.PRNGKey(0), context_dim=c, hidden=16)
    family = jax.tree.map(lambda a: 3 * a if eqx.is_inexact_array(a) else a, family)
    params = jnp.asarray(rng.normal(size=family.size), jnp.float32)
    q = family(params)
    z, log_q = q.sample_and_log_prob(jax.random.PRNGKey(1), (5,))
    eps = jax.random.normal(jax.random.PRNGKey(1), (5, k))
    z0 = q.base.mean + q.base.std * eps
    base = stats.norm(np.asarray(q.base.mean, np.float64), np.asarray(q.base.std, np.float64)).logpdf(z0).sum(-1)
    jac = jax.vmap(jax.jacfwd(lambda z0: q._forward(z0)[0]))(z0)
    log_det = np.linalg.slogdet(np.asarray(jac, np.float64))[1]
    np.testing.assert_allclose(z, jax.vmap(lambda z0: q._forward(z0)[0])(z0), rtol=1e-6)
    np.testing.assert_allclose(log_q, base - log_det, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(q.log_prob(z), log_q, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_iaf_density_integrates_to_one():
    """k = 2: the trapezoid rule over a 400 x 400 grid of exp(log_prob) (the flow inverted at every point)
    gives 1 within 1e-3."""
    family = IAF(2, 2, key=jax.random.PRNGKey(3), hidden=8)
    family = jax.tree.map(lambda a: 3 * a if eqx.is_inexact_array(a) else a, family)
    q = family(jnp.asarray([0.3, -0.2, -0.5, 0.2, 1.0, -1.0], jnp.float32))
    t = np.linspace(-9, 9, 400)
    grid = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    log_p = np.asarray(q.log_prob(jnp.asarray(grid, jnp.float32)), np.float64)
    w = np.full(400, t[1] - t[0])
    w[[0, -1]] /= 2
    total = np.exp(logsumexp(log_p + np.log(np.outer(w, w)).ravel()))
    assert total == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_iaf_moments_by_monte_carlo():
    """The Monte Carlo mean and std of q against 100,000 independent draws, within 5 standard errors."""
    family = IAF(3, 2, key=jax.random.PRNGKey(4))
    q = family(jnp.asarray(rng.normal(size=family.size), jnp.float32))
    mean, std = q.moments(jax.random.PRNGKey(0))
    z = np.asarray(q.sample(jax.random.PRNGKey(9), (100_000,)), np.float64)
    assert np.all(np.abs(np.asarray(mean) - z.mean(0)) < 5 * z.std(0) / np.sqrt(q.moment_draws))
    np.testing.assert_allclose(std, z.std(0), rtol=0.4)
