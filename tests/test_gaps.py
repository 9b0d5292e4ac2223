"""Inference gaps (Cremer et al. 2018): q* against closed forms on the linear-Gaussian model, the ordering
ELBO(q) <= ELBO(q*) <= log p(x) on a trained 2-D model, and `evaluate --gaps` from the command line."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import linear_gaussian_truth, linear_gaussian_vae
from jaxvae.cli import main
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.gaps import fit_posteriors, paired_elbos
from jaxvae.train import fit


def test_q_star_is_the_true_posterior_of_the_linear_gaussian_model():
    """There the exact posterior N(A (x - b), C) is a diagonal Gaussian, so q* is it and ELBO(q*) = log p(x).

    Started from a wrong encoder (a gap of nats), the fit must find the posterior's mean within 0.1 of
    its sd, its variance within 15% (a KL of 0.01 nats), and ELBO(q*) (closed form at the fitted parameters) within 0.01
    nats of log p(x) (scipy); the 1000-draw Monte Carlo ELBO(q*) within 4 of its standard errors of that.
    """
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    x = np.random.default_rng(3).normal(size=(6, 5)) * 1.5 + b
    log_px, elbo_q = linear_gaussian_truth(vae, W, b, sigma, x)
    assert np.min(log_px - elbo_q) > 1.0  # the encoder is far off, so the fit has work to do
    params, steps = fit_posteriors(vae, jnp.asarray(x, jnp.float32), jax.random.PRNGKey(0))
    C = np.linalg.inv(np.eye(2) + W.T @ W / sigma**2)  # diagonal: W has orthogonal columns
    mean, var = (x - b) @ (C @ W.T / sigma**2).T, np.diag(C)
    q_star = vae.posterior(params)
    assert np.all(np.abs(np.asarray(q_star.mean) - mean) < 0.1 * np.sqrt(var))
    np.testing.assert_allclose(np.exp(np.asarray(q_star.log_var)), np.broadcast_to(var, mean.shape), rtol=0.15)
    _, elbo_star = linear_gaussian_truth(vae, W, b, sigma, x, q=q_star)
    np.testing.assert_array_less(log_px - elbo_star, 0.01)
    assert np.all(np.asarray(steps) < 5000)  # stopped by the rule, not by the cap
    mc = paired_elbos(vae, jnp.asarray(x, jnp.float32), params, jax.random.PRNGKey(1))
    np.testing.assert_array_less(np.abs(np.asarray(mc["elbo_optimized"]) - elbo_star), 4 * mc["elbo_optimized_se"])
    np.testing.assert_array_less(np.abs(np.asarray(mc["elbo"]) - elbo_q), 4 * mc["elbo_se"])


@pytest.fixture(scope="module")
def trained_2d(tmp_path_factory):
    """The seed's model at 32 hidden units, 2-D, trained 5 epochs on digits: its run folder."""
    data = load_dataset("digits")
    run = tmp_path_factory.mktemp("gaps") / "run"
    config = RunConfig(ModelConfig(data_shape=data.shape, hidden=(32,)), TrainConfig(dataset="digits", epochs=5))
    fit(config, data, run, progress=False)
    return run


@pytest.mark.slow
def test_cli_gaps_on_a_trained_model(trained_2d, capsys, tmp_path):
    """evaluate --gaps --json --per-example: the keys, the file, the figure; and per example, within 4 Monte
    Carlo standard errors (ELBO(q) and ELBO(q*) share their draws), ELBO(q) <= ELBO(q*) <= log p(x)
    (quadrature); q* a proposal at least as good as q on average; bad --per-example paths exit 2."""
    run = trained_2d
    common = ["evaluate", str(run), "--n", "30", "--iw-samples", "100", "--gaps"]
    capsys.readouterr()
    assert main([*common, "--json", "--per-example", str(tmp_path / "gaps.npz")]) == 0
    got = json.loads(capsys.readouterr().out)
    keys = {"elbo_optimized", "amortization_gap", "approximation_gap", "log_likelihood_optimized", "gaps_log_px"}
    assert keys <= set(got) and got["gaps_log_px"] == "quadrature"
    assert got["approximation_gap"] == pytest.approx(got["log_likelihood_quadrature"] - got["elbo_optimized"], abs=1e-4)
    with np.load(tmp_path / "gaps.npz") as f:
        gaps = dict(f)
    assert gaps["elbo_optimized"].shape == (30,) and gaps["y"].shape == (30,)
    assert np.mean(gaps["amortization_gap"]) == pytest.approx(got["amortization_gap"], abs=1e-5)
    assert np.mean(gaps["log_likelihood"]) == pytest.approx(got["log_likelihood"], abs=1e-4)  # the report's L_K
    np.testing.assert_allclose(gaps["log_px"], gaps["log_likelihood_quadrature"])
    np.testing.assert_allclose(gaps["amortization_gap"], gaps["elbo_optimized"] - gaps["elbo"], atol=1e-4)
    assert np.all(gaps["amortization_gap"] > -4 * gaps["amortization_gap_se"])
    assert np.all(gaps["elbo_optimized"] <= gaps["log_px"] + 4 * gaps["elbo_optimized_se"])
    assert np.mean(gaps["log_likelihood_optimized"]) >= np.mean(gaps["log_likelihood"]) - 0.01
    assert (run / "figures" / "gaps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in (["--per-example", str(tmp_path / "gaps.txt")], ["--per-example", str(tmp_path / "no" / "g.npz")]):
        assert main([*common, *bad]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["evaluate", str(run), "--per-example", str(tmp_path / "g.npz")]) == 2
    assert "--gaps" in capsys.readouterr().err


@pytest.mark.slow
def test_plot_draws_the_gaps_figure_again_and_removes_it_once_the_model_trained_on(trained_2d, capsys, tmp_path):
    """evaluate --gaps writes gaps.png and its values; plot draws it again (the same pixels) and names it;
    after one more epoch of training the figure would show an older model, so training removes it."""
    import shutil

    from PIL import Image

    run = shutil.copytree(trained_2d, tmp_path / "run")
    assert main(["evaluate", str(run), "--n", "10", "--iw-samples", "20", "--gaps"]) == 0
    figure = run / "figures" / "gaps.png"
    pixels = np.asarray(Image.open(figure))
    figure.unlink()
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    assert "gaps.png" in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(Image.open(figure)), pixels)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "6", "--quiet"]) == 0
    assert not figure.exists() and not (run / "figures" / "gaps.npz").exists()
    assert "gaps.png" not in capsys.readouterr().out


def test_plot_says_it_removed_a_stale_gaps_figure(trained_2d, capsys, tmp_path):
    import shutil

    run = shutil.copytree(trained_2d, tmp_path / "run")
    (run / "figures" / "gaps.npz").unlink(missing_ok=True)  # as another test's evaluate --gaps may have left
    (run / "figures" / "gaps.png").write_bytes(b"drawn for a model trained further back, its values lost")
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    out = capsys.readouterr().out
    assert "gaps.png removed: it showed an older model (jaxvae evaluate --gaps draws it again)" in out
    assert not (run / "figures" / "gaps.png").exists()
