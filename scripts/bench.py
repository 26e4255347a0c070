"""`make bench`: the pipeline against the ceilings of its data path and against its peers.

Everything is measured in one run, on the same data: the ceilings (device copy, PCIe, files,
disk, CPU and GPU zstd), the pipeline in four settings (Zarr on a memory-backed filesystem,
Zarr on local disk, input and result in host memory, data already on the GPU), the pipeline's
CPU path, and the peers a user would write from the Dask/Zarr/dask-cuda docs (the naive
dask-cuda pipeline and the CPU Dask pipeline). Device work is timed after synchronising;
warm-up runs are excluded; timed figures are medians of several repetitions, with min and max.

Writes ``bench.json``, ``bench.md`` and ``bench.png`` under ``--out`` and prints the table last.
``--quick`` is a CPU-only version that finishes in seconds (the tests run it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}]
_STREAMS: list[Any] = []
MEMORY_BLOCK_BYTES = 256 << 20
"""Dask chunks of the in-memory workloads: whole shards, about this size (on the H100, 256 MiB
chunks moved 39.5 GB/s in and out of host memory, 128 MiB ones 29.6-36.1, 64 MiB ones 19.6:
`make bench-sweep`)."""


# --------------------------------------------------------------------------------------------
# Results.


@dataclass
class Figure:
    """One measured throughput (GB/s), with its repetitions."""

    name: str
    group: str
    """ceiling | pipeline | peer"""
    gbps: list[float]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.gbps) if self.gbps else float("nan")

    def row(self) -> str:
        spread = f"{min(self.gbps):.2f}-{max(self.gbps):.2f}" if len(self.gbps) > 1 else "1 run"
        return f"| {self.group} | {self.name} | {self.median:.2f} | {spread} | {self.note} |"


class Results:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.figures: list[Figure] = []
        self.meta: dict[str, Any] = {}
        self.targets: list[dict[str, Any]] = []

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        print(f"  {fig.group:8s} {fig.name:48s} {fig.median:8.2f} GB/s  {fig.note}", flush=True)
        self.save()
        return fig

    def get(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        doc = {
            "meta": self.meta,
            "figures": [asdict(f) | {"median": f.median} for f in self.figures],
            "targets": self.targets,
        }
        (self.out / "bench.json").write_text(json.dumps(doc, indent=1, default=str))


def timed_reps(
    fn: Callable[[], float | None], reps: int, nbytes: float, warmup: int = 1
) -> list[float]:
    """GB/s of ``nbytes`` over ``reps`` calls of ``fn`` after ``warmup`` calls.

    ``fn`` may return its own measured seconds (device events); else the wall time counts.
    """
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        own = fn()
        sec = own if own is not None else time.perf_counter() - t
        out.append(nbytes / sec / 1e9)
    return out


# --------------------------------------------------------------------------------------------
# Ceilings.


def gpu_ceilings(res: Results, reps: int, shard_file: Path | None, chunk_bytes: int) -> None:
    """Device copy and fused kernel, PCIe, nvCOMP zstd; memory freed between them."""
    import cupy as cp

    for fn in (device_ceilings, pcie_ceilings):
        fn(res, reps)
        cp.get_default_memory_pool().free_all_blocks()
    nvcomp_ceilings(res, reps, shard_file, chunk_bytes)
    cp.get_default_memory_pool().free_all_blocks()


def device_ceilings(res: Results, reps: int) -> None:
    """Device-to-device copy, and the fused stage chain on data already on the GPU."""
    import cupy as cp

    from pipeline import gpu, stages
    from pipeline.config import parse_config

    n = 1 << 30  # 4 GiB of float32
    a = cp.random.standard_normal(n, dtype=cp.float32)
    b = cp.empty_like(a)

    def ev(fn: Callable[[], Any]) -> float:
        e0, e1 = cp.cuda.Event(), cp.cuda.Event()
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        return cp.cuda.get_elapsed_time(e0, e1) / 1e3

    res.add(
        Figure(
            "device copy (read+write bytes)",
            "ceiling",
            timed_reps(lambda: ev(lambda: cp.copyto(b, a)), reps * 3, 2 * a.nbytes, 2),
            "cupy.copyto, 4 GiB",
        )
    )
    cfg = parse_config({"input": {"store": "x"}, "output": {"store": "y"}, "stages": STAGES})
    chain = stages.plan_chain(cfg.stage_specs(), np.dtype("float32"))
    kern = gpu.chain_kernel(chain)
    f = res.add(
        Figure(
            "fused stage chain, data on GPU (read+write bytes)",
            "pipeline",
            timed_reps(lambda: ev(lambda: kern(a, np.dtype("float32"))), reps * 3, 2 * a.nbytes, 2),
            "one kernel, 4 GiB float32",
        )
    )
    ref = ((a[:4096] * 5) ** 2) * 2
    f.extra["exact"] = bool((kern(a[:4096], np.dtype("float32")) == ref).all())


def pcie_ceilings(res: Results, reps: int) -> None:
    """Host<->device copies: page-locked, pageable, and both directions at once."""
    import cupy as cp

    size = 2 << 30
    d = cp.empty(size, cp.uint8)
    mem = cp.cuda.alloc_pinned_memory(size)
    h = np.frombuffer(mem, np.uint8, size)
    h[:] = 1
    page = np.ones(size, np.uint8)
    s = cp.cuda.Stream(non_blocking=True)

    def sync_wall(fn: Callable[[], Any]) -> Callable[[], float]:
        def run() -> float:
            s.synchronize()
            t = time.perf_counter()
            fn()
            s.synchronize()
            cp.cuda.Device().synchronize()
            return time.perf_counter() - t

        return run

    for name, fn in (
        ("PCIe host->device, pinned", lambda: d.set(h, stream=s)),
        ("PCIe device->host, pinned", lambda: d.get(out=h, stream=s)),
        ("PCIe host->device, pageable", lambda: d.set(page)),
        ("PCIe device->host, pageable", lambda: d.get(out=page)),
    ):
        res.add(Figure(name, "ceiling", timed_reps(sync_wall(fn), reps, size), "2 GiB"))
    half = size // 2
    s2 = cp.cuda.Stream(non_blocking=True)

    def both() -> float:
        cp.cuda.Device().synchronize()
        t = time.perf_counter()
        d[:half].set(h[:half], stream=s)
        d[half:].get(out=h[half:], stream=s2)
        s.synchronize()
        s2.synchronize()
        return time.perf_counter() - t

    res.add(
        Figure(
            "PCIe pinned, both directions at once (each way)",
            "ceiling",
            timed_reps(both, reps, half),
            "1 GiB each way",
        )
    )


def nvcomp_ceilings(res: Results, reps: int, shard_file: Path | None, chunk_bytes: int) -> None:
    """nvCOMP zstd on the benchmark's own data (one shard's frames), alone and round trip."""
    import threading

    import cupy as cp
    from nvidia import nvcomp

    from pipeline import gpu

    gpu.setup()
    raw = np.load(shard_file) if shard_file else None
    nbytes = 256 << 20
    x = (
        cp.asarray(raw)
        if raw is not None
        else cp.random.standard_normal(nbytes // 4, dtype=cp.float32).view(cp.uint8)
    )
    nbytes = x.nbytes
    n = nbytes // chunk_bytes

    def make() -> tuple[Any, ...]:
        st = cp.cuda.Stream(non_blocking=True)
        _STREAMS.append(st)  # nvCOMP codecs must not outlive their streams: keep them all
        codec = nvcomp.Codec(
            algorithm="Zstd",
            bitstream_kind=nvcomp.BitstreamKind.RAW,
            device_id=0,
            cuda_stream=st.ptr,
        )
        offs = [i * chunk_bytes for i in range(n)]
        slot = (codec.get_max_comp_buffer_size(nvcomp.as_array(x[:chunk_bytes])) + 15) // 16 * 16
        cbuf = cp.empty(slot * n, cp.uint8)
        so = [i * slot for i in range(n)]
        out = cp.empty_like(x)
        dc = codec.decompression_config(codec.compression_config([chunk_bytes] * n))
        return st, codec, offs, slot, cbuf, so, out, dc

    st, codec, offs, slot, cbuf, so, out, dc = make()
    src = nvcomp.as_arrays(x, offs, [chunk_bytes] * n)
    cout = nvcomp.as_arrays(cbuf, so, [slot] * n)
    sizes: list[int] = []

    def enc() -> float:
        st.synchronize()
        t = time.perf_counter()
        r = codec.encode(src, out=cout)
        st.synchronize()
        sizes[:] = r.buffer_sizes
        return time.perf_counter() - t

    def dec() -> float:
        cin = nvcomp.as_arrays(cbuf, so, list(sizes))
        ob = nvcomp.as_arrays(out, offs, [chunk_bytes] * n)
        st.synchronize()
        t = time.perf_counter()
        codec.decode(cin, out=ob, decompression_config=dc)
        st.synchronize()
        return time.perf_counter() - t

    e = res.add(
        Figure(
            "GPU zstd encode (nvCOMP)",
            "ceiling",
            timed_reps(enc, reps, nbytes),
            f"{chunk_bytes >> 10} KiB frames, benchmark data",
        )
    )
    e.extra["ratio"] = nbytes / sum(sizes)
    dfig = res.add(
        Figure(
            "GPU zstd decode (nvCOMP)",
            "ceiling",
            timed_reps(dec, reps, nbytes),
            f"{chunk_bytes >> 10} KiB frames",
        )
    )
    dfig.extra["exact"] = bool((out == x).all())
    res.add(
        Figure(
            "GPU zstd decode+encode, one GPU",
            "ceiling",
            timed_reps(lambda: dec() + enc(), reps, nbytes),
            "the codec work one pipeline byte needs",
        )
    )

    def worker(k: int, times: list[float], barrier: threading.Barrier) -> None:
        st2, c2, offs2, slot2, cbuf2, so2, out2, dc2 = make()
        with st2:
            s2 = nvcomp.as_arrays(x, offs2, [chunk_bytes] * n)
            o2 = nvcomp.as_arrays(cbuf2, so2, [slot2] * n)
            barrier.wait()
            t = time.perf_counter()
            for _ in range(k):
                r = c2.encode(s2, out=o2)
                st2.synchronize()
                sz = r.buffer_sizes
                c2.decode(
                    nvcomp.as_arrays(cbuf2, so2, list(sz)),
                    out=nvcomp.as_arrays(out2, offs2, [chunk_bytes] * n),
                    decompression_config=dc2,
                )
                st2.synchronize()
            times.append(time.perf_counter() - t)

    threads = 4
    gbps = []
    for _ in range(reps):
        times: list[float] = []
        barrier = threading.Barrier(threads)
        ts = [threading.Thread(target=worker, args=(2, times, barrier)) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        gbps.append(threads * 2 * nbytes / max(times) / 1e9)
    res.add(Figure("GPU zstd decode+encode, 4 streams", "ceiling", gbps, "concurrent round trips"))
    cp.get_default_memory_pool().free_all_blocks()


def cpu_zstd_ceiling(res: Results, reps: int, threads: int, chunk_bytes: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import numcodecs

    x = np.random.default_rng(0).standard_normal((128 << 20) // 4).astype(np.float32)
    raw = x.view(np.uint8)
    frames = [raw[o : o + chunk_bytes] for o in range(0, raw.nbytes, chunk_bytes)]
    z = numcodecs.Zstd(level=1)
    enc = [z.encode(f) for f in frames]
    with ThreadPoolExecutor(threads) as ex:
        res.add(
            Figure(
                f"CPU zstd encode (numcodecs, {threads} threads)",
                "ceiling",
                timed_reps(lambda: list(ex.map(z.encode, frames)) and None, reps, raw.nbytes),
                f"level 1, {chunk_bytes >> 10} KiB frames",
            )
        )
        res.add(
            Figure(
                f"CPU zstd decode (numcodecs, {threads} threads)",
                "ceiling",
                timed_reps(lambda: list(ex.map(z.decode, enc)) and None, reps, raw.nbytes),
                f"{chunk_bytes >> 10} KiB frames",
            )
        )


def file_ceilings(
    res: Results,
    root: Path,
    label: str,
    threads: int,
    reps: int,
    file_bytes: int = 256 << 20,
    files: int = 16,
) -> None:
    """Reading files into reused buffers and writing new files, ``threads`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    root.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(1).integers(0, 255, file_bytes, dtype=np.uint8)
    bufs = [np.empty(file_bytes, np.uint8) for _ in range(threads)]
    for b in bufs:
        b[:] = 1

    def write(i: int) -> None:
        with open(root / f"f{i}", "wb", buffering=0) as f:
            f.write(memoryview(data))

    def read(i: int) -> None:
        with open(root / f"f{i}", "rb", buffering=0) as f:
            f.readinto(memoryview(bufs[i % threads]))

    with ThreadPoolExecutor(threads) as ex:

        def w() -> None:
            for p in root.glob("f*"):
                p.unlink()
            t = time.perf_counter()
            list(ex.map(write, range(files)))
            return time.perf_counter() - t  # type: ignore[return-value]

        res.add(
            Figure(
                f"{label} write, new files ({threads} threads)",
                "ceiling",
                timed_reps(w, reps, files * file_bytes),
                f"{file_bytes >> 20} MiB files",
            )
        )
        res.add(
            Figure(
                f"{label} read ({threads} threads)",
                "ceiling",
                timed_reps(
                    lambda: list(ex.map(read, range(files))) and None, reps, files * file_bytes
                ),
                "page cache, reused buffers",
            )
        )
    shutil.rmtree(root, ignore_errors=True)


def host_path_ceiling(
    res: Results, root: Path, threads: int, reps: int, file_bytes: int = 256 << 20, files: int = 32
) -> None:
    """The pipeline's data path without its codec: ``threads`` threads each read a file into a
    page-locked buffer, copy it to the GPU and back into another, and write it to a new file,
    as a task does with a block's compressed bytes. GB/s of file bytes read (and written)."""
    import threading

    import cupy as cp

    root.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(2).integers(0, 255, file_bytes, dtype=np.uint8)
    for i in range(files):
        with open(root / f"in{i}", "wb", buffering=0) as f:
            f.write(memoryview(data))

    def buffers() -> tuple[Any, ...]:
        mem = [cp.cuda.alloc_pinned_memory(file_bytes) for _ in range(2)]
        st = cp.cuda.Stream(non_blocking=True)
        _STREAMS.append(st)
        return (
            *(np.frombuffer(m, np.uint8, file_bytes) for m in mem),
            cp.empty(file_bytes, cp.uint8),
            st,
            mem,
        )

    held = [buffers() for _ in range(threads)]

    def one_pass() -> float:
        for q in root.glob("out*"):
            q.unlink()
        barrier = threading.Barrier(threads + 1)

        def work(k: int) -> None:
            a, b, dev, st, _mem = held[k]
            barrier.wait()
            for i in range(k, files, threads):
                with open(root / f"in{i}", "rb", buffering=0) as f:
                    f.readinto(memoryview(a))
                dev.set(a, stream=st)
                dev.get(out=b, stream=st)
                st.synchronize()
                with open(root / f"out{i}", "wb", buffering=0) as f:
                    f.write(memoryview(b))

        ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in ts:
            t.join()
        return time.perf_counter() - t0

    res.add(
        Figure(
            f"/dev/shm read -> GPU -> write, no codec ({threads} threads)",
            "ceiling",
            timed_reps(one_pass, reps, files * file_bytes),
            "a task's path for its compressed bytes, without the codec",
        )
    )
    held.clear()
    shutil.rmtree(root, ignore_errors=True)


def drop_caches() -> bool:
    """Empty the page cache (root only) so reads come from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def disk_ceiling(res: Results, root: Path, gb: int) -> float | None:
    """The disk's own read, write, and read+write-at-once rates (dd, direct I/O)."""
    root.mkdir(parents=True, exist_ok=True)
    count = max(1, gb * 1024 // 64)
    a, b = root / "dd_a", root / "dd_b"

    def dd(args: str) -> float:
        t = time.perf_counter()
        subprocess.run(f"dd {args} bs=64M count={count} status=none", shell=True, check=True)
        return time.perf_counter() - t

    nbytes = count * (64 << 20)
    t_w = dd(f"if=/dev/zero of={a} oflag=direct")
    res.add(Figure("disk write (dd, direct)", "ceiling", [nbytes / t_w / 1e9], "64 MiB blocks"))
    drop_caches()
    t_r = dd(f"if={a} of=/dev/null iflag=direct")
    res.add(Figure("disk read (dd, direct)", "ceiling", [nbytes / t_r / 1e9], "64 MiB blocks"))
    drop_caches()
    t = time.perf_counter()
    procs = [
        subprocess.Popen(
            f"dd if={a} of=/dev/null iflag=direct bs=64M count={count} status=none", shell=True
        ),
        subprocess.Popen(
            f"dd if=/dev/zero of={b} oflag=direct bs=64M count={count} status=none", shell=True
        ),
    ]
    for p in procs:
        p.wait()
    both = 2 * nbytes / (time.perf_counter() - t) / 1e9
    res.add(
        Figure(
            "disk read+write at once (bytes read + written)",
            "ceiling",
            [both],
            "dd read and dd write together",
        )
    )
    shutil.rmtree(root, ignore_errors=True)
    return both


# --------------------------------------------------------------------------------------------
# Data and configs.


def config(input_store: Path, output_store: Path, backend: str, **extra: Any) -> Any:
    from pipeline.config import parse_config

    doc: dict[str, Any] = {
        "input": {"store": str(input_store)},
        "output": {"store": str(output_store), "overwrite": True},
        "stages": STAGES,
        "backend": backend,
    }
    if backend == "gpu" and (total := gpu_total_bytes()):
        # the budget from the GPU's size, not from what is free when each run is planned:
        # the bench reruns on warm clusters, whose workers' memory shows as used
        doc["cluster"] = {"device_memory_limit": int(0.8 * total)}
    for k, v in extra.items():
        doc[k] = {**doc.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(doc)


def gpu_total_bytes() -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total)
    except Exception:
        return None


def generate(
    path: Path, shape: list[int], shards: list[int], chunks: list[int], backend: str
) -> None:
    from pipeline.config import parse_config
    from pipeline.runner import generate_input

    cfg = parse_config(
        {
            "input": {
                "store": str(path),
                "generate": {
                    "shape": shape,
                    "dtype": "float32",
                    "seed": 0,
                    "shards": shards,
                    "chunks": chunks,
                },
            },
            "output": {"store": str(path) + ".unused"},
            "stages": STAGES,
            "backend": backend,
        }
    )
    generate_input(cfg, progress="none")


@contextlib.contextmanager
def local_cluster(
    backend: str, threads: int, workers: int = 1, gpus: int | None = None, workers_per_gpu: int = 1
) -> Iterator[Any]:
    """A cluster as a user starts one. GPU: one worker per visible GPU, or per each of the
    first ``gpus`` (``workers_per_gpu``: that many per GPU); CPU: ``workers`` processes."""
    from distributed import Client

    if backend == "gpu":
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(
            CUDA_VISIBLE_DEVICES=None if gpus is None else ",".join(map(str, range(gpus))),
            threads_per_worker=threads,
            device_memory_limit=0,
            memory_limit=0,
            dashboard_address=None,
            silence_logs=50,
        )
        if workers_per_gpu > 1:
            from pipeline.cluster import add_workers_per_gpu

            add_workers_per_gpu(cluster, workers_per_gpu)
    else:
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=threads, dashboard_address=None, silence_logs=50
        )
    client = Client(cluster)
    client.wait_for_workers(len(cluster.worker_spec), timeout=300)
    try:
        yield client
    finally:  # workers holding tens of GB of page-locked memory can be slow to exit
        with contextlib.suppress(Exception):
            client.close(timeout=60)
        with contextlib.suppress(Exception):
            cluster.close(timeout=120)


def wait_gpu_freed(share: float = 0.9, timeout: float = 30.0) -> None:
    """Wait (up to ``timeout`` s) until GPU 0 has ``share`` of its memory free."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        if mem.free >= share * mem.total:
            return
        time.sleep(0.2)


class GpuBusy:
    """Samples NVML's GPU utilisation (the share of each sample period in which a kernel ran
    on GPU 0) every 50 ms while entered; ``samples`` holds the percentages."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        self._stop.clear()
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML here: no samples
            return self

        def sample() -> None:
            while not self._stop.wait(0.05):
                self.samples.append(int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def pipeline_runs(
    client: Any,
    cfg: Any,
    reps: int,
    warmup: int = 1,
    before: Callable[[], Any] | None = None,
    busy: GpuBusy | None = None,
) -> tuple[list[float], Any]:
    """GB/s of input over ``reps`` runs on a warm client (the summary's compute phase);
    ``busy`` samples the GPU during the timed runs."""
    from pipeline.runner import RunOptions, run

    out = []
    last = None
    for i in range(warmup + reps):
        if before is not None:
            before()
        t = time.perf_counter()
        with busy if busy is not None and i >= warmup else contextlib.nullcontext():
            last = run(cfg, RunOptions(progress="none", overwrite=True), client=client)
        if before is not None:  # disk: the output must be on the disk, not in its cache
            os.sync()
        wall = time.perf_counter() - t
        if i >= warmup:
            sec = last.seconds["compute"] + (wall - last.seconds["total"] if before else 0.0)
            out.append(last.bytes_in / max(sec, 1e-9) / 1e9)
    return out, last


# --------------------------------------------------------------------------------------------
# Peers: the pipelines a user writes from the docs.


def naive_store_peer(client: Any, src: Path, dst: Path, gpu: bool, subset: tuple | None) -> float:
    """da.from_zarr -> [cupy] -> *5, a*a, a+a -> [numpy] -> to_zarr (zstd), as the docs show."""
    import dask.array as da
    import zarr
    from zarr.codecs import ZstdCodec

    x = da.from_zarr(str(src))
    if subset is not None:
        x = x[subset]
    if gpu:
        import cupy as cp

        x = x.map_blocks(cp.asarray)
    x = x * 5
    x = x * x
    x = x + x
    if gpu:
        import cupy as cp

        x = x.map_blocks(cp.asnumpy)
    shutil.rmtree(dst, ignore_errors=True)
    z = zarr.create_array(
        str(dst), shape=x.shape, chunks=x.chunksize, dtype=x.dtype, compressors=ZstdCodec(level=1)
    )
    t = time.perf_counter()
    da.store(x, z, lock=False, compute=True)
    sec = time.perf_counter() - t
    return x.nbytes / sec / 1e9


def naive_memory_peer(client: Any, src: Path, reps: int) -> list[float]:
    """Input persisted in host memory (NumPy), cupy.asarray -> ops -> cupy.asnumpy -> persist."""
    import cupy as cp
    import dask.array as da
    from distributed import wait

    x = client.persist(da.from_zarr(str(src)))
    wait(x)
    out = []
    for i in range(reps + 1):
        y = x.map_blocks(cp.asarray)
        y = y * 5
        y = y * y
        y = y + y
        y = y.map_blocks(cp.asnumpy)
        t = time.perf_counter()
        y = client.persist(y)
        wait(y)
        sec = time.perf_counter() - t
        del y
        if i:
            out.append(x.nbytes / sec / 1e9)
    del x
    return out


def read_input(src: Path, backend: str, target: int = MEMORY_BLOCK_BYTES) -> Any:
    """The input as a Dask array (NumPy or CuPy chunks: ``backend``) read by the pipeline's own
    reader (Zarr's would take minutes over 16 GB of 128 KiB chunks), in blocks of whole shards,
    as many along the first axis as make about ``target`` bytes."""
    import zarr

    from pipeline import graph
    from pipeline.runner import plan_run

    z = zarr.open_array(str(src), mode="r")
    unit = list(z.shards or z.chunks)
    unit_bytes = int(np.prod(unit)) * z.dtype.itemsize
    unit[0] = min(z.shape[0], unit[0] * max(1, target // unit_bytes))
    cfg = config(src, src.parent / "unused.zarr", backend, chunking={"block": unit})
    return graph.read_array(plan_run(cfg).source)


def _chain(dtype: np.dtype) -> tuple:
    from pipeline import stages
    from pipeline.config import parse_config

    cfg = parse_config({"input": {"store": "x"}, "output": {"store": "y"}, "stages": STAGES})
    return stages.plan_chain(cfg.stage_specs(), np.dtype(dtype))


def _persisted(
    client: Any,
    build: Callable[[], Any],
    reps: int,
    nbytes: float,
    check: Callable[[Any], None] | None = None,
) -> list[float]:
    """GB/s of ``nbytes`` for persisting ``build()`` on the cluster, ``reps`` times after one
    warm-up; ``check`` sees the last result. Each repetition starts once the workers have let
    go of the previous result (releasing is asynchronous: otherwise a repetition's clock would
    include freeing, or pinning afresh, the last one's memory)."""
    from distributed import wait

    held = _keys_held(client)
    out = []
    for i in range(reps + 1):
        t = time.perf_counter()
        y = client.persist(build())
        wait(y)
        sec = time.perf_counter() - t
        if i == reps and check is not None:
            check(y)
        del y
        _settle(client, held)
        if i:
            out.append(nbytes / sec / 1e9)
    return out


def _keys_held(client: Any) -> int:
    return sum(client.run(lambda dask_worker: len(dask_worker.data)).values())


def _settle(client: Any, keys: int, timeout: float = 30.0) -> None:
    """Wait until the workers hold no more than ``keys`` results."""
    end = time.monotonic() + timeout
    while _keys_held(client) > keys:
        if time.monotonic() > end:
            print(f"warning: workers still hold results {timeout:g} s after release", flush=True)
            return
        time.sleep(0.01)


def pipeline_memory(
    client: Any,
    src: Path,
    reps: int,
    pinned: bool,
    backend: str = "gpu",
    block_bytes: int = MEMORY_BLOCK_BYTES,
) -> list[float]:
    """Input already in host memory (page-locked or not), result back in host memory."""
    from distributed import wait

    from pipeline import graph

    x = read_input(src, backend, block_bytes)
    chain = _chain(x.dtype)
    x = graph.to_host(x) if backend == "gpu" else x
    x = client.persist(graph.pin(x) if pinned else x)
    wait(x)

    def check(y: Any) -> None:  # one block against NumPy
        blk = tuple(slice(0, c[0]) for c in x.chunks)
        ref = ((np.asarray(x[blk].compute()) * 5) ** 2) * 2
        assert np.array_equal(np.asarray(y[blk].compute()), ref)

    return _persisted(client, lambda: graph.process(x, chain, backend), reps, x.nbytes, check)


def pipeline_device(client: Any, src: Path, reps: int) -> list[float]:
    """Data already on the GPU (CuPy chunks persisted), the fused chain through Dask."""
    from distributed import wait

    from pipeline import graph

    x = read_input(src, "gpu")
    chain = _chain(x.dtype)
    xd = client.persist(x)
    wait(xd)
    return _persisted(client, lambda: graph.apply_stages(xd, chain, "gpu"), reps, 2 * x.nbytes)


# --------------------------------------------------------------------------------------------
# Report.


def machine() -> dict[str, Any]:
    from pipeline.info import versions

    doc: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "versions": versions(),
    }
    with contextlib.suppress(Exception):
        doc["gpu"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return doc


def evaluate(res: Results) -> None:
    """The issue's targets, as ratios of figures measured in this run."""

    def med(name: str) -> float | None:
        f = res.get(name)
        return f.median if f else None

    def target(label: str, value: float | None, floor: float, unit: str) -> None:
        ok = value is not None and value >= floor
        res.targets.append(
            {"target": label, "value": value, "floor": floor, "unit": unit, "met": ok}
        )

    shm = med("pipeline, Zarr on /dev/shm (GPU)")
    cpu_peer = max(filter(None, [med("peer: CPU Dask, Zarr on /dev/shm")]), default=None)
    naive = med("peer: naive dask-cuda, Zarr on /dev/shm")
    codec = [
        med("GPU zstd encode (nvCOMP)"),
        med("GPU zstd decode+encode, one GPU"),
        med("PCIe host->device, pinned"),
        med("PCIe device->host, pinned"),
    ]
    lowest = min((c for c in codec if c), default=None)
    if shm is not None:
        target("/dev/shm vs CPU Dask peer", shm / cpu_peer if cpu_peer else None, 8, "x")
        target("/dev/shm vs naive dask-cuda", shm / naive if naive else None, 30, "x")
        target(
            "/dev/shm vs lowest data-path ceiling",
            shm / lowest if lowest else None,
            0.7,
            "of ceiling",
        )
    disk = res.get("pipeline, Zarr on local disk (GPU)")
    both = med("disk read+write at once (bytes read + written)")
    if disk is not None and both:
        moved = disk.extra.get("disk_gbps_moved", disk.median)
        target("local disk vs disk read+write ceiling", moved / both, 0.85, "of ceiling")
    mem = med("pipeline, input and result in host memory (pinned)")
    if mem is not None:
        target("host memory in and out", mem, 35, "GB/s")
    dev = med("fused stage chain, data on GPU (read+write bytes)")
    copy = med("device copy (read+write bytes)")
    if dev and copy:
        target("data on GPU vs device copy", dev / copy, 0.9, "of copy")


def report(res: Results) -> str:
    lines = [
        f"Measured {res.meta.get('date', '?')} on {res.meta.get('gpu', 'no GPU')}, "
        f"{res.meta.get('cpus')} CPUs; input {res.meta.get('size_gb')} GB float32 random "
        "normal, zstd. GB/s of input bytes unless the name says otherwise; median of the "
        "repetitions, range in the next column.",
        "",
        "| | measurement | GB/s | range | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f.row() for f in res.figures]
    if res.targets:
        lines += ["", "| target | measured | floor | met |", "| --- | --- | --- | --- |"]
        for t in res.targets:
            v = "n/a" if t["value"] is None else f"{t['value']:.2f} {t['unit']}"
            lines.append(
                f"| {t['target']} | {v} | {t['floor']} {t['unit']} | "
                f"{'yes' if t['met'] else 'NO'} |"
            )
    return "\n".join(lines) + "\n"


def chart(res: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = [f for f in res.figures if "read+write bytes" not in f.name]
    colors = {"ceiling": "#9e9e9e", "pipeline": "#2e7d32", "peer": "#c62828"}
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(figs) + 1.5))
    ys = range(len(figs))
    ax.barh(list(ys), [f.median for f in figs], color=[colors[f.group] for f in figs])
    ax.set_yticks(list(ys), [f.name for f in figs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("GB/s (log scale)")
    ax.set_title(f"pipeline vs ceilings and peers — {res.meta.get('gpu', 'CPU only')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CPU only, seconds (what tests run)")
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    p.add_argument("--size-gb", type=float, default=16.0, help="input size (GB)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--shm", type=Path, default=Path("/dev/shm/pipeline-bench"))
    p.add_argument("--disk", type=Path, default=Path("/var/tmp/pipeline-bench"))
    p.add_argument("--skip", default="", help="comma list: ceilings,peers,memory,device,cpu,disk")
    p.add_argument(
        "--threads",
        default="4",
        help="comma list of threads per GPU worker for the /dev/shm run; the first is the "
        "pipeline's figure (and is used elsewhere), the others are shown beside it",
    )
    p.add_argument(
        "--workers-per-gpu",
        default="3",
        help="comma list of GPU worker processes sharing GPU 0 for the /dev/shm run (each with "
        "the threads of --threads), as --threads",
    )
    p.add_argument(
        "--also",
        default="",
        help="comma list of WxT (W workers per GPU of T threads) also run on /dev/shm",
    )
    p.add_argument("--from-json", type=Path, help="re-render tables and chart from a bench.json")
    p.add_argument(
        "--peer-gb",
        type=float,
        default=4.0,
        help="the naive dask-cuda peer runs on the first PEER_GB of the input",
    )
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    args.variants = shm_variants(args.threads, args.workers_per_gpu, args.also)
    args.threads = args.variants[0]["threads"]
    res = Results(args.out)
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
        res.meta = doc["meta"]
        res.figures = [
            Figure(f["name"], f["group"], f["gbps"], f["note"], f["extra"]) for f in doc["figures"]
        ]
        return finish(res)
    res.meta = machine() | {"size_gb": args.size_gb, "quick": args.quick}
    if args.quick:
        return quick(res, args)
    try:
        return full(res, args, skip)
    finally:  # a partial run still leaves its table and chart
        if not (res.out / "bench.md").exists():
            finish(res)


def layout_for(size_gb: float) -> tuple[list[int], list[int], list[int], list[int]]:
    """(shape, shards, chunks, plain chunks) of a float32 array of about ``size_gb``."""
    planes = max(64, round(size_gb * 1e9 / (4 << 20) / 64) * 64)  # 4 MiB planes
    # 256 MiB shards (the pipeline's blocks) of 128 KiB chunks (smaller shards were no faster:
    # `make bench-sweep`); the peers' plain layout has the guide's 64 Mi-element chunks
    return [planes, 1024, 1024], [64, 1024, 1024], [1, 32, 1024], [64, 1024, 1024]


_T0 = time.perf_counter()


def stamp(label: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.0f} s] {label}", flush=True)


def shm_variants(threads: str, workers: str = "1", pairs: str = "") -> list[dict[str, Any]]:
    """The /dev/shm settings to run: the first value of each list is the pipeline's figure;
    each other value is run with the rest at their first values, beside it; so is each
    ``WxT`` of ``pairs`` (W workers per GPU of T threads)."""
    lists = {
        "workers": [int(v) for v in workers.split(",")],
        "threads": [int(v) for v in threads.split(",")],
    }
    first = {k: v[0] for k, v in lists.items()}
    out = [first]
    for k, values in lists.items():
        out += [first | {k: v} for v in values[1:]]
    for pair in filter(None, pairs.split(",")):
        w, t = (int(v) for v in pair.lower().split("x"))
        out.append(first | {"workers": w, "threads": t})
    return out


def variant_cluster(v: dict[str, Any]) -> dict[str, Any]:
    """The ``cluster`` section of the pipeline's config for a setting of :func:`shm_variants`."""
    return {"threads_per_worker": v["threads"], "workers_per_gpu": v["workers"]}


def shm_variant(
    res: Results,
    client: Any,
    src: Path,
    shm: Path,
    v: dict[str, Any],
    first: dict[str, Any],
    reps: int,
) -> None:
    """One setting of the GPU pipeline on /dev/shm, checked bit for bit after its runs."""
    cfg = config(src, shm / "out.zarr", "gpu", cluster=variant_cluster(v))
    busy = GpuBusy()
    gbps, last = pipeline_runs(client, cfg, reps, busy=busy)
    differs = ", ".join(f"{k} {v[k]}" for k in v if v[k] != first[k])
    f = res.add(
        Figure(
            "pipeline, Zarr on /dev/shm (GPU)" + (f", {differs}" if differs else ""),
            "pipeline",
            gbps,
            f"{v['workers']} worker(s) x {v['threads']} threads"
            f"; {last.task_time and max(last.task_time, key=last.task_time.get)}"
            " is the largest share of task time",
        )
    )
    f.extra.update(
        gpu_busy_pct=busy.samples,
        task_time=last.task_time,
        peak_device=last.peak_device_bytes,
        peak_rss=last.peak_host_bytes,
        blocks=last.blocks_total,
    )
    verify_output(src, shm / "out.zarr")
    shutil.rmtree(shm / "out.zarr", ignore_errors=True)


def full(res: Results, args: argparse.Namespace, skip: set[str]) -> int:
    shm, disk = args.shm, args.disk
    shutil.rmtree(shm, ignore_errors=True)
    shape, shards, chunks, plain_chunks = layout_for(args.size_gb)
    res.meta["shape"] = shape
    src = shm / "input.zarr"
    print(f"generating {shape} float32 in {src}", flush=True)
    generate(src, shape, shards, chunks, "gpu")
    one_shard = shm / "shard.npy"
    import zarr

    np.save(
        one_shard,
        np.ascontiguousarray(zarr.open_array(str(src), mode="r")[:64]).view(np.uint8).reshape(-1),
    )
    if "ceilings" not in skip:
        stamp("ceilings")
        gpu_ceilings(res, args.reps, one_shard, 4 * 32 * 1024)
        cpu_zstd_ceiling(res, args.reps, os.cpu_count() or 1, 128 << 10)
        file_ceilings(res, shm / "files", "/dev/shm", 8, args.reps)
        host_path_ceiling(res, shm / "path", args.threads * args.variants[0]["workers"], args.reps)
    one_shard.unlink()

    stamp("pipeline on /dev/shm")
    first = args.variants[0]
    # a fresh cluster for each setting: a warm one's workers hold device memory outside
    # their pools, which the next plan (made in this process) would count as used
    for v in args.variants:
        wait_gpu_freed()  # the last cluster's worker may still be exiting: plans see free memory
        with local_cluster("gpu", v["threads"], workers_per_gpu=v["workers"]) as client:
            shm_variant(res, client, src, shm, v, first, args.reps)
    if "device" not in skip:
        wait_gpu_freed()
        with local_cluster("gpu", first["threads"], workers_per_gpu=first["workers"]) as client:
            res.add(
                Figure(
                    "pipeline, data already on GPU, through Dask (read+write bytes)",
                    "pipeline",
                    pipeline_device(client, src, args.reps),
                    "CuPy chunks persisted on the GPU",
                )
            )
    if "peers" not in skip:
        stamp("peers")
        plain = shm / "plain.zarr"
        convert_plain(src, plain, plain_chunks)
        with local_cluster("cpu", 4, workers=4) as client:
            res.add(
                Figure(
                    "peer: CPU Dask, Zarr on /dev/shm",
                    "peer",
                    [naive_store_peer(client, plain, shm / "peer_cpu.zarr", False, None)],
                    "LocalCluster 4x4, NumPy chunks, 64 Mi-element zstd chunks",
                )
            )
        shutil.rmtree(shm / "peer_cpu.zarr", ignore_errors=True)
        rows = max(64, int(args.peer_gb * 1e9 / (4 << 20)) // 64 * 64)
        with local_cluster("gpu", 1) as client:
            res.add(
                Figure(
                    "peer: naive dask-cuda, Zarr on /dev/shm",
                    "peer",
                    [
                        naive_store_peer(
                            client, plain, shm / "peer_gpu.zarr", True, (slice(0, rows),)
                        )
                    ],
                    f"LocalCUDACluster defaults, first {rows * 4 / 1024:.0f} GiB",
                )
            )
            res.add(
                Figure(
                    "peer: naive dask-cuda, input and result in host memory",
                    "peer",
                    naive_memory_peer(client, plain, 1),
                    "persisted NumPy chunks, cupy.asarray/asnumpy",
                )
            )
        shutil.rmtree(shm / "peer_gpu.zarr", ignore_errors=True)
        shutil.rmtree(plain, ignore_errors=True)
    if "cpu" not in skip:
        stamp("pipeline, CPU backend")
        n = os.cpu_count() or 1
        with local_cluster("cpu", 1, workers=n) as client:
            cfg = config(
                src, shm / "out_cpu.zarr", "cpu", cluster={"threads_per_worker": 1, "workers": n}
            )
            gbps, last = pipeline_runs(client, cfg, 1, warmup=0)
            res.add(
                Figure(
                    "pipeline, CPU backend, Zarr on /dev/shm",
                    "pipeline",
                    gbps,
                    f"LocalCluster {n}x1, NumPy chunks",
                )
            )
        shutil.rmtree(shm / "out_cpu.zarr", ignore_errors=True)
    if "disk" not in skip:
        stamp("local disk")
        both = disk_ceiling(res, disk / "dd", 4)
        disk_src = disk / "input.zarr"
        shutil.rmtree(disk, ignore_errors=True)
        disk.mkdir(parents=True)
        shutil.copytree(src, disk_src)
        first = args.variants[0]
        with local_cluster("gpu", first["threads"], workers_per_gpu=first["workers"]) as client:
            cfg = config(
                disk_src,
                disk / "out.zarr",
                "gpu",
                cluster=variant_cluster(first),
            )
            gbps, last = pipeline_runs(client, cfg, 1, warmup=0, before=drop_caches)
            moved = (last.stored_bytes_read + last.stored_bytes_written) / last.bytes_in
            f = res.add(
                Figure(
                    "pipeline, Zarr on local disk (GPU)",
                    "pipeline",
                    gbps,
                    f"caches dropped first, output synced; {last.bound_by}",
                )
            )
            f.extra["disk_gbps_moved"] = gbps[0] * moved
            f.extra["task_time"] = last.task_time
            if both:
                f.extra["of_disk_ceiling"] = gbps[0] * moved / both
        shutil.rmtree(disk, ignore_errors=True)
    if "memory" not in skip:
        stamp("pipeline with data in host memory")
        with local_cluster("gpu", 8) as client:
            res.add(
                Figure(
                    "pipeline, input and result in host memory (pinned)",
                    "pipeline",
                    pipeline_memory(client, src, args.reps, pinned=True),
                    "page-locked chunks persisted in the worker",
                )
            )
    shutil.rmtree(shm, ignore_errors=True)
    return finish(res)


def convert_plain(src: Path, dst: Path, chunks: list[int]) -> None:
    """The same values in the layout of the guide's peers: 64 Mi-element zstd chunks, unsharded
    (made by the pipeline itself with a `multiply: 1` stage, which is exact)."""
    from pipeline.config import parse_config
    from pipeline.runner import RunOptions, run

    cfg = parse_config(
        {
            "input": {"store": str(src)},
            "output": {"store": str(dst), "overwrite": True, "shards": "none", "chunks": chunks},
            "stages": [{"op": "multiply", "factor": 1}],
            "backend": "cpu",
            "cluster": {"workers": max(1, (os.cpu_count() or 1)), "dashboard": ""},
            "chunking": {"block": chunks},
        }
    )
    run(cfg, RunOptions(progress="none"))


def _shard_reader(path: Path) -> tuple[list[int], list[int], Callable[[tuple], np.ndarray]]:
    """(shape, shard shape, read one shard) of a sharded zstd Zarr v3 array, read from its
    files with numcodecs: independent of the pipeline's reader and of Zarr's."""
    import math

    from numcodecs import Zstd

    meta = json.loads((path / "zarr.json").read_text())
    shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
    (sharding,) = [c for c in meta["codecs"] if c["name"] == "sharding_indexed"]
    inner = sharding["configuration"]["chunk_shape"]
    at_end = sharding["configuration"].get("index_location", "end") == "end"
    dtype = np.dtype(meta["data_type"])
    grid = [s // c for s, c in zip(shard, inner, strict=True)]
    n = math.prod(grid)
    per = math.prod(inner) * dtype.itemsize

    def read(idx: tuple) -> np.ndarray:
        raw = (path / "c" / "/".join(map(str, idx))).read_bytes()
        ib = n * 16 + 4  # (offset, nbytes) per chunk, then a crc32c
        index = np.frombuffer(raw[-ib:-4] if at_end else raw[: ib - 4], np.uint64).reshape(n, 2)
        out = np.zeros(n * per, np.uint8)
        z = Zstd()
        for k, (o, size) in enumerate(index.tolist()):
            if o != 2**64 - 1:
                out[k * per : (k + 1) * per] = np.frombuffer(z.decode(raw[o : o + size]), np.uint8)
        a = out.view(dtype).reshape(*grid, *inner)
        nd = len(shard)
        return a.transpose(*[x for i in range(nd) for x in (i, nd + i)]).reshape(shard)

    return meta["shape"], shard, read


def verify_output(src: Path, dst: Path) -> None:
    """Every element of the output against NumPy's chain over the input, bit for bit (NaN
    payloads and subnormals included): the benchmark must be computing the truth."""
    from concurrent.futures import ThreadPoolExecutor

    shape, shard_in, read_in = _shard_reader(src)
    shape_out, shard, read_out = _shard_reader(dst)
    assert shape == shape_out, (shape, shape_out)

    def region(lo: list[int], hi: list[int]) -> np.ndarray:
        """The input's values in [lo, hi), from whichever input shards hold them."""
        parts = [range(a // c, -(-b // c)) for a, b, c in zip(lo, hi, shard_in, strict=True)]
        out: np.ndarray | None = None
        for idx in itertools.product(*parts):
            x = read_in(idx)
            if out is None:
                out = np.empty([b - a for a, b in zip(lo, hi, strict=True)], x.dtype)
            start = [i * c for i, c in zip(idx, shard_in, strict=True)]
            src_sl = tuple(
                slice(max(a, s0) - s0, min(b, s0 + c) - s0)
                for a, b, s0, c in zip(lo, hi, start, shard_in, strict=True)
            )
            dst_sl = tuple(
                slice(max(a, s0) - a, min(b, s0 + c) - a)
                for a, b, s0, c in zip(lo, hi, start, shard_in, strict=True)
            )
            out[dst_sl] = x[src_sl]
        assert out is not None
        return out

    def one(idx: tuple) -> int:
        lo = [i * c for i, c in zip(idx, shard, strict=True)]
        hi = [min(a + c, s) for a, c, s in zip(lo, shard, shape, strict=True)]
        x = region(lo, hi)  # an edge shard's padding is never read
        with np.errstate(all="ignore"):
            ref = x * x.dtype.type(5)
            ref = ref * ref
            ref = ref + ref
        valid = tuple(slice(0, b - a) for a, b in zip(lo, hi, strict=True))
        y = np.ascontiguousarray(read_out(idx)[valid])
        return int((ref.view(np.uint8) != y.view(np.uint8)).sum())

    grid = [-(-s // c) for s, c in zip(shape, shard, strict=True)]
    with ThreadPoolExecutor(os.cpu_count() or 1) as ex:
        bad = sum(ex.map(one, list(np.ndindex(*grid))))
    assert bad == 0, f"{bad} output bytes differ from NumPy's"


def finish(res: Results) -> int:
    evaluate(res)
    res.save()
    md = report(res)
    (res.out / "bench.md").write_text(md)
    chart(res, res.out / "bench.png")
    print()
    print(md)
    return 0


def quick(res: Results, args: argparse.Namespace) -> int:
    """CPU only, a few seconds: the same flow at toy size (for tests, and laptops)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    try:
        shape, shards, chunks = [64, 256, 256], [16, 256, 256], [1, 32, 256]
        res.meta["shape"] = shape
        res.meta["size_gb"] = round(np.prod(shape) * 4 / 1e9, 3)
        src = root / "input.zarr"
        generate(src, shape, shards, chunks, "cpu")
        cpu_zstd_ceiling(res, 1, 2, 128 << 10)
        file_ceilings(res, root / "files", "tmp", 2, 1, file_bytes=8 << 20, files=4)
        with local_cluster("cpu", 1, workers=2) as client:
            cfg = config(
                src, root / "out.zarr", "cpu", cluster={"threads_per_worker": 1, "workers": 2}
            )
            gbps, last = pipeline_runs(client, cfg, 1)
            res.add(
                Figure(
                    "pipeline, CPU backend, Zarr on tmp",
                    "pipeline",
                    gbps,
                    f"LocalCluster 2x1 ({last.blocks_total} blocks)",
                )
            )
            verify_output(src, root / "out.zarr")
            plain = root / "plain.zarr"
            convert_plain(src, plain, [16, 256, 256])
            res.add(
                Figure(
                    "peer: CPU Dask, Zarr on tmp",
                    "peer",
                    [naive_store_peer(client, plain, root / "peer.zarr", False, None)],
                    "LocalCluster 2x1, NumPy chunks",
                )
            )
            peer = np.asarray(__import__("zarr").open_array(str(root / "peer.zarr"))[...])
            x = np.asarray(__import__("zarr").open_array(str(src))[...])
            assert np.array_equal(peer, ((x * 5) ** 2) * 2)
        return finish(res)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
