"""Evaluating a conditional model: log p(x | c) by quadrature against a NumPy grid of an independent forward
pass, the inference gaps against the linear-Gaussian model's closed forms, the gradient SNR against a model of
the concatenation written by hand, and `evaluate --gaps --gradient-snr` on a conditional run."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import Array

from jaxvae import build_model, checkpoint
from jaxvae.cli import main
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.evaluate import log_likelihood_quadrature
from jaxvae.gaps import inference_gaps
from jaxvae.objectives import Iwae, Reparam
from jaxvae.priors import PriorNetwork
from jaxvae.runs import CHECKPOINTS, CONFIG
from jaxvae.snr import gradient_snr
from jaxvae.train import init_state
from test_conditional import SIGMA, W, exact_log_px, examples, linear_gaussian

D, CLASSES, HIDDEN = 16, 3, 4  # pixels, classes and tanh units of the nonlinear model


def nonlinear_model(prior: str):
    """A conditional model of 16 binary pixels, z in R^2, a tanh decoder of 4 hidden units from [z, one-hot c]
    (its weights scaled by 6, so that p(z | x, c) is far from p(z | c) and not Gaussian), and p(z | c) N(0, I)
    or the prior network."""
    config = ModelConfig(data_shape=(D,), latent_dim=2, hidden=(HIDDEN,), condition_dim=CLASSES, prior=prior)
    vae = build_model(config, key=jax.random.PRNGKey(0))
    weights = lambda m: (m.decoder.layers[0].weight, m.decoder.condition, m.decoder.layers[1].weight)  # noqa: E731
    return eqx.tree_at(weights, vae, tuple(6 * w for w in weights(vae)))


def f64(layer):
    return np.asarray(layer.weight, np.float64), np.asarray(layer.bias, np.float64)


def grid_log_px(vae, x: np.ndarray, c: np.ndarray, points: int) -> float:
    """log p(x | c) = log int p(x | z, c) p(z | c) dz in float64 NumPy: the decoder's forward pass (Bernoulli
    logits W2 tanh(W1 z + Wc c + b1) + b2) and the prior (the network's mean and log-variance, or N(0, I))
    written out here, integrated by np.trapezoid on a grid of `points`^2 over p(z | c)'s mean +- 9 sd."""
    (w1, b1), (w2, b2) = map(f64, vae.decoder.layers)
    if isinstance(vae.latent_prior, PriorNetwork):
        (p1, q1), (p2, q2) = map(f64, vae.latent_prior.network.layers)
        mean, log_var = np.split(p2 @ np.tanh(p1 @ c + q1) + q2, 2)
    else:
        mean, log_var = np.zeros(2), np.zeros(2)
    sd = np.exp(0.5 * log_var)
    axes = [np.linspace(m - 9 * s, m + 9 * s, points) for m, s in zip(mean, sd, strict=True)]
    z = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # (points, points, 2)
    logits = np.tanh(z @ w1.T + np.asarray(vae.decoder.condition, np.float64) @ c + b1) @ w2.T + b2
    log_f = np.sum(x * logits - np.logaddexp(0, logits), -1)
    log_f += np.sum(-0.5 * (np.log(2 * np.pi) + log_var + (z - mean) ** 2 / sd**2), -1)
    top = log_f.max()
    return top + np.log(np.trapezoid(np.trapezoid(np.exp(log_f - top), axes[1], axis=1), axes[0]))


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["normal", "conditional"])
def test_quadrature_of_a_nonlinear_conditional_model_matches_an_independent_grid(prior):
    """jaxvae's quadrature of log p(x | c) (float32, its two grids placed per example) against `grid_log_px`
    (float64, one dense grid) for 6 binary x, two of each class: within 2e-5 nats. The reference's own grid
    error, its change from 301 to 401 points, is below 1e-7; what is left is float32's rounding of integrands
    near -25 nats (25 x 6e-8 = 1.5e-6 a term; 8e-7 measured), so 2e-5 is ten times that."""
    vae = nonlinear_model(prior)
    rng = np.random.default_rng(1)
    x, c = (rng.random((6, D)) < 0.5).astype(np.float64), np.eye(CLASSES)[np.arange(6) % CLASSES]
    got = log_likelihood_quadrature(vae, jnp.asarray(x, jnp.float32), c=jnp.asarray(c, jnp.float32))
    expected = np.array([grid_log_px(vae, xi, ci, 401) for xi, ci in zip(x, c, strict=True)])
    coarser = np.array([grid_log_px(vae, xi, ci, 301) for xi, ci in zip(x, c, strict=True)])
    assert np.max(np.abs(expected - coarser)) < 1e-7
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=0, atol=2e-5)
    assert np.ptp(expected) > 3  # the examples' values differ: the model is not flat in x or c


