"""What Dask and Zarr users expect around a run: plans before runs."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import make_array, write_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def small(tmp_path: Path) -> tuple[np.ndarray, Path]:
    """A 12-block float32 input and a config that runs it on 2 local worker processes."""
    x = np.random.default_rng(0).standard_normal((48, 64, 16)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 64, 16))
    return x, _config(tmp_path)


def _config(tmp_path: Path, **sections: Any) -> Path:
    """The config of the ``small`` input: blocks of one stored chunk (16 KiB) each."""
    sections.setdefault("chunking", {"target_bytes": 16 << 10})
    return write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **sections)


PLAN_ITEMS = ("input", "output", "output now", "stages", "backend", "workers", "chunking")


@pytest.mark.parametrize("how", ["plan", "dry-run"])
def test_plan_and_dry_run_compute_and_write_nothing(tmp_path, cli, how) -> None:
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={
            "store": str(tmp_path / "in.zarr"),
            "generate": {
                "shape": [40, 30],
                "chunks": [5, 30],
                "shards": [10, 30],
                "when_missing": True,
            },
        },
    )
    args = ("plan", cfg) if how == "plan" else ("run", cfg, "--dry-run")
    t0 = time.perf_counter()
    rc, out, err = cli(*args)
    assert rc == 0, err
    assert time.perf_counter() - t0 < 5  # no cluster is started
    assert not (tmp_path / "in.zarr").exists() and not (tmp_path / "out.zarr").exists()
    assert "nothing computed" in out
    rows = dict(re.findall(r"^  (\S+(?: \S+)?)\s{2,}(.*)$", out, re.M))
    assert set(PLAN_ITEMS) <= set(rows), out
    assert rows["input"].startswith(f"{tmp_path / 'in.zarr'}: [40, 30] float32, chunks [5, 30]")
    assert rows["output"].startswith(str(tmp_path / "out.zarr"))
    assert rows["output now"].startswith("absent")
    assert rows["stages"] == (
        "multiply(factor=5) float32 -> float32; square() float32 -> float32; "
        "add() float32 -> float32"
    )
    assert rows["backend"].startswith("cpu")
    assert rows["workers"] == "local cluster: 2 worker(s) x 1 thread(s)"
    assert re.match(r"\d+ task\(s\), one per block of \[\d+, 30\]", rows["chunking"])
    assert re.match(
        r".* per task; 1 in flight .* of the .* budget per worker \(fits\)", rows["host memory"]
    )
    assert "does not exist yet" in out  # the note: `run` would generate it


def test_plan_of_a_generated_input_matches_the_generated_layout(tmp_path, cli) -> None:
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={
            "store": str(tmp_path / "in.zarr"),
            "generate": {
                "shape": [30, 20, 7],
                "shards": [10, 20, 7],
                "chunks": [2, 20, 7],
                "when_missing": True,
            },
        },
    )
    from pipeline import plan
    from pipeline.config import load_config

    before = plan(load_config(cfg))
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    after = plan(load_config(cfg))
    assert before.input == after.input and before.block == after.block
    assert before.notes != after.notes  # only the "does not exist yet" note differs


def test_plan_says_what_run_would_do_with_an_existing_output(tmp_path, cli, small) -> None:
    _, cfg = small
    assert cli("run", cfg)[0] == 0
    rc, out, _ = cli("plan", cfg)
    assert rc == 0 and re.search(r"output now\s+complete: `run --overwrite` replaces it", out)
