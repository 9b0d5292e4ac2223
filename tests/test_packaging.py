"""The dependencies as a library has them: ranges in pyproject.toml, the tested versions in constraints.txt."""

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def test_every_dependency_is_a_range_that_holds_its_pinned_version():
    """Each requirement, the optional extras' too, has a lower and an upper bound, and constraints.txt pins
    it to one version inside them: the version `make` installs and the suite runs with."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    for requirement in requirements:
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">=", "<"}, f"{requirement}: give a range >=LOW,<HIGH"
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"constraints.txt pins no version of {requirement.name}"
        assert requirement.specifier.contains(pinned), f"constraints.txt pins {requirement.name} {pinned}"


def test_the_core_dependencies_are_what_the_library_imports():
    """Every third-party module that src/jaxvae imports, at the top of a file or inside a function, comes from a
    core dependency, and every core dependency is imported (what only the tests or the docs use belongs in an
    extra) but jaxlib, JAX's compiled half, and scikit-learn, whose digits file `data` reads without importing
    it. The import names are mapped to their distributions by the installed packages' metadata."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    imported = set()
    for path in (ROOT / "src" / "jaxvae").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    distributions = importlib.metadata.packages_distributions()
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "jaxvae"}
    used = {canonicalize_name(d) for name in third_party for d in distributions[name]}
    assert used - declared == set(), f"imported by src/ but not a core dependency: {used - declared}"
    unimported = {"jaxlib", "scikit-learn"}
    assert declared - used <= unimported, f"core dependencies src/ never imports: {declared - used - unimported}"
