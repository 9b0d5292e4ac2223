"""Burda, Grosse and Salakhutdinov (2015), Table 1, one stochastic layer: VAE and IWAE training side by side.

The network is theirs (784-200-200-50, tanh, Bernoulli decoder), trained on dynamically binarized
data with batch 20 and Adam (beta1 0.99, beta2 0.999, eps 1e-4, as in their code) for 3^i epochs at
learning rate 0.001 * 10^(-i/7), i = 0..7 (3,280 epochs). Every model starts from the same
initialization and sees the same epochs; only the training objective and its number of samples k
differ. Reported: test log-likelihood log p(x) estimated by L_5000 (their K = 5000), test ELBO, active
units (variance over x of the posterior mean above 0.01), all per example in nats, higher is better.

Their numbers on MNIST (-log p(x)): VAE k=1 86.76, k=5 86.47, k=50 86.35; IWAE k=5 85.54, k=50 84.78.

The full table on MNIST (days of CPU, hours of GPU):
    .venv/bin/python benchmarks/iwae_table.py --dataset mnist
A shortened schedule here (stages i = 0..S-1, a subset of the data) on Fashion-MNIST:
    .venv/bin/python benchmarks/iwae_table.py --dataset fashion-mnist --stages 2 --train-examples 10000 \
        --test-examples 500 --models vae:1,iwae:5,iwae:50

The log-likelihood is computed here as L_K with `objectives.iwae`, a few test examples at a time
(`evaluate.log_likelihood` did not exist when this was written).
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxvae.builder import build_objective
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.loop import test_examples, training_examples
from jaxvae.objectives import elbo, iwae
from jaxvae.train import epoch_key, init_state, make_epoch

BURDA_NLL = {("vae", 1): 86.76, ("vae", 5): 86.47, ("vae", 50): 86.35, ("iwae", 5): 85.54, ("iwae", 50): 84.78}


def schedule(stages: int) -> list[tuple[int, float]]:
    """(epochs, learning rate) of stages i = 0..stages-1: 3^i epochs at 0.001 * 10^(-i/7)."""
    return [(3**i, 1e-3 * 10 ** (-i / 7)) for i in range(stages)]


def train(config: RunConfig, x_train: np.ndarray, stages: int, progress: bool = False):
    """Train with Burda et al.'s optimizer and schedule; returns the model and the training seconds. With
    `progress`, a bar over the epochs (tqdm, with the time left) on stderr."""
    state = init_state(config)
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3, b1=0.99, b2=0.999, eps=1e-4)
    opt_state = optimizer.init(params)
    epoch_fn = make_epoch(static, optimizer, config.train)
    x = jax.device_put(x_train)
    began, epoch, objective = time.perf_counter(), 0, build_objective(config.train)
    bar = tqdm(total=sum(e for e, _ in schedule(stages)), desc="training", unit="epoch", disable=not progress)
    for epochs, lr in schedule(stages):
        opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        for _ in range(epochs):
            epoch += 1
            key = epoch_key(config.train.seed, epoch)
            params, opt_state, bounds, finite = epoch_fn(params, opt_state, x, key, objective)
            if not bool(finite):
                raise FloatingPointError(f"non-finite loss in epoch {epoch}")
            bar.update(1)
        bar.write(f"  {epoch} epochs, lr {lr:.2e}: train ELBO {float(bounds['elbo']):.2f}")
    bar.close()
    return eqx.combine(params, static), time.perf_counter() - began


@eqx.filter_jit
def _log_likelihood_chunk(vae, x, key, samples):
    return iwae(vae, x, key=key, samples=samples)


def log_likelihood(vae, x: np.ndarray, key, samples: int, chunk: int, progress: bool = False) -> np.ndarray:
    """L_K(x) per example, shape (n,): the importance-weighted estimate of log p(x) with K = `samples`. With
    `progress`, a bar over the chunks of examples (tqdm, with the time left) on stderr."""
    out = []
    for start in tqdm(range(0, len(x), chunk), desc=f"L_{samples}", unit="chunk", disable=not progress):
        key, sub = jax.random.split(key)
        out.append(np.asarray(_log_likelihood_chunk(vae, jnp.asarray(x[start : start + chunk]), sub, samples)))
    return np.concatenate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--stages", type=int, default=8, help="schedule stages i = 0..S-1 (8: Burda's 3,280 epochs)")
    p.add_argument("--models", default="vae:1,vae:5,vae:50,iwae:5,iwae:50", help="objective:k, comma-separated")
    p.add_argument("--train-examples", type=int, default=None, help="train on the first N (default all)")
    p.add_argument("--test-examples", type=int, default=None, help="evaluate on the first N (default all)")
    p.add_argument("--eval-samples", type=int, default=5000, help="K of the log-likelihood estimate")
    p.add_argument("--chunk", type=int, default=10, help="test examples per log-likelihood batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args()

    data = load_dataset(args.dataset)
    models = [(name, int(k)) for name, k in (m.split(":") for m in args.models.split(","))]
    model = ModelConfig(data_shape=data.shape, latent_dim=50, hidden=(200, 200), activation="tanh")
    rows, per_example = [], {}
    for name, k in models:
        objective = "iwae" if name == "iwae" else "elbo"
        tc = TrainConfig(args.dataset, "dynamic", objective, k, 1, batch_size=20, seed=args.seed)
        config = RunConfig(model, tc)
        x_train, x_test = training_examples(data, tc), test_examples(data, tc)
        x_train, x_test = x_train[: args.train_examples], x_test[: args.test_examples]
        print(f"{name} k={k}: {len(x_train)} training examples, {sum(e for e, _ in schedule(args.stages))} epochs")
        vae, seconds = train(config, x_train, args.stages, progress=not args.quiet)
        key = jax.random.PRNGKey(12345)
        ll = log_likelihood(vae, x_test, key, args.eval_samples, args.chunk, progress=not args.quiet)
        test_elbo = float(np.mean(np.asarray(elbo(vae, jnp.asarray(x_test), key=key).elbo)))
        active = int(np.sum(np.var(np.asarray(vae.encode(jnp.asarray(x_test)).mean), axis=0) > 0.01))
        per_example[(name, k)] = ll
        se = ll.std(ddof=1) / np.sqrt(len(ll))
        burda = BURDA_NLL.get((name, k))
        rows.append(
            f"| {name.upper()} | {k} | {ll.mean():.2f} ± {se:.2f} | {test_elbo:.2f} | {active} | "
            f"{seconds:.0f} | {'' if burda is None else f'{-burda:.2f}'} |"
        )
        print(rows[-1], flush=True)

    print(f"\n{args.dataset}, dynamically binarized; {len(x_train)} training and {len(x_test)} test examples;")
    print(f"{sum(e for e, _ in schedule(args.stages))} epochs (stages i = 0..{args.stages - 1}); nats per example.\n")
    print(
        f"| training | k | test log p(x), L_{args.eval_samples} ± s.e. | test ELBO | active units | "
        "train seconds | Burda et al., MNIST |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    baseline = per_example.get(("vae", 1))
    if baseline is not None:
        for (name, k), ll in per_example.items():
            if name == "iwae":
                diff = ll - baseline
                print(
                    f"\nIWAE k={k} minus VAE k=1, paired over test examples: "
                    f"{diff.mean():+.2f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.2f} nats"
                )


if __name__ == "__main__":
    main()
