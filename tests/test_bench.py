"""The benchmark's CPU-only mode runs end to end and writes its results (never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick(script: str, out: Path) -> None:
    """Run ``scripts/SCRIPT --quick --out OUT`` as a user would, from another directory."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_quick_bench_writes_json_markdown_and_chart(tmp_path) -> None:
    out = tmp_path / "bench"
    quick("bench.py", out)
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


def test_quick_scaling_runs_every_workload_and_device_count(tmp_path) -> None:
    """`bench_scaling.py --quick`: CPU workers stand in for GPUs; every point is measured,
    outputs are checked against NumPy inside the script, and both workers take part."""
    out = tmp_path / "scaling"
    quick("bench_scaling.py", out)
    doc = json.loads((out / "scaling.json").read_text())
    seen = {(p["workload"], p["scaling"], p["devices"]) for p in doc["points"]}
    for workload in ("Zarr on /dev/shm", "host memory in and out"):
        for scaling in ("strong", "weak"):
            assert {(workload, scaling, 1), (workload, scaling, 2)} <= seen
    assert ("Zarr on /dev/shm", "joined", 2) in seen
    for p in doc["points"]:
        assert p["gbps"] and all(g > 0 for g in p["gbps"]), p
        if p["workload"] == "Zarr on /dev/shm":  # every worker computed blocks
            assert len(p["blocks_per_worker"]) == p["devices"], p
            assert all(b > 0 for b in p["blocks_per_worker"]), p
        if p["devices"] == 1:
            assert p["efficiency"] == 1.0
    md = (out / "scaling.md").read_text()
    assert "| Zarr on /dev/shm | joined | 2 |" in md


def test_quick_sweep_measures_every_block_size_and_thread_count(tmp_path) -> None:
    """`bench_sweep.py --quick`: every (block, threads) pair is run (outputs checked against
    NumPy inside the script); the in-memory workload at the first thread count."""
    out = tmp_path / "sweep"
    quick("bench_sweep.py", out)
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert {(r["block_mib"], r["threads"]) for r in rows} == {
        (b, t) for b in (0.5, 0.25) for t in (2, 1)
    }
    for r in rows:
        assert r["shm_gbps"] and all(g > 0 for g in r["shm_gbps"]), r
        assert r["blocks"] > 1 and r["timeline"]["occupancy"] > 0, r
        assert bool(r.get("memory_gbps")) == (r["threads"] == 2), r
    assert "| 0.5 MiB | 2 |" in (out / "sweep.md").read_text()


def test_shm_variants_vary_one_setting_at_a_time() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench
    finally:
        sys.path.pop(0)
    got = bench.shm_variants("8,12", "1,3")
    first = {"workers": 1, "threads": 8}
    assert got == [first, first | {"workers": 3}, first | {"threads": 12}]
    assert bench.shm_variants("8") == [first]
    assert bench.shm_variants("8", "1", "2x4") == [first, first | {"workers": 2, "threads": 4}]
    # each setting becomes the pipeline's own (validated) cluster section
    for v in got:
        c = bench.config(Path("in.zarr"), Path("out.zarr"), "gpu", cluster=bench.variant_cluster(v))
        assert (c.cluster.workers_per_gpu, c.cluster.threads_per_worker) == (
            v["workers"],
            v["threads"],
        )
