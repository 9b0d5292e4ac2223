"""The `jaxvae` command: parses arguments and calls the library.

Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 anything unexpected.
"""

import argparse
import shutil
import sys
from pathlib import Path

from jaxvae.config import (
    ARCHITECTURES,
    BINARIZE,
    GAUSSIAN_VARIANCES,
    LIKELIHOODS,
    OBJECTIVES,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from jaxvae.errors import InputError
from jaxvae.networks import ACTIVATIONS

DEFAULT_HIDDEN = {"mlp": (512,), "conv": (32, 64)}


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


def image_size(text: str) -> tuple[int, int]:
    """'28' or '32,48' -> (28, 28) or (32, 48): height and width."""
    try:
        size = tuple(int(v) for v in text.split(","))
    except ValueError:
        size = ()
    if len(size) not in (1, 2) or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers H or H,W, got {text!r}")
    return (size[0], size[-1])


def train(args) -> int:
    from jaxvae.data import load_dataset
    from jaxvae.train import CONFIG, check_data, fit, read_metrics

    out = Path(args.out)
    if args.resume:
        config = RunConfig.load(out / CONFIG)
        if args.epochs is not None:
            config = RunConfig(config.model, TrainConfig(**{**vars(config.train), "epochs": args.epochs}))
        data = load_dataset(
            config.train.dataset, data_dir=args.data_dir, image_size=config.train.image_size, progress=not args.quiet
        )
        check_data(data, config)
    else:
        if out.exists() and any(out.iterdir()) and not args.overwrite:
            raise InputError(f"{out} exists: pass --resume to continue it or --overwrite to replace it")
        validation_fraction = args.validation_fraction
        if validation_fraction is None:
            validation_fraction = 0.1 if args.early_stopping else 0.0
        schedule = TrainConfig(
            dataset=args.dataset,
            binarize=args.binarize,
            objective=args.objective,
            samples=args.samples,
            epochs=10 if args.epochs is None else args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            image_size=args.image_size,
            validation_fraction=validation_fraction,
            early_stopping=args.early_stopping,
            beta=args.beta,
            kl_warmup_epochs=args.kl_warmup_epochs,
            free_bits=args.free_bits,
        )
        data = load_dataset(args.dataset, data_dir=args.data_dir, image_size=args.image_size, progress=not args.quiet)
        model = ModelConfig(
            data_shape=tuple(data.shape),
            latent_dim=args.latent_dim,
            hidden=args.hidden or DEFAULT_HIDDEN[args.architecture],
            activation=args.activation,
            likelihood=args.likelihood,
            architecture=args.architecture,
            gaussian_variance=args.gaussian_variance,
            gaussian_std=args.gaussian_std,
        )
        config = RunConfig(model, schedule)
        check_data(data, config)
        if out.exists():
            shutil.rmtree(out)
    fit(config, data, out, resume=args.resume, progress=not args.quiet)
    last = read_metrics(out)[-1]
    figures = ", ".join(sorted(p.name for p in (out / "figures").glob("*.png")))
    print(f"epoch {last['epoch']}: train ELBO {last['train_elbo']:.2f} nats, test ELBO {last['test_elbo']:.2f} nats")
    if "validation_elbo" in last:
        best = max((r for r in read_metrics(out) if "validation_elbo" in r), key=lambda r: r["validation_elbo"])
        stopped = " (stopped early)" if last["epoch"] < config.train.epochs else ""
        print(f"best validation ELBO {best['validation_elbo']:.2f} nats at epoch {best['epoch']}{stopped}")
    print(f"run folder {out}: config.json, metrics.jsonl, checkpoints/, figures/ ({figures})")
    return 0


def explore(args) -> int:
    from jaxvae.explore import make_server

    server = make_server(args.run_dir, args.host, args.port)
    print(f"exploring {args.run_dir} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


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
    p.add_argument("--architecture", choices=ARCHITECTURES, default="mlp")
    p.add_argument(
        "--gaussian-variance",
        choices=GAUSSIAN_VARIANCES,
        default="learned-shared",
        help="variance of a gaussian likelihood: learned (one for all pixels or one per pixel) or fixed",
    )
    p.add_argument("--gaussian-std", type=float, default=1.0, help="the fixed std, or where a learned one starts")
    p.add_argument("--binarize", choices=BINARIZE, default="none", help="none, static, dynamic, threshold (x > 0.5)")
    p.add_argument("--objective", choices=OBJECTIVES, default="elbo")
    p.add_argument("--samples", type=int, default=1, help="Monte Carlo samples S (elbo) or K (iwae)")
    p.add_argument("--beta", type=float, default=1.0, help="weight of the KL term in the training loss (elbo)")
    p.add_argument("--kl-warmup-epochs", type=int, default=0, help="epochs over which beta rises from 0 (elbo)")
    p.add_argument("--free-bits", type=float, default=0.0, help="nats of KL per latent dimension not penalized (elbo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs to train (default 10)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
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
    p.set_defaults(run=train)

    p = commands.add_parser("explore", help="serve a page that decodes the latent point under the pointer")
    p.add_argument("run_dir", help="run folder written by jaxvae train")
    p.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.set_defaults(run=explore)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InputError as e:
        print(f"jaxvae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxvae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
