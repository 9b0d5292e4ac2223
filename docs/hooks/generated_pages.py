"""MkDocs hooks: the pages made from the code at build time, so that they cannot drift from it.

- `tutorial.md`: the executed notebook docs/tutorial.ipynb (`make tutorial`) as a page, its code with its
  outputs, its figures as PNG files under `tutorial-outputs/`.
- In `cli.md`, the marker `<!-- commands -->` becomes every command and option of `jaxvae.cli.build_parser()`.
- `api/NAME.md`: one page per public module of src/jaxvae (mkdocstrings), added to the nav under the API
  reference, whose page `api/index.md` lists them where its marker `<!-- modules -->` is. The command's own
  modules (`jaxvae.cli` and its package) are not the library's API: the command line is theirs.
- In `design.md`, the marker `<!-- imports -->` becomes a table of the modules, their layers and what each
  imports of jaxvae, read from the sources; an import cycle fails the build.
"""

import argparse
import ast
import base64
import graphlib
import sys
from pathlib import Path

import nbformat
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "jaxvae"
sys.path.insert(0, str(PACKAGE.parent))  # the parser of this checkout, whichever jaxvae is installed


def on_config(config):
    for entry in config.nav:
        if isinstance(entry, dict) and "API reference" in entry:
            entry["API reference"] = [entry["API reference"], *(api_page(name) for name in public_modules())]
    return config


def on_files(files, config):
    page, figures = tutorial_page(ROOT / "docs" / "tutorial.ipynb")
    files.append(File.generated(config, "tutorial.md", content=page))
    for name, png in figures.items():
        files.append(File.generated(config, name, content=png))
    for name in public_modules():
        page = f"# `{name}`\n\n::: {name}\n    options:\n      show_root_heading: false\n"
        files.append(File.generated(config, api_page(name), content=page))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "cli.md":
        return markdown.replace("<!-- commands -->", commands_markdown())
    if page.file.src_uri == "api/index.md":
        return markdown.replace("<!-- modules -->", modules_markdown())
    if page.file.src_uri == "design.md":
        return markdown.replace("<!-- imports -->", imports_markdown())
    return markdown


TUTORIAL_NOTE = """!!! note
    This page is the notebook [`tutorial.ipynb`](tutorial.ipynb) with the outputs of `make tutorial`, which
    executed it; its first cell prints the dataset and settings it ran with. To run it yourself, see
    [Getting started](getting-started.md#the-tutorial)."""


def tutorial_page(notebook_path: Path) -> tuple[str, dict[str, bytes]]:
    """The executed notebook as a page and its figures: markdown cells as they are, each code cell as a Python
    block followed by its outputs (text as text blocks, figures as images named `tutorial-outputs/CELL-I.png`),
    and a note after the title."""
    notebook = nbformat.read(notebook_path, as_version=4)
    parts, figures = [], {}
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            continue
        parts.append(f"```python\n{cell.source}\n```")
        for i, output in enumerate(cell.outputs):
            data = output.get("data", {})
            if "image/png" in data:
                name = f"tutorial-outputs/{cell.id}-{i}.png"
                figures[name] = base64.b64decode(data["image/png"])
                parts.append(f"![a figure of the cell above]({name})")
            elif output.output_type == "stream" or "text/plain" in data:
                text = output.text if output.output_type == "stream" else data["text/plain"]
                parts.append(f"```text\n{as_on_a_terminal(text)}\n```")
    return "\n\n".join([parts[0], TUTORIAL_NOTE, *parts[1:]]) + "\n", figures


def as_on_a_terminal(text: str) -> str:
    """Printed text as a terminal leaves it: of a line redrawn with carriage returns (a progress bar), the last."""
    return "\n".join(line.split("\r")[-1] for line in text.rstrip("\n").split("\n"))


def commands_markdown() -> str:
    """One section per command: what it does, its usage line, and a table of its arguments."""
    from jaxvae.cli import build_parser

    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in commands._choices_actions}
    sections = []
    for name, command in commands.choices.items():
        command.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=80)
        rows = [argument_row(a) for a in command._actions if not isinstance(a, argparse._HelpAction)]
        summary = sentence(summaries[name][:1].upper() + summaries[name][1:])
        usage = command.format_usage().strip()
        table = "| argument | default | meaning |\n| --- | --- | --- |\n" + "\n".join(rows)
        sections.append(f"## `jaxvae {name}`\n\n{summary}\n\n```\n{usage}\n```\n\n{table}")
    return "\n\n".join(sections)


