"""`jaxvae train`: a new run or sweep from the options, or the run in --out resumed."""

import dataclasses
import functools
import shutil
from contextlib import nullcontext, suppress
from pathlib import Path

from jaxvae.cli.parser import build_parser
from jaxvae.cli.startup import read_while_importing, start_jax
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.errors import ImageSizesDiffer, InputError
from jaxvae.lock import LOCK_FILE, locked

DEFAULT_HIDDEN = {"mlp": (512,), "conv": (32, 64), "gated": (300, 300)}
RESUMABLE = ("epochs", "keep_checkpoints")  # the settings --resume may change; the others are the run's
NAMED = ("digits", "mnist", "fashion-mnist")  # datasets named, not found at a path


def _schedule(args) -> TrainConfig:
    """The training settings of the options, checked (InputError) before anything heavy is imported."""
    validation_fraction = args.validation_fraction
    if validation_fraction is None:
        validation_fraction = 0.1 if args.early_stopping else 0.0
    return TrainConfig(
        dataset=args.dataset or TrainConfig.dataset,
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
        condition=args.condition or "",
        labels=args.labels,
        label_seed=args.seed if args.labels and args.label_seed is None else args.label_seed,
        alpha=args.alpha,
        labelled_batch=args.labelled_batch,
    )


def model_config(args, data_shape: tuple[int, ...], condition_dim: int = 0) -> ModelConfig:
    """The model of the `train` options for data of shape `data_shape` (H, W) or (d,) (with --condition, its
    condition's `condition_dim` values: the classes, or an array condition's size; with --labels, M2's VAE of
    x given the class), its networks from --model's file where one is given."""
    model = ModelConfig(
        condition_dim=condition_dim if args.condition or args.labels else 0,
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
    if args.process_id not in (None, 0):  # process 0 writes the run folder, and holds its lock
        return _train(args, out)
    if args.resume:
        with locked(out) if out.is_dir() else nullcontext():  # no folder: `_train` says there is no run
            return _train(args, out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    created = not out.exists()
    if created:
        try:
            out.mkdir(parents=True)
        except OSError as e:
            raise InputError(f"cannot write the run folder {out}: {e.strerror}") from None
    try:
        with locked(out):
            return _train_new(args, out)
    except BaseException:
        if created:
            with suppress(OSError):  # where it is not empty, it holds the checkpoints a resume starts from
                out.rmdir()
        raise


def _train(args, out: Path) -> int:
    """Resume the run in `out`, or (on a process that does not write) train the new one."""
    if args.resume and (done := _nothing_to_train(args, out)):
        print(f"{out}: {done}; nothing to do")
        return 0
    return _fit(args, out, *(resumed_run(args, out) if args.resume else new_run(args)))


def _train_new(args, out: Path) -> int:
    """A new run trained into the folder `out`, which this process has locked: refused where `out` holds
    another run (unless --overwrite), emptied (never removed: it may be a mount point) once the options are
    checked, and emptied again when training ends before its first checkpoint."""
    _check_out(out, args.overwrite)
    configs, config, data = new_run(args)
    _empty(out)
    try:
        return _fit(args, out, configs, config, data)
    except BaseException:
        if not any(out.rglob("*.eqx")):
            _empty(out)
        raise


def _fit(args, out: Path, configs, config, data) -> int:
    """Train the run (or sweep) `configs`, `config` on `data` into `out`, and print its summary."""
    from jaxvae import parallel, sweep
    from jaxvae.builder import build_objective
    from jaxvae.cli.sweep_summary import summary
    from jaxvae.runs import best_validation, read_metrics, validation_key
    from jaxvae.train import fit

    writer = parallel.is_writer()
    if configs is not None:
        ended = sweep.fit_sweep(
            configs, data, out, resume=args.resume, progress=not args.quiet, device_budget=args.device_memory_budget
        )
        print(summary(out, ended))
        board = " (each with tensorboard/)" if config.train.tensorboard else ""
        print(f"sweep folder {out}: {sweep.SWEEP}, {sweep.CURVES}, one run folder per member{board}")
        return 0
    fit(config, data, out, resume=args.resume, progress=not args.quiet, device_budget=args.device_memory_budget)
    if not writer:
        return 0
    records = read_metrics(out)
    last = records[-1]
    figures = ", ".join(sorted(p.name for p in (out / "figures").glob("*.png")))
    bound = "U(x)" if config.train.labels else "ELBO"  # M2's bound on log p(x): U(x), the ELBO per class
    error = f", test classification error {last['test_classification_error']:.2%}" if config.train.labels else ""
    print(
        f"epoch {last['epoch']}: train {bound} {last['train_elbo']:.2f} nats, "
        f"test {bound} {last['test_elbo']:.2f} nats{error}"
    )
    if validation_key("elbo") in last:
        objective = build_objective(config.train)
        key, name = ("elbo", bound) if config.train.labels else (objective.bound_key, objective.name)  # M2: U(x)
        best, best_epoch = best_validation(records, key)
        stopped = " (stopped early)" if last["epoch"] < config.train.epochs else ""
        print(f"best validation {name} {best:.2f} nats at epoch {best_epoch}{stopped}")
    board = ", tensorboard/" if config.train.tensorboard else ""
    print(f"run folder {out}: config.json, metrics.jsonl, checkpoints/, figures/ ({figures}){board}")
    return 0


def new_run(args) -> tuple:
    """A new run's member configs (None unless a sweep), config and data, its options checked; the data are
    read beside JAX's imports (`read_while_importing`)."""
    from jaxvae.data import is_image_folder, load_dataset  # NumPy's import before JAX's (`read_while_importing`)

    schedule = _schedule(args)
    _check_applies(args, schedule.dataset)
    _check_condition(args)
    if args.image_size is not None and (schedule.dataset in NAMED or not is_image_folder(schedule.dataset)):
        raise InputError(f"--image-size resizes the images of a folder: {schedule.dataset} is not one")
    if args.image_size is not None:  # before any image is resized to it
        from jaxvae import memory

        memory.check_image_size(RunConfig(model_config(args, args.image_size), schedule))
    read = functools.partial(
        load_dataset, schedule.dataset, data_dir=args.data_dir, image_size=args.image_size, progress=not args.quiet
    )
    try:
        data = read_while_importing(schedule.dataset, read)
    except ImageSizesDiffer as e:
        raise InputError(f"{e}: pass --image-size H,W to resize them") from None
    from jaxvae import memory, parallel, sweep
    from jaxvae.train import check_data, require_condition

    parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    require_condition(data, schedule.condition)
    if schedule.labels:
        require_condition(data, "label", "--labels")
    condition_dim = data.c_train.shape[1] if args.condition == "array" and data.c_train is not None else _classes(data)
    model = model_config(args, tuple(data.shape), condition_dim)
    config = RunConfig(model, dataclasses.replace(schedule, classes=data.classes, dataset=data.source))
    check_data(data, config)
    configs = None
    if args.seeds != 1 or args.sweep:
        configs = sweep.member_configs(config, args.seeds, args.sweep)
        if args.labels and args.label_seed is None:  # each member's labels drawn by its own seed
            configs = {name: _with_label_seed(c, c.train.seed) for name, c in configs.items()}
    memory.check_training(config, 1 if configs is None else len(configs), examples=len(data.x_train))
    if configs is not None:
        sweep.check(configs, data, args.device_memory_budget)
    for note in _notes(config.train, len(data.x_train)):
        print(f"note: {note}")  # on stdout: stderr's one line is for an error that may follow
    return configs, config, data


def _with_label_seed(config: RunConfig, label_seed: int) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, label_seed=label_seed))


