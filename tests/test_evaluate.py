"""Evaluation against independent references: closed forms, scipy's dblquad, dense global grids."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import logsumexp

import jaxvae
from conftest import linear_gaussian_truth, linear_gaussian_vae
from jaxvae.builder import build_model
from jaxvae.cli import main
from jaxvae.config import ModelConfig
from jaxvae.data import load_dataset
from jaxvae.evaluate import (
    active_units,
    kl_per_dimension,
    log_likelihood,
    log_likelihood_quadrature,
    log_likelihoods,
    mean_bounds,
    report,
)
from jaxvae.model import VAE
from jaxvae.objectives import Ciwae, DReG, Elbo, Iwae, Miwae, Piwae

X = np.random.default_rng(3).normal(size=(4, 5)) * 1.5


def small_vae(likelihood: str, d: int = 3, hidden: int = 4, k: int = 2, scale: float = 1.0, seed: int = 0) -> VAE:
    """A random VAE; `scale` multiplies the decoder's output layer, making p(x|z) sharper."""
    vae = build_model(
        ModelConfig(data_shape=(d,), latent_dim=k, hidden=(hidden,), likelihood=likelihood), key=_key(seed)
    )
    return eqx.tree_at(lambda m: m.decoder.layers[-1].weight, vae, scale * vae.decoder.layers[-1].weight)


def _key(seed):
    return jax.random.PRNGKey(seed)


def test_iw_bound_with_one_sample_is_the_elbo_in_expectation():
    """Each example repeated 3,000 times with K = 1: the mean of L_1 vs the closed-form ELBO, 5 standard errors."""
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    _, closed_elbo = linear_gaussian_truth(vae, W, b, sigma, X)
    reps = 3000
    x = jnp.asarray(np.repeat(X, reps, axis=0), jnp.float32)
    draws = np.asarray(log_likelihood(vae, x, _key(0), samples=1, batch=500), np.float64).reshape(len(X), reps)
    stderr = draws.std(1) / np.sqrt(reps)
    assert np.all(np.abs(draws.mean(1) - closed_elbo) < 5 * stderr)


def test_iw_bound_grows_with_k_towards_log_px():
    """E[L_1] < E[L_5] < E[L_50] < log p(x) (closed form); K = 50 in chunks of 7, so the last chunk is short."""
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    log_px, _ = linear_gaussian_truth(vae, W, b, sigma, X)
    reps = 1000
    x = jnp.asarray(np.repeat(X, reps, axis=0), jnp.float32)
    means = [
        np.asarray(log_likelihood(vae, x, _key(K), samples=K, chunk=7, batch=500)).reshape(len(X), reps).mean(1)
        for K in (1, 5, 50)
    ]
    assert np.all(means[0] < means[1]) and np.all(means[1] < means[2]) and np.all(means[2] < log_px)


def test_iw_bound_is_exact_for_the_exact_posterior():
    """With q(z|x) = p(z|x) every weight p(x, z) / q(z|x) equals p(x): L_K = log p(x) for every draw."""
    vae, W, b, sigma = linear_gaussian_vae()
    log_px, _ = linear_gaussian_truth(vae, W, b, sigma, X)
    got = log_likelihood(vae, jnp.asarray(X, jnp.float32), _key(1), samples=10, chunk=3, batch=3)
    np.testing.assert_allclose(got, log_px, atol=2e-4)


@pytest.mark.slow
def test_iw_value_of_an_example_does_not_depend_on_its_batch():
    vae = small_vae("bernoulli", d=6)
    x = jnp.asarray(np.random.default_rng(0).random((7, 6)) < 0.5, jnp.float32)
    whole = log_likelihood(vae, x, _key(2), samples=30, chunk=8, batch=3)
    np.testing.assert_allclose(log_likelihood(vae, x, _key(2), samples=30, chunk=8, batch=7), whole, rtol=1e-6)
    assert not np.allclose(log_likelihood(vae, x, _key(3), samples=30, chunk=8), whole)


