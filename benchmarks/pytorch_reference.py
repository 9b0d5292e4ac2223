"""jaxvae against the PyTorch reference VAE (pytorch/examples, vae/main.py), side by side.

Both train the reference's model and defaults on Fashion-MNIST (784-400-20 ReLU, Bernoulli decoder on
grey values, batch 128, Adam 1e-3) for the same number of epochs, each timed over the same work
(training every epoch and the test loss after it; jaxvae's compilation, checkpoints and figures
included). The reference is re-implemented here as it is written there: sigmoid-then-BCE summed over
the batch, a DataLoader with shuffling, one sample per example, test loss = mean over test examples
of BCE + KL (= -ELBO).

In bf16 as well: the reference under `torch.autocast("cpu", dtype=torch.bfloat16)` (its linear layers in
bf16, the rest as autocast's rules cast it), and jaxvae with `precision="bf16"` (`--precision bf16`).

Every run is a fresh process, and the runs alternate (the reference, then under autocast; jaxvae with an
empty compile cache, again with the cache the previous one filled; the same in bf16) for `--rounds`
rounds, so that a shared machine's drift slows them alike; round r uses seed `--seed` + r for all. The
table gives each one's best round for time, each process's peak resident memory (`ru_maxrss`: imports,
data and training together), the largest over its rounds, and the test -ELBO as the mean over the
rounds' seeds, with the standard error of the difference from the reference seed by seed.

    .venv/bin/pip install -e '.[reference]'
    .venv/bin/python benchmarks/pytorch_reference.py --epochs 10
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def pytorch_reference(
    x_train: np.ndarray, x_test: np.ndarray, epochs: int, seed: int, autocast: bool = False
) -> tuple[float, float]:
    """Returns (test -ELBO in nats after the last epoch, wall seconds); with `autocast`, the model and the
    loss run under `torch.autocast("cpu", dtype=torch.bfloat16)`."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

        def forward(self, x):
            h = F.relu(self.fc1(x))
            mu, logvar = self.fc21(h), self.fc22(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    def loss_function(recon, x, mu, logvar):
        bce = F.binary_cross_entropy(recon, x, reduction="sum")
        return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    train_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x_train)), batch_size=128, shuffle=True
    )
    test_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x_test)), batch_size=128, shuffle=True
    )
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    began = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for (x,) in train_loader:
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                recon, mu, logvar = model(x)
                loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            optimizer.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            for (x,) in test_loader:
                recon, mu, logvar = model(x)
                test_loss += loss_function(recon, x, mu, logvar).item()
    return test_loss / len(x_test), time.perf_counter() - began


def jaxvae_run(epochs: int, seed: int, cache: Path, precision: str = "fp32") -> tuple[float, float]:
    """Returns (test -ELBO in nats after the last epoch, wall seconds), via the library as a user calls it,
    keeping compiled programs in the folder `cache` as `jaxvae train` does in ~/.cache/jaxvae/xla."""
    from jaxvae.config import ModelConfig, RunConfig, TrainConfig
    from jaxvae.data import load_dataset
    from jaxvae.process import enable_compilation_cache, limit_malloc_arenas, reuse_freed_memory
    from jaxvae.runs import read_metrics
    from jaxvae.train import fit

    limit_malloc_arenas()  # as `jaxvae` does
    reuse_freed_memory()
    enable_compilation_cache(cache)
    config = RunConfig(
        ModelConfig(data_shape=(28, 28), latent_dim=20, hidden=(400,), activation="relu"),
        TrainConfig(dataset="fashion-mnist", epochs=epochs, batch_size=128, lr=1e-3, seed=seed, precision=precision),
    )
    data = load_dataset("fashion-mnist")
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        fit(config, data, Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - began
        return -read_metrics(Path(tmp) / "run")[-1]["test_elbo"], seconds


def one_run(which: str, epochs: int, seed: int, cache: Path) -> None:
    """Print {"nelbo": ..., "seconds": ..., "peak_mb": ...} of one run (in a process of its own)."""
    if which.startswith("reference"):
        from jaxvae.data import load_dataset

        data = load_dataset("fashion-mnist")
        nelbo, seconds = pytorch_reference(data.x_train, data.x_test, epochs, seed, which == "reference-autocast")
    else:
        nelbo, seconds = jaxvae_run(epochs, seed, cache, "bf16" if which == "jaxvae-bf16" else "fp32")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"nelbo": nelbo, "seconds": seconds, "peak_mb": peak_mb}))


RUNS = {  # the table's rows, in the order they run in each round -> the run
    "PyTorch reference": "reference",
    "PyTorch reference, autocast bf16": "reference-autocast",
    "jaxvae, empty compile cache": "jaxvae",
    "jaxvae, warm compile cache": "jaxvae",
    "jaxvae bf16, empty compile cache": "jaxvae-bf16",
    "jaxvae bf16, warm compile cache": "jaxvae-bf16",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", choices=list(RUNS.values()), help=argparse.SUPPRESS)  # a single run
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one_run(args.one, args.epochs, args.seed, args.cache)

    rows = {label: [] for label in RUNS}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as cache:
            for label, which in RUNS.items():
                command = [sys.executable, __file__, "--one", which, "--epochs", str(args.epochs)]
                command += ["--seed", str(args.seed + r), "--cache", cache]
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                rows[label].append(json.loads(out.splitlines()[-1]))
    best = {label: min(runs, key=lambda r: r["seconds"]) for label, runs in rows.items()}
    reference = best["PyTorch reference"]
    nelbo = {label: np.array([r["nelbo"] for r in runs]) for label, runs in rows.items()}
    seeds = f"seed {args.seed}" if args.rounds == 1 else f"seeds {args.seed}-{args.seed + args.rounds - 1}"
    print(f"Fashion-MNIST, 784-400-20 ReLU, Bernoulli on grey values, batch 128, Adam 1e-3, {args.epochs} epochs")
    print(f"{args.rounds} alternating rounds ({seeds}), each run a fresh process; time: the best round")
    peak = {label: max(r["peak_mb"] for r in runs) for label, runs in rows.items()}
    print(
        "| implementation | test -ELBO (nats), mean | - reference's (s.e.) | wall time (s) | time / ref. "
        "| peak RSS (MiB) | RSS / ref. |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, r in best.items():
        diff = nelbo[label] - nelbo["PyTorch reference"]
        se = f" ({diff.std(ddof=1) / np.sqrt(len(diff)):.2f})" if len(diff) > 1 else ""
        ratio = f"{r['seconds'] / reference['seconds']:.2f}"
        if label.startswith("jaxvae bf16"):
            ratio += f" ({r['seconds'] / best['PyTorch reference, autocast bf16']['seconds']:.2f} of autocast's)"
        memory = f"{peak[label]:.0f} | {peak[label] / peak['PyTorch reference']:.2f}"
        elbo = f"{nelbo[label].mean():.2f} | {diff.mean():+.2f}{se}"
        print(f"| {label} | {elbo} | {r['seconds']:.1f} | {ratio} | {memory} |")
    print("all rounds (s):", {label: [round(r["seconds"], 1) for r in runs] for label, runs in rows.items()})
    print("all rounds (test -ELBO):", {label: [round(float(v), 2) for v in values] for label, values in nelbo.items()})


if __name__ == "__main__":
    main()
