"""Where a warm GPU run's time goes, task step by task step (issue 17; a GPU host only).

Every worker's task steps (read, decode, the copies, the kernels, the encode and its wait,
the writes) are wrapped to record their wall time and their thread's CPU time, on the clock
every process shares; the host's CPU use is sampled every 10 ms. Layouts are cluster
settings (``3x4``: 3 workers per GPU of 4 threads; ``3x4:nomps``: the same with
``cluster.mps: off``), each on a cluster of its own; waits are how a thread waits for the GPU
(``auto``: as the plan says; ``spin``, ``yield``, ``block``: the context's scheduling flag),
alternated on each cluster. The first run on each cluster (its warm-up) gives a line of its
own: each step inside every task thread's first block against the later ones. Per run, one
JSON line (each step's count, mean and summed wall
and CPU time, the share of the span it covers, the host's CPU use) to ``--out``, and the
medians at the end.

    python scripts/task_profile.py --size-gb 8 --workloads v2-blosc,synthetic \\
        --layouts 3x4,3x4:nomps --waits auto,block --reps 3 --out profile.jsonl

The figures of README's "Where a warm GPU run's time goes" and of ``cluster.mps`` came from
an earlier draft of it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import clusters, data, pipelines
from pipeline.running import runner
from pipeline.running.runner import RunOptions

#: The steps wrapped: (module, owner attribute or '' for the module, function, label).
STEPS = [
    ("pipeline.running.tasks", "", "read_block", "read_block"),
    ("pipeline.running.tasks", "", "apply_stages", "stages"),
    ("pipeline.running.tasks", "", "write_block", "write_block"),
    ("pipeline.running.tasks", "", "_decode_unit_on_host", "decode_unit (pool)"),
    ("pipeline.store.location", "Location", "read_into", "file read"),
    ("pipeline.store.location", "Location", "write", "file write"),
    ("pipeline.devices.gpu", "GpuBackend", "from_host", "to device"),
    ("pipeline.devices.gpu", "GpuBackend", "decode_frames", "GPU decode"),
    ("pipeline.devices.gpu", "GpuBackend", "count_nonfinite", "count nonfinite"),
    ("pipeline.devices.gpu", "GpuBackend", "encode_frames", "encode_frames"),
    ("pipeline.devices.gpu", "", "_packed_frames", "GPU encode and wait"),
]


def _events() -> list[tuple[Any, ...]]:
    """This process's event list (kept on an imported module, so every call finds it)."""
    from pipeline.running import tasks

    return tasks.__dict__.setdefault("_PROFILE_EVENTS", [])


def instrument() -> int:
    """Wrap :data:`STEPS` in this worker (once); its process id."""
    import importlib

    events = _events()
    for module, owner, name, label in STEPS:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        target = getattr(mod, owner) if owner else mod
        fn = getattr(target, name, None)
        if fn is None or getattr(fn, "_profiled", False):
            continue

        def wrapped(*a: Any, _fn: Any = fn, _label: str = label, **k: Any) -> Any:
            t0, c0 = time.monotonic(), time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                events.append(
                    (
                        _label,
                        os.getpid(),
                        t0,
                        time.monotonic(),
                        time.thread_time() - c0,
                        threading.get_ident(),
                    )
                )

        functools.update_wrapper(wrapped, fn)
        wrapped._profiled = True  # type: ignore[attr-defined]
        setattr(target, name, wrapped)
    with contextlib.suppress(ImportError):  # no CuPy: a CPU run
        _wrap_set_wait()
    return os.getpid()


def _wrap_set_wait() -> None:
    """The plan's wait mode replaced by ``PROFILE_WAIT`` where set (spin, yield, block)."""
    from pipeline.devices import gpu

    if getattr(gpu.set_wait, "_profiled", False):
        return
    plain = gpu.set_wait

    def set_wait(mode: Any) -> bool:
        want = os.environ.get("PROFILE_WAIT", "auto")
        if want == "auto":
            return plain(mode)
        import ctypes

        import cupy as cp

        cp.cuda.Device().synchronize()
        driver = ctypes.CDLL("libcuda.so.1")
        flags = ctypes.c_uint()
        driver.cuCtxGetFlags(ctypes.byref(flags))
        sched = {"spin": 1, "yield": 2, "block": 4}[want]
        return driver.cuCtxSetFlags(ctypes.c_uint((flags.value & ~7) | sched)) == 0

    set_wait._profiled = True  # type: ignore[attr-defined]
    gpu.set_wait = set_wait


