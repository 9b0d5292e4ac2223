"""Bounds on a linear-Gaussian model, whose ELBO and log p(x) are known in closed form."""


import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp as scipy_logsumexp
from scipy.special import softmax

from conftest import linear_gaussian_truth, linear_gaussian_vae
from jaxvae.builder import build_model, build_objective
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.errors import InputError
from jaxvae.objectives import (
    STL,
    Ciwae,
    DReG,
    Elbo,
    Iwae,
    Miwae,
    Objective,
    Piwae,
    Reparam,
    elbo,
    elbo_loss,
    free_bits_kl,
    iwae,
    kl_weight,
    log_importance_weights,
    miwae,
)

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    layers = jnp.array(
        [[1.0, 0.2], [0.4, 1.0], [9.0, 9.0]]
    )  # a deep model's layers of 3 and 2 dimensions: shares 1.2, 0.8
    assert float(free_bits_kl(layers, w, 0.4, (3, 2))) == pytest.approx(max(1.2, 0.7) + max(0.8, 0.6), rel=1e-6)


@pytest.mark.slow
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


@pytest.mark.slow
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


# Objectives as parts and their gradient estimators. Gradients are compared per component: the mean over
# draws of an estimator's gradient against another's, paired on the same draws, within 5 standard errors of
# the paired difference (plus 1e-4 for float32 rounding).


def _split(vae):
    """(encoder side, decoder side) of a VAE's float parameters, as two flat vectors."""
    from jax.flatten_util import ravel_pytree

    encoder = ravel_pytree(eqx.filter((vae.encoder, vae.posterior), eqx.is_inexact_array))[0]
    decoder = ravel_pytree(eqx.filter((vae.decoder, vae.likelihood, vae.latent_prior), eqx.is_inexact_array))[0]
    return encoder, decoder


def _gradients(objective, vae, x, keys, split=_split):
    """The objective's gradient at each key, as `split` arranges a model's gradient (default: (encoder
    (N, P_e), decoder (N, P_d))), float64 NumPy."""
    params, static = eqx.partition(vae, eqx.is_inexact_array)

    def grad(key):
        g = jax.grad(lambda p: objective(eqx.combine(p, static), x, jnp.ones(x.shape[0]), key=key)[0])(params)
        return split(eqx.combine(g, static))

    return jax.tree.map(lambda a: np.asarray(a, np.float64), jax.jit(jax.vmap(grad))(keys))


def _paired_z(a, b):
    """|mean(a - b)| / its standard error, per component (N, P) -> (P,); 0 where a and b agree on every draw."""
    d = a - b
    se = d.std(0) / np.sqrt(len(d))
    return np.where(se > 0, np.abs(d.mean(0)) / np.maximum(se, 1e-30), 0.0)


def _poor_q_model():
    vae, *_ = linear_gaussian_vae(exact_posterior=False)
    return vae, jnp.asarray(X, jnp.float32)


@pytest.mark.parametrize("gradient", [STL(), DReG()])
def test_stl_and_dreg_leave_the_decoder_gradient_of_iwae_as_it_is(gradient):
    """The decoder's gradient of L_K is sum_k w~_k grad log p(x, z_k) for every estimator: equal draw by draw."""
    vae, x = _poor_q_model()
    keys = jax.random.split(jax.random.PRNGKey(0), 20)
    _, standard = _gradients(Iwae(5, Reparam()), vae, x, keys)
    _, other = _gradients(Iwae(5, gradient), vae, x, keys)
    np.testing.assert_allclose(other, standard, rtol=1e-4, atol=1e-5)


def test_dreg_is_unbiased_for_iwae_and_stl_is_biased():
    """4,000 draws of K = 5 on a poor q: DReG's encoder gradient has the standard one's expectation (every
    component within 5 s.e. of the paired difference), STL's does not (Tucker et al. 2018: STL is biased for
    K > 1): some component is more than 8 s.e. off."""
    vae, x = _poor_q_model()
    keys = jax.random.split(jax.random.PRNGKey(1), 4000)
    standard, _ = _gradients(Iwae(5, Reparam()), vae, x, keys)
    dreg, _ = _gradients(Iwae(5, DReG()), vae, x, keys)
    stl, _ = _gradients(Iwae(5, STL()), vae, x, keys)
    assert _paired_z(dreg, standard).max() < 5
    assert _paired_z(stl, standard).max() > 8
    # and the smaller variance: the median over encoder components of the variance ratio, 0.69 measured
    assert np.median(dreg.var(0) / standard.var(0)) < 0.85


