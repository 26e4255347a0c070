"""The GPU backend: CuPy chunks, zstd through nvCOMP, one fused kernel per stage chain.

Each Dask worker thread gets its own non-blocking CUDA stream and nvCOMP codec, and takes
page-locked staging buffers from the worker's pool for as long as a step of its task uses them,
so several chunks are in flight per GPU: while one thread's chunk decodes, another's encodes and
a third's bytes cross PCIe. Work that
returns an array to Dask is synchronised first, so arrays are always ready when they leave.

All device memory comes from CuPy's pool (nvCOMP's scratch too), whose limit is the run's device
budget; its high-water mark is the peak the run summary reports.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import logging
import mmap
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import cupy as cp
import numpy as np
from nvidia import nvcomp

from pipeline.devices.base import Encoding, GpuWait
from pipeline.ops import kernel, stages
from pipeline.ops.cf import Unpacking
from pipeline.store import codecs
from pipeline.store.codecs import FrameCodec
from pipeline.store.shards import EMPTY, Frames

log = logging.getLogger("pipeline")

_SETUP_LOCK = threading.Lock()
_SETUP_DONE = False


def _nvcomp_alloc(nbytes: int, stream: Any) -> Any:
    """nvCOMP's scratch from CuPy's pool. nvCOMP cannot recover from a failed allocation (it
    goes on with a bad pointer), so on a miss the pool first returns cached blocks of other
    streams to the device and tries once more."""
    try:
        return cp.cuda.alloc(nbytes)
    except cp.cuda.memory.OutOfMemoryError:
        cp.get_default_memory_pool().free_all_blocks()
        return cp.cuda.alloc(nbytes)


def setup(device_budget: int | None = None) -> None:
    """Once per process: route nvCOMP's allocations through CuPy's pool.

    The device budget is kept by the plan (every task's projected memory, times the tasks in
    flight, must fit it) and checked by measurement (the pool's high-water mark, which the run
    summary reports). It is deliberately not a hard cap on the pool: an allocation refused in
    the middle of an nvCOMP call corrupts that call (seen: illegal memory access).
    """
    global _SETUP_DONE
    with _SETUP_LOCK:
        if not _SETUP_DONE:
            nvcomp.set_device_allocator(_nvcomp_alloc)
            _SETUP_DONE = True


class _ThreadContext:
    """One worker thread's stream, codec and staging buffers."""

    def __init__(self) -> None:
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.stream.use()  # this thread's CuPy work goes to its own stream from now on
        self.codec = nvcomp.Codec(
            algorithm="Zstd",
            bitstream_kind=nvcomp.BitstreamKind.RAW,
            device_id=cp.cuda.Device().id,
            cuda_stream=self.stream.ptr,
        )
        self.pinned: dict[str, tuple[Any, np.ndarray]] = {}
        #: the most bytes each slot was asked for (an :class:`Arena` starts at that size)
        self.sizes: dict[str, int] = {}
        self.decode_configs: dict[tuple[int, int], Any] = {}

        self.closed = False
        with _CONTEXTS_LOCK:
            _CONTEXTS.add(self)

    def close(self) -> None:
        """Free the codec (and its decode configurations) before the stream: nvCOMP's codec must
        not outlive the stream it was given."""
        self.closed = True
        self.decode_configs.clear()
        self.__dict__.pop("slots", None)
        self.codec = None

    def __del__(self) -> None:
        self.close()

    def pinned_buffer(self, nbytes: int, slot: str) -> np.ndarray:
        """``nbytes`` of the page-locked buffer this thread holds as ``slot`` (taken from the
        worker's pool, or a larger one in its place, until :meth:`release`)."""
        held = self.pinned.get(slot)
        if held is None or held[1].nbytes < nbytes:
            if held is not None:
                _PINNED.give(held)
            held = self.pinned[slot] = _PINNED.take(nbytes)
        self.sizes[slot] = max(self.sizes.get(slot, 0), nbytes)
        return held[1][:nbytes]

    def release(self, *slots: str) -> None:
        """Give the buffers held as ``slots`` (every slot, when none is named) back to the
        worker's pool, once nothing this thread queued reads or writes them any more (its
        stream synchronised). A task's read step and its write step each release theirs, so
        a thread holds one staging buffer at a time where the two never overlap (the block's
        stored or decoded bytes, then its encoded frames), not one for each."""
        for slot in slots or tuple(self.pinned):
            held = self.pinned.pop(slot, None)
            if held is not None:
                _PINNED.give(held)

    def decode_config(self, n: int, chunk_nbytes: int) -> Any:
        key = (n, chunk_nbytes)
        dc = self.decode_configs.get(key)
        if dc is None:
            dc = self.codec.decompression_config(self.codec.compression_config([chunk_nbytes] * n))
            if len(self.decode_configs) > 64:
                self.decode_configs.clear()
            self.decode_configs[key] = dc
        return dc


