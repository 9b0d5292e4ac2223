"""Examples per second of training and of the K-sample evaluation, against two yardsticks measured in the same run.

1. The roofline: the machine's fp32 matrix-multiply peak (a 2048 x 2048 matmul, best of the run) times
   the FLOPs one example needs, counted from the architecture: 2 per multiply-add of every weight in the
   forward pass, twice that again for the backward pass, less the gradient for the input (not needed).
   Biases, activations, the loss and Adam are not counted: they are what stands between us and the limit.
2. The seed notebook's loop: a faithful JAX copy of its jitted `train_step` (parameter dicts, the loss
   summed over the batch, Adam 1e-3) called from a Python loop over batches of host data.

Beside them, the ceiling at each shape: the training step's matrix products alone (forward, weight
gradients, input gradients; nothing else), looped in one compiled program. What a step can reach at
most, given XLA's matmul kernels at these small shapes.

3. In bf16 (`--precision bf16`): jaxvae's training against its fp32 training, and against the bf16
   roofline: the bf16 matmul peak (bf16 inputs, fp32 accumulation and result, as the networks' products)
   times the same FLOPs; beside it, the step's bare products with bf16 inputs, the bf16 ceiling.

Every figure is the best of several rounds; rounds interleave the peaks, the seed's loop and jaxvae, so a
busy machine slows them alike. Random data of Fashion-MNIST's shape (n, 784) in [0, 1].

    .venv/bin/python benchmarks/throughput.py            # the table in docs/performance.md (a few minutes on 2 cores)
    .venv/bin/python benchmarks/throughput.py --quick    # a smoke run
"""

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvae.builder import build_objective, build_optimizer
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.looping import batch_indices
from jaxvae.objectives import iwae
from jaxvae.train import epoch_key, init_state, make_epoch

D = 784
TRAIN_CASES = [  # name, hidden, latent, activation, batch
    ("seed 784-512-2 tanh", 512, 2, "tanh", 32),
    ("seed 784-512-2 tanh", 512, 2, "tanh", 128),
    ("PyTorch example 784-400-20 relu", 400, 20, "relu", 128),
]
EVAL_CASE = ("seed 784-512-2 tanh", 512, 2, "tanh")


def best_seconds(fn, rounds: int) -> np.ndarray:
    """The least (wall-clock seconds, CPU seconds of this process) of `rounds` calls."""
    times = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return np.min(times, axis=0)


DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}
_matmul = jax.jit(functools.partial(jnp.matmul, preferred_element_type=jnp.float32))  # fp32 accumulation


def matmul_peak(precision: str = "fp32", rounds: int = 5, n: int = 2048) -> np.ndarray:
    """FLOP per (wall-clock second, CPU second) of an n x n matrix product of inputs in `precision`, the
    result in fp32, the best of `rounds`."""
    a, b = jax.random.normal(jax.random.PRNGKey(0), (2, n, n)).astype(DTYPES[precision])
    product = _matmul
    product(a, b).block_until_ready()
    return 2 * n**3 / best_seconds(lambda: product(a, b).block_until_ready(), rounds)


def layers(hidden: int, latent: int) -> list[tuple[int, int]]:
    """(inputs, outputs) of every weight matrix: encoder d-h-2k, decoder k-h-d."""
    return [(D, hidden), (hidden, 2 * latent), (latent, hidden), (hidden, D)]


def train_flops(hidden: int, latent: int) -> int:
    """Per example: forward 2*i*o per layer, backward 4*i*o, less 2*d*h for the unneeded input gradient."""
    return sum(6 * i * o for i, o in layers(hidden, latent)) - 2 * D * hidden


def eval_flops(hidden: int, latent: int, samples: int) -> int:
    """Per example: the encoder once and the decoder for each of the K samples, forward only."""
    (a, b), (c, d_), (e, f), (g, h) = layers(hidden, latent)
    return 2 * (a * b + c * d_) + samples * 2 * (e * f + g * h)


# --- the seed notebook's training step, as written there (with its activation and sizes as arguments) ---


def seed_init(key, input_dim, hidden_dim, latent_dim):
    k1, k2, k3, k4 = jax.random.split(key, 4)

    def dense(k, i, o):
        return {"w": jax.random.normal(k, (i, o)) / jnp.sqrt(i), "b": jnp.zeros(o)}

    return {
        "encoder": {"h1": dense(k1, input_dim, hidden_dim), "h2": dense(k2, hidden_dim, 2 * latent_dim)},
        "decoder": {"h1": dense(k3, latent_dim, hidden_dim), "h2": dense(k4, hidden_dim, input_dim)},
    }


