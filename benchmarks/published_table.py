"""The published Fashion-MNIST table (Norouzi, Fleet and Norouzi 2020, Exemplar VAE, density estimation)
trained with their protocol, one row per invocation, and jaxvae's test L_5000 beside the published one.

Their code (github sajadn/Exemplar-VAE, after the VampPrior authors'): `density_estimation.py` and the files
docs/published-table.md cites line by line. A row trains in RUNS_DIR/ROW (a folder that exists is resumed),
then evaluates test L_5000 on all 10,000 test images with the model of the best validation bound
(`jaxvae evaluate --checkpoint best`), saved as RUNS_DIR/ROW/published_table.json:
    .venv/bin/python benchmarks/published_table.py --row vae-gaussian --runs-dir runs/published
The ConvHVAE rows build their gated convolutional model from the model file benchmarks/conv_hvae.py; on a
CPU one epoch of theirs takes about half an hour, where the fully connected rows' take seconds: a GPU's work.
The table of the run folders that exist, finished or not (nothing is trained or evaluated):
    .venv/bin/python benchmarks/published_table.py --report --runs-dir runs/published
A short check of a row trains --epochs N instead of the protocol's 2000 (recorded in the run's config.json,
and --report marks it as not the protocol):
    .venv/bin/python benchmarks/published_table.py --row vae-gaussian --epochs 3 --runs-dir runs/check
"""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jaxvae import sweep
from jaxvae.builder import build_objective
from jaxvae.cli.parser import Parser
from jaxvae.config import RunConfig
from jaxvae.errors import InputError
from jaxvae.runs import CONFIG, best_validation, read_metrics, stopped_early

RESULT = "published_table.json"  # a row's evaluation, in its run folder
IW_SAMPLES = 5000  # their --S (density_estimation.py:58)
EPOCHS = 2000  # their --epochs (density_estimation.py:20)

# Their protocol as jaxvae options; each is explained, with the line of their code, in docs/published-table.md.
PROTOCOL = (
    "--dataset", "fashion-mnist", "--binarize", "dynamic", "--validation-fraction", "0.16666667",
    "--architecture", "gated", "--hidden", "300,300", "--log-var-range=-6,2",
    "--optimizer", "adam-normgrad", "--lr", "5e-4", "--batch-size", "100",
    "--kl-warmup-epochs", "99", "--epochs", str(EPOCHS), "--early-stopping", "51", "--seed", "14",
)  # fmt: skip
HVAE = ("--latent-dim", "40,40", "--inference", "top-down", "--decoder-input", "all")


@dataclass(frozen=True)
class Row:
    """A row of their table: the model, the published test log-likelihood and its ± (nats), and the options
    of the model beyond `PROTOCOL`."""

    model: str
    published: float
    published_sd: float
    options: tuple[str, ...]


# The importance-weighted bound L_5 trained with doubly reparameterized gradients; no KL warm-up, since L_K
# has no KL term to weight
L5_DREG = ("--objective", "iwae", "--samples", "5", "--gradient", "dreg", "--kl-warmup-epochs", "0")
OURS = (*HVAE, "--prior", "vamp:500", *L5_DREG)  # jaxvae's best fully connected model
CONV_HVAE = ("--model", f"{Path(__file__).with_name('conv_hvae.py')}:build", *HVAE)  # their gated conv HVAE
ROWS = {
    "vae-gaussian": Row("VAE, Gaussian prior", -228.70, 0.15, ("--latent-dim", "40")),
    "vae-vamp": Row("VAE, VampPrior", -227.35, 0.05, ("--latent-dim", "40", "--prior", "vamp:500")),
    "hvae-gaussian": Row("HVAE (2 levels), Gaussian prior", -227.37, 0.1, HVAE),
    "hvae-vamp": Row("HVAE (2 levels), VampPrior", -226.72, 0.08, (*HVAE, "--prior", "vamp:500")),
    "convhvae-gaussian": Row("ConvHVAE (2 levels), Gaussian prior", -225.38, 0.08, CONV_HVAE),
    "convhvae-vamp": Row("ConvHVAE (2 levels), VampPrior", -224.67, 0.03, (*CONV_HVAE, "--prior", "vamp:500")),
    # jaxvae's own, against their best fully connected model (Exemplar HVAE)
    "hvae-vamp-dreg": Row("jaxvae: HVAE, VampPrior, L_5, DReG; published: Exemplar HVAE", -226.53, 0.09, OURS),
}


