"""A run folder's model and data, for the commands that evaluate or encode a run."""

import dataclasses
from pathlib import Path

from jaxvae.config import RunConfig
from jaxvae.errors import InputError


def run_data(args, split: str = "test", checkpoint: str = "latest"):
    """(run config, model, data x of the chosen split ready for the model, labels or None) for a run folder:
    the model of its `checkpoint` ("latest" or "best", see `train.load`), the run's data as trained
    (`run_data.load_data`), with --dataset, --data-dir and --binarize where given."""
    from jaxvae.builder import build_binarization
    from jaxvae.run_data import evaluation_split, load_data
    from jaxvae.runs import CONFIG
    from jaxvae.train import check_data, load

    run_dir = Path(args.run_dir)
    config = RunConfig.load(run_dir / CONFIG)
    data = load_data(config, dataset=args.dataset, data_dir=args.data_dir)
    method = args.binarize or config.train.binarize
    check_data(data, RunConfig(config.model, dataclasses.replace(config.train, binarize=method)), training=False)
    x, y = evaluation_split(data, split, build_binarization(dataclasses.replace(config.train, binarize=method)))
    return config, load(run_dir, checkpoint=checkpoint), x, y


def conditions(config: RunConfig, y):
    """The conditions c (n, C) of a run's examples with labels y (n,) (from `run_data`, which checked them): the
    labels one-hot for a run trained with --condition label, else None."""
    if not config.model.condition_dim or y is None:
        return None
    import jax

    return jax.nn.one_hot(y, config.model.condition_dim)


def refuse_conditional(config: RunConfig, command: str) -> None:
    """Refuse a conditional run (trained with --condition label) in a command that does not take one yet."""
    if config.model.condition_dim:
        raise InputError(
            f"jaxvae {command} does not yet take a conditional run (trained with --condition label): "
            "jaxvae sample --label Y draws from it, evaluate and encode read it"
        )
