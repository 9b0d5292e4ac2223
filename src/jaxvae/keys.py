"""The purposes of jaxvae's random numbers, each named once with the number it draws from.

A run's JAX keys are PRNGKey(train.seed) folded with a `Run` purpose (`run_key`); an evaluation's are its
own root, PRNGKey(`jaxvae evaluate --seed`), folded with an `Evaluation` purpose. Within a purpose, keys are folded
further by an index (the epoch, an example, a chunk of samples). The data's NumPy generators are seeded
with a `DataSeed`, the same in every run, so that test sets and splits compare across runs; `--binarize
static` samples the training set once with the run's own seed. Within each family no two purposes share a
number (`enum.unique`), and tests/test_keys.py checks that no two keys derived from one root coincide.
"""

import enum


@enum.unique
class Run(enum.IntEnum):
    """Folded into PRNGKey(train.seed); a sweep derives each member's keys from its own seed."""

    INIT = 0  # the initial parameters
    EPOCH = 1  # folded again with the epoch (1-based): its shuffle, dynamic binarization and sampling noise
    TEST = 2  # the test ELBO after each epoch (one key, so that epochs compare)
    VALIDATION = 3  # the validation bounds after each epoch
    SAMPLES_FIGURE = 4  # the prior draws of figures/samples.png


@enum.unique
class Evaluation(enum.IntEnum):
    """Folded into an evaluation's key (`evaluate.report`, `gaps.inference_gaps`)."""

    ELBO = 0  # the ELBO's draws
    IMPORTANCE_WEIGHTED = 1  # the draws of L_K (the gaps' L_K with q* as the proposal shares them)
    KL_PER_DIMENSION = 2  # the KL per latent dimension, where it has no closed form
    GAPS = 4  # the fit of q* to each example, and the ELBOs of q and q*


@enum.unique
class DataSeed(enum.IntEnum):
    """Seeds of NumPy generators: fixed, the same in every run."""

    SPLIT = 0  # the train/test split of data without one
    TEST_BINARIZATION = 1  # the one binarization of the test set
    VALIDATION_SPLIT = 2  # the validation examples held out of the training set
    VALIDATION_BINARIZATION = 3  # the one binarization of the validation set
    EXPLORE_SUBSET = 4  # the test examples `jaxvae explore` shows when there are more than it draws


MOMENTS_SEED = 0  # PRNGKey(MOMENTS_SEED): the Monte Carlo posterior moments of a flow, so figures and codes repeat


def run_key(seed: int, purpose: Run):
    """PRNGKey(seed) folded with `purpose`: the key of that purpose in the run of seed `seed`."""
    import jax  # here, not above: the data readers use this module before JAX is imported

    return jax.random.fold_in(jax.random.PRNGKey(seed), purpose)
