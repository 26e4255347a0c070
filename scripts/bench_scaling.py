"""`make bench-scaling`: the pipeline on 1, 2, 4, 8 GPUs of one host, strong and weak scaling.

For each GPU count n (the first n GPUs, ``CUDA_VISIBLE_DEVICES``), a ``LocalCUDACluster`` with one
worker per GPU runs the workloads of ``make bench``:

- Zarr on a memory-backed filesystem (``--shm``), the whole pipeline (read, decode, stages,
  encode, write) as ``pipeline run`` does it;
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
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]

import bench  # noqa: E402  (the benchmark's data, cluster and timing helpers)


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
            f"{p.median:7.2f} GB/s{eff}  blocks/worker {p.blocks_per_worker}",
            flush=True,
        )
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        doc = {"meta": self.meta, "points": [asdict(p) | {"median": p.median} for p in self.points]}
        (self.out / "scaling.json").write_text(json.dumps(doc, indent=1, default=str))

    def table(self) -> str:
        m = self.meta
        lines = [
            f"Measured {m.get('date', '?')} on {m.get('gpu', 'no GPU')}, {m.get('cpus')} CPUs; "
            f"{m.get('threads')} threads per worker; float32 random normal, zstd. GB/s of input "
            "bytes, median of the repetitions (range); efficiency = rate(n) / (n x rate(1)).",
            "",
            "| workload | scaling | devices | input GB | GB/s | range | per device | efficiency "
            "| blocks per worker |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for p in self.points:
            spread = f"{min(p.gbps):.2f}-{max(p.gbps):.2f}" if len(p.gbps) > 1 else "1 run"
            eff = "—" if p.efficiency is None else f"{p.efficiency:.0%}"
            lines.append(
                f"| {p.workload} | {p.scaling} | {p.devices} | {p.input_gb:.2f} | "
                f"{p.median:.2f} | {spread} | {p.median / p.devices:.2f} | {eff} | "
                f"{', '.join(map(str, p.blocks_per_worker)) or '—'} |"
            )
        notes = [p.note for p in self.points if p.note]
        return "\n".join(lines + [""] + [f"- {n}" for n in dict.fromkeys(notes)]) + "\n"


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
        shape, shards, chunks, _plain = bench.layout_for(gb)
        return shape, shards, chunks

    def get(self, gb: float) -> tuple[Path, float]:
        shape, shards, chunks = self.layout(gb)
        actual = float(shape[0] * shape[1] * shape[2] * 4 / 1e9)
        if actual not in self.paths:
            path = self.root / f"input-{actual:.3f}.zarr"
            bench.stamp(f"generating {shape} float32 ({actual:.2f} GB) in {path}")
            bench.generate(path, shape, shards, chunks, self.backend)
            self.paths[actual] = path
        return self.paths[actual], actual


def shm_runs(
    client: Any, src: Path, out: Path, backend: str, threads: int, workers: int, reps: int
) -> tuple[list[float], list[int]]:
    cluster = {"threads_per_worker": threads}
    if backend == "cpu":
        cluster["workers"] = workers
    cfg = bench.config(src, out, backend, cluster=cluster)
    gbps, last = bench.pipeline_runs(client, cfg, reps)
    bench.verify_output(src, out)
    shutil.rmtree(out, ignore_errors=True)
    return gbps, list(last.blocks_per_worker.values())


def timeline(client: Any, src: Path, out: Path, backend: str, threads: int) -> dict[str, float]:
    """One more run, with Dask's task stream recorded: where the compute phase's time went.

    ``span``: first task start to last task end; ``outside``: compute phase minus span (graph
    submission, results back); ``occupancy``: task time / (threads x span); ``ramp``: until every
    thread has started a task; ``tail``: from the first thread running out of work to the end."""
    from distributed import get_task_stream

    from pipeline.runner import RunOptions, run

    cfg = bench.config(src, out, backend, cluster={"threads_per_worker": threads})
    with get_task_stream(client) as ts:
        summary = run(cfg, RunOptions(progress="none", overwrite=True), client=client)
    shutil.rmtree(out, ignore_errors=True)
    spans = [
        (d["worker"], ss["start"], ss["stop"])
        for d in ts.data
        for ss in d["startstops"]
        if ss["action"] == "compute" and ss["stop"] - ss["start"] > 1e-3  # not key aliases
    ]
    if not spans:
        return {}
    start = min(a for _, a, _ in spans)
    stop = max(b for _, _, b in spans)
    slots = threads * len({w for w, _, _ in spans})
    firsts = sorted(a for _, a, _ in spans)[:slots]
    lasts = sorted(b for _, _, b in spans)[-slots:]
    return {
        "compute_s": summary.seconds["compute"],
        "span_s": stop - start,
        "outside_s": summary.seconds["compute"] - (stop - start),
        "occupancy": sum(b - a for _, a, b in spans) / (slots * (stop - start)),
        "ramp_s": firsts[-1] - start,
        "tail_s": stop - lasts[0],
        "mean_task_s": sum(b - a for _, a, b in spans) / len(spans),
    }


def memory_runs(client: Any, src: Path, backend: str, reps: int) -> tuple[list[float], list[int]]:
    gbps = bench.pipeline_memory(client, src, reps, pinned=backend == "gpu", backend=backend)
    return gbps, []


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

    return bench.timed_reps(once, reps, n * size)


def measure(args: argparse.Namespace, res: Scaling, inputs: Inputs, backend: str) -> None:
    for n in args.devices:
        bench.stamp(f"{n} {'GPU' if backend == 'gpu' else 'CPU worker'}(s)")
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
        ctx = (
            bench.local_cluster("gpu", args.threads, gpus=n)
            if backend == "gpu"
            else bench.local_cluster("cpu", args.threads, workers=n)
        )
        with ctx as client:
            for scaling, gb in (("strong", args.size_gb), ("weak", args.per_gpu_gb * n)):
                if not args.workloads & {"shm", "memory"}:
                    break
                src, actual = inputs.get(gb)
                if "shm" in args.workloads:
                    gbps, per_worker = shm_runs(
                        client, src, args.shm / "out.zarr", backend, args.threads, n, args.reps
                    )
                    point = Point("Zarr on /dev/shm", scaling, n, actual, gbps, per_worker)
                    point.timeline = timeline(
                        client, src, args.shm / "out.zarr", backend, args.threads
                    )
                    res.add(point)
                if "memory" in args.workloads:
                    gbps, _ = memory_runs(client, src, backend, args.reps)
                    res.add(Point("host memory in and out", scaling, n, actual, gbps))


def _env() -> dict[str, str]:
    """The environment of processes started here: this checkout's package importable."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ucx_available() -> bool:
    try:
        import distributed_ucxx  # noqa: F401
    except Exception:
        return False
    return True


