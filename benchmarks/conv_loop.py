"""Seconds of a gradient step of the ConvHVAE's decoder (benchmarks/conv_hvae.py) on a CPU: compiled alone
and called once per step, against the same step inside `lax.scan`, as jaxvae's compiled epoch runs it.

XLA's CPU convolutions in channels-first layout (Equinox's Conv2d) run far slower inside a loop's body
than outside one (github jax-ml/jax#12868, open); this measures what that costs the published table's
ConvHVAE rows. The step: the decoder's forward and backward pass on a batch of random latents, the sum of
squared logits as the loss, plain gradient descent. Each figure is the best of the rounds.

    .venv/bin/python benchmarks/conv_loop.py               # batch 100, the rows' batch (a quarter of an hour on a core)
    .venv/bin/python benchmarks/conv_loop.py --batch 10    # a smoke run
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp

from conv_hvae import ConvDecoder
from throughput import best_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100, help="latents per step (the rows' batch: 100)")
    parser.add_argument("--steps", type=int, default=2, help="steps of the scan")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    key = jax.random.PRNGKey(0)
    params, static = eqx.partition(ConvDecoder(40, 40, (28, 28, 1), key=key), eqx.is_array)
    z = jax.random.normal(key, (args.batch, 80))

    def step(params, z):
        grads = jax.grad(lambda p: jnp.sum(jax.vmap(eqx.combine(p, static))(z) ** 2))(params)
        return jax.tree.map(lambda p, g: p - 1e-6 * g, params, grads)

    alone = jax.jit(step)
    scanned = jax.jit(lambda p, z: jax.lax.scan(lambda p, _: (step(p, z), None), p, None, length=args.steps)[0])
    jax.block_until_ready((alone(params, z), scanned(params, z)))  # compile both
    t_alone = best_seconds(lambda: jax.block_until_ready(alone(params, z)), args.rounds)[0]
    t_scan = best_seconds(lambda: jax.block_until_ready(scanned(params, z)), args.rounds)[0] / args.steps
    print(
        f"ConvHVAE decoder, batch {args.batch}, {jax.devices()[0].platform}: a step compiled alone "
        f"{t_alone:.2f} s, inside lax.scan {t_scan:.2f} s ({t_scan / t_alone:.1f} x)"
    )


if __name__ == "__main__":
    main()