def argument_row(action: argparse.Action) -> str:
    if action.option_strings:
        metavar = f" {action.metavar or action.dest.upper()}" if action.nargs != 0 else ""
        names = ", ".join(f"`{o}{metavar}`" for o in action.option_strings)
    else:
        names = f"`{action.metavar or action.dest}`"
    no_default = action.default is None or action.default is False or action.required
    default = "" if no_default else f"`{action.default}`"
    meaning = [sentence(action.help)] if action.help else []
    if action.choices:
        meaning.append("One of " + ", ".join(f"`{c}`" for c in action.choices) + ".")
    if action.required and action.option_strings:
        meaning.append("Required.")
    return f"| {names} | {default} | {' '.join(meaning)} |"


def sentence(text: str) -> str:
    """Help text as Markdown text, with a full stop."""
    return escape(text) if text.endswith(".") else escape(text) + "."


def escape(text: str) -> str:
    """Plain help text as Markdown table text: the characters Markdown would read as markup escaped."""
    for c in "\\`*_|<[]":
        text = text.replace(c, "\\" + c)
    return text


def module_names() -> dict[str, Path]:
    """Every public module and package of src/jaxvae by its dotted name (`jaxvae`, `jaxvae.cli`, ...)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            names[".".join(parts)] = path
    return names


def public_modules() -> dict[str, Path]:
    """The modules of the library's API: all but the command's."""
    return {name: path for name, path in module_names().items() if name.split(".")[:2] != ["jaxvae", "cli"]}


def api_page(name: str) -> str:
    return f"api/{name}.md"


def modules_markdown() -> str:
    """A list of the modules' pages, each with the first sentence of its docstring."""
    return "\n".join(f"- [`{name}`]({name}.md): {summary(path)}" for name, path in public_modules().items())


def imports_markdown() -> str:
    """| module | layer | imports of jaxvae | what it holds |: layer 0 imports nothing of jaxvae, and a module's
    layer is one above the highest of those it imports (at the top of the file or inside a function; not the
    names imported for the type checker only, under `if TYPE_CHECKING:`, which never run). The package's own
    `__init__`, which every import runs, is left out."""
    modules = {name.removeprefix("jaxvae."): path for name, path in module_names().items() if name != "jaxvae"}
    imports = {name: jaxvae_imports(path, name, modules) for name, path in modules.items()}
    try:
        order = list(graphlib.TopologicalSorter(imports).static_order())
    except graphlib.CycleError as e:
        raise RuntimeError(f"import cycle among jaxvae's modules: {' -> '.join(e.args[1])}") from None
    layer = {}
    for name in order:
        layer[name] = 1 + max((layer[d] for d in imports[name]), default=-1)
    documented = public_modules()
    rows = []
    for name in sorted(modules, key=lambda n: (layer[n], n)):
        uses = ", ".join(f"`{d}`" for d in sorted(imports[name]))
        page = f"[`{name}`](api/jaxvae.{name}.md)" if f"jaxvae.{name}" in documented else f"`{name}`"
        rows.append(f"| {page} | {layer[name]} | {uses} | {summary(modules[name])} |")
    return "| module | layer | imports of jaxvae | what it holds |\n| --- | --- | --- | --- |\n" + "\n".join(rows)


def jaxvae_imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` (named after `jaxvae.`) that the file of module `name` imports, anywhere in it
    but under `if TYPE_CHECKING:`."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    type_checking = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    type_only = {id(n) for block in type_checking for statement in block.body for n in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(["jaxvae", *package[: len(package) - node.level + 1], *([base] if base else [])])
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            for end in range(len(parts), 1, -1):  # the longest prefix that is a module of jaxvae
                if parts[0] == "jaxvae" and (candidate := ".".join(parts[1:end])) in modules:
                    found.add(candidate)
                    break
    found.discard(name)
    return found


def summary(path: Path) -> str:
    """The first sentence of a module's docstring, as table text."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return (first.split(". ")[0].rstrip(".") + ".").replace("|", "\\|") if first else ""
