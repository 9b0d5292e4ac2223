"""M1+M2 (Kingma et al. 2014): `encode --features` writes M1's features as a data set, `--binarize redraw`
draws each M2 input from M1's q(z1|x) at every step; the draws against their Gaussian by Monte Carlo, the
round trip against recomputations from the checkpoints, and the refusals."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_main
from jaxvae.binarization import Redraw


def test_redraw_draws_each_input_from_its_gaussian():
    """100,000 draws of rows [mean, std]: each input's sample mean within 5 standard errors (std / sqrt(n)) of
    its mean and its sample sd within 5 standard errors (std / sqrt(2 n)) of its std; std 0 gives the mean
    exactly; the step's key moves on."""
    mean, std = np.array([0.5, -2.0, 3.0], np.float32), np.array([1.0, 0.25, 0.0], np.float32)
    n = 100_000
    rows = jnp.tile(jnp.concatenate([jnp.asarray(mean), jnp.asarray(std)]), (n, 1))
    key = jax.random.key(0)
    key_left, draws = Redraw().in_step(key, rows)
    draws = np.asarray(draws, np.float64)
    assert draws.shape == (n, 3) and not jnp.array_equal(jax.random.key_data(key_left), jax.random.key_data(key))
    assert np.all(np.abs(draws.mean(0) - mean)[:2] < 5 * std[:2] / np.sqrt(n))
    assert np.all(np.abs(draws.std(0) - std)[:2] < 5 * std[:2] / np.sqrt(2 * n))
    assert np.array_equal(draws[:, 2], np.full(n, 3.0))
    held_out = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(Redraw().held_out(held_out, 0), held_out)  # test data: the means as they are


@pytest.fixture(scope="module")
def m1_features(tmp_path_factory):
    """An M1 trained 3 epochs on the digits (k = 4) and its `encode --features` file."""
    from jaxvae.cli import main

    folder = tmp_path_factory.mktemp("m1")
    m1, features = folder / "m1", folder / "m1.npz"
    common = ["--hidden", "32", "--quiet"]
    assert main(["train", "--dataset", "digits", "--latent-dim", "4", "--epochs", "3", "--out", str(m1), *common]) == 0
    assert main(["encode", str(m1), "--features", "-o", str(features)]) == 0
    return m1, features