class _PinnedPool:
    """Page-locked host buffers shared by a worker's threads. Pinning memory is slow (the
    driver maps every page), so buffers are made once, ideally before the first task
    (:func:`warm`), and reused for the life of the worker."""

    def __init__(self) -> None:
        self._free: list[tuple[Any, np.ndarray]] = []
        #: every buffer made, for the life of the process: a thread that ends holding one
        #: (after a failed step) drops its own reference, and a registered mapping unmapped
        #: while still registered would leave the driver mapping pages the process gave back
        self._made: list[tuple[Any, np.ndarray]] = []
        self._lock = threading.Lock()

    @property
    def made(self) -> int:
        """How many buffers this pool has made."""
        return len(self._made)

    def take(self, nbytes: int) -> tuple[Any, np.ndarray]:
        with self._lock:
            fits = [b for b in self._free if b[1].nbytes >= nbytes]
            if fits:
                best = min(fits, key=lambda b: b[1].nbytes)
                self._free.remove(best)
                return best
        held = _page_locked(max(1 << 20, int(nbytes * 1.25)))
        with self._lock:
            self._made.append(held)
        return held

    def give(self, held: tuple[Any, np.ndarray]) -> None:
        with self._lock:
            self._free.append(held)


#: The transparent huge page's size on x86-64 and the usual arm64 kernels.
HUGE_PAGE = 2 << 20


