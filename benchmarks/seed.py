"""The seed article's measurements, honestly timed: NumPy against CuPy against our fused kernel.

The article ("Here's how to use CuPy to make Numpy 700x faster", 2019) timed, on 1e9 float64
elements, ``ones``, ``x *= 5`` and the three stages ``x *= 5; x *= x; x += x`` with a host clock
and no device synchronisation. This script repeats that, and then does it properly:

1. **The article, reproduced.** The article's script is run several times over
   ``ones((1000, 1000, 1000))`` (or a smaller cube, ``--max-size``). Every CuPy step is timed
   three ways in the same run: the article's way (host clock, no synchronisation: the time to
   *enqueue* the work), host clock after a device synchronize, and CUDA events. Our fused
   kernel (``pipeline.devices.gpu.chain_kernel``: the three stages in one pass) is timed beside
   it. Each step's bytes over its time give an implied bandwidth, set against the
   device-to-device copy bandwidth measured in the same run: an implied bandwidth far above
   the copy's is physically impossible, so that number did not time the computation.
2. **Speedup against size**, 1e4 to 1e9 elements: NumPy, CuPy (three separate operations) and
   the fused kernel on random float64 data, synchronised, median of several repetitions after
   warm-up, caches flushed before each repetition where the data would fit in them. The results
   must be bit-identical (the fused kernel is compiled without FMA contraction); the script
   fails, after writing its outputs, if they are not.

Outputs under ``--out`` (default ``results/seed``): ``bench_seed.json`` (every sample, the
hardware and library versions), ``bench_seed.md`` (tables) and ``bench_seed.png`` (speedup and
bandwidth against size). The short table is printed last.

``--quick`` runs NumPy only, 1e4 to 1e6 elements, in seconds on any CPU (the GPU columns say
"not measured"); the tests run it. The default mode needs a CUDA GPU and CuPy; CuPy is imported
only then.

    python -m benchmarks.seed                   # GPU host, full run (make bench-seed)
    python -m benchmarks.seed --quick --out /tmp/seed
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import machine, options, timing
from benchmarks.report import md_table
from benchmarks.stats import gbps, rate, ratio, summarize
from benchmarks.timing import Budget, DeviceTimes, cold_step, device_step, time_device, time_host

SCHEMA = "bench_seed/1"
DTYPE = np.dtype(np.float64)
ARTICLE_SHAPE = (1000, 1000, 1000)

#: What the article reported (i7-8700K, GTX 1080 Ti, CUDA 9.0), seconds.
ARTICLE: dict[str, Any] = {
    "hardware": "i7-8700K, GTX 1080 Ti (484 GB/s), 32 GB DDR4-3000, CUDA 9.0",
    "device_bandwidth_GBps": 484.0,
    "steps": {
        "ones": {"numpy_s": 1.68, "cupy_s": 0.16, "speedup": 10.5},
        "x *= 5": {"numpy_s": 0.507, "cupy_s": 0.000710, "speedup": 714.1},
        "three stages": {"numpy_s": 1.49, "cupy_s": 0.0922, "speedup": 16.16},
    },
}

#: Bytes each step must move through memory per element (float64): the fewest reads + writes.
BYTES_PER_ELEMENT = {
    "ones": 8,  # one write
    "x *= 5": 16,  # one read, one write
    "three stages": 48,  # three separate passes, each a read and a write
    "fused three stages": 16,  # one pass: read x, write y
}

#: At or below this many elements, results are compared in full on the host; above, on a sample.
FULL_HOST_CHECK = 10**7
SAMPLE = 1 << 20


# --------------------------------------------------------------------------------------------
# Formatting.


def fmt_time(s: float | None) -> str:
    """A duration with a unit that keeps three significant digits."""
    if s is None or not math.isfinite(s):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_rate(gbps: float | None) -> str:
    if gbps is None or not math.isfinite(gbps):
        return "n/a"
    return f"{gbps / 1000:.3g} TB/s" if gbps >= 1000 else rate(gbps)


def fmt_x(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.3g}x"


def median(stats: dict[str, Any] | None) -> float | None:
    """The median seconds of a :func:`~benchmarks.stats.summarize` result (None: no runs)."""
    return None if not stats or not stats.get("reps") else stats["median_s"]


def log(budget: Budget, msg: str) -> None:
    print(f"[{budget.elapsed():6.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# The workload, its references and the comparisons.


def three_stages(x: Any) -> Any:
    """The article's three stages, in place, exactly as it wrote them (NumPy or CuPy)."""
    x *= 5
    x *= x
    x += x
    return x


def host_references(x0: np.ndarray) -> dict[str, np.ndarray]:
    """Independent NumPy references for the three stages on ``x0`` (not modified): the closed
    form, and the pipeline's own NumPy evaluation of its planned chain."""
    from benchmarks import pipelines

    return {
        "closed form ((x*5)**2)*2": ((x0 * 5) ** 2) * 2,
        "pipeline.ops.stages.apply_chain": pipelines.apply_chain(DTYPE, x0),
    }


