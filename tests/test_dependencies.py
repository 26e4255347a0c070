"""Every library the code imports is declared in pyproject.toml, and the floors there are what
CI installs.

Imports are read from the source with :mod:`ast` (those inside functions too: a lazy import is
still a dependency) and mapped to the distributions that provide them with
:func:`importlib.metadata.packages_distributions`; the GPU libraries, not installed on a
CPU-only machine, are mapped by the table :data:`NOT_INSTALLED_HERE`.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OWN = {"pipeline", "benchmarks", "tests"}

#: Modules of distributions that only a GPU host (or a UCX install) has, so that
#: packages_distributions() cannot name them here: {module: the distributions providing it}.
NOT_INSTALLED_HERE = {
    "cupy": {"cupy-cuda12x", "cupy-cuda13x"},
    "cupyx": {"cupy-cuda12x", "cupy-cuda13x"},
    "dask_cuda": {"dask-cuda"},
    "nvidia.nvcomp": {"nvidia-nvcomp-cu12", "nvidia-nvcomp-cu13"},
    "pynvml": {"nvidia-ml-py"},
    "distributed_ucxx": {"distributed-ucxx-cu12", "distributed-ucxx-cu13"},
}

#: Which requirements each part of the repository may rely on: the package runs with its
#: dependencies and the optional extras of its features (GPU, S3, UCX, xarray); the benchmarks
#: and the tests may also use the dev extra.
FEATURES = tuple(e for e in PYPROJECT["project"]["optional-dependencies"] if e != "dev")
ALLOWED = {
    "pipeline": ("dependencies", *FEATURES),
    "benchmarks": ("dependencies", *FEATURES, "dev"),
    "tests": ("dependencies", *FEATURES, "dev"),
}


def normalise(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group())  # type: ignore[union-attr]


def declared(groups: tuple[str, ...]) -> set[str]:
    """The distributions named by the given requirement groups of pyproject.toml
    ('dependencies' or the name of an optional extra)."""
    return {requirement_name(r) for r in requirements(groups)}


def third_party_imports(folder: str) -> dict[str, list[str]]:
    """{module imported (the top-level name; 'nvidia.nvcomp' for namespace packages):
    where, as 'path:line'} for every import in ``folder`` of a module that is neither in the
    standard library nor the repository's own."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in OWN:
                    continue
                module = ".".join(name.split(".")[:2]) if top == "nvidia" else top
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.setdefault(module, []).append(where)
    return found


@functools.cache
def installed_providers() -> dict[str, list[str]]:
    """{top-level module: distributions} of what this environment has installed."""
    return importlib.metadata.packages_distributions()


def providers(module: str) -> set[str]:
    """The distributions (normalised names) that provide ``module``."""
    installed = installed_providers().get(module.split(".")[0], [])
    known = NOT_INSTALLED_HERE.get(module, set())
    return {normalise(d) for d in (*installed, *known)}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_every_import_is_declared(folder: str) -> None:
    allowed = declared(ALLOWED[folder])
    undeclared = {
        module: where[:3]
        for module, where in third_party_imports(folder).items()
        if not providers(module) & allowed
    }
    assert not undeclared, (
        f"{folder}/ imports libraries that pyproject.toml does not declare in "
        f"{', '.join(ALLOWED[folder])}: {undeclared}"
    )


def test_every_import_maps_to_a_distribution() -> None:
    """A module that maps to no distribution would pass the test above for no reason."""
    unknown = {
        module: where[:3]
        for folder in ALLOWED
        for module, where in third_party_imports(folder).items()
        if not providers(module)
    }
    assert not unknown, f"no distribution is known for {unknown}: add it to NOT_INSTALLED_HERE"


# --------------------------------------------------------------------------------------------
# Floors: CI installs exactly the lower end of the supported range.

#: Requirement groups whose floors constraints/floors.txt does not pin: the GPU and UCX extras
#: install only on a GPU host, where `make` leaves the constraints out (their libraries pin
#: their own dask) and which tests the newer end; the dev extra holds the tools and the
#: reference libraries of the tests, not the pipeline's supported range. Every other group (the
#: dependencies, and each feature extra CI installs through dev: s3, xarray) is pinned.
NOT_PINNED = {"cu12", "cu13", "ucx-cu12", "ucx-cu13", "dev"}


def requirements(groups: tuple[str, ...]) -> list[str]:
    """The requirements of the given groups of pyproject.toml ('dependencies' or an extra)."""
    project = PYPROJECT["project"]
    return [
        r
        for g in groups
        for r in (
            project["dependencies"] if g == "dependencies" else project["optional-dependencies"][g]
        )
    ]


def floors(groups: tuple[str, ...] = ("dependencies", *FEATURES, "dev")) -> dict[str, str]:
    """{distribution: its floor} of every requirement of ``groups`` that has one."""
    out = {}
    for r in requirements(groups):
        floor = re.search(r">=\s*([^,;\s]+)", r)
        if floor:
            out[requirement_name(r)] = floor.group(1)
    return out


def pins() -> dict[str, str]:
    """{distribution: version} of the ``==`` pins of constraints/floors.txt."""
    text = (ROOT / "constraints" / "floors.txt").read_text()
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", text, re.M)
    return {normalise(name): version for name, version in found}


#: The groups whose every requirement has a floor that constraints/floors.txt pins.
TESTED = ("dependencies", *(g for g in FEATURES if g not in NOT_PINNED))


def test_every_tested_requirement_has_a_floor() -> None:
    """A requirement with no floor would leave the test below nothing to pin."""
    bare = [r for r in requirements(TESTED) if not re.search(r">=", r)]
    assert not bare, f"requirements of {TESTED} without a floor (>=): {bare}"


def test_the_constraints_pin_the_floors() -> None:
    """Every floor of the dependencies and the feature extras that CI installs is pinned to
    itself: a floor not pinned is a floor not tested. Each group is compared on its own (a
    distribution two groups name must have the pinned floor in both)."""
    pinned = pins()
    missing = set(floors(TESTED)) - set(pinned)
    assert not missing, f"floors that constraints/floors.txt does not pin: {sorted(missing)}"
    groups = ("dependencies", *FEATURES, "dev")
    differ = {
        (group, name): (version, floor)
        for group in groups
        for name, floor in floors((group,)).items()
        if (version := pinned.get(name)) is not None and version != floor
    }
    assert not differ, f"constraints/floors.txt's pins differ from the floors: {differ}"
    unused = set(pinned) - set(floors(groups))
    assert not unused, f"pins of no requirement's floor: {sorted(unused)}"


def test_the_test_environment_installs_the_floors() -> None:
    """`make test` (CI) creates its venv with the constraints; a GPU host's GPU libraries pin
    their own dask, so there the constraints are left out."""
    make = (ROOT / "Makefile").read_text()
    assert re.search(
        r"^CONSTRAINTS \?= \$\(if \$\(GPU_EXTRA\),,constraints/floors\.txt\)$", make, re.M
    )
    assert re.search(r"pip install .*\$\(if \$\(CONSTRAINTS\),-c \$\(CONSTRAINTS\)\) -e ", make)
    assert re.search(r"^\$\(VENV\)/\.installed: .*constraints/floors\.txt", make, re.M)
