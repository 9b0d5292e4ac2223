"""The deep model: a two-layer linear-Gaussian model whose marginal p(x) and posterior are Gaussian in
closed form (scipy, float64), per-layer KLs against Monte Carlo, the quadrature of two one-dimensional
layers against the closed form and a dense grid, and ancestral samples against their moments."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from jaxvae.builder import build_model
from jaxvae.config import ModelConfig
from jaxvae.deep import BottomUpVAE, Conditional, LadderEncoder, TopDownBlock, TopDownVAE
from jaxvae.errors import InputError
from jaxvae.evaluate import log_likelihood, log_likelihood_quadrature, report
from jaxvae.gaps import fit_posteriors, paired_elbos
from jaxvae.likelihoods import GaussianPixels
from jaxvae.objectives import elbo, log_importance_weights
from jaxvae.posteriors import DiagonalGaussian
from jaxvae.priors import StandardNormal

# z_2 ~ N(0, 1), z_1 | z_2 ~ N(A z_2 + C, S1^2), x | z_1 ~ N(W z_1 + B, SIGMA^2 I): one dimension a layer
A, C, S1, SIGMA = 1.3, 0.4, 0.6, 0.5
W, B = np.array([1.5, -0.7, 0.9]), np.array([0.2, 0.1, -0.3])
X = np.array([[0.5, -0.2, 0.1], [2.0, -1.5, 1.0], [-1.0, 0.9, -0.8]])


def joint():
    """Mean and covariance of (z_1, z_2, x_1, x_2, x_3), float64."""
    var1 = A**2 + S1**2
    mean = np.concatenate([[C, 0.0], W * C + B])
    cov = np.zeros((5, 5))
    cov[:2, :2] = [[var1, A], [A, 1.0]]
    cov[2:, 0] = cov[0, 2:] = W * var1
    cov[2:, 1] = cov[1, 2:] = W * A
    cov[2:, 2:] = var1 * np.outer(W, W) + SIGMA**2 * np.eye(3)
    return mean, cov


def conditional(given: list[int], target: int):
    """p(u_target | u_given) of the joint: (coefficients on u_given - their means, mean offset, variance)."""
    mean, cov = joint()
    s_gg, s_tg = cov[np.ix_(given, given)], cov[target, given]
    coef = np.linalg.solve(s_gg, s_tg)
    return coef, mean[target] - coef @ mean[given], cov[target, target] - s_tg @ coef


def linear(weight, bias) -> eqx.nn.Linear:
    weight, bias = np.atleast_2d(weight), np.asarray(bias)
    layer = eqx.nn.Linear(weight.shape[1], weight.shape[0], key=jax.random.PRNGKey(0))
    layer = eqx.tree_at(lambda l: l.weight, layer, jnp.asarray(weight, jnp.float32))
    return eqx.tree_at(lambda l: l.bias, layer, jnp.asarray(bias, jnp.float32))


def gaussian(weight_mean, bias_mean, variance) -> Conditional:
    """A Conditional N(weight_mean . h + bias_mean, variance) over one latent."""
    weight = np.stack([weight_mean, np.zeros_like(weight_mean)])
    return Conditional(linear(weight, [bias_mean, np.log(variance)]), DiagonalGaussian(1))


def generative_parts():
    prior_z1 = gaussian(np.array([A]), C, S1**2)
    decoder = linear(W[:, None], B)
    likelihood = GaussianPixels(jnp.asarray(2 * np.log(SIGMA), jnp.float32), fixed=True)
    return prior_z1, decoder, likelihood, StandardNormal(1)


def exact_top_down() -> TopDownVAE:
    """q(z_2 | x) q(z_1 | x, z_2) equal to the true posterior: features d_1 = d_2 = x, state t_1 = z_2."""
    prior_z1, decoder, likelihood, prior = generative_parts()
    coef2, off2, var2 = conditional([2, 3, 4], 1)
    coef1, off1, var1 = conditional([2, 3, 4, 1], 0)  # on (x, z_2)
    top = gaussian(coef2, off2, var2)
    identity = eqx.nn.Identity()
    block = TopDownBlock(identity, Conditional(prior_z1.network, DiagonalGaussian(1)), gaussian(coef1, off1, var1))
    return TopDownVAE(LadderEncoder([identity, identity]), top, [block], decoder, likelihood, prior, (1, 1))


def exact_bottom_up() -> BottomUpVAE:
    """q(z_1 | x) q(z_2 | z_1) equal to the true posterior (z_2 and x are independent given z_1)."""
    prior_z1, decoder, likelihood, prior = generative_parts()
    coef1, off1, var1 = conditional([2, 3, 4], 0)
    coef2, off2, var2 = conditional([0], 1)
    encoder = linear(np.stack([coef1, np.zeros(3)]), [off1, np.log(var1)])
    up = gaussian(coef2, off2, var2)
    return BottomUpVAE(encoder, DiagonalGaussian(1), [up], [prior_z1], decoder, likelihood, prior, (1, 1))


def log_px() -> np.ndarray:
    mean, cov = joint()
    return stats.multivariate_normal(mean[2:], cov[2:, 2:]).logpdf(X)


MODELS = {"top-down": exact_top_down, "bottom-up": exact_bottom_up}


@pytest.mark.parametrize("inference", MODELS)
def test_exact_posterior_makes_every_weight_log_px(inference):
    """With q the true posterior, log w = log p(x, z) - log q(z|x) = log p(x) at every draw (scipy's
    Gaussian marginal): so L_K = log p(x), and the ELBO's 2000-draw estimate is log p(x) within 4 standard
    errors of its reconstruction term (the KL is in closed form per layer, or exact at the draws)."""
    vae, x = MODELS[inference](), jnp.asarray(X, jnp.float32)
    log_w = log_importance_weights(vae, x, key=jax.random.PRNGKey(1), samples=200)
    np.testing.assert_allclose(log_w, np.broadcast_to(log_px(), log_w.shape), atol=2e-4)
    np.testing.assert_allclose(log_likelihood(vae, x, jax.random.PRNGKey(2), samples=100), log_px(), atol=2e-4)
    draws = vae.encode(x).sample(jax.random.PRNGKey(3), (2000,))
    se = np.asarray(vae.decode(draws).log_prob(x), np.float64).std(axis=0) / np.sqrt(2000)  # of the ELBO's mean
    estimate = elbo(vae, x, key=jax.random.PRNGKey(4), samples=2000).elbo
    np.testing.assert_array_less(np.abs(estimate - log_px()), 4 * se + 1e-4)


def test_per_layer_kls_sum_to_the_closed_form_kl_of_the_joint():
    """Top-down: the closed-form KL of each layer at the draw of the layer above, averaged over draws,
    sums to KL(q(z_1, z_2 | x) || p(z_1, z_2)) between the two 2-D Gaussians (closed form, float64),
    within 4 standard errors of the 20000-draw mean."""
    vae, x = exact_top_down(), jnp.asarray(X, jnp.float32)
    q = vae.encode(x)
    z = q.sample(jax.random.PRNGKey(4), (20000,))
    per_draw = np.asarray(jnp.sum(q.kl_layers(vae.prior(), z), axis=-1), np.float64)  # (S, n)
    mean, cov = joint()
    prior_mean, prior_cov = mean[:2], cov[:2, :2]
    for i, xi in enumerate(X):
        s_zx = cov[:2, 2:]
        post_cov = prior_cov - s_zx @ np.linalg.solve(cov[2:, 2:], s_zx.T)
        post_mean = prior_mean + s_zx @ np.linalg.solve(cov[2:, 2:], xi - mean[2:])
        inv = np.linalg.inv(prior_cov)
        diff = prior_mean - post_mean
        kl = 0.5 * (
            np.trace(inv @ post_cov)
            + diff @ inv @ diff
            - 2
            + np.log(np.linalg.det(prior_cov) / np.linalg.det(post_cov))
        )
        se = per_draw[:, i].std() / np.sqrt(len(per_draw))
        assert abs(per_draw[:, i].mean() - kl) < 4 * se + 1e-4


@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
def test_each_layers_kl_against_monte_carlo_log_q_minus_log_p(inference):
    """For a random two-layer model, each layer's KL term (closed form given the draws where defined)
    has the expectation of log q(z_l | ...) - log p(z_l | z_{l+1}) at the same draws: 20000 draws,
    within 4 standard errors of their difference."""
    config = ModelConfig((5,), latent_dim=5, layers=(3, 2), hidden=(8,), inference=inference)
    vae = build_model(config, key=jax.random.PRNGKey(5))
    x = jax.random.uniform(jax.random.PRNGKey(6), (2, 5))
    q, p = vae.encode(x), vae.prior()
    z = q.sample(jax.random.PRNGKey(7), (20000,))
    terms = np.asarray(q.kl_layers(p, z), np.float64)  # (S, n, 2)
    z1, z2 = q.layers(z)
    if inference == "top-down":
        q1, q2 = vae.blocks[0].posterior(q.features[0], z2), vae.top(q.features[1])
    else:
        q1, q2 = q.first, vae.up[0](z1)
    mc = [
        q1.log_prob(z1) - vae.blocks[0].prior(z2).log_prob(z1)
        if inference == "top-down"
        else q1.log_prob(z1) - vae.down[0](z2).log_prob(z1),
        q2.log_prob(z2) - p.top.log_prob(z2),
    ]
    for l in range(2):
        diff = terms[..., l] - np.asarray(mc[l], np.float64)
        se = diff.std(axis=0) / np.sqrt(len(diff))
        assert np.all(np.abs(diff.mean(axis=0)) < 4 * se + 1e-4), (l, diff.mean(axis=0), se)
    # the per-layer terms sum to the Monte Carlo KL of the whole: log q(z|x) - log p(z)
    total = np.asarray(q.log_prob(z) - p.log_prob(z), np.float64) - terms.sum(-1)
    assert np.all(np.abs(total.mean(0)) < 4 * total.std(0) / np.sqrt(len(total)) + 1e-4)


@pytest.mark.parametrize("inference", MODELS)
def test_quadrature_over_two_one_dimensional_layers_is_the_closed_form(inference):
    """`--latent-dim 1,1`: the quadrature integrates over both layers; the linear-Gaussian model's
    log p(x) is scipy's, to 0.01 nats."""
    vae = MODELS[inference]()
    np.testing.assert_allclose(log_likelihood_quadrature(vae, jnp.asarray(X, jnp.float32)), log_px(), atol=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
def test_quadrature_of_a_trained_like_model_against_a_dense_float64_grid(inference):
    """A random tanh model with layers (1, 1) and a Bernoulli decoder: the quadrature against the
    log-sum-exp in float64 over a dense 1201 x 1201 grid on [-12, 12]^2 of log p(x|z_1) + log p(z_1|z_2)
    + log p(z_2), each density evaluated by the model; 0.01 nats."""
    config = ModelConfig((4,), latent_dim=2, layers=(1, 1), hidden=(6,), inference=inference)
    vae = build_model(config, key=jax.random.PRNGKey(8))
    x = (jax.random.uniform(jax.random.PRNGKey(9), (3, 4)) > 0.5).astype(jnp.float32)
    t = np.linspace(-12, 12, 1201)
    grid = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    z = jnp.asarray(grid, jnp.float32)
    log_joint = np.stack([np.asarray(vae.decode(z).log_prob(xi) + vae.prior().log_prob(z), np.float64) for xi in x])
    dense = logsumexp(log_joint, axis=1) + 2 * np.log(t[1] - t[0])
    np.testing.assert_allclose(log_likelihood_quadrature(vae, x), dense, atol=0.01)


@pytest.mark.parametrize("inference", MODELS)
def test_means_below_the_top_layer_are_the_conditional_means(inference):
    """The figures' z from z_2 alone: z_1 = E[z_1 | z_2] = A z_2 + C in the linear-Gaussian model."""
    z2 = jnp.array([[-1.0], [0.0], [2.5]])
    z = MODELS[inference]().prior().means_below(z2)
    np.testing.assert_allclose(z, np.concatenate([A * np.asarray(z2) + C, z2], axis=1), atol=1e-6)


def test_ancestral_samples_have_the_prior_moments():
    """p(z_2) p(z_1 | z_2) drawn from the top: mean (C, 0), covariance [[A^2 + S1^2, A], [A, 1]], each
    within 5 standard errors of 40000 draws."""
    z = np.asarray(exact_top_down().prior().sample(jax.random.PRNGKey(10), (40000,)), np.float64)
    mean, cov = joint()
    n = len(z)
    np.testing.assert_array_less(np.abs(z.mean(0) - mean[:2]), 5 * np.sqrt(np.diag(cov[:2, :2]) / n))
    sample_cov = np.cov(z.T)
    se = np.sqrt((cov[:2, :2] ** 2 + np.outer(np.diag(cov[:2, :2]), np.diag(cov[:2, :2]))) / n)
    np.testing.assert_array_less(np.abs(sample_cov - cov[:2, :2]), 5 * se)


@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
def test_report_gives_every_layers_kl_and_active_units(inference):
    """`evaluate`'s numbers per layer: KLs summing to the report's KL (both 100-draw estimates, so
    within their Monte Carlo error), active units per layer summing to the total."""
    config = ModelConfig((5,), latent_dim=5, layers=(3, 2), hidden=(8,), inference=inference)
    vae = build_model(config, key=jax.random.PRNGKey(11))
    x = jax.random.uniform(jax.random.PRNGKey(12), (40, 5))
    out = report(vae, x, jax.random.PRNGKey(13), iw_samples=50)
    assert len(out["kl_per_layer"]) == 2 and len(out["active_units_per_layer"]) == 2
    assert sum(out["active_units_per_layer"]) == out["active_units"]
    assert sum(out["kl_per_layer"]) == pytest.approx(out["kl"], abs=0.05 * abs(out["kl"]) + 0.05)
    assert out["elbo"] <= out["log_likelihood"] + 0.05


@pytest.mark.slow
def test_q_star_of_a_bottom_up_model_is_the_true_posterior():
    """q* of a bottom-up model: the per-example parameters of q(z_1 | x), with the model's own q(z_2 | z_1).
    With q(z_2 | z_1) the true p(z_2 | z_1, x) and an encoder that is off by nats, the fit must find the true
    p(z_1 | x) (scipy): its mean within 0.1 of its sd and its variance within 15%, and then ELBO(q*) is log p(x)
    within 0.01 nats plus 4 Monte Carlo standard errors."""
    vae = exact_bottom_up()
    vae = eqx.tree_at(lambda m: m.encoder.bias, vae, vae.encoder.bias + jnp.array([1.5, 1.0]))  # a wrong encoder
    x = jnp.asarray(X, jnp.float32)
    assert np.min(log_px() - np.asarray(elbo(vae, x, key=jax.random.PRNGKey(5), samples=2000).elbo)) > 0.5
    params, _ = fit_posteriors(vae, x, jax.random.PRNGKey(6))
    coef, offset, var = conditional([2, 3, 4], 0)
    q_star = vae.posterior_at(params).first
    np.testing.assert_array_less(np.abs(np.asarray(q_star.mean[:, 0]) - (X @ coef + offset)), 0.1 * np.sqrt(var))
    np.testing.assert_allclose(np.exp(np.asarray(q_star.log_var[:, 0])), var, rtol=0.15)
    mc = paired_elbos(vae, x, params, jax.random.PRNGKey(7))
    error = np.abs(np.asarray(mc["elbo_optimized"]) - log_px())
    np.testing.assert_array_less(error, 0.01 + 4 * mc["elbo_optimized_se"])


def test_deep_configs_that_cannot_work_are_refused():
    with pytest.raises(InputError, match="summing to latent_dim"):
        ModelConfig((5,), latent_dim=4, layers=(3, 2))
    with pytest.raises(InputError, match="top-down"):
        ModelConfig((5,), latent_dim=5, layers=(3, 2), inference="bottom-up", prior="vamp:3")
    with pytest.raises(InputError, match="diagonal"):
        ModelConfig((5,), latent_dim=5, layers=(3, 2), posterior="iaf:1")
    with pytest.raises(InputError, match="mlp or gated"):
        ModelConfig((4, 4), latent_dim=5, layers=(3, 2), architecture="conv")


def test_decoder_input_all_sees_every_layer():
    """`--decoder-input all` (the 2-level HVAE's p(x | z_1, z_2)): the decoder's input is every layer, so
    changing z_2 alone changes p(x|z); with `bottom` it does not."""
    z = jnp.array([[0.3, -0.2, 0.5, 1.0, -1.0], [0.3, -0.2, 0.5, -2.0, 2.0]])  # the same z_1, two z_2
    for seen, changes in [("all", True), ("bottom", False)]:
        config = ModelConfig((4,), latent_dim=5, layers=(3, 2), hidden=(6,), decoder_input=seen)
        logits = build_model(config, key=jax.random.PRNGKey(14)).decode(z).logits
        assert bool(jnp.any(jnp.abs(logits[0] - logits[1]) > 1e-4)) == changes
    with pytest.raises(InputError, match="decoder_input all"):
        ModelConfig((4,), latent_dim=2, decoder_input="all")


DEEP_ARGS = ["--latent-dim", "2,1", "--hidden", "8", "--epochs", "6", "--keep-checkpoints", "6", "--quiet"]


@pytest.mark.slow
def test_a_deep_run_killed_then_resumed_is_bit_identical(tmp_path):
    """A top-down model's run killed (SIGKILL) after its 2nd checkpoint, resumed: the same metrics (but
    the wall-clock fields) and a byte-identical final checkpoint as the run never interrupted."""
    import subprocess
    import sys
    import time

    from conftest import spawn
    from jaxvae.cli import main
    from jaxvae.runs import read_metrics

    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main(["train", "--out", str(reference), *DEEP_ARGS]) == 0
    command = [sys.executable, "-m", "jaxvae.cli", "train", "--out", str(run), *DEEP_ARGS]
    with spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        while not (run / "checkpoints" / "epoch-00002.eqx").exists():
            assert process.poll() is None, process.communicate()
            time.sleep(0.005)
        process.kill()
        process.wait()
    assert len(read_metrics(run)) < 6, "the kill must land mid-training"
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0
    timing = ("seconds", "examples_per_second")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(read_metrics(run)) == strip(read_metrics(reference))
    assert "test_kl_layer_2" in read_metrics(run)[-1]
    name = "checkpoints/epoch-00006.eqx"
    assert (run / name).read_bytes() == (reference / name).read_bytes()


def documented_deep_model() -> str:
    """The Python block of the Models page's section "A layer's network of a deep model"."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    section = page.split("### A layer's network of a deep model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_a_users_per_layer_network_through_a_model_file(tmp_path):
    """The Models page's `--model FILE.py:build` replacing one layer's network of a deep model: trained,
    evaluated and loaded with the user's module in place."""
    import json

    import jaxvae
    from jaxvae.cli import main

    (tmp_path / "mine.py").write_text(documented_deep_model())
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--model", f"{tmp_path / 'mine.py'}:build", *DEEP_ARGS[:4], "--epochs", "2"]
    assert main([*args, "--quiet"]) == 0
    vae = jaxvae.load(run)
    assert isinstance(vae.blocks[0].state, eqx.nn.MLP) and vae.blocks[0].state.depth == 2
    assert json.loads((run / "config.json").read_text())["model"]["layers"] == [2, 1]
    assert main(["evaluate", str(run), "--iw-samples", "20", "--n", "10", "--json"]) == 0
    assert main(["evaluate", str(run), "--n", "3", "--gaps"]) == 2  # a top-down q has no per-example parameters


@pytest.mark.slow
def test_evaluate_gaps_of_a_bottom_up_run(tmp_path, capsys):
    """`evaluate --gaps` on a bottom-up `--latent-dim 1,1` run: log p(x) by the quadrature over both layers,
    ELBO(q) <= ELBO(q*) <= log p(x) in the mean, each within 4 of its Monte Carlo standard errors."""
    import json

    from jaxvae.cli import main

    run = tmp_path / "run"
    args = ["--latent-dim", "1,1", "--inference", "bottom-up", "--hidden", "16", "--epochs", "1", "--quiet"]
    assert main(["train", "--out", str(run), *args]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--n", "8", "--iw-samples", "100", "--gaps", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["gaps_log_px"] == "quadrature"
    assert got["amortization_gap"] > -4 * got["amortization_gap_se"]
    assert got["approximation_gap"] > -4 * got["approximation_gap_se"]