def compare(what: str, got: np.ndarray, want: np.ndarray) -> dict[str, Any]:
    """Bit-for-bit comparison, as the pipeline's ``verify`` compares (a -0.0 where NumPy gives
    0.0 differs: ``np.array_equal`` had taken -0.0 for 0.0), and no NaN at all: the inputs
    hold none, so a NaN is the poison of an unwritten output, which fails even where the
    reference is the same poison."""
    from benchmarks import pipelines

    equal = pipelines.bits_difference(want, got) is None and not bool(np.isnan(got).any())
    out: dict[str, Any] = {"what": what, "elements": int(want.size), "equal": equal}
    if not equal and got.shape == want.shape:
        bad = np.flatnonzero(pipelines.bits_unequal(want.astype(got.dtype), got))
        out["mismatches"] = int(bad.size)
        if bad.size:
            i = int(bad[0])
            out["first_mismatch"] = {"index": i, "got": float(got[i]), "want": float(want[i])}
    return out


def sample_indices(n: int, seed: int) -> np.ndarray:
    """Indices to check when the array is too big to copy back whole: head, tail, random."""
    if n <= FULL_HOST_CHECK:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    edge = np.arange(4096)
    return np.unique(np.concatenate([edge, rng.integers(0, n, SAMPLE), n - 1 - edge]))


# --------------------------------------------------------------------------------------------
# Cache flushing (METHOD.md: inputs that fit in a cache must not be timed from the cache).


