"""Where a short run spends its time outside the epoch.

Runs `jaxvae train --dataset fashion-mnist --epochs 1 --batch-size 128` (Debian's dataset-fashion-mnist)
in fresh processes: the first fills the compile cache, each of the next `--rounds` is timed with the cache
warm. The child process times its phases by wrapping the library's functions; the epoch is the `seconds`
of metrics.jsonl (the epoch's program, its first call included, and the test ELBO). JAX's imports run on
a thread of their own while the data is read on the main thread. Prints the round with
the least time outside the epoch, and `jaxvae --help`'s wall time, the best of 5.

    .venv/bin/python benchmarks/startup.py [--rounds 3]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = ["train", "--dataset", "fashion-mnist", "--epochs", "1", "--batch-size", "128", "--quiet", "--overwrite"]
BEFORE_JAX = {  # phase: (module, function) timed in the child, wrapped before JAX is imported
    "options, imports and data read": ("jaxvae.cli.train", "new_run"),
    "  of which imports, on a thread of their own": ("jaxvae.cli.startup", "import_training"),
}  # the data read is not wrapped: that would import its module (and NumPy) before the command starts
AFTER_JAX = {  # wrapped once the command has imported them
    "initial state": ("jaxvae.train", "init_state"),
    "checkpoint": ("jaxvae.checkpoint", "save"),
    "figures": ("jaxvae.plots", "write_figures"),
}
OUTSIDE = ("options, imports and data read", *AFTER_JAX)  # the phases that follow one another


def child(out: str, started: float) -> None:
    """One timed run in this process; prints the phases (seconds) as JSON."""
    import importlib

    entered = time.time()
    begin = time.perf_counter()
    from jaxvae import cli, runs
    from jaxvae.cli import startup

    seconds = {"python start-up": entered - started, "imports": time.perf_counter() - begin}

    def wrap(phases: dict) -> None:
        for phase, (module, name) in phases.items():
            module = importlib.import_module(module)
            function = getattr(module, name)

            def timed(*args, _function=function, _phase=phase, **kwargs):
                began = time.perf_counter()
                try:
                    return _function(*args, **kwargs)
                finally:
                    seconds[_phase] = seconds.get(_phase, 0.0) + time.perf_counter() - began

            setattr(module, name, timed)

    wrap(BEFORE_JAX)
    imported = startup.import_training

    def import_training():
        imported()
        wrap(AFTER_JAX)

    startup.import_training = import_training
    began = time.perf_counter()
    try:
        cli.run([*COMMAND, "--out", out])  # as the `jaxvae` command: main, then its exit
    except SystemExit as e:
        assert e.code == 0, e.code
    seconds["command"] = time.perf_counter() - began
    seconds["epoch"] = runs.read_metrics(Path(out))[-1]["seconds"]
    print(json.dumps(seconds))


def run_once(out: Path) -> dict:
    started = time.time()
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(out), str(started)], capture_output=True, text=True, check=True
    )
    seconds = json.loads(result.stdout.splitlines()[-1])
    seconds["total"] = time.time() - started
    return seconds


def help_seconds() -> float:
    times = []
    for _ in range(5):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jaxvae.cli", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed runs after the one that fills the cache")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], float(args.child[1]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        run_once(out)  # fills the compile cache
        rounds = [run_once(out) for _ in range(args.rounds)]
    best = min(rounds, key=lambda s: s["total"] - s["epoch"])
    other = best["command"] - best["epoch"] - sum(best[p] for p in OUTSIDE)
    rows = [
        ("python start-up", best["python start-up"]),
        ("importing jaxvae.cli", best["imports"]),
        *[(p, best[p]) for p in (*BEFORE_JAX, *AFTER_JAX)],
        ("the rest of the command (set-up, tracing, output)", other),
        ("epoch (metrics.jsonl seconds: training and test ELBO)", best["epoch"]),
        ("process exit", best["total"] - best["python start-up"] - best["imports"] - best["command"]),
        ("total wall time", best["total"]),
    ]
    print(f"jaxvae {' '.join(COMMAND)}: best of {args.rounds} rounds with a warm compile cache (seconds)")
    for name, value in rows:
        print(f"  {name:<56} {value:6.2f}")
    print(f"  {'outside the epoch (total - epoch)':<56} {best['total'] - best['epoch']:6.2f}")
    print(f"  {'outside the epoch, each round':<56} " + ", ".join(f"{s['total'] - s['epoch']:.2f}" for s in rounds))
    print(f"jaxvae --help: {help_seconds():.2f} s (best of 5)")


if __name__ == "__main__":
    main()
