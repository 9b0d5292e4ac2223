"""`make tutorial`: docs/tutorial.ipynb from its source docs/tutorial.py, executed, so that the notebook in git
and the site's Tutorial page show every output. Cells get stable ids (cell-0, cell-1, ...) and no timing
metadata, so that a rebuild changes only what changed. The kernel is this interpreter (the venv's python).

    .venv/bin/python docs/execute_tutorial.py [--source docs/tutorial.py] [--notebook docs/tutorial.ipynb]
"""

import argparse
import tempfile
from pathlib import Path

import jupytext
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

DOCS = Path(__file__).resolve().parent


def execute(notebook, workdir: Path) -> None:
    """Run every cell of `notebook` in place in a kernel of this interpreter, with `workdir` as its folder."""
    write_kernel_spec(workdir / "kernels" / "jaxvae")
    specs = KernelSpecManager(kernel_dirs=[str(workdir / "kernels")])
    client = NotebookClient(
        notebook,
        km=KernelManager(kernel_name="jaxvae", kernel_spec_manager=specs),
        timeout=3600,
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DOCS / "tutorial.py")
    parser.add_argument("--notebook", type=Path, default=DOCS / "tutorial.ipynb")
    args = parser.parse_args()
    notebook = jupytext.read(args.source)
    for i, cell in enumerate(notebook.cells):
        cell.id = f"cell-{i}"
    with tempfile.TemporaryDirectory() as workdir:
        execute(notebook, Path(workdir))
    jupytext.write(notebook, args.notebook)


if __name__ == "__main__":
    main()
