"""A user's own model: a Python file with a function FUNCTION(config: ModelConfig, key) -> LatentModel.

The run records the function as `source` ("FILE.py:FUNCTION", the file's absolute path), as
`source_relative` (FILE relative to the run folder, which is looked for first: see `RunConfig.load`)
and the file's SHA-256, so that every later command rebuilds the same model; a missing or changed file
is an InputError. A function defined outside a file (a notebook cell) is recorded as "python:NAME": such a
run loads only with the function given again (`jaxvae.load(run, build=FUNCTION)`).

For a conditional run (`config.condition_dim` m > 0) the function returns a model of that `condition_dim`,
whose networks take each example's condition c (m,) as a second argument (`encoder(x, c)`, `decoder(z, c)`).
For M2 (a run with labels, `build_m2`) it returns the conditional model of x given the one-hot label, or
M2's parts `SemiSupervisedVAE(vae, classifier)` with a classifier of its own, x (d,) -> C logits.
"""

import dataclasses
import functools
import hashlib
import importlib.util
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.builder import build_model, network
from jaxvae.config import ModelConfig
from jaxvae.errors import InputError
from jaxvae.model import VAE, LatentModel
from jaxvae.semisupervised import SemiSupervisedVAE

Builder = Callable[[ModelConfig, Array], LatentModel | SemiSupervisedVAE]
NOT_A_FILE = "python"


def default_build(config: ModelConfig, key: Array) -> LatentModel:
    """The configured model: `build_model(config, key=key)`."""
    return build_model(config, key=key)


def _split(spec: str) -> tuple[Path, str]:
    path, colon, name = spec.rpartition(":")
    if not colon or not path or not name.isidentifier():
        raise InputError(f"--model must be FILE.py:FUNCTION, got {spec!r}")
    return Path(path), name


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise InputError(f"cannot read the model file {path}: {e.strerror}") from None


@functools.lru_cache(maxsize=16)
def _function(path: Path, name: str, sha256: str) -> Builder:
    """FUNCTION from FILE, the file run once per content (classes stay the same between calls)."""
    spec = importlib.util.spec_from_file_location(f"jaxvae_user_model_{sha256[:16]}", path)
    if spec is None or spec.loader is None:
        raise InputError(f"the model file {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise InputError(f"the model file {path} failed to run: {type(e).__name__}: {e}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise InputError(f"the model file {path} has no function {name}")
    return cast(Builder, function)


def with_source(config: ModelConfig, spec: str) -> ModelConfig:
    """`config` recording the model file of `spec` ("FILE.py:FUNCTION"), checked to exist and define FUNCTION."""
    path, name = _split(spec)
    path = path.resolve()
    sha256 = _sha256(path)
    _function(path, name, sha256)
    return dataclasses.replace(config, source=f"{path}:{name}", source_sha256=sha256)


def relative_to(config: ModelConfig, run_dir: Path) -> ModelConfig:
    """`config` recording its model file also relative to the run folder `run_dir` (`source_relative`)."""
    if not config.source or config.source.startswith(NOT_A_FILE + ":"):
        return config
    path, name = _split(config.source)
    return dataclasses.replace(config, source_relative=f"{os.path.relpath(path, Path(run_dir).resolve())}:{name}")


def source_of(build: Builder) -> tuple[str, str]:
    """(source, sha256) recording a Python function: its file and name, or "python:NAME" outside a file."""
    name = build.__qualname__
    file = inspect.getsourcefile(build)
    if file is None or not Path(file).is_file() or "<" in name or build.__module__ == "__main__":
        return f"{NOT_A_FILE}:{name}", ""
    return f"{Path(file).resolve()}:{name}", _sha256(Path(file))


def builder(config: ModelConfig) -> Builder:
    """The function that builds this run's model, checked: the default, or the recorded file's, unchanged."""
    if not config.source:
        return default_build
    if config.source.startswith(NOT_A_FILE + ":"):
        name = config.source.partition(":")[2]
        raise InputError(
            f"this run's model was built by the Python function {name}, which is not in a file: "
            "load it with jaxvae.load(RUN_DIR, build=FUNCTION)"
        )
    path, name = _split(config.source)
    if not path.is_file():
        relative = config.source_relative.rpartition(":")[0]
        elsewhere = f" (nor at {relative}, relative to the run folder)" if relative else ""
        raise InputError(f"the run's model file {path} is missing{elsewhere}")
    if _sha256(path) != config.source_sha256:
        raise InputError(f"the run's model file {path} changed since the run was made (its SHA-256 differs)")
    return _function(path, name, config.source_sha256)


def build(config: ModelConfig, key: Array, build: Builder | None = None) -> LatentModel:
    """The model of `config` (by `build` when given), checked to be a VAE with the configured latent size."""
    vae = _made(build or builder(config), config, key)
    if isinstance(vae, SemiSupervisedVAE):
        raise InputError("the model function returns M2's parts (a SemiSupervisedVAE): train it with --labels")
    _check_model(vae, config)
    return vae


def build_m2(config: ModelConfig, key: Array, build: Builder | None = None) -> SemiSupervisedVAE:
    """M2's parts for the `config.condition_dim` = C classes: what `build` (default: the config's function)
    returns from the first half of `key`, a conditional model of x given the one-hot label, with the classifier
    `builder.network` makes of the encoder's architecture (x (d,) -> C logits) from the second half; or M2's
    parts `SemiSupervisedVAE(vae, classifier)` with its own classifier. Both parts checked by tracing."""
    vae_key, classifier_key = jax.random.split(key)
    made = _made(build or builder(config), config, vae_key)
    if isinstance(made, SemiSupervisedVAE):
        vae, classifier = made.vae, made.classifier
    else:
        vae, classifier = made, network(config, config.data_dim, config.condition_dim, key=classifier_key)
    if isinstance(vae, LatentModel) and vae.condition_dim == 0:
        raise InputError(
            f"with --labels the model function must return a model conditional on the {config.condition_dim} classes "
            "(encoder(x, c), decoder(z, c), as build_model(config, key=key) makes): its model takes no condition"
        )
    _check_model(vae, config)
    _check_classifier(classifier, config)
    return SemiSupervisedVAE(vae, classifier)


def _made(build: Builder, config: ModelConfig, key: Array) -> LatentModel | SemiSupervisedVAE:
    """What `build(config, key)` returns, its failure an InputError."""
    try:
        return build(config, key)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"the model function {build.__qualname__} failed: {type(e).__name__}: {e}") from None


