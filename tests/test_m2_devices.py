"""M2 (`train --labels N`) on two simulated devices trains as on one: each unlabelled batch is split across the
devices, the labelled draws go whole to each, and the numbers equal one device's up to the order of float sums.

Simulated devices need XLA_FLAGS before jax is imported, so both runs are `jaxvae train` subprocesses.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import spawn
from jaxvae.runs import read_metrics

TRAIN = ["train", "--dataset", "digits", "--labels", "50", "--hidden", "32", "--batch-size", "64", "--epochs", "2"]
TRAIN += ["--quiet"]


def train(out: Path, devices: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    code = "import sys; from jaxvae.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, *TRAIN, "--out", str(out)]
    with spawn(args, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        stdout, stderr = p.communicate(timeout=300)
    return subprocess.CompletedProcess(args, p.returncode, stdout, stderr)


@pytest.mark.slow
def test_m2_on_two_simulated_devices_trains_like_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for out, devices in ((one, 1), (two, 2)):
        result = train(out, devices)
        assert result.returncode == 0, result.stderr
        assert json.loads((out / "config.json").read_text())["hardware"]["devices"] == devices
    a, b = read_metrics(one), read_metrics(two)
    assert len(a) == len(b) == 2
    for x, y in zip(a, b, strict=True):
        # 1e-3 nats and one test digit in 359: far below what a different batch or key would change
        for name in ("train_elbo", "test_elbo", "train_labelled_bound", "train_log_q_y"):
            assert abs(x[name] - y[name]) < 1e-3, name
        assert abs(x["test_classification_error"] - y["test_classification_error"]) <= 1 / 359 + 1e-9
