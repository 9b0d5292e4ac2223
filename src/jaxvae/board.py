"""TensorBoard event files of a run (`jaxvae train --tensorboard`) in RUN_DIR/tensorboard/, written by tensorboardX.

Scalars: every number of each metrics.jsonl record but `epoch`, under its metrics.jsonl name, at step =
the epoch. Images: the run's figures (RGB, uint8), at the last epoch. tensorboardX is imported only here,
when a run asks for it. View with `tensorboard --logdir RUN_DIR/tensorboard`.
"""

import contextlib
import time
from pathlib import Path

import numpy as np

FOLDER = "tensorboard"


def writer(run_dir: Path, resumed_at: int = 0, enabled: bool = True):
    """A tensorboardX `SummaryWriter` (a context manager) for the epochs after `resumed_at`; when not
    `enabled`, a context that yields None.

    On resume, it marks a restart at epoch `resumed_at + 1`, so that TensorBoard drops what an interrupted
    run logged from that epoch on (as `metrics.jsonl` is cut back to the checkpoint).
    """
    if not enabled:
        return contextlib.nullcontext()
    from tensorboardX import SummaryWriter

    # tensorboardX names a file by the second it was opened: the suffix keeps two files of one second apart,
    # and in the order TensorBoard must read them
    suffix = f".{time.time_ns()}"
    return SummaryWriter(
        str(run_dir / FOLDER), purge_step=resumed_at + 1 if resumed_at else None, filename_suffix=suffix
    )


def add_epoch(events, record: dict) -> None:
    """One metrics.jsonl record's numbers as scalars at step `record["epoch"]`, flushed to disk
    (`kl_estimator`, a word, is not a scalar)."""
    for name, value in record.items():
        if name != "epoch" and not isinstance(value, str):
            events.add_scalar(name, value, record["epoch"])
    events.flush()


def add_figures(run_dir: Path, paths: list[Path], epoch: int) -> None:
    """The PNG figures as images `figures/NAME` at step `epoch`."""
    from PIL import Image

    with writer(run_dir) as events:
        assert events is not None  # an enabled writer's
        for path in paths:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            events.add_image(f"figures/{path.stem}", pixels, epoch, dataformats="HWC")
