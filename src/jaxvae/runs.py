"""Run folders: the files a run writes, and reading them back.

A run folder holds `config.json`, `metrics.jsonl` (one JSON object per epoch, the first epoch 1),
`checkpoints/` (`epoch-NNNNN.eqx`, the latest `keep_checkpoints` of them, and `best.eqx`, that of the
best validation bound) and `figures/`. Importing this module loads no JAX; a run's data are read back by
`run_data`.
"""

import json
import math
import os
from pathlib import Path

from jaxvae import checkpoint
from jaxvae.config import CHECKPOINT_CHOICES, TrainConfig
from jaxvae.errors import InputError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
BEST_CHECKPOINT = "best.eqx"  # the checkpoint of the best validation bound so far


def epoch_record(
    epoch: int,
    train: dict,
    test: dict,
    beta: float,
    kl_estimator: str,
    seconds: float,
    examples_per_second: float,
    validation: dict[str, float] | None = None,
) -> dict:
    """One line of metrics.jsonl: the epoch's training bounds (`train["elbo"]` as `train_elbo`, and the
    objective's other bounds as `train_NAME`, e.g. `train_iwae_bound`), the test ELBO's terms (and a deep
    model's KL of each layer, `test_kl_layer_1`, ...), the KL weight, how the KL was computed, the epoch's
    seconds and throughput, and when there is a validation set the validation bounds (`validation["elbo"]`
    as `validation_elbo`, the objective's own as `validation_NAME`, e.g. `validation_iwae_bound`)."""
    record = {
        "epoch": epoch,
        "train_elbo": float(train["elbo"]),
        "test_elbo": float(test["elbo"]),
        "test_reconstruction": float(test["reconstruction"]),
        "test_kl": float(test["kl"]),
        "beta": float(beta),
        "kl_estimator": kl_estimator,
        "seconds": seconds,
        "examples_per_second": examples_per_second,
    }
    record |= {f"train_{name}": float(value) for name, value in train.items() if name != "elbo"}
    record |= {f"test_{name}": float(value) for name, value in test.items() if name.startswith("kl_layer_")}
    record |= {validation_key(name): float(value) for name, value in (validation or {}).items()}
    return record


def validation_key(bound: str) -> str:
    """The key of a validation bound in an epoch's record: `validation_elbo`, `validation_iwae_bound`, ..."""
    return f"validation_{bound}"


def write_epoch(run_dir: Path, record: dict, state, keep: int, best: bool) -> None:
    """An epoch's files, in the order resume relies on: its metrics line, then `best.eqx` when `best` (the
    best validation bound so far), then its epoch checkpoint of `state` (a `train.TrainState`), keeping the
    latest `keep`. A run killed between them resumes from the previous checkpoint, and the metrics are
    cut back to it."""
    append_metrics(run_dir / METRICS, record)
    if best:
        checkpoint.save(run_dir / CHECKPOINTS / BEST_CHECKPOINT, state)
    save_checkpoint(run_dir, state, keep)


def append_metrics(path: Path, record: dict) -> None:
    """Add one epoch's record as a line of metrics.jsonl, on disk (fsync'd) before this returns."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _parse_metrics(path: Path) -> list[dict]:
    """The records of metrics.jsonl; an unfinished last line (a crash while writing it) is dropped."""
    lines = path.read_text().splitlines() if path.exists() else []
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise InputError(f"damaged {path}: line {number} is not JSON") from None
        if not (isinstance(record, dict) and isinstance(record.get("epoch"), int)):
            raise InputError(f"damaged {path}: line {number} is not an epoch record")
        records.append(record)
    return records


def metrics_through(path: Path, epochs: int) -> list[dict]:
    """The records of the first `epochs` epochs, those a checkpoint of epoch `epochs` includes; InputError
    when one is missing."""
    kept = [r for r in _parse_metrics(path) if r["epoch"] <= epochs]
    if [r["epoch"] for r in kept] != list(range(1, epochs + 1)):
        raise InputError(f"{path} does not hold the metrics of epochs 1 to {epochs}, which the checkpoint has")
    return kept


def truncate_metrics(path: Path, epochs: int) -> None:
    """Keep the metrics of the first `epochs` epochs: those the checkpoint includes."""
    kept = metrics_through(path, epochs)
    checkpoint.write_atomically(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The epoch records of a run, oldest first (empty before the first epoch)."""
    return _parse_metrics(Path(run_dir) / METRICS)


