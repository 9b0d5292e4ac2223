"""Conditions beyond labels: an .npz's per-example arrays c (`--condition array`) kept with their examples through
every split, a conditional run's commands reading them, conditional seeds trained together as the separate runs,
bad conditions refused, and the quadrant benchmark's pixels split as Pyro's masks split them."""

import importlib.util
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_idx_folder, run_main
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset, split_validation
from jaxvae.evaluate import log_likelihood_quadrature, posterior_moments
from jaxvae.runs import read_metrics
from jaxvae.sweep import MemberMajor, StepMajor, fit_sweep, member_configs
from jaxvae.train import fit, load

spec = importlib.util.spec_from_file_location("quadrants", Path(__file__).parents[1] / "benchmarks" / "quadrants.py")
quadrants = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quadrants)


def numbered(n: int, shape=(2, 3)):
    """x (n, 4) and c (n, *shape) that name their example: x[i] = i / n everywhere, c[i] = i + 0, 1, 2, ..."""
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None] / n, 4, axis=1)
    c = np.arange(n, dtype=np.float32).reshape(n, *(1,) * len(shape)) + np.arange(np.prod(shape)).reshape(shape)
    return x, c


def test_npz_conditions_stay_with_their_examples_through_every_split(tmp_path):
    """An .npz's `c`, split with its `x` (train/test, then validation), flattened row by row; an .npz of
    x_train/x_test keeps its own split and order."""
    n = 50
    x, c = numbered(n)
    np.savez(tmp_path / "one.npz", x=x, c=c)
    data = load_dataset(tmp_path / "one.npz")
    assert data.c_train.shape == (40, 6) and data.c_test.shape == (10, 6) and data.c_train.dtype == np.float32
    for xs, cs in ((data.x_train, data.c_train), (data.x_test, data.c_test)):
        np.testing.assert_array_equal(cs, np.round(xs[:, :1] * n) + np.arange(6))
    train, valid = split_validation(data, 0.25)
    assert len(train.c_train) == len(train.x_train) == 30 and len(valid) == 10
    np.testing.assert_array_equal(train.c_train, np.round(train.x_train[:, :1] * n) + np.arange(6))
    assert not set(np.round(valid[:, 0] * n)) & set(train.c_train[:, 0])  # the validation examples left out

    np.savez(tmp_path / "two.npz", x_train=x[:30], c_train=c[:30], x_test=x[30:], c_test=c[30:], y_test=np.arange(20))
    with pytest.raises(Exception, match="y_train with y_test"):
        load_dataset(tmp_path / "two.npz")
    np.savez(tmp_path / "two.npz", x_train=x[:30], c_train=c[:30], x_test=x[30:], c_test=c[30:])
    data = load_dataset(tmp_path / "two.npz")
    np.testing.assert_array_equal(data.x_test, x[30:])
    np.testing.assert_array_equal(data.c_train, c[:30].reshape(30, 6))
    assert data.y_train is None and data.shape == (4,)


