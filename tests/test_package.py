"""The package as a new user meets it: `import jaxvae`, its names, help() and docstrings, `python -m jaxvae`."""

import dataclasses
import importlib
import importlib.metadata
import inspect
import pkgutil
import subprocess
import sys

import pytest

import jaxvae


def python(code: str) -> str:
    """stdout of `code` run in a fresh interpreter (so that no earlier import hides a missing one)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_submodules_are_attributes_without_importing_them_first():
    out = python(
        "import sys, jaxvae\n"
        "print('jax' in sys.modules)\n"
        "print(callable(jaxvae.data.load_dataset), callable(jaxvae.train.fit), callable(jaxvae.evaluate.report))\n"
    )
    assert out.split() == ["False", "True", "True", "True"]  # the import stays lazy: JAX only on first use


def test_unknown_names_still_raise_attribute_error():
    for name in ("nothing", "_private", "__wrapped__"):
        try:
            getattr(jaxvae, name)
        except AttributeError as e:
            assert name in str(e)
        else:
            raise AssertionError(f"jaxvae.{name} exists")


def test_dir_and_help_show_the_public_api():
    names = dir(jaxvae)
    for name in ("load", "VAE", "ModelConfig", "TrainConfig", "RunConfig", "__version__", "data", "train", "evaluate"):
        assert name in names
    assert not [n for n in names if n.startswith("_") and not n.startswith("__")]  # no private helpers shown
    page = python("import pydoc, jaxvae; print(pydoc.render_doc(jaxvae, renderer=pydoc.plaintext))")
    for shown in (
        "jaxvae.load(RUN_DIR)",
        "class VAE",
        "class ModelConfig",
        "class RunConfig",
        "load(run_dir",
        "VERSION",
    ):
        assert shown in page, shown


def test_version_is_the_installed_distribution_s():
    assert jaxvae.__version__ == importlib.metadata.version("jaxvae")


def test_python_dash_m_jaxvae_is_the_command():
    result = subprocess.run([sys.executable, "-m", "jaxvae", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: jaxvae" in result.stdout, result.stderr
    result = subprocess.run([sys.executable, "-m", "jaxvae", "nonsense"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def _own_doc(obj) -> str | None:
    """obj's docstring, None where there is none or it is only the signature a dataclass writes."""
    doc = inspect.getdoc(obj)
    if doc and dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
        return None
    return doc


def test_every_public_class_function_and_method_of_the_library_has_a_docstring():
    missing = []
    for info in pkgutil.iter_modules(jaxvae.__path__):
        if info.name.startswith("_") or info.name == "cli":  # the command's functions are its --help
            continue
        module = importlib.import_module(f"jaxvae.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not _own_doc(obj):
                missing.append(f"{info.name}.{name}")
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    function = value.fget if isinstance(value, property) else value
                    if attr.startswith("_") or not callable(function) or attr.startswith("do_"):
                        continue  # do_GET and do_HEAD: the HTTP handler's protocol, named by http.server
                    if not inspect.getdoc(getattr(obj, attr) if not isinstance(value, property) else function):
                        missing.append(f"{info.name}.{name}.{attr}")
    assert not missing, missing


@pytest.mark.slow
def test_the_old_vae_call_names_its_replacement_and_parts_still_make_a_vae():
    """`jaxvae.VAE(config, key=key)` built a model up to 0.1.0: it now fails with one line naming
    `jaxvae.build_model`, while a VAE made from its parts, by position or by name, is the built one."""
    import jax
    import numpy as np

    config = jaxvae.ModelConfig(data_shape=(8, 8), hidden=(16,))
    key = jax.random.PRNGKey(0)
    with pytest.raises(TypeError) as error:
        jaxvae.VAE(config, key=key)
    message = str(error.value)
    assert "\n" not in message and "jaxvae.build_model(config, key=key)" in message, message

    built = jaxvae.build_model(config, key=key)
    parts = {f.name: getattr(built, f.name) for f in dataclasses.fields(built)}
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 64))
    for vae in (jaxvae.VAE(*parts.values()), jaxvae.VAE(**parts)):
        assert isinstance(vae, jaxvae.VAE)
        np.testing.assert_array_equal(vae.encode(x).mean, built.encode(x).mean)
        np.testing.assert_array_equal(vae.decode(x[:, :2]).log_prob(x), built.decode(x[:, :2]).log_prob(x))
