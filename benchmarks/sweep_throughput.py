"""Training N members in one program (jaxvae.sweep, both schedules) against N separate runs, in the same run.

At the seed's architecture (784-512-2 tanh MLP, Bernoulli) and batch 32, on random data of Fashion-MNIST's
shape (n, 784) in [0, 1], for N = 1, 2, 4, 8, 16 members:

- separate runs: jaxvae's single-run epoch (`train.make_epoch`), N of them one after another take N times
  one epoch; examples per second of each member = n / (N x one epoch's seconds);
- step-major, seeds: `sweep.StepMajor` with N different seeds (each member its own data order): every
  step of every member in one `jax.vmap`ped program;
- member-major, seeds: `sweep.MemberMajor`, the same members, each member's whole epoch in turn;
- step-major, one data order: N members sharing the seed (a beta, lr or free-bits sweep): every member's
  batch is the same gather, so the first layer's forward product and its weight gradient are single
  products over all members' weights.

Each figure is examples per second per member, the speed-up over separate runs (the ratio of the two,
that is N separate epochs' seconds over one sweep epoch's), and the fraction of the fp32 matmul roofline
(all members' examples per second x FLOP per example / the peak of `throughput.matmul_peak`); the last
column is the schedule `sweep.schedule` chooses, from the members' state bytes and the cache sizes.
Rounds interleave every variant, each figure is the best of its rounds, so a busy machine slows them alike.

    .venv/bin/python benchmarks/sweep_throughput.py           # docs/performance.md's table (5 minutes on 2 cores)
    .venv/bin/python benchmarks/sweep_throughput.py --quick   # a smoke run
    .venv/bin/python benchmarks/sweep_throughput.py --hlo 8   # the matrix products XLA compiles for 8 members
    .venv/bin/python benchmarks/sweep_throughput.py --hidden 128 --members 8,12,16   # other sizes and counts
"""

import argparse
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.builder import build_objective
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.sweep import (
    MemberMajor,
    StepMajor,
    cpu_caches,
    initial_states,
    make_sweep_epoch,
    member_configs,
    schedule,
    stack,
    state_bytes,
)
from jaxvae.train import epoch_key
from throughput import D, best_seconds, jaxvae_epoch_runner, matmul_peak, train_flops

HIDDEN, LATENT, BATCH = 512, 2, 32


def config(hidden: int = HIDDEN) -> RunConfig:
    return RunConfig(ModelConfig(data_shape=(D,), latent_dim=LATENT, hidden=(hidden,)), TrainConfig(batch_size=BATCH))


def separate_runner(x, hidden: int):
    """One epoch of one ordinary run (throughput.py's runner)."""
    return jaxvae_epoch_runner(hidden, LATENT, "tanh", BATCH, x)[0]


def members_configs(members: int, shared_order: bool, hidden: int) -> dict[str, RunConfig]:
    """Seeds 0..N-1, or seed 0 and N values of lr (one data order)."""
    if shared_order:
        return member_configs(config(hidden), 1, ("lr", tuple(1e-3 * (1 + i / 10) for i in range(members))))
    return member_configs(config(hidden), members, None)


def sweep_runner(x, members: int, shared_order: bool, hidden: int, trainer: type):
    """One epoch of `members` members by `trainer` (`sweep.StepMajor` or `sweep.MemberMajor`)."""
    configs = members_configs(members, shared_order, hidden)
    sweep = trainer(initial_states(configs), list(configs.values()), [x] * members)
    epochs = iter(range(1, 10**9))

    def epoch():
        sweep.epoch([(next(epochs), 1.0)] * members)  # returns the members' bounds: waits for the epoch

    epoch()  # compile
    return epoch


def _sweep_epoch(configs, x, shared_order: bool):
    """(the compiled step-major epoch, (params, opt_state, objectives, lr, active)) for `configs`."""
    state = initial_states(configs)
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    n = len(configs)
    lr = jnp.asarray([c.train.lr for c in configs.values()], jnp.float32)
    objectives = stack([build_objective(c.train) for c in configs.values()])
    args = (params, state.opt_state, objectives, lr, jnp.ones(n, bool))
    return make_sweep_epoch(static, config().train, None, None if shared_order else 0), args


