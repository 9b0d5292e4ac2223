"""Speed of conditional models: what a condition costs, and jaxvae against NumPyro's and Pyro's CVAE examples.

1. The condition's cost: the training epoch of a class-conditional model (`--condition label`: each
   example's row [x, one-hot y], C = 10) against that of the unconditional model of the same size (the
   seed's 784-512-2 tanh), random data of MNIST's shape, in one process, in interleaved rounds (best of
   each): the ratio of their examples per second, at batch 32 and 128, with and without dynamic
   binarization.
2. The peers as written, each run by its own Python (a virtual environment with the peer's packages from
   PyPI) from a copy of its example in `--peer-src` (DIR/examples/cvae-flax, DIR/examples/cvae: the
   benchmark neither holds nor fetches their code), on MNIST from `--data-dir` (copied where each looks):
   - NumPyro `examples/cvae-flax` (`main.py --num-epochs E`): x the whole image given c its bottom-left
     quadrant, z 256, hidden 512-512, Adam 3e-3, batch 128. Examples per second of its CVAE epochs, 59,904
     images each, from the times of its per-epoch lines: an epoch's time runs from the line before to its
     own, so it holds the epoch's evaluation on the test set and its compilation (each epoch compiles its
     loop again, the first also sets up the model). Its score: the best epoch's validation -ELBO per
     image (printed / 128), whose parameters it keeps.
   - Pyro `examples/cvae` (`main.py -nq 1 -n E`): x the 3 missing quadrants given c the bottom-left one,
     z 200, hidden 500-500, Adam 1e-3, batch 128. Examples per second of its CVAE epochs' training phase
     (60,000 images), from the first to the last output of its progress bar. Its score: the -ELBO with 10
     particles on the test set, of its `results.csv`.
   jaxvae trains the peer's task at its sizes: a conditional VAE with Sohn et al.'s prior network p(z | c),
   its networks of the peer's widths (ReLU), Bernoulli on the grey pixels, trained on rows [x, c]; its
   epoch compiled ahead (the compilation timed apart); half its E epochs before the peer's run and the
   rest after, so a busy machine slows both alike. Its score: the test -ELBO (10 draws of z per image)
   after E epochs. Every rate is the best epoch's.

    .venv/bin/python benchmarks/cvae_speed.py --cost-only                  # part 1, a few minutes on 2 cores
    .venv/bin/python benchmarks/cvae_speed.py --peer-src DIR --numpyro-python VENV1/bin/python \\
        --pyro-python VENV2/bin/python --data-dir ../shared/data/mnist      # parts 1 and 2
"""

import argparse
import csv
import functools
import gzip
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from jaxvae.builder import build_objective, build_optimizer
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import Dataset, load_dataset
from jaxvae.evaluate import mean_elbo
from jaxvae.model import split_condition
from jaxvae.train import condition_rows, epoch_key, init_state, make_epoch

CLASSES = 10
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class Trainer:
    """Epochs of one model trained by `train.make_epoch` on rows (n, d + m), compiled ahead (`compile_seconds`)
    and timed."""

    def __init__(self, config: RunConfig, rows: np.ndarray):
        state = init_state(config)
        self.params, self.static = eqx.partition(state.vae, eqx.is_inexact_array)
        self.opt_state, self.done = state.opt_state, 0
        self.rows, self.objective = jax.device_put(rows), build_objective(config.train)
        began = time.perf_counter()
        epoch = make_epoch(self.static, build_optimizer(config.train), config.train)
        self.run = epoch.lower(self.params, self.opt_state, self.rows, epoch_key(0, 1), self.objective).compile()
        self.compile_seconds = time.perf_counter() - began

    def epoch(self) -> tuple[float, float]:
        """Train one epoch: (wall-clock seconds, CPU seconds of this process)."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.done += 1
        self.params, self.opt_state, bounds, _ = self.run(
            self.params, self.opt_state, self.rows, epoch_key(0, self.done), self.objective
        )
        float(bounds["elbo"])  # waits for the epoch
        return time.perf_counter() - wall, time.process_time() - cpu

    def test_nelbo(self, rows: np.ndarray, samples: int = 10) -> float:
        """-ELBO per example of test rows [x, c] (nats), `samples` draws of z each."""
        vae = eqx.combine(self.params, self.static)
        x, c = split_condition(vae, jax.device_put(rows))
        return -float(mean_elbo(vae, x, jax.random.PRNGKey(1), samples=samples, c=c)["elbo"])


# --- 1. the condition's cost ---


def condition_cost(batch: int, binarize: str, n: int, rounds: int) -> tuple[float, float, float]:
    """(unconditional ex/s, conditional ex/s, CPU-time ratio), each the best of `rounds` interleaved epochs."""
    rng = np.random.default_rng(0)
    x, y = rng.random((n, 784), dtype=np.float32), rng.integers(0, CLASSES, n)
    data = Dataset(x, y, x[:1], y[:1], (784,))
    trainers = []
    for condition, m in (("", 0), ("label", CLASSES)):
        config = RunConfig(
            ModelConfig(data_shape=(784,), condition_dim=m),
            TrainConfig(batch_size=batch, binarize=binarize, condition=condition),
        )
        trainers.append(Trainer(config, condition_rows(data, config).x_train))
    best = np.full((2, 2), np.inf)
    for _ in range(rounds):
        for i, trainer in enumerate(trainers):
            best[i] = np.minimum(best[i], trainer.epoch())
    return n / best[0, 0], n / best[1, 0], best[0, 1] / best[1, 1]


# --- 2. the peers as written, and jaxvae on their tasks ---


@dataclass(frozen=True)
class Task:
    """A peer's quadrant task: x the `whole` image or its 3 missing quadrants, c the bottom-left quadrant."""

    name: str
    whole: bool
    latent: int
    hidden: int
    lr: float