def _notes(schedule: TrainConfig, examples: int) -> list[str]:
    """What the settings do that the user may not expect, on data of `examples` training examples."""
    from jaxvae.objectives import kl_weight

    notes = []
    if schedule.batch_size > examples:
        notes.append(
            f"--batch-size {schedule.batch_size} is more than the {examples} training examples: "
            "each epoch is one step on all of them"
        )
    if schedule.kl_warmup_epochs >= schedule.epochs:
        weight = kl_weight(1.0, schedule.kl_warmup_epochs, schedule.epochs)
        notes.append(
            f"--kl-warmup-epochs {schedule.kl_warmup_epochs} outlasts the {schedule.epochs} epochs: the KL weight "
            f"ends at {weight:.2g} of --beta (train --resume --epochs N continues the warm-up)"
        )
    return notes


def resumed_run(args, out: Path) -> tuple:
    """The member configs (None unless a sweep), config and data of the run `out` to resume."""
    start_jax()
    from jaxvae import parallel, sweep
    from jaxvae.run_data import load_data
    from jaxvae.runs import CONFIG
    from jaxvae.train import check_data

    parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    configs = None
    if sweep.is_sweep(out):
        configs = {name: _resumed_config(args, out / name / CONFIG) for name in sweep.read_members(out)}
    config = _resumed_config(args, out / CONFIG) if configs is None else next(iter(configs.values()))
    data = load_data(config, progress=not args.quiet)
    if tuple(data.shape) != tuple(config.model.data_shape):
        raise InputError(
            f"--dataset {args.dataset} has examples of shape {tuple(data.shape)}, the run trained on "
            f"{tuple(config.model.data_shape)}: not the run's data"
        )
    check_data(data, config)
    return configs, config, data


