"""`jaxvae plot`: every figure of a run, written again under RUN_DIR/figures; of a sweep, every member's
and the sweep's training_curves.png."""

import sys
from pathlib import Path

from jaxvae.cli.startup import start_jax
from jaxvae.config import RunConfig


def run(args) -> int:
    start_jax()
    from jaxvae import plots, sweep
    from jaxvae.runs import epoch_checkpoints, read_metrics

    folder = Path(args.run_dir)
    if not sweep.is_sweep(folder):
        print(_plot_run(folder, args.dataset, args.data_dir, not args.quiet))
        return 0
    trained = []
    for member in (folder / name for name in sweep.read_members(folder)):
        if epoch_checkpoints(member):
            print(_plot_run(member, args.dataset, args.data_dir, not args.quiet))
            trained.append(member)
        else:
            print(f"{member}: no checkpoint (diverged in, or never finished, epoch 1): skipped", file=sys.stderr)
    curves = plots.training_curves({m.name: read_metrics(m) for m in trained}, folder / sweep.CURVES)
    print(f"{curves}: the members' training curves")
    return 0


def _plot_run(run_dir: Path, dataset: str | None, data_dir: str | None, progress: bool) -> str:
    """Every figure of the run in `run_dir` written again (its data from `dataset` and `data_dir` when given,
    see `run_data.load_data`), with a progress bar; the line that names them."""
    from jaxvae import plots
    from jaxvae.run_data import load_data
    from jaxvae.runs import CONFIG, FIGURES, read_metrics
    from jaxvae.train import load

    config = RunConfig.load(run_dir / CONFIG)
    vae = load(run_dir)
    had_gaps = (run_dir / FIGURES / plots.GAPS_FIGURE).exists()
    written = plots.write_figures(
        vae,
        load_data(config, dataset=dataset, data_dir=data_dir),
        config,
        run_dir / FIGURES,
        read_metrics(run_dir),
        progress=progress,
    )
    line = f"{run_dir / FIGURES}: {', '.join(p.name for p in written)}"
    if had_gaps and not (run_dir / FIGURES / plots.GAPS_FIGURE).exists():
        line += f"; {plots.GAPS_FIGURE} removed: it showed an older model (jaxvae evaluate --gaps draws it again)"
    return line
