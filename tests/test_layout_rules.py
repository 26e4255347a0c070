"""The package's layout holds: no import cycles, and no import that climbs the layer order.

Layers, lowest first (a module imports only from its own layer or lower ones)::

    errors < ops < config < store < devices < planning < reporting < running < api

``errors`` is ``errors.py``, ``_version.py``, ``shadowing.py`` (which imports no module of
the package: the workers' check in ``running/cluster.py`` asks them for its files there) and
``_lazy.py`` (the subpackages' lazy re-exports, which every subpackage imports: it imports no
module of the package);
``api`` is ``__init__.py``, ``cli.py`` and ``__main__.py``; every other layer is the subpackage
of that name.
``ops`` sits below ``config`` because the config's stage models are made from the stage
registry. Imports inside functions count as much as those at the top of a module (a lazy
import hides a cycle, it does not remove it). CuPy is imported at a module's top by
``devices/gpu.py`` alone, which itself is imported only lazily (``devices.get('gpu')``), so a
CPU-only install never loads it.

The subpackages whose re-exports load on first use make them with the one helper,
:func:`pipeline._lazy.reexports`, from one table each, which agrees with the package's
``__all__`` and the imports its type checker reads; no such package has a module named as
one of its re-exports.

Read from the source with :mod:`ast`, nothing imported; the re-exports' behaviour (nothing
loaded by the package's import, ``dir``, ``help``, the error for an unknown name, each name
its module's object) is checked in a fresh interpreter per package.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

LAYERS = ("errors", "ops", "config", "store", "devices", "planning", "reporting", "running", "api")

#: The modules of the lowest layer, ``errors``, each of the package's top level.
LOWEST = ("errors", "_version", "shadowing", "_lazy")

#: The subpackages whose re-exports load on first use (:func:`pipeline._lazy.reexports`).
LAZY_PACKAGES = ("config", "store", "planning", "devices", "running", "reporting")

#: Lazy imports a cycle may go through: the backend registry loads the GPU backend on demand.
LAZY_ALLOWED = {("pipeline.devices", "pipeline.devices.gpu")}

#: Modules that load CUDA when imported.
GPU_MODULES = ("cupy", "cupyx", "nvidia.nvcomp")


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    top: bool
    """at the module's top level (not inside a function)"""


def modules(package: Path) -> dict[str, Path]:
    """{dotted module name: file} of every module of ``package`` (``pkg.sub`` for a
    subpackage's ``__init__.py``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("cli", "__main__"):
        return LAYERS.index("api")
    if parts[1] in LOWEST:
        return LAYERS.index("errors")
    return LAYERS.index(parts[1])


def imports(name: str, path: Path, known: set[str]) -> list[Import]:
    """Every import of a module of the package in module ``name``: ``from pkg.a import b``
    is of ``pkg.a.b`` when that is a module, else of ``pkg.a``."""
    tree = ast.parse(path.read_text(), str(path))
    root = name.split(".")[0]
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def add(target: str, node: ast.stmt, top: bool) -> None:
        if target == root or target.startswith(root + "."):
            found.append(Import(name, target, node.lineno, top))

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child, inner)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    up = here[: len(here) - (child.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    add(sub if sub in known else base, child, inner)
            visit(child, inner)

    visit(tree, True)
    return found


def all_imports(package: Path) -> list[Import]:
    mods = modules(package)
    return [i for name, path in mods.items() for i in imports(name, path, set(mods))]


def climbing(found: list[Import]) -> list[str]:
    """Imports of a module of a higher layer, as 'source:line imports target'."""
    return [
        f"{i.source}:{i.line} ({LAYERS[layer(i.source)]}) imports {i.target} "
        f"({LAYERS[layer(i.target)]})"
        for i in found
        if layer(i.target) > layer(i.source)
    ]


def cycles(found: list[Import]) -> list[list[str]]:
    """Import cycles among the modules (one path per cycle found by depth-first search)."""
    graph: dict[str, set[str]] = {}
    for i in found:
        if (i.source, i.target) in LAZY_ALLOWED and not i.top:
            continue
        if i.source != i.target:
            graph.setdefault(i.source, set()).add(i.target)
    out: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                out.append(path[path.index(t) :] + [t])
            elif t not in state:
                walk(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)
    return out


def gpu_imports(package: Path) -> list[str]:
    """Modules that import CuPy or nvCOMP at their top, or the GPU backend at their top,
    other than the GPU backend itself."""
    mods = modules(package)
    bad = []
    for name, path in mods.items():
        if name.endswith("devices.gpu"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            hit = [
                n
                for n in names
                if any(n == g or n.startswith(g + ".") for g in GPU_MODULES)
                or n.endswith("devices.gpu")
            ]
            bad += [f"{name}:{node.lineno} imports {n}" for n in hit]
    return bad


@dataclass(frozen=True)
class Reexports:
    """What a package's ``__init__.py`` says of its re-exports."""

    table: dict[str, str] | None
    """``{name: module}`` given to ``reexports(__name__, {...})``; None where it makes none"""
    all: list[str]
    """its ``__all__``"""
    typed: dict[str, str]
    """``{name: module}`` of its ``if TYPE_CHECKING:`` imports (what mypy sees)"""
    own: set[str]
    """the functions and classes it defines itself"""


