"""Sohn, Lee and Yan (2015)'s structured output prediction on MNIST: given 1, 2 or 3 quadrants of a digit,
predict the rest. Their deterministic baseline and the CVAE with the conditional prior, side by side with
Pyro's CVAE tutorial (examples/cvae).

The task is Pyro's: grey values in [0, 1] (not binarized), a Bernoulli likelihood on the grey target pixels;
1 quadrant visible: the bottom left, predict the other three (588 pixels); 2: the left half, predict the
right (392); 3: all but the bottom right, predict it (196). Here x = the missing pixels, c = the visible ones.

- Baseline (Sohn's NN): c -> 500-500 ReLU -> the missing pixels' logits, trained on their summed binary
  cross-entropy; the seeds trained together (`jax.vmap` over their states), Adam 1e-3, batch 128.
- CVAE: `jaxvae train --condition array --prior conditional`: q(z | x, c), p(z | c) (Sohn's prior network),
  p(x | z, c), each 500-500 ReLU, z of 200 dimensions (Pyro's sizes), Adam 1e-3, batch 128, the seeds trained
  together (`--seeds`). Pyro's generation network sees z only, and its prior network sees c and the frozen
  baseline's prediction (Sohn's recurrent connection); here p(x | z, c) sees c too, so c is the visible pixels
  alone.
- Model selection: early stopping (patience 3, at most --epochs epochs) on a validation split of the training
  set (10 %, jaxvae's seeded split), the best epoch kept; Pyro stops on the MNIST test set itself.

Scores on the MNIST test set, nats per image, lower is better, mean +- sd over the seeds: the baseline's
-log p(x | c) (its cross-entropy); the CVAE's -ELBO with 10 draws (the estimator of Pyro's table) and
-log p(x | c) by importance sampling, -L_K with q(z | x, c) the proposal (on the first --iw-examples test
images, K = --iw-samples). Pyro's tutorial: NN 100.4 / 61.9 / 25.4, CVAE 71.8 / 51.0 / 24.2 for 1 / 2 / 3
quadrants.

    .venv/bin/python benchmarks/quadrants.py --data-dir ../shared/data --out runs/quadrants --epochs 20

Each setting's baseline, npz data and CVAE run stay in --out: run again, it resumes where it stopped.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvae.data import Dataset, load_dataset, split_validation
from jaxvae.evaluate import log_likelihood, mean_elbo
from jaxvae.networks import MLP
from jaxvae.train import load

PYRO = {"NN (Pyro)": {1: 100.4, 2: 61.9, 3: 25.4}, "CVAE -ELBO (Pyro)": {1: 71.8, 2: 51.0, 3: 24.2}}
HIDDEN, LATENT, BATCH, LR, PATIENCE, VALIDATION = (500, 500), 200, 128, 1e-3, 3, 0.1


def visible_mask(quadrants: int, side: int = 28) -> np.ndarray:
    """Which of the side x side pixels (row by row) are visible with 1, 2 or 3 quadrants shown (Pyro's
    `MaskImages`): the bottom left; the left half; all but the bottom right."""
    rows, cols = np.indices((side, side))
    top, left = rows < side // 2, cols < side // 2
    shown = {1: ~top & left, 2: left, 3: top | left}[quadrants]
    return shown.reshape(-1)


def split_pixels(images: np.ndarray, quadrants: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, c) of images (n, side * side): the missing pixels (n, d) and the visible ones (n, m)."""
    shown = visible_mask(quadrants, int(np.sqrt(images.shape[1])))
    return images[:, ~shown], images[:, shown]


def training_and_validation(x: np.ndarray, c: np.ndarray) -> tuple[tuple, tuple]:
    """((x, c) to train on, (x, c) to validate on): jaxvae's validation split (`data.split_validation`) of the
    training examples, the one `jaxvae train --validation-fraction` makes."""
    rows = np.concatenate([x, c], axis=1)
    data = Dataset(rows, None, rows[:1], None, (rows.shape[1],))
    train, valid = split_validation(data, VALIDATION)
    d = x.shape[1]
    return (train.x_train[:, :d], train.x_train[:, d:]), (valid[:, :d], valid[:, d:])


def baseline_nll(net, x: jax.Array, c: jax.Array) -> jax.Array:
    """-log p(x | c) of each example (n,) under the baseline: the Bernoulli cross-entropy of the missing
    pixels x (n, d) (grey targets) given the network's logits of c (n, m), nats."""
    return jnp.sum(optax.sigmoid_binary_cross_entropy(jax.vmap(net)(c), x), axis=-1)