def best_validation(records: list[dict], bound: str) -> tuple[float, int]:
    """(best validation value of `bound`, its epoch) among the epochs done, `bound` a name of the bounds the
    objective reports (`Objective.bound_key`); (-inf, last epoch) if none has one."""
    key = validation_key(bound)
    scored = [r for r in records if key in r]
    if not scored:
        return -math.inf, records[-1]["epoch"] if records else 0
    best = max(scored, key=lambda r: r[key])
    return best[key], best["epoch"]


def stopped_early(config: TrainConfig, epoch: int, best_epoch: int) -> bool:
    """Early stopping after `epoch`: `config.early_stopping` epochs without a better validation bound than that
    of `best_epoch`, counting none of the KL warm-up's epochs (1 to `kl_warmup_epochs`, where beta is still
    rising): the validation bound is at beta 1, which a run still warming up is not yet training."""
    counted_from = max(best_epoch, config.kl_warmup_epochs)
    return bool(config.early_stopping) and epoch - counted_from >= config.early_stopping


def save_checkpoint(run_dir: Path, state, keep: int) -> None:
    """checkpoints/epoch-NNNNN.eqx of `state` (a `train.TrainState`, N its epoch), keeping the latest `keep`."""
    checkpoint.save(run_dir / CHECKPOINTS / f"epoch-{int(state.epoch):05d}.eqx", state)
    for old in epoch_checkpoints(run_dir)[:-keep]:
        old.unlink()


def epoch_checkpoints(run_dir: Path) -> list[Path]:
    """The epoch checkpoints of a run, oldest first."""
    return sorted((run_dir / CHECKPOINTS).glob("epoch-*.eqx"))


def epochs_done(run_dir: Path) -> int:
    """The epoch of the newest epoch checkpoint of a run, what a resumed run starts from; 0 when it has none."""
    found = epoch_checkpoints(run_dir)
    return int(found[-1].stem.removeprefix("epoch-")) if found else 0


def nothing_to_train(config: TrainConfig, run_dir: Path, bound_key: str) -> str | None:
    """Why resuming `run_dir` to `config.epochs` would train nothing ("already trained 3 of 3 epochs",
    "stopped early at epoch 7: ..." of the validated bound `bound_key`), or None when epochs are left. A run
    already past `config.epochs` is not this case: resuming it is an error (`train.resume_state`). Damaged
    metrics are an InputError."""
    done = epochs_done(run_dir)
    records = metrics_through(run_dir / METRICS, done)
    if done == config.epochs:
        return f"already trained {done} of {config.epochs} epochs"
    _, best_epoch = best_validation(records, bound_key)
    if done and done < config.epochs and stopped_early(config, done, best_epoch):
        return f"stopped early at epoch {done}: no better validation bound since epoch {best_epoch}"
    return None


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest epoch checkpoint of a run; InputError if it has none."""
    found = epoch_checkpoints(run_dir)
    if not found:
        raise InputError(f"{run_dir} has no checkpoint to load")
    return found[-1]


def model_checkpoint(run_dir: Path, which: str = "latest") -> Path:
    """The checkpoint to load a run's model from: "latest", the newest epoch checkpoint, or "best", that of
    the best validation bound (`best.eqx`); InputError when the run has none."""
    if which not in CHECKPOINT_CHOICES:
        raise InputError(f"checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got {which!r}")
    if which == "latest":
        return latest_checkpoint(run_dir)
    best = run_dir / CHECKPOINTS / BEST_CHECKPOINT
    if not best.exists():
        raise InputError(
            f"{run_dir} has no {CHECKPOINTS}/{BEST_CHECKPOINT}: it trained without a validation set "
            "(--validation-fraction), or no epoch finished; use the latest checkpoint"
        )
    return best