NUMPYRO = Task("NumPyro examples/cvae-flax", whole=True, latent=256, hidden=512, lr=3e-3)
PYRO = Task("Pyro examples/cvae", whole=False, latent=200, hidden=500, lr=1e-3)


def quadrant_rows(images: np.ndarray, task: Task) -> np.ndarray:
    """Rows [x, c] (n, d + 196) of images (n, 784): c the bottom-left 14 x 14 quadrant, x the whole image
    (`task.whole`) or the other three quadrants (588 pixels)."""
    visible = np.zeros((28, 28), bool)
    visible[14:, :14] = True
    x = images if task.whole else images[:, ~visible.ravel()]
    return np.concatenate([x, images[:, visible.ravel()]], axis=1)


def jaxvae_trainer(task: Task, train_images: np.ndarray) -> Trainer:
    """jaxvae's conditional VAE at the task's sizes, with a prior network, Bernoulli on grey pixels, trained on
    rows [x, c] (what `train.condition_rows` makes of an .npz's `x` and `c` for `--condition array`)."""
    rows = quadrant_rows(train_images, task)
    model = ModelConfig(
        data_shape=(rows.shape[1] - 196,),
        latent_dim=task.latent,
        hidden=(task.hidden, task.hidden),
        activation="relu",
        prior="conditional",
        condition_dim=196,
    )
    return Trainer(RunConfig(model, TrainConfig(batch_size=128, lr=task.lr, binarize="none")), rows)


Line = tuple[float, float, str]  # (wall-clock seconds, the process's CPU seconds, the text)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process `pid` so far, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_timestamped(command: list[str], cwd: Path, env: dict[str, str]) -> list[Line]:
    """Run `command`, returning its output's lines (split at newlines and at the carriage returns of progress
    bars), each with the `time.perf_counter()` and the command's CPU seconds at its arrival."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    lines, pending = [], b""
    while chunk := os.read(process.stdout.fileno(), 1 << 16):
        now, cpu = time.perf_counter(), cpu_seconds(process.pid)
        *done, pending = re.split(rb"[\r\n]", pending + chunk)
        lines += [(now, cpu, line.decode(errors="replace")) for line in done if line.strip()]
    if process.wait() != 0:
        tail = "\n".join(line for *_, line in lines[-10:])
        raise RuntimeError(f"{' '.join(command)} failed in {cwd}:\n{tail}")
    return lines


EPOCH_LINE = re.compile(r"Epoch loss - train loss: (\S+), validation loss: (\S+)")


def numpyro_epochs(lines: list[Line], epochs: int) -> tuple[np.ndarray, float]:
    """(wall-clock and CPU seconds of each CVAE epoch (E, 2), from the line before it: its training, evaluation
    and compilation; the best validation -ELBO per image) from NumPyro's output: `epochs` baseline lines, then
    the CVAE's."""
    found = [(wall, cpu, float(m[2])) for wall, cpu, line in lines if (m := EPOCH_LINE.search(line))]
    times = np.array([(wall, cpu) for wall, cpu, _ in found[epochs - 1 :]])
    return np.diff(times, axis=0), min(loss for *_, loss in found[epochs:]) / 128


def pyro_epochs(lines: list[Line]) -> np.ndarray:
    """Wall-clock and CPU seconds (E, 2) of each CVAE epoch's training phase, from the first to the last output
    of its progress bar."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for wall, cpu, line in lines:
        if m := re.match(r"CVAE Epoch (\d+) train", line):
            spans.setdefault(m[1], []).append((wall, cpu))
    return np.array([np.subtract(times[-1], times[0]) for times in spans.values()])


def pyro_score(results: Path) -> float:
    """The CVAE's -ELBO (10 particles, test set) from Pyro's results.csv."""
    with results.open() as f:
        rows = {row[0]: row[1] for row in csv.reader(f) if row}
    return float(rows["CVAE (Monte Carlo)"])


def place_mnist(data_dir: Path, folder: Path, compressed: bool) -> None:
    """Copy MNIST's four IDX files from `data_dir` (gzipped) into `folder`, gzipped or not."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        source = data_dir / f"{name}.gz"
        if compressed:
            shutil.copyfile(source, folder / source.name)
        else:
            with gzip.open(source) as f, (folder / name).open("wb") as out:
                shutil.copyfileobj(f, out)


