"""Every setting of a run, as frozen dataclasses saved as `config.json` beside the run."""

import dataclasses
import json
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxvae.checkpoint import write_atomically
from jaxvae.errors import InputError, SettingError

# The names each setting takes; `builder` makes each into its part.
ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "softplus", "sigmoid", "silu")
LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian")
OBJECTIVES = ("elbo", "iwae", "miwae", "ciwae", "piwae")
GRADIENTS = ("reparam", "stl", "dreg")
PRECISIONS = ("fp32", "bf16")  # of the networks' products in training (networks.product)
BINARIZE = ("none", "static", "dynamic", "threshold", "redraw")  # redraw: M1+M2's x ~ N(x, x_std^2) a step
ARCHITECTURES = ("mlp", "conv", "gated")
OPTIMIZERS = ("adam", "adam-normgrad")
INFERENCE = ("top-down", "bottom-up")  # the order a deep model's posterior draws its layers in
DECODER_INPUTS = ("bottom", "all")  # a deep model's decoder sees z_1, or every layer (the 2-level HVAE's)
GAUSSIAN_VARIANCES = ("learned-shared", "learned-pixel", "fixed", "network")
POSTERIORS = ("diagonal", "full", "iaf:T")  # T: flow steps
PRIORS = ("normal", "mixture:K", "vamp:K", "conditional")  # K: mixture components or pseudo-inputs
CONDITIONS = ("", "label", "array")  # a model's condition: nothing, the data's labels one-hot, or their arrays c
CHECKPOINT_CHOICES = ("latest", "best")  # a run's model: its newest epoch, or its best validation bound


def family_spec(spec: str, families: tuple[str, ...], setting: str) -> tuple[str, int]:
    """'iaf:2' -> ('iaf', 2), 'diagonal' -> ('diagonal', 0), checked against `families` (a SettingError
    names `setting`)."""
    name, colon, count = spec.partition(":")
    counted = {f.partition(":")[0]: ":" in f for f in families}  # family name -> takes a count
    _require(
        name in counted and counted[name] == bool(colon),
        f"{setting} must be one of {', '.join(families)}, got {spec!r}",
        setting,
    )
    _require(
        not counted[name] or (count.isdigit() and int(count) >= 1),
        f"{setting} {name}:N needs a positive integer N, got {spec!r}",
        setting,
    )
    return name, int(count) if counted[name] else 0


def _require(condition: bool, message: str, *settings: str) -> None:
    """Raise SettingError(message, *settings) unless `condition`."""
    if not condition:
        raise SettingError(message, *settings)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_TYPE_CHECKS = {  # declared type -> (what a value must be, the check)
    int: ("an integer", _is_int),
    float: ("a number", lambda v: _is_int(v) or isinstance(v, float)),
    str: ("a string", lambda v: isinstance(v, str)),
    tuple[int, ...]: ("a list of integers", lambda v: isinstance(v, tuple) and all(map(_is_int, v))),
    tuple[float, ...]: (
        "a list of numbers",
        lambda v: isinstance(v, tuple) and all(_is_int(x) or isinstance(x, float) for x in v),
    ),
}


def _require_types(settings) -> None:
    """Raise SettingError for a field whose value is not of its declared type (e.g. in an edited config.json)."""
    for field in dataclasses.fields(settings):
        if field.type in _TYPE_CHECKS:
            value, (kind, check) = getattr(settings, field.name), _TYPE_CHECKS[field.type]
            _require(check(value), f"{field.name} must be {kind}, got {value!r}", field.name)