@functools.cache
def _huge_pages() -> bool:
    """Whether the kernel gives transparent huge pages to a mapping that asks for them
    (``always`` or ``madvise`` in /sys/kernel/mm/transparent_hugepage/enabled)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read() and hasattr(mmap, "MADV_HUGEPAGE")
    except OSError:
        return False


def _page_locked(size: int) -> tuple[Any, np.ndarray]:
    """``size`` bytes of page-locked host memory: (what keeps it alive, a uint8 view of it).

    Where the kernel has transparent huge pages, an anonymous mapping aligned to them and
    advised to use them, page-locked with ``cudaHostRegister``: the driver then pins 2 MiB
    pages instead of 4 KiB ones. On the H200 host (2026-11-30, 3 processes at once, each
    8 x 135 MB, as 3 GPU workers warm up; .scratch/probe22.py), this took 0.21 s (0.19-0.28)
    against 0.43 s (0.41-0.68) for ``cudaHostAlloc``, and its release 0.05 s against 0.10.
    Elsewhere, or where the kernel or the driver refuses the mapping's advice or its
    registration (then for the rest of the process), CuPy's ``cudaHostAlloc``. The memory
    lives as long as the worker's pool, which never gives it back: the process's end frees it.
    A child the worker forks gets none of the mapping (``MADV_DONTFORK``): its pages stay the
    ones the driver pinned, whatever either process writes after the fork."""
    global _REGISTER
    if _REGISTER and _huge_pages():
        try:
            return _registered(size)
        except Exception as e:  # a kernel or driver that refuses it (some containers, WSL)
            _REGISTER = False
            log.debug("page-locked staging by cudaHostAlloc: %s: %s", type(e).__name__, e)
    mem = cp.cuda.alloc_pinned_memory(size)
    return mem, np.frombuffer(mem, np.uint8, size)


#: False once a registration was refused: every later buffer comes from ``cudaHostAlloc``.
_REGISTER = True


def _registered(size: int) -> tuple[Any, np.ndarray]:
    """``size`` bytes of an anonymous mapping on transparent huge pages, registered with CUDA
    (see :func:`_page_locked`)."""
    mapping = mmap.mmap(-1, size + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    mapping.madvise(mmap.MADV_HUGEPAGE)
    if hasattr(mmap, "MADV_DONTFORK"):
        mapping.madvise(mmap.MADV_DONTFORK)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mapping))
    offset = -base % HUGE_PAGE
    cp.cuda.runtime.hostRegister(base + offset, size, 0)
    return mapping, np.frombuffer(mapping, np.uint8, size, offset)


_PINNED = _PinnedPool()
_LOCAL = threading.local()
_CONTEXTS: weakref.WeakSet[_ThreadContext] = weakref.WeakSet()  # every live thread's
_CONTEXTS_LOCK = threading.Lock()


@atexit.register
def close_contexts() -> None:
    """At exit, while CUDA is still up: wait for the device, then free every thread's codec
    before its stream. Left to the interpreter's teardown, the order is arbitrary, and a process
    that had used the GPU backend (a test run, say) could crash on its way out."""
    with _CONTEXTS_LOCK:
        held = list(_CONTEXTS)
        _CONTEXTS.clear()
    if held:
        with contextlib.suppress(Exception):
            cp.cuda.Device().synchronize()
    for ctx in held:
        with contextlib.suppress(Exception):
            ctx.close()
    if _SETUP_DONE:  # nvCOMP's global allocator holds a Python callable: drop it while we can
        with contextlib.suppress(Exception):
            nvcomp.set_device_allocator(None)


def warm(chain: Sequence[stages.BoundStage] | None, buffers: int, nbytes: int) -> None:
    """Before the first task: make the page-locked buffers the threads will use, and compile
    (or load from CuPy's cache) the kernels, so the first blocks do not all wait for that
    (on a fresh GPU host, eight threads compiling at once took the first run 30 s)."""
    setup()
    held = [_PINNED.take(nbytes) for _ in range(buffers)]
    for h in held:
        _PINNED.give(h)
    if chain:
        x = cp.ones(64, dtype=chain[0].in_dtype)
        y = chain_kernel(chain)(x, chain[-1].out_dtype)
        if y.dtype.kind == "f":
            count_nonfinite(y)
        for s in chain:
            cp.empty(4, s.in_dtype).fill(0)
    z = cp.zeros(16, cp.uint8)
    copy_segments(z, np.zeros(1, np.int64), z, np.ones(1, np.int64), np.ones(1, np.int64))
    cp.cuda.Device().synchronize()


#: A CUDA context's scheduling flags (``CUctx_flags`` in cuda.h): how its threads wait.
_SCHED_MASK, _SCHED_AUTO, _SCHED_BLOCKING_SYNC = 0x07, 0x00, 0x04


def set_wait(mode: GpuWait) -> bool:
    """How this process's threads wait for the GPU from now on (the flags of the device's
    primary context, which every thread shares): 'auto', CUDA's default (with fewer
    contexts than cores, a waiting thread spins on its core), or 'block' (it sleeps until the
    driver wakes it). Whether the driver took it: ``cuCtxSetFlags`` needs a CUDA 12.1 driver
    or later; an older one keeps its default."""
    cp.cuda.Device().synchronize()  # the primary context made current on this thread
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        get_flags, set_flags = driver.cuCtxGetFlags, driver.cuCtxSetFlags
    except (OSError, AttributeError):
        return False
    flags = ctypes.c_uint()
    if get_flags(ctypes.byref(flags)) != 0:
        return False
    sched = _SCHED_BLOCKING_SYNC if mode == "block" else _SCHED_AUTO
    want = (flags.value & ~_SCHED_MASK) | sched
    if want == flags.value or set_flags(ctypes.c_uint(want)) == 0:
        return True
    log.debug("the CUDA driver kept its scheduling flags (cuCtxSetFlags refused %s)", mode)
    return False


def wait_mode() -> str:
    """'block' or 'auto' (see :func:`set_wait`), as the current context's flags say; 'other'
    for a scheduling flag this module does not set, or where the driver cannot say."""
    cp.cuda.Device().synchronize()  # the primary context made current on this thread
    try:
        flags = ctypes.c_uint()
        if ctypes.CDLL("libcuda.so.1").cuCtxGetFlags(ctypes.byref(flags)) != 0:
            return "other"
    except (OSError, AttributeError):
        return "other"
    return {_SCHED_AUTO: "auto", _SCHED_BLOCKING_SYNC: "block"}.get(
        flags.value & _SCHED_MASK, "other"
    )


def page_locked_buffers() -> int:
    """How many page-locked staging buffers this process has made (:func:`warm` makes what its
    threads hold at once; a task makes more only where a block needs more room)."""
    return _PINNED.made


def context() -> _ThreadContext:
    ctx = getattr(_LOCAL, "ctx", None)
    if ctx is None or ctx.closed:
        setup()
        ctx = _LOCAL.ctx = _ThreadContext()
    return ctx


# --------------------------------------------------------------------------------------------
# Kernels.

_COPY_SEGMENTS = r"""
extern "C" __global__ void copy_segments(const unsigned char* __restrict__ src,
        const long long* __restrict__ src_off, const long long* __restrict__ dst_off,
        const long long* __restrict__ sizes, unsigned char* __restrict__ dst) {
    const int f = blockIdx.x;
    const unsigned char* s = src + src_off[f];
    unsigned char* d = dst + dst_off[f];
    const long long n = sizes[f];
    for (long long i = threadIdx.x; i < n; i += blockDim.x) d[i] = s[i];
}
"""


@functools.lru_cache(maxsize=1)
def _copy_segments_kernel() -> Any:
    return cp.RawKernel(_COPY_SEGMENTS, "copy_segments")


def copy_segments(
    src: Any, src_off: np.ndarray, dst: Any, dst_off: np.ndarray, sizes: np.ndarray
) -> None:
    """dst[dst_off[i]:+sizes[i]] = src[src_off[i]:+sizes[i]] for every i, in one launch."""
    if len(sizes) == 0:
        return
    args = cp.asarray(np.stack([src_off, dst_off, sizes]).astype(np.int64))
    _copy_segments_kernel()((len(sizes),), (256,), (src, args[0], args[1], args[2], dst))


_NONFINITE = r"""
template <typename U>
__device__ void tally(const U* __restrict__ bits, long long n, U exp_mask, U man_mask, U sign,
                      unsigned long long* counts) {
    unsigned long long nan = 0, pos = 0, neg = 0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const U b = bits[i];
        if ((b & exp_mask) == exp_mask) {
            if (b & man_mask) ++nan; else if (b & sign) ++neg; else ++pos;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        nan += __shfl_down_sync(0xffffffff, nan, o);
        pos += __shfl_down_sync(0xffffffff, pos, o);
        neg += __shfl_down_sync(0xffffffff, neg, o);
    }
    if ((threadIdx.x & 31) == 0 && (nan | pos | neg)) {
        atomicAdd(counts, nan); atomicAdd(counts + 1, pos); atomicAdd(counts + 2, neg);
    }
}
extern "C" __global__ void nonfinite16(const unsigned short* b, long long n,
                                       unsigned long long* c) {
    tally<unsigned short>(b, n, 0x7c00, 0x03ff, 0x8000, c);
}
extern "C" __global__ void nonfinite32(const unsigned int* b, long long n, unsigned long long* c) {
    tally<unsigned int>(b, n, 0x7f800000u, 0x007fffffu, 0x80000000u, c);
}
extern "C" __global__ void nonfinite64(const unsigned long long* b, long long n,
                                       unsigned long long* c) {
    tally<unsigned long long>(b, n, 0x7ff0000000000000ull, 0x000fffffffffffffull,
                              0x8000000000000000ull, c);
}
"""


@functools.lru_cache(maxsize=1)
def _nonfinite_module() -> Any:
    return cp.RawModule(code=_NONFINITE, options=("--std=c++17",))


def count_nonfinite(y: Any) -> Any:
    """(NaN, +inf, -inf) counts of a contiguous float array, from its bit patterns in one
    pass; a 3-element device array (read it after the stream is synchronised)."""
    bits = {2: cp.uint16, 4: cp.uint32, 8: cp.uint64}[y.dtype.itemsize]
    counts = cp.zeros(3, cp.uint64)
    n = y.size
    kernel = _nonfinite_module().get_function(f"nonfinite{8 * y.dtype.itemsize}")
    blocks = int(min(max(1, -(-n // 1024)), 132 * 32))
    kernel((blocks,), (256,), (y.view(bits).reshape(-1), np.int64(n), counts))
    return counts


_VECTOR_TEMPLATE = r"""
%(preamble)s
struct __align__(%(vin)d) vin_t { %(tin)s v[%(V)d]; };
struct __align__(%(vout)d) vout_t { %(tout)s v[%(V)d]; };
extern "C" __global__ void %(name)s(const %(tin)s* __restrict__ xs, %(tout)s* __restrict__ ys,
                                    long long n%(params)s) {
    const long long nv = n / %(V)d;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long i = first; i < nv; i += stride) {
        const vin_t a = reinterpret_cast<const vin_t*>(xs)[i];
        vout_t b;
        #pragma unroll
        for (int k = 0; k < %(V)d; ++k) {
            const %(tin)s x = a.v[k];
            %(tout)s y;
            %(body)s
            b.v[k] = y;
        }
        reinterpret_cast<vout_t*>(ys)[i] = b;
    }
    for (long long j = nv * %(V)d + first; j < n; j += stride) {
        const %(tin)s x = xs[j];
        %(tout)s y;
        %(body)s
        ys[j] = y;
    }
}
"""


class _ChainKernel:
    """One compiled kernel for a chain: vectorised 16-byte loads and stores, no FMA contraction,
    float32 subnormals kept (``kernel.CUDA_PREAMBLE``), so results match NumPy's separately
    rounded multiply and add to the bit."""

    def __init__(self, chain: Sequence[stages.BoundStage]) -> None:
        src = kernel.cuda_source(chain)
        params = "".join(
            f", const {kernel.CTYPES[v.dtype.name]} {p.split()[1]}"
            for p, v in zip(src.in_params.split(", ")[1:], src.scalars, strict=True)
        )
        # float16 scalars travel as their bits (the kernel's pl_half)
        self.scalars = tuple(v.view(np.uint16) if v.dtype == np.float16 else v for v in src.scalars)
        tin, tout = chain[0].in_dtype, chain[-1].out_dtype
        size = max(tin.itemsize, tout.itemsize)
        self.V = max(1, 16 // size)
        ctin, ctout = kernel.CTYPES[tin.name], kernel.CTYPES[tout.name]
        code = _VECTOR_TEMPLATE % dict(
            vin=self.V * tin.itemsize,
            vout=self.V * tout.itemsize,
            tin=ctin,
            tout=ctout,
            V=self.V,
            name=src.name,
            params=params,
            body=src.body.replace("\n", "\n            "),
            preamble=kernel.CUDA_PREAMBLE,
        )
        self.raw = cp.RawKernel(code, src.name, options=("-fmad=false", "--std=c++17"))
        self.align = max(self.V * tin.itemsize, self.V * tout.itemsize)

    def __call__(self, x: Any, out_dtype: np.dtype) -> Any:
        x = cp.ascontiguousarray(x)
        y = cp.empty(x.shape, dtype=out_dtype)
        n = x.size
        if n == 0:
            return y
        threads = 256
        blocks = int(min(max(1, -(-n // (self.V * threads))), 132 * 64))
        self.raw((blocks,), (threads,), (x, y, np.int64(n), *self.scalars))
        return y


_KERNELS: dict[str, _ChainKernel] = {}
_KERNEL_LOCK = threading.Lock()


def chain_kernel(chain: Sequence[stages.BoundStage]) -> _ChainKernel:
    key = repr([(s.name, s.params, s.in_dtype.str, s.out_dtype.str) for s in chain])
    with _KERNEL_LOCK:
        k = _KERNELS.get(key)
        if k is None:
            k = _KERNELS[key] = _ChainKernel(chain)
    return k


#: The stored dtypes whose CF decoding runs in :func:`unpack_kernel` (exact: NaN payloads and
#: subnormals as NumPy keeps them); float16 is decoded on the host.
_UNPACKED_FROM = frozenset(kernel.CTYPES) - {"float16"}


@functools.lru_cache(maxsize=64)
def unpack_kernel(unpacking: Unpacking, stored: np.dtype) -> tuple[Any, tuple[np.generic, ...]]:
    """The compiled kernel of :func:`pipeline.ops.kernel.unpack_source` for ``unpacking`` of
    elements stored as ``stored``, and the scalars to call it with."""
    src = kernel.unpack_source(
        stored,
        np.dtype(unpacking.dtype),
        unpacking.fill_values,
        unpacking.scale_factor,
        unpacking.add_offset,
    )
    return _elementwise(src), src.scalars


def _elementwise(src: kernel.KernelSource) -> Any:
    """``src`` compiled as a CuPy elementwise kernel, without FMA contraction, with the
    exact arithmetic helpers (``kernel.CUDA_PREAMBLE``)."""
    return cp.ElementwiseKernel(
        src.in_params,
        src.out_params,
        src.body,
        src.name,
        options=("-fmad=false",),
        preamble=kernel.CUDA_PREAMBLE,
    )


# --------------------------------------------------------------------------------------------


class GpuBackend:
    """CuPy chunks on the worker's GPU."""

    name = "gpu"
    xp = cp

    def meta(self, dtype: np.dtype, ndim: int) -> Any:
        return cp.empty((0,) * ndim, dtype=dtype)

    def prepare(self) -> None:
        context()

    def on_stream(self) -> Any:
        return context().stream  # a CuPy stream is a context manager

    def host_buffer(self, nbytes: int, slot: str) -> memoryview:
        return context().pinned_buffer(nbytes, slot).data

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype, slot: str) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return context().pinned_buffer(nbytes, slot).view(dtype).reshape(shape)

    def decode_frames(
        self,
        raw: memoryview,
        frames: Frames,
        codec: FrameCodec,
        chunk_nbytes: int,
        dtype: np.dtype,
        fill: bytes,
    ) -> Any:
        ctx = context()
        n = len(frames.sizes)
        present = frames.sizes != EMPTY
        with ctx.stream:
            out = cp.empty(n * chunk_nbytes, cp.uint8)
            if not present.all():
                _fill_bits(out, fill)
            k = int(present.sum())
            if k:
                host = np.frombuffer(raw, np.uint8)
                dev = cp.empty(host.nbytes, cp.uint8)
                idx = np.flatnonzero(present)
                offs = frames.offsets[present].astype(np.int64)
                sizes = frames.sizes[present].astype(np.int64)
                if codec == "zstd":
                    src = nvcomp.as_arrays(dev, offs.tolist(), sizes.tolist())
                    dst = nvcomp.as_arrays(out, (idx * chunk_nbytes).tolist(), [chunk_nbytes] * k)
                dev.set(host, stream=ctx.stream)
                if codec == "zstd":
                    ctx.codec.decode(
                        src, out=dst, decompression_config=ctx.decode_config(k, chunk_nbytes)
                    )
                else:
                    copy_segments(dev, offs, out, idx.astype(np.int64) * chunk_nbytes, sizes)
            ctx.stream.synchronize()
        return out.view(dtype)

    def encode_frames(
        self, flat: Any, n_chunks: int, present: np.ndarray, enc: Encoding
    ) -> tuple[list[Any], np.ndarray]:
        """Encode the present chunks on the GPU (zstd through nvCOMP, or copied as they are),
        pack the frames back to back on the device and copy them out in one piece."""
        ctx = context()
        codec = enc.codec
        with ctx.stream:
            raw = cp.ascontiguousarray(flat).view(cp.uint8).reshape(-1)
            step = raw.nbytes // n_chunks
            idx = np.flatnonzero(present).astype(np.int64)
            sizes_full = np.full(n_chunks, EMPTY, dtype=np.uint64)
            k = len(idx)
            if k == 0:
                return [], sizes_full
            if codec == "zstd" and _stores_raw(ctx, raw, idx, step, enc.raw_below):
                body, sizes = _raw_frames(raw, idx, step)
            else:
                body, sizes = _packed_frames(ctx, raw, idx, step, codec)
            total = int(sizes.sum())
            host = ctx.pinned_buffer(total, "encoded")
            body.get(out=host, stream=ctx.stream)
            ctx.stream.synchronize()
        sizes_full[idx] = sizes
        return ([host.data] if total else []), sizes_full

    def apply_chain(self, chain: Sequence[stages.BoundStage], x: Any, owned: bool = False) -> Any:
        ctx = context()
        with ctx.stream:
            y = chain_kernel(chain)(x, chain[-1].out_dtype)
            ctx.stream.synchronize()
        return y

    def unpack(self, unpacking: Unpacking, x: Any) -> Any:
        dtype = np.dtype(unpacking.dtype)
        if dtype.name not in ("float32", "float64") or x.dtype.name not in _UNPACKED_FROM:
            # float16 (stored or decoded): NumPy's decoding on the host, exact where CuPy's
            # float16 type loses NaN payloads (the H200's test of 2026-12-01: a stored
            # float16 NaN's payload became float32's canonical NaN); rare, so not fast
            return cp.asarray(unpacking.apply(cp.asnumpy(x), np))
        ctx = context()
        with ctx.stream:
            compiled, scalars = unpack_kernel(unpacking, x.dtype)
            y = compiled(x, *scalars)
            ctx.stream.synchronize()
        return y

    def count_nonfinite(self, y: Any) -> tuple[int, int, int]:
        if y.dtype.kind != "f" or y.size == 0:
            return 0, 0, 0
        ctx = context()
        with ctx.stream:
            counts = count_nonfinite(cp.ascontiguousarray(y))
            ctx.stream.synchronize()
        nan, pos, neg = (int(c) for c in counts.get(stream=ctx.stream))
        return nan, pos, neg

    def from_host(self, x: np.ndarray) -> Any:
        ctx = context()
        x = np.ascontiguousarray(x)
        if is_pinned(x):  # page-locked already: the copy engine reads it directly
            with ctx.stream:
                y = cp.empty(x.shape, x.dtype)
                y.set(x, stream=ctx.stream)
                ctx.stream.synchronize()
            return y
        with ctx.stream:
            staging = ctx.pinned_buffer(x.nbytes, "to_device")
            np.copyto(staging, x.reshape(-1).view(np.uint8))
            y = cp.empty(x.shape, x.dtype)
            y.view(cp.uint8).reshape(-1).set(staging, stream=ctx.stream)
            ctx.stream.synchronize()
        ctx.release("to_device")
        return y

    def to_host(self, x: Any, pinned: bool = False) -> np.ndarray:
        """``x`` in host memory; ``pinned``: page-locked memory from CuPy's pinned pool (so the
        copy engine writes it directly, and a later copy to the GPU is direct too)."""
        ctx = context()
        if pinned:
            with ctx.stream:
                out = empty_pinned(x.shape, x.dtype)
                cp.ascontiguousarray(x).get(out=out, stream=ctx.stream)
                ctx.stream.synchronize()
            return out
        with ctx.stream:
            x = cp.ascontiguousarray(x)
            staging = ctx.pinned_buffer(x.nbytes, "to_host")
            x.view(cp.uint8).reshape(-1).get(out=staging, stream=ctx.stream)
            ctx.stream.synchronize()
        out = np.empty(x.shape, x.dtype)
        np.copyto(out.reshape(-1).view(np.uint8), staging)
        ctx.release("to_host")
        return out

    def synchronize(self) -> None:
        context().stream.synchronize()

    def release_host_buffers(self) -> None:
        context().stream.synchronize()
        context().release()


