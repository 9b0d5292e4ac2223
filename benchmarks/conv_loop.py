"""Training images a second of a convolutional model on a CPU: its epoch compiled as one `lax.scan`
(`train.make_epoch`) against the loop on the host over the compiled step that jaxvae runs for such models
there (`train.make_host_loop_epoch`), measured in the same run.

XLA's CPU convolutions in channels-first layout (Equinox's Conv2d) run far slower inside a loop's body
than compiled alone (github jax-ml/jax#12868, open), and the scanned epoch is such a loop. The models:
`conv`, jaxvae's `--architecture conv` (its default channels, 32 and 64, and latent size, 2);
`convhvae`, the published table's ConvHVAE (`benchmarks/conv_hvae.py`, the `--row convhvae-gaussian`
options). Random binary images of Fashion-MNIST's shape, batch 100, the ELBO at full weight. Each figure
is the best of the rounds, the two epochs interleaved, after one epoch of each to compile.

    .venv/bin/python benchmarks/conv_loop.py                                 # jaxvae's conv, 1,000 images
    .venv/bin/python benchmarks/conv_loop.py --model convhvae --images 100   # about ten minutes on a core
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import train
from jaxvae.cli.parser import build_parser
from jaxvae.cli.train import model_config
from jaxvae.config import RunConfig, TrainConfig
from jaxvae.objectives import objective_from
from published_table import PROTOCOL, ROWS
from throughput import best_seconds

MODELS = {  # each model's `jaxvae train` options
    "conv": ("--architecture", "conv"),
    "convhvae": (*PROTOCOL, *ROWS["convhvae-gaussian"].options),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="conv")
    parser.add_argument("--images", type=int, default=1000, help="training images in an epoch")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    options = build_parser().parse_args(["train", "--out", "-", *MODELS[args.model]])
    config = RunConfig(model_config(options, (28, 28)), TrainConfig(batch_size=100))
    state = train.init_state(config)
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    assert train.loops_on_host(static) == (jax.default_backend() == "cpu")
    optimizer, objective = train.make_optimizer(config.train), objective_from(config)
    x = jnp.asarray(np.random.default_rng(0).random((args.images, 784)) < 0.3, jnp.float32)
    epochs = {
        "one compiled lax.scan": train.make_epoch(static, optimizer, config.train),
        "host loop over the compiled step": train.make_host_loop_epoch(
            train.make_step(static, optimizer, config.train), config.train.batch_size
        ),
    }
    seconds = {name: np.inf for name in epochs}
    for r in range(args.rounds + 1):  # round 0 compiles
        for name, epoch in epochs.items():
            p, o = jax.tree.map(jnp.copy, (params, state.opt_state))  # each epoch donates its own copy
            run = lambda e=epoch, p=p, o=o: jax.block_until_ready(e(p, o, x, train.epoch_key(0, 1), objective))  # noqa: E731
            wall = best_seconds(run, 1)[0]
            if r:
                seconds[name] = min(seconds[name], wall)
    print(f"{args.model}, {args.images} images of 28 x 28, batch 100, {jax.devices()[0].platform}:")
    rates = {name: args.images / s for name, s in seconds.items()}
    for name, rate in rates.items():
        print(f"  {name}: {rate:.2f} images/s")
    scanned, looped = rates.values()
    print(f"  the host loop's throughput: {looped / scanned:.1f} x the scan's")


if __name__ == "__main__":
    main()