@pytest.mark.parametrize("gradient", [STL(), DReG()])
def test_stl_is_unbiased_for_the_elbo(gradient):
    """The ELBO (S = 2) with the score term dropped keeps the expectation of the standard gradient (whose KL
    is in closed form), every component of encoder and decoder within 5 s.e. over 4,000 draws."""
    vae, x = _poor_q_model()
    keys = jax.random.split(jax.random.PRNGKey(2), 4000)
    standard = _gradients(Elbo(samples=2), vae, x, keys)
    for a, b in zip(standard, _gradients(Elbo(samples=2, gradient=gradient), vae, x, keys), strict=True):
        assert _paired_z(b, a).max() < 5


def test_dreg_is_unbiased_with_a_vamp_prior():
    """A prior made by the encoder (the VampPrior): DReG replaces q's score term only and keeps the prior's own
    dependence on the encoder at the weights w~_k, so it stays unbiased; 4,000 draws of K = 4, 5 s.e."""
    vae = build_model(ModelConfig(data_shape=(5,), latent_dim=2, hidden=(), prior="vamp:3"), key=jax.random.PRNGKey(3))
    vae = eqx.tree_at(lambda m: m.latent_prior.pseudo_inputs, vae, jnp.asarray(X[:3], jnp.float32))
    x = jnp.asarray(np.random.default_rng(4).random((3, 5)), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(4), 4000)
    standard, _ = _gradients(Iwae(4, Reparam()), vae, x, keys)
    dreg, _ = _gradients(Iwae(4, DReG()), vae, x, keys)
    assert _paired_z(dreg, standard).max() < 5  # 2.0 measured; weighing the prior's part by w~_k^2 too: 151


def _flat(vae):
    """Every float parameter of a model (or gradient), as one flat vector."""
    from jax.flatten_util import ravel_pytree

    return ravel_pytree(eqx.filter(vae, eqx.is_inexact_array))[0]


@pytest.mark.slow
def test_dreg_is_unbiased_for_a_top_down_model_with_a_vamp_prior():
    """The published table's own row in small: two latent layers inferred top-down, where q(z_1 | x, z_2)
    reads z_2 through the network p(z_1 | z_2) also uses, and the VampPrior on z_2. DReG's gradient of every
    parameter, encoder's, decoder's and the shared ones', has the standard one's expectation: 4,000 draws
    of K = 4, every component within 5 s.e. of the paired difference."""
    config = ModelConfig(
        data_shape=(5,), latent_dim=4, layers=(2, 2), hidden=(6,), inference="top-down", decoder_input="all",
        prior="vamp:3", likelihood="gaussian",
    )  # fmt: skip
    vae = build_model(config, key=jax.random.PRNGKey(5))
    x = jnp.asarray(X[:3], jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(6), 4000)
    standard = _gradients(Iwae(4, Reparam()), vae, x, keys, split=_flat)
    dreg = _gradients(Iwae(4, DReG()), vae, x, keys, split=_flat)
    assert _paired_z(dreg, standard).max() < 5  # 2.3 measured
    changed = np.any(dreg != standard, axis=0)  # what q depends on: 176 of the 285 parameters
    assert np.median(dreg.var(0)[changed] / standard.var(0)[changed]) < 0.75  # and their variance: 0.51 measured


def test_stl_has_zero_variance_at_the_exact_posterior():
    """With q(z|x) the true posterior, log p(x, z) - log q(z|x) = log p(x) for every z, so STL's encoder
    gradient (the path through z of that difference) is 0 at every draw, for the ELBO and for L_K; the
    standard estimator's score term keeps a variance."""
    vae, *_ = linear_gaussian_vae(exact_posterior=True)
    x = jnp.asarray(X, jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(5), 200)
    for objective in (Elbo(samples=1, gradient=STL()), Iwae(5, STL()), Iwae(5, DReG())):
        encoder, _ = _gradients(objective, vae, x, keys)
        assert encoder.std(0).max() < 1e-4 and np.abs(encoder).max() < 1e-4
    standard, _ = _gradients(Elbo(samples=1, gradient=Reparam()), vae, x, keys)
    assert standard.std(0).max() > 0.1