def _packed_frames(
    ctx: _ThreadContext, raw: Any, idx: np.ndarray, step: int, codec: FrameCodec
) -> tuple[Any, np.ndarray]:
    """The chunks ``idx`` of ``raw`` (``step`` bytes each) encoded (zstd through nvCOMP, or as
    they are) and packed back to back on the device: (the packed bytes, each frame's size)."""
    k = len(idx)
    if codec == "zstd":
        slot = _slot_size(ctx, step)
        cbuf = cp.empty(slot * k, cp.uint8)
        slots = np.arange(k, dtype=np.int64) * slot
        res = ctx.codec.encode(
            nvcomp.as_arrays(raw, (idx * step).tolist(), [step] * k),
            out=nvcomp.as_arrays(cbuf, slots.tolist(), [slot] * k),
        )
        ctx.stream.synchronize()  # (encode returns once its frames are done: DESIGN.md)
        sizes = np.asarray(res.buffer_sizes, dtype=np.int64)
        src, src_off = cbuf, slots
    else:
        sizes = np.full(k, step, dtype=np.int64)
        if k * step == raw.nbytes:  # every chunk present, as it is: already packed
            return raw, sizes
        src, src_off = raw, idx * step
    dst_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    body = cp.empty(int(sizes.sum()), cp.uint8)
    copy_segments(src, src_off, body, dst_off, sizes)
    return body, sizes


