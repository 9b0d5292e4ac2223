"""The `jaxvae` command: parses arguments and calls the library.

Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 anything unexpected.
"""

import argparse
import contextlib
import dataclasses
import functools
import gc
import shlex
import shutil
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jaxvae.config import (
    ACTIVATIONS,
    ARCHITECTURES,
    BINARIZE,
    GAUSSIAN_VARIANCES,
    LIKELIHOODS,
    OBJECTIVES,
    OPTIMIZERS,
    POSTERIORS,
    PRIORS,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from jaxvae.errors import Diverged, InputError

DEFAULT_HIDDEN = {"mlp": (512,), "conv": (32, 64), "gated": (300, 300)}


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def widths(text: str) -> tuple[int, ...]:
    """'512' or '200,200' -> (512,) or (200, 200)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        message = f"expected comma-separated integers like 512 or 200,200, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"hidden widths must be positive, got {text!r}")
    return values


def number_range(text: str) -> tuple[float, float]:
    """'-6,2' -> (-6.0, 2.0): a low and a high bound."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH, got {text!r}") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"expected LOW < HIGH, got {text!r}")
    return (low, high)


def image_size(text: str) -> tuple[int, int]:
    """'28' or '32,48' -> (28, 28) or (32, 48): height and width."""
    try:
        size = tuple(int(v) for v in text.split(","))
    except ValueError:
        size = ()
    if len(size) not in (1, 2) or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers H or H,W, got {text!r}")
    return (size[0], size[-1])


