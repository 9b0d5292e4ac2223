"""What each choice of posterior and prior buys, side by side on Fashion-MNIST.

Burda et al.'s network (784-200-200-50 tanh, Bernoulli decoder), dynamically binarized data, Adam
1e-3, the same epochs, KL warm-up, batch and seed for every row; only --posterior and --prior differ. Reported on
the first N test images (binarized with the fixed test seed): L_5000 (the importance-weighted bound,
K = 5000) with its paired standard error against the first row, the ELBO (100 samples), active units.

    .venv/bin/python benchmarks/open_model_table.py --epochs 100 --kl-warmup-epochs 10   # one seed, ~1 h
    .venv/bin/python benchmarks/open_model_table.py --epochs 100 --kl-warmup-epochs 10 --seeds 3 --rows 0,2,4

With --seeds S, each row's S training seeds (seed, seed + 1, ...) train together as one sweep (`--seeds`), and
the table gives each figure's mean ± sd over the seeds and the difference from the first row as the mean over
seeds of the paired difference (the same seed, the same test images) ± its standard error over seeds: a
choice beats another only where that difference exceeds its standard error. With one seed, the difference's
standard error is over the test images.

Each row is an ordinary run folder under --out (a sweep's with --seeds; `jaxvae evaluate` works on it).
"""

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.binarization import Dynamic
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.evaluate import ELBO_SAMPLES, active_units, log_likelihood, mean_elbo
from jaxvae.keys import DataSeed
from jaxvae.runs import read_metrics
from jaxvae.sweep import fit_sweep, member_configs
from jaxvae.train import load

ROWS = [
    ("diagonal", "normal"),
    ("full", "normal"),
    ("iaf:2", "normal"),
    ("diagonal", "mixture:10"),
    ("diagonal", "vamp:500"),
    ("iaf:2", "vamp:500"),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--kl-warmup-epochs", type=int, default=0, help="beta rises linearly from 0 to 1 over these epochs")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--test-examples", type=int, default=1000)
    p.add_argument("--iw-samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="training seeds per row, trained together")
    p.add_argument("--out", default="runs/open_model")
    p.add_argument("--rows", help="indices of ROWS to run, e.g. 0,2 (default all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar of training")
    args = p.parse_args()
    data = load_dataset("fashion-mnist")
    x = jnp.asarray(Dynamic().held_out(data.x_test[: args.test_examples], DataSeed.TEST_BINARIZATION))
    rows = ROWS if args.rows is None else [ROWS[int(i)] for i in args.rows.split(",")]
    results, began = [], time.perf_counter()
    for posterior, prior in rows:
        model = ModelConfig(data_shape=(28, 28), latent_dim=50, hidden=(200, 200), posterior=posterior, prior=prior)
        train = TrainConfig(
            dataset="fashion-mnist",
            binarize="dynamic",
            epochs=args.epochs,
            kl_warmup_epochs=args.kl_warmup_epochs,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        run = Path(args.out) / f"{posterior}-{prior}".replace(":", "")
        start = time.perf_counter()
        members = member_configs(RunConfig(model, train), args.seeds, None)
        fit_sweep(members, data, run, progress=not args.quiet)
        trained = sum(r["seconds"] for r in read_metrics(run / next(iter(members))))  # the epochs, not figures
        seeds = []
        for name in members:
            vae, key = load(run / name), jax.random.PRNGKey(0)
            seeds.append(
                {
                    "log_likelihood": np.asarray(log_likelihood(vae, x, key, samples=args.iw_samples)).tolist(),
                    "elbo": float(mean_elbo(vae, x, key, samples=ELBO_SAMPLES, chunk=100)["elbo"]),
                    "active_units": sum(active_units(vae, x)),
                }
            )
        results.append(
            {"posterior": posterior, "prior": prior, "seeds": seeds, "train_seconds": trained}
            | {"seconds": time.perf_counter() - start}
        )
        bounds = ", ".join(f"{np.mean(s['log_likelihood']):.2f}" for s in seeds)
        elbos = ", ".join(f"{s['elbo']:.2f}" for s in seeds)
        print(f"{posterior} / {prior}: L_K {bounds}, ELBO {elbos}, {trained:.0f} s training", flush=True)
        Path(args.out, "table.json").write_text(json.dumps(results))
    print(
        f"\nFashion-MNIST, {args.epochs} epochs ({args.kl_warmup_epochs} of KL warm-up), batch {args.batch_size}, "
        f"{args.seeds} training seeds from {args.seed}; first {len(x)} test images; nats per example"
    )
    print(table(results))
    print(f"total {(time.perf_counter() - began) / 60:.1f} minutes")


def table(results: list[dict]) -> str:
    """The Markdown table of `results` (rows of per-seed figures): means ± sd over seeds, and the difference
    from the first row paired by seed and test image, ± its standard error over seeds (over test images for
    one seed)."""
    first = np.asarray([s["log_likelihood"] for s in results[0]["seeds"]], np.float64)  # (seeds, n)
    lines = [
        "| --posterior | --prior | test L_5000 | against row 1 (paired s.e.) | test ELBO | active units | minutes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        ll = np.asarray([s["log_likelihood"] for s in r["seeds"]], np.float64)
        diff = ll - first
        if len(ll) > 1:
            per_seed = diff.mean(axis=1)
            against, se = per_seed.mean(), per_seed.std(ddof=1) / np.sqrt(len(per_seed))
        else:
            against, se = diff.mean(), diff.std(ddof=1) / np.sqrt(diff.shape[1])
        elbo = np.asarray([s["elbo"] for s in r["seeds"]])
        units = np.mean([s["active_units"] for s in r["seeds"]])
        lines.append(
            f"| `{r['posterior']}` | `{r['prior']}` | {_mean_sd(ll.mean(axis=1))} | {against:+.2f} ± {se:.2f} | "
            f"{_mean_sd(elbo)} | {units:.0f} of 50 | {r['seconds'] / 60:.1f} |"
        )
    return "\n".join(lines)


def _mean_sd(values: np.ndarray) -> str:
    """'mean ± sd' over seeds (ddof 1), or the value alone for one seed."""
    return f"{values.mean():.2f}" + (f" ± {values.std(ddof=1):.2f}" if len(values) > 1 else "")


if __name__ == "__main__":
    main()