def test_log_likelihood_of_a_conv_model_on_the_host_is_the_compiled_one():
    """A convolutional model on the CPU evaluates L_K as a loop on the host over one compiled chunk of a
    batch (`looping.ON_HOST`): the compiled loop's values to float tolerance, with a short last chunk
    (K = 7 in chunks of 3), a padded last batch (5 examples in batches of 2), and with posterior parameters
    given in place of the encoder's."""
    from jaxvae.looping import COMPILED, ON_HOST, for_model

    config = ModelConfig(data_shape=(8, 8), latent_dim=3, hidden=(4, 8), architecture="conv", likelihood="bernoulli")
    vae = build_model(config, key=_key(0))
    assert for_model(vae) is (ON_HOST if jax.default_backend() == "cpu" else COMPILED)
    x = jnp.asarray(np.random.default_rng(0).random((5, 64)) < 0.4, jnp.float32)
    params = jax.vmap(vae.encoder)(x) + 0.3  # another posterior than the encoder's
    hosts = []
    for p in (None, params):
        hosts.append(log_likelihood(vae, x, _key(1), samples=7, chunk=3, batch=2, params=p))
        compiled = log_likelihood(vae, x, _key(1), samples=7, chunk=3, batch=2, params=p, loop=COMPILED)
        np.testing.assert_allclose(hosts[-1], compiled, rtol=1e-5)
    assert np.all(np.abs(hosts[0] - hosts[1]) > 1e-3)  # the parameters reach the host loop's proposal


def test_means_of_a_conv_model_on_the_host_are_the_compiled_ones(monkeypatch):
    """`mean_elbo` and `mean_bounds` of a convolutional model on the CPU loop on the host over their compiled
    chunk: the values of the compiled loop (`looping.for_model` made `COMPILED`), to float tolerance, over
    5 examples in chunks of 2 (the last one padded)."""
    from jaxvae import evaluate, looping

    config = ModelConfig(data_shape=(8, 8), latent_dim=3, hidden=(4, 8), architecture="conv", likelihood="bernoulli")
    vae = build_model(config, key=_key(0))
    assert looping.for_model(vae) is (looping.ON_HOST if jax.default_backend() == "cpu" else looping.COMPILED)
    x = jnp.asarray(np.random.default_rng(0).random((5, 64)) < 0.4, jnp.float32)

    def means():
        elbo_terms = evaluate.mean_elbo(vae, x, _key(2), samples=2, chunk=2)
        bounds = evaluate.mean_bounds(vae, Iwae(4, DReG()), x, _key(3), chunk=2)
        return {f"mean_elbo {k}": v for k, v in elbo_terms.items()} | {f"mean_bounds {k}": v for k, v in bounds.items()}

    host = means()
    monkeypatch.setattr(looping, "for_model", lambda model: looping.COMPILED)
    compiled = means()
    names = {"mean_elbo elbo", "mean_elbo reconstruction", "mean_elbo kl", "mean_bounds elbo", "mean_bounds iwae_bound"}
    assert set(host) == set(compiled) == names
    for name in compiled:
        np.testing.assert_allclose(host[name], compiled[name], rtol=1e-5)


def test_mean_bounds_are_log_px_for_the_exact_posterior():
    """With q(z|x) = p(z|x) every log weight is log p(x): each bound every importance-weighted objective
    reports is the closed form's log p(x), and so are their means over 4 examples in chunks of 3 (the
    second chunk padded with weight 0)."""
    vae, W, b, sigma = linear_gaussian_vae()
    log_px, _ = linear_gaussian_truth(vae, W, b, sigma, X)
    for objective in (Iwae(5, DReG()), Miwae(2, 3), Piwae(2, 3), Ciwae(0.3, 4)):
        means = mean_bounds(vae, objective, jnp.asarray(X, jnp.float32), _key(2), chunk=3)
        assert {"elbo", "iwae_bound"} <= set(means)
        for value in means.values():
            np.testing.assert_allclose(value, log_px.mean(), atol=2e-4)


def test_mean_bounds_of_one_draw_are_the_elbo_in_expectation():
    """An approximate posterior, each of 4 examples repeated 2,000 times: the mean of the ELBO objective's
    reported ELBO and of L_1 (IWAE, K = 1) against the closed-form mean ELBO, within 5 standard errors
    (estimated from L_1's draws, `log_likelihood`); L_20 lies above it and below the mean log p(x)."""
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    log_px, closed_elbo = linear_gaussian_truth(vae, W, b, sigma, X)
    x = jnp.asarray(np.repeat(X, 2000, axis=0), jnp.float32)
    draws = np.asarray(log_likelihood(vae, x, _key(4), samples=1, batch=500), np.float64)
    se = draws.std() / np.sqrt(len(draws))
    assert abs(float(mean_bounds(vae, Elbo(), x, _key(5))["elbo"]) - closed_elbo.mean()) < 5 * se
    assert abs(float(mean_bounds(vae, Iwae(1), x, _key(6))["iwae_bound"]) - closed_elbo.mean()) < 5 * se
    l_20 = float(mean_bounds(vae, Iwae(20), x, _key(7))["iwae_bound"])
    assert closed_elbo.mean() + 5 * se < l_20 < log_px.mean()


