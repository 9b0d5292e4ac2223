"""`jaxvae train` with Kingma et al.'s optimization of M2 (their code, `nips14-ssl`) in place of Optax's Adam,
to measure whether it is what separates their M1+M2 test error from jaxvae's (the Semi-supervised page).

The first argument names it, the second is N, the run's training examples; the rest is `jaxvae train`'s
command line:

- `prior`: their N(0, 1) prior on every weight matrix (`VAE_YZ_X.py`, `MLP_Categorical.py`: biases have none),
  divided by the N training examples as their objective divides it (`learn_yz_x_ss.py`), a decay of the
  weights by 1 / N added to the gradient of the per-example bound (`optax.add_decayed_weights`), then
  Optax's Adam at `--lr`.
- `adam`: the same prior, then their Adam (`adam.py`): m and v as Adam's, the step -lr m / sqrt(v) with
  neither bias correction nor epsilon (a parameter whose gradient has always been 0 does not move).

    .venv/bin/python benchmarks/kingma_optimizer.py prior 60000 --dataset m1.npz --labels 100 --seed 0 \\
        --likelihood gaussian --hidden 300 --latent-dim 50 --activation softplus --lr 3e-4 --batch-size 499 \\
        --epochs 200 --out runs/m1m2-prior

A resumed run needs the same first two arguments (the run's config.json records `--optimizer adam`).
"""

import sys

import jax
import jax.numpy as jnp
import optax

from jaxvae import builder
from jaxvae.cli import run


def weight_matrices(params):
    """True for the leaves that their prior covers: the arrays of two or more axes."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def their_adam(lr: float, b1: float = 0.9, b2: float = 0.999) -> optax.GradientTransformation:
    """`adam.py`'s AdaM: m += (1 - b1)(g - m), v += (1 - b2)(g^2 - v), step -lr m / sqrt(v)."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return zeros, zeros

    def update(grads, state, params=None):
        m, v = state
        m = jax.tree.map(lambda m, g: m + (1 - b1) * (g - m), m, grads)
        v = jax.tree.map(lambda v, g: v + (1 - b2) * (g * g - v), v, grads)
        step = jax.tree.map(lambda m, v: jnp.where(v > 0, -lr * m / jnp.sqrt(v), 0.0), m, v)
        return step, (m, v)

    return optax.GradientTransformation(init, update)


def their_optimization(variant: str, examples: int, lr: float) -> optax.GradientTransformation:
    """`variant`'s optimizer at step size `lr`: the prior's decay by 1 / `examples`, then `prior`'s Optax Adam
    or `adam`'s `their_adam`."""
    adam = {"prior": optax.adam, "adam": their_adam}[variant]
    return optax.chain(optax.add_decayed_weights(1 / examples, mask=weight_matrices), adam(lr))


def main():
    variant, examples, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    builder.OPTIMIZERS["adam"] = lambda lr: their_optimization(variant, examples, lr)
    run(["train", *argv])


if __name__ == "__main__":
    main()
