"""Worker layouts (workers per GPU x threads) on the field workloads, warm and cold (issue 17).

``warm``: each layout's cluster started once, then the compute phase of ``--reps`` runs after a
warm-up on the v2 Blosc and zarr-python 3 zstd inputs (16 MB chunks), at the plan's automatic
blocks. ``cold``: ``python -m pipeline run`` processes timed from start to exit (as a user counts
them), alternating the layouts. JSON lines to ``--out``; a GPU host only.

    python scripts/thread_layouts.py warm --size-gb 6 --layouts 3x4,3x8,4x6
    python scripts/thread_layouts.py cold --size-gb 8 --layouts 3x4,3x8

These gave the figures in ``threads_per_worker`` (pipeline/planning/plan.py) and the README.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import clusters, data, pipelines
from pipeline.devices.hardware import gpu_status


def _log(out: Path, **row: Any) -> None:
    print(json.dumps(row), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _layouts(text: str) -> list[tuple[int, int]]:
    pairs = [p.lower().split("x") for p in text.split(",") if p]
    return [(int(w), int(t)) for w, t in pairs]


def _section(per_gpu: int, threads: int) -> dict[str, Any]:
    return {"workers_per_gpu": per_gpu, "threads_per_worker": threads, "dashboard": ""}


def warm(a: argparse.Namespace, workloads: list[data.Workload]) -> None:
    for per_gpu, threads in _layouts(a.layouts):
        sec = _section(per_gpu, threads)
        docs = [
            pipelines.config_doc(w.store, w.array, a.root / f"out-{w.key}.zarr", "gpu", cluster=sec)
            for w in workloads
        ]
        plan = pipelines.plan(pipelines.config(docs[0]))
        with clusters.pipeline_cluster(plan.cluster) as client:
            for w, doc in zip(workloads, docs, strict=True):
                gbps, last = pipelines.warm_runs(client, pipelines.config(doc), reps=a.reps)
                _log(
                    a.out,
                    mode="warm",
                    layout=f"{per_gpu}x{threads}",
                    workload=w.key,
                    median_gbps=round(statistics.median(gbps), 2),
                    gbps=[round(g, 2) for g in gbps],
                    blocks=last.blocks_total,
                )


def cold(a: argparse.Namespace, workloads: list[data.Workload]) -> None:
    for rep in range(a.reps):
        for w in workloads:
            for per_gpu, threads in _layouts(a.layouts):
                doc = pipelines.config_doc(
                    w.store, w.array, a.root / "out.zarr", "gpu", cluster=_section(per_gpu, threads)
                )
                c = pipelines.command_run(doc, a.root / "work")
                s = c.summary["seconds"]
                _log(
                    a.out,
                    mode="cold",
                    rep=rep,
                    layout=f"{per_gpu}x{threads}",
                    workload=w.key,
                    wall_s=round(c.wall_s, 2),
                    compute_s=round(c.compute_s, 2),
                    plan_s=round(s["plan"], 2),
                    cluster_s=round(s["cluster"], 2),
                )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["warm", "cold"])
    p.add_argument("--size-gb", type=float, default=8.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--layouts", default="3x4,3x8")
    p.add_argument(
        "--root",
        type=Path,
        default=Path("/dev/shm"),
        help="where a temporary folder for the inputs is made (and removed at the end)",
    )
    p.add_argument("--out", type=Path, default=Path("results/thread-layouts.jsonl"))
    a = p.parse_args(argv)
    usable, why = gpu_status()
    if not usable:
        print(f"thread_layouts: needs a CUDA GPU ({why})", file=sys.stderr)
        return 2
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.root.mkdir(parents=True, exist_ok=True)
    given = a.root
    a.root = Path(tempfile.mkdtemp(prefix="thread-layouts-", dir=given))  # only this is removed
    try:
        shape, chunks = data.field_shape(a.size_gb)
        values = data.make_field(shape, 16)
        workloads = [
            data.write_v2_blosc(a.root, values, chunks, 16),
            data.write_v3_default(a.root, values, chunks, 16),
        ]
        del values
        (warm if a.mode == "warm" else cold)(a, workloads)
    finally:
        shutil.rmtree(a.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
