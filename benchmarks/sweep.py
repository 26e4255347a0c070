"""`make bench-sweep`: how the GPU defaults were chosen: block size and threads per GPU.

For each shard size of the input (``--planes``: 4 MiB planes per shard; a block is one shard,
the smallest block the layout allows) and each number of threads per GPU worker
(``--threads``), the ``make bench`` workloads on one GPU:

- Zarr on a memory-backed filesystem, the whole pipeline as ``pipeline run`` does it, with the
  task stream's timeline (thread occupancy, ramp, tail);
- input and result in host memory (page-locked chunks of one shard each), at the first
  number of threads.

A combination the plan refuses (it does not fit the device's memory) is shown as refused, with
the plan's reason. Writes ``sweep.json`` and ``sweep.md`` under ``--out`` and prints the table
last. ``--quick``: the CPU backend at toy sizes, seconds (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks import checks, clusters, data, machine, options, pipelines
from benchmarks.stats import rate_spread
from benchmarks.timing import Clock

CLOCK = Clock()
#: ``--shm`` by default (``--quick``: a new temporary directory where none is named).
SHM = Path("/dev/shm/pipeline-sweep")


def layout(size_gb: float, planes: int, quick: bool) -> tuple[list[int], list[int], list[int]]:
    if quick:  # 64 KiB planes of 16 x 1024 floats
        n = max(4 * planes, round(size_gb * 1e9 / (64 << 10) / planes) * planes)
        return [n, 16, 1024], [planes, 16, 1024], [1, 16, 256]
    shape, _shards, chunks = data.synthetic_shape(size_gb, quick=False)
    shape[0] = max(planes, shape[0] // planes * planes)
    return shape, [planes, *shape[1:]], chunks


def measure(args: argparse.Namespace, backend: str) -> list[dict[str, Any]]:
    """A row per (block size, threads): warm runs (output checked) and their timeline where
    ``--workloads`` asks for shm, the in-memory workload at the first thread count where it
    asks for memory (it had run the shm workload whatever was asked); a plan the pipeline
    refuses is a row too."""
    rows: list[dict[str, Any]] = []
    shm = "shm" in args.workloads
    threads_run = args.threads if shm else args.threads[:1]
    if threads_run != args.threads:
        print(
            f"  skipped: threads {','.join(map(str, args.threads[1:]))} (host memory is "
            "measured at the first --threads only; add shm to --workloads to run them)",
            flush=True,
        )
    for planes in args.planes:
        shape, shards, chunks = layout(args.size_gb, planes, args.quick)
        src = args.shm / f"input-{planes}.zarr"
        out = args.shm / "out.zarr"
        block_mib = planes * shape[1] * shape[2] * 4 / 2**20
        CLOCK.stamp(f"generating {shape} float32, shards {shards} ({block_mib:g} MiB)")
        pipelines.generate(src, shape, shards, chunks, backend)
        for threads in threads_run:
            row: dict[str, Any] = {"block_mib": block_mib, "threads": threads}
            rows.append(row)
            CLOCK.stamp(f"{block_mib:g} MiB blocks, {threads} threads")
            section = {"threads_per_worker": threads, "dashboard": ""}
            if backend == "gpu":
                section["workers_per_gpu"] = 1
            cfg = pipelines.config(pipelines.config_doc(src, "", out, backend, cluster=section))
            machine.wait_gpu_freed()
            try:
                cluster_plan = pipelines.plan(cfg).cluster
            except pipelines.Refused as e:
                row["refused"] = str(e)
                print(table([row], header=False), flush=True)
                save(args, rows)
                continue
            with clusters.pipeline_cluster(cluster_plan) as client:
                if shm:
                    try:
                        gbps, last = pipelines.warm_runs(client, cfg, args.reps)
                    except pipelines.Refused as e:
                        row["refused"] = str(e)
                        print(table([row], header=False), flush=True)
                        save(args, rows)
                        continue
                    checks.require(checks.check_output(src, out))
                    shutil.rmtree(out, ignore_errors=True)
                    row["shm_gbps"] = gbps
                    row["blocks"] = last.blocks_total
                    row["task_time"] = last.task_time
                    row["timeline"] = pipelines.timeline(client, cfg, threads)
                    shutil.rmtree(out, ignore_errors=True)
                if "memory" in args.workloads and threads == args.threads[0]:
                    row["memory_gbps"] = pipelines.memory_workload(
                        client,
                        src,
                        args.memory_reps,
                        pinned=backend == "gpu",
                        backend=backend,
                        block_bytes=int(block_mib * 2**20),
                    )
            print(table([row], header=False), flush=True)
            save(args, rows)
        shutil.rmtree(src, ignore_errors=True)
    return rows


def save(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Rows so far (a run cut short keeps what it measured)."""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps({"meta": args.meta, "rows": rows}, indent=1))