def jaxvae_command(*args: str) -> list[str]:
    """The `jaxvae` command line with this interpreter (which must have jaxvae installed or on PYTHONPATH)."""
    return [sys.executable, "-m", "jaxvae.cli", *map(str, args)]


def started(run_dir: Path) -> bool:
    """Whether run_dir holds a run or a sweep of seeds."""
    return (run_dir / CONFIG).exists() or sweep.is_sweep(run_dir)


def train_command(name: str, run_dir: Path, seeds: int = 1, epochs: int = EPOCHS) -> list[str]:
    """The command that trains row `name` in run_dir: a new run with their protocol (with `seeds` > 1, that
    many training seeds from theirs on, trained together) but up to `epochs` epochs, or, when run_dir holds
    one, that run or sweep resumed up to `epochs` (its config fixes every other option). It shows progress."""
    if started(run_dir):
        return jaxvae_command("train", "--resume", "--out", run_dir, "--epochs", epochs)
    several = ("--seeds", seeds) if seeds > 1 else ()
    protocol = [str(epochs) if i and PROTOCOL[i - 1] == "--epochs" else a for i, a in enumerate(PROTOCOL)]
    return jaxvae_command("train", "--out", run_dir, *protocol, *ROWS[name].options, *several)


def evaluate(run_dir: Path, iw_samples: int = IW_SAMPLES) -> dict:
    """Test L_K of the model of the best validation bound on the whole test set (`jaxvae evaluate --json`;
    of every member for a sweep of seeds), also written to run_dir/published_table.json."""
    command = jaxvae_command("evaluate", run_dir, "--checkpoint", "best", "--iw-samples", iw_samples, "--json")
    result = json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout)
    (run_dir / RESULT).write_text(json.dumps(result) + "\n")
    return result


def progress(run_dir: Path) -> dict:
    """Where the run in run_dir stands: epochs done, best validation bound and its epoch, training hours
    (the sum of metrics.jsonl's seconds), whether it finished (stopped early or ran all its epochs), the
    epochs it trains (`epochs`: the protocol's EPOCHS, or a short check's), and the test L_5000 and its
    standard error when it was evaluated."""
    config = RunConfig.load(run_dir / CONFIG).train
    records = read_metrics(run_dir)
    epoch = records[-1]["epoch"] if records else 0
    objective = build_objective(config)
    best, best_epoch = best_validation(records, objective.bound_key)
    out = {
        "epoch": epoch,
        "bound": objective.name,
        "best_validation": best if records else None,
        "best_epoch": best_epoch if records else None,
        "hours": sum(r["seconds"] for r in records) / 3600,
        "finished": epoch >= config.epochs or stopped_early(config, epoch, best_epoch),
        "epochs": config.epochs,
    }
    if (run_dir / RESULT).exists():
        result = json.loads((run_dir / RESULT).read_text())
        out |= {"test_log_likelihood": result["log_likelihood"], "test_se": result["log_likelihood_se"]}
        out["test_n"] = result["n"]
    return out


def seeds_progress(run_dir: Path) -> dict:
    """`progress` of a sweep of seeds in run_dir: the members' epochs and best epochs (lists, in the sweep's
    order), their hours summed, finished when every member is, the epochs they train (the largest), and where
    evaluated the mean and sd over the seeds of the members' test L_5000 (`test_log_likelihood`, `test_sd`)."""
    members = [progress(run_dir / name) for name in sweep.read_members(run_dir)]
    out = {
        "epoch": [p["epoch"] for p in members],
        "best_epoch": [p["best_epoch"] for p in members],
        "hours": sum(p["hours"] for p in members),
        "finished": all(p["finished"] for p in members),
        "epochs": max(p["epochs"] for p in members),
    }
    if (run_dir / RESULT).exists():
        (summary,) = json.loads((run_dir / RESULT).read_text())["groups"].values()
        out |= {"test_log_likelihood": summary["mean"]["log_likelihood"], "test_sd": summary["sd"]["log_likelihood"]}
        out["test_n"] = int(summary["mean"]["n"])
    return out