@dataclass(frozen=True)
class ModelConfig:
    """The model: data shape (one example, e.g. (28, 28)), networks and likelihood.

    `hidden` lists the hidden widths of an MLP (or of the gated dense layers of `gated`), or the channels
    of the stride-2 convolutions of a `conv` network (which needs image data (H, W) or (H, W, C)). A
    `gaussian` likelihood has the variance `gaussian_variance`: one learned value shared by all pixels,
    one learned per pixel, fixed at `gaussian_std`**2, or one per pixel and example from the decoder (`network`,
    an mlp's or gated one's); `gaussian_std` is also where a learned standard deviation starts.
    `log_var_range` (low, high), when given, clips the diagonal posterior's log-variances to it.
    A deep model has `layers` (k_1, ..., k_L), L >= 2, bottom layer first, with latent_dim their sum,
    inferred in the order `inference` (see `deep`), its decoder seeing z_1 or, with `decoder_input` all,
    every layer; `layers` is () for one layer.
    `condition_dim` m > 0 makes the model conditional, p(x | z, c) p(z | c) with q(z | x, c), for a condition
    of m values per example (C classes one-hot: m = C); its prior is N(0, I) or, with `conditional`, a
    network of c (Sohn et al. 2015), or a mixture or VampPrior per class (c a label one-hot).
    """

    data_shape: tuple[int, ...]
    latent_dim: int = 2
    hidden: tuple[int, ...] = (512,)
    activation: str = "tanh"
    likelihood: str = "bernoulli"
    architecture: str = "mlp"
    gaussian_variance: str = "learned-shared"
    gaussian_std: float = 1.0
    posterior: str = "diagonal"
    prior: str = "normal"
    log_var_range: tuple[float, ...] = ()
    layers: tuple[int, ...] = ()
    inference: str = "top-down"
    decoder_input: str = "bottom"
    condition_dim: int = 0
    source: str = ""  # FILE.py:FUNCTION that builds the model, when it is the user's own (FILE absolute)
    source_sha256: str = ""  # of FILE.py when the run was made
    source_relative: str = ""  # the same FILE.py:FUNCTION with FILE relative to the run folder (see RunConfig.load)

    def __post_init__(self):
        _require_types(self)
        _ = self.posterior_family, self.prior_family  # validates both
        _require(self.latent_dim >= 1, f"latent_dim must be at least 1, got {self.latent_dim}", "latent_dim")
        _require(all(h >= 1 for h in self.hidden), f"hidden widths must be positive, got {self.hidden}", "hidden")
        _require(self.activation in ACTIVATIONS, f"activation must be one of {', '.join(ACTIVATIONS)}", "activation")
        _require(self.likelihood in LIKELIHOODS, f"likelihood must be one of {', '.join(LIKELIHOODS)}", "likelihood")
        _require(
            self.architecture in ARCHITECTURES,
            f"architecture must be one of {', '.join(ARCHITECTURES)}",
            "architecture",
        )
        _require(
            self.architecture != "conv" or len(self.data_shape) in (2, 3),
            f"architecture conv needs images of shape (H, W) or (H, W, C), got examples of shape {self.data_shape}",
            "architecture",
        )
        _require(
            self.gaussian_variance in GAUSSIAN_VARIANCES,
            f"gaussian_variance must be one of {', '.join(GAUSSIAN_VARIANCES)}",
            "gaussian_variance",
        )
        _require(
            self.gaussian_variance != "network" or self.architecture != "conv",
            "gaussian_variance network needs an mlp or gated decoder, not a conv one",
            "gaussian_variance",
        )
        _require(
            self.log_var_range == () or (len(self.log_var_range) == 2 and operator.lt(*self.log_var_range)),
            f"log_var_range must be two numbers LOW,HIGH with LOW < HIGH, got {self.log_var_range}",
            "log_var_range",
        )
        _require(
            self.log_var_range == () or self.posterior == "diagonal",
            f"log_var_range clips a diagonal posterior's log-variances: not defined for {self.posterior}",
            "log_var_range",
        )
        _require(
            self.decoder_input in DECODER_INPUTS,
            f"decoder_input must be one of {', '.join(DECODER_INPUTS)}",
            "decoder_input",
        )
        _require(self.inference in INFERENCE, f"inference must be one of {', '.join(INFERENCE)}", "inference")
        _require(
            self.decoder_input == "bottom" or bool(self.layers),
            "decoder_input all is for a deep model (several latent layers)",
            "decoder_input",
        )
        if self.layers:
            _require(
                len(self.layers) >= 2 and min(self.layers) >= 1 and sum(self.layers) == self.latent_dim,
                f"layers must be two or more positive sizes summing to latent_dim, got {self.layers}",
            )
            _require(
                self.architecture in ("mlp", "gated"),
                f"a deep model's networks are mlp or gated, not architecture {self.architecture}",
                "architecture",
            )
            _require(
                self.posterior == "diagonal",
                f"a deep model's posterior is diagonal, not posterior {self.posterior}",
                "posterior",
            )
            _require(
                self.prior_family[0] != "vamp" or self.inference == "top-down",
                "a VampPrior over the top layer needs top-down inference (q(z_L | x) is then Gaussian)",
            )
        _require(self.gaussian_std > 0, f"gaussian_std must be positive, got {self.gaussian_std}", "gaussian_std")
        _require(
            self.condition_dim >= 0, f"condition_dim must be at least 0, got {self.condition_dim}", "condition_dim"
        )
        _require(
            self.prior != "conditional" or self.condition_dim > 0,
            "prior conditional is a network of the condition: it needs a conditional model (--condition label)",
            "prior",
        )

    @property
    def posterior_family(self) -> tuple[str, int]:
        """('diagonal' | 'full' | 'iaf', flow steps or 0)."""
        return family_spec(self.posterior, POSTERIORS, "posterior")

    @property
    def prior_family(self) -> tuple[str, int]:
        """('normal' | 'mixture' | 'vamp', components or 0)."""
        return family_spec(self.prior, PRIORS, "prior")

    @property
    def data_dim(self) -> int:
        """d, the size of one example flattened: the product of `data_shape`."""
        size = 1
        for s in self.data_shape:
            size *= s
        return size


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained; the defaults are the seed's (Adam 1e-3, batch 32, 1 sample).

    The ELBO objective can weight its KL by `beta`, reached linearly from 0 over `kl_warmup_epochs`,
    and give each latent dimension `free_bits` nats of KL for free (Kingma et al. 2016). `samples` is S
    (elbo) or K (the importance-weighted bounds); miwae and piwae draw `groups` groups of K; ciwae weighs
    the ELBO by `ciwae_beta`. `gradient` names the gradient estimator (see `objectives`). `precision` is
    that of the networks' matrix products and convolutions in the training steps (`networks.product`).
    """

    dataset: str = "digits"
    binarize: str = "none"
    objective: str = "elbo"
    samples: int = 1
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"  # adam-normgrad: each parameter's gradient scaled to unit norm before Adam
    seed: int = 0
    image_size: tuple[int, int] | None = None  # (height, width) images are resized to, if given
    data_dir: str | None = None  # the folder mnist or fashion-mnist was read from, if one was given
    validation_fraction: float = 0.0  # of the training examples, held out for the validation bounds
    early_stopping: int = 0  # patience in epochs without a better validation bound (the trained one); 0: off
    keep_checkpoints: int = 3  # epoch checkpoints kept besides best.eqx
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    free_bits: float = 0.0
    tensorboard: bool = False  # also write TensorBoard event files (jaxvae.board)
    groups: int = 1
    ciwae_beta: float = 0.5
    gradient: str = "reparam"
    classes: tuple[str, ...] = ()  # the names of the data's labels 0, 1, ...: an image folder's class subfolders
    precision: str = "fp32"
    condition: str = ""  # "label": on each example's label, one-hot; "array": on its array c (`CONDITIONS`)
    labels: int = 0  # > 0: train M2 (`semisupervised`) on this many labels, labels / C of each class; 0: off
    label_seed: int | None = None  # the seed that draws the labelled examples; None: `seed`
    alpha: float | None = None  # M2's weight of the classification term; None: the paper's 0.1 N
    labelled_batch: int = 0  # labelled examples per M2 step; 0: the data's ratio (`labels.labelled_batch_size`)

    def __post_init__(self):
        _require_types(self)
        _require(self.binarize in BINARIZE, f"binarize must be one of {', '.join(BINARIZE)}", "binarize")
        _require(self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}", "objective")
        _require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}", "optimizer")
        _require(self.samples >= 1, f"samples must be at least 1, got {self.samples}", "samples")
        _require(self.gradient in GRADIENTS, f"gradient must be one of {', '.join(GRADIENTS)}", "gradient")
        _require(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}", "precision")
        _require(self.condition in CONDITIONS, f"condition must be one of {', '.join(CONDITIONS[1:])}", "condition")
        _require(self.groups >= 1, f"groups must be at least 1, got {self.groups}", "groups")
        _require(
            self.groups == 1 or self.objective in ("miwae", "piwae"),
            "groups counts the groups of K draws of miwae and piwae: use it with objective miwae or piwae",
            "groups",
            "objective",
        )
        _require(0 <= self.ciwae_beta <= 1, f"ciwae_beta must be in [0, 1], got {self.ciwae_beta}", "ciwae_beta")
        _require(
            self.ciwae_beta == 0.5 or self.objective == "ciwae",
            "ciwae_beta weighs the ELBO in ciwae: use it with objective ciwae",
            "ciwae_beta",
            "objective",
        )
        _require(
            self.free_bits == 0 or self.gradient == "reparam",
            f"free_bits grants KL per latent dimension in closed form: use it with gradient reparam, "
            f"not {self.gradient}",
            "free_bits",
            "gradient",
        )
        _require(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}", "epochs")
        _require(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}", "batch_size")
        _require(0 < self.lr < math.inf, f"lr must be positive and finite, got {self.lr}", "lr")
        _require(0 <= self.seed < 2**32, f"seed must be an integer from 0 to 2**32 - 1, got {self.seed}", "seed")
        _require(
            self.keep_checkpoints >= 1,
            f"keep_checkpoints must be at least 1, got {self.keep_checkpoints}",
            "keep_checkpoints",
        )
        _require(
            self.image_size is None or (len(self.image_size) == 2 and min(self.image_size) >= 1),
            f"image_size must be one or two positive integers, got {self.image_size}",
            "image_size",
        )
        _require(
            0 <= self.validation_fraction < 1,
            f"validation_fraction must be in [0, 1), got {self.validation_fraction}",
            "validation_fraction",
        )
        _require(
            self.early_stopping >= 0, f"early_stopping must be at least 0, got {self.early_stopping}", "early_stopping"
        )
        _require(
            self.early_stopping == 0 or self.validation_fraction > 0,
            "early_stopping needs a validation set: validation_fraction must be positive",
            "early_stopping",
            "validation_fraction",
        )
        _require(self.beta >= 0, f"beta must be at least 0, got {self.beta}", "beta")
        self._require_labels()
        _require(
            self.kl_warmup_epochs >= 0,
            f"kl_warmup_epochs must be at least 0, got {self.kl_warmup_epochs}",
            "kl_warmup_epochs",
        )
        _require(self.free_bits >= 0, f"free_bits must be at least 0, got {self.free_bits}", "free_bits")
        _require(
            self.objective == "elbo" or (self.beta == 1 and self.kl_warmup_epochs == 0 and self.free_bits == 0),
            "beta, kl_warmup_epochs and free_bits weight the ELBO's KL term: use them with objective elbo",
            "beta",
            "kl_warmup_epochs",
            "free_bits",
            "objective",
        )

    def _require_labels(self) -> None:
        """Check M2's settings: `labels` at least 0; the others only with labels, the condition without (M2
        conditions on the labels itself)."""
        _require(self.labels >= 0, f"labels must be at least 0, got {self.labels}", "labels")
        label_seed, alpha = self.label_seed, self.alpha
        _require(
            label_seed is None or (_is_int(label_seed) and 0 <= label_seed < 2**32),
            f"label_seed must be an integer from 0 to 2**32 - 1, got {label_seed!r}",
            "label_seed",
        )
        _require(
            alpha is None or (isinstance(alpha, int | float) and 0 <= alpha < math.inf),
            f"alpha must be a number at least 0, got {alpha!r}",
            "alpha",
        )
        _require(
            self.labelled_batch >= 0,
            f"labelled_batch must be at least 0, got {self.labelled_batch}",
            "labelled_batch",
        )
        if not self.labels:
            _require(self.binarize != "redraw", "binarize redraw draws M2's inputs: use it with labels", "binarize")
            for name in ("label_seed", "alpha"):
                _require(getattr(self, name) is None, f"{name} is a setting of M2: use it with labels", name, "labels")
            _require(
                self.labelled_batch == 0,
                "labelled_batch is a setting of M2: use it with labels",
                "labelled_batch",
                "labels",
            )
            return
        _require(
            not self.condition,
            f"labels trains M2, which conditions on the labels itself: not with condition {self.condition}",
            "labels",
            "condition",
        )
        _require(
            self.early_stopping == 0 or self.objective == "elbo",
            "early_stopping of M2 (labels) watches the validation U(x) with the ELBO per class: use objective elbo",
            "early_stopping",
            "objective",
            "labels",
        )

    @property
    def m2_label_seed(self) -> int:
        """The seed that draws M2's labelled examples: `label_seed`, or where it is None `seed`."""
        return self.seed if self.label_seed is None else self.label_seed