@contextlib.contextmanager
def hand_started(backend: str, n: int, threads: int, protocol: str) -> Iterator[str]:
    """``dask scheduler`` and ``dask cuda worker`` (one worker per GPU; CPU: ``dask worker
    --nworkers n``) started as separate processes, as on a shared cluster; their address."""
    port = _free_port()
    addr = f"{protocol}://127.0.0.1:{port}"
    py = sys.executable
    env = {**_env(), "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(n)))}
    log = open(Path(tempfile.gettempdir()) / "pipeline-scaling-cluster.log", "w")  # noqa: SIM115
    sched = [py, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port)]
    sched += ["--no-dashboard", "--protocol", protocol]
    if backend == "gpu":
        worker = [py, "-m", "dask_cuda.cli", addr, "--nthreads", str(threads), "--no-dashboard"]
        if protocol != "tcp":
            worker += ["--protocol", protocol]
    else:
        worker = [py, "-m", "distributed.cli.dask_worker", addr, "--nworkers", str(n)]
        worker += ["--nthreads", str(threads), "--no-dashboard"]
    procs = [subprocess.Popen(sched, env=env, stdout=log, stderr=log)]
    try:
        from distributed import Client

        time.sleep(1.0)
        procs.append(subprocess.Popen(worker, env=env, stdout=log, stderr=log))
        t0 = time.monotonic()
        while True:
            try:
                with Client(addr, timeout=10) as c:
                    c.wait_for_workers(n, timeout=120)
                break
            except OSError:
                if time.monotonic() - t0 > 60:
                    raise
                time.sleep(0.5)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=60)
        log.close()


