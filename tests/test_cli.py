"""The command line end to end, as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import pytest


def jaxvae(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "jaxvae.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_train_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = jaxvae("train", "--out", str(out), "--epochs", "2", "--hidden", "32", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "test ELBO" in result.stdout and str(out) in result.stdout
    assert json.loads((out / "config.json").read_text())["model"]["hidden"] == [32]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    again = jaxvae("train", "--out", str(out), "--epochs", "1", "--quiet")
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = jaxvae("train", "--out", str(out), "--resume", "--epochs", "3", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_bad_input_exits_2_with_one_line_and_no_run_folder(tmp_path):
    cases = [
        ["--dataset", "no-such-dataset"],
        ["--dataset", str(tmp_path / "missing.npz")],
        ["--hidden", "12,x"],
        ["--latent-dim", "0"],
        ["--likelihood", "poisson"],
    ]
    for extra in cases:
        out = tmp_path / "never"
        result = jaxvae("train", "--out", str(out), "--quiet", *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert not out.exists()


OBJECTIVES = {"elbo": ["--beta", "0.5", "--free-bits", "0.1"], "iwae": []}
ARCHITECTURES = {"mlp": ["--hidden", "8"], "conv": ["--hidden", "2,4"]}


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "gaussian"])
def test_every_likelihood_architecture_and_objective_trains(tmp_path, likelihood, architecture, objective):
    """One epoch on digits through `jaxvae train` (in-process, to stay fast), with figures."""
    from jaxvae.cli import main

    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--epochs", "1", "--latent-dim", "2", "--samples", "2", "--quiet"]
    options = ["--likelihood", likelihood, "--architecture", architecture, "--objective", objective]
    assert main([*args, *options, *ARCHITECTURES[architecture], *OBJECTIVES[objective]]) == 0
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(record["test_elbo"]) and np.isfinite(record["train_elbo"])
    assert ("train_iwae_bound" in record) == (objective == "iwae")
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"reconstructions.png", "samples.png", "latent_manifold.png"} <= figures


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--objective", "iwae", "--beta", "0.5"], "use them with --objective elbo"),
        (["--free-bits", "-1"], "--free-bits must be at least 0"),
        (["--likelihood", "gaussian", "--gaussian-std", "0"], "--gaussian-std must be positive"),
        (["--architecture", "conv", "--dataset", "VECTORS"], "conv needs images"),
    ],
)
def test_bad_family_options_exit_2_with_one_line(tmp_path, capsys, extra, message):
    from jaxvae.cli import main

    np.save(tmp_path / "vectors.npy", np.random.default_rng(0).random((20, 5)))
    extra = [str(tmp_path / "vectors.npy") if e == "VECTORS" else e for e in extra]
    assert main(["train", "--out", str(tmp_path / "never"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()
