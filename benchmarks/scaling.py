"""`make bench-scaling`: the pipeline on 1, 2, 4, 8 GPUs of one host, strong and weak scaling.

For each GPU count n (the first n GPUs), the pipeline's own local cluster (``cluster.gpus``,
``--workers-per-gpu`` workers of ``--threads`` threads per GPU; one worker per GPU by default)
runs the synthetic workload of ``make bench``:

- Zarr on a memory-backed filesystem (``--shm``), the whole pipeline (read, decode, stages,
  encode, write) as ``pipeline run`` does it, every output compared with NumPy;
- input and result in host memory (page-locked chunks persisted on the workers).

Strong scaling keeps the input at ``--size-gb`` for every n; weak scaling gives each GPU
``--per-gpu-gb``. Efficiency is rate(n) / (n x rate(1)), both measured in this run. Blocks per
worker (from the run summary) show whether every GPU took part. Last, a scheduler started by
hand (``dask scheduler``) with one ``dask cuda worker`` per GPU, joined by ``pipeline run
--scheduler``: UCX when distributed-ucxx is installed, TCP otherwise.

Writes ``scaling.json`` and ``scaling.md`` under ``--out`` and prints the table last.
``--quick``: CPU worker processes stand in for GPUs (1 and 2), toy sizes, seconds (the tests
run it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import checks, clusters, data, machine, options, pipelines, stats, timing
from benchmarks.timing import Clock

CLOCK = Clock()
#: ``--shm`` by default (``--quick``: a new temporary directory where none is named).
SHM = Path("/dev/shm/pipeline-scaling")


@dataclass
class Point:
    """One workload at one device count."""

    workload: str
    scaling: str
    """strong | weak | joined"""
    devices: int
    input_gb: float
    gbps: list[float]
    blocks_per_worker: list[int] = field(default_factory=list)
    note: str = ""
    efficiency: float | None = None
    timeline: dict[str, float] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.gbps)


class Scaling:
    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out = out
        self.meta = meta
        self.points: list[Point] = []
        self.skipped: list[dict[str, str]] = []

    def skip(self, what: str, why: str) -> None:
        """Record (and say) that ``what`` was not measured, and why: the table says it."""
        self.skipped.append({"what": what, "why": why})
        print(f"  skipped: {what} ({why})", flush=True)
        self.save()

    def add(self, p: Point) -> None:
        base = next(
            (
                q
                for q in self.points
                if q.workload == p.workload and q.scaling == p.scaling and q.devices == 1
            ),
            None,
        )
        if p.devices == 1 and p.scaling != "joined":
            p.efficiency = 1.0
        elif base is not None:
            p.efficiency = p.median / (p.devices * base.median)
        self.points.append(p)
        eff = "" if p.efficiency is None else f"  efficiency {p.efficiency:.0%}"
        if p.timeline:
            eff += "  " + ", ".join(f"{k} {v:.3f}" for k, v in p.timeline.items())
        print(
            f"  {p.workload:22s} {p.scaling:6s} x{p.devices}  {p.input_gb:6.1f} GB "
            f"{stats.rate(p.median):>11s}{eff}  blocks/worker {p.blocks_per_worker}",
            flush=True,
        )
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        doc = {
            "meta": self.meta,
            "points": [asdict(p) | {"median": p.median} for p in self.points],
            "skipped": self.skipped,
        }
        (self.out / "scaling.json").write_text(json.dumps(doc, indent=1, default=str))

    def table(self) -> str:
        m = self.meta
        lines = [
            f"Measured {m.get('date', '?')} on {m.get('gpu', 'no GPU')}, {m.get('cpus')} CPUs; "
            f"{m.get('threads')} threads per worker; float32 random normal, zstd. Rates of input "
            "bytes, median of the repetitions (range); efficiency = rate(n) / (n x rate(1)).",
            "",
            "| workload | scaling | devices | input GB | rate (range) | per device | efficiency "
            "| blocks per worker |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for p in self.points:
            eff = "—" if p.efficiency is None else f"{p.efficiency:.0%}"
            lines.append(
                f"| {p.workload} | {p.scaling} | {p.devices} | {p.input_gb:.2f} | "
                f"{stats.rate_spread(p.gbps)} | {stats.rate(p.median / p.devices)} | {eff} | "
                f"{', '.join(map(str, p.blocks_per_worker)) or '—'} |"
            )
        notes = [p.note for p in self.points if p.note]
        notes += [f"skipped: {s['what']} ({s['why']})" for s in self.skipped]
        if not self.points:  # an empty table had said nothing of why
            notes.insert(0, f"no point was measured: {self._why_none()}")
        elif max(p.devices for p in self.points) == 1:
            notes.insert(
                0,
                "one device only: no scaling to show (efficiency compares n devices with 1); "
                "run it on a host with more GPUs",
            )
        return "\n".join(lines + [""] + [f"- {n}" for n in dict.fromkeys(notes)]) + "\n"

    def _why_none(self) -> str:
        """Why the table has no row: what was skipped, else what ``--workloads`` asked for."""
        if self.skipped:
            return "; ".join(f"{s['what']} skipped ({s['why']})" for s in self.skipped)
        asked = ",".join(self.meta.get("workloads", [])) or "none"
        return f"--workloads {asked} measured nothing on {self.meta.get('devices')} device(s)"


class Inputs:
    """Generated inputs by size, made once each (the same values for strong and weak runs)."""

    def __init__(self, root: Path, backend: str, quick: bool) -> None:
        self.root = root
        self.backend = backend
        self.quick = quick
        self.paths: dict[float, Path] = {}

    def layout(self, gb: float) -> tuple[list[int], list[int], list[int]]:
        if self.quick:  # 1 MiB planes of 16 x 16384 floats
            planes = max(8, round(gb * 1e9 / (1 << 20) / 8) * 8)
            return [planes, 16, 16384], [8, 16, 16384], [1, 16, 2048]
        return data.synthetic_shape(gb, quick=False)

    def get(self, gb: float) -> tuple[Path, float]:
        shape, shards, chunks = self.layout(gb)
        actual = float(shape[0] * shape[1] * shape[2] * 4 / 1e9)
        if actual not in self.paths:
            path = self.root / f"input-{actual:.3f}.zarr"
            CLOCK.stamp(f"generating {shape} float32 ({actual:.2f} GB) in {path}")
            pipelines.generate(path, shape, shards, chunks, self.backend)
            self.paths[actual] = path
        return self.paths[actual], actual


def cluster_section(args: argparse.Namespace, backend: str, n: int) -> dict[str, Any]:
    """The cluster of ``n`` devices: the first ``n`` GPUs with ``--workers-per-gpu`` workers
    of ``--threads`` threads each; CPU: ``n`` worker processes."""
    section: dict[str, Any] = {"threads_per_worker": args.threads, "dashboard": ""}
    if backend == "gpu":
        return section | {"gpus": list(range(n)), "workers_per_gpu": args.workers_per_gpu}
    return section | {"workers": n}


def shm_runs(
    client: Any, src: Path, out: Path, backend: str, section: dict[str, Any], reps: int
) -> tuple[list[float], list[int], dict[str, float]]:
    """GB/s of ``reps`` warm runs on ``src`` (output checked against NumPy), the blocks each
    worker computed, and one more run's timeline."""
    cfg = pipelines.config(pipelines.config_doc(src, "", out, backend, cluster=section))
    gbps, last = pipelines.warm_runs(client, cfg, reps)
    checks.require(checks.check_output(src, out))
    line = pipelines.timeline(client, cfg, section["threads_per_worker"])
    shutil.rmtree(out, ignore_errors=True)
    return gbps, list(last.blocks_per_worker.values()), line