def json_of(argv, capsys) -> dict:
    """What the command line `argv` prints as JSON, run in this process."""
    from jaxvae.cli import main

    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def array_run(tmp_path_factory):
    """A Gaussian model of x (n, 3) given c (n, 2) (x a function of c, noise sd 0.05), k = 2, trained 10 epochs by
    the command line."""
    folder = tmp_path_factory.mktemp("array")
    rng = np.random.default_rng(0)
    c = rng.random((400, 2)).astype(np.float32)
    x = np.stack([c[:, 0], c[:, 1], c.mean(1)], 1) + 0.05 * rng.normal(size=(400, 3))
    np.savez(folder / "xc.npz", x=x.astype(np.float32), c=c)
    out = folder / "run"
    argv = ["train", "--dataset", str(folder / "xc.npz"), "--condition", "array", "--prior", "conditional"]
    argv += ["--likelihood", "gaussian", "--latent-dim", "2", "--hidden", "16", "--epochs", "10", "--lr", "0.01"]
    argv += ["--out", str(out), "--quiet"]
    from jaxvae.cli import main

    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_evaluate_and_encode_read_the_run_s_conditions(array_run, tmp_path, capsys):
    """`jaxvae evaluate` reports the quadrature of log p(x | c) of the test examples with their own conditions
    (as computed from the .npz's arrays in Python), which differs with the conditions shuffled; `jaxvae encode`
    writes q(z | x, c)'s moments of every example (train then test) with its condition."""
    report = json_of(["evaluate", str(array_run), "--json", "--iw-samples", "10", "--quiet"], capsys)
    assert report["condition"] == "array"
    config = RunConfig.load(array_run / "config.json")
    assert config.model.condition_dim == 2 and config.train.condition == "array"
    data, vae = load_dataset(config.train.dataset), load(array_run)
    exact = log_likelihood_quadrature(vae, jnp.asarray(data.x_test), c=jnp.asarray(data.c_test))
    assert report["log_likelihood_quadrature"] == pytest.approx(float(jnp.mean(exact)), abs=1e-4)
    shuffled = log_likelihood_quadrature(vae, jnp.asarray(data.x_test), c=jnp.asarray(data.c_test[::-1]))
    assert float(jnp.mean(shuffled)) < float(jnp.mean(exact)) - 0.3  # 0.66 nats when written

    code, err = run_main(["encode", str(array_run), "--split", "all", "-o", str(tmp_path / "z.npz")], capsys)
    assert code == 0, err
    x, c = (np.concatenate(pair) for pair in ((data.x_train, data.x_test), (data.c_train, data.c_test)))
    mean, std = posterior_moments(vae, jnp.asarray(x), c=jnp.asarray(c))
    with np.load(tmp_path / "z.npz") as written:
        np.testing.assert_allclose(written["mean"], mean, atol=1e-6)
        np.testing.assert_allclose(written["std"], std, atol=1e-6)


@pytest.mark.slow
def test_a_run_s_conditions_of_another_size_exit_2(array_run, tmp_path, capsys):
    """Data whose conditions do not have the run's size are refused by evaluate, and sample refuses the run."""
    np.savez(tmp_path / "wide.npz", x=np.zeros((20, 3), np.float32), c=np.ones((20, 5), np.float32))
    code, err = run_main(["evaluate", str(array_run), "--dataset", str(tmp_path / "wide.npz")], capsys)
    assert code == 2 and "conditions have 5 values per example, the run's model takes 2" in err
    assert len(err.strip().splitlines()) == 1
    code, err = run_main(["sample", str(array_run), "-o", str(tmp_path / "s.png")], capsys)
    assert code == 2 and not (tmp_path / "s.png").exists()


BAD = [
    ({"x": np.zeros((20, 3))}, [], "--condition array needs conditions"),
    ({"x": np.zeros((20, 3)), "c": np.zeros((19, 2))}, [], "20 examples but 19 conditions"),
    ({"x": np.zeros((20, 3)), "c": np.zeros(20)}, [], "of rank >= 2"),
    ({"x": np.zeros((20, 3)), "c": np.full((20, 2), np.nan)}, [], "NaN or infinite"),
    ({"x": np.zeros((20, 3)), "c": np.zeros((20, 0))}, [], "hold no values"),
    ({"x_train": np.zeros((20, 3)), "x_test": np.zeros((5, 3)), "c_train": np.zeros((20, 2))}, [], "for one split"),
    ({"x": np.zeros((20, 3)), "c": np.zeros((20, 2))}, ["--binarize", "dynamic"], "takes --binarize none"),
]


