"""Labels as data for semi-supervised learning: which training examples keep their labels, and which of the
labelled and unlabelled examples each step of an epoch sees.

The labelled subset is balanced, N / C examples of each of the C classes, drawn by a label seed; the other
training examples are unlabelled. Every step sees B_u unlabelled and B_l labelled examples, a fixed ratio as in
Kingma et al. (2014)'s code (`learn_yz_x_ss.py`: each minibatch holds n_l / n_mb labelled and n_u / n_mb
unlabelled examples), where B_l = max(1, round(B_u n_l / n_u)) by default. An epoch is one pass over the
unlabelled examples; the labelled ones are cycled through fresh permutations as often as the steps need them.
"""

from typing import NamedTuple

import numpy as np

from jaxvae.errors import InputError


def labelled_subset(y: np.ndarray, labels: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labelled, unlabelled): sorted indices into y (n,) of `labels` examples, labels / classes of each class
    0 .. classes - 1, drawn by `seed`, and of every other example (among them any whose label is outside the
    classes, e.g. -1 for unknown). InputError where `labels` is not a positive multiple of `classes` or a class
    has fewer than labels / classes examples."""
    if labels <= 0 or labels % classes:
        raise InputError(f"--labels must be a positive multiple of the {classes} classes, got {labels}")
    per_class, rng = labels // classes, np.random.default_rng(seed)
    chosen = []
    for label in range(classes):
        members = np.flatnonzero(y == label)
        if len(members) < per_class:
            raise InputError(
                f"--labels {labels} takes {per_class} examples of each class: class {label} has {len(members)}"
            )
        chosen.append(rng.choice(members, per_class, replace=False))
    labelled = np.sort(np.concatenate(chosen))
    return labelled, np.setdiff1d(np.arange(len(y)), labelled)


def labelled_batch_size(unlabelled_batch: int, labelled: int, unlabelled: int) -> int:
    """B_l = max(1, round(B_u n_l / n_u)): the labelled examples per step that keep the data's ratio n_l : n_u."""
    return max(1, round(unlabelled_batch * labelled / unlabelled))


class StepPlan(NamedTuple):
    """The examples of each of an epoch's N steps: `unlabelled` (N, B_u) indices into the unlabelled examples
    with their `weights` (N, B_u) (0 for the padding of the last step), `labelled` (N, B_l) indices into the
    labelled examples (every one real)."""

    unlabelled: np.ndarray
    weights: np.ndarray
    labelled: np.ndarray


def step_plan(
    rng: np.random.Generator, labelled: int, unlabelled: int, unlabelled_batch: int, labelled_batch: int
) -> StepPlan:
    """An epoch's `StepPlan` over `labelled` and `unlabelled` examples, drawn from `rng`: N = ceil(n_u / B_u)
    steps over one permutation of the unlabelled examples (the last step padded with index 0 at weight 0), and
    the labelled examples cycled through as many fresh permutations as the N B_l draws need. The shapes depend
    on the sizes alone: one compiled epoch serves every epoch."""
    if labelled < 1 or unlabelled < 1:
        raise InputError(
            f"semi-supervised training needs labelled and unlabelled examples, got {labelled} and {unlabelled}"
        )
    steps = -(-unlabelled // unlabelled_batch)
    pad = steps * unlabelled_batch - unlabelled
    order = np.concatenate([rng.permutation(unlabelled), np.zeros(pad, np.int64)])
    weights = np.concatenate([np.ones(unlabelled, np.float32), np.zeros(pad, np.float32)])
    cycles = -(-steps * labelled_batch // labelled)
    cycled = np.concatenate([rng.permutation(labelled) for _ in range(cycles)])[: steps * labelled_batch]
    return StepPlan(
        order.reshape(steps, unlabelled_batch).astype(np.int32),
        weights.reshape(steps, unlabelled_batch),
        cycled.reshape(steps, labelled_batch).astype(np.int32),
    )
