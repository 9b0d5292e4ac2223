"""What each choice of posterior and prior buys, side by side on Fashion-MNIST.

Burda et al.'s network (784-200-200-50 tanh, Bernoulli decoder), dynamically binarized data, Adam
1e-3, the same epochs, KL warm-up, batch and seed for every row; only --posterior and --prior differ. Reported on
the first N test images (binarized with the fixed test seed): L_5000 (the importance-weighted bound,
K = 5000) with its paired standard error against the first row, the ELBO (100 samples), active units.

    .venv/bin/python benchmarks/open_model_table.py --epochs 100 --kl-warmup-epochs 10   # docs/models.md's table, ~1 h

Each run is an ordinary run folder under --out (`jaxvae evaluate` works on it).
"""

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import binarized, load_dataset
from jaxvae.evaluate import ELBO_SAMPLES, active_units, log_likelihood, mean_elbo
from jaxvae.keys import DataSeed
from jaxvae.runs import read_metrics
from jaxvae.train import fit

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
    p.add_argument("--out", default="runs/open_model")
    p.add_argument("--rows", help="indices of ROWS to run, e.g. 0,2 (default all)")
    args = p.parse_args()
    data = load_dataset("fashion-mnist")
    x = jnp.asarray(binarized(data.x_test[: args.test_examples], "dynamic", DataSeed.TEST_BINARIZATION))
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
        vae = fit(RunConfig(model, train), data, run, progress=False)
        trained = sum(r["seconds"] for r in read_metrics(run))  # the epochs alone, without figures
        key = jax.random.PRNGKey(0)
        ll = np.asarray(log_likelihood(vae, x, key, samples=args.iw_samples), np.float64)
        terms = mean_elbo(vae, x, key, samples=ELBO_SAMPLES, chunk=100)
        results.append(
            {
                "posterior": posterior,
                "prior": prior,
                "log_likelihood": ll.tolist(),
                "elbo": float(terms["elbo"]),
                "active_units": sum(active_units(vae, x)),
                "train_seconds": trained,
                "seconds": time.perf_counter() - start,
            }
        )
        print(
            f"{posterior} / {prior}: L_K {ll.mean():.2f}, ELBO {results[-1]['elbo']:.2f}, "
            f"{results[-1]['active_units']} active, {trained:.0f} s training",
            flush=True,
        )
        Path(args.out, "table.json").write_text(json.dumps(results))
    first = np.asarray(results[0]["log_likelihood"])
    print(
        f"\nFashion-MNIST, {args.epochs} epochs ({args.kl_warmup_epochs} of KL warm-up), batch {args.batch_size}, "
        f"seed {args.seed}; first {len(x)} test images; nats per example"
    )
    print("| --posterior | --prior | test L_5000 | against row 1 (paired s.e.) | test ELBO | active units | minutes |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        ll = np.asarray(r["log_likelihood"])
        diff = ll - first
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        print(
            f"| `{r['posterior']}` | `{r['prior']}` | {ll.mean():.2f} | {diff.mean():+.2f} ± {se:.2f} | "
            f"{r['elbo']:.2f} | {r['active_units']} of 50 | {r['seconds'] / 60:.1f} |"
        )
    print(f"total {(time.perf_counter() - began) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
