"""benchmarks/published_table.py on fake run folders (nothing is trained): each row's command is the
protocol of the Exemplar VAE code, --report reads run folders finished or not, --row resumes and evaluates."""

import importlib.util
import json
from pathlib import Path

import jax.numpy as jnp
import pytest

from jaxvae import checkpoint
from jaxvae.cli.parser import build_parser
from jaxvae.cli.train import _schedule
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.runs import BEST_CHECKPOINT, CHECKPOINTS, CONFIG, METRICS, save_checkpoint
from jaxvae.train import init_state

spec = importlib.util.spec_from_file_location(
    "published_table", Path(__file__).parents[1] / "benchmarks" / "published_table.py"
)
published_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(published_table)

# Their settings, read off density_estimation.py's defaults and base_load_data.py (see docs/published-table.md)
THEIRS = {"batch_size": 100, "lr": 5e-4, "epochs": 2000, "binarize": "dynamic", "optimizer": "adam-normgrad"}


@pytest.mark.parametrize("name", [n for n, row in published_table.ROWS.items() if row.options is not None])
def test_each_row_trains_with_their_protocol(name, tmp_path):
    """The row's command parses as `jaxvae train` options and gives their settings: 10,000 of Fashion-MNIST's
    60,000 training images held out, full KL weight from epoch 100 (their epoch / 100), early stopping
    that lets 51 epochs after the warm-up pass without a better validation bound (their e > 50)."""
    command = published_table.train_command(name, tmp_path / name)
    assert command[1:4] == ["-m", "jaxvae.cli", "train"]
    args = build_parser().parse_args(command[3:])
    schedule = _schedule(args)
    assert {k: getattr(schedule, k) for k in THEIRS} == THEIRS
    assert schedule.dataset == "fashion-mnist" and round(schedule.validation_fraction * 60000) == 10000
    assert (schedule.kl_warmup_epochs + 1, schedule.early_stopping) == (100, 51)
    assert args.architecture == "gated" and args.hidden == (300, 300) and args.log_var_range == (-6.0, 2.0)
    assert args.prior == ("vamp:500" if "vamp" in name else "normal")


def test_the_conv_rows_have_no_command(tmp_path):
    with pytest.raises(Exception, match="not in jaxvae"):
        published_table.train_command("convhvae-vamp", tmp_path)
    assert published_table.main(["--row", "convhvae-vamp", "--runs-dir", str(tmp_path)]) == 2


def fake_run(run_dir: Path, epochs: int, best_epoch: int, seconds: float = 36.0, model=None) -> RunConfig:
    """A run folder as training leaves it after `epochs` epochs of the protocol's schedule (warm-up 99,
    patience 51), whose validation ELBO peaked at `best_epoch`: config.json and metrics.jsonl, and, for a
    `model` (ModelConfig), its initial state saved as the epoch checkpoint and best.eqx."""
    model = model or ModelConfig(data_shape=(28, 28), latent_dim=40, hidden=(300, 300), architecture="gated")
    train = TrainConfig(
        "digits", "dynamic", epochs=2000, validation_fraction=0.2, early_stopping=51, kl_warmup_epochs=99
    )
    config = RunConfig(model, train)
    run_dir.mkdir(parents=True)
    config.save(run_dir / CONFIG)
    lines = [
        {"epoch": e, "train_elbo": -240.0, "test_elbo": -241.0, "test_reconstruction": -220.0, "test_kl": 21.0,
         "beta": min(1.0, (e - 1) / 99), "kl_estimator": "closed form", "seconds": seconds,
         "examples_per_second": 1.0, "validation_elbo": -230.0 - abs(e - best_epoch) / 100}
        for e in range(1, epochs + 1)
    ]  # fmt: skip
    (run_dir / METRICS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    if model.data_shape == (8, 8):
        state = init_state(config)._replace(epoch=jnp.int32(epochs))
        save_checkpoint(run_dir, state, 3)
        checkpoint.save(run_dir / CHECKPOINTS / BEST_CHECKPOINT, state)
    return config


def test_report_of_finished_unfinished_and_missing_rows(tmp_path, capsys):
    """vae-gaussian stopped (151 - 100 = 51 epochs without a better bound) and evaluated; hvae-gaussian one
    epoch short of stopping; hvae-vamp still in its warm-up, where the count has not begun; vae-vamp absent."""
    fake_run(tmp_path / "vae-gaussian", 151, 100)
    (tmp_path / "vae-gaussian" / published_table.RESULT).write_text(
        json.dumps({"log_likelihood": -229.1, "log_likelihood_se": 0.5, "n": 10000})
    )
    fake_run(tmp_path / "hvae-gaussian", 150, 100, seconds=72.0)
    fake_run(tmp_path / "hvae-vamp", 98, 20)
    assert published_table.main(["--report", "--runs-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    rows = {line.split(" | ")[0].rsplit("(", 1)[1].rstrip(")"): line for line in lines}
    assert rows["vae-gaussian"].startswith("| VAE, Gaussian prior (vae-gaussian) | -228.70 ± 0.15 | -229.10 ± 0.50")
    assert "| -0.40 | 100 | 1.51 | finished at epoch 151, best validation ELBO -230.00," in rows["vae-gaussian"]
    assert "| 100 | 3.00 | unfinished at epoch 150, best validation ELBO -230.00 |" in rows["hvae-gaussian"]
    assert "| 20 | 0.98 | unfinished at epoch 98," in rows["hvae-vamp"]
    assert "not started" in rows["vae-vamp"] and "needs a GPU" in rows["convhvae-gaussian"]


@pytest.mark.slow
def test_a_row_resumes_its_run_folder_and_evaluates_the_best_model(tmp_path, capsys):
    """A tiny digits run that early stopping has already ended: --row resumes it (no epoch trains), then
    evaluates best.eqx with 5,000 importance samples on its test images and reports it."""
    model = ModelConfig(data_shape=(8, 8), latent_dim=2, hidden=(8,), architecture="gated")
    fake_run(tmp_path / "vae-gaussian", 151, 100, model=model)
    assert published_table.main(["--row", "vae-gaussian", "--runs-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "vae-gaussian" / published_table.RESULT).read_text())
    assert result["checkpoint"] == "best" and result["iw_samples"] == 5000
    assert result["n"] > 300 and result["log_likelihood_se"] > 0
    assert len((tmp_path / "vae-gaussian" / METRICS).read_text().splitlines()) == 151  # nothing trained
    out = capsys.readouterr().out
    assert f"{result['log_likelihood']:.2f} ± {result['log_likelihood_se']:.2f}" in out
    assert "finished at epoch 151" in out
