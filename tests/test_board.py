"""`jaxvae train --tensorboard`: the event files, read back by TensorBoard's own reader, hold exactly the
numbers of metrics.jsonl and the pixels of the figures."""

import io

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jaxvae.cli import main
from jaxvae.runs import read_metrics
from jaxvae.sweep import MemberMajor, StepMajor

pytestmark = pytest.mark.slow

ARGS = ["--hidden", "16", "--validation-fraction", "0.2", "--quiet", "--tensorboard"]


def events(run):
    accumulator = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def assert_scalars_match_metrics(run):
    """Every number of every metrics.jsonl record, once per epoch, as a float32 scalar at step = epoch."""
    metrics = read_metrics(run)
    board = events(run)
    names = {name for name, value in metrics[0].items() if not isinstance(value, str)} - {"epoch"}
    assert {"train_elbo", "test_elbo", "test_reconstruction", "test_kl", "beta", "validation_elbo"} <= names
    assert "examples_per_second" in names
    assert set(board.Tags()["scalars"]) == names
    for name in names:
        logged = [(e.step, e.value) for e in board.Scalars(name)]
        assert logged == [(m["epoch"], np.float32(m[name])) for m in metrics], name


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("board") / "run"
    assert main(["train", "--out", str(run), "--epochs", "3", *ARGS]) == 0
    return run


def test_scalars_are_the_metrics(run):
    assert_scalars_match_metrics(run)


def test_figures_are_the_pngs_at_the_last_epoch(run):
    board = events(run)
    pngs = sorted((run / "figures").glob("*.png"))
    assert sorted(board.Tags()["images"]) == sorted(f"figures/{p.stem}" for p in pngs)
    for png in pngs:
        (image,) = board.Images(f"figures/{png.stem}")
        assert image.step == 3
        logged = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        np.testing.assert_array_equal(logged, np.asarray(Image.open(png).convert("RGB")))


def test_resume_keeps_tensorboard_and_supersedes_the_lost_epoch(run, tmp_path):
    """A crash after epoch 3's metrics and events but before its checkpoint: resume redoes epoch 3, and
    TensorBoard shows it once (the restart marker drops the lost run's epoch 3)."""
    import shutil

    crashed = tmp_path / "run"
    shutil.copytree(run, crashed)
    (crashed / "checkpoints" / "epoch-00003.eqx").unlink()
    assert main(["train", "--out", str(crashed), "--resume", "--quiet"]) == 0
    assert [m["epoch"] for m in read_metrics(crashed)] == [1, 2, 3]
    assert_scalars_match_metrics(crashed)


@pytest.mark.parametrize("schedule", [StepMajor, MemberMajor], ids=["step-major", "member-major"])
def test_a_sweep_writes_each_member_s_events(tmp_path, monkeypatch, schedule):
    """--seeds 2 --tensorboard, in each schedule: each member's folder holds its own events, its metrics and
    figures exactly."""
    monkeypatch.setattr("jaxvae.sweep.schedule", lambda configs: schedule)
    out = tmp_path / "sweep"
    assert main(["train", "--out", str(out), "--epochs", "2", "--seeds", "2", *ARGS]) == 0
    for name in ("seed-0", "seed-1"):
        assert_scalars_match_metrics(out / name)
        pngs = sorted((out / name / "figures").glob("*.png"))
        assert pngs and sorted(events(out / name).Tags()["images"]) == sorted(f"figures/{p.stem}" for p in pngs)
    assert read_metrics(out / "seed-0") != read_metrics(out / "seed-1")  # two members, not one copied
