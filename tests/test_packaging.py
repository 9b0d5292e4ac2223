"""The dependencies as a library has them: ranges in pyproject.toml, the tested versions in constraints.txt."""

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
