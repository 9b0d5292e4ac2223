"""`jaxvae plot`: every figure of a run, written again under RUN_DIR/figures."""

from pathlib import Path

from jaxvae.cli.startup import start_jax
from jaxvae.config import RunConfig


def run(args) -> int:
    start_jax()
    from jaxvae import plots
    from jaxvae.runs import CONFIG, FIGURES, load_data, read_metrics
    from jaxvae.train import load

    run_dir = Path(args.run_dir)
    config = RunConfig.load(run_dir / CONFIG)
    vae = load(run_dir)
    written = plots.write_figures(
        vae,
        load_data(config, data_dir=args.data_dir),
        config,
        run_dir / FIGURES,
        read_metrics(run_dir),
    )
    print(f"{run_dir / FIGURES}: {', '.join(p.name for p in written)}")
    return 0