@pytest.mark.slow
def test_gaps_of_the_conditional_linear_gaussian_model_are_its_closed_forms():
    """With the prior network p(z | c) = N(A c, I), q's mean moved by 0.5 off the exact posterior N(m(x, c), P^-1)
    (P diagonal), a member of the family: so q* is the posterior, the approximation gap log p(x | c) - ELBO(q*)
    is 0 and the amortization gap is KL(q || posterior) = 0.5 sum_j P_j 0.5^2. Each within 0.01 nats (the fit's
    tolerance, tests/test_gaps.py) plus 4 Monte Carlo standard errors; log p(x | c), the quadrature, within 1e-3
    of scipy's; L_100 with q* as the proposal within 0.02 of it (its log weights vary by about 0.05 nats)."""
    vae, (x, c) = linear_gaussian(True, shift=0.5), examples()
    gaps = inference_gaps(vae, x, jax.random.PRNGKey(0), iw_samples=100, c=c)
    np.testing.assert_allclose(gaps["log_px"], exact_log_px(np.asarray(x), np.asarray(c), True), atol=1e-3)
    precision = 1 + np.sum(W**2, axis=0) / SIGMA**2
    amortization = 0.5 * np.sum(precision * 0.5**2)
    assert amortization > 0.5  # a gap worth fitting away
    se = gaps["elbo_optimized_se"]
    assert np.all(np.abs(gaps["approximation_gap"]) < 0.01 + 4 * se), (gaps["approximation_gap"], se)
    se = gaps["amortization_gap_se"]
    assert np.all(np.abs(gaps["amortization_gap"] - amortization) < 0.01 + 4 * se), (gaps["amortization_gap"], se)
    np.testing.assert_allclose(gaps["log_likelihood_optimized"], gaps["log_px"], atol=0.02)


def concatenated_log_weights(params: dict, x: Array, c: Array, eps: Array) -> Array:
    """log p(x | z, c) + log p(z | c) - log q(z | x, c), (S, n), for z = mu + sigma eps (eps (S, n, 2)): the
    model written out on the concatenations [x, c] and [z, c], with Bernoulli pixels and a prior network."""

    def mlp(layers, v):
        (w1, b1), (w2, b2) = layers
        return jnp.tanh(v @ w1.T + b1) @ w2.T + b2

    def log_normal(z, mean, log_var):
        return jnp.sum(-0.5 * (jnp.log(2 * jnp.pi) + log_var + (z - mean) ** 2 * jnp.exp(-log_var)), -1)

    mean, log_var = jnp.split(mlp(params["encoder"], jnp.concatenate([x, c], -1)), 2, axis=-1)
    z = mean + jnp.exp(0.5 * log_var) * eps
    logits = mlp(params["decoder"], jnp.concatenate([z, jnp.broadcast_to(c, z.shape[:-1] + c.shape[-1:])], -1))
    prior_mean, prior_log_var = jnp.split(mlp(params["prior"], c), 2, axis=-1)
    log_px = jnp.sum(x * logits - jax.nn.softplus(logits), -1)
    return log_px + log_normal(z, prior_mean, prior_log_var) - log_normal(z, mean, log_var)


