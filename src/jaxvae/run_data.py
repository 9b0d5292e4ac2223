"""A run's data read back as it was trained, and the split its commands evaluate. Importing this module loads
no JAX."""

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jaxvae.config import RunConfig
from jaxvae.data import NAMED_IDX, Dataset, load_dataset
from jaxvae.errors import InputError
from jaxvae.keys import DataSeed

if TYPE_CHECKING:  # a part the caller makes (`builder.build_binarization`); its module imports JAX
    from jaxvae.binarization import Binarization


def load_data(
    config: RunConfig,
    *,
    dataset: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool = False,
) -> Dataset:
    """A run's data as it was trained: its dataset (or `dataset`), from the folder it recorded (or `data_dir`;
    a recorded folder that is gone is passed over; `data_dir` is for mnist and fashion-mnist only), resized to its
    image size. InputError when the examples do not have as many values as the model takes, or the run's data are
    not where it recorded them."""
    name = str(dataset or config.train.dataset)
    if not name:
        raise InputError("the run trained on arrays given in Python, not read from a file: pass --dataset")
    if data_dir is not None and name not in NAMED_IDX:
        raise InputError(f"--data-dir is where mnist and fashion-mnist are found, not {name}")
    recorded = config.train.data_dir
    if data_dir is None and recorded is not None and Path(recorded).is_dir():
        data_dir = recorded
    if dataset is None and name not in ("digits", *NAMED_IDX) and not Path(name).exists():
        raise InputError(f"the run's data are no longer at {name}: pass --dataset with where they are now")
    data = load_dataset(name, data_dir=data_dir, image_size=config.train.image_size, progress=progress)
    if math.prod(data.shape) != config.model.data_dim:
        raise InputError(
            f"{name} has examples of shape {tuple(data.shape)} ({math.prod(data.shape)} values), "
            f"the run's model takes {config.model.data_shape} ({config.model.data_dim} values)"
        )
    return data


def evaluation_split(data: Dataset, split: str, binarization: "Binarization") -> tuple[np.ndarray, np.ndarray | None]:
    """(x (n, d), labels (n,) or None) of `split`: "test", "train", or "all" (the train examples, then the
    test ones), binarized by `binarization` as a run's test data are, with the fixed seed DataSeed.TEST_BINARIZATION,
    so that evaluations compare."""
    if split == "all":
        x = np.concatenate([data.x_train, data.x_test])
        y = None if data.y_train is None or data.y_test is None else np.concatenate([data.y_train, data.y_test])
    else:
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    return binarization.held_out(x, DataSeed.TEST_BINARIZATION), y