def seed_train_step(activation):
    act = jnp.tanh if activation == "tanh" else jax.nn.relu
    optimizer = optax.adam(1e-3)

    def vae_loss(params, key, batch):
        e, d = params["encoder"], params["decoder"]
        h = act(batch @ e["h1"]["w"] + e["h1"]["b"]) @ e["h2"]["w"] + e["h2"]["b"]
        mean, logvar = jnp.split(h, 2, axis=-1)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        x_recon = jax.nn.sigmoid(act(z @ d["h1"]["w"] + d["h1"]["b"]) @ d["h2"]["w"] + d["h2"]["b"])
        recon = -jnp.sum(batch * jnp.log(x_recon + 1e-8) + (1 - batch) * jnp.log(1 - x_recon + 1e-8))
        kl = -0.5 * jnp.sum(1 + logvar - jnp.square(mean) - jnp.exp(logvar))
        return recon + kl

    @jax.jit
    def train_step(params, opt_state, key, batch):
        loss_val, grads = jax.value_and_grad(vae_loss)(params, key, batch)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss_val

    return optimizer, train_step


def seed_epoch_runner(hidden, latent, activation, batch, x_host):
    """The seed's `train_epoch`: a Python loop over host batches, one jitted step each."""
    optimizer, train_step = seed_train_step(activation)
    state = {"params": seed_init(jax.random.PRNGKey(0), D, hidden, latent)}
    state["opt"] = optimizer.init(state["params"])
    batches = [x_host[i : i + batch] for i in range(0, len(x_host) - batch + 1, batch)]

    def epoch():
        key = jax.random.PRNGKey(1)
        params, opt_state = state["params"], state["opt"]
        for b in batches:
            key, subkey = jax.random.split(key)
            params, opt_state, loss = train_step(params, opt_state, subkey, jnp.reshape(b, (batch, -1)))
        loss.block_until_ready()
        state["params"], state["opt"] = params, opt_state

    epoch()  # compile
    return epoch, len(batches) * batch


def jaxvae_epoch_runner(hidden, latent, activation, batch, x_host, precision="fp32"):
    """jaxvae's epoch: one compiled program over the device-resident data."""
    config = RunConfig(
        ModelConfig(data_shape=(D,), latent_dim=latent, hidden=(hidden,), activation=activation),
        TrainConfig(batch_size=batch, precision=precision),
    )
    state = init_state(config)
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    epoch_fn = make_epoch(static, build_optimizer(config.train), config.train)
    x = jax.device_put(x_host)
    carry = {"params": params, "opt": state.opt_state, "epoch": 0}
    objective = build_objective(config.train)

    def epoch():
        carry["epoch"] += 1
        carry["params"], carry["opt"], bounds, _ = epoch_fn(
            carry["params"], carry["opt"], x, epoch_key(0, carry["epoch"]), objective
        )
        float(bounds["elbo"])

    epoch()
    return epoch, len(x_host)


