"""The NumPy/CuPy choice, made in one place: what a backend does to chunks on its device.

A backend turns the frames of one stored unit into a flat chunk-major array on its device and
back, runs the fused stage chain, and counts non-finite values. ``get(name)`` returns the
process-wide instance; CuPy is imported only by the GPU backend (:mod:`pipeline.gpu`), so a
CPU-only install never touches it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np

from pipeline.ops import stages
from pipeline.store.codecs import FrameCodec
from pipeline.store.shards import EMPTY, Frames


@dataclass(frozen=True)
class Encoding:
    """How a block's frames are encoded."""

    codec: FrameCodec
    level: int = 1
    """zstd level of the CPU encoder (nvCOMP has no levels)"""
    checksum: bool = False


class Backend(Protocol):
    """What both backends provide. Arrays are NumPy on the CPU and CuPy on the GPU."""

    name: str
    xp: Any
    """the array module: numpy or cupy"""

    def meta(self, dtype: np.dtype, ndim: int) -> Any:
        """An empty array of the backend's chunk type, for Dask's ``meta=``."""

    def prepare(self) -> None:
        """Make this thread ready (on the GPU: its own stream and codec)."""

    def on_stream(self) -> AbstractContextManager[Any]:
        """Inside this block, the thread's device work is queued on its own stream (on the GPU;
        nothing on the CPU). Each task's GPU work runs inside one: CuPy 14 makes the default
        stream current again whenever any ``with stream:`` block exits, so a stream made
        current once (``Stream.use()``) does not last, and work left on the default stream is
        not ordered with the thread's non-blocking stream."""

    def host_buffer(self, nbytes: int, slot: str) -> memoryview:
        """A reusable host buffer of this thread (page-locked on the GPU backend)."""

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype, slot: str) -> np.ndarray:
        """A host array the CPU decodes a block into, before :meth:`from_host` (on the GPU a
        reused page-locked buffer of this thread, so the copy to the device is direct)."""

    def decode_frames(
        self,
        raw: memoryview,
        frames: Frames,
        codec: FrameCodec,
        chunk_nbytes: int,
        dtype: np.dtype,
        fill: bytes,
    ) -> Any:
        """GPU only: decode checked frames (see :func:`pipeline.store.codecs.check_frames`) into one
        flat chunk-major array on the device; absent chunks hold ``fill`` (one element's
        bytes)."""

    def encode_frames(
        self, flat: Any, n_chunks: int, present: np.ndarray, enc: Encoding
    ) -> tuple[list[Any], np.ndarray]:
        """Encode a flat chunk-major array; (host byte parts of the frames in order, sizes)."""

    def apply_chain(self, chain: Sequence[stages.BoundStage], x: Any) -> Any:
        """Run the fused chain over one block."""

    def count_nonfinite(self, y: Any) -> tuple[int, int, int]:
        """(NaN, +inf, -inf) counts of a block."""

    def from_host(self, x: np.ndarray) -> Any:
        """A host array on the device."""

    def to_host(self, x: Any) -> np.ndarray:
        """A device array back on the host."""

    def synchronize(self) -> None:
        """Wait for this thread's device work."""


# --------------------------------------------------------------------------------------------


