"""jaxvae: variational autoencoders in JAX, from the derivation to a trained model.

The Python API:

- `jaxvae.load(RUN_DIR)`: the trained model of a run folder written by `jaxvae train`.
- `jaxvae.build_model(config, key=key)`: the model a `ModelConfig` describes (a `VAE`, or a deep model of
  `jaxvae.deep`); `vae.encode(x)` is q(z|x), `vae.decode(z)` is p(x|z), `vae.prior()` is p(z).
- `jaxvae.LatentModel`: the protocol every model follows, what objectives, evaluation and figures use.
- `jaxvae.ModelConfig`, `jaxvae.TrainConfig`, `jaxvae.RunConfig`: every setting of a model and a run.
- Modules, each one idea: `jaxvae.data` (datasets), `jaxvae.train` (`fit`, `load`), `jaxvae.evaluate`
  (`report`, bounds, quadrature), `jaxvae.objectives`, `jaxvae.distributions`, `jaxvae.networks`,
  `jaxvae.plots`, `jaxvae.sweep`, `jaxvae.gaps`.

Everything is imported on first use, so `import jaxvae` (and the `jaxvae` command's `--help`) loads no JAX.
"""

import importlib
import importlib.util
import pkgutil

_NAMES = {  # public name -> the module that defines it
    "load": "jaxvae.train",
    "VAE": "jaxvae.model",
    "LatentModel": "jaxvae.model",
    "build_model": "jaxvae.builder",
    "ModelConfig": "jaxvae.config",
    "TrainConfig": "jaxvae.config",
    "RunConfig": "jaxvae.config",
}

__all__ = ["__version__", *_NAMES]


def __getattr__(name: str):
    """The version, the public names and the submodules (`jaxvae.train`, `jaxvae.data`, ...), imported on
    first use."""
    if name == "__version__":
        from importlib.metadata import version

        return version("jaxvae")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    if not name.startswith("_") and importlib.util.find_spec(f"jaxvae.{name}") is not None:
        return importlib.import_module(f"jaxvae.{name}")
    raise AttributeError(f"module 'jaxvae' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, the submodules and the module's own dunder attributes."""
    modules = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted([*(n for n in globals() if n.startswith("__")), *__all__, *modules])
