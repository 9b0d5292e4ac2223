"""Speed of an M2 training step with a prior per class (a Gaussian mixture, the VampPrior) against N(0, I).

M1+M2's M2 at 1000 labels (`docs/semisupervised.md`): 11 input features, q(y | x) 11-500-10, q(z | x, y)
[11 + 10]-500-[50, 50], p(x | y, z) [50 + 10]-500-[11, 11] Gaussian, softplus; a step of 295 unlabelled and 5
labelled examples, the ELBO per class, the step's value and gradient. With a prior per class, each unlabelled
example's bound under class y needs log p(z | y), the mixture of class y's K components: 295 x 10 x K x 50
squared differences a step. The data are random (the speed does not depend on their values); each prior's
time is the best of `--rounds` rounds of 10 steps, reported as the ratio to N(0, I)'s in the same run.

    .venv/bin/python benchmarks/class_prior_speed.py            # mixture:100 and vamp:100
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxvae.config import ModelConfig
from jaxvae.objectives import Elbo
from jaxvae.semi_train import build_semisupervised
from jaxvae.semisupervised import M2
from throughput import best_seconds

FEATURES, HIDDEN, LATENT, CLASSES = 11, 500, 50, 10
LABELLED, UNLABELLED, BATCH_L, BATCH_U = 1000, 59_000, 5, 295
STEPS = 10


def step_seconds(prior: str, rounds: int) -> float:
    """Wall-clock seconds of one step (value and gradient) of M2 with `prior`, the best of `rounds` x 10 steps."""
    shape = dict(data_shape=(FEATURES,), latent_dim=LATENT, hidden=(HIDDEN,), activation="softplus")
    config = ModelConfig(**shape, likelihood="gaussian", prior=prior)
    model = build_semisupervised(config, CLASSES, key=jax.random.PRNGKey(0))
    objective = M2.with_paper_alpha(Elbo(), LABELLED, UNLABELLED)
    labelled_key, unlabelled_key = jax.random.split(jax.random.PRNGKey(1))
    x_l = jax.random.normal(labelled_key, (BATCH_L, FEATURES))
    x_u = jax.random.normal(unlabelled_key, (BATCH_U, FEATURES))
    y_l, weights = jnp.arange(BATCH_L) % CLASSES, jnp.ones(BATCH_U)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    @jax.jit
    def step(params, key):
        def loss(params):
            return objective(eqx.combine(params, static), x_l, y_l, x_u, weights, key=key)[0]

        return jax.value_and_grad(loss)(params)

    def steps():
        for i in range(STEPS):
            jax.block_until_ready(step(params, jax.random.PRNGKey(i)))

    steps()  # compiles
    return float(best_seconds(steps, rounds)[0]) / STEPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", default="mixture:100,vamp:100", help="the priors per class to time")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    baseline = step_seconds("normal", args.rounds)
    print(f"{'prior':<12} {'ms a step':>10} {'/ N(0, I)':>10}")
    print(f"{'normal':<12} {1e3 * baseline:>10.1f} {1:>10.2f}")
    for prior in args.priors.split(","):
        seconds = step_seconds(prior, args.rounds)
        print(f"{prior:<12} {1e3 * seconds:>10.1f} {seconds / baseline:>10.2f}")


if __name__ == "__main__":
    main()