def memory_runs(client: Any, src: Path, backend: str, reps: int) -> list[float]:
    """GB/s of the input in host memory (page-locked on the GPU) and the result back there."""
    return pipelines.memory_workload(client, src, reps, pinned=backend == "gpu", backend=backend)


def copies_at_once(n: int, reps: int, size: int = 1 << 30) -> list[float]:
    """GB/s into the GPUs (each way) while each of the first ``n`` GPUs copies ``size`` bytes
    in and ``size`` bytes out of page-locked host memory at once: the shared host side's
    ceiling (PCIe root, host memory) for the memory workload."""
    import cupy as cp
    import numpy as np

    bufs = []
    for i in range(n):
        with cp.cuda.Device(i):
            h_in = np.frombuffer(cp.cuda.alloc_pinned_memory(size), np.uint8, size)
            h_out = np.frombuffer(cp.cuda.alloc_pinned_memory(size), np.uint8, size)
            h_in[:] = 1
            h_out[:] = 1
            streams = (cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True))
            bufs.append(
                (i, cp.empty(size, cp.uint8), cp.empty(size, cp.uint8), h_in, h_out, streams)
            )

    def once() -> float:
        for i, *_ in bufs:
            cp.cuda.Device(i).synchronize()
        t = time.perf_counter()
        for i, d_in, d_out, h_in, h_out, (s1, s2) in bufs:
            with cp.cuda.Device(i):
                d_in.set(h_in, stream=s1)
                d_out.get(out=h_out, stream=s2)
        for i, *_ in bufs:
            cp.cuda.Device(i).synchronize()
        return time.perf_counter() - t

    return stats.rates(n * size, timing.wall_reps(once, reps))