def train_baselines(seeds: list[int], train: tuple, valid: tuple, epochs: int, log) -> tuple:
    """The baseline networks of `seeds` trained together (their states vmapped), early-stopped on `valid`:
    (the stacked best networks, the epochs each trained)."""
    x, c = (jnp.asarray(a) for a in train)
    xv, cv = (jnp.asarray(a) for a in valid)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    nets = eqx.filter_vmap(lambda k: MLP(c.shape[1], x.shape[1], HIDDEN, jax.nn.relu, key=k))(keys)
    params, static = eqx.partition(nets, eqx.is_inexact_array)
    optimizer = optax.adam(LR)
    steps = len(x) // BATCH  # the remainder of each shuffled epoch is left out, as a dropped last batch

    def loss(p, xb, cb):
        return jnp.mean(baseline_nll(eqx.combine(p, static), xb, cb))

    def epoch(p, state, key):
        order = jax.random.permutation(key, len(x))[: steps * BATCH].reshape(steps, BATCH)

        def step(carry, idx):
            p, state = carry
            value, grads = jax.value_and_grad(loss)(p, x[idx], c[idx])
            updates, state = optimizer.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), value

        (p, state), values = jax.lax.scan(step, (p, state), order)
        return p, state, jnp.mean(values), loss(p, xv, cv)

    epoch = jax.jit(jax.vmap(epoch))
    state = jax.vmap(optimizer.init)(params)
    best, best_loss = params, jnp.full(len(seeds), jnp.inf)
    waited, trained = np.zeros(len(seeds), int), np.zeros(len(seeds), int)
    for e in range(1, epochs + 1):
        start = time.perf_counter()
        params, state, train_loss, valid_loss = epoch(params, state, jax.vmap(jax.random.fold_in, (0, None))(keys, e))
        better = valid_loss < best_loss
        best = jax.tree.map(
            lambda new, old, better=better: jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
            params,
            best,
        )
        best_loss = jnp.where(better, valid_loss, best_loss)
        active = waited < PATIENCE
        trained += active
        waited = np.where(np.asarray(better), 0, waited + 1)
        log(
            f"baseline epoch {e}: train {np.round(train_loss, 2)}, validation {np.round(valid_loss, 2)} "
            f"({time.perf_counter() - start:.1f} s)"
        )
        if np.all(waited >= PATIENCE):
            break
    return eqx.combine(best, static), trained


def cvae_options(data: Path, run: Path, seeds: list[int], epochs: int) -> list[str]:
    """The options of `jaxvae train` that train the CVAE members into `run`."""
    return [
        *("--dataset", str(data), "--condition", "array", "--prior", "conditional"),
        *("--latent-dim", str(LATENT), "--hidden", ",".join(map(str, HIDDEN)), "--activation", "relu"),
        *("--likelihood", "bernoulli", "--binarize", "none", "--batch-size", str(BATCH), "--lr", str(LR)),
        *("--seed", str(seeds[0]), "--seeds", str(len(seeds)), "--epochs", str(epochs)),
        *("--early-stopping", str(PATIENCE), "--validation-fraction", str(VALIDATION), "--out", str(run)),
    ]


def score_cvae(member: Path, x: np.ndarray, c: np.ndarray, iw_examples: int, iw_samples: int) -> dict:
    """A CVAE member's best model (by validation) on the test set: -ELBO with 10 draws, and -L_K on the first
    `iw_examples` examples, nats per image."""
    vae = load(member, checkpoint="best")
    key = jax.random.PRNGKey(0)
    elbo = float(mean_elbo(vae, jnp.asarray(x), key, samples=10, c=jnp.asarray(c))["elbo"])
    n = iw_examples
    lk = log_likelihood(vae, jnp.asarray(x[:n]), key, samples=iw_samples, c=jnp.asarray(c[:n]))
    return {"neg_elbo": -elbo, "neg_lk": -float(jnp.mean(lk))}


