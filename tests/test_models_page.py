"""The Models page's deep-model example, run as the page gives it: its model file and its `jaxvae train`
command train a model whose every latent layer is active, as the page says."""

import json
import re
import shlex
from pathlib import Path

import pytest

from jaxvae.cli import main

PAGE = Path(__file__).resolve().parents[1] / "docs" / "models.md"
SECTION = "### A layer's network of a deep model"


def documented(section: str) -> tuple[str, list[str]]:
    """The section's Python block and its `jaxvae train` command's arguments (after `jaxvae`)."""
    text = PAGE.read_text().split(section, 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    command = re.search(r"^jaxvae (train .*)$", text, re.M).group(1)
    return code, shlex.split(command)


@pytest.mark.slow
def test_the_deep_model_example_trains_every_layer_active(tmp_path, capsys):
    """Every layer has at least one active unit (Var_x E[z|x] > 0.01) and a KL above 0.1 nats, on 100 test
    images with L_100 (the page's evaluation uses all 359 and L_5000)."""
    code, args = documented(SECTION)
    (tmp_path / "my_deep_model.py").write_text(code)
    args[args.index("--out") + 1] = str(tmp_path / "run")
    args[args.index("--model") + 1] = f"{tmp_path / 'my_deep_model.py'}:build"
    assert main([*args, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--iw-samples", "100", "--n", "100", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["active_units_per_layer"]) == 2, result
    assert all(units >= 1 for units in result["active_units_per_layer"]), result
    assert all(kl > 0.1 for kl in result["kl_per_layer"]), result
