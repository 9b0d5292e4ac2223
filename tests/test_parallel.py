"""Data parallel training and streaming: the same numbers on one device, two devices, two processes,
and with the data streamed in chunks.

Simulated devices need XLA_FLAGS before jax is imported, and processes need their own interpreters, so
those runs are `jaxvae train` subprocesses. The reference for each is the same command on one device (in
this process): the batches, their noise and the updates are the same, only the order of float sums may differ.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

from conftest import spawn
from jaxvae import parallel
from jaxvae.builder import build_objective, build_optimizer
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.errors import InputError
from jaxvae.runs import read_metrics
from jaxvae.train import (
    epoch_key,
    fit,
    init_state,
    make_chunk,
    make_epoch,
    stream_epoch,
)

# the richest model: a flow posterior (Monte Carlo KL), a prior with parameters of its own (a VampPrior per
# class), conditioned on the labels (each row's condition sharded with its example); batches of 256, so that
# the two processes exchange gradients 6 times an epoch, not 45 (the last batch of 158 padded)
TRAIN = ["train", "--dataset", "digits", "--hidden", "64", "--epochs", "2", "--quiet", "--posterior", "iaf:2"]
TRAIN += ["--prior", "vamp:5", "--condition", "label", "--batch-size", "256"]


def jaxvae(args, devices: int = 1, **kwargs):
    """`jaxvae ARGS` on `devices` simulated devices, as a context manager that kills it on leaving (`spawn`)."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    code = "import sys; from jaxvae.cli import main; sys.exit(main(sys.argv[1:]))"
    return spawn([sys.executable, "-c", code, *args], env=env, text=True, **kwargs)


def run(args, devices: int = 1) -> subprocess.CompletedProcess:
    with jaxvae(args, devices, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hardware(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())["hardware"]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory) -> Path:
    """The reference: the command in this process, which has one device."""
    from jaxvae.cli import main

    out = tmp_path_factory.mktemp("one") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def assert_same_training(a: Path, b: Path):
    """Equal up to the order of float sums: 1e-3 nats is far below any change a different batch would make."""
    ma, mb = read_metrics(a), read_metrics(b)
    assert len(ma) == len(mb) == 2
    for x, y in zip(ma, mb, strict=True):
        assert abs(x["train_elbo"] - y["train_elbo"]) < 1e-3
        assert abs(x["test_elbo"] - y["test_elbo"]) < 1e-3


@pytest.mark.slow
def test_two_simulated_devices_train_like_one(one_device, tmp_path):
    out = tmp_path / "run"
    result = run([*TRAIN, "--out", str(out)], devices=2)
    assert result.returncode == 0, result.stderr
    assert hardware(out)["devices"] == 2 and hardware(out)["processes"] == 1
    assert hardware(one_device)["devices"] == 1
    assert_same_training(one_device, out)


@pytest.mark.slow
def test_two_processes_train_like_one(one_device, tmp_path):
    out = tmp_path / "run"
    port = free_port()
    processes = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                jaxvae([*TRAIN, "--out", str(out), *processes, "--process-id", i], stdout=-1, stderr=-1)
            )
            for i in ("0", "1")
        ]
        results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    assert "test ELBO" in results[0][0] and "test ELBO" not in results[1][0]  # only process 0 reports and writes
    assert hardware(out) == {**hardware(one_device), "devices": 2, "processes": 2}
    assert_same_training(one_device, out)


@pytest.mark.slow
def test_batch_size_not_divisible_by_devices_is_a_clear_error(tmp_path):
    result = run([*TRAIN, "--out", str(tmp_path / "run"), "--batch-size", "31"], devices=2)
    assert result.returncode == 2
    message = "jaxvae: error: --batch-size 31 must be a multiple of the 2 devices that share each batch"
    assert result.stderr.strip() == message
    assert not (tmp_path / "run").exists()


def test_incomplete_process_options_are_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="go together"):
        parallel.initialize("127.0.0.1:1234", None, 0)


@pytest.mark.slow
def test_streamed_epoch_equals_in_memory_epoch():
    """Chunks of 3 batches (the last one shorter) from a NumPy array give the compiled epoch's result."""
    config = RunConfig(ModelConfig(data_shape=(64,), hidden=(32,)), TrainConfig(batch_size=16, binarize="dynamic"))
    state = init_state(config)
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    optimizer = build_optimizer(config.train)
    mesh = parallel.data_mesh()
    x = np.random.default_rng(0).random((150, 64), dtype=np.float32)  # 10 batches, the last one padded
    key = epoch_key(0, 1)
    epoch = make_epoch(static, optimizer, config.train, mesh)
    objective = build_objective(config.train)
    p1, o1, elbo1, ok1 = epoch(*parallel.replicate((params, state.opt_state, x), mesh), key, objective)
    chunk = make_chunk(static, optimizer, config.train, mesh)
    p2, o2, elbo2, ok2 = stream_epoch(
        chunk, *parallel.replicate((params, state.opt_state), mesh), x, key, objective, 16, 3, mesh
    )
    assert bool(ok1) and bool(ok2)
    assert chunk._cache_size() == 2  # chunks of 3 batches and the last one of 1: two programs, no more
    np.testing.assert_allclose(float(elbo2["elbo"]), float(elbo1["elbo"]), rtol=1e-6)  # summed chunk by chunk
    for a, b in zip(jax.tree.leaves((p1, o1)), jax.tree.leaves((p2, o2)), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_fit_streams_a_memory_mapped_file_under_a_small_budget(tmp_path):
    """A budget of 20 kB (the digits' training set is 368 kB) streams 2-batch chunks from a memory map."""
    data = load_dataset("digits")
    config = RunConfig(ModelConfig(data_shape=(8, 8), hidden=(32,)), TrainConfig(epochs=2))
    fit(config, data, tmp_path / "memory", progress=False)
    np.save(tmp_path / "x.npy", data.x_train)
    mapped = type(data)(np.load(tmp_path / "x.npy", mmap_mode="r"), None, data.x_test, None, data.shape)
    fit(config, mapped, tmp_path / "streamed", progress=False, device_budget=20_000)
    a, b = read_metrics(tmp_path / "memory"), read_metrics(tmp_path / "streamed")
    assert [m["test_elbo"] for m in a] == [m["test_elbo"] for m in b]
    np.testing.assert_allclose([m["train_elbo"] for m in a], [m["train_elbo"] for m in b], rtol=1e-6)


def test_old_configs_without_hardware_still_load(tmp_path):
    config = RunConfig(ModelConfig(data_shape=(8, 8)), TrainConfig())
    config.save(tmp_path / "config.json")
    raw = json.loads((tmp_path / "config.json").read_text())
    del raw["hardware"]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert RunConfig.load(tmp_path / "config.json") == config