@pytest.mark.slow
def test_iw_bound_converges_to_quadrature_on_a_2d_model():
    """A sharp 2-D Bernoulli model with a poor encoder: E[log p(x) - L_K] shrinks with K, to < 0.05 nats at 5000.

    The expectations at K = 1 and 50 are means over 300 draws per example (each example repeated)."""
    vae = small_vae("bernoulli", d=12, hidden=8, scale=3.0)
    x = jnp.asarray(np.random.default_rng(1).random((6, 12)) < 0.5, jnp.float32)
    exact = np.asarray(log_likelihood_quadrature(vae, x), np.float64)
    repeated = jnp.repeat(x, 300, axis=0)
    gaps = [
        float(np.mean(exact[:, None] - np.asarray(log_likelihood(vae, repeated, _key(K), samples=K)).reshape(6, 300)))
        for K in (1, 50)
    ]
    gaps.append(float(np.mean(exact - np.asarray(log_likelihood(vae, x, _key(0), samples=5000)))))
    assert gaps[0] > gaps[1] > abs(gaps[2]) and gaps[0] > 0.5, gaps  # a real gap at K = 1, so the test can tell
    assert abs(gaps[2]) < 0.05, gaps


@pytest.mark.parametrize("k", [1, 2])
def test_quadrature_matches_the_linear_gaussian_closed_form(k):
    """log p(x) = log N(x | b, W W^T + sigma^2 I) (scipy), with a poor encoder so the grid cannot rely on it."""
    vae, W, b, sigma = linear_gaussian_vae(k=k, exact_posterior=False)
    log_px, _ = linear_gaussian_truth(vae, W, b, sigma, X)
    np.testing.assert_allclose(log_likelihood_quadrature(vae, jnp.asarray(X, jnp.float32)), log_px, atol=1e-3)


def _numpy_log_likelihood(vae: VAE, likelihood: str):
    """log p(x|z) of `small_vae` written again in float64 NumPy from its weights (tanh MLP, one hidden layer)."""
    w1, b1 = (np.asarray(a, np.float64) for a in (vae.decoder.layers[0].weight, vae.decoder.layers[0].bias))
    w2, b2 = (np.asarray(a, np.float64) for a in (vae.decoder.layers[1].weight, vae.decoder.layers[1].bias))

    def log_lik(z, x):
        logits = w2 @ np.tanh(w1 @ z + b1) + b2
        per_pixel = x * logits - np.logaddexp(0, logits)
        if likelihood == "continuous-bernoulli":  # normalizer C(l) = l / tanh(l / 2) (Loaiza-Ganem and Cunningham)
            per_pixel += np.log(logits / np.tanh(logits / 2))
        return per_pixel.sum()

    return log_lik


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli"])
def test_quadrature_matches_scipy_dblquad(likelihood):
    """Adaptive Gauss-Kronrod (scipy.integrate.dblquad) of p(x|z) N(z | 0, I) over [-9, 9]^2, float64."""
    vae = small_vae(likelihood, scale=2.0, seed=4)
    x = np.array([[1.0, 0.0, 1.0], [0.2, 0.9, 0.6]])
    log_lik = _numpy_log_likelihood(vae, likelihood)
    ours = np.asarray(log_likelihood_quadrature(vae, jnp.asarray(x, jnp.float32)))
    for xi, got in zip(x, ours, strict=True):
        shift = log_lik(np.zeros(2), xi)  # keeps the integrand near 1 so the absolute tolerance means something

        def f(z2, z1, xi=xi, shift=shift):
            z = np.array([z1, z2])
            return np.exp(log_lik(z, xi) - shift - 0.5 * z @ z) / (2 * np.pi)

        value, _ = integrate.dblquad(f, -9, 9, -9, 9, epsabs=1e-10, epsrel=1e-9)
        np.testing.assert_allclose(got, np.log(value) + shift, atol=1e-4)


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "gaussian"])
def test_quadrature_grid_is_converged(likelihood):
    """Doubling both grids' resolution changes no example's log p(x) by 0.01 nats or more (a sharp model)."""
    vae = small_vae(likelihood, d=20, hidden=16, scale=4.0, seed=5)
    x = jnp.asarray(np.random.default_rng(2).random((5, 20)), jnp.float32)
    default = log_likelihood_quadrature(vae, x)
    finer = log_likelihood_quadrature(vae, x, points=128, coarse=128)
    assert float(jnp.max(jnp.abs(finer - default))) < 0.01


