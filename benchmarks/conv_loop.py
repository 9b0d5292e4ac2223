"""Training images a second of a convolutional model on a CPU: its epoch compiled as one `lax.scan`
(`train.make_epoch` with `looping.COMPILED`) against the loop on the host over the compiled step that jaxvae
runs for such models there (`looping.ON_HOST`), measured in the same run; then its test images a second of
L_K (`evaluate.log_likelihood`, its loop over the chunks compiled or on the host, as `jaxvae evaluate` runs
it for such models there).

XLA's CPU convolutions in channels-first layout (Equinox's Conv2d) run far slower inside a loop's body
than compiled alone (github jax-ml/jax#12868, open), and the scanned epoch is such a loop. The models:
`conv`, jaxvae's `--architecture conv` (its default channels, 32 and 64, and latent size, 2);
`convhvae`, the published table's ConvHVAE (`benchmarks/conv_hvae.py`, the `--row convhvae-gaussian`
options). Random binary images of Fashion-MNIST's shape, batch 100, the ELBO at full weight; L_K of
`--iw-images` of them with K = `--iw-samples`, `jaxvae evaluate`'s chunks of 500 draws and batches of 20
images. Each figure is the best of the rounds, the two ways interleaved, after one run of each to compile.

    .venv/bin/python benchmarks/conv_loop.py                                 # jaxvae's conv, 1,000 images
    .venv/bin/python benchmarks/conv_loop.py --model convhvae --images 100   # about ten minutes on a core
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxvae import evaluate, looping, train
from jaxvae.builder import build_objective, build_optimizer
from jaxvae.cli.parser import build_parser
from jaxvae.cli.train import model_config
from jaxvae.config import RunConfig, TrainConfig
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
    parser.add_argument("--iw-images", type=int, default=20, help="images whose L_K is evaluated")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of L_K")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()

    options = build_parser().parse_args(["train", "--out", "-", *MODELS[args.model]])
    config = RunConfig(model_config(options, (28, 28)), TrainConfig(batch_size=100))
    state = train.init_state(config)
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    assert looping.for_model(static) is (looping.ON_HOST if jax.default_backend() == "cpu" else looping.COMPILED)
    optimizer, objective = build_optimizer(config.train), build_objective(config.train)
    x = jnp.asarray(np.random.default_rng(0).random((args.images, 784)) < 0.3, jnp.float32)
    epochs = {
        "one compiled lax.scan": train.make_epoch(static, optimizer, config.train, loop=looping.COMPILED),
        "host loop over the compiled step": train.make_epoch(static, optimizer, config.train, loop=looping.ON_HOST),
    }
    runs = {}
    for name, epoch in epochs.items():

        def run(e=epoch):
            p, o = jax.tree.map(jnp.copy, (params, state.opt_state))  # each epoch donates its own copy
            return jax.block_until_ready(e(p, o, x, train.epoch_key(0, 1), objective))

        runs[name] = run
    print(f"{args.model}, {args.images} images of 28 x 28, batch 100, {jax.devices()[0].platform}:")
    ratio = "the host loop's throughput: {:.1f} x the scan's"
    compare(runs, args.images, args.rounds, "training", ratio, progress=not args.quiet)

    x_test, key = x[: args.iw_images], jax.random.PRNGKey(1)
    loops = {"compiled loops": looping.COMPILED, "host loop over one compiled chunk": looping.ON_HOST}
    runs = {
        name: lambda loop=loop: jax.block_until_ready(
            evaluate.log_likelihood(state.vae, x_test, key, samples=args.iw_samples, chunk=500, batch=20, loop=loop)
        )
        for name, loop in loops.items()
    }
    print(f"L_{args.iw_samples} of {args.iw_images} images:")
    ratio = "the host loop's throughput: {:.1f} x the compiled loops'"
    compare(runs, args.iw_images, args.rounds, "evaluation", ratio, progress=not args.quiet)


def compare(runs: dict, images: int, rounds: int, what: str, ratio: str, progress: bool = False) -> None:
    """Print images a second of each of two `runs` (name -> a function that runs and waits), the best of
    `rounds` rounds, interleaved, after one round to compile, and their ratio, the second's to the first's.
    With `progress`, a bar over the runs (tqdm, with the time left, outside the timed calls) on stderr."""
    seconds = {name: np.inf for name in runs}
    bar = tqdm(total=(rounds + 1) * len(runs), desc=what, unit="run", disable=not progress, leave=False)
    for r in range(rounds + 1):  # round 0 compiles
        for name, run in runs.items():
            wall = best_seconds(run, 1)[0]
            bar.update(1)
            if r:
                seconds[name] = min(seconds[name], wall)
    bar.close()
    rates = {name: images / s for name, s in seconds.items()}
    for name, rate in rates.items():
        print(f"  {what}, {name}: {rate:.4g} images/s")
    first, second = rates.values()
    print("  " + ratio.format(second / first))


if __name__ == "__main__":
    main()
