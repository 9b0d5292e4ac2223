"""M2 with networks of the user's own (`jaxvae train --labels N --model FILE:FUNCTION`): the file's classifier is
the one trained and reloaded, a file that gives none gets the builder's, and a file whose parts do not fit is one
line and exit code 2. The example file of the Semi-supervised page's "Your own networks" is the one run here."""

import dataclasses
import re
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvae
from conftest import evaluated_m2, run_main
from jaxvae import model_file
from jaxvae.builder import build_model, network
from jaxvae.config import ModelConfig
from jaxvae.errors import InputError
from jaxvae.semisupervised import SemiSupervisedVAE

PAGE = Path(__file__).resolve().parents[1] / "docs" / "semisupervised.md"
TRAIN = ["train", "--dataset", "digits", "--labels", "50", "--hidden", "16", "--batch-size", "64", "--quiet"]
CONFIG = ModelConfig(data_shape=(8, 8), hidden=(16,), condition_dim=10)


def documented_example() -> str:
    """The Python block of the page's section "Your own networks"."""
    section = PAGE.read_text().split("### Your own networks", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def parameters(module) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array)))


@pytest.mark.slow
def test_a_conditional_model_gets_the_builders_classifier_and_m2_parts_keep_their_own():
    """build_m2 of a function returning a conditional VAE: that VAE from the key's first half, the classifier
    `builder.network` makes from its second (as the default M2 is built); of one returning M2's parts: those."""
    key = jax.random.PRNGKey(4)
    vae_key, classifier_key = jax.random.split(key)
    parts = model_file.build_m2(CONFIG, key, lambda config, k: build_model(config, key=k))
    same = (
        (parts.vae, build_model(CONFIG, key=vae_key)),
        (parts.classifier, network(CONFIG, 64, 10, key=classifier_key)),
    )
    for got, expected in same:
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(a, b)
    own = eqx.nn.Linear(64, 10, key=key)
    parts = model_file.build_m2(CONFIG, key, lambda config, k: SemiSupervisedVAE(build_model(config, key=k), own))
    assert parts.classifier is own


def unconditional(config, key):
    return build_model(dataclasses.replace(config, condition_dim=0), key=key)


def wrong_classifier(config, key):
    return SemiSupervisedVAE(build_model(config, key=key), eqx.nn.Linear(config.data_dim, 9, key=key))


@pytest.mark.parametrize(
    "build, message",
    [
        (unconditional, "must return a model conditional on the 10 classes"),
        (wrong_classifier, "the model's classifier outputs size 9 per example, M2 needs 10 logits"),
    ],
)
def test_parts_that_do_not_fit_m2_are_input_errors(build, message):
    with pytest.raises(InputError, match=message):
        model_file.build_m2(CONFIG, jax.random.PRNGKey(0), build)


def test_m2_parts_without_labels_are_an_input_error():
    def parts(config, key):
        return SemiSupervisedVAE(build_model(config, key=key), eqx.nn.Linear(config.data_dim, 10, key=key))

    with pytest.raises(InputError, match="returns M2's parts .*: train it with --labels"):
        model_file.build(dataclasses.replace(CONFIG, condition_dim=0), jax.random.PRNGKey(0), parts)


def recorded_model(run: Path) -> ModelConfig:
    return jaxvae.RunConfig.load(run / "config.json").model


@pytest.mark.slow
def test_the_documented_file_trains_m2_with_its_classifier(tmp_path, capsys, monkeypatch):
    """The page's file with --labels: the checkpoint's classifier is the file's (its structure and its 8,970
    parameters: 64 (64 + 1) + 64 (64 + 1) + 10 (64 + 1)), and `evaluate --json`'s classification error is the one
    recomputed from `encode`'s q_y and the true labels."""

    monkeypatch.setattr("jaxvae.plots.write_figures", lambda *args: None)  # not under test here
    model = tmp_path / "my_m2.py"
    model.write_text(documented_example())
    run = tmp_path / "run"
    code, err = run_main([*TRAIN, "--epochs", "1", "--model", f"{model}:build", "--out", str(run)], capsys)
    assert code == 0, err
    trained = jaxvae.load(run)
    assert isinstance(trained, SemiSupervisedVAE)
    assert isinstance(trained.classifier, eqx.nn.MLP) and parameters(trained.classifier) == 8970
    own = model_file.builder(recorded_model(run))(recorded_model(run), jax.random.PRNGKey(0)).classifier
    assert jax.tree.structure(trained.classifier) == jax.tree.structure(own)
    result, q_y, y = evaluated_m2(run, 60, 5, tmp_path, capsys)
    assert result["classification_error"] == pytest.approx(np.mean(q_y.argmax(axis=1) != y), abs=1e-12)
    x = jnp.asarray(jaxvae.data.load_dataset("digits", progress=False).x_test[:60])
    np.testing.assert_allclose(q_y, jax.nn.softmax(jax.vmap(trained.classifier)(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "import dataclasses, jaxvae\ndef build(config, key):\n"
            "    return jaxvae.build_model(dataclasses.replace(config, condition_dim=0), key=key)\n",
            "its model takes no condition",
        ),
        (
            "import equinox as eqx, jaxvae\nfrom jaxvae.semisupervised import SemiSupervisedVAE\n"
            "def build(config, key):\n    vae = jaxvae.build_model(config, key=key)\n"
            "    return SemiSupervisedVAE(vae, eqx.nn.Linear(config.data_dim, 3, key=key))\n",
            "the model's classifier outputs size 3 per example, M2 needs 10 logits",
        ),
    ],
)
def test_a_file_that_does_not_fit_m2_is_one_line_and_exit_2(tmp_path, capsys, body, message):
    model = tmp_path / "m.py"
    model.write_text(body)
    out = tmp_path / "never"
    code, err = run_main([*TRAIN, "--model", f"{model}:build", "--out", str(out)], capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