@pytest.mark.parametrize("sigma, converged", [(0.7, True), (0.003, False)])
def test_report_states_how_far_the_quadrature_moves_on_finer_grids(sigma, converged):
    """Against the linear-Gaussian closed form: a smooth p(x, z) (sigma 0.7), where doubling both grids moves
    nothing by 0.01 nats and the quadrature is right; and a likelihood so sharp (sigma 0.003, a posterior
    std of about 0.002, far below the coarse step 0.19) that the default grids are 0.39 nats off. The
    reported change is what doubling both grids does to the first examples, so it flags the second."""
    vae, W, b, _ = linear_gaussian_vae(sigma=sigma)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2)) @ W.T + b + sigma * rng.normal(size=(6, 5))
    log_px, _ = linear_gaussian_truth(vae, W, b, sigma, x)
    got = report(vae, jnp.asarray(x, jnp.float32), _key(0), 10)
    error = abs(got["log_likelihood_quadrature"] - log_px.mean())
    assert got["quadrature_checked"] == 6
    if converged:
        assert got["quadrature_change"] < 0.01 and error < 0.01
    else:
        assert got["quadrature_change"] > 0.1 and error > 0.01


@pytest.mark.slow
def test_diagnostics_on_the_linear_gaussian_model():
    """KL per dimension and active units against the closed form from the encoder's own means and variances."""
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=True)
    x = np.random.default_rng(4).normal(size=(50, 5)) * 1.5
    q = vae.encode(jnp.asarray(x, jnp.float32))
    m, s2 = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_var, np.float64))
    expected = np.mean(0.5 * (s2 + m**2 - 1 - np.log(s2)), axis=0)
    np.testing.assert_allclose(kl_per_dimension(vae, jnp.asarray(x, jnp.float32), _key(0)), expected, rtol=1e-5)
    assert active_units(vae, jnp.asarray(x, jnp.float32)) == [2]
    dead = eqx.tree_at(lambda v: v.encoder.layers[0].weight, vae, vae.encoder.layers[0].weight.at[1].set(0.0))
    assert active_units(dead, jnp.asarray(x, jnp.float32)) == [1]  # z_2's mean no longer depends on x


def test_report_is_deterministic_and_consistent():
    vae, W, b, sigma = linear_gaussian_vae(exact_posterior=False)
    x = jnp.asarray(X, jnp.float32)
    first, again = report(vae, x, _key(0), 200), report(vae, x, _key(0), 200)
    assert first == again and report(vae, x, _key(1), 200) != first
    assert {"elbo", "log_likelihood", "kl", "reconstruction", "active_units", "n"} <= set(first)
    assert first["n"] == 4 and first["elbo"] < first["log_likelihood"] <= first["log_likelihood_quadrature"] + 0.05
    np.testing.assert_allclose(first["elbo"], first["reconstruction"] - first["kl"], rtol=1e-5)
    np.testing.assert_allclose(sum(first["kl_per_dim"]), first["kl"], rtol=1e-5)
    np.testing.assert_allclose(first["bits_per_dim"], -first["log_likelihood"] / (5 * np.log(2)), rtol=1e-6)
    per_example = np.asarray(log_likelihoods(vae, x, _key(0), 200)["log_likelihood"], np.float64)
    np.testing.assert_allclose(first["log_likelihood_se"], np.std(per_example, ddof=1) / 2, rtol=1e-5)  # n = 4
    assert report(vae, x[:1], _key(0), 200)["log_likelihood_se"] is None


