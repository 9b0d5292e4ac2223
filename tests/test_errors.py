"""Library errors name the settings by their field names; the command line writes them as its options."""

import argparse
import re

import pytest

from jaxvae.cli import main
from jaxvae.cli.parser import in_options
from jaxvae.config import ModelConfig, TrainConfig
from jaxvae.errors import SettingError


def test_the_library_names_fields_and_the_command_line_its_options(tmp_path, capsys):
    with pytest.raises(SettingError, match=r"^latent_dim must be at least 1, got 0$") as error:
        ModelConfig(data_shape=(4,), latent_dim=0)
    assert error.value.settings == ("latent_dim",)
    with pytest.raises(SettingError, match=re.escape("early_stopping needs a validation set: validation_fraction")):
        TrainConfig(early_stopping=2)
    for argv, line in [
        (["--latent-dim", "0"], "--latent-dim must be at least 1, got 0"),
        (
            ["--early-stopping", "2", "--validation-fraction", "0"],
            "--early-stopping needs a validation set: --validation-fraction must be positive",
        ),
    ]:
        assert main(["train", "--out", str(tmp_path / "never"), "--quiet", *argv]) == 2
        assert capsys.readouterr().err == f"jaxvae: error: {line}\n"


def test_settings_the_command_lacks_keep_their_field_names():
    error = SettingError("seed and batch_size seed the batch_size", "seed", "batch_size")
    assert in_options(error, argparse.Namespace(seed=0)) == "--seed and batch_size seed the batch_size"
    assert in_options(error, argparse.Namespace(batch_size=1)) == "seed and --batch-size seed the batch_size"
