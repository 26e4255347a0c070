"""The documentation cannot drift: README's config reference is the generated one, the README
examples parse, and DESIGN.md covers every module."""

from __future__ import annotations

import re
from pathlib import Path

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
        "## Several GPUs, and an existing cluster",
        "## What the pipeline guarantees",
        "## Benchmarks",
        "## Configuration reference",
    ):
        assert f"\n{heading}\n" in README, heading
    assert "make run" in README and "make test" in README
    assert "dask cuda worker tcp://" in README and "--scheduler tcp://" in README


@pytest.mark.parametrize("index", [0, 1])
def test_readme_yaml_examples_are_valid_configs(index: int) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.S)
    assert len(blocks) == 2
    data = yaml.safe_load(blocks[index].replace("...", "x"))
    data.setdefault("stages", [{"op": "square"}])
    parse_config(data, f"README.md yaml block {index}")


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