@pytest.mark.slow
def test_progress_bars_count_the_examples_and_change_no_value(capsys):
    """With `progress`, L_K and the quadrature show a bar each on stderr and their values are those computed
    without; L_K in batches of 3 (two programs, the last batch padded) is L_K in one batch of 4."""
    vae, *_ = linear_gaussian_vae(exact_posterior=False)
    x = jnp.asarray(X, jnp.float32)
    capsys.readouterr()
    quiet = log_likelihoods(vae, x, _key(0), 20)
    assert capsys.readouterr().err == ""
    shown = log_likelihoods(vae, x, _key(0), 20, progress=True)
    err = capsys.readouterr().err
    for name in ("log_likelihood", "log_likelihood_quadrature"):
        np.testing.assert_array_equal(shown[name], quiet[name])
    assert "L_K, K = 20:" in err and "quadrature:" in err and "0/4 [" in err
    in_one = log_likelihood(vae, x, _key(1), samples=20, batch=4)
    np.testing.assert_allclose(log_likelihood(vae, x, _key(1), samples=20, batch=3), in_one, rtol=1e-6)


@pytest.mark.slow
def test_evaluate_shows_the_progress_of_each_long_computation_and_quiet_silences_it(tmp_path, capsys):
    """`jaxvae evaluate --gaps --gradient-snr` of a 2-D model: a bar on stderr for L_K, the quadrature, each
    step of the gaps and the SNR; with --quiet nothing on stderr, and the same report."""
    run = tmp_path / "run"
    options = ["--epochs", "1", "--latent-dim", "2", "--hidden", "8", "--quiet"]
    assert main(["train", "--dataset", "digits", "--out", str(run), *options]) == 0
    evaluate = ["evaluate", run, "--n", "4", "--iw-samples", "4", "--gaps", "--gradient-snr", "2", "--json"]
    code, shown, err = jaxvae_cli(capsys, *evaluate)
    assert code == 0, err
    bars = ("L_K, K = 4:", "quadrature:", "gaps: fitting q*:", "gaps: ELBO(q) and ELBO(q*):", "gradient SNR:")
    assert all(bar in err for bar in bars), err
    code, quiet, err = jaxvae_cli(capsys, *evaluate, "--quiet")
    assert code == 0 and err == ""
    assert json.loads(quiet) == json.loads(shown)


# The lead's acceptance check, at small and fast settings: a 2-D model trained on binarized digits, evaluated
# on held-out data from an .npz file against log p(x) computed here by a dense global grid.


