"""The `jaxvae` command's arguments: the parser, its argument types, and what each option means."""

import argparse
import re

from jaxvae.config import (
    ACTIVATIONS,
    ARCHITECTURES,
    BINARIZE,
    CHECKPOINT_CHOICES,
    CONDITIONS,
    DECODER_INPUTS,
    GAUSSIAN_VARIANCES,
    GRADIENTS,
    INFERENCE,
    LIKELIHOODS,
    OBJECTIVES,
    OPTIMIZERS,
    POSTERIORS,
    PRECISIONS,
    PRIORS,
)
from jaxvae.errors import InputError


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _integers(text: str, expected: str) -> tuple[int, ...]:
    """'200,200' -> (200, 200); anything else an ArgumentTypeError "expected {expected}, got '{text}'"."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def widths(text: str) -> tuple[int, ...]:
    """'512' or '200,200' -> (512,) or (200, 200)."""
    values = _integers(text, "comma-separated integers like 512 or 200,200")
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"hidden widths must be positive, got {text!r}")
    return values


def sample_counts(text: str) -> tuple[int, ...]:
    """'1,10,100' -> (1, 10, 100): numbers of importance samples, each at least 1."""
    values = _integers(text, "comma-separated integers like 1,10,100")
    if not all(v >= 1 for v in values):
        raise argparse.ArgumentTypeError(f"sample counts must be at least 1, got {text!r}")
    return values


def layer_sizes(text: str) -> tuple[int, ...]:
    """'2' or '100,50' -> (2,) or (100, 50): the latent layers' sizes, the bottom one first."""
    return _integers(text, "an integer K or K1,K2,...")


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
        size = (0,)  # not a size: refused below
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


