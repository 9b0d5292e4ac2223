"""The documentation site builds with `mkdocs build --strict` (a broken link, anchor or API reference fails),
its command-line page lists every command and option of the parser, and the README's links into it hold."""

import argparse
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jaxvae.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_site_builds_strictly_and_documents_every_option(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
    result = subprocess.run([*build, "--site-dir", str(tmp_path)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr

    page = html.unescape(re.sub(r"<[^>]+>", "", (tmp_path / "cli" / "index.html").read_text()))
    (commands,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parts = re.split(r"jaxvae ([a-z]+)¶", page)  # each command's heading, with its permalink
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    assert sorted(sections) == sorted(commands.choices)
    for name, command in commands.choices.items():
        section = sections[name]
        options = [o for a in command._actions for o in a.option_strings if o not in ("-h", "--help")]
        missing = [o for o in options if not re.search(rf"{re.escape(o)}\b", section)]
        assert not missing, f"jaxvae {name}: {missing} not on the command-line page"
    api = sorted(page.name for page in (tmp_path / "api").iterdir() if page.is_dir())
    assert "jaxvae.train" in api and not [name for name in api if name.startswith("jaxvae.cli")], api  # the library's
    tutorial = (tmp_path / "tutorial" / "index.html").read_text()  # the executed notebook, with its outputs
    figures = re.findall(r'<img alt="[^"]*" src="../(tutorial-outputs/[^"]+\.png)"', tutorial)
    assert len(figures) == 6 and all((tmp_path / f).stat().st_size > 1000 for f in figures), figures
    assert tutorial.count("✓") >= 47


def test_readme_stays_a_front_door():
    """The README fits on a few screens and points into the site; the rest belongs in docs/."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    linked = set(re.findall(r"\]\(docs/([^)#]+)", readme))
    assert linked and all((ROOT / "docs" / page).exists() for page in linked), linked