def joined(args: argparse.Namespace, res: Scaling, inputs: Inputs, backend: str) -> None:
    """`pipeline run --scheduler ADDRESS` on a hand-started cluster of every device."""
    n = max(args.devices)
    protocol = "ucxx" if backend == "gpu" and ucx_available() else "tcp"
    src, actual = inputs.get(args.size_gb)
    bench.stamp(f"hand-started scheduler, {n} workers, {protocol}")
    out = args.shm / "out-joined.zarr"
    cfg_path = args.shm / "joined.yaml"
    doc = {
        "input": {"store": str(src)},
        "output": {"store": str(out), "overwrite": True},
        "stages": bench.STAGES,
        "backend": backend,
    }
    cfg_path.write_text(json.dumps(doc))  # JSON is YAML
    gbps = []
    per_worker: list[int] = []
    with hand_started(backend, n, args.threads, protocol) as addr:
        for i in range(args.reps + 1):
            summary = args.shm / "joined-summary.json"
            cmd = [sys.executable, "-m", "pipeline", "run", str(cfg_path), "--scheduler", addr]
            cmd += ["--progress", "none", "--summary-json", str(summary)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
            if proc.returncode != 0:
                raise RuntimeError(f"pipeline run --scheduler failed: {proc.stderr[-2000:]}")
            s = json.loads(summary.read_text())
            if i:  # the first run warms the workers (kernels, staging buffers)
                gbps.append(s["gbps_in"])
                per_worker = list(s["blocks_per_worker"].values())
            assert s["workers"] == n, s["workers"]
    bench.verify_output(src, out)
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


def gpu_count() -> int:
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CPU workers as devices, toy sizes")
    p.add_argument("--out", type=Path, default=Path("results/scaling"))
    p.add_argument(
        "--devices", default="", help="comma list of device counts (default 1,2,4,8 ≤ N)"
    )
    p.add_argument("--size-gb", type=float, default=16.0, help="strong scaling input (GB)")
    p.add_argument("--per-gpu-gb", type=float, default=8.0, help="weak scaling input per GPU")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=8, help="threads per worker")
    p.add_argument("--shm", type=Path, default=Path("/dev/shm/pipeline-scaling"))
    p.add_argument("--workloads", default="ceilings,shm,memory,joined", help="comma list")
    args = p.parse_args(argv)
    backend = "cpu" if args.quick else "gpu"
    if args.quick:
        args.size_gb, args.per_gpu_gb, args.threads = 0.04, 0.02, 1
        args.reps = min(args.reps, 2)
        args.shm = Path(tempfile.mkdtemp(prefix="pipeline-scaling-"))
    have = 2 if args.quick else gpu_count()
    if args.devices:
        args.devices = [int(d) for d in args.devices.split(",")]
    else:
        args.devices = [d for d in (1, 2, 4, 8) if d <= have]
    if not args.devices or max(args.devices) > have:
        print(f"error: {have} GPU(s) visible; --devices asks for {args.devices}", file=sys.stderr)
        return 2
    args.workloads = set(args.workloads.split(","))
    meta = bench.machine() | {"threads": args.threads, "devices": args.devices, "backend": backend}
    res = Scaling(args.out, meta)
    shutil.rmtree(args.shm, ignore_errors=True)
    args.shm.mkdir(parents=True)
    try:
        inputs = Inputs(args.shm, backend, args.quick)
        measure(args, res, inputs, backend)
        if "joined" in args.workloads:
            joined(args, res, inputs, backend)
    finally:
        shutil.rmtree(args.shm, ignore_errors=True)
    md = res.table()
    (args.out / "scaling.md").write_text(md)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
