"""Your own model: a user's encoder trained through `fit` and through `jaxvae train --model`, reloaded
with identical outputs; a changed or missing model file is a clear error. The example file of the
documentation's Models page is the one the command-line test runs."""

import contextlib
import io
import re
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvae
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.errors import InputError
from jaxvae.train import fit

MODELS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "models.md"


class GatedEncoder(eqx.Module):
    """An encoder jaxvae does not have: x -> tanh(W1 x) * sigmoid(W2 x) -> the posterior's parameters."""

    value: eqx.nn.Linear
    gate: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, d: int, width: int, out_size: int, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.value, self.gate = eqx.nn.Linear(d, width, key=k1), eqx.nn.Linear(d, width, key=k2)
        self.out = eqx.nn.Linear(width, out_size, key=k3)

    def __call__(self, x):
        return self.out(jnp.tanh(self.value(x)) * jax.nn.sigmoid(self.gate(x)))


def build_gated(config: ModelConfig, key) -> jaxvae.VAE:
    vae = jaxvae.build_model(config, key=key)
    return eqx.tree_at(lambda m: m.encoder, vae, GatedEncoder(config.data_dim, 16, vae.posterior.size, key=key))


def small_run(**model) -> RunConfig:
    return RunConfig(ModelConfig(data_shape=(8, 8), hidden=(16,), **model), TrainConfig(epochs=1))


@pytest.fixture
def no_figures(monkeypatch):
    monkeypatch.setattr("jaxvae.plots.write_figures", lambda *args: None)  # not under test here


def assert_same_model(a: jaxvae.VAE, b: jaxvae.VAE):
    x = jnp.asarray(load_dataset("digits").x_test[:5])
    qa, qb = a.encode(x), b.encode(x)
    np.testing.assert_array_equal(qa.mean, qb.mean)
    np.testing.assert_array_equal(a.decode(qa.mean).logits, b.decode(qb.mean).logits)


@pytest.mark.slow
def test_fit_trains_a_users_encoder_and_load_rebuilds_it(tmp_path, no_figures):
    """A module-level function is recorded by file and name: `jaxvae.load` needs nothing more."""
    trained = fit(
        small_run(posterior="full"), load_dataset("digits"), tmp_path / "run", progress=False, build=build_gated
    )
    assert isinstance(trained.encoder, GatedEncoder)
    loaded = jaxvae.load(tmp_path / "run")
    assert type(loaded.encoder).__name__ == "GatedEncoder"
    assert_same_model(trained, loaded)


@pytest.mark.slow
def test_a_function_outside_a_file_loads_only_when_given_again(tmp_path, no_figures):
    def build(config, key):  # a local function: no file and name to record
        return build_gated(config, key)

    trained = fit(small_run(), load_dataset("digits"), tmp_path / "run", progress=False, build=build)
    with pytest.raises(InputError, match="not in a file"):
        jaxvae.load(tmp_path / "run")
    assert_same_model(trained, jaxvae.load(tmp_path / "run", build=build))


def documented_example() -> str:
    """The Python block of the Models page's section "Your own model"."""
    section = MODELS_PAGE.read_text().split("## Your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def jaxvae_cli(*args) -> tuple[int, str]:
    """The command line in this process (cheap): (exit code, stderr)."""
    from jaxvae.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


@pytest.mark.slow
def test_documented_example_trains_evaluates_plots_and_resumes(tmp_path):
    """As a new user would: the documented file, `--model FILE:build`; then a changed file and a missing
    file are one-line errors with exit code 2."""
    model = tmp_path / "my_model.py"
    model.write_text(documented_example())
    run = tmp_path / "run"
    common = ["--quiet", "--out", str(run)]
    code, err = jaxvae_cli("train", *common, "--model", f"{model}:build", "--prior", "vamp:10", "--epochs", "1")
    assert code == 0, err
    for command in (["evaluate", str(run), "--iw-samples", "20", "--n", "30"], ["plot", str(run)]):
        code, err = jaxvae_cli(*command)
        assert code == 0, err
    code, err = jaxvae_cli("train", *common, "--resume", "--epochs", "2")
    assert code == 0, err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    loaded = jaxvae.load(run)
    assert type(loaded.encoder).__name__ != "MLP"
    model.write_text(documented_example() + "\n# edited\n")
    for broken, message in ((model, "changed"), (None, "missing")):
        if broken is None:
            model.unlink()
        code, err = jaxvae_cli("evaluate", str(run), "--n", "5", "--iw-samples", "5")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "spec, message",
    [("nofile.py:build", "cannot read"), ("no-colon", "FILE.py:FUNCTION"), ("{model}:absent", "no function")],
)
def test_bad_model_options_exit_2_and_write_nothing(tmp_path, spec, message):
    model = tmp_path / "m.py"
    model.write_text("def build(config, key):\n    raise ValueError\n")
    out = tmp_path / "never"
    code, err = jaxvae_cli("train", "--quiet", "--out", str(out), "--model", spec.format(model=model))
    assert code == 2 and message in err, err
    assert not out.exists()


