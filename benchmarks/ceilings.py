"""Ceilings: what the hardware and the codecs allow, measured in the same run as what they
bound. GPU: device copy, the fused kernel alone, PCIe (page-locked and pageable), nvCOMP zstd
(encode, decode, both, and four streams at once), the host side of a task's data path without
its codec. CPU: zstd with numcodecs, each workload's own codec decoded from its raw chunk
files. Storage: files written and read on /dev/shm (or any directory), the disk with ``dd``.

Every function adds its figures to a :class:`~benchmarks.report.Results`; rates are GB/s
(1e9 bytes per second) of the bytes the name says, medians of the repetitions after a warm-up.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import checks, data, stats, timing
from benchmarks.report import Figure, Results

#: nvCOMP codecs must not outlive their CUDA streams: every stream made here is kept.
_STREAMS: list[Any] = []

#: Frames of the GPU and CPU zstd ceilings: the pipeline's output chunks (about 128 KiB).
FRAME_BYTES = 128 << 10


# --------------------------------------------------------------------------------------------
# GPU


def _frees_device_memory(fn: Callable[..., None]) -> Callable[..., None]:
    """``fn``, then CuPy's pool gives its cached blocks back (the next ceiling, and the
    workers of later clusters, find the memory free)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        finally:
            import cupy as cp

            cp.get_default_memory_pool().free_all_blocks()
            cp.get_default_pinned_memory_pool().free_all_blocks()

    return run


@_frees_device_memory
def device(res: Results, reps: int) -> None:
    """Device-to-device copy, and the pipeline's fused stage chain on data already on the GPU
    (4 GiB of float32; bytes read plus bytes written), timed with CUDA events."""
    import cupy as cp

    from benchmarks import pipelines

    n = 1 << 30
    a = cp.random.standard_normal(n, dtype=cp.float32)
    b = cp.empty_like(a)
    secs = timing.device_reps(lambda: cp.copyto(b, a), reps * 3, warmup=2)
    res.add(
        Figure(
            "device-copy",
            "device copy (read+write bytes)",
            "ceiling",
            stats.rates(2 * a.nbytes, secs),
            note="cupy.copyto, 4 GiB",
        )
    )
    kernel, _ = pipelines.fused_kernel(np.float32)
    secs = timing.device_reps(lambda: kernel(a), reps * 3, warmup=2)
    f = res.add(
        Figure(
            "fused-kernel",
            "fused stage chain, data on GPU (read+write bytes)",
            "pipeline",
            stats.rates(2 * a.nbytes, secs),
            note="one kernel, 4 GiB float32",
        )
    )
    want = checks.reference(a[: 1 << 20].get())
    # to the bit, as verify compares (array_equal took -0.0 for 0.0)
    f.extra["exact"] = pipelines.bits_difference(want, kernel(a[: 1 << 20]).get()) is None