def build_parser() -> Parser:
    """The parser of every command; `args.command` names the one chosen."""
    import jaxvae

    parser = Parser(prog="jaxvae", description="Variational autoencoders in JAX: train, evaluate, explore.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {jaxvae.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = commands.add_parser("train", help="train a VAE and write a run folder")
    p.add_argument(
        "--dataset",
        help="digits (the default), mnist, fashion-mnist, a folder of IDX files or images, or a .npz/.npy file; "
        "with --resume, where the run's data are now",
    )
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument(
        "--latent-dim",
        type=layer_sizes,
        default=(2,),
        help="k, the dimension of z (default 2), or K1,K2,... for a deep model's layers, the bottom one first",
    )
    p.add_argument(
        "--inference",
        choices=INFERENCE,
        default="top-down",
        help="a deep model's posterior: top-down (Ladder VAE, HVAE) or bottom-up (Burda et al.)",
    )
    p.add_argument(
        "--decoder-input",
        choices=DECODER_INPUTS,
        default="bottom",
        help="what a deep model's decoder sees: z_1, or all layers (the VampPrior code's 2-level HVAE)",
    )
    p.add_argument(
        "--hidden", type=widths, help="MLP widths, e.g. 512 or 200,200, or conv channels (default 512; conv 32,64)"
    )
    p.add_argument(
        "--activation", choices=sorted(ACTIVATIONS), default="tanh", help="the hidden layers' activation (mlp, conv)"
    )
    p.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli", help="p(x|z); bernoulli from logits")
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
        help="variance of a gaussian likelihood: learned (one for all pixels or one per pixel), fixed, or from the "
        "decoder (network: one per pixel and example)",
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
        help=f"p(z): {', '.join(PRIORS)} (K Gaussians, or the VampPrior with K pseudo-inputs; conditional: "
        "p(z|c), a network of the condition, with --condition)",
    )
    p.add_argument(
        "--condition",
        choices=CONDITIONS[1:],
        help="train a conditional VAE p(x|z,c) p(z|c), q(z|x,c): c the data's labels one-hot (label), or each "
        "example's array c of an .npz (array: its 'c', or 'c_train' and 'c_test')",
    )
    p.add_argument(
        "--labels",
        type=int,
        default=0,
        metavar="N",
        help="train Kingma et al.'s semi-supervised M2: keep N training labels, N/C of each of the C classes, the "
        "rest unlabelled; every step sees both in the data's ratio",
    )
    p.add_argument(
        "--label-seed",
        type=int,
        metavar="S",
        help="the seed that draws the --labels examples, recorded in config.json (default: --seed; with --seeds, "
        "each member's seed, so that --seeds varies the labels too)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        help="with --labels: the weight of the classifier's log q(y|x) on the labelled examples "
        "(default 0.1 N, N the training examples, as the paper)",
    )
    p.add_argument(
        "--labelled-batch",
        type=int,
        default=0,
        metavar="B",
        help="with --labels: labelled examples per step beside --batch-size unlabelled ones "
        "(default: in the data's ratio, at least 1)",
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
        help="build the model with your own FUNCTION(config: ModelConfig, key) -> jaxvae.VAE "
        "(with --labels, or M2's parts SemiSupervisedVAE(vae, classifier))",
    )
    p.add_argument(
        "--binarize",
        choices=BINARIZE,
        default="none",
        help="none, static, dynamic, threshold (x > 0.5), "
        "or redraw (M1+M2 with --labels: x ~ N(x, x_std^2) each step, an .npz's x_std_train)",
    )
    p.add_argument("--objective", choices=OBJECTIVES, default="elbo", help="the bound training maximizes")
    p.add_argument(
        "--samples", type=int, default=1, help="Monte Carlo samples S (elbo) or K (the others; per group in miwae)"
    )
    p.add_argument("--groups", type=int, default=1, metavar="M", help="groups of K draws of miwae and piwae")
    p.add_argument("--ciwae-beta", type=float, default=0.5, metavar="B", help="ciwae's weight of the ELBO, in [0, 1]")
    p.add_argument(
        "--gradient",
        choices=GRADIENTS,
        default="reparam",
        help="gradient estimator: reparam; stl, sticking the landing; dreg, doubly reparameterized",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="of the networks' matrix products in training: bf16 rounds their inputs, accumulates in fp32",
    )
    p.add_argument("--beta", type=float, default=1.0, help="weight of the KL term in the training loss (elbo)")
    p.add_argument("--kl-warmup-epochs", type=int, default=0, help="epochs over which beta rises from 0 (elbo)")
    p.add_argument("--free-bits", type=float, default=0.0, help="nats of KL per latent dimension not penalized (elbo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs to train (default 10)")
    p.add_argument(
        "--batch-size", type=int, default=32, help="examples per step, a multiple of the devices' number (default 32)"
    )
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's step size (default 1e-3)")
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="adam",
        help="adam; adam-normgrad: each parameter's gradient scaled to unit norm first, as the VampPrior code's",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial parameters, data order and noise, 0 to 2^32 - 1 (default 0)",
    )
    p.add_argument(
        "--seeds", type=int, default=1, help="train N members together, seeds --seed to --seed + N - 1 (OUT/seed-S)"
    )
    p.add_argument(
        "--sweep",
        type=sweep_values,
        metavar="NAME=V1,V2,...",
        help="train one member per value of beta, lr, free-bits or ciwae-beta together (OUT/NAME-V); "
        "with --seeds, every pair",
    )
    p.add_argument("--keep-checkpoints", type=int, default=None, help="epoch checkpoints to keep (default 3)")
    p.add_argument("--data-dir", help="a folder to look in first for mnist and fashion-mnist")
    p.add_argument("--image-size", type=image_size, help="resize images in a folder to H or H,W pixels")
    p.add_argument(
        "--validation-fraction",
        type=float,
        help="training examples held out for the validation bounds (default 0.1 with --early-stopping, else 0)",
    )
    p.add_argument(
        "--early-stopping",
        type=int,
        default=0,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better validation bound (the objective's: the ELBO, L_K, ...), "
        "not counting the KL warm-up's; the best is checkpoints/best.eqx",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars (of training and downloads); the summary still prints"
    )
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

    def run_data_source(p):
        p.add_argument(
            "--dataset",
            help="where the run's data are now, or other data of the same shape: digits, mnist, fashion-mnist, "
            "a folder or a .npz/.npy file (default: the run's)",
        )
        p.add_argument(
            "--data-dir", help="a folder to look in first for mnist and fashion-mnist (default: the run's own)"
        )

    p = commands.add_parser("explore", help="serve a page that decodes the latent point under the pointer")
    p.add_argument("run_dir", help="run folder written by jaxvae train")
    p.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    run_data_source(p)

    def run_data_options(p):
        p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by jaxvae train")
        p.add_argument(
            "--binarize", choices=BINARIZE, help="none, or binarize with the fixed test seed (default: the run's)"
        )
        p.add_argument(
            "--split",
            choices=("test", "train", "all"),
            default="test",
            help="all: the train examples, then the test ones",
        )
        run_data_source(p)

    p = commands.add_parser("evaluate", help="ELBO, importance-weighted log-likelihood, quadrature, active units")
    run_data_options(p)
    p.add_argument(
        "--checkpoint",
        choices=CHECKPOINT_CHOICES,
        default="latest",
        help="the model of the latest epoch, or of the best validation bound (checkpoints/best.eqx)",
    )
    p.add_argument("--iw-samples", type=int, default=5000, help="K samples of the importance-weighted bound")
    p.add_argument("--n", type=int, help="evaluate only the first N examples of the split")
    p.add_argument("--seed", type=int, default=0, help="the seed of the Monte Carlo draws")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="of the networks' matrix products (default fp32, whatever the run trained in)",
    )
    p.add_argument(
        "--gaps",
        action="store_true",
        help="also fit q* per example and split log p(x) - ELBO into approximation and amortization gaps",
    )
    p.add_argument("--per-example", metavar="FILE.npz", help="with --gaps: write the per-example values to FILE.npz")
    p.add_argument(
        "--gradient-snr",
        type=sample_counts,
        metavar="K1,K2,...",
        help="also the signal-to-noise ratio of IWAE's gradient at each K, for every estimator, on a training "
        "batch of the split's first examples; figure RUN_DIR/figures/gradient_snr.png",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars; the report still prints")

    p = commands.add_parser("sample", help="decode prior samples into an image grid")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by jaxvae train")
    p.add_argument("-n", type=int, default=64, help="number of samples")
    p.add_argument("-o", "--out", required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=0, help="the seed of the prior samples")
    p.add_argument(
        "--label",
        type=int,
        help="a run trained with --condition label: draw from p(x|y) for this class; also writes OUT.npz (x, z)",
    )

    p = commands.add_parser("plot", help="regenerate every figure of a run under RUN_DIR/figures, or of a sweep")
    p.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run folder, or a sweep folder: every member's and the sweep's curves"
    )
    run_data_source(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar of the figures")

    p = commands.add_parser("encode", help="posterior means and standard deviations to a .npz file")
    run_data_options(p)
    p.add_argument(
        "-o",
        "--out",
        required=True,
        help=".npz file to write: arrays mean, std (n, k) (of a run with --labels: q_y (n, C), q(y|x)'s "
        "probabilities), y if labelled, classes (label names) if named",
    )
    p.add_argument(
        "--features",
        action="store_true",
        help="M1's features for M2 (Kingma et al. 2014's M1+M2), a data set for train: x_train, x_test = the "
        "posterior means of the active dimensions (variance over the training means > 0.01), x_std_train their "
        "standard deviations (for --binarize redraw), y_train, y_test",
    )
    return parser


def in_options(error: InputError, args: argparse.Namespace) -> str:
    """The message of `error` with the settings it names (`SettingError.settings`, field names) written as the
    options of the command that ran, where it has them: `latent_dim` -> `--latent-dim`."""
    message = str(error)
    for setting in getattr(error, "settings", ()):
        if setting in vars(args):
            message = re.sub(rf"\b{setting}\b", "--" + setting.replace("_", "-"), message, count=1)
    return message