def _check_model(vae, config: ModelConfig) -> None:
    """InputError where `vae` is not a jaxvae model of the configured latent and condition sizes whose networks
    fit the data."""
    if not isinstance(vae, LatentModel):
        raise InputError(f"the model function must return a jaxvae model (e.g. a VAE), got {type(vae).__name__}")
    if vae.latent_dim != config.latent_dim:
        raise InputError(f"the model has latent dimension {vae.latent_dim}, the config {config.latent_dim}")
    if vae.condition_dim != config.condition_dim:
        raise InputError(
            f"the model takes a condition of size {vae.condition_dim}, the run's is of size {config.condition_dim} "
            "(0: none)"
        )
    if isinstance(vae, VAE):
        _check_sizes(vae, config)
    else:
        _check_traces(vae, config)


def _check_classifier(classifier, config: ModelConfig) -> None:
    """InputError where M2's classifier does not map one example (d,) to C = `config.condition_dim` logits."""
    classes = config.condition_dim
    _check_network("classifier", classifier, config.data_dim, classes, f"M2 needs {classes} logits (one a class)")


def _check_network(name: str, module, in_size: int, needed: int | None, needs: str, condition: tuple = ()) -> None:
    """InputError where the network `module` fails on one input (in_size,) (and the `condition`'s shapes), or
    its output is not (needed,) (unchecked where `needed` is None); `needs` says what wants that size. Found by
    tracing alone (`eqx.filter_eval_shape`): nothing is computed."""
    try:
        out = eqx.filter_eval_shape(module, jax.ShapeDtypeStruct((in_size,), jnp.float32), *condition)
    except Exception as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(
            f"the model's {name} fails on an input of size {in_size}: {type(e).__name__}: {first_line}"
        ) from None
    shape = getattr(out, "shape", None)
    if needed is not None and shape != (needed,):
        got = f"size {shape[0]}" if shape is not None and len(shape) == 1 else f"shape {shape}"
        raise InputError(f"the model's {name} outputs {got} per example, {needs}")


def check(config: ModelConfig, *, labels: bool = False) -> None:
    """InputError where the model file `config` records does not build a model that fits it (see `build`; with
    `labels`, M2's parts, `build_m2`), found by tracing alone: what a command checks before it touches a run
    folder."""
    if config.source and not config.source.startswith(NOT_A_FILE + ":"):
        eqx.filter_eval_shape(build_m2 if labels else build, config, jax.ShapeDtypeStruct((2,), jnp.uint32))


def _check_traces(vae: LatentModel, config: ModelConfig) -> None:
    """InputError where a model's q(z|x, c), p(z | c) and p(x|z, c) do not compose on one example (d,) (and
    its condition (m,)): a deep model's networks checked together, by tracing alone."""
    x = jax.ShapeDtypeStruct((1, config.data_dim), jnp.float32)
    c = jax.ShapeDtypeStruct((1, config.condition_dim), jnp.float32) if config.condition_dim else None

    def log_weight(model, x, c):
        z, log_q = model.encode(x, c).sample_and_log_prob(jax.random.PRNGKey(0))
        return model.decode(z, c).log_prob(x) + model.prior(c).log_prob(z) - log_q

    try:
        out = eqx.filter_eval_shape(log_weight, vae, x, c)
    except Exception as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        message = f"the model fails on an example of size {config.data_dim}: {type(e).__name__}: {first_line}"
        raise InputError(message) from None
    if out.shape != (1,):
        raise InputError(f"the model's log p(x, z) - log q(z|x) has shape {out.shape} for one example, not (1,)")


def _check_sizes(vae: VAE, config: ModelConfig) -> None:
    """InputError naming the network whose output does not fit: the encoder must map one example (d,) to the
    posterior's parameters (posterior.size,), the decoder one z (k,) to the likelihood's, `outputs` per data
    value; a conditional model's networks take the condition (m,) too. Found by tracing alone
    (`eqx.filter_eval_shape`): nothing is computed."""
    size = getattr(vae.posterior, "size", None)  # a user's own posterior family may not state it
    condition = (jax.ShapeDtypeStruct((config.condition_dim,), jnp.float32),) if config.condition_dim else ()
    posterior = f"the {config.posterior} posterior needs size {size}"
    outputs = getattr(vae.likelihood, "outputs", 1) * config.data_dim
    likelihood = f"the {config.likelihood} likelihood needs size {outputs}"
    _check_network("encoder", vae.encoder, config.data_dim, size, posterior, condition)
    _check_network("decoder", vae.decoder, config.latent_dim, outputs, likelihood, condition)