def run_numpyro(python: str, peer_src: Path, data_dir: Path, epochs: int) -> tuple[np.ndarray, float]:
    """NumPyro's example as written: (its CVAE epochs' seconds, its best validation -ELBO per image)."""
    where = "import numpyro.examples.datasets as d; print(d.DATA_DIR)"
    found = subprocess.run([python, "-c", where], check=True, capture_output=True, text=True).stdout.strip()
    place_mnist(data_dir, Path(found), compressed=True)
    env = os.environ | {"FLAX_RETURN_FROZENDICT": "true", "MPLBACKEND": "Agg"}  # its `.unfreeze()` calls
    command = [python, "-u", "main.py", "--num-epochs", str(epochs)]
    return numpyro_epochs(run_timestamped(command, peer_src / "examples/cvae-flax", env), epochs)


def run_pyro(python: str, peer_src: Path, data_dir: Path, epochs: int) -> tuple[np.ndarray, float]:
    """Pyro's example as written, one visible quadrant: (its CVAE epochs' training seconds, its -ELBO)."""
    place_mnist(data_dir, peer_src / "examples/data/MNIST/raw", compressed=False)  # its root "../data"
    cwd = peer_src / "examples/cvae"
    command = [python, "-u", "main.py", "-nq", "1", "-n", str(epochs)]
    lines = run_timestamped(command, cwd, os.environ | {"MPLBACKEND": "Agg"})
    return pyro_epochs(lines), pyro_score(cwd / "results.csv")


def versus_peer(task: Task, run_peer, peer_examples: int, epochs: int, train: np.ndarray, test: np.ndarray):
    """jaxvae's first half of `epochs` (rounded up), the peer's run, jaxvae's other epochs: a table row of each,
    (name, examples per wall-clock and per CPU second of the best epoch, the first epoch's wall-clock seconds,
    test -ELBO, jaxvae's rates over the peer's)."""
    trainer = jaxvae_trainer(task, train)
    before = (epochs + 1) // 2
    ours = [trainer.epoch() for _ in range(before)]
    theirs, peer_score = run_peer()
    ours += [trainer.epoch() for _ in range(epochs - before)]
    name = f"jaxvae on its task (compiling: {trainer.compile_seconds:.1f} s)"
    score = trainer.test_nelbo(quadrant_rows(test, task))
    ours_rates, theirs_rates = len(train) / np.min(ours, axis=0), peer_examples / np.min(theirs, axis=0)
    ratio = f"{ours_rates[0] / theirs_rates[0]:.2f} ({ours_rates[1] / theirs_rates[1]:.2f})"
    return [(task.name, theirs_rates, theirs[0][0], peer_score, ""), (name, ours_rates, ours[0][0], score, ratio)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost-only", action="store_true", help="only the condition's cost (part 1)")
    parser.add_argument("--examples", type=int, default=16384, help="examples per epoch of part 1")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of part 1")
    parser.add_argument("--peer-src", type=Path, help="a folder holding the peers' examples/cvae-flax, examples/cvae")
    parser.add_argument("--numpyro-python", help="Python of an environment with numpyro==0.21.0, flax, optax")
    parser.add_argument("--pyro-python", help="Python of an environment with pyro-ppl[extras]==1.9.1")
    parser.add_argument("--data-dir", type=Path, help="MNIST's four .gz files")
    parser.add_argument("--numpyro-epochs", type=int, default=3)
    parser.add_argument("--pyro-epochs", type=int, default=1)
    args = parser.parse_args()
    peers = (args.peer_src, args.numpyro_python, args.pyro_python, args.data_dir)
    if not args.cost_only and None in peers:
        parser.error("--peer-src, --numpyro-python, --pyro-python and --data-dir are needed (or --cost-only)")
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}, {os.cpu_count()} CPUs")

    print("\n| batch | binarize | unconditional, ex/s | conditional (C = 10), ex/s | ratio | ratio of CPU time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for batch in (32, 128):
        for binarize in ("none", "dynamic"):
            plain, conditional, cpu = condition_cost(batch, binarize, args.examples, args.rounds)
            print(
                f"| {batch} | {binarize} | {plain:,.0f} | {conditional:,.0f} | {conditional / plain:.2f} | {cpu:.2f} |"
            )
    if args.cost_only:
        return

    mnist = load_dataset("mnist", data_dir=args.data_dir, progress=False)
    train, test = mnist.x_train, mnist.x_test
    peers = [(NUMPYRO, run_numpyro, args.numpyro_python, 59_904, args.numpyro_epochs)]
    peers += [(PYRO, run_pyro, args.pyro_python, 60_000, args.pyro_epochs)]
    print("\n| implementation | ex/s, best epoch | ex/CPU-s | epoch 1, s | test -ELBO (nats) | jaxvae / peer (CPU) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for task, run, python, examples, epochs in peers:
        run_peer = functools.partial(run, python, args.peer_src, args.data_dir, epochs)
        for name, rates, first, score, ratio in versus_peer(task, run_peer, examples, epochs, train, test):
            print(f"| {name} | {rates[0]:,.0f} | {rates[1]:,.0f} | {first:.1f} | {score:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
