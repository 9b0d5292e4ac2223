"""`jaxvae evaluate`: the bounds, log-likelihoods and gaps of a run, or of every member of a sweep."""

import argparse
import sys
from pathlib import Path

from jaxvae.cli.run_data import run_data
from jaxvae.cli.startup import start_jax
from jaxvae.cli.tables import run_table, sweep_table
from jaxvae.errors import InputError


def run(args) -> int:
    import inspect
    import json

    start_jax()
    import jax

    from jaxvae import memory, sweep
    from jaxvae.builder import PRECISIONS
    from jaxvae.evaluate import class_means, log_likelihood, log_likelihoods, report
    from jaxvae.model import AmortizedModel
    from jaxvae.networks import with_precision

    if args.iw_samples < 1:
        raise InputError(f"--iw-samples must be at least 1, got {args.iw_samples}")
    if args.n is not None and args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}")
    chunk = inspect.signature(log_likelihood).parameters["chunk"].default  # the draws L_K takes at a time
    memory.check_importance_samples("--iw-samples", args.iw_samples, chunk)
    if args.per_example is not None and not args.gaps:
        raise InputError("--per-example writes the values of --gaps: pass --gaps too")
    out = None if args.per_example is None else Path(args.per_example)
    if out is not None and (out.suffix != ".npz" or not out.parent.is_dir()):
        raise InputError(f"--per-example must name a .npz file in an existing folder, got {args.per_example}")
    if sweep.is_sweep(Path(args.run_dir)):
        if args.gaps or args.gradient_snr:
            raise InputError("--gaps and --gradient-snr evaluate one run, not a sweep: pass a member's folder")
        return _evaluate_sweep(args)
    config, vae, x, y, c = run_data(args, args.split, args.checkpoint)
    vae = with_precision(vae, PRECISIONS[args.precision])
    if config.train.labels:
        return _evaluate_m2(args, config, vae, x, y)
    if args.gaps and not isinstance(vae, AmortizedModel):
        raise InputError(
            "--gaps fits q* for one-layer and bottom-up models; a top-down model's q(z|x) has no per-example "
            "parameters of its own (train with --inference bottom-up)"
        )
    x, c = x[: args.n], None if c is None else jax.numpy.asarray(c[: args.n])
    if args.gradient_snr:
        batch = len(x[: config.train.batch_size])
        memory.check_draws("--gradient-snr", max(args.gradient_snr), batch * max(args.gradient_snr), config.model)
    key = jax.random.PRNGKey(args.seed)
    progress = not args.quiet
    likelihoods = log_likelihoods(vae, x, key, args.iw_samples, progress=progress, c=c)  # the report's, the gaps'
    result = report(vae, x, key, args.iw_samples, likelihoods, progress=progress, c=c)
    if c is not None:
        result["condition"] = config.train.condition
    if config.train.condition == "label" and y is not None:
        classes = config.model.condition_dim
        result |= {
            f"{name}_per_class": class_means(values, y[: args.n], classes) for name, values in likelihoods.items()
        }
    if args.gaps:
        result |= _gaps(args, vae, x, c, None if y is None else y[: args.n], key, likelihoods)
    if args.gradient_snr:
        batch = config.train.batch_size
        result |= _gradient_snr(args, vae, x[:batch], None if c is None else c[:batch], key)
    if args.json:
        data = {"dataset": args.dataset or config.train.dataset, "split": args.split, "checkpoint": args.checkpoint}
        print(json.dumps(data | result))
        return 0
    print(run_table(result, args.run_dir, args.dataset or config.train.dataset, args.split))
    return 0


def _evaluate_m2(args, config, model, x, y) -> int:
    """`evaluate` of M2 (a run with --labels): `_m2_report` printed as JSON or as a table."""
    import json

    if args.gaps or args.gradient_snr:
        raise InputError("--gaps and --gradient-snr evaluate a VAE of p(x), not M2's parts (a run with --labels)")
    result = _m2_report(args, config, model, x, y)
    if args.json:
        print(json.dumps(result))
        return 0
    labels = f"{config.train.labels} labels, label seed {config.train.m2_label_seed}"
    print(f"M2 run {args.run_dir} ({labels}) on {result['dataset']} {args.split}, {result['n']} examples:")
    rows = {
        "classification error, argmax q(y|x)": f"{result['classification_error']:.2%}",
        "U(x), the unlabelled bound": f"{result['unlabelled_bound']:.2f} nats",
        f"log p(x), L_K per class, K = {args.iw_samples}": f"{result['log_likelihood']:.2f} nats",
    }
    if "log_likelihood_quadrature" in result:
        rows["log p(x), quadrature per class"] = f"{result['log_likelihood_quadrature']:.2f} nats"
    width = max(map(len, rows))
    print("\n".join(f"  {name:<{width}}  {value}" for name, value in rows.items()))
    return 0


