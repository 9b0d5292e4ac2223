"""`jaxvae sample`: prior samples of a run, decoded into an image grid; of a conditional run, samples of one
class (`--label`), the grid and their arrays."""

import os
import tempfile
from pathlib import Path

import numpy as np

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
    from jaxvae.evaluate import class_samples
    from jaxvae.runs import CONFIG
    from jaxvae.semisupervised import SemiSupervisedVAE
    from jaxvae.train import load

    config = RunConfig.load(Path(args.run_dir) / CONFIG)
    if not plots.is_image(config.model.data_shape):
        raise InputError(f"the run's data have shape {config.model.data_shape}, not images: nothing to draw")
    if args.n < 1:
        raise InputError(f"-n must be at least 1, got {args.n}")
    memory.check_draws("-n", args.n, args.n, config.model)
    out = _png(args.out)
    label = _label(args, config)
    vae = load(args.run_dir)
    vae = vae.vae if isinstance(vae, SemiSupervisedVAE) else vae  # M2 (--labels): its VAE of x given y
    key = jax.random.PRNGKey(args.seed)
    if label is not None:
        z, x = class_samples(vae, jax.numpy.full(args.n, label), key)
        arrays = out.with_suffix(".npz")
        _write_beside(arrays, ".npz", lambda path: _save_arrays(path, x, z, config.model.data_shape))
        title = f"class {_class_name(config, label)}: mean of p(x|z, y), z ~ p(z|y)"
        _write_beside(out, ".png", lambda path: plots.sample_grid(np.asarray(x), config.model.data_shape, title, path))
        print(f"{args.n} samples of class {label}, the mean of p(x|z, y): {out}, {arrays} (x, z)")
        return 0
    _write_beside(out, ".png", lambda path: plots.samples(vae, config.model.data_shape, path, key=key, n=args.n))
    print(f"{args.n} samples from the prior, decoded to the mean of p(x|z): {out}")
    return 0


def _label(args, config: RunConfig) -> int | None:
    """--label, checked against the run's classes; None for a run not conditioned on labels."""
    if config.train.condition == "array":
        raise InputError(
            f"{args.run_dir} is conditioned on arrays (--condition array): jaxvae sample does not yet draw from it"
        )
    classes = config.model.condition_dim if config.train.condition == "label" or config.train.labels else 0
    label: int | None = args.label
    if label is None:
        if classes:
            raise InputError(f"{args.run_dir} is conditioned on labels: pass --label Y, Y from 0 to {classes - 1}")
        return None
    if not classes:
        raise InputError(f"--label draws from a run trained with --condition label: {args.run_dir} was not")
    if not 0 <= label < classes:
        raise InputError(f"--label {label} is not one of the run's classes 0 to {classes - 1}")
    return label


def _write_beside(out: Path, suffix: str, write) -> None:
    """`write(path)` to a file beside `out`, then renamed to `out`: never half-written."""
    try:
        fd, drawing = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
        os.close(fd)
        try:
            write(Path(drawing))
            os.chmod(drawing, 0o644)
            os.replace(drawing, out)
        finally:
            Path(drawing).unlink(missing_ok=True)
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror}") from None


def _save_arrays(path: Path, x, z, shape) -> None:
    """x (N, *shape), the samples' means, and z (N, k) to the .npz file `path`."""
    with open(path, "wb") as f:
        np.savez(f, x=np.asarray(x).reshape(-1, *shape), z=np.asarray(z))


def _class_name(config: RunConfig, label: int) -> str:
    """Label `label`, with its name where the data name their classes."""
    names = config.train.classes
    return f"{label} ({names[label]})" if label < len(names) else str(label)
