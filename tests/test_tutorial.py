"""The tutorial notebook: kept in step with its source, and executed end to end in its fast setting.

docs/tutorial.py (jupytext percent format) is the source; docs/tutorial.ipynb is built from it and executed
by `make tutorial` (docs/execute_tutorial.py) and kept in git with its outputs, which the site shows. The
notebook checks its own claims (`check(...)` raises), so executing it without a failing cell is the test of
the derivation's numbers.
"""

import json
import sys
from pathlib import Path

import jax
import jupytext
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

DOCS = Path(__file__).resolve().parent.parent / "docs"
NOTEBOOK = DOCS / "tutorial.ipynb"
SOURCE = DOCS / "tutorial.py"
KERNEL = "jaxvae-tutorial"


def test_notebook_is_its_source_executed_top_to_bottom():
    """The committed notebook has its source's cells, each code cell run once in order in one kernel, with no
    error and every check passed: the outputs the site shows are those of this source."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    source = jupytext.read(SOURCE)
    cells = lambda nb: [(c.cell_type, c.source) for c in nb.cells]  # noqa: E731
    assert cells(notebook) == cells(source), "docs/tutorial.ipynb is out of date: run `make tutorial`"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run `make tutorial`"
    assert_every_check_passed(notebook)


def assert_every_check_passed(notebook) -> None:
    """No cell failed, every check printed its numbers with a ✓ and none a ✗, and the six figures are there."""
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "✗" not in text
    assert text.count("✓") >= 47, text  # the checks printed their numbers
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 6  # training curve, reconstructions, samples, latent manifold, labelled scatter, gaps


@pytest.mark.slow
def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    """Every cell runs in a kernel of this interpreter (the venv's python), with JAXVAE_TUTORIAL_FAST=1, its
    compiled programs kept on disk as the tests' own are (`process.enable_compilation_cache`)."""
    monkeypatch.setenv("JAXVAE_TUTORIAL_FAST", "1")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", jax.config.jax_compilation_cache_dir)
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    kernels = tmp_path / "kernels"
    write_kernel_spec(kernels / KERNEL)  # a kernel spec launching this very interpreter
    assert json.loads((kernels / KERNEL / "kernel.json").read_text())["argv"][0] == sys.executable
    manager = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, km=manager, timeout=600, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    assert_every_check_passed(notebook)