@pytest.mark.slow
def test_dreg_encoder_gradient_is_the_squared_weights_sum_written_out():
    """d/d(encoder bias) of DReG's loss, against sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d bias) in float64
    NumPy: for the linear-Gaussian model d log w / dz = W^T (x - W z - b) / s^2 - z + (z - mu) / sigma^2, and
    z = mu + sigma * eps gives dz/dmu = 1, dz/d log sigma^2 = sigma * eps / 2."""
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    x, K, key = jnp.asarray(X, jnp.float32), 6, jax.random.PRNGKey(6)
    params, static = eqx.partition(vae, eqx.is_inexact_array)
    loss = lambda p: Iwae(K, DReG())(eqx.combine(p, static), x, jnp.ones(len(X)), key=key)[0]  # noqa: E731
    got = np.asarray(jax.grad(loss)(params).encoder.layers[0].bias, np.float64)

    q = vae.encode(x)
    z = np.asarray(q.sample(key, (K,)), np.float64)  # the objective's draws: the same key, the same sampler
    mu, var = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_var, np.float64))
    log_w = np.asarray(log_importance_weights(vae, x, key=key, samples=K), np.float64)
    w2 = softmax(log_w, axis=0) ** 2  # (K, n)
    resid = X - z @ W.T - b  # (K, n, d)
    dlogw_dz = resid @ W / sigma**2 - z + (z - mu) / var
    eps = (z - mu) / np.sqrt(var)
    d_mu = np.sum(w2[..., None] * dlogw_dz, axis=0)  # (n, k)
    d_log_var = np.sum(w2[..., None] * dlogw_dz * np.sqrt(var) * eps / 2, axis=0)
    expected = -np.concatenate([d_mu, d_log_var], axis=1).mean(0)  # the loss is minus the batch mean
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("gradient", [Reparam(), STL(), DReG()])
def test_miwae_with_one_group_is_iwae(gradient):
    vae, x = _poor_q_model()
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    grouped, plain = _gradients(Miwae(1, 5, gradient), vae, x, keys), _gradients(Iwae(5, gradient), vae, x, keys)
    for a, b in zip(grouped, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    w = jnp.ones(len(X))
    loss_m, bounds_m = Miwae(1, 5, gradient)(vae, x, w, key=keys[0])
    loss_i, bounds_i = Iwae(5, gradient)(vae, x, w, key=keys[0])
    assert float(loss_m) == pytest.approx(float(loss_i), rel=1e-6)
    np.testing.assert_allclose(bounds_m["miwae_bound"], bounds_i["iwae_bound"], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("gradient", [Reparam(), STL()])
def test_ciwae_at_beta_one_is_the_elbo(gradient):
    """CIWAE(1) with K draws: the loss and gradient of the K-sample ELBO mean_k log w_k (reparam: differentiated
    directly; STL: the Elbo objective's, its KL at the draws with q stopped)."""
    vae, x = _poor_q_model()
    w, keys = jnp.ones(len(X)), jax.random.split(jax.random.PRNGKey(8), 3)
    if isinstance(gradient, Reparam):

        class MonteCarloElbo(Objective):
            bound_key = "elbo"
            name = "ELBO"

            def __call__(self, vae, x, weights, *, key):
                return -jnp.mean(log_importance_weights(vae, x, key=key, samples=4)), {}

        reference = MonteCarloElbo()
    else:
        reference = Elbo(samples=4, gradient=gradient)
    ciwae_one = Ciwae(jnp.float32(1.0), 4, gradient)
    for a, b in zip(_gradients(ciwae_one, vae, x, keys), _gradients(reference, vae, x, keys), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    loss, bounds = ciwae_one(vae, x, w, key=keys[0])
    np.testing.assert_allclose(bounds["ciwae_bound"], bounds["elbo"], rtol=1e-6)
    assert float(loss) == pytest.approx(-float(jnp.mean(bounds["elbo"])), rel=1e-6)


@pytest.mark.parametrize("gradient", [Reparam(), DReG()])
def test_piwae_trains_the_decoder_on_iwae_and_the_encoder_on_miwae(gradient):
    """On the same draws: PIWAE(3, 2)'s decoder gradient is L_6's, its encoder gradient MIWAE(3, 2)'s."""
    vae, x = _poor_q_model()
    keys = jax.random.split(jax.random.PRNGKey(9), 3)
    encoder, decoder = _gradients(Piwae(3, 2, gradient), vae, x, keys)
    np.testing.assert_allclose(decoder, _gradients(Iwae(6, gradient), vae, x, keys)[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(encoder, _gradients(Miwae(3, 2, gradient), vae, x, keys)[0], rtol=1e-4, atol=1e-5)


def _scipy_log_weights(vae, W, b, sigma, key, K):
    """log w_k = log N(x; W z_k + b, sigma^2 I) + log N(z_k; 0, I) - log q(z_k | x) (K, n) and KL(q || p) (n,)
    in float64 SciPy for the linear-Gaussian model, at the draws z_k that q's sampler makes from `key`."""
    q = vae.encode(jnp.asarray(X, jnp.float32))
    z = np.asarray(q.sample(key, (K,)), np.float64)
    mu, var = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_var, np.float64))
    log_p = stats.norm(z @ W.T + b, sigma).logpdf(X).sum(-1) + stats.norm().logpdf(z).sum(-1)
    log_w = log_p - stats.norm(mu, np.sqrt(var)).logpdf(z).sum(-1)
    log_lik = stats.norm(z @ W.T + b, sigma).logpdf(X).sum(-1)
    return log_w, log_lik, 0.5 * np.sum(var + mu**2 - 1 - np.log(var), axis=-1)


@pytest.mark.slow
@pytest.mark.parametrize("gradient", [Reparam(), STL(), DReG()])
def test_each_objective_reports_its_bounds_and_loss_as_scipy_computes_them(gradient):
    """Every objective's reported bounds and loss on the linear-Gaussian model, against the bounds computed in
    float64 SciPy from the log weights of the same draws: L_K = logsumexp - log K, MIWAE(3, 2) the mean of the
    groups' L_2, CIWAE(0.3) = 0.3 mean log w + 0.7 L_6, the ELBO mean_k log p(x | z_k) - KL in closed form (its
    loss with STL and DReG mean_k log w_k)."""
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    x, w, key = jnp.asarray(X, jnp.float32), jnp.ones(len(X)), jax.random.PRNGKey(10)
    log_w, log_lik, kl = _scipy_log_weights(vae, W, b, sigma, key, 6)
    l_6 = scipy_logsumexp(log_w, axis=0) - np.log(6)
    miwae_3_2 = np.mean(scipy_logsumexp(log_w.reshape(3, 2, -1), axis=1) - np.log(2), axis=0)
    expected = [
        (Iwae(6, gradient), {"iwae_bound": l_6, "elbo": log_w.mean(0)}),
        (Miwae(3, 2, gradient), {"miwae_bound": miwae_3_2, "iwae_bound": l_6, "elbo": log_w.mean(0)}),
        (Piwae(3, 2, gradient), {"iwae_bound": l_6, "miwae_bound": miwae_3_2, "elbo": log_w.mean(0)}),
        (Ciwae(jnp.float32(0.3), 6, gradient), {"ciwae_bound": 0.3 * log_w.mean(0) + 0.7 * l_6, "iwae_bound": l_6}),
        (Elbo(samples=6, gradient=gradient), {"elbo": log_lik.mean(0) - kl}),
    ]
    for objective, bounds in expected:
        loss, got = objective(vae, x, w, key=key)
        for name, value in bounds.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=2e-4, err_msg=f"{objective.name} {name}")
        trained = bounds[objective.bound_key]
        if isinstance(objective, Elbo) and not isinstance(gradient, Reparam):  # its loss: the KL at the draws
            trained = log_w.mean(0)
        assert float(loss) == pytest.approx(-trained.mean(), rel=1e-5, abs=2e-4), objective.name


def test_miwae_groups_the_draws_in_order():
    """MIWAE(2, 3) by hand from the six log weights: the mean of the two groups' log-mean-exp, in float64."""
    vae, x = _poor_q_model()
    key = jax.random.PRNGKey(11)
    log_w = np.asarray(log_importance_weights(vae, x, key=key, samples=6), np.float64)
    expected = 0.5 * (scipy_logsumexp(log_w[:3], axis=0) - np.log(3) + scipy_logsumexp(log_w[3:], axis=0) - np.log(3))
    np.testing.assert_allclose(miwae(vae, x, key=key, groups=2, samples=3), expected, rtol=1e-5)


def test_the_builder_makes_each_objective_with_its_settings_bound_and_name():
    assert build_objective(TrainConfig()) == Elbo(jnp.float32(1.0), jnp.float32(0.0), 1, Reparam())
    assert build_objective(TrainConfig(objective="iwae", samples=5, gradient="dreg")) == Iwae(5, DReG())
    assert build_objective(TrainConfig(objective="miwae", groups=4, samples=2)) == Miwae(4, 2, Reparam())
    assert build_objective(TrainConfig(objective="piwae", groups=4, samples=2, gradient="stl")) == Piwae(4, 2, STL())
    ciwae_quarter = build_objective(TrainConfig(objective="ciwae", ciwae_beta=0.25))
    assert isinstance(ciwae_quarter, Ciwae) and float(ciwae_quarter.beta) == 0.25
    assert {o: build_objective(TrainConfig(objective=o)).bound_key for o in ("elbo", "iwae", "piwae")} == {
        "elbo": "elbo", "iwae": "iwae_bound", "piwae": "iwae_bound"
    }  # fmt: skip
    assert (ciwae_quarter.bound_key, ciwae_quarter.name) == ("ciwae_bound", "CIWAE(0.25)")
    with pytest.raises(InputError, match="piwae"):
        RunConfig(ModelConfig(data_shape=(5,), prior="vamp:3"), TrainConfig(objective="piwae", groups=2))
    for bad in (
        {"free_bits": 0.5, "gradient": "stl"},
        {"groups": 2},
        {"objective": "iwae", "ciwae_beta": 0.2},
        {"objective": "ciwae", "ciwae_beta": 1.5},
        {"gradient": "score"},
    ):
        with pytest.raises(InputError):
            TrainConfig(**bad)