def hlo_products(members: int, shared_order: bool, x, hidden: int) -> list[str]:
    """The dot operations (and matmul library calls) of the optimized program of one sweep epoch."""
    configs = members_configs(members, shared_order, hidden)
    epoch_fn, (params, opt, *rest) = _sweep_epoch(configs, x, shared_order)
    keys = jnp.stack([epoch_key(c.train.seed, 1) for c in configs.values()])
    text = epoch_fn.lower(params, opt, x, keys[0] if shared_order else keys, *rest).compile().as_text()
    return [line.strip() for line in text.splitlines() if re.search(r"= f32\[[^\]]*\]\S* (dot|custom-call)\(", line)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer examples, members and rounds")
    parser.add_argument("--hlo", type=int, metavar="N", help="print the products of the N-member program, and stop")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="hidden width (512: the seed's; 64: in cache)")
    parser.add_argument("--members", default="1,2,4,8,16", help="the numbers of members, a comma list")
    args = parser.parse_args()
    counts = tuple(int(m) for m in args.members.split(","))
    n, rounds, counts = (256, 1, (1, 2)) if args.quick else (2048, 3, counts)
    x = jax.device_put(np.random.default_rng(0).random((n, D), np.float32))
    if args.hlo:
        for shared in (False, True):
            print(f"{args.hlo} members, {'one data order' if shared else 'seeds'}:")
            print("\n".join("  " + line[:200] for line in hlo_products(args.hlo, shared, x, args.hidden)))
        return
    variants = {"step-major": (StepMajor, False), "member-major": (MemberMajor, False), "one order": (StepMajor, True)}
    runners = {"separate": separate_runner(x, args.hidden)}
    for members in counts:
        for name, (trainer, shared) in variants.items():
            runners[(name, members)] = sweep_runner(x, members, shared, args.hidden, trainer)
    peak = np.zeros(2)
    best = {name: np.full(2, np.inf) for name in runners}
    for _ in range(rounds):  # interleaved: the peak, then every runner once
        peak = np.maximum(peak, matmul_peak(rounds=3))
        for name, run in runners.items():
            best[name] = np.minimum(best[name], best_seconds(run, 1))
    flop = train_flops(args.hidden, LATENT)
    one = best["separate"]  # (wall, CPU) seconds
    state = state_bytes(config(args.hidden))
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}; n = {n} random examples of {D} values")
    print(f"fp32 matmul peak: {peak[0] / 1e9:.1f} GFLOP/s; one separate run: {n / one[0]:,.0f} ex/s")
    print(f"MLP 784-{args.hidden}-{LATENT} tanh, Bernoulli, batch {BATCH}: {flop / 1e6:.2f} MFLOP per example")
    l2, last_level = (size / 2**20 for size in cpu_caches())
    print(f"one member's state {state / 2**20:.2f} MiB; caches (cpu_caches): L2 {l2:.0f}, last {last_level:.0f} MiB")
    print("speed-up: N separate epochs' seconds / one sweep epoch's, wall-clock (and CPU) seconds\n")
    print(
        "| members | separate runs, ex/s per member | step-major (seeds), ex/s per member | speed-up | of roofline "
        "| member-major (seeds), ex/s per member | speed-up | step-major (one data order), ex/s per member "
        "| speed-up | schedule chosen |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for members in counts:
        row = [f"{members}", f"{n / (members * one[0]):,.0f}"]
        for kind in variants:
            seconds = best[(kind, members)]
            speedup = members * one / seconds
            row += [f"{n / seconds[0]:,.0f}", f"{speedup[0]:.2f} ({speedup[1]:.2f})"]
            if kind == "step-major":
                row.append(f"{members * n * flop / seconds[0] / peak[0]:.2f}")
        chosen = schedule(members_configs(members, False, args.hidden))
        row.append("member-major" if chosen is MemberMajor else "step-major")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
