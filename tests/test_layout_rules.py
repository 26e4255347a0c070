"""The package's layout holds: no import cycles, and no import that climbs the layer order.

Layers, lowest first (a module imports only from its own layer or lower ones)::

    errors < ops < config < store < devices < planning < reporting < running < api

``errors`` is ``errors.py``, ``_version.py`` and ``shadowing.py`` (which imports no module of
the package: the workers' check in ``running/cluster.py`` asks them for its files there);
``api`` is ``__init__.py``, ``cli.py`` and ``__main__.py``; every other layer is the subpackage
of that name.
``ops`` sits below ``config`` because the config's stage models are made from the stage
registry. Imports inside functions count as much as those at the top of a module (a lazy
import hides a cycle, it does not remove it). CuPy is imported at a module's top by
``devices/gpu.py`` alone, which itself is imported only lazily (``devices.get('gpu')``), so a
CPU-only install never loads it.

Read from the source with :mod:`ast`, nothing imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

LAYERS = ("errors", "ops", "config", "store", "devices", "planning", "reporting", "running", "api")

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
    if parts[1] in ("errors", "_version", "shadowing"):
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