def sweep_values(text: str) -> tuple[str, tuple[float, ...]]:
    """'beta=0.5,1' -> ('beta', (0.5, 1.0))."""
    name, _, values = text.partition("=")
    try:
        return name, tuple(float(v) for v in values.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... like beta=0.5,1, got {text!r}") from None


RESUMABLE = ("epochs", "keep_checkpoints")  # the settings --resume may change; the others are the run's


def _start_jax() -> None:
    """Import JAX, keeping compiled programs on disk, with two malloc arenas: what every command does once
    its options are checked (so that `--help` and usage errors answer without JAX's second of imports)."""
    from jaxvae.parallel import enable_compilation_cache, limit_malloc_arenas

    limit_malloc_arenas()
    enable_compilation_cache()


def _schedule(args) -> TrainConfig:
    """The training settings of the options, checked (InputError) before anything heavy is imported."""
    validation_fraction = args.validation_fraction
    if validation_fraction is None:
        validation_fraction = 0.1 if args.early_stopping else 0.0
    return TrainConfig(
        dataset=args.dataset,
        binarize=args.binarize,
        objective=args.objective,
        samples=args.samples,
        epochs=10 if args.epochs is None else args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        seed=args.seed,
        image_size=args.image_size,
        validation_fraction=validation_fraction,
        early_stopping=args.early_stopping,
        keep_checkpoints=TrainConfig.keep_checkpoints if args.keep_checkpoints is None else args.keep_checkpoints,
        beta=args.beta,
        kl_warmup_epochs=args.kl_warmup_epochs,
        free_bits=args.free_bits,
        tensorboard=args.tensorboard,
    )


def train(args) -> int:
    out = Path(args.out)
    if args.resume and args.overwrite:
        raise InputError("--resume continues a run and --overwrite replaces it: pass one of them")
    configs, config, data = _resumed_run(args, out) if args.resume else _new_run(args, out)
    from jaxvae import parallel, sweep
    from jaxvae.runs import best_validation, read_metrics
    from jaxvae.train import fit

    writer = parallel.is_writer()
    if configs is not None:
        ended = sweep.fit_sweep(
            configs, data, out, resume=args.resume, progress=not args.quiet, device_budget=args.device_memory_budget
        )
        print(sweep.summary(out, ended))
        print(f"sweep folder {out}: {sweep.SWEEP}, {sweep.CURVES}, one run folder per member")
        return 0
    fit(config, data, out, resume=args.resume, progress=not args.quiet, device_budget=args.device_memory_budget)
    if not writer:
        return 0
    last = read_metrics(out)[-1]
    figures = ", ".join(sorted(p.name for p in (out / "figures").glob("*.png")))
    print(f"epoch {last['epoch']}: train ELBO {last['train_elbo']:.2f} nats, test ELBO {last['test_elbo']:.2f} nats")
    if "validation_elbo" in last:
        best_elbo, best_epoch = best_validation(read_metrics(out))
        stopped = " (stopped early)" if last["epoch"] < config.train.epochs else ""
        print(f"best validation ELBO {best_elbo:.2f} nats at epoch {best_epoch}{stopped}")
    board = ", tensorboard/" if config.train.tensorboard else ""
    print(f"run folder {out}: config.json, metrics.jsonl, checkpoints/, figures/ ({figures}){board}")
    return 0


def _import_training() -> None:
    """`_start_jax` and the modules `train` uses."""
    _start_jax()
    from jaxvae import parallel, sweep, train  # noqa: F401


def _new_run(args, out: Path) -> tuple:
    """A new run's member configs (None unless a sweep), config and data, its options checked.

    MNIST and Fashion-MNIST are read while JAX is imported on a thread of its own: JAX's imports (0.6 s)
    hold the interpreter, reading and gunzipping IDX files mostly does not, and imports nothing. Other
    data may import modules of their own (scikit-learn's digits import JAX), and two threads importing
    one package can each find the other's half-imported, so they are read after JAX's imports.
    """
    from jaxvae.data import NAMED_IDX, load_dataset  # NumPy's import before JAX's thread, for the same reason

    schedule = _schedule(args)
    writer = args.process_id in (None, 0)  # process 0 writes; `--process-id` is how a run names the others
    if writer:
        _check_out(out, args.overwrite)
    read = functools.partial(
        load_dataset, args.dataset, data_dir=args.data_dir, image_size=args.image_size, progress=not args.quiet
    )
    if args.dataset in NAMED_IDX:
        with ThreadPoolExecutor(1) as pool:
            importing = pool.submit(_import_training)
            data = read()
            importing.result()
    else:
        _import_training()
        data = read()
    from jaxvae import parallel, sweep
    from jaxvae.train import check_data

    parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    model = ModelConfig(
        data_shape=tuple(data.shape),
        latent_dim=args.latent_dim,
        hidden=args.hidden or DEFAULT_HIDDEN[args.architecture],
        activation=args.activation,
        likelihood=args.likelihood,
        architecture=args.architecture,
        gaussian_variance=args.gaussian_variance,
        gaussian_std=args.gaussian_std,
        posterior=args.posterior,
        prior=args.prior,
        log_var_range=args.log_var_range or (),
    )
    if args.model:
        from jaxvae.model_file import with_source

        model = with_source(model, args.model)
    config = RunConfig(model, schedule)
    check_data(data, config)
    configs = None
    if args.seeds != 1 or args.sweep:
        configs = sweep.member_configs(config, args.seeds, args.sweep)
        sweep.check(configs, data, args.device_memory_budget)
    if writer and out.exists():
        shutil.rmtree(out)
    return configs, config, data


def _resumed_run(args, out: Path) -> tuple:
    """The member configs (None unless a sweep), config and data of the run `out` to resume."""
    _start_jax()
    from jaxvae import parallel, sweep
    from jaxvae.data import load_dataset
    from jaxvae.runs import CONFIG
    from jaxvae.train import check_data

    parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    configs = None
    if sweep.is_sweep(out):
        configs = {name: _resumed_config(args, out / name / CONFIG) for name in sweep.read_members(out)}
    config = _resumed_config(args, out / CONFIG) if configs is None else next(iter(configs.values()))
    data = load_dataset(
        config.train.dataset, data_dir=args.data_dir, image_size=config.train.image_size, progress=not args.quiet
    )
    check_data(data, config)
    return configs, config, data


def explore(args) -> int:
    _start_jax()
    from jaxvae.explore import make_server

    server = make_server(args.run_dir, args.host, args.port)
    print(f"exploring {args.run_dir} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see `interruptible`): stopping the server is its normal end
        pass
    finally:
        server.server_close()
    return 0


def _run_data(args, split: str = "test"):
    """(run config, model, data x of the chosen split ready for the model, labels or None) for a run folder.

    The dataset and binarization default to the run's own; binarized evaluation data are sampled with the
    fixed seed data.TEST_BINARIZATION_SEED, as in training, so evaluations compare.
    """
    import numpy as np

    from jaxvae.data import TEST_BINARIZATION_SEED, binarized, load_dataset
    from jaxvae.runs import CONFIG
    from jaxvae.train import check_data, load

    run_dir = Path(args.run_dir)
    config = RunConfig.load(run_dir / CONFIG)
    data = load_dataset(args.dataset or config.train.dataset, image_size=config.train.image_size, progress=False)
    method = args.binarize or config.train.binarize
    check_data(data, RunConfig(config.model, dataclasses.replace(config.train, binarize=method)))
    if split == "all":  # e.g. an .npz of held-out data: every example in it
        x = np.concatenate([data.x_train, data.x_test])
        y = None if data.y_train is None else np.concatenate([data.y_train, data.y_test])
    else:
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    return config, load(run_dir), binarized(x, method, TEST_BINARIZATION_SEED), y


def evaluate(args) -> int:
    import json

    _start_jax()
    import jax

    from jaxvae import sweep
    from jaxvae.evaluate import log_likelihoods, report

    if args.iw_samples < 1:
        raise InputError(f"--iw-samples must be at least 1, got {args.iw_samples}")
    if args.n is not None and args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}")
    if args.per_example is not None and not args.gaps:
        raise InputError("--per-example writes the values of --gaps: pass --gaps too")
    out = None if args.per_example is None else Path(args.per_example)
    if out is not None and (out.suffix != ".npz" or not out.parent.is_dir()):
        raise InputError(f"--per-example must name a .npz file in an existing folder, got {args.per_example}")
    if sweep.is_sweep(Path(args.run_dir)):
        if args.gaps:
            raise InputError("--gaps evaluates one run, not a sweep: pass a member's folder")
        return _evaluate_sweep(args)
    config, vae, x, y = _run_data(args, args.split)
    x = x[: args.n]
    key = jax.random.PRNGKey(args.seed)
    likelihoods = log_likelihoods(vae, x, key, args.iw_samples)  # computed once for the report and the gaps
    result = report(vae, x, key, args.iw_samples, likelihoods)
    if args.gaps:
        result |= _gaps(args, vae, x, None if y is None else y[: args.n], key, likelihoods)
    if args.json:
        print(json.dumps(result))
        return 0
    k = result["iw_samples"]
    rows = [
        ("ELBO", result["elbo"]),
        ("  reconstruction E_q[log p(x|z)]", result["reconstruction"]),
        ("  KL(q(z|x) || p(z))", result["kl"]),
        (f"log-likelihood, importance-weighted bound (K = {k})", result["log_likelihood"]),
    ]
    if "log_likelihood_quadrature" in result:
        rows.append(("log-likelihood, quadrature (converged to 0.01)", result["log_likelihood_quadrature"]))
    dataset = args.dataset or config.train.dataset
    print(f"{args.run_dir}: {dataset}, {args.split} split, {result['n']} examples; means per example in nats")
    for name, value in rows:
        print(f"  {name:<52} {value:10.2f}")
    if args.gaps:
        samples = result["gaps_elbo_samples"]
        print(f"  inference gaps (Cremer et al. 2018); ELBO(q) and ELBO(q*) from the same {samples} draws, +- MC s.e.")
        gap_rows = [
            ("ELBO(q*), q* fitted to each example", "elbo_optimized"),
            ("amortization gap ELBO(q*) - ELBO(q)", "amortization_gap"),
            ("approximation gap log p(x) - ELBO(q*)", "approximation_gap"),
            ("log-likelihood, L_K with q* as the proposal", "log_likelihood_optimized"),
        ]
        for name, key in gap_rows:
            se = f" +- {result[key + '_se']:.3f}" if key + "_se" in result else ""
            print(f"    {name:<50} {result[key]:10.2f}{se}")
        print(f"    log p(x) of the gaps: {result['gaps_log_px']}; figure: {result['gaps_figure']}")
    k_dims = len(result["kl_per_dim"])
    print(f"  {'bits per dimension, -L_K / (d ln 2)':<52} {result['bits_per_dim']:10.4f}")
    print(f"  {'active units, Var_x E[z|x] > 0.01':<52} {str(result['active_units']) + ' of ' + str(k_dims):>10}")
    per_dim = result["kl_per_dim"]
    per_dim = "n/a for a flow" if None in per_dim else ", ".join(f"{v:.2f}" for v in per_dim)
    print(f"  {'KL per latent dimension':<52} {per_dim:>10}")
    return 0


def _gaps(args, vae, x, y, key, likelihoods: dict) -> dict:
    """The inference gaps of x with the report's `key` and `likelihoods`: their means for the report,
    RUN/figures/gaps.png, and --per-example's file."""
    import numpy as np

    from jaxvae import gaps, plots
    from jaxvae.runs import FIGURES

    per_example = gaps.inference_gaps(vae, x, key, iw_samples=args.iw_samples, likelihoods=likelihoods)
    summary = gaps.summary(per_example, vae.latent_dim)
    figures = Path(args.run_dir) / FIGURES
    figures.mkdir(exist_ok=True)
    summary["gaps_figure"] = str(plots.inference_gaps(per_example, figures / "gaps.png", summary["gaps_log_px"]))
    if args.per_example is not None:
        with open(args.per_example, "wb") as f:
            np.savez(f, **per_example, **({} if y is None else {"y": y}))
    return summary


def _evaluate_sweep(args) -> int:
    """`evaluate` of every member of a sweep: each figure as mean +- sd over the members of each setting."""
    import json

    import jax

    from jaxvae import sweep
    from jaxvae.evaluate import report
    from jaxvae.runs import epoch_checkpoints

    out = Path(args.run_dir)
    results = {}
    for name in sweep.read_members(out):
        if not epoch_checkpoints(out / name):
            print(f"{out / name}: no checkpoint (diverged in, or never finished, epoch 1): skipped", file=sys.stderr)
            continue
        config, vae, x, _ = _run_data(argparse.Namespace(**{**vars(args), "run_dir": str(out / name)}), args.split)
        results[name] = report(vae, x[: args.n], jax.random.PRNGKey(args.seed), args.iw_samples)
    if not results:
        raise InputError(f"no member of the sweep in {out} has a checkpoint to evaluate")
    groups = sweep.summarize(results, sweep.groups(out))
    if args.json:
        print(json.dumps({"members": results, "groups": groups}))
        return 0
    first = next(iter(results.values()))
    rows = [  # title, key, decimals
        ("ELBO", "elbo", 2),
        ("  reconstruction E_q[log p(x|z)]", "reconstruction", 2),
        ("  KL(q(z|x) || p(z))", "kl", 2),
        (f"log-likelihood, importance-weighted bound (K = {first['iw_samples']})", "log_likelihood", 2),
        ("log-likelihood, quadrature (converged to 0.01)", "log_likelihood_quadrature", 2),
        ("bits per dimension, -L_K / (d ln 2)", "bits_per_dim", 4),
        ("active units, Var_x E[z|x] > 0.01", "active_units", 1),
    ]
    dataset = args.dataset or config.train.dataset
    print(
        f"{out}: {len(results)} members, {dataset}, {args.split} split, {first['n']} examples; "
        "means per example in nats, mean +- sd (n - 1) over each setting's members"
    )
    for label, group in groups.items():
        print(f"  {label} ({', '.join(group['members'])})")
        for title, key, decimals in rows:
            if key in group["mean"]:
                print(f"    {title:<52} {group['mean'][key]:10.{decimals}f} +- {group['sd'][key]:.{decimals}f}")
    return 0


def _png(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InputError(f"-o must name a .png file, got {path}")
    if not out.parent.is_dir():
        raise InputError(f"no such folder: {out.parent}")
    return out


def sample(args) -> int:
    _start_jax()
    import jax

    from jaxvae import plots
    from jaxvae.runs import CONFIG
    from jaxvae.train import load

    config = RunConfig.load(Path(args.run_dir) / CONFIG)
    if not plots.is_image(config.model.data_shape):
        raise InputError(f"the run's data have shape {config.model.data_shape}, not images: nothing to draw")
    if args.n < 1:
        raise InputError(f"-n must be at least 1, got {args.n}")
    out = _png(args.out)
    plots.samples(load(args.run_dir), config.model.data_shape, out, key=jax.random.PRNGKey(args.seed), n=args.n)
    print(f"{args.n} samples from the prior, decoded to the mean of p(x|z): {out}")
    return 0


def plot(args) -> int:
    _start_jax()
    from jaxvae import plots
    from jaxvae.data import load_dataset
    from jaxvae.runs import CONFIG, FIGURES, read_metrics
    from jaxvae.train import load

    run_dir = Path(args.run_dir)
    config = RunConfig.load(run_dir / CONFIG)
    vae = load(run_dir)
    written = plots.write_figures(
        vae,
        load_dataset(config.train.dataset, image_size=config.train.image_size, progress=False),
        config,
        run_dir / FIGURES,
        read_metrics(run_dir),
    )
    print(f"{run_dir / FIGURES}: {', '.join(p.name for p in written)}")
    return 0


def encode(args) -> int:
    _start_jax()
    import numpy as np

    from jaxvae.evaluate import posterior_moments

    out = Path(args.out)
    if out.suffix != ".npz":
        raise InputError(f"-o must name a .npz file, got {args.out}")
    if not out.parent.is_dir():
        raise InputError(f"no such folder: {out.parent}")
    _, vae, x, y = _run_data(args, args.split)
    mean, std = (np.asarray(a) for a in posterior_moments(vae, x))
    arrays = {"mean": mean, "std": std} | ({} if y is None else {"y": y})
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    print(
        f"{out}: posterior mean and std of {len(x)} {args.split} examples, shape {mean.shape}"
        + (", labels y" if y is not None else "")
    )
    return 0


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write over an existing run unless `overwrite`, and never delete a folder that is not a run."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise InputError(f"{out} exists: pass --resume to continue it or --overwrite to replace it")
    if not ((out / "config.json").is_file() or (out / "sweep.json").is_file()):
        raise InputError(
            f"{out} is not empty and holds no jaxvae run or sweep (no config.json or sweep.json): "
            "--overwrite will not delete it"
        )


def _resumed_config(args, path: Path) -> RunConfig:
    """The run's saved config, with --epochs and --keep-checkpoints applied; other options are refused."""
    defaults = vars(build_parser().parse_args(["train", "--out", str(path.parent)]))
    free = (*RESUMABLE, "out", "resume", "quiet", "data_dir")
    fixed = [name for name, value in vars(args).items() if name not in free and value != defaults[name]]
    if fixed:
        options = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise InputError(f"{options} cannot change when resuming: the run's config.json fixes it")
    config = RunConfig.load(path)
    changes = {name: getattr(args, name) for name in RESUMABLE if getattr(args, name) is not None}
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


def build_parser() -> Parser:
    parser = Parser(prog="jaxvae", description="Variational autoencoders in JAX: train, evaluate, explore.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = commands.add_parser("train", help="train a VAE and write a run folder")
    p.add_argument(
        "--dataset",
        default="digits",
        help="digits, mnist, fashion-mnist, a folder of IDX files or images, or a .npz/.npy file",
    )
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument(
        "--hidden", type=widths, help="MLP widths, e.g. 512 or 200,200, or conv channels (default 512; conv 32,64)"
    )
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="tanh")
    p.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli")
    p.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default="mlp",
        help="mlp; conv; gated: gated dense layers, h(x) * sigmoid(g(x)), as the VampPrior code's (default 300,300)",
    )
    p.add_argument(
        "--gaussian-variance",
        choices=GAUSSIAN_VARIANCES,
        default="learned-shared",
        help="variance of a gaussian likelihood: learned (one for all pixels or one per pixel) or fixed",
    )
    p.add_argument("--gaussian-std", type=float, default=1.0, help="the fixed std, or where a learned one starts")
    p.add_argument(
        "--posterior",
        default="diagonal",
        help=f"q(z|x): {', '.join(POSTERIORS)} (inverse autoregressive flow of T steps)",
    )
    p.add_argument(
        "--prior",
        default="normal",
        help=f"p(z): {', '.join(PRIORS)} (K Gaussians, or the VampPrior with K pseudo-inputs)",
    )
    p.add_argument(
        "--log-var-range",
        type=number_range,
        metavar="LOW,HIGH",
        help="clip the diagonal posterior's log-variances to [LOW, HIGH] (the VampPrior code's: --log-var-range=-6,2)",
    )
    p.add_argument(
        "--model",
        metavar="FILE.py:FUNCTION",
        help="build the model with your own FUNCTION(config: ModelConfig, key) -> jaxvae.VAE",
    )
    p.add_argument("--binarize", choices=BINARIZE, default="none", help="none, static, dynamic, threshold (x > 0.5)")
    p.add_argument("--objective", choices=OBJECTIVES, default="elbo")
    p.add_argument("--samples", type=int, default=1, help="Monte Carlo samples S (elbo) or K (iwae)")
    p.add_argument("--beta", type=float, default=1.0, help="weight of the KL term in the training loss (elbo)")
    p.add_argument("--kl-warmup-epochs", type=int, default=0, help="epochs over which beta rises from 0 (elbo)")
    p.add_argument("--free-bits", type=float, default=0.0, help="nats of KL per latent dimension not penalized (elbo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs to train (default 10)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's step size (default 1e-3)")
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="adam",
        help="adam; adam-normgrad: each parameter's gradient scaled to unit norm first, as the VampPrior code's",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds", type=int, default=1, help="train N members together, seeds --seed to --seed + N - 1 (OUT/seed-S)"
    )
    p.add_argument(
        "--sweep",
        type=sweep_values,
        metavar="NAME=V1,V2,...",
        help="train one member per value of beta, lr or free-bits together (OUT/NAME-V); with --seeds, every pair",
    )
    p.add_argument("--keep-checkpoints", type=int, default=None, help="epoch checkpoints to keep (default 3)")
    p.add_argument("--data-dir", help="a folder to look in first for mnist and fashion-mnist")
    p.add_argument("--image-size", type=image_size, help="resize images in a folder to H or H,W pixels")
    p.add_argument(
        "--validation-fraction",
        type=float,
        help="training examples held out for the validation ELBO (default 0.1 with --early-stopping, else 0)",
    )
    p.add_argument(
        "--early-stopping",
        type=int,
        default=0,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better validation ELBO; the best is checkpoints/best.eqx",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action="store_true", help="also write scalars and figures to RUN_DIR/tensorboard/")
    p.add_argument("--coordinator", help="HOST:PORT of process 0, to train on several processes (hosts)")
    p.add_argument("--num-processes", type=int, help="how many processes train together (with --coordinator)")
    p.add_argument("--process-id", type=int, help="this process's number, 0 to N-1 (with --coordinator)")
    p.add_argument(
        "--device-memory-budget",
        type=int,
        help="bytes of training data each device may hold; larger data streams from host memory "
        "(default: half the device's memory)",
    )
    p.set_defaults(run=train)

    p = commands.add_parser("explore", help="serve a page that decodes the latent point under the pointer")
    p.add_argument("run_dir", help="run folder written by jaxvae train")
    p.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.set_defaults(run=explore)

    def run_data_options(p):
        p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by jaxvae train")
        p.add_argument(
            "--dataset", help="digits, fashion-mnist, an IDX folder or a .npz/.npy file (default: the run's)"
        )
        p.add_argument(
            "--binarize", choices=BINARIZE, help="none, or binarize with the fixed test seed (default: the run's)"
        )
        p.add_argument(
            "--split",
            choices=("test", "train", "all"),
            default="test",
            help="all: the train examples, then the test ones",
        )

    p = commands.add_parser("evaluate", help="ELBO, importance-weighted log-likelihood, quadrature, active units")
    run_data_options(p)
    p.add_argument("--iw-samples", type=int, default=5000, help="K samples of the importance-weighted bound")
    p.add_argument("--n", type=int, help="evaluate only the first N examples of the split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--gaps",
        action="store_true",
        help="also fit q* per example and split log p(x) - ELBO into approximation and amortization gaps",
    )
    p.add_argument("--per-example", metavar="FILE.npz", help="with --gaps: write the per-example values to FILE.npz")
    p.set_defaults(run=evaluate)

    p = commands.add_parser("sample", help="decode prior samples into an image grid")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-n", type=int, default=64, help="number of samples")
    p.add_argument("-o", "--out", required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=sample)

    p = commands.add_parser("plot", help="regenerate every figure of a run under RUN_DIR/figures")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(run=plot)

    p = commands.add_parser("encode", help="posterior means and standard deviations to a .npz file")
    run_data_options(p)
    p.add_argument("-o", "--out", required=True, help=".npz file to write: arrays mean, std (n, k) and y if labelled")
    p.set_defaults(run=encode)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with interruptible():
            return args.run(args)
    except InputError as e:
        print(f"jaxvae: error: {e}", file=sys.stderr)
        return 2
    except (Diverged, OSError) as e:
        print(f"jaxvae: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"jaxvae: interrupted{_how_to_resume(args)}", file=sys.stderr)
        return 130


def run(argv: list[str] | None = None) -> None:
    """The `jaxvae` command: `main`, then an exit that skips the interpreter's last garbage collection,
    which walks every object JAX has made (0.3 s). Nothing waits for it: jaxvae closes its files itself."""
    code = main(argv)
    gc.freeze()
    sys.exit(code)


@contextlib.contextmanager
def interruptible():
    """Within the block, SIGINT (Ctrl-C) and SIGTERM raise KeyboardInterrupt, whatever the dispositions the
    process inherited: a shell starts a background job with SIGINT ignored, and Python then installs no
    handler of its own. The previous handlers are restored after the block."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {s: signal.signal(s, signal.default_int_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _how_to_resume(args) -> str:
    """'; ... continue with: jaxvae train --resume --out RUN' when a checkpoint of the run exists."""
    from jaxvae.runs import epoch_checkpoints

    out = getattr(args, "out", None)
    found = sorted(Path(out).glob("*/checkpoints/epoch-*.eqx")) + epoch_checkpoints(Path(out)) if out else []
    if not found:
        return "; nothing was saved" if out else ""
    return f"; {found[-1]} is saved: continue with: jaxvae train --resume --out {shlex.quote(out)}"


if __name__ == "__main__":
    run()