class CpuBackend:
    """NumPy chunks; zstd through numcodecs; the chain in cache-sized pieces."""

    name = "cpu"
    xp = np

    def __init__(self) -> None:
        self._local = threading.local()

    def meta(self, dtype: np.dtype, ndim: int) -> np.ndarray:
        return np.empty((0,) * ndim, dtype=dtype)

    def prepare(self) -> None:
        pass

    def on_stream(self) -> AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def host_buffer(self, nbytes: int, slot: str) -> memoryview:
        bufs = self._local.__dict__.setdefault("bufs", {})
        buf = bufs.get(slot)
        if buf is None or buf.nbytes < nbytes:
            buf = np.empty(max(nbytes, 1), np.uint8)
            bufs[slot] = buf
        return buf.data[:nbytes]

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype, slot: str) -> np.ndarray:
        return np.empty(shape, dtype)  # the block travels on to the stages: never reused

    def encode_frames(
        self, flat: np.ndarray, n_chunks: int, present: np.ndarray, enc: Encoding
    ) -> tuple[list[Any], np.ndarray]:
        raw = np.ascontiguousarray(flat).view(np.uint8).reshape(-1)
        step = raw.nbytes // n_chunks
        idx = np.flatnonzero(present)
        parts, sizes = encode_on_host(raw, step, idx, enc)
        full = np.full(n_chunks, EMPTY, dtype=np.uint64)
        full[idx] = sizes
        return parts, full

    def apply_chain(self, chain: Sequence[stages.BoundStage], x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, dtype=chain[-1].out_dtype)
        stages.apply_chain_blocked(chain, np.ascontiguousarray(x), out)
        return out

    def count_nonfinite(self, y: np.ndarray) -> tuple[int, int, int]:
        if y.dtype.kind != "f" or y.size == 0:
            return 0, 0, 0
        flat = np.ascontiguousarray(y).reshape(-1)
        step = max(1, stages.PIECE_BYTES // y.dtype.itemsize)  # no large temporaries
        nan = pos = neg = 0
        for i in range(0, flat.size, step):
            piece = flat[i : i + step]
            if np.isfinite(piece).all():
                continue
            nan += int(np.count_nonzero(np.isnan(piece)))
            pos += int(np.count_nonzero(np.isposinf(piece)))
            neg += int(np.count_nonzero(np.isneginf(piece)))
        return nan, pos, neg

    def from_host(self, x: np.ndarray) -> np.ndarray:
        return x

    def to_host(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def synchronize(self) -> None:
        pass


def encode_on_host(
    raw: np.ndarray, step: int, idx: np.ndarray, enc: Encoding
) -> tuple[list[Any], np.ndarray]:
    """Encode frames ``idx`` of a flat byte buffer on the CPU (frame ``i`` at ``i * step``);
    (frames in order, their sizes)."""
    z = _zstd(enc.level, enc.checksum) if enc.codec == "zstd" else None
    parts: list[Any] = []
    sizes = np.empty(len(idx), dtype=np.uint64)
    for j, i in enumerate(idx):
        piece = raw[i * step : (i + 1) * step]
        data = z.encode(piece) if z is not None else piece
        parts.append(data)
        sizes[j] = len(data)
    return parts, sizes


@functools.lru_cache(maxsize=64)
def _zstd(level: int, checksum: bool) -> Any:
    import numcodecs

    return numcodecs.Zstd(level=level, checksum=checksum)


# --------------------------------------------------------------------------------------------
# Choosing a backend.


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """(usable, reason): whether the GPU backend can run here, and why not when it cannot."""
    if os.environ.get("PIPELINE_DISABLE_GPU"):
        return False, "PIPELINE_DISABLE_GPU is set"
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install
        return (
            False,
            f"CuPy is not installed ({type(e).__name__}); pip install '.[cu12]' or '.[cu13]'",
        )
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return False, f"no usable CUDA device ({type(e).__name__}: {e})"
    if n == 0:
        return False, "no CUDA device is visible"
    try:
        import nvidia.nvcomp  # noqa: F401
    except Exception:
        return False, "nvCOMP is not installed (pip install nvidia-nvcomp-cu12 or -cu13)"
    return True, f"{n} CUDA device(s) visible"


_INSTANCES: dict[str, Backend] = {}
_LOCK = threading.Lock()


def get(name: str) -> Backend:
    """The process-wide backend called ``name`` ('cpu' or 'gpu')."""
    with _LOCK:
        inst: Backend | None = _INSTANCES.get(name)
        if inst is None:
            if name == "gpu":
                from pipeline.gpu import GpuBackend

                inst = cast(Backend, GpuBackend())
            else:
                inst = cast(Backend, CpuBackend())
            _INSTANCES[name] = inst
    return inst