def _nothing_to_train(args, out: Path) -> str | None:
    """Why resuming `out` to the epochs asked would train nothing (`runs.nothing_to_train`; for a sweep, of
    every member), or None; read from the run's files before its data are."""
    from jaxvae.runs import CONFIG, nothing_to_train

    if not (out / "sweep.json").is_file() and not (out / CONFIG).is_file():
        return None
    start_jax()
    from jaxvae import sweep
    from jaxvae.builder import build_objective

    def reason(folder: Path) -> str | None:
        train = _resumed_config(args, folder / CONFIG).train
        return nothing_to_train(train, folder, build_objective(train).bound_key)

    if not (out / "sweep.json").is_file():
        return reason(out)
    reasons = {reason(out / name) for name in sweep.read_members(out)}
    if None in reasons:
        return None
    return f"every member {reasons.pop()}" if len(reasons) == 1 else "every member has trained or stopped early"


def _check_applies(args, dataset: str) -> None:
    """Refuse the options given that the data set or the model would not use (a model file's function may
    read any setting: the model's are its own then)."""
    defaults = vars(build_parser().parse_args(["train", "--out", args.out]))
    given = {name for name, value in vars(args).items() if value != defaults[name]}
    deep = len(args.latent_dim) > 1
    needs = {
        "data_dir": (dataset in NAMED[1:], f"--data-dir is where mnist and fashion-mnist are found, not {dataset}"),
        "gaussian_variance": (args.likelihood == "gaussian", "--gaussian-variance is for --likelihood gaussian"),
        "gaussian_std": (args.likelihood == "gaussian", "--gaussian-std is for --likelihood gaussian"),
        "inference": (deep, "--inference is for a deep model (several latent layers, --latent-dim K1,K2,...)"),
        "activation": (args.architecture != "gated", "--activation is for mlp and conv: gated layers have their own"),
    }
    for name, (applies, message) in needs.items():
        if name in given and not applies and not (args.model and name != "data_dir"):
            raise InputError(message)


def _check_condition(args) -> None:
    """Refuse --prior conditional without a condition, and a mixture or VampPrior of a condition that is not a
    label (a conditional model's is one per class)."""
    if args.prior == "conditional" and not args.condition:
        raise InputError("--prior conditional is p(z|y), a network of the label: it needs --condition label")
    if args.condition not in (None, "", "label") and args.prior.partition(":")[0] in ("mixture", "vamp"):
        raise InputError(
            f"--prior {args.prior} of a conditional model is one per class: it needs --condition label, "
            f"not --condition {args.condition}"
        )


def _classes(data) -> int:
    """The number of classes C of labelled data: its named classes, else the largest label + 1."""
    if data.classes:
        return len(data.classes)
    if data.y_train is None or data.y_test is None:
        return 0
    return int(max(data.y_train.max(initial=0), data.y_test.max(initial=0))) + 1


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write over an existing run in the folder `out` unless `overwrite`, and never empty a folder
    that is not a run."""
    if not _contents(out):
        return
    if not overwrite:
        raise InputError(f"{out} exists: pass --resume to continue it or --overwrite to replace it")
    if not ((out / "config.json").is_file() or (out / "sweep.json").is_file()):
        raise InputError(
            f"{out} is not empty and holds no jaxvae run or sweep (no config.json or sweep.json): "
            "--overwrite will not delete it"
        )


def _contents(folder: Path) -> list[Path]:
    """What `folder` holds besides its lock file."""
    return [p for p in folder.iterdir() if p.name != LOCK_FILE]


def _empty(folder: Path) -> None:
    """Remove what `folder` holds besides its lock file."""
    for path in _contents(folder):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _data_dir(args) -> str | None:
    """--data-dir as an absolute path, so that the run finds its data from any working folder."""
    return None if args.data_dir is None else str(Path(args.data_dir).resolve())


def _resumed_config(args, path: Path) -> RunConfig:
    """The run's saved config, with --epochs and --keep-checkpoints applied, and --dataset and --data-dir
    recorded where the data are now; other options are refused."""
    defaults = vars(build_parser().parse_args(["train", "--out", str(path.parent)]))
    free = (*RESUMABLE, "out", "resume", "quiet", "data_dir", "dataset")
    fixed = [name for name, value in vars(args).items() if name not in free and value != defaults[name]]
    if fixed:
        options = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise InputError(f"{options} cannot change when resuming: the run's config.json fixes it")
    config = RunConfig.load(path)
    changes = {name: getattr(args, name) for name in RESUMABLE if getattr(args, name) is not None}
    if args.dataset is not None:
        changes["dataset"] = _moved(args.dataset, config.train.dataset)
    if args.data_dir is not None:
        _check_applies(args, changes.get("dataset", config.train.dataset))
        changes["data_dir"] = _data_dir(args)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


def _moved(dataset: str, recorded: str) -> str:
    """--dataset when resuming a run that trained on `recorded`: where its data are now, absolute (`resumed_run`
    checks that they have the run's shape). A named dataset stays itself (--data-dir says where its files are)."""
    if dataset in NAMED or recorded in NAMED:
        if dataset != recorded:
            raise InputError(f"--dataset cannot change when resuming: the run trained on {recorded}")
        return dataset
    return str(Path(dataset).resolve())