def bare_matmuls_runner(hidden, latent, batch, n, precision="fp32"):
    """The matrix products of n / batch training steps and nothing else: per layer (i, o), y = x @ W (B, o),
    dW = x^T @ dy (i, o), and dx = dy @ W^T (B, i) except for the first layer, as in the FLOP count; the
    inputs in `precision`, the results in fp32."""
    rng = np.random.default_rng(0)
    arrays = [
        tuple(jnp.asarray(rng.random(s, np.float32), DTYPES[precision]) for s in [(batch, i), (batch, o), (i, o)])
        for i, o in layers(hidden, latent)
    ]

    def products(j, x, dy, w):
        return (_matmul(x, w), _matmul(x.T, dy)) + ((_matmul(dy, w.T),) if j > 0 else ())

    @jax.jit
    def loop(arrays):
        def body(carry, _):  # the products are carried whole, and every input depends on the last step's
            arrays, outs = carry
            arrays = [
                tuple(a.at[0, 0].add((1e-30 * o[0][0, 0]).astype(a.dtype)) for a in xs)
                for xs, o in zip(arrays, outs, strict=True)
            ]
            return (arrays, [products(j, *a) for j, a in enumerate(arrays)]), None

        outs = [products(j, *a) for j, a in enumerate(arrays)]
        return jax.lax.scan(body, (arrays, outs), None, length=n // batch - 1)[0]  # and the one step before

    def epoch():
        jax.block_until_ready(loop(arrays))

    epoch()
    return epoch, n // batch * batch


# --- the K-sample importance-weighted bound ---


def eval_runners(hidden, latent, activation, samples, x_host, seed_batch=32, chunk=32):
    """(seed-style loop over batches of a jitted bound, jaxvae's compiled loop over chunks)."""
    model = ModelConfig(data_shape=(D,), latent_dim=latent, hidden=(hidden,), activation=activation)
    vae = init_state(RunConfig(model, TrainConfig())).vae
    x = jax.device_put(x_host)
    key = jax.random.PRNGKey(0)
    bound = eqx.filter_jit(lambda vae, xb, k: iwae(vae, xb, key=k, samples=samples))

    def loop():
        out = [
            bound(vae, jnp.asarray(x_host[i : i + seed_batch]), jax.random.fold_in(key, i))
            for i in range(0, len(x_host), seed_batch)
        ]
        jnp.concatenate(out).block_until_ready()

    @eqx.filter_jit
    def compiled(vae, x, key):
        idx, w = batch_indices(jnp.arange(x.shape[0]), chunk)
        keys = jax.random.split(key, idx.shape[0])
        return jax.lax.map(lambda a: jnp.sum(a[1] * iwae(vae, x[a[0]], key=a[2], samples=samples)), (idx, w, keys))

    def scanned():
        compiled(vae, x, key).block_until_ready()

    loop()
    scanned()
    return loop, scanned


# --- a real training run: compile cache and peak memory ---

COMPILE = """
import sys, time, equinox as eqx, jax, jax.numpy as jnp
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.process import enable_compilation_cache
from jaxvae.builder import build_objective, build_optimizer
from jaxvae.train import epoch_key, init_state, make_epoch
from pathlib import Path
enable_compilation_cache(Path(sys.argv[1]))
config = RunConfig(ModelConfig(data_shape=(28, 28)), TrainConfig(batch_size=128))
state = init_state(config)
params, static = eqx.partition(state.vae, eqx.is_inexact_array)
epoch = make_epoch(static, build_optimizer(config.train), config.train)
x = jax.ShapeDtypeStruct((60000, 784), jnp.float32)
wall, cpu = time.perf_counter(), time.process_time()
epoch.lower(params, state.opt_state, x, epoch_key(0, 1), build_objective(config.train)).compile()
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def compile_times() -> list[tuple[str, float, float]]:
    """Compiling the Fashion-MNIST epoch twice in fresh processes that share a new cache: (label, wall s, CPU s)."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("empty compile cache", "warm compile cache"):
            out = subprocess.run([sys.executable, "-c", COMPILE, tmp], check=True, capture_output=True, text=True)
            wall, cpu = map(float, out.stdout.split())
            results.append((label, wall, cpu))
    return results


def fashion_mnist_run(batch: int) -> tuple[float, float]:
    """One epoch of `jaxvae train --dataset fashion-mnist`: (wall seconds, peak resident memory in MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "jaxvae.cli", "train", "--dataset", "fashion-mnist", "--epochs", "1"]
        command += ["--batch-size", str(batch), "--quiet", "--out", f"{tmp}/run"]
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            raise RuntimeError(f"{' '.join(command)} failed")
        return time.perf_counter() - began, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=16384, help="training examples per timed epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1000, help="K of the importance-weighted bound")
    parser.add_argument("--eval-examples", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round, no Fashion-MNIST run")
    args = parser.parse_args()
    if args.quick:
        args.examples, args.rounds, args.samples, args.eval_examples = 2048, 1, 100, 64

    rng = np.random.default_rng(0)
    x_host = rng.random((args.examples, D), dtype=np.float32)
    x_eval = rng.random((args.eval_examples, D), dtype=np.float32)
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({device.platform}, {jax.device_count()} device(s)), jax {jax.__version__}")

    runners, bf16_runners = [], {}
    for name, hidden, latent, act, batch in TRAIN_CASES:
        seed_fn, seed_n = seed_epoch_runner(hidden, latent, act, batch, x_host)
        ours_fn, ours_n = jaxvae_epoch_runner(hidden, latent, act, batch, x_host)
        ceiling = bare_matmuls_runner(hidden, latent, batch, len(x_host))
        runners.append(
            ((f"train {name}", batch), train_flops(hidden, latent), (seed_fn, seed_n), (ours_fn, ours_n), ceiling)
        )
        bf16_runners[(f"train {name}", batch)] = (
            jaxvae_epoch_runner(hidden, latent, act, batch, x_host, "bf16"),
            bare_matmuls_runner(hidden, latent, batch, len(x_host), "bf16"),
        )
    name, hidden, latent, act = EVAL_CASE
    loop, scanned = eval_runners(hidden, latent, act, args.samples, x_eval)
    n_eval = args.eval_examples
    runners.append(
        (
            (f"evaluate {name}, K={args.samples}", 32),
            eval_flops(hidden, latent, args.samples),
            (loop, n_eval),
            (scanned, n_eval),
            None,
        )
    )

    peak, peak_bf16 = np.zeros(2), np.zeros(2)
    best, best_bf16 = {}, {}
    for _ in range(args.rounds):
        for label, _, (seed_fn, seed_n), (ours_fn, ours_n), ceiling in runners:
            peak = np.maximum(peak, matmul_peak())  # before every workload: the best moment of the run
            times = [best_seconds(seed_fn, 1) / seed_n, best_seconds(ours_fn, 1) / ours_n]
            times.append(best_seconds(ceiling[0], 1) / ceiling[1] if ceiling else np.full(2, np.inf))
            best[label] = np.minimum(best.get(label, np.full((3, 2), np.inf)), times)
            if label in bf16_runners:
                peak_bf16 = np.maximum(peak_bf16, matmul_peak("bf16"))
                times = [best_seconds(fn, 1) / n for fn, n in bf16_runners[label]]
                best_bf16[label] = np.minimum(best_bf16.get(label, np.full((2, 2), np.inf)), times)

    print(f"fp32 matmul peak: {peak[0] / 1e9:.1f} GFLOP/s, {peak[1] / 1e9:.1f} GFLOP per CPU second")
    print(f"(2048 x 2048, best of {5 * len(runners) * args.rounds}); of roofline = ex/s x FLOP/example / peak\n")
    columns = ["workload", "batch", "MFLOP/example", "seed loop, ex/s", "jaxvae, ex/s", "jaxvae / seed loop"]
    columns += ["seed loop, of roofline", "jaxvae, of roofline", "jaxvae, of roofline in CPU time"]
    columns += ["bare matmuls, of roofline"]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for (name, batch), flops, *_ in runners:
        seed_t, ours_t, ceiling_t = best[(name, batch)]
        roof = peak / flops  # examples per (second, CPU second) at the matmul peak
        cells = [name, str(batch), f"{flops / 1e6:.2f}"]
        cells += [f"{1 / seed_t[0]:,.0f}", f"{1 / ours_t[0]:,.0f}", f"{seed_t[0] / ours_t[0]:.2f}"]
        cells += [f"{1 / seed_t[0] / roof[0]:.2f}", f"{1 / ours_t[0] / roof[0]:.2f}", f"{1 / ours_t[1] / roof[1]:.2f}"]
        cells += [f"{1 / ceiling_t[0] / roof[0]:.2f}" if np.isfinite(ceiling_t[0]) else "-"]
        print("| " + " | ".join(cells) + " |")
    print(f"\nbf16 matmul peak: {peak_bf16[0] / 1e9:.1f} GFLOP/s ({peak_bf16[0] / peak[0]:.2f} x fp32's), bf16 inputs,")
    print("fp32 accumulation and result; bf16 roofline = ex/s x FLOP/example / bf16 peak\n")
    columns = ["workload", "batch", "jaxvae fp32, ex/s", "jaxvae bf16, ex/s", "bf16 / fp32"]
    columns += ["bf16, of bf16 roofline", "bf16 bare matmuls, of bf16 roofline", "bf16 / fp32 bare matmuls"]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for (name, batch), flops, *_ in runners:
        if (name, batch) not in best_bf16:
            continue
        fp32_t, ceiling_t = best[(name, batch)][1:]
        bf16_t, bf16_ceiling_t = best_bf16[(name, batch)]
        roof = peak_bf16[0] / flops
        cells = [name, str(batch), f"{1 / fp32_t[0]:,.0f}", f"{1 / bf16_t[0]:,.0f}", f"{fp32_t[0] / bf16_t[0]:.2f}"]
        cells += [f"{1 / bf16_t[0] / roof:.2f}", f"{1 / bf16_ceiling_t[0] / roof:.2f}"]
        cells += [f"{ceiling_t[0] / bf16_ceiling_t[0]:.2f}"]
        print("| " + " | ".join(cells) + " |")
    if not args.quick:
        print("\n| compiling the Fashion-MNIST epoch (batch 128) | wall seconds | CPU seconds |")
        print("| --- | --- | --- |")
        for label, wall, cpu in compile_times():
            print(f"| {label} | {wall:.2f} | {cpu:.2f} |")
        seconds, rss = fashion_mnist_run(128)
        print(f"\n`jaxvae train --dataset fashion-mnist --epochs 1 --batch-size 128`: {seconds:.0f} s,", end=" ")
        print(f"peak resident memory {rss:.0f} MiB")


if __name__ == "__main__":
    main()