@pytest.mark.slow
def test_the_gradient_snr_with_a_condition_is_that_of_the_concatenated_model_by_hand():
    """`gradient_snr` of IWAE (K = 3) of a conditional model with a prior network, on 4 examples of 3 classes,
    against 40 gradients of `concatenated_log_weights` (the same weights, joined as the first layers of [x, c]
    and [z, c]; the same normal draws) and |mean| / std (ddof 1) per component in float64: the encoder's
    components are q(z | x, c)'s network, W_c among them, the decoder's the decoder and the prior network."""
    config = ModelConfig(data_shape=(5,), latent_dim=2, hidden=(3,), condition_dim=3, prior="conditional")
    vae = build_model(config, key=jax.random.PRNGKey(2))
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.random((4, 5)), jnp.float32)  # grey levels: no pixel 0 in every example, no gradient 0
    c = jnp.asarray(np.eye(3)[[0, 1, 2, 1]], jnp.float32)
    key, repetitions = jax.random.PRNGKey(4), 40
    got = gradient_snr(vae, x, key, Iwae(3, Reparam()), repetitions=repetitions, c=c)

    def joined(mlp):
        first, second = mlp.layers
        weight = first.weight if mlp.condition is None else jnp.concatenate([first.weight, mlp.condition], 1)
        return [(weight, first.bias), (second.weight, second.bias)]

    params = {"encoder": joined(vae.encoder), "decoder": joined(vae.decoder), "prior": joined(vae.latent_prior.network)}

    def loss(p, k):
        log_w = concatenated_log_weights(p, x, c, jax.random.normal(k, (3, 4, 2)))
        return -jnp.mean(jax.nn.logsumexp(log_w, 0) - jnp.log(3.0))

    grad = jax.jit(jax.grad(loss))
    grads = [grad(params, k) for k in jax.random.split(key, repetitions)]
    for side, parts in (("encoder", ["encoder"]), ("decoder", ["decoder", "prior"])):
        g = np.stack([np.concatenate([np.ravel(a) for p in parts for a in jax.tree.leaves(gk[p])]) for gk in grads])
        g = g.astype(np.float64)
        snr = np.abs(g.mean(0)) / g.std(0, ddof=1)
        assert got[f"{side}_components"] == g.shape[1]
        assert got[side] == pytest.approx(snr.mean(), rel=1e-4)
        assert got[f"{side}_median"] == pytest.approx(np.median(snr), rel=1e-4)


@pytest.mark.slow
def test_evaluate_gaps_and_gradient_snr_take_a_conditional_run(tmp_path, capsys):
    """`evaluate --gaps --gradient-snr` of a conditional digits model (untrained, with a prior network): the
    gaps' means, per example ELBO(q) <= ELBO(q*) <= log p(x | y) within 4 Monte Carlo standard errors, the
    per-example file with the labels, and the SNR table."""
    from jaxvae.data import load_dataset

    config = RunConfig(
        ModelConfig(data_shape=(8, 8), hidden=(16,), condition_dim=10, prior="conditional"),
        TrainConfig(dataset="digits", condition="label", batch_size=20),
    )
    run = tmp_path / "run"
    run.mkdir()
    config.save(run / CONFIG)
    checkpoint.save(run / CHECKPOINTS / "epoch-00001.eqx", init_state(config))
    per_example = tmp_path / "gaps.npz"
    argv = ["evaluate", str(run), "--n", "12", "--iw-samples", "50", "--gaps", "--per-example", str(per_example)]
    assert main([*argv, "--gradient-snr", "1,4", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["condition"] == "label" and result["gaps_log_px"] == "quadrature"
    assert result["amortization_gap"] >= -4 * result["amortization_gap_se"]
    assert result["approximation_gap"] >= -4 * result["approximation_gap_se"]
    assert set(result["gradient_snr"]["reparam"]) == {"1", "4"} and result["gradient_snr_batch"] == 12
    with np.load(per_example) as gaps:
        np.testing.assert_array_equal(gaps["y"], load_dataset("digits", progress=False).y_test[:12])
        assert np.all(gaps["elbo"] <= gaps["elbo_optimized"] + 4 * gaps["amortization_gap_se"])
        assert np.all(gaps["elbo_optimized"] <= gaps["log_px"] + 4 * gaps["elbo_optimized_se"])
