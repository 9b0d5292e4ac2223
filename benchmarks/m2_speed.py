"""Speed of M2 training: jaxvae's epoch against Pyro's `examples/vae/ss_vae_M2.py` run as written, and against
the roofline.

Pyro's example (`-sup 3000 -zd 50 -hl 500 -bs 200 --aux-loss -enum parallel -n E`) is run by its own Python (a
virtual environment with pyro-ppl[extras]==1.9.1 from PyPI) from a copy of it in `--peer-src`
(DIR/examples/vae: the benchmark neither holds nor fetches its code), MNIST from `--data-dir` unpacked where
its `MNISTCached` looks (examples/vae/utils/.data/MNISTCached/raw). Its epoch is 50,000 training images (3,000
labelled, one labelled batch of 200 in every 16 steps, each followed by its auxiliary classifier step); its
time runs from one per-epoch line to the next, so it holds the epoch's validation and test passes (20,000
images through q(y | x)): the benchmark times that classifier's forward pass over 20,000 images in the same
Python (`pyro eval, s`) and reports the rate with it subtracted too. Its first epoch also holds its start-up.

jaxvae trains the same networks (q(y | x) 784-500-10, q(z | x, y) [784 + 10]-500-[50, 50], p(x | y, z)
[50 + 10]-500-784, softplus, Bernoulli on the grey pixels, Adam at 4.2e-4) on the same 50,000 images with the
same 3,000 labels (balanced, label seed 0): every step 200 unlabelled and B_l = 13 labelled examples (the
data's ratio, `labels.labelled_batch_size`), 235 steps, each labelled example's log q(y | x) weighted by Pyro's
`--aux-loss-multiplier` 46 (alpha = 46 n_l, not the paper's 0.1 N: the same objective as the peer's). Its
epochs 1 and 2 run before Pyro's, epoch 3 after (a busy machine slows both alike); its rate is the best of
epochs 2 and 3 (epoch 1 compiles), its test accuracy the one after epoch 2, beside Pyro's after its epoch 2.

The roofline: an unlabelled image costs 6 (2 * 784 * 500 + 500 * 10 + C (10 * 500 + 500 * 100 + 60 * 500 + 500
* 784)) = 33.4 MFLOP forward and backward (q(z | x, y)'s product over x computed once for all C = 10 classes);
a labelled draw, cheaper, is counted as nothing. The machine's fp32 peak is the best n x n product (n = 2048)
measured before and after the peer; the fraction is jaxvae's FLOP rate over that peak.

    .venv/bin/python benchmarks/m2_speed.py --peer-src DIR --pyro-python VENV/bin/python \\
        --data-dir ../shared/data/mnist
"""

import argparse
import os
import re
import subprocess
import time
from pathlib import Path

import jax
import numpy as np

from cvae_speed import place_mnist, run_timestamped
from jaxvae.config import ModelConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.semi_train import M2Trainer, build_semisupervised, classify
from throughput import matmul_peak

TRAIN, LABELS, BATCH, LATENT, HIDDEN, CLASSES, D = 50_000, 3_000, 200, 50, 500, 10, 784
AUX_LOSS_MULTIPLIER = 46  # Pyro's default weight of -log q(y | x) per labelled example
PER_CLASS_MACS = CLASSES * HIDDEN + HIDDEN * 2 * LATENT + (LATENT + CLASSES) * HIDDEN + HIDDEN * D
UNLABELLED_FLOPS = 6 * (2 * D * HIDDEN + HIDDEN * CLASSES + CLASSES * PER_CLASS_MACS)  # forward and backward
EPOCH_LINE = re.compile(r"^(\d+) epoch: .*validation accuracy (\S+) test accuracy (\S+)")
CLASSIFIER_PASS = """
import time, torch
nn = torch.nn
net = nn.Sequential(nn.Linear(784, 500), nn.Softplus(), nn.Linear(500, 10), nn.Softmax(-1))
x = torch.rand(200, 784)
with torch.no_grad():
    net(x)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(100):
            net(x)
        best = min(best, time.perf_counter() - start)
print(best)
"""


