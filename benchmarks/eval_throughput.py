"""Speed of the K = 5000 importance-weighted evaluation, as a fraction of this machine's fp32 matmul peak.

The model is the seed's architecture (784-512-2 tanh encoder, 2-512-784 Bernoulli decoder), untrained:
its speed does not depend on its weights. The data are the Fashion-MNIST test images. Useful FLOPs are
counted from the architecture: the encoder once per example, the decoder once per sample (2 FLOPs per
multiply-add, activations and log-densities not counted). The peak is the best rate of a large square
jnp matmul measured in the same run. Both are timed in wall-clock seconds and in CPU seconds of this
process: on a machine shared with other work the CPU-time ratio is the one that stays meaningful.

    .venv/bin/python benchmarks/eval_throughput.py            # all 10,000 images, K = 5000
    .venv/bin/python benchmarks/eval_throughput.py --n 500    # a subset, for slow machines
"""

import os

import jax
import jax.numpy as jnp

from jaxvae import memory
from jaxvae.builder import build_model
from jaxvae.cli.parser import Parser
from jaxvae.config import ModelConfig
from jaxvae.data import load_dataset
from jaxvae.errors import InputError
from jaxvae.evaluate import log_likelihood
from throughput import best_seconds, eval_flops, matmul_peak


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="test images to evaluate (default all 10,000)")
    parser.add_argument("--samples", type=int, default=5000, help="K importance samples per image")
    parser.add_argument("--chunk", type=int, default=500, help="samples per step")
    parser.add_argument("--batch", type=int, default=20, help="examples per step")
    args = parser.parse_args()
    hidden, k = 512, 2
    model = ModelConfig(data_shape=(28, 28), latent_dim=k, hidden=(hidden,))
    try:  # sizes that cannot fit: one line, before anything is allocated
        memory.check_importance_samples("--samples", args.samples, args.chunk)
        draws = args.batch * min(args.chunk, args.samples)
        memory.check_draws("--batch x --chunk", f"{args.batch} x {args.chunk}", draws, model)
    except InputError as e:
        parser.error(str(e))

    x = jnp.asarray(load_dataset("fashion-mnist").x_test[: args.n])
    vae = build_model(model, key=jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(0)

    def run(xs):
        return log_likelihood(vae, xs, key, samples=args.samples, chunk=args.chunk, batch=args.batch)

    run(x[: args.batch]).block_until_ready()  # compile (the example count is part of the shape)
    run(x).block_until_ready()  # compile for the full shape
    seconds, cpu_seconds = best_seconds(lambda: run(x).block_until_ready(), 1)
    value = run(x[: args.batch])
    peak_wall, peak_cpu = matmul_peak(n=4096)

    flops = len(x) * eval_flops(hidden, k, args.samples)
    print(f"device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s), {os.cpu_count()} CPU cores")
    print(f"{len(x)} Fashion-MNIST test images, K = {args.samples} (chunk {args.chunk}, batch {args.batch})")
    print(f"mean L_K of the untrained model on the first {args.batch}: {float(value.mean()):.2f} nats (a sanity check)")
    print(f"time: {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU; {len(x) * args.samples / seconds:,.0f} samples/s")
    print(
        f"useful GFLOP/s: {flops / seconds / 1e9:.1f} per wall second, {flops / cpu_seconds / 1e9:.1f} per CPU second"
    )
    print(f"fp32 matmul peak here: {peak_wall / 1e9:.1f} per wall second, {peak_cpu / 1e9:.1f} per CPU second")
    print(
        f"fraction of peak: {flops / seconds / peak_wall:.2f} (wall), {flops / cpu_seconds / peak_cpu:.2f} (CPU time)"
    )
    if len(x) < 10_000:
        print(f"projected for all 10,000 images at this rate: {seconds * 10_000 / len(x):.0f} s wall")


if __name__ == "__main__":
    main()
