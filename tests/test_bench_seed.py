"""benchmarks.seed: the quick mode runs anywhere and writes JSON, Markdown and a chart.

These tests check what the benchmark writes and that it checks results; never how fast anything ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import machine, seed

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.seed ARGS`` from ``cwd``, this checkout on PYTHONPATH."""
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.seed", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One ``--quick`` run into a temporary directory: (output directory, its JSON)."""
    out = tmp_path_factory.mktemp("seed") / "out"
    proc = run_script("--quick", "--out", str(out), cwd=out.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "correctness: OK" in proc.stdout
    return out, json.loads((out / "bench_seed.json").read_text())


def test_quick_writes_json_markdown_and_png(quick: tuple[Path, dict[str, Any]]) -> None:
    out, _ = quick
    assert (out / "bench_seed.md").read_text().startswith("# The seed article")
    assert (out / "bench_seed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_json_has_every_size_and_the_environment(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    assert result["schema"] == "bench_seed/1"
    assert result["mode"] == "quick"
    assert result["complete"] is True
    assert result["gpu_measured"] is False
    env = result["environment"]
    assert env["numpy"] == np.__version__
    assert env["cpu"]["cpu_count"] == os.cpu_count()
    assert [r["elements"] for r in result["sizes"]] == [10**4, 10**5, 10**6]
    for row in result["sizes"]:
        stats = row["numpy"]
        assert stats["reps"] >= 1 and len(stats["samples_s"]) == stats["reps"]
        assert stats["min_s"] <= stats["median_s"] <= stats["max_s"]
        assert "cupy" not in row and "fused" not in row  # the GPU columns were not measured
        assert row["speedup"] == {"cupy": None, "fused": None}
        assert row["ok"] is True
    article = result["article"]
    assert set(article["numpy"]["steps"]) == {"ones", "x *= 5", "three stages"}
    assert "cupy" not in article


def test_quick_checked_numpy_against_the_references(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    c = result["correctness"]
    assert c["ok"] is True and c["numpy_checked"] is True and c["gpu_checked"] is False
    assert c["failures"] == []
    for row in result["sizes"]:
        whats = [check["what"] for check in row["checks"]]
        assert any("closed form" in w for w in whats)
        assert any("apply_chain" in w for w in whats)
        assert all(check["equal"] for check in row["checks"])
        assert row["checked_elements_host"] == row["elements"]  # in full at these sizes


def test_quick_markdown_says_the_gpu_was_not_measured(quick: tuple[Path, dict[str, Any]]) -> None:
    out, _ = quick
    md = (out / "bench_seed.md").read_text()
    assert "not measured" in md
    assert "bit-identical" in md
    assert "714x" in md  # the article's claim sits beside the measurements


def test_compare_catches_one_ulp_and_unwritten_nan() -> None:
    want = np.linspace(-2.0, 2.0, 101)
    got = want.copy()
    got[7] = np.nextafter(got[7], np.inf)
    c = seed.compare("one ulp", got, want)
    assert c["equal"] is False and c["mismatches"] == 1
    assert c["first_mismatch"]["index"] == 7
    poisoned = np.full_like(want, np.nan)
    assert seed.compare("poison", poisoned, poisoned.copy())["equal"] is False
    assert seed.compare("same", want.copy(), want)["equal"] is True
    # to the bit, as verify compares: a -0.0 where NumPy gives 0.0 differs (array_equal took
    # it for the same)
    zeros = np.zeros(5)
    signed = zeros.copy()
    signed[3] = -0.0
    c = seed.compare("signed zero", signed, zeros)
    assert c["equal"] is False and c["mismatches"] == 1 and c["first_mismatch"]["index"] == 3


def test_full_mode_without_a_gpu_says_to_use_quick(tmp_path: Path) -> None:
    usable, _ = machine.cupy_status()
    if usable:
        pytest.skip("a GPU is here: the full mode would run")
    proc = run_script("--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "--quick" in proc.stderr  # an error line, on stderr (it had been on stdout)
    assert not (tmp_path / "out").exists()
