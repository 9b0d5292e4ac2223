"""A run folder's model and data, for the commands that evaluate or encode a run."""

import dataclasses
from pathlib import Path

from jaxvae.config import RunConfig


def run_data(args, split: str = "test"):
    """(run config, model, data x of the chosen split ready for the model, labels or None) for a run folder.

    The dataset and binarization default to the run's own; binarized evaluation data are sampled with the
    fixed seed data.TEST_BINARIZATION_SEED, as in training, so evaluations compare.
    """
    import numpy as np

    from jaxvae.data import TEST_BINARIZATION_SEED, binarized, load_dataset
    from jaxvae.runs import CONFIG
    from jaxvae.train import check_data, load

    run_dir = Path(args.run_dir)
    config = RunConfig.load(run_dir / CONFIG)
    data = load_dataset(args.dataset or config.train.dataset, image_size=config.train.image_size, progress=False)
    method = args.binarize or config.train.binarize
    check_data(data, RunConfig(config.model, dataclasses.replace(config.train, binarize=method)))
    if split == "all":  # e.g. an .npz of held-out data: every example in it
        x = np.concatenate([data.x_train, data.x_test])
        y = None if data.y_train is None else np.concatenate([data.y_train, data.y_test])
    else:
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    return config, load(run_dir), binarized(x, method, TEST_BINARIZATION_SEED), y
