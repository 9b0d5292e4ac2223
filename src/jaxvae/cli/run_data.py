"""A run folder's model and data, for the commands that evaluate or encode a run."""

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from jaxvae.config import RunConfig

if TYPE_CHECKING:  # for the annotations: the functions import what they use
    import numpy as np

    from jaxvae.data import Dataset


def run_data(args, split: str = "test", checkpoint: str = "latest"):
    """(run config, model, data x of the chosen split ready for the model, labels or None, conditions or None)
    for a run folder: the model of its `checkpoint` ("latest" or "best", see `train.load`), the run's data as
    trained (`run_data.load_data`), with --dataset, --data-dir and --binarize where given; the conditions
    c (n, m) of a conditional run's examples (`conditions`)."""
    config, vae, data = run_model_and_data(args, checkpoint)
    return config, vae, *split_examples(args, config, data, split)


def run_model_and_data(args, checkpoint: str = "latest"):
    """(run config, model of its `checkpoint`, the run's data as trained, or --dataset and --data-dir where
    given), the data checked against the model (binarized by --binarize where given)."""
    from jaxvae.run_data import load_data
    from jaxvae.runs import CONFIG
    from jaxvae.train import check_data, load

    run_dir = Path(args.run_dir)
    config = RunConfig.load(run_dir / CONFIG)
    data = load_data(config, dataset=args.dataset, data_dir=args.data_dir)
    check_data(data, _binarized_by(args, config), training=False)
    return config, load(run_dir, checkpoint=checkpoint), data


def split_examples(args, config: RunConfig, data: "Dataset", split: str):
    """(x of `split` ready for the model, binarized by --binarize or as trained; labels or None; conditions or
    None) of the run's `data`."""
    from jaxvae.builder import build_binarization
    from jaxvae.run_data import evaluation_split

    x, y = evaluation_split(data, split, build_binarization(_binarized_by(args, config).train))
    return x, y, conditions(config, data, split, y)


def _binarized_by(args, config: RunConfig) -> RunConfig:
    """The run's config with --binarize where given."""
    return RunConfig(config.model, dataclasses.replace(config.train, binarize=args.binarize or config.train.binarize))


def conditions(config: RunConfig, data: "Dataset", split: str, y: "np.ndarray | None") -> "np.ndarray | None":
    """The conditions c (n, m) of the examples of `split` ("test", "train" or "all", as `evaluation_split`), whose
    labels are y (n,) (checked by `run_data`): the labels one-hot for a run trained with --condition label, the
    data's condition arrays for --condition array; None for a model of p(x)."""
    import numpy as np

    if config.train.condition == "label" and y is not None:
        return np.eye(config.model.condition_dim, dtype=np.float32)[y]
    if config.train.condition == "array" and data.c_train is not None and data.c_test is not None:
        parts = {"train": (data.c_train,), "test": (data.c_test,), "all": (data.c_train, data.c_test)}[split]
        return np.concatenate(parts)
    return None
