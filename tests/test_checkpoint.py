"""Checkpoint files: exact round trip, atomic replacement, and every kind of damage reported as InputError."""

import errno
import os

import equinox as eqx
import jax
import numpy as np
import pytest

import jaxvae
from jaxvae import checkpoint
from jaxvae.cli import main
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.errors import InputError
from jaxvae.runs import latest_checkpoint
from jaxvae.train import fit, init_state


def tiny_config(hidden=(8,), epochs=2, **train):
    return RunConfig(ModelConfig(data_shape=(8, 8), hidden=hidden), TrainConfig(epochs=epochs, **train))


def leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-epoch run on digits (hidden width 8), made once for the tests that damage copies of it."""
    run = tmp_path_factory.mktemp("runs") / "run"
    fit(tiny_config(), load_dataset("digits"), run, progress=False)
    return run


def copy_run(run, dest):
    import shutil

    shutil.copytree(run, dest)
    return dest


def test_round_trip_is_exact_and_includes_the_optimizer(tmp_path):
    state = init_state(tiny_config())
    state = state._replace(epoch=state.epoch + 7)
    checkpoint.save(tmp_path / "a.eqx", state)
    back = checkpoint.restore(tmp_path / "a.eqx", init_state(tiny_config()))
    assert int(back.epoch) == 7
    for a, b in zip(leaves(state), leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["a.eqx"]  # no temporary file left


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    """A full disk while writing (ENOSPC at fsync) must leave the previous checkpoint intact."""
    path = tmp_path / "c.eqx"
    old = init_state(tiny_config())
    checkpoint.save(path, old)
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(path, old._replace(epoch=old.epoch + 1))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.eqx"]


def damage_truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())


def damage_flip_one_bit(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # inside the float data: loads without error unless a checksum catches it
    path.write_bytes(bytes(raw))


def damage_empty(path):
    path.write_bytes(b"")


def damage_wrong_structure(path):
    """A valid checkpoint (checksum and all) of a different model: hidden width 16 instead of 8."""
    checkpoint.save(path, init_state(tiny_config(hidden=(16,))))


def damage_extra_arrays(path):
    """A valid checkpoint holding the state plus one more array."""
    checkpoint.save(path, (init_state(tiny_config()), np.zeros(3, np.float32)))


DAMAGES = [
    damage_truncate,
    damage_random_bytes,
    damage_flip_one_bit,
    damage_empty,
    damage_wrong_structure,
    damage_extra_arrays,
]


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__[7:])
def test_damaged_checkpoint_is_an_input_error_for_load_and_exit_2_for_resume(trained_run, tmp_path, damage, capsys):
    run = copy_run(trained_run, tmp_path / "run")
    damage(latest_checkpoint(run))
    with pytest.raises(InputError, match="checkpoint"):
        jaxvae.load(run)
    code = main(["train", "--resume", "--out", str(run), "--epochs", "3", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "epoch-00002.eqx" in err, err
    assert "damaged" in err or "does not fit" in err


@pytest.mark.slow
def test_keep_last_n_and_the_best(tmp_path):
    """--keep-checkpoints 2 over 4 epochs keeps epochs 3 and 4, and best.eqx holds the epoch with the
    highest validation ELBO in metrics.jsonl."""
    from jaxvae.runs import read_metrics

    run = tmp_path / "run"
    config = tiny_config(epochs=4, keep_checkpoints=2, validation_fraction=0.2)
    fit(config, load_dataset("digits"), run, progress=False)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.eqx", "epoch-00003.eqx", "epoch-00004.eqx"]
    metrics = read_metrics(run)
    best_epoch = max(metrics, key=lambda m: m["validation_elbo"])["epoch"]
    best = checkpoint.restore(run / "checkpoints" / "best.eqx", init_state(tiny_config()))
    assert int(best.epoch) == best_epoch