@_frees_device_memory
def pcie(res: Results, reps: int) -> None:
    """Host<->device copies of 2 GiB: page-locked (CUDA events on the copy's stream),
    pageable, and page-locked both ways at once (wall clock around synchronised copies: the
    first spans two streams, the second stages through host buffers outside any stream)."""
    import cupy as cp

    size = 2 << 30
    d = cp.empty(size, cp.uint8)
    mem = cp.cuda.alloc_pinned_memory(size)
    h = np.frombuffer(mem, np.uint8, size)
    h[:] = 1
    page = np.ones(size, np.uint8)
    s = cp.cuda.Stream(non_blocking=True)
    for key, name, fn in (
        ("pcie-h2d-pinned", "PCIe host->device, pinned", lambda: d.set(h, stream=s)),
        ("pcie-d2h-pinned", "PCIe device->host, pinned", lambda: d.get(out=h, stream=s)),
    ):
        secs = timing.device_reps(fn, reps, stream=s)
        res.add(Figure(key, name, "ceiling", stats.rates(size, secs), note="2 GiB"))

    def synced(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            fn()
            cp.cuda.Device().synchronize()

        return run

    for key, name, fn in (
        ("pcie-h2d-pageable", "PCIe host->device, pageable", lambda: d.set(page)),
        ("pcie-d2h-pageable", "PCIe device->host, pageable", lambda: d.get(out=page)),
    ):
        secs = timing.wall_reps(synced(fn), reps)
        res.add(Figure(key, name, "ceiling", stats.rates(size, secs), note="2 GiB"))
    half = size // 2
    s2 = cp.cuda.Stream(non_blocking=True)

    def both() -> None:
        d[:half].set(h[:half], stream=s)
        d[half:].get(out=h[half:], stream=s2)
        s.synchronize()
        s2.synchronize()

    cp.cuda.Device().synchronize()
    res.add(
        Figure(
            "pcie-both-pinned",
            "PCIe pinned, both directions at once (each way)",
            "ceiling",
            stats.rates(half, timing.wall_reps(both, reps)),
            note="1 GiB each way",
        )
    )


def _nvcomp_codec(x: Any, frame: int) -> tuple[Any, ...]:
    """A zstd codec on a stream of its own and buffers for ``x`` (device uint8) in frames of
    ``frame`` bytes: (stream, codec, source arrays, compressed arrays, compressed buffer,
    slot offsets, slot size, output, output arrays, decompression config)."""
    import cupy as cp
    from nvidia import nvcomp

    n = x.nbytes // frame
    st = cp.cuda.Stream(non_blocking=True)
    _STREAMS.append(st)
    codec = nvcomp.Codec(
        algorithm="Zstd", bitstream_kind=nvcomp.BitstreamKind.RAW, device_id=0, cuda_stream=st.ptr
    )
    offs = [i * frame for i in range(n)]
    slot = (codec.get_max_comp_buffer_size(nvcomp.as_array(x[:frame])) + 15) // 16 * 16
    cbuf = cp.empty(slot * n, cp.uint8)
    so = [i * slot for i in range(n)]
    out = cp.empty_like(x[: n * frame])
    dc = codec.decompression_config(codec.compression_config([frame] * n))
    src = nvcomp.as_arrays(x, offs, [frame] * n)
    cout = nvcomp.as_arrays(cbuf, so, [slot] * n)
    dst = nvcomp.as_arrays(out, offs, [frame] * n)
    return st, codec, src, cout, cbuf, so, slot, out, dst, dc


@_frees_device_memory
def nvcomp_zstd(
    res: Results, reps: int, sample: np.ndarray, workload: str, frame: int = FRAME_BYTES
) -> None:
    """nvCOMP zstd on a workload's own values (``sample``: bytes, host) in ``frame``-byte
    frames: encode, decode, and decode followed by encode (the codec work one byte of a run
    that decodes and encodes on the GPU needs); CUDA events on the codec's stream."""
    import cupy as cp
    from nvidia import nvcomp

    from benchmarks import pipelines

    pipelines.gpu_setup()
    n = sample.nbytes // frame
    x = cp.asarray(sample[: n * frame])
    # the copy ran on the current stream, which the codec's non-blocking stream does not wait on
    cp.cuda.Device().synchronize()
    st, codec, src, cout, cbuf, so, _slot, out, dst, dc = _nvcomp_codec(x, frame)
    first = codec.encode(src, out=cout)
    st.synchronize()
    sizes = list(first.buffer_sizes)
    cin = nvcomp.as_arrays(cbuf, so, sizes)

    def enc() -> None:
        codec.encode(src, out=cout)

    def dec() -> None:
        codec.decode(cin, out=dst, decompression_config=dc)

    def both() -> None:
        dec()
        enc()

    note = f"{frame >> 10} KiB frames, {x.nbytes >> 20} MiB of the workload's values"
    e = res.add(
        Figure(
            "gpu-zstd-encode",
            "GPU zstd encode (nvCOMP)",
            "ceiling",
            stats.rates(x.nbytes, timing.device_reps(enc, reps, stream=st)),
            workload=workload,
            note=note,
        )
    )
    e.extra["ratio"] = x.nbytes / sum(sizes)
    dfig = res.add(
        Figure(
            "gpu-zstd-decode",
            "GPU zstd decode (nvCOMP)",
            "ceiling",
            stats.rates(x.nbytes, timing.device_reps(dec, reps, stream=st)),
            workload=workload,
            note=note,
        )
    )
    dfig.extra["exact"] = bool((out == x).all())
    res.add(
        Figure(
            "gpu-zstd-roundtrip",
            "GPU zstd decode+encode, one GPU",
            "ceiling",
            stats.rates(x.nbytes, timing.device_reps(both, reps, stream=st)),
            workload=workload,
            note=note,
        )
    )


@_frees_device_memory
def nvcomp_streams(
    res: Results, reps: int, sample: np.ndarray, streams: int = 4, frame: int = FRAME_BYTES
) -> None:
    """``streams`` threads, each with its own codec and stream, encode then decode
    ``sample`` twice at once (wall clock from a shared start to the last thread's end)."""
    import cupy as cp
    from nvidia import nvcomp

    n = sample.nbytes // frame
    x = cp.asarray(sample[: n * frame])
    cp.cuda.Device().synchronize()  # before the codecs' non-blocking streams read it

    def worker(times: list[float], barrier: threading.Barrier) -> None:
        st, codec, src, cout, cbuf, so, _slot, _out, dst, dc = _nvcomp_codec(x, frame)
        with st:
            barrier.wait()
            t = time.perf_counter()
            for _ in range(2):
                r = codec.encode(src, out=cout)
                st.synchronize()
                cin = nvcomp.as_arrays(cbuf, so, list(r.buffer_sizes))
                codec.decode(cin, out=dst, decompression_config=dc)
                st.synchronize()
            times.append(time.perf_counter() - t)

    gbps = []
    for _ in range(reps + 1):  # the first builds the codecs' kernels: not counted
        times: list[float] = []
        barrier = threading.Barrier(streams)
        ts = [threading.Thread(target=worker, args=(times, barrier)) for _ in range(streams)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        gbps.append(streams * 2 * x.nbytes / max(times) / 1e9)
    res.add(
        Figure(
            "gpu-zstd-streams",
            f"GPU zstd decode+encode, {streams} streams",
            "ceiling",
            gbps[1:],
            workload="synthetic",
            note="concurrent round trips",
        )
    )


def _staging(nbytes: int) -> tuple[Any, ...]:
    """One thread's buffers for a host-side path: two page-locked host buffers of ``nbytes``
    (uint8 arrays), a device buffer as large, a stream of its own (kept in ``_STREAMS``), and
    the page-locked memory itself (held while the arrays are in use)."""
    import cupy as cp

    mem = [cp.cuda.alloc_pinned_memory(nbytes) for _ in range(2)]
    st = cp.cuda.Stream(non_blocking=True)
    _STREAMS.append(st)
    return (*(np.frombuffer(m, np.uint8, nbytes) for m in mem), cp.empty(nbytes, cp.uint8), st, mem)


def _timed_threads(work: Callable[[int], None], threads: int) -> float:
    """Seconds for ``threads`` threads running ``work(k)``, ``k`` from 0, to end, timed from the
    moment all of them have started and are released together."""
    barrier = threading.Barrier(threads + 1)

    def run(k: int) -> None:
        barrier.wait()
        work(k)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


@_frees_device_memory
def host_path(
    res: Results, root: Path, threads: int, reps: int, file_bytes: int = 256 << 20, files: int = 32
) -> None:
    """The pipeline's data path without its codec: ``threads`` threads each read a file into a
    page-locked buffer, copy it to the GPU and back into another, and write it to a new file,
    as a task does with a block's compressed bytes. GB/s of file bytes read (and written)."""

    root.mkdir(parents=True, exist_ok=True)
    blob = np.random.default_rng(2).integers(0, 255, file_bytes, dtype=np.uint8)
    for i in range(files):
        with open(root / f"in{i}", "wb", buffering=0) as f:
            f.write(blob.data)

    held = [_staging(file_bytes) for _ in range(threads)]

    def one_pass() -> float:
        for q in root.glob("out*"):
            q.unlink()

        def work(k: int) -> None:
            a, b, dev, st, _mem = held[k]
            for i in range(k, files, threads):
                with open(root / f"in{i}", "rb", buffering=0) as f:
                    f.readinto(a.data)
                dev.set(a, stream=st)
                dev.get(out=b, stream=st)
                st.synchronize()
                with open(root / f"out{i}", "wb", buffering=0) as f:
                    f.write(b.data)

        return _timed_threads(work, threads)

    res.add(
        Figure(
            "host-path",
            f"/dev/shm read -> GPU -> write, no codec ({threads} threads)",
            "ceiling",
            stats.rates(files * file_bytes, timing.wall_reps(one_pass, reps)),
            note="a task's path for its compressed bytes, without the codec",
        )
    )
    shutil.rmtree(root, ignore_errors=True)


@_frees_device_memory
def host_decode_path(
    res: Results, root: Path, w: data.Workload, threads: int, reps: int, max_bytes: int
) -> None:
    """The host side of a CPU-decoded workload's path, its codec included: ``threads``
    threads (a GPU run's workers decode on as many threads as the host has cores) each read a
    raw chunk (or shard) file of ``w`` into a buffer of its own, decode it with numcodecs into
    a page-locked buffer, copy that to the GPU, copy the bytes the output's zstd would hold
    back into another page-locked buffer and write them to a new file, over at most
    ``max_bytes`` of decoded data. It is a task's work without the GPU's codec and kernel,
    which run beside it: a bound of the whole path made of the CPU decode and the storage on
    the same cores and memory. The bytes written per byte decoded are those of numcodecs zstd
    level 1 in 128 KiB frames of the first 64 MiB of the values (the pipeline's output codec;
    the GPU's frames are a few percent larger or smaller). GB/s of decoded (input) bytes."""
    import numcodecs

    a = w.stored()
    units = a.units()[: max(1, max_bytes // a.unit_bytes())]
    paths = [a.unit_path(u) for u in units if a.unit_path(u).exists()]
    sample = data.sample(w, 64 << 20)
    z = numcodecs.Zstd(level=1)
    stored = sum(
        len(z.encode(sample[o : o + FRAME_BYTES])) for o in range(0, sample.nbytes, FRAME_BYTES)
    )
    ratio = stored / sample.nbytes
    n = a.unit_bytes()
    out_bytes = int(n * ratio)
    root.mkdir(parents=True, exist_ok=True)

    held = [_staging(n) for _ in range(threads)]
    file_buf = [bytearray(max(p.stat().st_size for p in paths)) for _ in range(threads)]
    decoded = [0]

    def one_pass() -> float:
        for q in root.glob("out*"):
            q.unlink()
        done = [0] * threads

        def work(k: int) -> None:
            a_buf, b_buf, dev, st, _mem = held[k]
            for i in range(k, len(paths), threads):
                with open(paths[i], "rb", buffering=0) as f:
                    got = f.readinto(file_buf[k])
                done[k] += a.decode_file(memoryview(file_buf[k])[:got], a_buf)
                dev.set(a_buf, stream=st)
                dev[:out_bytes].get(out=b_buf[:out_bytes], stream=st)
                st.synchronize()
                with open(root / f"out{i}", "wb", buffering=0) as f:
                    f.write(b_buf[:out_bytes].data)

        seconds = _timed_threads(work, threads)
        decoded[0] = sum(done)
        return seconds

    times = timing.wall_reps(one_pass, reps)
    res.add(
        Figure(
            "host-decode-path",
            f"host side with CPU decode: read, decode, PCIe, write ({threads} threads)",
            "ceiling",
            stats.rates(decoded[0], times),
            workload=w.key,
            note=f"{w.codec}; {decoded[0] / 1e6:.4g} MB decoded, {ratio:.3f} written per byte",
        )
    )
    shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# CPU


def cpu_zstd(res: Results, reps: int, threads: int, nbytes: int, frame: int = FRAME_BYTES) -> None:
    """numcodecs zstd (level 1, the pipeline's output codec) on ``threads`` threads over
    ``nbytes`` of random normal float32 in ``frame``-byte frames: encode and decode."""
    import numcodecs

    x = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
    raw = x.view(np.uint8)
    frames = [raw[o : o + frame] for o in range(0, raw.nbytes, frame)]
    z = numcodecs.Zstd(level=1)
    enc = [z.encode(f) for f in frames]
    with ThreadPoolExecutor(threads) as ex:
        for key, name, fn, what in (
            ("cpu-zstd-encode", "CPU zstd encode", z.encode, frames),
            ("cpu-zstd-decode", "CPU zstd decode", z.decode, enc),
        ):

            def run(fn: Callable[[Any], Any] = fn, what: list[Any] = what) -> None:
                list(ex.map(fn, what))

            res.add(
                Figure(
                    key,
                    f"{name} (numcodecs, {threads} threads)",
                    "ceiling",
                    stats.rates(raw.nbytes, timing.wall_reps(run, reps)),
                    note=f"level 1, {frame >> 10} KiB frames of random normal float32",
                )
            )


def cpu_encode(
    res: Results,
    reps: int,
    sample: np.ndarray,
    threads: int,
    workload: str,
    frame: int = FRAME_BYTES,
    block: int = 16 << 20,
) -> None:
    """The CPU backend's zstd encode of a workload's output, on ``threads`` threads: an upper
    bound of its compute phase. ``sample``: the workload's values (uint8 bytes of float32),
    put through the benchmark's stages first (the bytes the backend encodes are the
    output's). In a process of its own whose allocator is set as the backend's workers' are
    (:func:`benchmarks.pipelines.tune_allocator`; this one's is left as it is), each thread
    encodes whole blocks of ``block`` bytes (less where the sample gives each thread less) as
    a task of the backend does
    (:func:`benchmarks.pipelines.cpu_block_encoder`: numcodecs zstd level 1 in
    ``frame``-byte frames, packed into a buffer of the thread's own, reused). GB/s of bytes
    encoded.

    It had handed each 128 KiB frame of the input's values to the thread pool as a task of
    its own, each encoded into new memory, in the bench's process: 1.57-1.85 GB/s on the
    16-core GPU hosts against the CPU backend's 2.42-3.96 GB/s of decode, stages and encode
    together (benchmarks/RESULTS.md, 2026-12-07), so it bounded nothing."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from benchmarks import pipelines

    values = pipelines.apply_chain(np.float32, sample.view(np.float32))
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
    raw = raw[: raw.nbytes // frame * frame]
    # every thread a block at least: a small sample in smaller blocks
    share = -(-raw.nbytes // max(1, threads) // frame) * frame
    size = max(frame, min(block // frame * frame, share))
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as ex:
        seconds, tuned = ex.submit(_encode_seconds, raw, threads, frame, size, reps).result()
    res.add(
        Figure(
            "cpu-encode-all",
            f"CPU zstd encode, {threads} threads",
            "ceiling",
            stats.rates(raw.nbytes, seconds),
            workload=workload,
            note=(
                f"the CPU backend's encode of the stages' output: numcodecs level 1, "
                f"{frame >> 10} KiB frames in {size >> 20} MiB blocks, a reused buffer a "
                f"thread, glibc {'set as the workers' if tuned else 'as it was'}, "
                f"{raw.nbytes >> 20} MiB"
            ),
        )
    )


def _encode_seconds(
    raw: np.ndarray, threads: int, frame: int, block: int, reps: int
) -> tuple[list[float], bool]:
    """:func:`cpu_encode`'s measurement, in the process it runs in: seconds of each of
    ``reps`` encodes of ``raw`` on ``threads`` threads, and whether the allocator was set."""
    from benchmarks import pipelines

    tuned = pipelines.tune_allocator()
    blocks = [raw[o : o + block] for o in range(0, raw.nbytes, block)]
    encode = pipelines.cpu_block_encoder(frame)
    with ThreadPoolExecutor(threads) as ex:

        def run() -> None:
            list(ex.map(encode, blocks))

        return timing.wall_reps(run, reps), tuned


def cpu_decode(
    res: Results, w: data.Workload, threads: int, reps: int, max_bytes: int, key: str
) -> None:
    """A workload's raw chunk (or shard) files read and decoded with numcodecs, each thread
    into a buffer of its own, over at most ``max_bytes`` of decoded data: the CPU-decode
    ceiling of its codec on ``threads`` threads (a 1-thread run uses a worker thread too, so
    that Blosc does not start threads of its own). GB/s of decoded bytes."""
    a = w.stored()
    units = a.units()[: max(1, max_bytes // a.unit_bytes())]
    paths = [a.unit_path(u) for u in units if a.unit_path(u).exists()]
    local = threading.local()

    def one(path: Path) -> int:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty(a.unit_bytes(), np.uint8)
        with open(path, "rb") as f:
            raw = f.read()
        return a.decode_file(raw, buf)

    with ThreadPoolExecutor(threads) as ex:
        decoded = sum(ex.map(one, paths))

        def run() -> None:
            list(ex.map(one, paths))

        res.add(
            Figure(
                key,
                f"CPU decode, raw chunk files, {threads} thread{'s' if threads > 1 else ''}",
                "ceiling",
                stats.rates(decoded, timing.wall_reps(run, reps, warmup=0)),
                workload=w.key,
                note=f"{w.codec}; numcodecs, {decoded / 1e6:.4g} MB decoded",
            )
        )


# --------------------------------------------------------------------------------------------
# Storage


def files(
    res: Results,
    root: Path,
    label: str,
    threads: int,
    reps: int,
    file_bytes: int = 256 << 20,
    count: int = 16,
) -> None:
    """Writing ``count`` new files and reading them back into reused buffers, ``threads`` at a
    time: the storage ceilings (GB/s of file bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    blob = np.random.default_rng(1).integers(0, 255, file_bytes, dtype=np.uint8)
    bufs = [np.ones(file_bytes, np.uint8) for _ in range(threads)]

    def write(i: int) -> None:
        with open(root / f"f{i}", "wb", buffering=0) as f:
            f.write(blob.data)

    def read(i: int) -> None:
        with open(root / f"f{i}", "rb", buffering=0) as f:
            f.readinto(bufs[i % threads].data)

    with ThreadPoolExecutor(threads) as ex:

        def new_files() -> float:
            for p in root.glob("f*"):
                p.unlink()
            t = time.perf_counter()
            list(ex.map(write, range(count)))
            return time.perf_counter() - t

        def read_all() -> None:
            list(ex.map(read, range(count)))

        res.add(
            Figure(
                "storage-write-files",
                f"{label} write, new files ({threads} threads)",
                "ceiling",
                stats.rates(count * file_bytes, timing.wall_reps(new_files, reps)),
                note=f"{file_bytes >> 20} MiB files",
            )
        )
        res.add(
            Figure(
                "storage-read-files",
                f"{label} read ({threads} threads)",
                "ceiling",
                stats.rates(count * file_bytes, timing.wall_reps(read_all, reps)),
                note="page cache, reused buffers",
            )
        )
    shutil.rmtree(root, ignore_errors=True)


def drop_caches() -> bool:
    """Empty the page cache (root only) so that reads come from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def disk(res: Results, root: Path, gb: int) -> float | None:
    """The disk's own read, write, and read+write-at-once rates (dd, direct I/O); the last."""
    root.mkdir(parents=True, exist_ok=True)
    count = max(1, gb * 1024 // 64)
    a, b = root / "dd_a", root / "dd_b"

    def dd(args: str) -> float:
        t = time.perf_counter()
        subprocess.run(f"dd {args} bs=64M count={count} status=none", shell=True, check=True)
        return time.perf_counter() - t

    nbytes = count * (64 << 20)
    t_w = dd(f"if=/dev/zero of={a} oflag=direct")
    res.add(Figure("disk-write", "disk write (dd, direct)", "ceiling", [nbytes / t_w / 1e9]))
    drop_caches()
    t_r = dd(f"if={a} of=/dev/null iflag=direct")
    res.add(Figure("disk-read", "disk read (dd, direct)", "ceiling", [nbytes / t_r / 1e9]))
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
            "disk-both",
            "disk read+write at once (bytes read + written)",
            "ceiling",
            [both],
            note="dd read and dd write together, 64 MiB blocks",
        )
    )
    shutil.rmtree(root, ignore_errors=True)
    return both