def _stores_raw(
    ctx: _ThreadContext, raw: Any, idx: np.ndarray, step: int, raw_below: float | None
) -> bool:
    """Whether the frames ``idx`` of ``raw`` (``step`` bytes each) are stored as raw blocks:
    a sample of them (:func:`~pipeline.store.codecs.sample_frames`) compressed by nvCOMP saves
    less than ``raw_below`` of its bytes."""
    if not codecs.may_store_raw(step, raw_below):
        return False
    sample = codecs.sample_frames(idx)
    n = len(sample)
    slot = _slot_size(ctx, step)
    cbuf = cp.empty(slot * n, cp.uint8)
    res = ctx.codec.encode(
        nvcomp.as_arrays(raw, (sample * step).tolist(), [step] * n),
        out=nvcomp.as_arrays(cbuf, (np.arange(n) * slot).tolist(), [slot] * n),
    )
    ctx.stream.synchronize()
    return codecs.stores_raw(int(sum(res.buffer_sizes)), n * step, raw_below)


def _raw_frames(raw: Any, idx: np.ndarray, step: int) -> tuple[Any, np.ndarray]:
    """The chunks ``idx`` of ``raw`` (``step`` bytes each) as zstd frames of raw blocks
    (:func:`~pipeline.store.codecs.raw_frame`), back to back in one new device buffer:
    (the buffer, each frame's size). Two launches: the header bytes, then the data."""
    frame = codecs.raw_frame(step)
    k = len(idx)
    at = np.arange(k, dtype=np.int64)[:, None] * frame.size
    body = cp.empty(k * frame.size, cp.uint8)
    heads = cp.asarray(frame.heads)
    copy_segments(
        heads,
        np.broadcast_to(frame.head_from, (k, len(frame.head_from))).reshape(-1),
        body,
        (at + frame.head_at).reshape(-1),
        np.broadcast_to(frame.head_len, (k, len(frame.head_len))).reshape(-1),
    )
    copy_segments(
        raw,
        (idx[:, None] * step + frame.data_from).reshape(-1),
        body,
        (at + frame.data_at).reshape(-1),
        np.broadcast_to(frame.data_len, (k, len(frame.data_len))).reshape(-1),
    )
    return body, np.full(k, frame.size, dtype=np.int64)


