"""The command line end to end, as a user runs it."""

import json
import subprocess
import sys


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
