"""What a backend does to chunks on its device: the :class:`Backend` protocol both backends
follow, and :class:`Encoding`, how a block's frames are encoded.

A backend turns the frames of one stored unit into a flat chunk-major array on its device and
back, runs the fused stage chain, and counts non-finite values. Arrays are NumPy on the CPU
(:mod:`pipeline.devices.cpu`) and CuPy on the GPU (:mod:`pipeline.devices.gpu`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from pipeline.ops import stages
from pipeline.ops.cf import Unpacking
from pipeline.store.codecs import FrameCodec
from pipeline.store.shards import Frames

#: How a GPU worker's threads wait for the GPU: 'auto' (CUDA's default: a waiting thread
#: spins on its core while there are fewer contexts than cores) or 'block' (it sleeps until
#: the driver wakes it). See :func:`pipeline.planning.plan.gpu_wait`.
GpuWait = Literal["auto", "block"]


@dataclass(frozen=True)
class Encoding:
    """How a block's frames are encoded."""

    codec: FrameCodec
    level: int = 1
    """zstd level of the CPU encoder (nvCOMP has no levels)"""
    checksum: bool = False
    raw_below: float | None = None
    """store a unit's frames as zstd raw blocks when a sample of them compresses by less than
    this fraction of their bytes (``output.codec.store_raw_below``); None: compress them all"""


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

    def apply_chain(self, chain: Sequence[stages.BoundStage], x: Any, owned: bool = False) -> Any:
        """Run the fused chain over one block; ``owned``: ``x`` is the caller's alone, and
        may be written over (the CPU's does, where the chain keeps the dtype)."""

    def unpack(self, unpacking: Unpacking, x: Any) -> Any:
        """The values of one block of stored elements, decoded as ``unpacking`` says (a new
        array of its dtype), bit for bit what :meth:`Unpacking.apply` gives on NumPy."""

    def count_nonfinite(self, y: Any) -> tuple[int, int, int]:
        """(NaN, +inf, -inf) counts of a block."""

    def from_host(self, x: np.ndarray) -> Any:
        """A host array on the device."""

    def to_host(self, x: Any) -> np.ndarray:
        """A device array back on the host."""

    def synchronize(self) -> None:
        """Wait for this thread's device work."""

    def release_host_buffers(self) -> None:
        """A task's step is over: wait for this thread's device work, then let other steps and
        threads reuse the host buffers it took (:meth:`host_buffer`, :meth:`host_array`). On
        the GPU they go back to the worker's page-locked pool (page-locking is slow, so a
        worker makes as few as its threads hold at once); the CPU backend keeps its own."""