@dataclass(frozen=True)
class HardwareConfig:
    """What a run trained on (recorded by `fit`, not a setting): device and process counts, device kind."""

    devices: int = 1
    processes: int = 1
    platform: str = "cpu"
    device_kind: str = "cpu"


@dataclass(frozen=True)
class RunConfig:
    """A run's settings: the model, its training and the hardware it trained on, saved as `config.json`."""

    model: ModelConfig
    train: TrainConfig
    hardware: HardwareConfig = HardwareConfig()

    def __post_init__(self):
        _require(
            self.train.objective != "piwae" or self.model.prior_family[0] != "vamp",
            "objective piwae trains the encoder and the decoder on different bounds: not defined with prior vamp, "
            "whose prior is made by the encoder",
            "objective",
            "prior",
        )

    def save(self, path: Path) -> None:
        """Write the config as JSON to `path` (atomically: a crash leaves the old file or the new one)."""
        write_atomically(path, (json.dumps(dataclasses.asdict(self), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        """The config saved at `path`, checked; InputError when the file is missing or not a valid config.

        A model file is looked for first by its path relative to the run folder, then by its absolute path:
        a project moved with its runs keeps working, and `model.source` names the file found."""
        try:
            raw = json.loads(path.read_text())
            model: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["model"].items()}
            train: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["train"].items()}
            hardware = HardwareConfig(**raw.get("hardware", {}))  # absent from configs before 0.2
            return cls(_model_file_found(ModelConfig(**model), path.parent), TrainConfig(**train), hardware)
        except FileNotFoundError:
            raise InputError(f"{path.parent} is not a jaxvae run folder (no config.json)") from None
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path} is not a valid jaxvae config: {e}") from None


def _model_file_found(model: ModelConfig, run_dir: Path) -> ModelConfig:
    """`model` with `source` naming its model file by the path relative to `run_dir` when a file is there,
    else as recorded (the absolute path)."""
    file, _, name = model.source_relative.rpartition(":")
    if not file or not (run_dir / file).is_file():
        return model
    return dataclasses.replace(model, source=f"{(run_dir / file).resolve()}:{name}")
