"""One latent layer against two, inferred bottom-up and top-down, side by side on Fashion-MNIST.

Dynamically binarized data, tanh networks of --hidden widths, Bernoulli decoder, Adam 1e-3, the same
epochs, batch and seed for every row; only --latent-dim and --inference differ (Burda et al.'s sizes:
50 for one layer, 100,50 for two). Reported on the first N test images (binarized with the fixed test
seed): L_5000 with its paired standard error against the first row, the ELBO (100 samples), the KL and
the active units of each layer.

    .venv/bin/python benchmarks/deep_table.py --epochs 30     # docs/models.md's table

Each run is an ordinary run folder under --out (`jaxvae evaluate` works on it).
"""

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.binarization import Dynamic
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.evaluate import ELBO_SAMPLES, active_units, log_likelihood, mean_elbo, mean_layer_kls
from jaxvae.keys import DataSeed
from jaxvae.runs import read_metrics
from jaxvae.train import fit

ROWS = [("one layer", (50,), "top-down"), ("bottom-up", (100, 50), "bottom-up"), ("top-down", (100, 50), "top-down")]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--hidden", default="200,200")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--test-examples", type=int, default=1000)
    p.add_argument("--iw-samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="runs/deep_table")
    p.add_argument("--quiet", action="store_true", help="no progress bar of training")
    args = p.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))
    data = load_dataset("fashion-mnist")
    x = jnp.asarray(Dynamic().held_out(data.x_test[: args.test_examples], DataSeed.TEST_BINARIZATION))
    results = []
    for name, sizes, inference in ROWS:
        layers = sizes if len(sizes) > 1 else ()
        model = ModelConfig((28, 28), latent_dim=sum(sizes), layers=layers, inference=inference, hidden=hidden)
        train = TrainConfig(
            dataset="fashion-mnist", binarize="dynamic", epochs=args.epochs, batch_size=args.batch_size, seed=args.seed
        )
        run = Path(args.out) / name.replace(" ", "-")
        vae = fit(RunConfig(model, train), data, run, progress=not args.quiet)
        key = jax.random.PRNGKey(0)
        ll = np.asarray(log_likelihood(vae, x, key, samples=args.iw_samples), np.float64)
        results.append(
            {
                "row": name,
                "latent_dim": ",".join(map(str, sizes)),
                "inference": inference if layers else "",
                "log_likelihood": ll.tolist(),
                "elbo": float(mean_elbo(vae, x, key, samples=ELBO_SAMPLES, chunk=100)["elbo"]),
                "kl_per_layer": [float(v) for v in mean_layer_kls(vae, x, key, samples=ELBO_SAMPLES)],
                "active_units_per_layer": active_units(vae, x),
                "train_minutes": sum(r["seconds"] for r in read_metrics(run)) / 60,  # the epochs alone
            }
        )
        print(json.dumps({k: v for k, v in results[-1].items() if k != "log_likelihood"}), flush=True)
        Path(args.out, "table.json").write_text(json.dumps(results))
    first = np.asarray(results[0]["log_likelihood"])
    print(
        f"\nFashion-MNIST, {args.epochs} epochs, batch {args.batch_size}, --hidden {args.hidden}, seed {args.seed}; "
        f"first {len(x)} test images; nats per example"
    )
    print(
        "| --latent-dim | --inference | test L_5000 | against row 1 (paired s.e.) | test ELBO | KL per layer "
        "| active units per layer | training minutes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        diff = np.asarray(r["log_likelihood"]) - first
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        kls = ", ".join(f"{v:.2f}" for v in r["kl_per_layer"])
        units = ", ".join(
            f"{u} of {k}" for u, k in zip(r["active_units_per_layer"], r["latent_dim"].split(","), strict=True)
        )
        print(
            f"| {r['latent_dim']} | {r['inference'] or '-'} | {np.mean(r['log_likelihood']):.2f} | "
            f"{diff.mean():+.2f} ± {se:.2f} | {r['elbo']:.2f} | {kls} | {units} | {r['train_minutes']:.1f} |"
        )


if __name__ == "__main__":
    main()