def set_wait_mode(mode: str) -> None:
    os.environ["PROFILE_WAIT"] = mode


def take() -> list[tuple[Any, ...]]:
    events = _events()
    out = list(events)
    events.clear()
    return out


def _cpu_sampler(stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = list(map(int, f.readline().split()[1:]))
        return sum(v), v[3] + v[4]

    last = read()
    while not stop.wait(0.01):
        cur = read()
        total, idle = cur[0] - last[0], cur[1] - last[1]
        samples.append((time.monotonic(), 1 - idle / total if total else 0.0))
        last = cur


def first_blocks(events: list[tuple[Any, ...]]) -> dict[str, Any]:
    """A fresh cluster's first run: each step's mean wall ms inside each task thread's first
    block (its first ``read_block`` start to its first ``write_block`` end) against its later
    blocks, and the blocks' own mean wall ms. Steps run on the decoding pool's threads are
    left out (they belong to no one task thread)."""
    begins: dict[tuple[int, int], list[float]] = {}
    ends: dict[tuple[int, int], list[float]] = {}
    for label, pid, a, b, _, tid in events:
        if label == "read_block":
            begins.setdefault((pid, tid), []).append(a)
        elif label == "write_block":
            ends.setdefault((pid, tid), []).append(b)
    firsts: dict[tuple[int, int], tuple[float, float]] = {}
    blocks: dict[str, list[float]] = {"first": [], "later": []}
    for key, starts in begins.items():
        pairs = list(zip(sorted(starts), sorted(ends.get(key, [])), strict=False))
        for i, (a, b) in enumerate(pairs):
            blocks["first" if i == 0 else "later"].append(1e3 * (b - a))
        if pairs:
            firsts[key] = pairs[0]
    out: dict[str, Any] = {
        "threads": len(firsts),
        "block_ms": {k: round(statistics.mean(v), 1) for k, v in blocks.items() if v},
    }
    by: dict[str, dict[str, list[float]]] = {}
    for label, pid, a, b, _, tid in events:
        span = firsts.get((pid, tid))
        if span is None:
            continue
        which = "first" if span[0] <= a and b <= span[1] else "later"
        by.setdefault(label, {"first": [], "later": []})[which].append(1e3 * (b - a))
    for label, parts in sorted(by.items()):
        out[label] = {k: round(statistics.mean(v), 1) for k, v in parts.items() if v}
    return out


def _union(spans: list[tuple[float, float]]) -> float:
    total, start, end = 0.0, None, None
    for a, b in sorted(spans):
        if end is None or a > end:
            total += (end - start) if end is not None and start is not None else 0.0
            start, end = a, b
        else:
            end = max(end, b)
    return total + ((end - start) if end is not None and start is not None else 0.0)


def summarise(events: list[tuple[Any, ...]], cpu: list[tuple[float, float]]) -> dict[str, Any]:
    """Each step's count, mean wall ms, summed wall and CPU s, and share of the span covered."""
    # the span of the tasks (not the output's metadata written before them)
    tasks = [e for e in events if e[0] in ("read_block", "stages", "write_block")] or events
    t0, t1 = min(e[2] for e in tasks), max(e[3] for e in tasks)
    events = [e for e in events if t0 <= e[2] and e[3] <= t1]
    by: dict[str, list[tuple[float, float, float]]] = {}
    for label, _, a, b, c, *_ in events:
        by.setdefault(label, []).append((a, b, c))
    out: dict[str, Any] = {"span_s": round(t1 - t0, 3)}
    for label, rows in sorted(by.items()):
        walls = [b - a for a, b, _ in rows]
        out[label] = {
            "n": len(rows),
            "mean_ms": round(1e3 * statistics.mean(walls), 2),
            "wall_s": round(sum(walls), 3),
            "cpu_s": round(sum(c for _, _, c in rows), 3),
            "covers": round(_union([(a, b) for a, b, _ in rows]) / (t1 - t0), 3),
            # fill and drain: from the span's start to this step's first start, and from its
            # last end to the span's end
            "first_ms": round(1e3 * (min(a for a, _, _ in rows) - t0), 1),
            "tail_ms": round(1e3 * (t1 - max(b for _, b, _ in rows)), 1),
        }
    busy = [u for t, u in cpu if t0 <= t <= t1]
    out["host_cpu_busy"] = round(statistics.mean(busy), 3) if busy else None
    return out


#: (start, end) of each ``runner._compute`` call in this process, on time.monotonic's clock
_COMPUTE_SPANS: list[tuple[float, float]] = []


#: (start, end) of each ``Client.get`` call (the graph sent) in this process
_SUBMITS: list[tuple[float, float]] = []


class _Arrivals:
    """A worker plugin that records when each of a run's tasks reached the worker and when it
    began executing, as events ``("arrived"|"executing", pid, t, t, 0.0)``."""

    name = "task-profile-arrivals"

    def setup(self, worker: Any) -> None:
        pass

    def teardown(self, worker: Any) -> None:
        pass

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if not str(key).startswith("('pipeline-block"):
            return
        if finish == "executing":
            label = "executing"
        elif start == "released" and finish in ("waiting", "ready"):
            label = "arrived"
        else:
            return
        t = time.monotonic()
        _events().append((label, os.getpid(), t, t, 0.0, threading.get_ident()))


def _timed(owner: Any, name: str, spans: list[tuple[float, float]]) -> None:
    """``owner.name`` (a function) wrapped to append each call's (start, end) to ``spans``."""
    plain = getattr(owner, name)

    def timed(*a: Any, **k: Any) -> Any:
        t0 = time.monotonic()
        try:
            return plain(*a, **k)
        finally:
            spans.append((t0, time.monotonic()))

    setattr(owner, name, timed)


def _timed_submit() -> None:
    """``distributed.Client.get`` wrapped to record its span in :data:`_SUBMITS`."""
    import distributed

    _timed(distributed.Client, "get", _SUBMITS)


def _timed_compute() -> None:
    """``runner._compute`` wrapped to record its span in :data:`_COMPUTE_SPANS`."""
    _timed(runner, "_compute", _COMPUTE_SPANS)


def _profile(a: argparse.Namespace, wanted: list[str], size_gb: float) -> list[dict[str, Any]]:
    """One input size: its inputs written, each layout's cluster started, its runs profiled."""
    root = Path(a.root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    inputs: dict[str, data.Workload] = {}
    if {"v2-blosc", "v3-zstd"} & set(wanted):
        shape, chunks = data.field_shape(size_gb)
        values = data.make_field(shape, os.cpu_count() or 1)
        if "v2-blosc" in wanted:
            inputs["v2-blosc"] = data.write_v2_blosc(root, values, chunks, os.cpu_count() or 1)
        if "v3-zstd" in wanted:
            inputs["v3-zstd"] = data.write_v3_default(root, values, chunks, os.cpu_count() or 1)
        del values
    if "synthetic" in wanted:
        inputs["synthetic"] = data.write_synthetic(root, size_gb, False, a.backend)
    rows: list[dict[str, Any]] = []
    waits = a.waits.split(",")
    for layout in a.layouts.split(","):
        shape, _, flag = layout.partition(":")
        per_gpu, threads = (int(v) for v in shape.split("x"))
        section: dict[str, Any] = {"dashboard": "", "threads_per_worker": threads}
        # W is workers per GPU; a CPU check's cluster has W workers (cluster.workers_per_gpu
        # is refused with backend: cpu)
        section["workers_per_gpu" if a.backend != "cpu" else "workers"] = per_gpu
        if flag == "nomps":
            section["mps"] = "off"
        first = inputs[wanted[0]]
        doc = pipelines.config_doc(
            first.store, first.array, root / "o.zarr", a.backend, cluster=section
        )
        with clusters.pipeline_cluster(pipelines.plan(pipelines.config(doc)).cluster) as client:
            client.run(instrument)
            from distributed.diagnostics.plugin import WorkerPlugin

            class Arrivals(_Arrivals, WorkerPlugin):
                pass

            client.register_plugin(Arrivals())
            for key in wanted:
                w = inputs[key]
                cfg = pipelines.config(
                    pipelines.config_doc(
                        w.store, w.array, root / f"out-{key}.zarr", a.backend, cluster=section
                    )
                )
                opts = RunOptions(progress="none", overwrite=True)
                runner.run(cfg, opts, client=client)  # warm-up: the cluster's first run
                first = [e for got in client.run(take).values() for e in got]
                row0 = {"workload": key, "layout": layout, "rep": "first", "size_gb": size_gb}
                row0 |= first_blocks(first)
                print(json.dumps(row0))
                with a.out.open("a") as f:
                    f.write(json.dumps(row0) + "\n")
                for rep in range(a.reps):
                    for wait in waits if rep % 2 == 0 else waits[::-1]:
                        client.run(set_wait_mode, wait)
                        stop, cpu = threading.Event(), []
                        sampler = threading.Thread(target=_cpu_sampler, args=(stop, cpu))
                        sampler.start()
                        summary = runner.run(cfg, opts, client=client)
                        c0, c1 = _COMPUTE_SPANS[-1]
                        stop.set()
                        sampler.join()
                        events = [e for got in client.run(take).values() for e in got]
                        row = {
                            "workload": key,
                            "layout": layout,
                            "wait": wait,
                            "rep": rep,
                            "size_gb": size_gb,
                            "compute_s": round(summary.seconds["compute"], 3),
                            "gbps": round(summary.bytes_in / summary.seconds["compute"] / 1e9, 3),
                            **summarise(events, cpu),
                        }
                        # the compute phase around the tasks: to the first task's start, and
                        # from the last task's end (one clock: CLOCK_MONOTONIC on Linux)
                        t0 = min(e[2] for e in events if e[0] == "read_block")
                        t1 = max(e[3] for e in events if e[0] == "write_block")
                        row["before_tasks_ms"] = round(1e3 * (t0 - c0), 1)
                        row["after_tasks_ms"] = round(1e3 * (c1 - t1), 1)
                        s0, s1 = _SUBMITS[-1]
                        row["submit_called_ms"] = round(1e3 * (s0 - c0), 1)
                        row["submit_returned_ms"] = round(1e3 * (s1 - c0), 1)
                        for label in ("arrived", "executing"):
                            ts = [e[2] for e in events if e[0] == label]
                            if ts:
                                row[f"first_{label}_ms"] = round(1e3 * (min(ts) - c0), 1)
                        rows.append(row)
                        with a.out.open("a") as f:
                            f.write(json.dumps(row) + "\n")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", default="8", help="GB of input; several: 8,24 (one after another)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workloads", default="v2-blosc,synthetic")
    ap.add_argument("--layouts", default="3x4,3x4:nomps")
    ap.add_argument("--waits", default="auto")
    ap.add_argument("--backend", default="gpu", help="cpu: a quick check of the script")
    ap.add_argument("--root", default="/dev/shm/task-profile")
    ap.add_argument("--out", type=Path, default=Path("task-profile.jsonl"))
    a = ap.parse_args()
    wanted = a.workloads.split(",")
    _timed_compute()
    _timed_submit()
    rows: list[dict[str, Any]] = []
    for size_gb in (float(v) for v in a.size_gb.split(",")):
        rows += _profile(a, wanted, size_gb)
    for r0 in {(r["size_gb"], r["layout"], r["workload"], r["wait"]): r for r in rows}:
        got = [
            r["gbps"] for r in rows if (r["size_gb"], r["layout"], r["workload"], r["wait"]) == r0
        ]
        size, layout, key, wait = r0
        print(f"{size:6} {layout:12} {key:10} {wait:6} {statistics.median(got):.2f} GB/s {got}")


if __name__ == "__main__":
    main()
