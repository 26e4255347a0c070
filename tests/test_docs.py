"""The documentation cannot drift: README's config reference is the generated one, the README
examples parse, and DESIGN.md covers every module."""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import load_config, parse_config
from pipeline.config.reference import (
    REFERENCE_BEGIN,
    REFERENCE_END,
    schema_markdown,
    with_reference,
)
from pipeline.errors import OutputError
from pipeline.ops.stages import REGISTRY
from tests.faultkit import refused

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_reference_is_the_generated_one() -> None:
    assert REFERENCE_BEGIN in README and REFERENCE_END in README
    assert with_reference(README) == README, (
        "README.md's config reference differs from the schema: run `make docs`"
    )


def test_reference_names_every_key_and_stage() -> None:
    from pipeline.config import ClusterConfig, Config, InputConfig, OutputConfig

    text = schema_markdown()
    for model in (Config, InputConfig, OutputConfig, ClusterConfig):
        for key in model.model_fields:
            assert f"| `{key}` |" in text, key
    for name in REGISTRY:
        assert f"| `{name}` |" in text, name


def test_schema_command_prints_and_updates(tmp_path, cli) -> None:
    rc, out, _ = cli("schema")
    assert rc == 0 and out == schema_markdown()
    doc = tmp_path / "doc.md"
    doc.write_text(f"# title\n{REFERENCE_BEGIN}\nstale\n{REFERENCE_END}\nafter\n")
    rc, _, err = cli("schema", "--update", doc)
    assert rc == 0, err
    assert (
        doc.read_text()
        == f"# title\n{REFERENCE_BEGIN}\n{schema_markdown()}{REFERENCE_END}\nafter\n"
    )
    doc.write_text("no markers")
    rc, _, err = cli("schema", "--update", doc)
    assert rc == 1
    e = refused("schema", "--update", doc)
    assert isinstance(e, OutputError) and e.markers == (REFERENCE_BEGIN, REFERENCE_END)
    assert err == f"error: {e}\n"
    assert doc.read_text() == "no markers"


def test_makefile_has_docs_target() -> None:
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs:.*\n\t\$\(PY\) -m pipeline schema --update README\.md$", make, re.M)


def test_readme_sections() -> None:
    for heading in (
        "## Set up and run",
        "## Quick start",
        "## Using xarray data",
        "## Python API",
        "## Several GPUs, and an existing cluster",
        "## What the pipeline guarantees",
        "## Benchmarks",
        "## Configuration reference",
    ):
        assert f"\n{heading}\n" in README, heading
    assert "make run" in README and "make test" in README
    assert "dask cuda worker tcp://" in README and "--scheduler tcp://" in README


YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.S)


def test_readme_has_its_yaml_examples() -> None:
    # quick start, stores, HTTP query, xarray, hardly compresses, x- extension fields
    assert len(YAML_BLOCKS) == 6


@pytest.mark.parametrize("index", range(len(YAML_BLOCKS)))
def test_readme_yaml_examples_are_valid_configs(index: int) -> None:
    data = yaml.safe_load(YAML_BLOCKS[index].replace("...", "x"))
    data.setdefault("stages", [{"op": "square"}])
    parse_config(data, f"README.md yaml block {index}")