def measure(args: argparse.Namespace, res: Scaling, inputs: Inputs, backend: str) -> None:
    """For each device count: the pinned-copy ceiling (GPU), then on one cluster of the
    pipeline's own the strong and weak points of each workload."""
    if backend != "gpu" and "ceilings" in args.workloads:
        res.skip("pinned-copy ceilings", "--quick: CPU workers, no GPU to copy to")
    for n in args.devices:
        CLOCK.stamp(f"{n} {'GPU' if backend == 'gpu' else 'CPU worker'}(s)")
        if backend == "gpu" and "ceilings" in args.workloads:
            res.add(
                Point(
                    "pinned copies in and out at once (ceiling)",
                    "weak",
                    n,
                    2 * n * (1 << 30) / 1e9,
                    copies_at_once(n, args.reps),
                    note="ceiling: each GPU copies 1 GiB in and 1 GiB out of page-locked host "
                    "memory at once; GB/s each way, all GPUs together",
                )
            )
        if not args.workloads & {"shm", "memory"}:
            continue
        section = cluster_section(args, backend, n)
        first, _ = inputs.get(args.size_gb)
        doc = pipelines.config_doc(first, "", args.shm / "out.zarr", backend, cluster=section)
        machine.wait_gpu_freed()
        cluster_plan = pipelines.plan(pipelines.config(doc)).cluster
        with clusters.pipeline_cluster(cluster_plan) as client:
            for scaling, gb in (("strong", args.size_gb), ("weak", args.per_gpu_gb * n)):
                src, actual = inputs.get(gb)
                if "shm" in args.workloads:
                    gbps, per_worker, line = shm_runs(
                        client, src, args.shm / "out.zarr", backend, section, args.reps
                    )
                    point = Point("Zarr on /dev/shm", scaling, n, actual, gbps, per_worker)
                    point.timeline = line
                    res.add(point)
                if "memory" in args.workloads:
                    gbps = memory_runs(client, src, backend, args.reps)
                    res.add(Point("host memory in and out", scaling, n, actual, gbps))


