"""Bounds on a linear-Gaussian model, whose ELBO and log p(x) are known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import linear_gaussian_truth, linear_gaussian_vae
from jaxvae.objectives import elbo, iwae

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