class Jaxvae:
    """jaxvae's M2 on Pyro's task: `epoch()` trains one, returning (wall-clock s, CPU s, examples)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        model = ModelConfig(data_shape=(D,), latent_dim=LATENT, hidden=(HIDDEN,), activation="softplus")
        config = TrainConfig(batch_size=BATCH, lr=4.2e-4, binarize="none", seed=0)
        vae = build_semisupervised(model, CLASSES, key=jax.random.PRNGKey(0))
        self.trainer = M2Trainer(vae, x, y, config, labels=LABELS, label_seed=0, alpha=AUX_LOSS_MULTIPLIER * LABELS)
        self.done = 0

    def epoch(self) -> tuple[float, float, int]:
        wall, cpu = time.perf_counter(), time.process_time()
        self.done += 1
        self.trainer.epoch(self.done)
        steps = -(-len(self.trainer.x_u) // self.trainer.batch_u)
        examples = len(self.trainer.x_u) + steps * self.trainer.batch_l
        return time.perf_counter() - wall, time.process_time() - cpu, examples

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(classify(self.trainer.model(), x) == y))


def run_pyro(python: str, peer_src: Path, data_dir: Path, epochs: int) -> tuple[np.ndarray, float, float]:
    """Pyro's example as written: (wall-clock and CPU seconds of each epoch (E, 2), from the line before (the
    first from its start), its last test accuracy, the seconds of its epoch's two classifier passes)."""
    cwd = peer_src / "examples/vae"
    place_mnist(data_dir, cwd / "utils/.data/MNISTCached/raw", compressed=False)
    command = [python, "-u", "ss_vae_M2.py", "-sup", str(LABELS), "-zd", str(LATENT), "-hl", str(HIDDEN)]
    command += ["-bs", str(BATCH), "--aux-loss", "-enum", "parallel", "-n", str(epochs)]
    start = (time.perf_counter(), 0.0)
    lines = run_timestamped(command, cwd, os.environ | {"MPLBACKEND": "Agg"})
    found = [(wall, cpu, float(m[3])) for wall, cpu, line in lines if (m := EPOCH_LINE.match(line))]
    times = np.array([start] + [(wall, cpu) for wall, cpu, _ in found])
    passes = subprocess.run([python, "-c", CLASSIFIER_PASS], check=True, capture_output=True, text=True).stdout
    return np.diff(times, axis=0), found[-1][2], float(passes) * 20_000 / (100 * BATCH)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-src", type=Path, required=True, help="a folder holding Pyro's examples/vae")
    parser.add_argument("--pyro-python", required=True, help="Python of an environment with pyro-ppl[extras]==1.9.1")
    parser.add_argument("--data-dir", type=Path, required=True, help="MNIST's four .gz files")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}, {os.cpu_count()} CPUs")

    mnist = load_dataset("mnist", data_dir=args.data_dir, progress=False)
    ours = Jaxvae(mnist.x_train[:TRAIN], mnist.y_train[:TRAIN])
    epochs = [ours.epoch(), ours.epoch()]
    accuracy = ours.accuracy(mnist.x_test, mnist.y_test)
    print(f"jaxvae epochs 1, 2: {epochs[0][0]:.1f} s, {epochs[1][0]:.1f} s; test accuracy {accuracy:.4f}", flush=True)
    peak = [matmul_peak()]
    theirs, their_accuracy, eval_seconds = run_pyro(args.pyro_python, args.peer_src, args.data_dir, 2)
    epochs.append(ours.epoch())
    peak.append(matmul_peak())

    best = np.argmin([wall for wall, *_ in epochs[1:]]) + 1
    wall, cpu, examples = epochs[best]
    flops = UNLABELLED_FLOPS * (TRAIN - LABELS) / wall
    peak_flops = np.max(peak, axis=0)
    pyro_wall, pyro_cpu = theirs[-1]
    print(f"fp32 peak: {peak_flops[0] / 1e9:.0f} GFLOP/s ({peak_flops[1] / 1e9:.0f} per CPU-s)")
    print(f"Pyro epochs (s, from the line before): {', '.join(f'{t:.1f}' for t in theirs[:, 0])}")
    print(f"jaxvae epochs (s): {', '.join(f'{t:.1f}' for t, *_ in epochs)} (epoch 1 compiles)")
    print("\n| implementation | ex/s | ex/CPU-s | ex/s, eval passes out | test accuracy, 2 epochs | of roofline |")
    print("| --- | --- | --- | --- | --- | --- |")
    pyro_rate = TRAIN / pyro_wall
    print(
        f"| Pyro ss_vae_M2.py (eval {eval_seconds:.1f} s) | {pyro_rate:,.0f} | {TRAIN / pyro_cpu:,.0f} | "
        f"{TRAIN / (pyro_wall - eval_seconds):,.0f} | {their_accuracy:.4f} | |"
    )
    print(
        f"| jaxvae M2 | {examples / wall:,.0f} | {examples / cpu:,.0f} | {examples / wall:,.0f} | {accuracy:.4f} | "
        f"{flops / peak_flops[0]:.2f} |"
    )
    print(
        f"\njaxvae / Pyro: {examples / wall / pyro_rate:.2f}x examples/s, "
        f"{examples / cpu / (TRAIN / pyro_cpu):.2f}x examples per CPU-s; {flops / 1e9:.0f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