def joined(args: argparse.Namespace, res: Scaling, inputs: Inputs, backend: str) -> None:
    """`pipeline run --scheduler ADDRESS` on a hand-started cluster of every device."""
    n = max(args.devices)
    protocol = "ucxx" if backend == "gpu" and clusters.ucx_available() else "tcp"
    src, actual = inputs.get(args.size_gb)
    CLOCK.stamp(f"hand-started scheduler, {n} workers, {protocol}")
    out = args.shm / "out-joined.zarr"
    cfg_path = args.shm / "joined.yaml"
    doc = {
        "input": {"store": str(src)},
        "output": {"store": str(out), "overwrite": True},
        "stages": pipelines.STAGES,
        "backend": backend,
    }
    cfg_path.write_text(json.dumps(doc))  # JSON is YAML
    gbps = []
    per_worker: list[int] = []
    env = pipelines.env()
    with clusters.hand_started(backend, n, args.threads, protocol, env) as addr:
        for i in range(args.reps + 1):
            summary = args.shm / "joined-summary.json"
            cmd = [sys.executable, "-m", "pipeline", "run", str(cfg_path), "--scheduler", addr]
            cmd += ["--progress", "none", "--summary-json", str(summary)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"pipeline run --scheduler failed: {proc.stderr[-2000:]}")
            s = json.loads(summary.read_text())
            if i:  # the first run warms the workers (kernels, staging buffers)
                gbps.append(s["gbps_in"])
                per_worker = list(s["blocks_per_worker"].values())
            assert s["workers"] == n, s["workers"]
    checks.require(checks.check_output(src, out))
    shutil.rmtree(out, ignore_errors=True)
    note = (
        f"joined: `dask scheduler` + `dask {'cuda ' if backend == 'gpu' else ''}worker` "
        f"started by hand ({protocol}), `python -m pipeline run --scheduler`; its efficiency "
        f"is against the local cluster's 1-device strong run"
    )
    res.add(Point("Zarr on /dev/shm", "joined", n, actual, gbps, per_worker, note))
    base = next(
        (
            p
            for p in res.points
            if p.scaling == "strong" and p.devices == 1 and "Zarr" in p.workload
        ),
        None,
    )
    if base is not None:
        res.points[-1].efficiency = res.points[-1].median / (n * base.median)
        res.save()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CPU workers as devices, toy sizes")
    p.add_argument(
        "--out",
        type=options.out_dir,
        default=Path("results/scaling"),
        help="directory of scaling.json and scaling.md (made where missing)",
    )
    p.add_argument(
        "--devices",
        type=options.counts,
        default=[],
        help="comma list of device counts (default 1,2,4,8 ≤ N)",
    )
    p.add_argument(
        "--size-gb",
        type=options.gigabytes,
        help="strong scaling input (GB; default 16; --quick: a toy size of its own)",
    )
    p.add_argument(
        "--per-gpu-gb",
        type=options.gigabytes,
        help="weak scaling input per GPU (GB; default 8; --quick: a toy size of its own)",
    )
    p.add_argument("--reps", type=options.count, help="default 3, --quick 2")
    p.add_argument(
        "--threads", type=options.count, help="threads per worker (default 8, --quick 1)"
    )
    p.add_argument("--workers-per-gpu", type=options.count, default=1, help="GPU workers per GPU")
    p.add_argument(
        "--shm",
        type=Path,
        help=f"scratch directory (default {SHM}; --quick: a new temporary directory)",
    )
    p.add_argument(
        "--workloads",
        type=options.names(("ceilings", "shm", "memory", "joined")),
        default="ceilings,shm,memory,joined",
        help="comma list",
    )
    args = p.parse_args(argv)
    options.settle(
        p,
        args,
        {"size_gb": (16.0, 0.04), "per_gpu_gb": (8.0, 0.02), "threads": (8, 1), "reps": (3, 2)},
        sizes=("size_gb", "per_gpu_gb"),
    )
    if args.shm is not None or not args.quick:
        args.shm = args.shm or SHM
        data.check_scratch(args.shm, "scaling: --shm")
    backend = "cpu" if args.quick else "gpu"
    have = 2 if args.quick else machine.gpu_count()
    if not have:
        return options.needs_gpu("scaling", "none is visible")
    if not args.devices:
        args.devices = [d for d in (1, 2, 4, 8) if d <= have]
    if not args.devices or max(args.devices) > have:
        print(f"error: {have} GPU(s) visible; --devices asks for {args.devices}", file=sys.stderr)
        return 2
    args.workloads = set(args.workloads)
    if args.shm is None:  # --quick: a new directory of its own, removed after the run
        args.shm = data.temporary("pipeline-scaling-")
    meta = machine.describe(want_gpu=backend == "gpu") | {
        "threads": args.threads,
        "workers_per_gpu": args.workers_per_gpu,
        "devices": args.devices,
        "backend": backend,
        "workloads": sorted(args.workloads),
        "shm": str(args.shm),
    }
    res = Scaling(args.out, meta)
    data.scratch(args.shm, "scaling: --shm")
    try:
        inputs = Inputs(args.shm, backend, args.quick)
        measure(args, res, inputs, backend)
        if "joined" in args.workloads:
            joined(args, res, inputs, backend)
    finally:
        data.release(args.shm)
    md = res.table()
    args.out.mkdir(parents=True, exist_ok=True)  # where no point was measured, none saved
    (args.out / "scaling.md").write_text(md)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