def _slot_size(ctx: _ThreadContext, chunk_nbytes: int) -> int:
    cache = ctx.__dict__.setdefault("slots", {})
    slot = cache.get(chunk_nbytes)
    if slot is None:
        probe = cp.empty(chunk_nbytes, cp.uint8)
        slot = cache[chunk_nbytes] = (
            (ctx.codec.get_max_comp_buffer_size(nvcomp.as_array(probe)) + 15) // 16 * 16
        )
    return slot


def _fill_bits(out: Any, fill: bytes) -> None:
    """Fill a device byte buffer with repeats of one element's bytes (exact bits: a NaN
    payload or a negative zero stays as stored)."""
    width = len(fill)
    if out.nbytes % width == 0 and width in (1, 2, 4, 8):
        bits = int.from_bytes(fill, sys.byteorder)
        out.view({1: cp.uint8, 2: cp.uint16, 4: cp.uint32, 8: cp.uint64}[width]).fill(bits)
    else:
        out[:] = cp.asarray(np.resize(np.frombuffer(fill, np.uint8), out.nbytes))


class Arena:
    """The stored units of one block, read back to back into this thread's page-locked buffer
    ``slot`` (grown, keeping what it holds, when a unit does not fit), so they cross to the
    device in one copy."""

    def __init__(self, slot: str) -> None:
        self.ctx = context()
        self.slot = slot
        self.buf = self.ctx.pinned_buffer(max(1 << 20, self.ctx.sizes.get(slot, 0)), slot)
        self.used = 0

    def take(self, nbytes: int) -> memoryview:
        """Room for the next ``nbytes`` (what :meth:`Location.read_into` fills)."""
        need = self.used + nbytes
        if need > self.buf.nbytes:
            old = self.buf[: self.used].copy()
            self.buf = self.ctx.pinned_buffer(max(need, 2 * self.buf.nbytes), self.slot)
            self.buf[: self.used] = old
        view = self.buf[self.used : need]
        self.used = need
        return view.data

    def view(self) -> memoryview:
        """Every byte read so far."""
        return self.buf[: self.used].data