def jaxvae_cli(capsys, *args) -> tuple[int, str, str]:
    """Run the `jaxvae` command in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A run trained with --binarize static on 1,600 digits (.npz), and 197 held-out binarized digits (.npz)."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("digits")
    images = load_digits().images.astype(np.float32) / 16.0
    np.savez(folder / "train.npz", x=images[:1600])
    held_out = (np.random.default_rng(7).random(images[1600:].shape) < images[1600:]).astype(np.float32)
    np.savez(folder / "held_out.npz", x=held_out)
    run = folder / "run"
    code = main(
        ["train", "--dataset", str(folder / "train.npz"), "--out", str(run), "--binarize", "static",
         "--hidden", "64", "--epochs", "20", "--quiet"]
    )  # fmt: skip
    assert code == 0
    return run, held_out.reshape(len(held_out), -1)


def _global_grid_log_px(vae: VAE, x: np.ndarray, step: float, bound: float = 6.0) -> np.ndarray:
    """Riemann sum of p(x|z) N(z | 0, I) on one fixed grid over [-bound, bound]^2, Bernoulli in float64 NumPy."""
    axis = np.arange(-bound, bound + step / 2, step)
    z = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    log_f = np.empty((len(x), len(z)))
    for s in range(0, len(z), 20000):
        logits = np.asarray(vae.decode(jnp.asarray(z[s : s + 20000], jnp.float32)).logits, np.float64)
        log_f[:, s : s + 20000] = x @ logits.T - np.logaddexp(0, logits).sum(1)
    log_f += -0.5 * np.sum(z**2, 1) - np.log(2 * np.pi)
    return logsumexp(log_f, axis=1) + 2 * np.log(step)


@pytest.mark.slow
def test_acceptance_held_out_digits_from_npz(digits_run, capsys):
    run, x = digits_run
    code, out, err = jaxvae_cli(
        capsys, "evaluate", run, "--dataset", run.parent / "held_out.npz", "--split", "all", "--json"
    )
    assert code == 0, err
    got = json.loads(out)
    vae = jaxvae.load(run)
    reference = _global_grid_log_px(vae, x, 0.03)
    # the reference is itself converged: doubling its step moves it by far less than the tolerances below
    assert np.max(np.abs(_global_grid_log_px(vae, x[:40], 0.06) - reference[:40])) < 0.005
    assert got["n"] == len(x)
    assert got["elbo"] < reference.mean()
    assert abs(got["log_likelihood"] - reference.mean()) < 0.15
    assert abs(got["log_likelihood_quadrature"] - reference.mean()) < 0.05


@pytest.mark.slow
def test_cli_evaluate_table_and_data_that_do_not_fit(digits_run, capsys, tmp_path):
    run, _ = digits_run
    code, out, _ = jaxvae_cli(capsys, "evaluate", run, "--iw-samples", "20")
    assert code == 0 and "ELBO" in out and "quadrature" in out and "nats" in out and "320 examples" in out
    code, out, _ = jaxvae_cli(capsys, "evaluate", run, "--iw-samples", "20", "--n", "7", "--json")
    assert code == 0 and json.loads(out)["n"] == 7
    np.savez(tmp_path / "wrong.npz", x=np.zeros((10, 5), np.float32))
    for args in (["--dataset", tmp_path / "wrong.npz"], ["--iw-samples", "0"], ["--dataset", tmp_path / "none.npz"]):
        code, _, err = jaxvae_cli(capsys, "evaluate", run, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    code, _, err = jaxvae_cli(capsys, "evaluate", tmp_path, "--json")
    assert code == 2 and "not a jaxvae run folder" in err


@pytest.mark.slow
def test_checkpoint_best_evaluates_the_model_of_best_eqx(tmp_path, capsys):
    """best.eqx replaced by epoch 1's checkpoint: `evaluate --checkpoint best` gives the numbers of a copy of
    the run whose latest checkpoint is epoch 1, and `jaxvae.load(run, checkpoint="best")` is that model.
    A run without best.eqx asked for it: exit 2, one line."""
    import shutil

    run, only_first = tmp_path / "run", tmp_path / "first"
    train = ["train", "--out", run, "--hidden", "16", "--epochs", "3", "--validation-fraction", "0.2", "--quiet"]
    assert jaxvae_cli(capsys, *train)[0] == 0
    checkpoints = run / "checkpoints"
    shutil.copy(checkpoints / "epoch-00001.eqx", checkpoints / "best.eqx")
    shutil.copytree(run, only_first)
    for name in ("best.eqx", "epoch-00002.eqx", "epoch-00003.eqx"):
        (only_first / "checkpoints" / name).unlink()
    evaluate = ["--iw-samples", "10", "--json"]
    code, best, err = jaxvae_cli(capsys, "evaluate", run, "--checkpoint", "best", *evaluate)
    assert code == 0, err
    best = json.loads(best)
    assert best.pop("checkpoint") == "best"
    first = json.loads(jaxvae_cli(capsys, "evaluate", only_first, *evaluate)[1])
    assert first.pop("checkpoint") == "latest" and best == first
    latest = json.loads(jaxvae_cli(capsys, "evaluate", run, *evaluate)[1])
    assert latest["elbo"] != best["elbo"]  # the latest checkpoint is epoch 3's
    loaded, first = jaxvae.load(run, checkpoint="best"), jaxvae.load(only_first)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(first), strict=True))
    code, _, err = jaxvae_cli(capsys, "evaluate", only_first, "--checkpoint", "best", *evaluate)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "best.eqx" in err, err


@pytest.mark.slow
def test_cli_sample_plot_encode(digits_run, capsys, tmp_path):
    run, x = digits_run
    code, _, err = jaxvae_cli(capsys, "sample", run, "-n", "9", "-o", tmp_path / "s.png", "--seed", "3")
    assert code == 0 and (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", err
    (run / "figures" / "interpolations.png").unlink()
    code, out, err = jaxvae_cli(capsys, "plot", run)
    assert code == 0 and "interpolations.png" in out and (run / "figures" / "interpolations.png").is_file(), err
    code, _, err = jaxvae_cli(
        capsys, "encode", run, "--dataset", run.parent / "held_out.npz", "--split", "all", "-o", tmp_path / "z.npz"
    )
    assert code == 0, err
    held_out = load_dataset(str(run.parent / "held_out.npz"))  # --split all: its train examples, then its test ones
    with np.load(tmp_path / "z.npz") as z:
        q = jaxvae.load(run).encode(jnp.asarray(np.concatenate([held_out.x_train, held_out.x_test])))
        np.testing.assert_allclose(z["mean"], q.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(z["std"], q.std, rtol=1e-5)
        assert "y" not in z
    code, _, err = jaxvae_cli(capsys, "encode", run, "-o", tmp_path / "z.txt")
    assert code == 2 and ".npz" in err