def _cells(row: Row, run_dir: Path) -> list[str]:
    """The table's cells after `published` for the row's run or sweep of seeds in run_dir."""
    if not started(run_dir):
        return ["", "", "", "", "not started"]
    if sweep.is_sweep(run_dir):
        p = seeds_progress(run_dir)
        n = len(p["epoch"])
        ours = f"{p['test_log_likelihood']:.2f} ± {p['test_sd']:.2f} (sd over {n} seeds)" if "test_sd" in p else ""
        best = ", ".join(str(e) for e in p["best_epoch"] if e is not None)
        status = f"{n} seeds, " + ("finished" if p["finished"] else "unfinished") + " at epochs "
        status += ", ".join(map(str, p["epoch"]))
    else:
        p = progress(run_dir)
        ours = f"{p['test_log_likelihood']:.2f} ± {p['test_se']:.2f}" if "test_log_likelihood" in p else ""
        best = "" if p["best_epoch"] is None else str(p["best_epoch"])
        status = ("finished" if p["finished"] else "unfinished") + f" at epoch {p['epoch']}"
        if p["best_validation"] is not None:
            status += f", best validation {p['bound']} {p['best_validation']:.2f}"
    if not ours and p["finished"]:
        status += ", not yet evaluated"
    if p["epochs"] != EPOCHS:  # a short check: its numbers go in its status, not in the row's columns
        status = f"not the protocol: a check of {p['epochs']} epochs (--epochs {p['epochs']}), {status}"
        tested = f", test L_{IW_SAMPLES} {ours} on {p['test_n']} images" if ours else ""
        return ["", "", best, f"{p['hours']:.2f}", status + tested]
    difference = f"{p['test_log_likelihood'] - row.published:+.2f}" if ours else ""
    if ours:
        status += f", test L_{IW_SAMPLES} on {p['test_n']} images"
    return [ours, difference, best, f"{p['hours']:.2f}", status]


def table(runs_dir: Path) -> str:
    """The published table with jaxvae's numbers from the run folders under runs_dir, as Markdown."""
    lines = [
        "| model | published | jaxvae | difference | best epoch | hours | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in ROWS.items():
        published = f"{row.published:.2f} ± {row.published_sd:g}"
        lines.append("| " + " | ".join([f"{row.model} ({name})", published, *_cells(row, runs_dir / name)]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--runs-dir", type=Path, required=True, help="one run folder per row, named by the row")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--row", choices=ROWS, help="train (or resume) this row, then evaluate it")
    mode.add_argument("--report", action="store_true", help="the table from the run folders that exist")
    p.add_argument("--seeds", type=int, default=1, help="with --row: train this many seeds together, from 14 on")
    p.add_argument(
        "--epochs",
        type=int,
        help=f"with --row: a short check of N epochs instead of the protocol's {EPOCHS} (--report marks it)",
    )
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.epochs is not None and (args.report or args.epochs < 1):
        p.error(f"--epochs goes with --row and must be at least 1, got {args.epochs}")
    if args.report and not args.runs_dir.is_dir():
        p.error(f"--runs-dir {args.runs_dir}: no such folder")
    if args.report and not any(started(args.runs_dir / name) for name in ROWS):
        p.error(f"--runs-dir {args.runs_dir} holds no row's run folder ({', '.join(ROWS)}): nothing to report")
    try:
        if args.row:
            run_dir = args.runs_dir / args.row
            command = train_command(args.row, run_dir, args.seeds, args.epochs or EPOCHS)
            print(" ".join(command), flush=True)
            args.runs_dir.mkdir(parents=True, exist_ok=True)
            subprocess.run(command, check=True)  # exit 0: it stopped early or ran all its epochs
            evaluate(run_dir)
        print(table(args.runs_dir))
    except InputError as e:
        print(f"published_table: error: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"published_table: {e.cmd[3]} exited with {e.returncode}; run this again to resume", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