def is_pinned(x: np.ndarray) -> bool:
    """Whether ``x`` lives in page-locked (CUDA-registered) host memory."""
    try:
        attrs = cp.cuda.runtime.pointerGetAttributes(x.ctypes.data)
    except Exception:
        return False
    return bool(attrs.type == cp.cuda.runtime.memoryTypeHost)


def empty_pinned(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised NumPy array of ``shape`` and ``dtype`` in page-locked memory from
    CuPy's pinned pool: what ``cupyx.empty_pinned`` makes, without importing ``cupyx`` (its
    ``linalg`` loads SciPy's sparse matrices: 0.4 s of every GPU worker's start-up, measured
    with ``python -X importtime`` on the H200 host, 2026-11-30)."""
    dtype = np.dtype(dtype)
    mem = cp.cuda.alloc_pinned_memory(int(np.prod(shape)) * dtype.itemsize)
    return np.ndarray(shape, dtype=dtype, buffer=mem)


def pinned_copy(x: np.ndarray) -> np.ndarray:
    """A copy of ``x`` in page-locked memory (from CuPy's pinned pool)."""
    out = empty_pinned(x.shape, x.dtype)
    np.copyto(out, x)
    return out


def memory_in_use() -> tuple[int, int]:
    """(bytes held by CuPy's pool now, bytes the pool has reserved: its high-water mark)."""
    pool = cp.get_default_memory_pool()
    return pool.used_bytes(), pool.total_bytes()
