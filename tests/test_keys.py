"""The purposes of the random keys: no two share a key, and each keeps its number."""

import itertools

import jax
import numpy as np

from jaxvae.keys import DataSeed, Evaluation, Run, run_key
from jaxvae.train import epoch_key


def distinct(keys: dict) -> None:
    values = {name: tuple(np.asarray(key).tolist()) for name, key in keys.items()}
    for (a, key_a), (b, key_b) in itertools.combinations(values.items(), 2):
        assert key_a != key_b, f"{a} and {b} share a key"


def test_no_two_purposes_share_a_key():
    """Within a run (three seeds, the first 50 epochs) every derived key is distinct, and so within an
    evaluation (its key its own root, PRNGKey(evaluate --seed)). Two purposes of one number are refused when
    `jaxvae.keys` is imported (`enum.unique`)."""
    run = {}
    for seed in (0, 1, 2):
        run |= {(seed, purpose.name): run_key(seed, purpose) for purpose in Run}
        run |= {(seed, "epoch", e): epoch_key(seed, e) for e in range(1, 51)}
    distinct(run)
    for seed in (0, 1):
        evaluation = jax.random.PRNGKey(seed)
        distinct({purpose.name: jax.random.fold_in(evaluation, purpose) for purpose in Evaluation})


def test_the_keys_keep_their_numbers():
    """The numbers the seed's model was trained with (tests/test_train.py pins its metrics)."""
    assert [Run.INIT, Run.EPOCH, Run.TEST, Run.VALIDATION] == [0, 1, 2, 3]
    assert [Evaluation.ELBO, Evaluation.IMPORTANCE_WEIGHTED, Evaluation.KL_PER_DIMENSION, Evaluation.GAPS] == [
        0,
        1,
        2,
        4,
    ]
    assert [DataSeed.SPLIT, DataSeed.TEST_BINARIZATION, DataSeed.VALIDATION_SPLIT] == [0, 1, 2]
    assert DataSeed.VALIDATION_BINARIZATION == 3
    key = jax.random.PRNGKey(7)  # the evaluation's ELBO and L_K keys are those jax.random.split gives
    np.testing.assert_array_equal(
        jax.random.split(key),
        [jax.random.fold_in(key, Evaluation.ELBO), jax.random.fold_in(key, Evaluation.IMPORTANCE_WEIGHTED)],
    )
