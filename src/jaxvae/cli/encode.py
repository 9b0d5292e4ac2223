"""`jaxvae encode`: the posterior means and standard deviations of a run's data, to a .npz file (of q(z|x, y)
for a run conditioned on labels); for M2 (a run with --labels), q(y|x)'s probabilities."""

import io
from pathlib import Path

from jaxvae.cli.run_data import run_data
from jaxvae.cli.startup import start_jax
from jaxvae.errors import InputError


def run(args) -> int:
    start_jax()
    import jax.numpy as jnp
    import numpy as np

    from jaxvae.checkpoint import write_atomically
    from jaxvae.evaluate import posterior_moments
    from jaxvae.semisupervised import SemiSupervisedVAE

    out = Path(args.out)
    if out.suffix != ".npz":
        raise InputError(f"-o must name a .npz file, got {args.out}")
    if not out.parent.is_dir():
        raise InputError(f"no such folder: {out.parent}")
    config, vae, x, y, c = run_data(args, args.split)
    if isinstance(vae, SemiSupervisedVAE):  # M2 (a run with --labels): the classifier's q(y|x)
        arrays = {"q_y": np.exp(np.asarray(vae.log_q_y(jnp.asarray(x, jnp.float32))))}
    else:
        mean, std = (np.asarray(a) for a in posterior_moments(vae, x, c=None if c is None else jnp.asarray(c)))
        arrays = {"mean": mean, "std": std}
    arrays |= {} if y is None else {"y": y}
    if y is not None and config.train.classes and not args.dataset:  # the names of the labels, as trained
        arrays["classes"] = np.asarray(config.train.classes)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    try:
        write_atomically(out, buffer.getvalue())
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror}") from None
    examples = {"test": "test examples", "train": "training examples", "all": "examples (training, then test)"}
    labels = ", labels y" + (" named by classes" if "classes" in arrays else "") if y is not None else ""
    what = "q(y|x), q_y" if "q_y" in arrays else "posterior mean and std"
    shape = next(iter(arrays.values())).shape
    print(f"{out}: {what} of {len(x)} {examples[args.split]}, shape {shape}{labels}")
    return 0
