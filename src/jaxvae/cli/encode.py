"""`jaxvae encode`: the posterior means and standard deviations of a run's data, to a .npz file (of q(z|x, y)
for a run conditioned on labels); for M2 (a run with --labels), q(y|x)'s probabilities; with --features, M1's
features for M2 (M1+M2, Kingma et al. 2014): a data set that `jaxvae train --dataset` reads."""

import io
from pathlib import Path

from jaxvae.cli.run_data import run_data, run_model_and_data, split_examples
from jaxvae.cli.startup import start_jax
from jaxvae.errors import InputError


def run(args) -> int:
    start_jax()
    import jax.numpy as jnp
    import numpy as np

    from jaxvae.evaluate import posterior_moments
    from jaxvae.semisupervised import SemiSupervisedVAE

    out = Path(args.out)
    if out.suffix != ".npz":
        raise InputError(f"-o must name a .npz file, got {args.out}")
    if not out.parent.is_dir():
        raise InputError(f"no such folder: {out.parent}")
    if args.features:
        arrays, latent_dim = _features(args)
        _write(out, arrays)
        print(
            f"{out}: M1 features x_train {arrays['x_train'].shape}, x_test {arrays['x_test'].shape}: the means "
            f"of the {arrays['x_train'].shape[1]} active of {latent_dim} latent dimensions"
        )
        return 0
    config, vae, x, y, c = run_data(args, args.split)
    if isinstance(vae, SemiSupervisedVAE):  # M2 (a run with --labels): the classifier's q(y|x)
        arrays = {"q_y": np.exp(np.asarray(vae.log_q_y(jnp.asarray(x, jnp.float32))))}
    else:
        mean, std = (np.asarray(a) for a in posterior_moments(vae, x, c=None if c is None else jnp.asarray(c)))
        arrays = {"mean": mean, "std": std}
    arrays |= {} if y is None else {"y": y}
    if y is not None and config.train.classes and not args.dataset:  # the names of the labels, as trained
        arrays["classes"] = np.asarray(config.train.classes)
    _write(out, arrays)
    examples = {"test": "test examples", "train": "training examples", "all": "examples (training, then test)"}
    labels = ", labels y" + (" named by classes" if "classes" in arrays else "") if y is not None else ""
    what = "q(y|x), q_y" if "q_y" in arrays else "posterior mean and std"
    shape = next(iter(arrays.values())).shape
    print(f"{out}: {what} of {len(x)} {examples[args.split]}, shape {shape}{labels}")
    return 0


def _features(args) -> tuple[dict, int]:
    """(arrays, the model's number of latent dimensions): M1's features of both splits, x_train (n, k) and
    x_test (m, k), the posterior means of the k latent dimensions whose variance over the training means exceeds
    `evaluate.ACTIVE_THRESHOLD` (Kingma et al.'s std > 0.1), their standard deviations x_std_train (for `--binarize
    redraw`) and the labels y_train, y_test."""
    import numpy as np

    from jaxvae.evaluate import ACTIVE_THRESHOLD, posterior_moments
    from jaxvae.semisupervised import SemiSupervisedVAE

    if args.split != "test":
        raise InputError("--features writes both splits (x_train, x_test): leave out --split")
    config, vae, data = run_model_and_data(args)
    if isinstance(vae, SemiSupervisedVAE) or config.train.condition:
        raise InputError("--features needs an unconditional VAE (M1), not a run with --labels or --condition")
    means, stds, labels = {}, {}, {}
    for split in ("train", "test"):
        x, y, _ = split_examples(args, config, data, split)
        if y is None:
            raise InputError("--features needs labelled data: M2 learns from the labels")
        mean, std = posterior_moments(vae, x)
        means[split], stds[split], labels[split] = np.asarray(mean), np.asarray(std), y
    active = np.var(means["train"], axis=0) > ACTIVE_THRESHOLD
    if not active.any():
        raise InputError(f"{args.run_dir}: no active latent dimension (Var of the means > {ACTIVE_THRESHOLD})")
    return {
        "x_train": means["train"][:, active],
        "x_test": means["test"][:, active],
        "x_std_train": stds["train"][:, active],
        "y_train": labels["train"],
        "y_test": labels["test"],
    }, active.size


def _write(out: Path, arrays: dict) -> None:
    """`arrays` as an .npz file at `out`, written atomically."""
    import numpy as np

    from jaxvae.checkpoint import write_atomically

    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    try:
        write_atomically(out, buffer.getvalue())
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror}") from None
