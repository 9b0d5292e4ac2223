"""`jaxvae sample`: prior samples of a run, decoded into an image grid."""

import os
import tempfile
from pathlib import Path

from jaxvae.cli.startup import start_jax
from jaxvae.config import RunConfig
from jaxvae.errors import InputError


def _png(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InputError(f"-o must name a .png file, got {path}")
    if not out.parent.is_dir():
        raise InputError(f"no such folder: {out.parent}")
    return out


def run(args) -> int:
    start_jax()
    import jax

    from jaxvae import memory, plots
    from jaxvae.runs import CONFIG
    from jaxvae.train import load

    config = RunConfig.load(Path(args.run_dir) / CONFIG)
    if not plots.is_image(config.model.data_shape):
        raise InputError(f"the run's data have shape {config.model.data_shape}, not images: nothing to draw")
    if args.n < 1:
        raise InputError(f"-n must be at least 1, got {args.n}")
    memory.check_draws("-n", args.n, args.n, config.model)
    out = _png(args.out)
    vae = load(args.run_dir)
    try:  # drawn beside `out`, then renamed into place: never half-written
        fd, drawing = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".png")
        os.close(fd)
        try:
            plots.samples(vae, config.model.data_shape, Path(drawing), key=jax.random.PRNGKey(args.seed), n=args.n)
            os.chmod(drawing, 0o644)
            os.replace(drawing, out)
        finally:
            Path(drawing).unlink(missing_ok=True)
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror}") from None
    print(f"{args.n} samples from the prior, decoded to the mean of p(x|z): {out}")
    return 0
