"""Bounds on a linear-Gaussian model, whose ELBO and log p(x) are known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import linear_gaussian_truth, linear_gaussian_vae
from jaxvae.objectives import elbo, elbo_loss, free_bits_kl, iwae, kl_weight

X = np.random.default_rng(3).normal(size=(4, 5)) * 1.5


def test_bounds_are_exact_for_the_exact_posterior():
    """With q(z|x) the true posterior, the ELBO is log p(x), and every importance weight p(x, z) / q(z|x)
    equals p(x), so L_K is exact for every draw (no Monte Carlo error at all)."""
    vae, W, b, sigma = linear_gaussian_vae()
    log_px, closed_elbo = linear_gaussian_truth(vae, W, b, sigma, X)
    np.testing.assert_allclose(closed_elbo, log_px, atol=1e-4)
    x = jnp.asarray(X, jnp.float32)
    for K in (1, 7):
        np.testing.assert_allclose(iwae(vae, x, key=jax.random.PRNGKey(K), samples=K), log_px, atol=2e-4)


@pytest.mark.parametrize("samples", [1, 4])
def test_s_sample_elbo_is_unbiased(samples):
    """Mean of 4,000 independent S-sample estimates vs the closed form; tolerance 5 standard errors."""
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    log_px, closed_elbo = linear_gaussian_truth(vae, W, b, sigma, X)
    x = jnp.asarray(X, jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(2), 4000)
    estimates = np.asarray(jax.vmap(lambda k: elbo(vae, x, key=k, samples=samples).elbo)(keys), np.float64)
    stderr = estimates.std(0) / np.sqrt(len(keys))
    assert np.all(np.abs(estimates.mean(0) - closed_elbo) < 5 * stderr + 1e-4)
    assert np.all(closed_elbo < log_px - 0.1)  # a poor q: a real Jensen gap, so the test can tell them apart
    # more samples, less variance: Var of the S-sample mean is Var_1 / S
    if samples == 4:
        single = np.asarray(jax.vmap(lambda k: elbo(vae, x, key=k, samples=1).elbo)(keys))
        np.testing.assert_allclose(estimates.var(0) * 4, single.var(0), rtol=0.15)


def test_iwae_bound_tightens_with_k():
    """E[L_1] = ELBO <= E[L_5] <= E[L_50] <= log p(x), averaged over 2,000 draws."""
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    log_px, closed_elbo = linear_gaussian_truth(vae, W, b, sigma, X)
    x = jnp.asarray(X, jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(5), 2000)
    draws = [np.asarray(jax.vmap(lambda k, K=K: iwae(vae, x, key=k, samples=K))(keys), np.float64) for K in (1, 5, 50)]
    means = [d.mean(0) for d in draws]
    assert np.all(np.abs(means[0] - closed_elbo) < 5 * draws[0].std(0) / np.sqrt(len(keys)))
    assert np.all(means[0] < means[1]) and np.all(means[1] < means[2]) and np.all(means[2] < log_px)


def test_reparameterization_gradient_matches_finite_differences():
    """d/d(encoder bias) of the 3-sample ELBO with fixed noise, against central differences in float64."""
    with jax.enable_x64(True):
        vae, *_ = linear_gaussian_vae(exact_posterior=False)
        vae = jax.tree.map(lambda a: a.astype(jnp.float64) if hasattr(a, "astype") else a, vae)
        x = jnp.asarray(X)
        key = jax.random.PRNGKey(7)

        def f(bias):
            import equinox as eqx

            v = eqx.tree_at(lambda m: m.encoder.layers[0].bias, vae, bias)
            return jnp.sum(elbo(v, x, key=key, samples=3).elbo)

        bias = vae.encoder.layers[0].bias
        grad = np.asarray(jax.grad(f)(bias))
        h = 1e-6
        fd = [(f(bias.at[i].add(h)) - f(bias.at[i].add(-h))) / (2 * h) for i in range(bias.shape[0])]
        np.testing.assert_allclose(grad, np.asarray(fd), rtol=1e-6, atol=1e-6)


def test_reparameterization_gradient_is_unbiased():
    """The mean over 4,000 draws of the gradient of the 1-sample ELBO vs the gradient of the closed form."""
    import equinox as eqx

    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    x = jnp.asarray(X, jnp.float32)

    def closed(bias):  # the linear-Gaussian ELBO written again in JAX, differentiable in the encoder bias
        v = eqx.tree_at(lambda m: m.encoder.layers[0].bias, vae, bias)
        q = v.encode(x)
        m, s2 = q.mean, jnp.exp(q.log_var)
        resid = x - m @ W.T - b
        ell = -0.5 * (jnp.sum(resid**2, 1) + s2 @ jnp.sum(W**2, 0)) / sigma**2
        return jnp.sum(ell - 0.5 * jnp.sum(s2 + m**2 - 1 - jnp.log(s2), 1))

    def sampled(bias, key):
        v = eqx.tree_at(lambda m: m.encoder.layers[0].bias, vae, bias)
        return jnp.sum(elbo(v, x, key=key, samples=1).elbo)

    bias = vae.encoder.layers[0].bias
    grads = np.asarray(jax.vmap(jax.grad(sampled), (None, 0))(bias, jax.random.split(jax.random.PRNGKey(0), 4000)))
    stderr = grads.std(0) / np.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(0) - np.asarray(jax.grad(closed)(bias))) < 5 * stderr + 1e-4)


def test_free_bits_kl_by_hand():
    """KL per dimension of two real examples (the third is padding, weight 0):
    batch means (0.2, 1.5, 0.25); with lambda = 0.4 the first and last cost 0.4: 0.4 + 1.5 + 0.4 = 2.3;
    with lambda = 0 it is the mean of the summed KL, (2.6 + 1.3) / 2 = 1.95."""
    kl = jnp.array([[0.1, 2.0, 0.5], [0.3, 1.0, 0.0], [9.0, 9.0, 9.0]])
    w = jnp.array([1.0, 1.0, 0.0])
    assert float(free_bits_kl(kl, w, 0.4, 3)) == pytest.approx(2.3, rel=1e-6)
    assert float(free_bits_kl(kl, w, 0.0, 3)) == pytest.approx(1.95, rel=1e-6)
    # the gradient: zero for a dimension under lambda, 1 / (number of real examples) otherwise
    grad = np.asarray(jax.grad(lambda k: free_bits_kl(k, w, 0.4, 3))(kl))
    np.testing.assert_allclose(grad, [[0, 0.5, 0], [0, 0.5, 0], [0, 0, 0]])
    # a KL that does not separate over dimensions is one term, granted 3 * 0.4 = 1.2 nats: its mean is 1.95
    total = jnp.sum(kl, axis=1, keepdims=True)
    assert float(free_bits_kl(total, w, 0.4, 3)) == pytest.approx(1.95, rel=1e-6)
    assert float(free_bits_kl(total, w, 0.7, 3)) == pytest.approx(2.1, rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.25, 4.0])
def test_beta_weights_only_the_kl_of_the_loss(beta):
    """loss = -mean(reconstruction) + beta * mean(KL), the KL in closed form (conftest's formula, written
    again in NumPy); the returned terms are the true beta = 1 ELBO whatever beta is."""
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    x = jnp.asarray(X, jnp.float32)
    key = jax.random.PRNGKey(4)
    loss, terms = elbo_loss(vae, x, jnp.ones(len(X)), key=key, samples=3, beta=beta)
    reference = elbo(vae, x, key=key, samples=3)
    q = vae.encode(x)
    m, s2 = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_var, np.float64))
    closed_kl = 0.5 * np.sum(s2 + m**2 - 1 - np.log(s2), axis=1)
    expected = -np.mean(np.asarray(reference.reconstruction)) + beta * np.mean(closed_kl)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(terms.elbo, reference.elbo, rtol=1e-6)
    np.testing.assert_allclose(terms.kl, closed_kl, rtol=1e-5)


def test_free_bits_above_every_kl_leave_only_the_reconstruction_gradient():
    """With lambda above every dimension's KL the KL term is the constant k * lambda: the loss is
    k * lambda - mean(reconstruction), and its gradient is the reconstruction's alone."""
    import equinox as eqx

    vae, *_ = linear_gaussian_vae(exact_posterior=False)
    x, w, key = jnp.asarray(X, jnp.float32), jnp.ones(len(X)), jax.random.PRNGKey(6)
    params, static = eqx.partition(vae, eqx.is_inexact_array)

    def loss(p, free_bits):
        return elbo_loss(eqx.combine(p, static), x, w, key=key, beta=2.0, free_bits=free_bits)[0]

    def reconstruction_only(p):
        return -jnp.mean(elbo(eqx.combine(p, static), x, key=key).reconstruction)

    assert float(loss(params, 50.0)) == pytest.approx(2.0 * 2 * 50.0 + float(reconstruction_only(params)), rel=1e-6)
    got, want = jax.grad(loss)(params, 50.0), jax.grad(reconstruction_only)(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_kl_warmup_is_linear_from_zero():
    """beta = 2 over 4 epochs: epochs 1..6 weigh the KL by 0, 0.5, 1, 1.5, 2, 2."""
    assert [kl_weight(2.0, 4, e) for e in range(1, 7)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert [kl_weight(0.5, 0, e) for e in (1, 9)] == [0.5, 0.5]