def section(heading: str) -> str:
    """README's section under ``## heading``, up to the next ``## ``."""
    start = README.index(f"\n## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


@pytest.mark.slow
def test_readme_xarray_workflow_and_python_api_run_as_written(tmp_path: Path) -> None:
    """The two sections' code, as written, in a fresh directory: the Dataset written with
    xarray, the config, `python -m pipeline run`, the result opened with xarray (compared here
    with the input: coordinates, attributes, values to the bit), then the Python API example."""
    xr = pytest.importorskip("xarray")
    import subprocess
    import sys

    from pipeline.ops.stages import apply_chain, plan_chain
    from tests.faultkit import env

    def python(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=tmp_path,
            env=env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    write, read, copy = blocks(section("Using xarray data"), "python")
    (config,) = blocks(section("Using xarray data"), "yaml")
    (api,) = blocks(section("Python API"), "python")
    (tmp_path / "xr.yaml").write_text(config)
    python("-c", write)
    python("-m", "pipeline", "run", "xr.yaml", "--progress", "none")
    shown = python("-c", read)
    assert "complete" in shown and "\nK\n" in shown
    python("-c", f"{read}\n{copy}")  # the output opened as shown, then copied as shown
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = xr.open_zarr(tmp_path / "data/xr/air.zarr").load()
        out = xr.open_zarr(tmp_path / "data/xr/air-out.zarr").load()
        copied = xr.open_zarr(tmp_path / "data/xr/air-copy.zarr").load()
    assert out["air"].dtype == copied["air"].dtype
    assert np.array_equal(out["air"].values.view(np.uint8), copied["air"].values.view(np.uint8))
    for name in ("time", "lat", "lon"):
        xr.testing.assert_identical(out[name], src[name])
    assert out.attrs == src.attrs
    chain = plan_chain(load_config(tmp_path / "xr.yaml").stage_specs(), src["air"].dtype)
    want = apply_chain(chain, src["air"].values)
    assert out["air"].dtype == want.dtype
    assert np.array_equal(out["air"].values.view(np.uint8), want.view(np.uint8))
    # what the section says of xarray's own arithmetic, written by to_zarr: the same values,
    # dtype, dimensions, coordinates and CF encoding; the attributes kept where it drops them
    v = src["air"] * 5
    v = v * v
    v = v + v
    v.to_dataset().to_zarr(tmp_path / "xarray.zarr", mode="w", consolidated=False)
    own = xr.open_zarr(tmp_path / "xarray.zarr", consolidated=False).load()
    assert out["air"].dtype == own["air"].dtype and out["air"].dims == own["air"].dims
    assert np.array_equal(out["air"].values.view(np.uint8), own["air"].values.view(np.uint8))
    for name in ("time", "lat", "lon"):
        xr.testing.assert_identical(out[name], own[name])
    assert np.isnan(out["air"].encoding["_FillValue"]) and np.isnan(
        own["air"].encoding["_FillValue"]
    )
    assert own["air"].attrs == {} and out["air"].attrs["units"] == src["air"].attrs["units"]
    # the record is JSON text, which netCDF holds (test_xarray writes the output to a netCDF
    # file): xarray's own check of what to_netcdf can write takes it, as the section says
    from xarray.backends.api import _validate_attrs  # what to_netcdf checks, before writing

    _validate_attrs(out, engine="netcdf4")
    assert json.loads(out["air"].attrs["pipeline"])["status"] == "complete"
    # the section's call, run as written: xarray's default netCDF engine is netCDF4 or scipy,
    # neither of which the dev extra installs, so a bare `out.to_netcdf(path)` had failed
    # ("cannot read or write netCDF files without netCDF4-python or scipy installed")
    readme = " ".join(README.split())
    call = re.search(r"`(out\.to_netcdf\([^`]*\))` writes the output with its record", readme)
    assert call, "the xarray section has no to_netcdf call"
    with contextlib.chdir(tmp_path):
        eval(call.group(1), {"out": out})  # the README's own line
    written = re.search(r'to_netcdf\("([^"]+)"', call.group(1))
    assert written, call.group(1)
    with xr.open_dataset(tmp_path / written.group(1), engine="h5netcdf") as back:
        assert json.loads(back["air"].attrs["pipeline"])["status"] == "complete"
        assert np.array_equal(back["air"].values, out["air"].values)
    (tmp_path / "api.py").write_text(api)
    printed = python("api.py")
    assert printed.startswith("complete ") and "already exists" in printed


def test_readme_says_plainly_that_integer_variables_are_widened() -> None:
    """A user comparing a Dataset output with xarray's own arithmetic finds the dtypes differ
    for integers: the xarray section says so, with the plan's own stage row for its example
    (int8 through ``* 3``, square, ``+ 1``: int32, where xarray keeps int8 and wraps) and the
    chains it says are refused, as the planner gives them."""
    from pipeline.errors import PlanError
    from pipeline.ops.stages import plan_chain

    text = " ".join(section("Using xarray data").split())
    bullet = re.search(r"- \*\*Integers\.\*\* (.*?) - \*\*", text)
    assert bullet, "the xarray section has no Integers item"
    said = bullet.group(1)

    def chain(dtype: str, *stages: dict) -> list:
        specs = parse_config(
            {"input": {"store": "in.zarr"}, "output": {"store": "out.zarr"}, "stages": stages},
            "test",
        ).stage_specs()
        return list(plan_chain(specs, np.dtype(dtype)))

    int8 = chain(
        "int8", {"op": "multiply", "factor": 3}, {"op": "square"}, {"op": "add", "value": 1}
    )
    assert f"`{'; '.join(s.describe() for s in int8)}`" in said
    assert f"written as {int8[-1].out_dtype}" in said and "stays int8 and wraps around" in said
    x = np.array([100], dtype=np.int8)  # what xarray's arithmetic does: NumPy's, in int8
    with np.errstate(over="ignore"):
        assert ((x * 3) ** 2 + 1).dtype == np.int8
    for dtype, stages in (
        ("int32", [{"op": "multiply", "factor": 3}, {"op": "square"}]),
        *(("int64", [s]) for s in ({"op": "square"}, {"op": "add"}, {"op": "add", "value": 1})),
        ("uint64", [{"op": "multiply", "factor": 2}]),
    ):
        with pytest.raises(PlanError, match="can overflow even 64-bit integers"):
            chain(dtype, *stages)
    assert "an int32 variable through `* 3` and square" in said
    assert "an int64 or uint64 one through nearly any integer stage" in said


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    load_config(path)


def test_design_covers_every_module() -> None:
    """Every module of the package, named by its path in the package (``store/shards.py``),
    and every subpackage (``store/``), is in DESIGN.md."""
    package = ROOT / "pipeline"
    design = (package / "DESIGN.md").read_text()
    for module in sorted(package.rglob("*.py")):
        name = module.relative_to(package).as_posix()
        if module.name == "__init__.py" and module.parent != package:
            name = f"{module.parent.relative_to(package).as_posix()}/"
        if module.name != "__main__.py":
            assert f"`{name}`" in design, f"DESIGN.md does not mention {name}"


def test_with_reference_needs_markers() -> None:
    for text in ("nothing here", f"only {REFERENCE_BEGIN}", f"only {REFERENCE_END}"):
        with pytest.raises(OutputError) as e:
            with_reference(text)
        assert e.value.markers == (REFERENCE_BEGIN, REFERENCE_END)


# --------------------------------------------------------------------------------------------
# Every file the documents name exists.

DOCS = {
    "README.md": ROOT / "README.md",
    "pipeline/DESIGN.md": ROOT / "pipeline" / "DESIGN.md",
    "benchmarks/RESULTS.md": ROOT / "benchmarks" / "RESULTS.md",
}


def named_modules(text: str) -> set[str]:
    """The Python files a Markdown text names: in code spans and link targets, and anywhere as
    a path under one of the repository's folders (code blocks too)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # their backticks pair wrong
    spans = [*re.findall(r"`([^`]+)`", prose), *re.findall(r"\]\(([^)\s]+)\)", prose)]
    found = {p for s in spans for p in re.findall(r"[\w./-]*\w\.py\b", s)}
    found |= set(re.findall(r"\b(?:pipeline|benchmarks|tests|scripts)/[\w./-]*\w\.py\b", text))
    return found


def resolves(path: str, doc: Path) -> bool:
    """Whether ``path`` is a file relative to the document's folder, the repository root, or
    the package (the documents name the package's modules by their path in it)."""
    return any((base / path).is_file() for base in (doc.parent, ROOT, ROOT / "pipeline"))


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_module_a_document_names_exists(name: str) -> None:
    doc = DOCS[name]
    text = doc.read_text()
    assert named_modules(text), "found no module names: the pattern is broken"
    missing = sorted(p for p in named_modules(text) if not resolves(p, doc))
    assert not missing, f"{name} names modules that do not exist: {missing}"


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_link_to_a_file_resolves(name: str) -> None:
    doc = DOCS[name]
    targets = re.findall(r"\]\(([^)\s]+)\)", doc.read_text())
    local = [t.split("#")[0] for t in targets if "://" not in t and not t.startswith("#")]
    missing = sorted(t for t in local if not (doc.parent / t).exists())
    assert not missing, f"{name} links to files that do not exist: {missing}"


def test_a_stale_module_name_fails_the_check(tmp_path: Path) -> None:
    """The check above catches the names of the old flat layout."""
    doc = tmp_path / "DESIGN.md"
    text = (
        "```\nmake\n```\n`plan.py` plans, `store/grid.py` and pipeline/storage.py, "
        "[x](benchmarks/bench.py)"
    )
    assert named_modules(text) == {
        "plan.py",
        "store/grid.py",
        "pipeline/storage.py",
        "benchmarks/bench.py",
    }
    assert [p for p in sorted(named_modules(text)) if not resolves(p, doc)] == [
        "pipeline/storage.py",
        "plan.py",
    ]


def _undocumented_fields(cls: type) -> list[str]:
    """The fields of the dataclass ``cls`` without a docstring on the line below them, and
    its public methods and properties without one."""
    import ast
    import inspect
    import textwrap

    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body  # type: ignore[attr-defined]
    fields = [
        node.target.id
        for node, below in zip(body, [*body[1:], None], strict=True)
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and not (
            isinstance(below, ast.Expr)
            and isinstance(below.value, ast.Constant)
            and isinstance(below.value.value, str)
        )
    ]
    methods = [
        f"{node.name}()"
        for node in body
        if isinstance(node, ast.FunctionDef)
        and not node.name.startswith("_")
        and ast.get_docstring(node) is None
    ]
    return fields + methods


@pytest.mark.parametrize(
    "where",
    [
        "pipeline.reporting.summary:Summary",  # pipeline.run's
        "pipeline.reporting.verify:VerifyResult",  # pipeline.verify's
        "pipeline.planning.plan:Plan",  # pipeline.plan's
        "pipeline.planning.memory:Memory",  # its p.memory
        "pipeline.store.arrays:ArrayInfo",  # its p.input and p.output
        "pipeline.ops.stages:BoundStage",  # its p.chain's
    ],
)
def test_every_field_of_what_the_api_returns_says_what_it_holds(where: str) -> None:
    """What pipeline.run, plan and verify return is read field by field (``s.task_time``,
    ``s.gbps_in``, ``p.memory.host_per_worker``): each field says what it holds and in what
    unit, each public method and property what it gives (h71u: Summary's ``task_time``,
    fractions that read as seconds, and its bytes and budgets, per worker or per process,
    said nothing, nor ``to_json()``, ``p.input``, ``p.memory.fits()``)."""
    import importlib

    module, _, name = where.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert _undocumented_fields(cls) == [], f"{where}: fields without a docstring"
