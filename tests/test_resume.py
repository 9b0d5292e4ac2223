"""Nothing lost: a run killed at any moment resumes to exactly the numbers of an uninterrupted run;
Ctrl-C saves and says how to resume; divergence stops with the last good checkpoint kept."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import spawn
from jaxvae.cli import main
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.runs import read_metrics
from jaxvae.train import Diverged, fit

pytestmark = pytest.mark.slow

EPOCHS = 20
# digits with 20% of the training set held out for validation (so best.eqx is written): 36 steps per epoch
ARGS = ["--epochs", str(EPOCHS), "--hidden", "16", "--validation-fraction", "0.2", "--quiet"]
TIMING = ("seconds", "examples_per_second")


def cli(*args, capsys=None):
    """Run the command line in this process: (exit code, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err if capsys else ""


@pytest.fixture(scope="module", autouse=True)
def no_figures():
    """Figures are tested elsewhere; here they would only cost time."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("jaxvae.plots.write_figures", lambda *args: None)
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce exactly (all its checkpoints kept)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert cli("train", "--out", str(run), *ARGS, "--keep-checkpoints", str(EPOCHS))[0] == 0
    return run


def without_timing(metrics):
    return [{k: v for k, v in m.items() if k not in TIMING} for m in metrics]


def assert_same_run(run, reference):
    """Identical metrics (but the wall-clock fields) and a byte-identical final checkpoint: parameters,
    Adam moments and epoch."""
    assert without_timing(read_metrics(run)) == without_timing(read_metrics(reference))
    name = f"epoch-{EPOCHS:05d}.eqx"
    assert (run / "checkpoints" / name).read_bytes() == (reference / "checkpoints" / name).read_bytes()
    assert (run / "checkpoints" / "best.eqx").read_bytes() == (reference / "checkpoints" / "best.eqx").read_bytes()


def start_and_signal(run, signum, ignored=False):
    """Start `jaxvae train` in a subprocess (with SIGINT and SIGTERM ignored if `ignored`), send `signum`
    once its 2nd checkpoint exists: (exit code, stderr)."""
    command = [sys.executable, "-m", "jaxvae.cli", "train", "--out", str(run), *ARGS]
    with spawn(command, ignored, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        second = run / "checkpoints" / "epoch-00002.eqx"
        while not second.exists():
            assert process.poll() is None, process.communicate()
            time.sleep(0.005)
        process.send_signal(signum)
        _, err = process.communicate(timeout=300)
    return process.returncode, err


def test_sigkill_mid_training_then_resume_is_bit_identical(reference, tmp_path, capsys):
    run = tmp_path / "run"
    code, _ = start_and_signal(run, signal.SIGKILL)
    assert code == -signal.SIGKILL
    done = len(read_metrics(run))
    assert 2 <= done < EPOCHS, "the kill must land mid-training"
    code, err = cli("train", "--resume", "--out", str(run), "--quiet", capsys=capsys)
    assert code == 0, err
    assert_same_run(run, reference)


@pytest.mark.parametrize(
    "signum, ignored", [(signal.SIGINT, False), (signal.SIGTERM, True)], ids=["ctrl-c", "sigterm, started ignored"]
)
def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(reference, tmp_path, capsys, signum, ignored):
    """Ctrl-C, or SIGTERM, even when the command started with both ignored (as a shell's background job
    starts with SIGINT ignored)."""
    run = tmp_path / "run"
    code, err = start_and_signal(run, signum, ignored)
    assert code == 130 and len(err.strip().splitlines()) == 1, err
    assert f"continue with: jaxvae train --resume --out {run}" in err
    metrics = read_metrics(run)
    saved = sorted((run / "checkpoints").glob("epoch-*.eqx"))[-1]
    # the epoch running when Ctrl-C came was finished and saved, and metrics.jsonl matches it
    assert 2 <= len(metrics) < EPOCHS and saved.name == f"epoch-{len(metrics):05d}.eqx"
    code, err = cli("train", "--resume", "--out", str(run), "--quiet", capsys=capsys)
    assert code == 0, err
    assert_same_run(run, reference)


def crash_states(reference):
    """What a SIGKILL can leave after epoch 2, whatever instruction it interrupts (writes go: metrics
    line, best.eqx, epoch checkpoint): (name, function that damages a run folder stopped at epoch 2)."""
    third = read_metrics(reference)[2]

    def torn_metrics_line(run):
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps(third)[:40])

    def metrics_line_without_checkpoint(run):
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps(third) + "\n")

    def half_written_checkpoint(run):
        metrics_line_without_checkpoint(run)
        (run / "checkpoints" / "epoch-00003.eqx.k2j3.tmp").write_bytes(b"\x93NUMPY" + b"\0" * 100)

    def best_written_but_not_epoch_checkpoint(run):
        metrics_line_without_checkpoint(run)
        shutil.copy(reference / "checkpoints" / "epoch-00003.eqx", run / "checkpoints" / "best.eqx")

    return [
        torn_metrics_line,
        metrics_line_without_checkpoint,
        half_written_checkpoint,
        best_written_but_not_epoch_checkpoint,
    ]


def test_every_crash_state_resumes_to_the_same_numbers(reference, tmp_path, capsys):
    stopped = tmp_path / "stopped"
    assert cli("train", "--out", str(stopped), *ARGS, "--epochs", "2")[0] == 0
    for crash in crash_states(reference):
        run = shutil.copytree(stopped, tmp_path / crash.__name__)
        crash(run)
        code, err = cli("train", "--resume", "--out", str(run), "--epochs", str(EPOCHS), "--quiet", capsys=capsys)
        assert code == 0, (crash.__name__, err)
        assert_same_run(run, reference)
        assert not list(run.rglob("*.tmp")), crash.__name__


def test_resume_before_the_first_checkpoint_starts_over(reference, tmp_path, capsys):
    """A kill during the first epoch leaves config.json and an empty metrics.jsonl: resume starts at epoch 1."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(reference / "config.json", run / "config.json")
    (run / "metrics.jsonl").write_text("")
    code, err = cli("train", "--resume", "--out", str(run), "--quiet", capsys=capsys)
    assert code == 0, err
    assert_same_run(run, reference)


def small_config(**train):
    return RunConfig(ModelConfig(data_shape=(8, 8), hidden=(8,), likelihood="gaussian"), TrainConfig(**train))


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    """Two good epochs at lr 1e-3, then lr 1e30 (Gaussian pixels: the learned log-variance overflows):
    epoch 3 is caught inside the compiled epoch and nothing of it is written."""
    data, run = load_dataset("digits"), tmp_path / "run"
    fit(small_config(epochs=2), data, run, progress=False)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    diverging = RunConfig(small_config().model, TrainConfig(epochs=4, lr=1e30))
    with pytest.raises(Diverged, match=r"non-finite loss in epoch 3.*epoch-00002\.eqx"):
        fit(diverging, data, run, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    assert [m["epoch"] for m in read_metrics(run)] == [1, 2]


def test_divergence_on_the_command_line_exits_1_with_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    code, err = cli(
        "train",
        "--out",
        str(run),
        "--hidden",
        "8",
        "--lr",
        "1e30",
        "--likelihood",
        "gaussian",
        "--quiet",
        capsys=capsys,
    )
    assert code == 1 and len(err.strip().splitlines()) == 1 and "non-finite loss in epoch 1" in err, err
    assert not run.exists()  # nothing good was ever written


def test_overwrite_is_refused_without_the_flag_and_never_deletes_on_bad_input(reference, tmp_path, capsys):
    run = shutil.copytree(reference, tmp_path / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    code, err = cli("train", "--out", str(run), "--quiet", capsys=capsys)
    assert code == 2 and "--overwrite" in err
    for bad in (
        ["--latent-dim", "0"],
        ["--dataset", "no-such-data"],
        ["--lr", "-1"],
        ["--likelihood", "gaussian", "--binarize", "static", "--dataset", str(tmp_path / "x.npy")],
    ):
        code, err = cli("train", "--out", str(run), "--overwrite", "--quiet", *bad, capsys=capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (bad, err)
        assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("months of work")
    code, err = cli("train", "--out", str(other), "--overwrite", "--quiet", capsys=capsys)
    assert code == 2 and "not delete" in err and (other / "thesis.tex").exists()
    code, err = cli(
        "train", "--out", str(run), "--overwrite", "--epochs", "1", "--hidden", "8", "--quiet", capsys=capsys
    )
    assert code == 0, err
    assert len(read_metrics(run)) == 1


def test_a_run_stopped_early_stays_stopped_on_resume(tmp_path):
    """Early stopping decided after the last checkpoint must be decided again on resume, or a run killed
    right after that checkpoint would train one epoch more than the uninterrupted run."""
    config = RunConfig(
        ModelConfig(data_shape=(8, 8), hidden=(8,)),
        TrainConfig(epochs=30, validation_fraction=0.2, early_stopping=1, batch_size=256, lr=0.1),
    )
    data, run = load_dataset("digits"), tmp_path / "run"
    fit(config, data, run, progress=False)
    done = [m["epoch"] for m in read_metrics(run)]
    assert len(done) < 30  # it did stop early (patience 1, a large step size: epoch 3 here)
    fit(config, data, run, resume=True, progress=False)
    assert [m["epoch"] for m in read_metrics(run)] == done


def test_damaged_metrics_are_reported(reference, tmp_path, capsys):
    """A line in the middle of metrics.jsonl that is not JSON, or metrics missing an epoch the checkpoint
    has: exit 2 and one line (an unfinished last line is a crash's trace and is dropped instead)."""
    for name, damage in (("garbage", lambda lines: lines[:3] + ["#%!"] + lines[3:]), ("gap", lambda l: l[:3] + l[4:])):
        run = shutil.copytree(reference, tmp_path / name)
        lines = (run / "metrics.jsonl").read_text().splitlines()
        (run / "metrics.jsonl").write_text("\n".join(damage(lines)) + "\n")
        code, err = cli("train", "--resume", "--out", str(run), "--quiet", capsys=capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "metrics.jsonl" in err, (name, err)


def test_the_command_with_nothing_left_to_train_prints_one_line_and_writes_nothing(reference, tmp_path, capsys):
    run = shutil.copytree(reference, tmp_path / "run")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.rglob("*")) if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--epochs", str(EPOCHS)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{run}: already trained {EPOCHS} of {EPOCHS} epochs; nothing to do\n" and not captured.err
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.rglob("*")) if p.is_file()} == before