@pytest.mark.slow
def test_m1_features_train_m2_and_evaluate_recomputes_its_error(m1_features, tmp_path, capsys):
    """The .npz holds M1's posterior means and standard deviations of the active dimensions (as many as
    `active_units` counts) for the digits' own train and test examples, with their labels; M2 trains on it
    with --binarize redraw, and `evaluate`'s classification error is argmax q(y|x)'s on the test means; M2's
    run has no features to encode (one line, exit 2)."""
    from jaxvae.cli import main
    from jaxvae.data import load_dataset
    from jaxvae.evaluate import active_units, posterior_moments
    from jaxvae.semisupervised import SemiSupervisedVAE
    from jaxvae.train import load

    m1, features = m1_features
    digits, vae = load_dataset("digits", progress=False), load(m1)
    with np.load(features) as f:
        arrays = {name: f[name] for name in f.files}
    assert set(arrays) == {"x_train", "x_test", "x_std_train", "y_train", "y_test"}
    mean, std = (np.asarray(a) for a in posterior_moments(vae, digits.x_train))
    (k,) = active_units(vae, jnp.asarray(digits.x_train))
    kept = np.flatnonzero(np.var(mean, axis=0) > 0.01)
    assert 0 < k == len(kept) == arrays["x_train"].shape[1]
    np.testing.assert_allclose(arrays["x_train"], mean[:, kept], rtol=1e-6)
    np.testing.assert_allclose(arrays["x_std_train"], std[:, kept], rtol=1e-6)
    np.testing.assert_allclose(arrays["x_test"], np.asarray(posterior_moments(vae, digits.x_test)[0])[:, kept])
    assert digits.y_train is not None and digits.y_test is not None
    assert np.array_equal(arrays["y_train"], digits.y_train) and np.array_equal(arrays["y_test"], digits.y_test)

    m2 = tmp_path / "m2"
    train = ["train", "--dataset", str(features), "--labels", "50", "--likelihood", "gaussian", "--hidden", "32"]
    code, err = run_main([*train, "--binarize", "redraw", "--epochs", "2", "--out", str(m2), "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((m2 / "config.json").read_text())["train"]["binarize"] == "redraw"
    assert main(["evaluate", str(m2), "--json", "--iw-samples", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    model = load(m2)
    assert isinstance(model, SemiSupervisedVAE)
    predicted = np.argmax(np.asarray(model.log_q_y(jnp.asarray(arrays["x_test"]))), axis=1)
    assert report["classification_error"] == pytest.approx(np.mean(predicted != arrays["y_test"]), abs=1e-12)
    code, err = run_main(["encode", str(m2), "--features", "-o", str(tmp_path / "z.npz")], capsys)  # not of M2
    assert code == 2 and "unconditional VAE" in err and not (tmp_path / "z.npz").exists()


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    ("std", "message"),
    [(np.ones((40, 2), np.float32), "x_std_train: expected floats"), (-np.ones((40, 3)), "at least 0")],
)
def test_bad_standard_deviations_are_one_line_and_exit_2(tmp_path, capsys, std, message):
    """x_std_train of the wrong shape or negative: refused while reading, nothing written."""
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = np.arange(40) % 10
    data = _npz(tmp_path / "f.npz", x_train=x, x_test=x[:10], y_train=y, y_test=y[:10], x_std_train=std)
    out = tmp_path / "run"
    code, err = run_main(
        ["train", "--dataset", data, "--labels", "10", "--binarize", "redraw", "--out", str(out)], capsys
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_redraw_needs_labels_and_standard_deviations(tmp_path, capsys):
    """--binarize redraw without --labels, or on data without x_std_train: one line, exit 2, nothing written."""
    out = tmp_path / "run"
    for argv, message in [
        (["--dataset", "digits", "--binarize", "redraw"], "use it with labels"),
        (["--dataset", "digits", "--labels", "50", "--binarize", "redraw"], "the data need x_std_train"),
    ]:
        code, err = run_main(["train", *argv, "--epochs", "1", "--out", str(out)], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_encode_features_refuses_split(m1_features, tmp_path, capsys):
    """--features writes both splits: --split is one line, exit 2, nothing written."""
    out = tmp_path / "z.npz"
    code, err = run_main(["encode", str(m1_features[0]), "--features", "--split", "all", "-o", str(out)], capsys)
    assert code == 2 and "leave out --split" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def _features(path, n=200):
    """An .npz of M1-like features: two classes of 3-value inputs (means 0 and 2), positive x_std_train."""
    rng = np.random.default_rng(1)
    y = np.arange(n) % 2
    x = (2.0 * y[:, None] + rng.normal(size=(n, 3))).astype(np.float32)
    std = rng.uniform(0.1, 0.5, size=(n, 3)).astype(np.float32)
    return _npz(path, x_train=x, x_test=x[:50], y_train=y, y_test=y[:50], x_std_train=std)  # as many as validate


def test_redraw_splits_its_standard_deviations_with_the_validation_rows(tmp_path):
    """With a validation split, redraw's training rows are [x, x_std, c] of the examples the split keeps, x_std
    their own, and the validation rows [x, c] of the others: the rows of the same split without redraw."""
    from jaxvae.config import ModelConfig, RunConfig, TrainConfig
    from jaxvae.data import load_dataset
    from jaxvae.keys import DataSeed
    from jaxvae.loop import held_out
    from jaxvae.train import condition_rows

    data = load_dataset(_features(tmp_path / "f.npz"), progress=False)
    model = ModelConfig(data_shape=(3,), condition_dim=2, likelihood="gaussian")
    rows = {}
    for binarize in ("redraw", "none"):
        config = RunConfig(model, TrainConfig(labels=4, binarize=binarize, validation_fraction=0.25))
        rows[binarize] = held_out(condition_rows(data, config), config.train)
    valid = np.random.default_rng(DataSeed.VALIDATION_SPLIT).permutation(200)[:50]
    train = np.setdiff1d(np.arange(200), valid)
    one_hot = np.eye(2, dtype=np.float32)
    np.testing.assert_array_equal(rows["redraw"][2], np.concatenate([data.x_train, one_hot[data.y_train]], 1)[valid])
    np.testing.assert_array_equal(rows["redraw"][2], rows["none"][2])
    expected = np.concatenate([data.x_train[train], data.x_std_train[train], one_hot[data.y_train[train]]], axis=1)
    np.testing.assert_array_equal(rows["redraw"][0].x_train, expected)
    np.testing.assert_array_equal(rows["redraw"][0].x_train[:, [0, 1, 2, 6, 7]], rows["none"][0].x_train)


@pytest.mark.slow
def test_redraw_with_a_validation_split_validates_on_the_means(tmp_path, capsys, monkeypatch):
    """M2 with --binarize redraw and --validation-fraction 0.25 trains; its last validation U(x) and error are
    those recomputed from the checkpoint (`held_out_scores` with the run's validation key) on the validation
    rows [x, one-hot y] of the means, the examples `split_validation` holds out (its seeded permutation)."""
    from jaxvae.data import load_dataset
    from jaxvae.keys import DataSeed, Run, run_key
    from jaxvae.semisupervised import held_out_scores
    from jaxvae.train import load

    monkeypatch.setattr("jaxvae.plots.write_figures", lambda *args: None)  # not under test here
    features = _features(tmp_path / "f.npz")
    out = tmp_path / "m2"
    argv = ["train", "--dataset", features, "--labels", "4", "--likelihood", "gaussian", "--hidden", "8"]
    argv += ["--binarize", "redraw", "--validation-fraction", "0.25", "--epochs", "2", "--quiet", "--out", str(out)]
    code, err = run_main(argv, capsys)
    assert code == 0, err
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    data = load_dataset(features, progress=False)
    valid = np.random.default_rng(DataSeed.VALIDATION_SPLIT).permutation(200)[:50]
    rows = np.concatenate([data.x_train, np.eye(2, dtype=np.float32)[data.y_train]], axis=1)[valid]
    scores = held_out_scores(load(out), jnp.asarray(rows), run_key(0, Run.VALIDATION))
    assert last["validation_elbo"] == pytest.approx(scores["elbo"], rel=1e-6)
    assert last["validation_classification_error"] == pytest.approx(scores["classification_error"], abs=1e-12)