def reexports_of(path: Path) -> Reexports:
    """The re-exports ``path`` (a package's ``__init__.py``) makes, read from its source."""
    tree = ast.parse(path.read_text(), str(path))
    table: dict[str, str] | None = None
    names: list[str] = []
    typed: dict[str, str] = {}
    own: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Assign) and _made_by_the_helper(node):
            assert isinstance(node.value, ast.Call)
            table = ast.literal_eval(node.value.args[1])
        elif isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__":
            names = ast.literal_eval(node.value)
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom) and imp.module:
                    typed |= {a.asname or a.name: imp.module for a in imp.names}
    return Reexports(table, names, typed, own)


def _made_by_the_helper(node: ast.Assign) -> bool:
    """``node`` is ``__getattr__, __dir__ = reexports(...)``."""
    call = node.value
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "reexports"
        and [ast.unparse(t) for t in node.targets] == ["(__getattr__, __dir__)"]
    )


def own_lazy_hooks(package: Path) -> list[str]:
    """Modules that define a module's ``__getattr__`` or ``__dir__`` themselves, where the
    helper ``_lazy.py`` makes them ('module:line defines NAME'), the API's ``__init__.py``
    (its one lazy name, ``Config``) aside."""
    found = []
    for name, path in modules(package).items():
        if name in (package.name, f"{package.name}._lazy"):
            continue
        for node in ast.parse(path.read_text(), str(path)).body:
            defined = []
            if isinstance(node, ast.FunctionDef):
                defined = [node.name]
            elif isinstance(node, ast.Assign) and not _made_by_the_helper(node):
                defined = [ast.unparse(t) for t in node.targets]
            defined = [d for d in defined if "__getattr__" in d or "__dir__" in d]
            found += [f"{name}:{node.lineno} defines {d}" for d in defined]
    return found


# --------------------------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    for name in modules(PACKAGE):
        assert 0 <= layer(name) < len(LAYERS), name


def test_no_import_climbs_the_layer_order() -> None:
    assert climbing(all_imports(PACKAGE)) == []


def test_no_import_cycles() -> None:
    assert cycles(all_imports(PACKAGE)) == []


def test_only_the_gpu_backend_imports_cupy_at_its_top() -> None:
    assert gpu_imports(PACKAGE) == []


def test_each_subpackage_and_module_says_what_it_owns() -> None:
    for name, path in modules(PACKAGE).items():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if name.endswith("__main__"):
            continue
        assert doc and len(doc.split()) >= 5, f"{name} has no docstring saying what it owns"