class Flusher:
    """Evicts a cache by reading and writing a scratch buffer four times its size.

    ``applies(nbytes)``: data up to 16 times the cache is flushed before every repetition;
    above that, the data itself evicts all but a sliver of the cache.
    """

    def __init__(self, xp: Any, cache_bytes: int) -> None:
        self.xp = xp
        self.cache_bytes = cache_bytes
        self.nbytes = int(min(max(4 * cache_bytes, 64 << 20), 1 << 30))
        self._scratch: Any = None

    def applies(self, nbytes: int) -> bool:
        return nbytes <= 16 * self.cache_bytes

    def __call__(self) -> None:
        if self._scratch is None:
            self._scratch = self.xp.ones(self.nbytes // 8, dtype=DTYPE)
        self._scratch += 1.0

    def describe(self) -> dict[str, Any]:
        return {"cache_bytes": self.cache_bytes, "scratch_bytes": self.nbytes}


# --------------------------------------------------------------------------------------------
# The GPU: CuPy (imported only here), its facts, its copy bandwidth, the fused kernel.


@dataclass
class Gpu:
    cp: Any
    fused: Callable[[Any], Any] | None
    fused_note: str
    flusher: Flusher | None = None
    info: dict[str, Any] = field(default_factory=dict)
    copy: dict[str, Any] = field(default_factory=dict)

    def copy_gbps(self) -> float | None:
        return self.copy.get("GBps")

    def free(self) -> None:
        self.cp.get_default_memory_pool().free_all_blocks()


def open_gpu() -> Gpu:
    """Import CuPy (no CUDA context yet, so the first step times a cold start as the article's
    did) and the pipeline's fused kernel; without the pipeline's GPU dependencies, the fused
    column says why it was not measured."""
    import cupy as cp

    from benchmarks import pipelines

    try:
        kernel, note = pipelines.fused_kernel(DTYPE)
        return Gpu(cp, kernel, note)
    except Exception as e:  # nvCOMP or pydantic missing: measure the rest, say why not this
        return Gpu(cp, None, f"not measured: {type(e).__name__}: {e}")


def measure_copy(gpu: Gpu, n: int = 1 << 28, reps: int = 20) -> dict[str, Any]:
    """The device's memory ceiling: a device-to-device copy of ``n`` float64 (2 GiB by default),
    timed with events, counting bytes read plus bytes written."""
    cp = gpu.cp
    bufs = {"src": cp.random.RandomState(1).uniform(-1, 1, n)}
    bufs["dst"] = cp.full_like(bufs["src"], cp.nan)  # poisoned: a copy that did nothing fails
    kind = cp.cuda.runtime.memcpyDeviceToDevice
    stream = cp.cuda.get_current_stream().ptr
    nbytes = int(bufs["src"].nbytes)
    dst_ptr, src_ptr = bufs["dst"].data.ptr, bufs["src"].data.ptr

    def copy() -> None:
        cp.cuda.runtime.memcpyAsync(dst_ptr, src_ptr, nbytes, kind, stream)

    events = timing.device_reps(copy, reps, warmup=3)
    copied = bool(cp.array_equal(bufs["dst"], bufs["src"]))
    bufs.clear()
    gpu.free()
    if not copied:
        raise RuntimeError("device-to-device copy check failed")
    return {
        "bytes_copied": nbytes,
        "bytes_moved": 2 * nbytes,
        "events": summarize(events, 3),
        "GBps": 2 * nbytes / float(np.median(events)) / 1e9,
    }


# --------------------------------------------------------------------------------------------
# Part 1: the article's script, repeated.


def article_shape(max_size: int) -> tuple[int, ...]:
    """The article's cube, or the largest cube within ``max_size`` (a flat array otherwise)."""
    side = round(min(max_size, math.prod(ARTICLE_SHAPE)) ** (1 / 3))
    while side**3 > max_size:
        side -= 1
    return (side, side, side) if side > 1 else (max_size,)


def article_numpy(
    shape: tuple[int, ...], reps: int, budget: Budget, reserve_s: float
) -> dict[str, Any]:
    """NumPy: ``x = ones(shape); x *= 5; three stages`` per iteration; the first is warm-up."""
    steps: dict[str, list[float]] = {"ones": [], "x *= 5": [], "three stages": []}
    x: np.ndarray | None = None
    cut = False
    last_wall = None
    for i in range(1 + reps):
        if i > 1 and last_wall is not None and not budget.allows(last_wall, reserve_s):
            cut = True
            break
        x = None  # the previous array goes back to the OS, as in a fresh script
        t0 = time.perf_counter()
        x = np.ones(shape)
        t1 = time.perf_counter()
        x *= 5
        t2 = time.perf_counter()
        three_stages(x)
        t3 = time.perf_counter()
        for name, t in zip(steps, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            steps[name].append(t)
        last_wall = t3 - t0
    assert x is not None
    x = x.reshape(-1)
    idx = sample_indices(x.size, seed=11)
    want = np.full(idx.size, 1250.0)  # 1 -> 5 -> 25 -> 625 -> 1250
    check = compare("NumPy ones, x *= 5, three stages == 1250", x[idx], want)
    out = {name: summarize(s[1:], 1, cold_s=s[0]) for name, s in steps.items()}
    return {"steps": out, "cut_by_budget": cut, "checks": [check]}


def article_gpu(gpu: Gpu, shape: tuple[int, ...], reps: int) -> dict[str, Any]:
    """CuPy: the same script, each step timed three ways; plus the fused kernel on the same
    ``x`` (after ``x *= 5``) before the three separate operations. The first iteration is the
    cold one (CUDA context, first allocation, kernel compilation) and is reported apart."""
    cp = gpu.cp
    names = ["ones", "x *= 5", "three stages"] + (["fused three stages"] if gpu.fused else [])
    times = {name: DeviceTimes() for name in names}
    cold: dict[str, dict[str, float]] = {}
    box: dict[str, Any] = {}  # x, and the fused kernel's output y
    fused = gpu.fused

    def ones() -> None:
        box["x"] = cp.ones(shape)

    def times_five() -> None:
        box["x"] *= 5

    def fused_three() -> None:
        assert fused is not None
        box["y"] = fused(box["x"])

    def three() -> None:
        three_stages(box["x"])

    steps = {"ones": ones, "x *= 5": times_five, "fused three stages": fused_three}
    steps["three stages"] = three
    order = [n for n in ("ones", "x *= 5", "fused three stages", "three stages") if n in names]
    for i in range(1 + reps):
        box.clear()
        for name in order:
            if i == 0:
                cold[name], _ = cold_step(cp, steps[name])
            else:
                times[name].add(device_step(cp, steps[name])[0])
    x = box["x"]
    checks = [
        {
            "what": "CuPy three stages == 1250 everywhere (full, on the device)",
            "elements": int(x.size),
            "equal": bool(cp.all(x == 1250.0)),
        }
    ]
    if fused:
        checks.append(
            {
                "what": "fused == CuPy three stages (full, bitwise, on the device)",
                "elements": int(x.size),
                "equal": bool(cp.array_equal(box["y"], x)),
            }
        )
    box.clear()
    gpu.free()
    out = {name: times[name].summary(1, cold=cold[name]) for name in names}
    return {"steps": out, "checks": checks}


def article_section(
    gpu: Gpu | None, max_size: int, reps: int, budget: Budget, with_numpy: bool = True
) -> dict[str, Any]:
    """Part 1: both sides of the article's script, and what each CuPy number implies."""
    shape = article_shape(max_size)
    n = math.prod(shape)
    result: dict[str, Any] = {"shape": list(shape), "elements": n, "article": ARTICLE}
    if gpu is not None:
        log(budget, f"article, CuPy: shape {shape}, 1 cold + {2 * reps} iterations")
        result["cupy"] = article_gpu(gpu, shape, 2 * reps)
    if with_numpy:
        numpy_reps = min(reps, 3) if n >= 10**9 else reps
        log(budget, f"article, NumPy: shape {shape}, 1 warm-up + up to {numpy_reps} iterations")
        result["numpy"] = article_numpy(shape, numpy_reps, budget, reserve_s=budget.seconds / 2)
    result["implied"] = implied_bandwidth(result, gpu.copy_gbps() if gpu else None)
    return result


def implied_bandwidth(section: dict[str, Any], copy_gbps: float | None) -> dict[str, Any]:
    """For each step: bytes it must move, the bandwidth each timing implies, the floor the
    copy bandwidth sets, and the speedups the article's way and the honest way."""
    n = section["elements"]
    out: dict[str, Any] = {}
    for name, per_elem in BYTES_PER_ELEMENT.items():
        nbytes = per_elem * n
        cp_step = section.get("cupy", {}).get("steps", {}).get(name)
        np_name = "three stages" if name == "fused three stages" else name  # NumPy's 3 passes
        t_np = median(section.get("numpy", {}).get("steps", {}).get(np_name))
        row: dict[str, Any] = {"bytes": nbytes, "numpy_s": t_np}
        if copy_gbps:
            row["floor_s"] = nbytes / (copy_gbps * 1e9)
        if cp_step:
            for clock in ("enqueue", "sync", "events"):
                t = median(cp_step[clock])
                row[f"{clock}_s"] = t
                row[f"{clock}_GBps"] = gbps(nbytes, t)
                row[f"{clock}_vs_copy"] = ratio(gbps(nbytes, t), copy_gbps)
                row[f"speedup_{clock}"] = ratio(t_np, t)
        out[name] = row
    art = ARTICLE["steps"]["x *= 5"]
    out["article x *= 5"] = {
        "bytes": 16 * math.prod(ARTICLE_SHAPE),
        "enqueue_s": art["cupy_s"],
        "enqueue_GBps": gbps(16 * math.prod(ARTICLE_SHAPE), art["cupy_s"]),
        "device_GBps": ARTICLE["device_bandwidth_GBps"],
        "floor_s": 16 * math.prod(ARTICLE_SHAPE) / (ARTICLE["device_bandwidth_GBps"] * 1e9),
    }
    return out


# --------------------------------------------------------------------------------------------
# Part 2: speedup against size.


def sizes_up_to(max_size: int) -> list[int]:
    return [10**k for k in range(4, 10) if 10**k <= max_size]


def numpy_reps(n: int, reps: int) -> int:
    """NumPy repetitions: many where a run is short, at most 3 from 1e9 on (1-5 s each)."""
    if n <= 10**6:
        return 4 * reps
    return reps if n < 10**9 else min(reps, 3)


def gpu_reps(n: int, reps: int) -> int:
    """GPU repetitions: a run takes at most ~20 ms (1e9 elements, three passes), so many."""
    return 4 * reps


def size_row(
    n: int, gpu: Gpu | None, host_flush: Flusher, reps: int, budget: Budget
) -> dict[str, Any]:
    """One size: time every variant on the same random input, then check they agree."""
    seed = 1000 + int(math.log10(n))
    if gpu is not None:
        x0_dev = gpu.cp.random.RandomState(seed).uniform(-2.0, 2.0, n)
        x0 = x0_dev.get()
    else:
        x0_dev = None
        x0 = np.random.default_rng(seed).uniform(-2.0, 2.0, n)
    row: dict[str, Any] = {"elements": n, "bytes": n * DTYPE.itemsize}
    checks: list[dict[str, Any]] = []
    gpu_results: dict[str, Any] = {}
    if gpu is not None:
        row.update(time_gpu_variants(gpu, x0_dev, reps, gpu_results))
    row["numpy"], r_np = time_numpy(x0, host_flush, numpy_reps(n, reps), budget)
    idx = sample_indices(n, seed)
    for name, ref in host_references(x0[idx]).items():
        checks.append(compare(f"NumPy in place == {name}", r_np[idx], ref))
    if gpu is not None:
        checks += check_gpu(gpu, gpu_results, r_np, idx)
        del gpu_results
        checks += fresh_input_check(gpu, n, seed + 500, idx)
        del x0_dev
        gpu.free()
    row["checks"] = checks
    row["checked_elements_host"] = int(idx.size)
    row["ok"] = all(c["equal"] for c in checks)
    add_derived(row, gpu.copy_gbps() if gpu else None)
    return row


def time_numpy(
    x0: np.ndarray, flush: Flusher, reps: int, budget: Budget
) -> tuple[dict[str, Any], np.ndarray]:
    """NumPy's three stages in place on a fresh copy of ``x0`` each repetition."""
    work = np.empty_like(x0)
    flushed = flush.applies(x0.nbytes)

    def prepare() -> None:
        np.copyto(work, x0)
        if flushed:
            flush()

    warmup = 1 if x0.size < 10**8 else 0  # no compilation to warm; big buffers are touched
    samples, cut = time_host(lambda: three_stages(work), prepare, reps, warmup, budget, 5.0)
    stats = summarize(samples, warmup, flushed=flushed, cut_by_budget=cut, planned_reps=reps)
    return stats, work


def time_gpu_variants(gpu: Gpu, x0: Any, reps: int, results: dict[str, Any]) -> dict[str, Any]:
    """CuPy's three separate operations (in place, on a fresh copy) and the fused kernel."""
    cp = gpu.cp
    n = x0.size
    flush = gpu.flusher
    flushed = bool(flush and flush.applies(x0.nbytes))
    work = cp.empty_like(x0)

    def prepare_copy() -> None:
        work[...] = x0
        if flushed and flush:
            flush()

    def prepare_fused() -> None:
        if flushed and flush:
            flush()

    out: dict[str, Any] = {}
    k = gpu_reps(n, reps)
    times, _ = time_device(cp, lambda: three_stages(work), prepare_copy, k, warmup=2)
    out["cupy"] = times.summary(2, flushed=flushed)
    results["cupy"] = work
    if gpu.fused:
        fused = gpu.fused
        times, y = time_device(cp, lambda: fused(x0), prepare_fused, k, warmup=2)
        out["fused"] = times.summary(2, flushed=flushed)
        results["fused"] = y
    else:
        out["fused"] = None
    return out


def check_gpu(
    gpu: Gpu, results: dict[str, Any], r_np: np.ndarray, idx: np.ndarray
) -> list[dict[str, Any]]:
    """The timed outputs: CuPy against the fused kernel in full on the device, and both against
    NumPy on the host (in full up to FULL_HOST_CHECK elements, on a sample above)."""
    cp = gpu.cp
    checks = []
    r_cp = results["cupy"]
    idx_dev = cp.asarray(idx)
    checks.append(compare("CuPy 3 ops == NumPy", r_cp[idx_dev].get(), r_np[idx]))
    if "fused" in results:
        y = results["fused"]
        checks.append(compare("fused == NumPy", y[idx_dev].get(), r_np[idx]))
        equal = bool(cp.array_equal(y, r_cp))
        checks.append(
            {"what": "fused == CuPy 3 ops (device, full)", "elements": int(y.size), "equal": equal}
        )
    return checks


def fresh_input_check(gpu: Gpu, n: int, seed: int, idx: np.ndarray) -> list[dict[str, Any]]:
    """METHOD.md: fresh random input, output memory poisoned with NaN first, so a kernel that
    skips elements (or returns a stale buffer) cannot pass."""
    cp = gpu.cp
    x1 = cp.random.RandomState(seed).uniform(-2.0, 2.0, n)
    ref = host_references(x1[cp.asarray(idx)].get())["closed form ((x*5)**2)*2"]
    w1 = x1.copy()
    three_stages(w1)
    checks = [compare("fresh input: CuPy 3 ops == NumPy", w1[cp.asarray(idx)].get(), ref)]
    if gpu.fused:
        poison = cp.full(n, cp.nan)  # the pool hands this block to the kernel's output next
        del poison
        y1 = gpu.fused(x1)
        checks.append(compare("fresh input: fused == NumPy", y1[cp.asarray(idx)].get(), ref))
        checks.append(
            {
                "what": "fresh input: fused == CuPy 3 ops (device, full)",
                "elements": n,
                "equal": bool(cp.array_equal(y1, w1)),
            }
        )
        del y1
    del x1, w1
    return checks


def add_derived(row: dict[str, Any], copy_gbps: float | None) -> None:
    """Speedups over NumPy (medians, synchronised) and achieved bandwidth of each variant."""
    n = row["elements"]
    t_np = median(row["numpy"])
    moved = {"numpy": 48 * n, "cupy": 48 * n, "fused": 16 * n}
    times = {
        "numpy": t_np,
        "cupy": median((row.get("cupy") or {}).get("sync")),
        "fused": median((row.get("fused") or {}).get("sync")),
    }
    row["speedup"] = {k: ratio(t_np, times[k]) for k in ("cupy", "fused")}
    row["achieved_GBps"] = {k: gbps(moved[k], t) for k, t in times.items()}
    row["bytes_moved"] = moved
    if copy_gbps:
        row["floor_s"] = {k: moved[k] / (copy_gbps * 1e9) for k in ("cupy", "fused")}


METHOD = {
    "numpy": "perf_counter around the in-place operations; input restored (untimed) before "
    "each repetition; caches flushed (untimed) where the data fits 16 times in the LLC",
    "cupy_enqueue": "perf_counter around the call without synchronising: what the article "
    "measured, the time to enqueue the kernels",
    "cupy_sync": "perf_counter from before the call to after cudaDeviceSynchronize (the "
    "device idle before the call; the span also holds one event record, a few µs); used for "
    "every speedup",
    "cupy_events": "CUDA events recorded around the call on the current stream (the copy "
    "ceiling: cupyx.profiler.benchmark)",
    "warmup": "GPU: first 2 runs per size (compilation, allocation) untimed, the article "
    "section's cold first iteration reported apart; NumPy: 1 run below 1e8 elements",
    "statistics": "median, min and max over the repetitions; every sample in the JSON",
    "check": "bit-identical results: NumPy in place against two references; CuPy and the "
    "fused kernel against NumPy (full up to 1e7 elements, a sample of ~1e6 above) and "
    "against each other (full, on the device); a second, fresh input with the fused "
    "output's memory poisoned with NaN",
    "bandwidth": "bytes the variant must move (three passes: 48 B/element; fused: 16) over "
    "its median time; the ceiling is a device-to-device copy (read + write) in the same run",
}


# --------------------------------------------------------------------------------------------
# Outputs.


NOT_MEASURED = "not measured"


def stats_cell(stats: dict[str, Any] | None) -> str:
    if not stats or not stats.get("reps"):
        return NOT_MEASURED
    return (
        f"{fmt_time(stats['median_s'])} ({fmt_time(stats['min_s'])}–"
        f"{fmt_time(stats['max_s'])}, n={stats['reps']})"
    )


def article_markdown(sec: dict[str, Any]) -> str:
    steps = ["ones", "x *= 5", "three stages", "fused three stages"]
    cp = sec.get("cupy", {}).get("steps", {})
    npy = sec.get("numpy", {}).get("steps", {})
    rows = []
    for name in steps:
        art = ARTICLE["steps"].get(name, {})
        c = cp.get(name)
        rows.append(
            [
                name,
                fmt_time(art.get("numpy_s")),
                fmt_time(art.get("cupy_s")),
                "(NumPy's three stages)" if "fused" in name else stats_cell(npy.get(name)),
                stats_cell(c["enqueue"]) if c else NOT_MEASURED,
                stats_cell(c["sync"]) if c else NOT_MEASURED,
                stats_cell(c["events"]) if c else NOT_MEASURED,
                fmt_time(c["cold"]["sync_s"]) if c else NOT_MEASURED,
            ]
        )
    times = md_table(
        [
            "step",
            "article NumPy",
            "article CuPy",
            "NumPy",
            "CuPy, no sync (article's way)",
            "CuPy, synchronised",
            "CuPy, events",
            "CuPy first call (cold, synchronised)",
        ],
        rows,
    )
    imp = sec["implied"]
    rows = []
    for name in steps:
        r = imp[name]
        rows.append(
            [
                name,
                f"{r['bytes'] / 1e9:.3g} GB",
                fmt_x(r.get("speedup_enqueue")),
                fmt_x(r.get("speedup_sync")),
                fmt_rate(r.get("enqueue_GBps")),
                fmt_rate(r.get("sync_GBps")),
                fmt_x(r.get("sync_vs_copy")),
                fmt_time(r.get("floor_s")),
            ]
        )
    art = imp["article x *= 5"]
    rows.append(
        [
            "article's x *= 5 (1080 Ti)",
            f"{art['bytes'] / 1e9:.3g} GB",
            fmt_x(ARTICLE["steps"]["x *= 5"]["speedup"]),
            "n/a",
            fmt_rate(art["enqueue_GBps"]),
            "n/a",
            f"card: {fmt_rate(art['device_GBps'])}",
            fmt_time(art["floor_s"]),
        ]
    )
    bw = md_table(
        [
            "step",
            "bytes moved",
            "speedup, article's way",
            "speedup, synchronised",
            "implied bandwidth, no sync",
            "bandwidth, synchronised",
            "synchronised / copy",
            "floor at copy bandwidth",
        ],
        rows,
    )
    return times + "\n\n" + bw


def sizes_markdown(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        cupy = r.get("cupy")
        fused = r.get("fused")
        bw = r["achieved_GBps"]
        out.append(
            [
                f"{r['elements']:.0e}",
                stats_cell(r["numpy"]),
                stats_cell(cupy["sync"]) if cupy else NOT_MEASURED,
                stats_cell(fused["sync"]) if fused else NOT_MEASURED,
                fmt_x(r["speedup"]["cupy"]),
                fmt_x(r["speedup"]["fused"]),
                " / ".join(fmt_rate(bw[k]) for k in ("numpy", "cupy", "fused")),
                "bit-identical" if r["ok"] else "MISMATCH",
            ]
        )
    return md_table(
        [
            "elements",
            "NumPy",
            "CuPy, 3 ops",
            "fused kernel",
            "speedup CuPy",
            "speedup fused",
            "achieved bandwidth NumPy / CuPy / fused",
            "check",
        ],
        out,
    )


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    env = result["environment"]
    gpu = env.get("gpu") or {}
    note = result["gpu_note"]
    copy = result.get("copy") or {}
    lines = [
        "# The seed article's measurements, honestly synchronised",
        "",
        f"Mode: **{result['mode']}**. CPU: {env['cpu']['model']} ({env['cpu']['cpu_count']} "
        f"CPUs; NumPy uses one). GPU: {gpu.get('name', 'none')} ({note})"
        + (
            f", driver {gpu.get('nvidia_smi', {}).get('driver_version', '?')}, "
            f"CUDA runtime {gpu.get('cuda_runtime')}, CuPy {gpu.get('cupy')}"
            if gpu
            else ""
        )
        + f". NumPy {env['numpy']}, Python {env['python']}.",
        "",
        f"Device-to-device copy (read + write): {fmt_rate(copy.get('GBps'))}"
        + (
            f" (datasheet lead: {fmt_rate(gpu['datasheet_GBps'])})"
            if "datasheet_GBps" in gpu
            else ""
        ),
        "",
        f"Fused kernel: {result['fused_note']}",
        "",
        f"## 1. The article's script, shape {tuple(result['article']['shape'])}",
        "",
        article_markdown(result["article"]),
        "",
        "## 2. Speedup against size (three stages, float64, synchronised, medians)",
        "",
        sizes_markdown(result["sizes"]),
        "",
        *(
            ["### What the article's 714x measured", "", *verdict(result), ""]
            if verdict(result)
            else []
        ),
        f"Correctness: **{'all bit-identical' if result['correctness']['ok'] else 'FAILED'}** "
        f"({result['correctness']['checks']} checks).",
        "",
        "## Method",
        "",
    ]
    lines += [f"- **{k}**: {v}" for k, v in result["method"].items()]
    path.write_text("\n".join(lines) + "\n")


def write_chart(path: Path, result: dict[str, Any]) -> None:
    """Speedup over NumPy against size (left) and achieved bandwidth against size (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["sizes"]
    ns = [r["elements"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    labels = {"numpy": "NumPy (1 core)", "cupy": "CuPy, 3 ops", "fused": "fused kernel"}
    colors = {"numpy": "tab:blue", "cupy": "tab:orange", "fused": "tab:green"}
    plotted = False
    for key in ("cupy", "fused"):
        pts = [(n, r["speedup"][key]) for n, r in zip(ns, rows, strict=True) if r["speedup"][key]]
        if pts:
            left.plot(*zip(*pts, strict=True), "o-", label=labels[key], color=colors[key])
            plotted = True
    left.axhline(1.0, color="grey", lw=1, ls="--", label="NumPy parity")
    if not plotted:
        left.text(0.5, 0.6, f"GPU {result['gpu_note']}", ha="center", transform=left.transAxes)
        left.set_xlim(min(ns) / 2, max(ns) * 2)
    left.set(xscale="log", yscale="log", xlabel="elements (float64)", ylabel="speedup over NumPy")
    left.set_title("three stages, synchronised, median")
    for key in ("numpy", "cupy", "fused"):
        pts = [(n, r["achieved_GBps"][key]) for n, r in zip(ns, rows, strict=True)]
        pts = [(n, v) for n, v in pts if v]
        if pts:
            right.plot(*zip(*pts, strict=True), "o-", label=labels[key], color=colors[key])
    copy = (result.get("copy") or {}).get("GBps")
    if copy:
        right.axhline(copy, color="black", lw=1, ls=":", label="device copy ceiling")
    right.set(xscale="log", yscale="log", xlabel="elements (float64)", ylabel="GB/s")
    right.set_title("achieved bandwidth (bytes the variant must move / time)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    gpu = (result["environment"].get("gpu") or {}).get("name", "no GPU")
    fig.suptitle(f"{gpu} vs {result['environment']['cpu']['model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: Path, result: dict[str, Any], tables: bool = True) -> None:
    """The JSON always (partial while running or after a crash); Markdown and chart at the end."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_seed.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    if tables:
        write_markdown(out / "bench_seed.md", result)
        write_chart(out / "bench_seed.png", result)


def verdict(result: dict[str, Any]) -> list[str]:
    """What the article's 714x measured, in this run's numbers (empty without a GPU)."""
    row = result["article"]["implied"]["x *= 5"]
    copy = (result.get("copy") or {}).get("GBps")
    if "enqueue_s" not in row or not copy:
        return []
    art = result["article"]["implied"]["article x *= 5"]
    ratio_copy = row["enqueue_vs_copy"]
    judgement = (
        "Impossible: that number is the time to enqueue the kernel, not to run it."
        if ratio_copy > 1.5
        else "Not above what memory allows at this size, so this run cannot tell launch from work."
    )
    return [
        f"x *= 5 on {result['article']['elements']:.0e} float64 moves {row['bytes'] / 1e9:.3g} GB. "
        f"Timed the article's way (no synchronisation) it took {fmt_time(row['enqueue_s'])}, "
        f"which would mean {fmt_rate(row['enqueue_GBps'])}: {ratio_copy:.3g}x the "
        f"{fmt_rate(copy)} this GPU's device-to-device copy reaches. {judgement}",
        f"Synchronised, it took {fmt_time(row['sync_s'])} ({fmt_rate(row['sync_GBps'])}, "
        f"{row['sync_vs_copy']:.0%} of the copy): a speedup over NumPy of "
        f"{fmt_x(row['speedup_sync'])}, not the {fmt_x(row['speedup_enqueue'])} the article's "
        "way reports here.",
        f"The article's own 0.71 ms implies {fmt_rate(art['enqueue_GBps'])} on a card of "
        f"{fmt_rate(art['device_GBps'])}; the work needed at least {fmt_time(art['floor_s'])}.",
    ]


def print_summary(result: dict[str, Any]) -> None:
    """The short table, printed last."""
    sec = result["article"]
    imp = sec["implied"]
    print(
        f"\n== article's script, {sec['elements']:.0e} elements (copy ceiling "
        f"{fmt_rate((result.get('copy') or {}).get('GBps'))})"
    )
    print(
        f"{'step':20} {'NumPy':>10} {'CuPy nosync':>12} {'CuPy sync':>10} "
        f"{'x nosync':>9} {'x sync':>8} {'rate nosync':>12} {'rate sync':>10}"
    )
    for name in BYTES_PER_ELEMENT:
        r = imp[name]
        print(
            f"{name:20} {fmt_time(r.get('numpy_s')):>10} {fmt_time(r.get('enqueue_s')):>12} "
            f"{fmt_time(r.get('sync_s')):>10} {fmt_x(r.get('speedup_enqueue')):>9} "
            f"{fmt_x(r.get('speedup_sync')):>8} {fmt_rate(r.get('enqueue_GBps')):>12} "
            f"{fmt_rate(r.get('sync_GBps')):>10}"
        )
    print(f"\n== three stages against size (synchronised medians; GPU {result['gpu_note']})")
    print(
        f"{'elements':>8} {'NumPy':>10} {'CuPy 3op':>10} {'fused':>10} {'x CuPy':>8} "
        f"{'x fused':>8} {'fused rate':>11}  check"
    )
    for r in result["sizes"]:
        print(
            f"{r['elements']:>8.0e} {fmt_time(median(r['numpy'])):>10} "
            f"{fmt_time(median((r.get('cupy') or {}).get('sync'))):>10} "
            f"{fmt_time(median((r.get('fused') or {}).get('sync'))):>10} "
            f"{fmt_x(r['speedup']['cupy']):>8} {fmt_x(r['speedup']['fused']):>8} "
            f"{fmt_rate(r['achieved_GBps']['fused']):>11}  "
            f"{'ok' if r['ok'] else 'MISMATCH'}"
        )
    for line in verdict(result):
        print(line)
    c = result["correctness"]
    print(
        f"\ncorrectness: {'OK' if c['ok'] else 'FAILED'} ({c['checks']} checks, NumPy "
        f"checked: {c['numpy_checked']}, GPU checked: {c['gpu_checked']}); "
        f"{result['elapsed_s']:.1f} s"
    )


# --------------------------------------------------------------------------------------------
# Main.


def parse_size(text: str) -> int:
    value = float(text)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a positive whole number of elements: {text}")
    return int(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", type=options.out_dir, default=Path("results/seed"), help="output directory"
    )
    p.add_argument(
        "--quick", action="store_true", help="NumPy only, 1e4..1e6 elements, 2 reps (no GPU)"
    )
    p.add_argument(
        "--max-size", type=parse_size, help="largest array, elements (default 1e9; 1e6 quick)"
    )
    p.add_argument(
        "--reps",
        type=int,
        help="repetitions at big sizes; small sizes and the GPU get 4x (default 5; 2 quick)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="soft wall-time limit, seconds: NumPy repetitions at big sizes stop early to fit",
    )
    args = p.parse_args(argv)
    args.max_size = args.max_size or (10**6 if args.quick else 10**9)
    args.reps = args.reps or (2 if args.quick else 5)
    if args.reps < 1:
        p.error("--reps must be at least 1")
    if args.max_size < 10**4:
        p.error("--max-size must be at least 1e4 (the smallest size of the table)")
    return args


def correctness(result: dict[str, Any]) -> dict[str, Any]:
    checks = list(result["article"].get("numpy", {}).get("checks", []))
    checks += result["article"].get("cupy", {}).get("checks", [])
    for r in result["sizes"]:
        checks += r["checks"]
    failures = [c for c in checks if not c["equal"]]
    return {
        "ok": not failures and bool(checks),
        "checks": len(checks),
        "numpy_checked": any(c["what"].startswith("NumPy") for c in checks),
        "gpu_checked": any("CuPy" in c["what"] for c in checks),
        "failures": failures,
    }


def run(args: argparse.Namespace, result: dict[str, Any], budget: Budget) -> Gpu | None:
    """Everything that measures; fills ``result`` as it goes (so a crash leaves partial data)."""
    gpu = None
    if not args.quick:
        gpu = open_gpu()
        result["fused_note"] = gpu.fused_note
        result["gpu_note"] = "measured"
    result["article"] = article_section(gpu, args.max_size, args.reps, budget)
    log(budget, "article section done")
    write_outputs(args.out, result, tables=False)
    if gpu is not None:
        result["environment"]["gpu"] = gpu.info = machine.gpu_facts(gpu.cp)
        gpu.copy = result["copy"] = measure_copy(gpu)
        log(budget, f"device copy: {fmt_rate(gpu.copy_gbps())}")
        result["article"]["implied"] = implied_bandwidth(result["article"], gpu.copy_gbps())
        gpu.flusher = Flusher(gpu.cp, gpu.info["l2_bytes"] or (50 << 20))
        result["method"]["gpu_flush"] = gpu.flusher.describe()
    host_flush = Flusher(np, machine.cpu_llc_bytes())
    result["method"]["host_flush"] = host_flush.describe()
    result["sizes"] = []
    for n in sizes_up_to(args.max_size):
        log(budget, f"size {n:.0e}")
        result["sizes"].append(size_row(n, gpu, host_flush, args.reps, budget))
        write_outputs(args.out, result, tables=False)  # partial results survive a kill
    return gpu


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "quick" if args.quick else "full",
        "args": {k: str(v) for k, v in vars(args).items()},
        "environment": machine.environment(),
        "method": dict(METHOD),
        "gpu_note": "not measured (--quick runs NumPy only)",
        "fused_note": "not measured (--quick runs NumPy only)",
        "gpu_measured": False,
        "complete": False,
    }
    if not args.quick:
        usable, reason = machine.cupy_status()
        if not usable:
            return options.needs_gpu("seed", reason)
    try:
        gpu = run(args, result, budget)
        result["gpu_measured"] = gpu is not None
        result["complete"] = True
    except BaseException:
        result["error"] = traceback.format_exc()
        result["elapsed_s"] = budget.elapsed()
        write_outputs(args.out, result, tables=False)
        raise
    result["elapsed_s"] = budget.elapsed()
    result["correctness"] = correctness(result)
    write_outputs(args.out, result)
    print_summary(result)
    print(f"wrote {args.out}/bench_seed.{{json,md,png}}")
    if not result["correctness"]["ok"]:
        for f in result["correctness"]["failures"]:
            print(f"MISMATCH: {f}", file=sys.stderr)
        print("seed: results are not bit-identical", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
