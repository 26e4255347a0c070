"""The benchmark's CPU-only mode runs end to end and writes its results (never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_writes_json_markdown_and_chart(tmp_path) -> None:
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "bench.json").read_text())
    names = {f["name"] for f in doc["figures"]}
    assert any(n.startswith("pipeline, CPU backend") for n in names)
    assert any(n.startswith("peer: CPU Dask") for n in names)
    assert any("zstd" in n for n in names)
    for f in doc["figures"]:
        assert f["gbps"] and all(g > 0 for g in f["gbps"]), f
    assert doc["meta"]["versions"]["dask"] != "absent"
    md = (out / "bench.md").read_text()
    assert "| pipeline | pipeline, CPU backend" in md
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