WRONG_SIZES = """
import equinox as eqx
import jaxvae

def build(config, key):
    vae = jaxvae.build_model(config, key=key)
    if {part!r} == "decoder":  # one output short of the 64 pixels
        return eqx.tree_at(lambda m: m.decoder, vae, eqx.nn.Linear(config.latent_dim, config.data_dim - 1, key=key))
    return eqx.tree_at(lambda m: m.encoder, vae, eqx.nn.Linear(config.data_dim, 3, key=key))  # diagonal: 2k = 4
"""


@pytest.mark.parametrize(
    "part, message",
    [
        ("decoder", "the model's decoder outputs size 63 per example, the bernoulli likelihood needs size 64"),
        ("encoder", "the model's encoder outputs size 3 per example, the diagonal posterior needs size 4"),
    ],
)
def test_a_network_of_the_wrong_size_is_one_line_before_training(tmp_path, part, message):
    """Exit 2 with one line naming the network, its size and the size needed; no run folder, and an existing
    run given --overwrite is left as it was (the check comes before anything is written)."""
    model = tmp_path / "m.py"
    model.write_text(WRONG_SIZES.format(part=part))
    out = tmp_path / "run"
    code, err = jaxvae_cli("train", "--quiet", "--out", str(out), "--model", f"{model}:build")
    assert code == 2 and err.strip() == f"jaxvae: error: {message}", err
    assert not out.exists()
    assert jaxvae_cli("train", "--quiet", "--out", str(out), "--epochs", "1", "--hidden", "8")[0] == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code, err = jaxvae_cli("train", "--quiet", "--out", str(out), "--overwrite", "--model", f"{model}:build")
    assert code == 2 and message in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize(
    "model, size, message",
    [
        ({}, 10, "decoder outputs size 10 per example, the bernoulli likelihood needs size 64"),
        (  # a network variance: the mean and the log-variance of each pixel
            {"likelihood": "gaussian", "gaussian_variance": "network"},
            64,
            "decoder outputs size 64 per example, the gaussian likelihood needs size 128",
        ),
    ],
)
def test_a_python_function_of_the_wrong_size_is_an_input_error(tmp_path, model, size, message):
    def build(config, key):
        vae = jaxvae.build_model(config, key=key)
        return eqx.tree_at(lambda m: m.decoder, vae, eqx.nn.Linear(config.latent_dim, size, key=key))

    with pytest.raises(InputError, match=message):
        fit(small_run(**model), load_dataset("digits"), tmp_path / "run", progress=False, build=build)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_project_moved_with_its_runs_still_finds_the_model_file(tmp_path):
    """The run records the model file absolute and relative to the run folder; moved, the project's runs
    load by the relative path (looked for first), and a copy left at the old place is not used."""
    import json
    import shutil

    project = tmp_path / "project"
    (project / "runs").mkdir(parents=True)
    (project / "my_model.py").write_text(documented_example())
    run = project / "runs" / "a"
    code, err = jaxvae_cli("train", "--quiet", "--out", str(run), "--model", f"{project / 'my_model.py'}:build")
    assert code == 0, err
    model = json.loads((run / "config.json").read_text())["model"]
    assert model["source"] == f"{(project / 'my_model.py').resolve()}:build"
    assert model["source_relative"] == "../../my_model.py:build"
    moved = shutil.copytree(project, tmp_path / "moved")
    (project / "my_model.py").write_text(documented_example() + "\n# edited at the old place\n")
    code, err = jaxvae_cli("evaluate", str(moved / "runs" / "a"), "--n", "5", "--iw-samples", "5")
    assert code == 0, err
    shutil.rmtree(project)
    assert type(jaxvae.load(moved / "runs" / "a").encoder).__name__ != "MLP"
    (moved / "my_model.py").unlink()
    code, err = jaxvae_cli("evaluate", str(moved / "runs" / "a"), "--n", "5", "--iw-samples", "5")
    assert code == 2 and "missing (nor at ../../my_model.py, relative to the run folder)" in err, err