def _m2_report(args, config, model, x, y) -> dict:
    """M2's figures on x (n, d) with its labels y (n,) (the first --n): q(y|x)'s classification errors (overall,
    per class, the confusion matrix) and log p(x) with the label summed out, each a mean over the examples:
    `unlabelled_bound` U(x) (one ELBO draw per class), `log_likelihood` log sum_y p(y) exp L_K(x|y), and for
    k <= 2 `log_likelihood_quadrature`, the same sum of the quadratures of log p(x|y)."""
    import math

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxvae.evaluate import log_likelihoods, standard_error
    from jaxvae.semi_train import classify
    from jaxvae.semisupervised import classification_errors, label_summed_out, unlabelled_elbo

    if y is None:
        raise InputError("a run with --labels is scored on labelled data: the data evaluated have no labels")
    x, y, classes = jnp.asarray(x[: args.n], jnp.float32), np.asarray(y[: args.n]), model.classes
    scores = classification_errors(y, classify(model, np.asarray(x)), classes)
    per_class = np.asarray(scores["per_class"], np.float64)
    bound_key, likelihood_key = jax.random.split(jax.random.PRNGKey(args.seed))
    bound_of = eqx.filter_jit(unlabelled_elbo)
    chunk = 500
    chunks = enumerate(range(0, len(x), chunk))
    bound = jnp.concatenate(
        [bound_of(model, x[i : i + chunk], key=jax.random.fold_in(bound_key, j))[0] for j, i in chunks]
    )
    by_class = [  # log p(x | y) of every class y: each estimate's (n,)
        log_likelihoods(
            model.vae,
            x,
            jax.random.fold_in(likelihood_key, label),
            args.iw_samples,
            progress=not args.quiet,
            c=jnp.broadcast_to(jnp.eye(classes)[label], (len(x), classes)),
        )
        for label in range(classes)
    ]
    result = {
        "dataset": args.dataset or config.train.dataset,
        "split": args.split,
        "checkpoint": args.checkpoint,
        "n": len(x),
        "labels": config.train.labels,
        "label_seed": config.train.m2_label_seed,
        "classification_error": scores["classification_error"],
        "classification_error_per_class": [None if math.isnan(e) else float(e) for e in per_class],
        "confusion_matrix": np.asarray(scores["confusion"]).tolist(),
        "unlabelled_bound": float(jnp.mean(bound)),
        "unlabelled_bound_se": standard_error(bound),
        "iw_samples": args.iw_samples,
    }
    for name in by_class[0]:
        log_px = label_summed_out(model, jnp.stack([b[name] for b in by_class]))
        result |= {name: float(jnp.mean(log_px)), f"{name}_se": standard_error(log_px)}
    return result


def _gaps(args, vae, x, c, y, key, likelihoods: dict) -> dict:
    """The inference gaps of x (given its conditions c, or None) with the report's `key` and `likelihoods`: their
    means for the report, RUN/figures/gaps.png, and --per-example's file (with the labels y, if any)."""
    import numpy as np

    from jaxvae import gaps, plots
    from jaxvae.runs import FIGURES, epochs_done

    per_example = gaps.inference_gaps(
        vae, x, key, iw_samples=args.iw_samples, likelihoods=likelihoods, progress=not args.quiet, c=c
    )
    summary = gaps.summary(per_example, vae.latent_dim)
    run_dir = Path(args.run_dir)
    figure = plots.gaps_figure(per_example, run_dir / FIGURES, summary["gaps_log_px"], epochs_done(run_dir))
    summary["gaps_figure"] = str(figure)
    if args.per_example is not None:
        with open(args.per_example, "wb") as f:
            np.savez(f, **per_example, **({} if y is None else {"y": y}))
    return summary


def _gradient_snr(args, vae, x, c, key) -> dict:
    """The SNR table of `snr.snr_table` on the batch x and its conditions c (or None) (JSON keys: K as text) and
    RUN/figures/gradient_snr.png."""
    from jaxvae import plots, snr
    from jaxvae.runs import FIGURES

    table = snr.snr_table(vae, x, key, args.gradient_snr, progress=not args.quiet, c=c)
    figures = Path(args.run_dir) / FIGURES
    figures.mkdir(exist_ok=True)
    figure = plots.gradient_snr(table, figures / "gradient_snr.png", snr.REPETITIONS, len(x))
    return {
        "gradient_snr": {name: {str(k): v for k, v in by_k.items()} for name, by_k in table.items()},
        "gradient_snr_repetitions": snr.REPETITIONS,
        "gradient_snr_batch": len(x),
        "gradient_snr_figure": str(figure),
    }


def _evaluate_sweep(args) -> int:
    """`evaluate` of every member of a sweep: each figure as mean +- sd over the members of each setting."""
    import json

    import jax

    from jaxvae import sweep
    from jaxvae.builder import PRECISIONS
    from jaxvae.evaluate import report
    from jaxvae.networks import with_precision
    from jaxvae.runs import epoch_checkpoints
    from jaxvae.sweep_statistics import groups as groups_of
    from jaxvae.sweep_statistics import summarize

    out = Path(args.run_dir)
    results, dataset = {}, args.dataset
    for name in sweep.read_members(out):
        if not epoch_checkpoints(out / name):
            print(f"{out / name}: no checkpoint (diverged in, or never finished, epoch 1): skipped", file=sys.stderr)
            continue
        member = argparse.Namespace(**{**vars(args), "run_dir": str(out / name)})
        config, vae, x, y, c = run_data(member, args.split, args.checkpoint)
        dataset = args.dataset or config.train.dataset
        vae = with_precision(vae, PRECISIONS[args.precision])
        if config.train.labels:  # M2's members
            results[name] = _m2_report(member, config, vae, x, y)
            continue
        key = jax.random.PRNGKey(args.seed)
        c = None if c is None else jax.numpy.asarray(c[: args.n])
        results[name] = report(vae, x[: args.n], key, args.iw_samples, progress=not args.quiet, c=c)
    if not results:
        raise InputError(f"no member of the sweep in {out} has a checkpoint to evaluate")
    groups = summarize(results, groups_of(sweep.read_members(out)))
    if args.json:
        print(json.dumps({"dataset": dataset, "split": args.split, "members": results, "groups": groups}))
        return 0
    print(sweep_table(results, groups, out, dataset, args.split))
    return 0