def table(rows: list[dict[str, Any]], header: bool = True) -> str:
    lines = (
        [
            "| block | threads | /dev/shm | host memory | occupancy | tail s | "
            "largest task-time share |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        if header
        else []
    )
    for r in rows:
        if "refused" in r:
            lines.append(
                f"| {r['block_mib']:g} MiB | {r['threads']} | refused: {r['refused']} | | | | |"
            )
            continue
        tl = r.get("timeline")
        tt = r.get("task_time") or {}
        share = max(tt, key=lambda k: tt[k]) if tt else "-"
        frac = f" {tt.get(share, 0) / max(sum(tt.values()), 1e-9):.0%}" if tt else ""
        lines.append(
            f"| {r['block_mib']:g} MiB | {r['threads']} | {rate_spread(r.get('shm_gbps', []))} | "
            f"{rate_spread(r.get('memory_gbps', []))} | "
            f"{'-' if tl is None else format(tl.get('occupancy', 0), '.2f')} | "
            f"{'-' if tl is None else format(tl.get('tail_s', 0), '.3f')} | {share}{frac} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CPU backend, toy sizes, seconds")
    p.add_argument(
        "--out",
        type=options.out_dir,
        default=Path("results/sweep"),
        help="directory of sweep.json and sweep.md (made where missing)",
    )
    p.add_argument(
        "--size-gb",
        type=options.gigabytes,
        help="input size (GB; default 16; --quick: a toy size of its own)",
    )
    p.add_argument(
        "--planes",
        type=options.counts,
        help="comma list: 4 MiB planes per shard (default 64,32,16; --quick: 8,4 of 64 KiB)",
    )
    p.add_argument(
        "--threads",
        type=options.counts,
        help="comma list: threads per GPU worker (default 8,12; --quick 2,1)",
    )
    p.add_argument("--reps", type=options.count, help="default 3, --quick 1")
    p.add_argument("--memory-reps", type=options.count, help="default 5, --quick 1")
    p.add_argument(
        "--workloads",
        type=options.names(("shm", "memory")),
        default="shm,memory",
        help="comma list: shm,memory (host memory at the first --threads only)",
    )
    p.add_argument(
        "--shm",
        type=Path,
        help=f"scratch directory (default {SHM}; --quick: a new temporary directory)",
    )
    args = p.parse_args(argv)
    # --quick: 64 KiB planes, and no more threads than a small machine has
    options.settle(
        p,
        args,
        {
            "size_gb": (16.0, 0.01),
            "planes": ([64, 32, 16], [8, 4]),
            "threads": ([8, 12], [2, 1]),
            "reps": (3, 1),
            "memory_reps": (5, 1),
        },
        sizes=("size_gb",),
    )
    if args.shm is not None or not args.quick:
        args.shm = args.shm or SHM
        data.check_scratch(args.shm, "sweep: --shm")
    backend = "cpu" if args.quick else "gpu"
    if not args.quick:
        usable, why = machine.gpu_status()
        if not usable:
            return options.needs_gpu("sweep", why)
    args.workloads = set(args.workloads)
    if args.shm is None:  # --quick: a new directory of its own, removed after the run
        args.shm = data.temporary("pipeline-sweep-")
    data.scratch(args.shm, "sweep: --shm")
    meta = args.meta = machine.describe(want_gpu=backend == "gpu") | {
        "size_gb": args.size_gb,
        "backend": backend,
        "shm": str(args.shm),
    }
    try:
        rows = measure(args, backend)
    finally:
        data.release(args.shm)
    save(args, rows)
    md = (
        f"Block size and threads per GPU ({meta.get('gpu', backend)}, {meta['date']}); "
        f"{args.size_gb:g} GB of float32; workloads {','.join(sorted(args.workloads))}; "
        f"medians (range) of {args.reps} runs, {args.memory_reps} for host memory\n\n"
        f"{table(rows)}\n"
    )
    (args.out / "sweep.md").write_text(md)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
