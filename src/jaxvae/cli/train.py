"""`jaxvae train`: a new run or sweep from the options, or the run in --out resumed."""

import dataclasses
import functools
import shutil
from pathlib import Path

from jaxvae.cli.parser import build_parser
from jaxvae.cli.startup import read_while_importing, start_jax
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.errors import ImageSizesDiffer, InputError

DEFAULT_HIDDEN = {"mlp": (512,), "conv": (32, 64), "gated": (300, 300)}
RESUMABLE = ("epochs", "keep_checkpoints")  # the settings --resume may change; the others are the run's


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
        groups=args.groups,
        ciwae_beta=args.ciwae_beta,
        gradient=args.gradient,
        precision=args.precision,
        epochs=10 if args.epochs is None else args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        seed=args.seed,
        image_size=args.image_size,
        data_dir=_data_dir(args),
        validation_fraction=validation_fraction,
        early_stopping=args.early_stopping,
        keep_checkpoints=TrainConfig.keep_checkpoints if args.keep_checkpoints is None else args.keep_checkpoints,
        beta=args.beta,
        kl_warmup_epochs=args.kl_warmup_epochs,
        free_bits=args.free_bits,
        tensorboard=args.tensorboard,
    )


def model_config(args, data_shape: tuple[int, ...]) -> ModelConfig:
    """The model of the `train` options for data of shape `data_shape` (H, W) or (d,), its networks from
    --model's file where one is given."""
    model = ModelConfig(
        data_shape=data_shape,
        latent_dim=sum(args.latent_dim),
        layers=args.latent_dim if len(args.latent_dim) > 1 else (),
        inference=args.inference,
        decoder_input=args.decoder_input,
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
    return model


def run(args) -> int:
    out = Path(args.out)
    if args.resume and args.overwrite:
        raise InputError("--resume continues a run and --overwrite replaces it: pass one of them")
    if args.resume and (done := _nothing_to_train(args, out)):
        print(f"{out}: {done}; nothing to do")
        return 0
    configs, config, data = resumed_run(args, out) if args.resume else new_run(args, out)
    from jaxvae import parallel, sweep
    from jaxvae.runs import best_validation, read_metrics, validation_key
    from jaxvae.train import fit

    writer = parallel.is_writer()
    if configs is not None:
        ended = sweep.fit_sweep(
            configs, data, out, resume=args.resume, progress=not args.quiet, device_budget=args.device_memory_budget
        )
        print(sweep.summary(out, ended))
        board = " (each with tensorboard/)" if config.train.tensorboard else ""
        print(f"sweep folder {out}: {sweep.SWEEP}, {sweep.CURVES}, one run folder per member{board}")
        return 0
    fit(config, data, out, resume=args.resume, progress=not args.quiet, device_budget=args.device_memory_budget)
    if not writer:
        return 0
    records = read_metrics(out)
    last = records[-1]
    figures = ", ".join(sorted(p.name for p in (out / "figures").glob("*.png")))
    print(f"epoch {last['epoch']}: train ELBO {last['train_elbo']:.2f} nats, test ELBO {last['test_elbo']:.2f} nats")
    if validation_key("elbo") in last:
        best, best_epoch = best_validation(records, config.train.validation_bound)
        stopped = " (stopped early)" if last["epoch"] < config.train.epochs else ""
        print(f"best validation {config.train.validation_bound_name} {best:.2f} nats at epoch {best_epoch}{stopped}")
    board = ", tensorboard/" if config.train.tensorboard else ""
    print(f"run folder {out}: config.json, metrics.jsonl, checkpoints/, figures/ ({figures}){board}")
    return 0


def new_run(args, out: Path) -> tuple:
    """A new run's member configs (None unless a sweep), config and data, its options checked; the data are
    read beside JAX's imports (`read_while_importing`)."""
    from jaxvae.data import load_dataset  # NumPy's import before JAX's thread (see `read_while_importing`)

    schedule = _schedule(args)
    writer = args.process_id in (None, 0)  # process 0 writes; `--process-id` is how a run names the others
    if writer:
        _check_out(out, args.overwrite)
    read = functools.partial(
        load_dataset, args.dataset, data_dir=args.data_dir, image_size=args.image_size, progress=not args.quiet
    )
    try:
        data = read_while_importing(args.dataset, read)
    except ImageSizesDiffer as e:
        raise InputError(f"{e}: pass --image-size H,W to resize them") from None
    from jaxvae import parallel, sweep
    from jaxvae.train import check_data

    parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    model = model_config(args, tuple(data.shape))
    config = RunConfig(model, dataclasses.replace(schedule, classes=data.classes))
    check_data(data, config)
    configs = None
    if args.seeds != 1 or args.sweep:
        configs = sweep.member_configs(config, args.seeds, args.sweep)
        sweep.check(configs, data, args.device_memory_budget)
    if writer and out.exists():
        shutil.rmtree(out)
    return configs, config, data


def resumed_run(args, out: Path) -> tuple:
    """The member configs (None unless a sweep), config and data of the run `out` to resume."""
    start_jax()
    from jaxvae import parallel, sweep
    from jaxvae.runs import CONFIG, load_data
    from jaxvae.train import check_data

    parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    configs = None
    if sweep.is_sweep(out):
        configs = {name: _resumed_config(args, out / name / CONFIG) for name in sweep.read_members(out)}
    config = _resumed_config(args, out / CONFIG) if configs is None else next(iter(configs.values()))
    data = load_data(config, progress=not args.quiet)
    check_data(data, config)
    return configs, config, data


def _nothing_to_train(args, out: Path) -> str | None:
    """Why resuming `out` to the epochs asked would train nothing (`runs.nothing_to_train`; for a sweep, of
    every member), or None; read from the run's files before its data are."""
    from jaxvae.runs import CONFIG, nothing_to_train

    if not (out / "sweep.json").is_file():
        return nothing_to_train(_resumed_config(args, out / CONFIG).train, out) if (out / CONFIG).is_file() else None
    start_jax()
    from jaxvae import sweep

    folders = [out / name for name in sweep.read_members(out)]
    reasons = {nothing_to_train(_resumed_config(args, f / CONFIG).train, f) for f in folders}
    if None in reasons:
        return None
    return f"every member {reasons.pop()}" if len(reasons) == 1 else "every member has trained or stopped early"


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


def _data_dir(args) -> str | None:
    """--data-dir as an absolute path, so that the run finds its data from any working folder."""
    return None if args.data_dir is None else str(Path(args.data_dir).resolve())


def _resumed_config(args, path: Path) -> RunConfig:
    """The run's saved config, with --epochs and --keep-checkpoints applied, and --data-dir recorded where the
    data are now; other options are refused."""
    defaults = vars(build_parser().parse_args(["train", "--out", str(path.parent)]))
    free = (*RESUMABLE, "out", "resume", "quiet", "data_dir")
    fixed = [name for name, value in vars(args).items() if name not in free and value != defaults[name]]
    if fixed:
        options = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise InputError(f"{options} cannot change when resuming: the run's config.json fixes it")
    config = RunConfig.load(path)
    changes = {name: getattr(args, name) for name in RESUMABLE if getattr(args, name) is not None}
    if args.data_dir is not None:
        changes["data_dir"] = _data_dir(args)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))