def test_every_lazy_subpackage_reexports_through_the_one_helper() -> None:
    """The six subpackages' re-exports are made by ``_lazy.reexports`` from a table: no
    module keeps a copy of its own (each had one, and they had drifted: three kept the object
    as the package's attribute, three looked it up again on every use)."""
    made = {
        path.parent.name
        for path in PACKAGE.glob("*/__init__.py")
        if reexports_of(path).table is not None
    }
    assert made == set(LAZY_PACKAGES)
    assert own_lazy_hooks(PACKAGE) == []
    assert layer("pipeline._lazy") == 0
    assert imports("pipeline._lazy", PACKAGE / "_lazy.py", set(modules(PACKAGE))) == []


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_a_packages_table_is_its_all_and_what_mypy_sees(name: str) -> None:
    """The table (what the package gives at run time), ``__all__`` (what ``help`` and
    ``import *`` name) and the ``TYPE_CHECKING`` imports (what mypy sees) name the same
    objects; no re-export is named as a module of its package (importing that module sets the
    package's attribute to the module, and the re-export is never asked: ``from
    pipeline.planning import describe`` had given the module ``planning/describe.py``)."""
    found = reexports_of(PACKAGE / name / "__init__.py")
    assert found.table
    assert sorted(found.all) == sorted({*found.table, *(found.own & {*found.all})})
    assert len(found.all) == len(set(found.all))
    assert {n for n in found.all if n not in found.table} <= found.own
    assert found.typed == {n: f"pipeline.{name}.{m}" for n, m in found.table.items()}
    mods = {p.stem for p in (PACKAGE / name).glob("*.py")} | {
        p.parent.name for p in (PACKAGE / name).glob("*/__init__.py")
    }
    assert set(found.table.values()) <= mods
    assert not set(found.table) & mods, sorted(set(found.table) & mods)


#: In a fresh interpreter: the package ``argv[1]``, whose re-exports ``argv[2]`` maps to their
#: modules, imported, listed, asked for an unknown name, then for each re-export; then, every
#: module of it imported, each again.
_BEHAVIOUR = r"""
import importlib, json, pkgutil, pydoc, sys, types

name, table = sys.argv[1], json.loads(sys.argv[2])
own = lambda: sorted(m for m in sys.modules if m.startswith(name + "."))
package = importlib.import_module(name)
seen = {"imported": own(), "unlisted": sorted(set(package.__all__) - set(dir(package)))}
seen["listed"] = own()
try:
    package.no_such_name
except AttributeError as e:
    seen["unknown"] = str(e)
seen["hasattr"] = hasattr(package, "no_such_name")
seen["wrong"] = []
for export in package.__all__:
    value = getattr(package, export)
    if export in table:
        home = sys.modules.get(table[export])
        kept = getattr(package, export) is value  # asked again: the same
        if home is None or getattr(home, export) is not value or not kept:
            seen["wrong"].append(export)
shown = pydoc.render_doc(package, renderer=pydoc.plaintext)
seen["undocumented"] = [n for n in package.__all__ if f" {n}" not in shown]
for module in pkgutil.iter_modules(package.__path__):
    try:
        importlib.import_module(name + "." + module.name)
    except ModuleNotFoundError as missing:  # the GPU backend's CuPy, on a CPU machine
        if not missing.name or missing.name.startswith("pipeline"):
            raise
seen["modules"] = [
    n for n in package.__all__ if isinstance(getattr(package, n), types.ModuleType)
]
print(json.dumps(seen))
"""


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_a_lazy_packages_reexports_behave(name: str, tmp_path: Path) -> None:
    """``import pipeline.NAME`` imports none of its modules, nor does ``dir`` (which names every
    re-export, loaded or not, as ``help`` does); an unknown name is Python's AttributeError;
    each re-export is its module's object, loaded on first use, and stays so once every module
    of the package is imported (the worker-side modules load without the plan's:
    ``tests/test_fork_server.py``)."""
    from tests.faultkit import run_python

    homes = reexports_of(PACKAGE / name / "__init__.py").typed  # what mypy sees
    package = f"pipeline.{name}"
    done = run_python(["-c", _BEHAVIOUR, package, json.dumps(homes)], tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {
        "imported": [],
        "unlisted": [],
        "listed": [],
        "unknown": f"module {package!r} has no attribute 'no_such_name'",
        "hasattr": False,
        "wrong": [],
        "undocumented": [],
        "modules": [],
    }


def test_a_reexport_asked_first_is_the_object_not_its_module(tmp_path: Path) -> None:
    """``reexports`` keeps the object as the package's attribute, over the module of the same
    name its import set there: asked through the package first, ``toy.thing`` is the function
    ``toy/thing.py`` defines, then and after ``import toy.thing``."""
    from tests.faultkit import env, run_python

    toy = tmp_path / "toy"
    toy.mkdir()
    (toy / "__init__.py").write_text(
        "from pipeline._lazy import reexports\n"
        "__getattr__, __dir__ = reexports(__name__, {'thing': 'thing'})\n"
    )
    (toy / "thing.py").write_text("def thing():\n    return 7\n")
    code = (
        "import sys, toy\n"
        "first = toy.thing\n"
        "import toy.thing\n"
        "from toy import thing\n"
        "print(first(), toy.thing is first, thing is first, 'toy.thing' in sys.modules)\n"
    )
    e = env()
    e["PYTHONPATH"] = os.pathsep.join((str(tmp_path), e["PYTHONPATH"]))
    done = run_python(["-c", code], tmp_path, environ=e)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["7", "True", "True", "True"]


# The checks themselves, on a small package written here: each rule catches what it is for.


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pipeline"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return _package(
        tmp_path,
        {
            "__init__.py": "from pipeline.running import run\n",
            "errors.py": "",
            "ops/__init__.py": "",
            "ops/stages.py": "from pipeline.errors import PipelineError\n",
            "store/__init__.py": "from pipeline.store.grid import Shape\n",
            "store/grid.py": "import numpy\n",
            "store/arrays.py": "from pipeline.store import grid\n",
            "devices/__init__.py": "def get():\n    from pipeline.devices import gpu\n",
            "devices/gpu.py": "import cupy\nfrom pipeline.devices import base\n",
            "devices/base.py": "from pipeline.store.grid import Shape\n",
            "running/__init__.py": "",
            "running/runner.py": "from pipeline.store.arrays import x\n",
        },
    )