@pytest.mark.parametrize(("arrays", "extra", "message"), BAD)
def test_bad_conditions_exit_2_with_one_line_and_no_run_folder(tmp_path, capsys, arrays, extra, message):
    np.savez(tmp_path / "d.npz", **arrays)
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(tmp_path / "d.npz"), "--condition", "array", "--out", str(out), *extra]
    code, err = run_main(argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def small_conditional(**train) -> RunConfig:
    model = ModelConfig(data_shape=(8, 8), latent_dim=2, hidden=(32,), condition_dim=10, prior="conditional")
    return RunConfig(model, TrainConfig(dataset="digits", epochs=1, condition="label", **train))


@pytest.mark.slow
def test_conditional_seeds_trained_together_are_the_separate_runs(tmp_path, capsys):
    """A model conditioned on labels, 2 seeds with validation: member seed-1 of either schedule against its
    separate run (`train.fit`) within 1e-3 nats (float sums in another order); `jaxvae evaluate` of the sweep
    reports each member as of its own folder."""
    data = load_dataset("digits")
    configs = member_configs(small_conditional(validation_fraction=0.2, lr=3e-3), 2, None)
    for trainer in (StepMajor, MemberMajor):
        fit_sweep(configs, data, tmp_path / trainer.__name__, progress=False, trainer=trainer)
    fit(configs["seed-1"], data, tmp_path / "alone", progress=False)
    alone = read_metrics(tmp_path / "alone")
    for trainer in (StepMajor, MemberMajor):
        member = read_metrics(tmp_path / trainer.__name__ / "seed-1")
        for key in ("train_elbo", "test_elbo", "test_kl", "validation_elbo"):
            np.testing.assert_allclose([m[key] for m in member], [m[key] for m in alone], atol=1e-3)
    assert read_metrics(tmp_path / "StepMajor" / "seed-0")[-1]["test_elbo"] != alone[-1]["test_elbo"]

    evaluate = ["evaluate", "--json", "--iw-samples", "10", "--n", "50", "--quiet"]
    members = json_of([*evaluate, str(tmp_path / "StepMajor")], capsys)["members"]
    single = json_of([*evaluate, str(tmp_path / "StepMajor" / "seed-1")], capsys)
    for key in ("elbo", "log_likelihood"):
        assert members["seed-1"][key] == pytest.approx(single[key], abs=1e-5)


@pytest.mark.parametrize("shown", [1, 2, 3])
def test_quadrant_pixels_are_pyro_s_masks(shown):
    """x (missing) and c (visible) of 28 x 28 images: Pyro's quadrants by slicing (1: the bottom left shown; 2:
    the left half; 3: all but the bottom right), in row-major order, together every pixel once."""
    images = np.arange(3 * 784, dtype=np.float32).reshape(3, 28, 28)
    x, c = quadrants.split_pixels(images.reshape(3, -1), shown)
    h = 14
    visible = {
        1: [images[:, h:, :h]],
        2: [images[:, :, :h]],
        3: [images[:, :h, :], images[:, h:, :h]],
    }[shown]
    assert x.shape == (3, 784 - 196 * shown) and c.shape == (3, 196 * shown)
    assert sorted(c[0]) == sorted(np.concatenate([v[0].reshape(-1) for v in visible]))
    np.testing.assert_array_equal(np.sort(np.concatenate([x, c], 1)), np.sort(images.reshape(3, -1)))
    assert np.all(np.diff(c) > 0) and np.all(np.diff(x) > 0)  # each kept in row-major order


@pytest.mark.slow
def test_the_quadrant_benchmark_trains_and_scores_both_models_and_resumes(tmp_path, capsys):
    """On small 4 x 4 images (no MNIST): the baseline's and the CVAE's scores of 2 seeds, a table beside Pyro's;
    run again, the saved results are read, nothing trained."""
    make_idx_folder(tmp_path / "data", n_train=60, n_test=10, size=4)
    argv = ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--quadrants", "2"]
    argv += ["--seeds", "0,1", "--epochs", "1", "--iw-samples", "5", "--iw-examples", "4"]
    quadrants.main(argv)
    result = json.loads((tmp_path / "out" / "results-q2.json").read_text())
    assert len(result["baseline"]["nll"]) == len(result["cvae"]["neg_lk"]) == 2
    assert all(np.isfinite(result["cvae"]["neg_elbo"])) and result["iw_examples"] == 4
    first = capsys.readouterr().out
    assert "| CVAE -ELBO (Pyro) | 51.0 |" in first
    quadrants.main(argv)
    assert capsys.readouterr().out.splitlines()[-7:] == first.splitlines()[-7:]