def setting(args, quadrants: int, images, log) -> dict:
    """Train (or resume) and score one setting, its results saved in --out/results-q{quadrants}.json."""
    out, seeds = Path(args.out), [int(s) for s in args.seeds.split(",")]
    results_file = out / f"results-q{quadrants}.json"
    if results_file.is_file():
        return json.loads(results_file.read_text())
    (x_train, c_train), (x_test, c_test) = (split_pixels(a, quadrants) for a in images)
    data = out / f"q{quadrants}.npz"
    if not data.is_file():
        with open(out / "partial.npz", "wb") as f:
            np.savez(f, x_train=x_train, c_train=c_train, x_test=x_test, c_test=c_test)
        (out / "partial.npz").rename(data)
    n_iw = min(args.iw_examples, len(x_test))
    result = {"quadrants": quadrants, "seeds": seeds, "iw_examples": n_iw, "iw_samples": args.iw_samples}
    baseline_file = out / f"baseline-q{quadrants}.json"
    if not baseline_file.is_file():
        start = time.perf_counter()
        nets, trained = train_baselines(seeds, *training_and_validation(x_train, c_train), args.epochs, log)
        nll = eqx.filter_vmap(lambda net: baseline_nll(net, jnp.asarray(x_test), jnp.asarray(c_test)))
        baseline = {"nll_per_example": np.asarray(nll(nets)).tolist(), "epochs": trained.tolist()}
        baseline_file.write_text(json.dumps(baseline | {"seconds": time.perf_counter() - start}) + "\n")
    baseline = json.loads(baseline_file.read_text())
    per_example = np.asarray(baseline["nll_per_example"])
    result["baseline"] = {
        "nll": per_example.mean(1).tolist(),
        "nll_iw_examples": per_example[:, :n_iw].mean(1).tolist(),
        "epochs": baseline["epochs"],
        "seconds": baseline["seconds"],
    }
    run = out / f"cvae-q{quadrants}"
    options = cvae_options(data, run, seeds, args.epochs)
    resume = ["--out", str(run), "--resume", "--epochs", str(args.epochs)] if (run / "sweep.json").is_file() else []
    command = [sys.executable, "-m", "jaxvae", "train", "--quiet", *(resume or options)]
    log("$ " + " ".join(command))
    start = time.perf_counter()
    subprocess.run(command, check=True)
    members = [run / f"seed-{s}" for s in seeds]
    scores = [score_cvae(m, x_test, c_test, n_iw, args.iw_samples) for m in members]
    result["cvae"] = {
        "command": " ".join(["jaxvae", "train", *options]),
        "neg_elbo": [s["neg_elbo"] for s in scores],
        "neg_lk": [s["neg_lk"] for s in scores],
        "epochs": [len((m / "metrics.jsonl").read_text().splitlines()) for m in members],
        "train_and_score_seconds": time.perf_counter() - start,
    }
    results_file.write_text(json.dumps(result, indent=1) + "\n")
    return result


def mean_sd(values: list[float]) -> str:
    sd = np.std(values, ddof=1) if len(values) > 1 else float("nan")
    return f"{np.mean(values):.1f} ± {sd:.1f}"


def table(results: dict[int, dict]) -> str:
    """The markdown table of the results of each number of quadrants, Pyro's rows beside them; -L_K of the first
    N test images, N and K in each cell."""
    shown = sorted(results)

    def subset(q: int, values: list[float], k: str = "") -> str:
        return f"{mean_sd(values)} (N = {results[q]['iw_examples']}{k})"

    rows = {
        "NN baseline (jaxvae), test set": {q: mean_sd(r["baseline"]["nll"]) for q, r in results.items()},
        "NN baseline (jaxvae), first N test images": {
            q: subset(q, r["baseline"]["nll_iw_examples"]) for q, r in results.items()
        },
        "CVAE -ELBO, 10 draws (jaxvae), test set": {q: mean_sd(r["cvae"]["neg_elbo"]) for q, r in results.items()},
        "CVAE -L_K (jaxvae), first N test images": {
            q: subset(q, r["cvae"]["neg_lk"], f", K = {r['iw_samples']}") for q, r in results.items()
        },
        **{name: {q: f"{v[q]:.1f}" for q in shown} for name, v in PYRO.items()},
    }
    head = "| -log p(x_missing \\| x_visible), nats | " + " | ".join(f"{q} quadrant{'s' * (q > 1)}" for q in shown)
    lines = [head + " |", "|---" * (len(shown) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(values[q] for q in shown) + " |" for name, values in rows.items()]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="the folder of MNIST's four IDX files (or its subfolder mnist)")
    p.add_argument("--out", required=True, help="the folder of the settings' data, runs and results")
    p.add_argument("--quadrants", default="1,2,3", help="the settings: numbers of visible quadrants")
    p.add_argument("--seeds", default="0,1,2", help="consecutive training seeds, trained together")
    p.add_argument("--epochs", type=int, default=30, help="at most this many epochs (early stopping, patience 3)")
    p.add_argument("--iw-samples", type=int, default=1000, help="K of -L_K")
    p.add_argument("--iw-examples", type=int, default=1000, help="the first N test images scored by -L_K")
    p.add_argument("--train-examples", type=int, help="only the first N training images (a quick check)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(args.data_dir) / "mnist"
    mnist = load_dataset(folder if folder.is_dir() else args.data_dir)
    images = (mnist.x_train[: args.train_examples], mnist.x_test)

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    results = {}
    for q in (int(q) for q in args.quadrants.split(",")):
        log(f"{q} visible quadrant(s)")
        results[q] = setting(args, q, images, log)
    log(f"{jax.devices()[0].device_kind}, {time.strftime('%Y-%m-%d')}")
    print(table(results))


if __name__ == "__main__":
    main()