def test_the_checks_pass_a_good_package(toy: Path) -> None:
    found = all_imports(toy)
    assert climbing(found) == [] and cycles(found) == [] and gpu_imports(toy) == []
    assert Import("pipeline.store.arrays", "pipeline.store.grid", 1, True) in found


def test_a_climbing_import_is_caught_even_inside_a_function(toy: Path) -> None:
    (toy / "store" / "grid.py").write_text("def f():\n    from pipeline.running import runner\n")
    assert climbing(all_imports(toy)) == [
        "pipeline.store.grid:2 (store) imports pipeline.running.runner (running)"
    ]
    (toy / "store" / "grid.py").write_text("from pipeline import __version__\n")
    assert climbing(all_imports(toy)) == ["pipeline.store.grid:1 (store) imports pipeline (api)"]


def test_a_cycle_is_caught_even_through_a_lazy_import(toy: Path) -> None:
    (toy / "store" / "grid.py").write_text("def f():\n    from .arrays import x\n")
    (found,) = cycles(all_imports(toy))
    assert found[0] == found[-1] and set(found) == {"pipeline.store.arrays", "pipeline.store.grid"}


def test_only_the_allowed_lazy_import_may_close_a_cycle(toy: Path) -> None:
    (toy / "devices" / "gpu.py").write_text("import cupy\nfrom pipeline import devices\n")
    assert cycles(all_imports(toy)) == []  # devices -> gpu is lazy, and allowed
    (toy / "devices" / "__init__.py").write_text("from pipeline.devices import gpu\n")
    assert cycles(all_imports(toy)) == [
        ["pipeline.devices", "pipeline.devices.gpu", "pipeline.devices"]
    ]


def test_cupy_at_a_modules_top_is_caught(toy: Path) -> None:
    (toy / "store" / "grid.py").write_text("import cupy as cp\n")
    (toy / "running" / "runner.py").write_text("from pipeline.devices.gpu import GpuBackend\n")
    assert gpu_imports(toy) == [
        "pipeline.running.runner:1 imports pipeline.devices.gpu",
        "pipeline.store.grid:1 imports cupy",
    ]
