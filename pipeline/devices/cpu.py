"""The CPU backend: NumPy chunks, zstd through numcodecs, the chain in cache-sized pieces."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from pipeline.devices.base import Encoding
from pipeline.ops import stages
from pipeline.ops.cf import Unpacking
from pipeline.store import codecs
from pipeline.store.shards import EMPTY


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
        """Encode the present chunks of a flat chunk-major array with numcodecs (see
        :func:`encode_on_host`); (byte parts of the frames in order, every chunk's size,
        ``EMPTY`` where absent). zstd frames are packed into this thread's reused buffer
        (slot 'encoded', as the GPU's pinned one): valid until its next call here."""
        raw = np.ascontiguousarray(flat).view(np.uint8).reshape(-1)
        step = raw.nbytes // n_chunks
        idx = np.flatnonzero(present)
        into = None
        if enc.codec == "zstd" and len(idx):
            into = np.frombuffer(self.host_buffer(len(idx) * zstd_bound(step), "encoded"), np.uint8)
        parts, sizes = encode_on_host(raw, step, idx, enc, into)
        full = np.full(n_chunks, EMPTY, dtype=np.uint64)
        full[idx] = sizes
        return parts, full

    def apply_chain(
        self, chain: Sequence[stages.BoundStage], x: np.ndarray, owned: bool = False
    ) -> np.ndarray:
        """The chain over ``x``; written over ``x`` itself where it is ``owned`` (the task's
        own block, read by it and not kept by anything else), C-contiguous and writable and
        the chain keeps its dtype: no second block allocated and paged in (each element is
        read before its result is written, piece by piece: bit for bit the same values)."""
        dtype = chain[-1].out_dtype
        if owned and x.dtype == dtype and x.flags.c_contiguous and x.flags.writeable:
            stages.apply_chain_blocked(chain, x, x)
            return x
        out = np.empty(x.shape, dtype=dtype)
        stages.apply_chain_blocked(chain, np.ascontiguousarray(x), out)
        return out

    def unpack(self, unpacking: Unpacking, x: np.ndarray) -> np.ndarray:
        return unpacking.apply(x, np)

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

    def release_host_buffers(self) -> None:
        pass  # plain memory, cheap to keep: each thread reuses its own


def zstd_bound(nbytes: int) -> int:
    """The most bytes a zstd frame of ``nbytes`` takes (zstd's ``ZSTD_COMPRESSBOUND``)."""
    small = ((128 << 10) - nbytes) >> 11 if nbytes < (128 << 10) else 0
    return nbytes + (nbytes >> 8) + small


def encode_on_host(
    raw: np.ndarray, step: int, idx: np.ndarray, enc: Encoding, into: np.ndarray | None = None
) -> tuple[list[Any], np.ndarray]:
    """Encode frames ``idx`` of a flat byte buffer on the CPU (frame ``i`` at ``i * step``);
    (byte parts of the frames in order, each frame's size).

    ``into`` (bytes, at least ``len(idx) *`` :func:`zstd_bound` ``(step)``): where the zstd
    frames are packed back to back as each is made, one part returned for them all. Each
    frame numcodecs returns is then freed at once and its memory is the next one's; kept
    until the unit was written, a unit's frames (about the block's size) had been new memory
    for every block, paged in a page at a time (the 2-core machine, 2026-12-07, v3 zstd
    input, 192 MB blocks: 108,000 page faults a run of 800 MB, 2,000 with it; the encode's
    CPU 1.58 s against 1.34, see benchmarks/RESULTS.md).

    With ``enc.raw_below``, a sample of the frames (:func:`~pipeline.store.codecs.sample_frames`)
    is compressed first; where it saves less than that fraction, every frame is stored as a
    zstd frame of raw blocks (:func:`~pipeline.store.codecs.raw_frame`) instead."""
    z = _zstd(enc.level, enc.checksum) if enc.codec == "zstd" else None
    parts: list[Any] = []
    sizes = np.empty(len(idx), dtype=np.uint64)
    sampled: dict[int, Any] = {}  # the sample's frames, compressed: not compressed again
    if z is not None and codecs.may_store_raw(step, enc.raw_below) and len(idx):
        sample = codecs.sample_frames(idx)
        sampled = {int(i): z.encode(raw[i * step : (i + 1) * step]) for i in sample}
        packed = sum(len(sampled[int(i)]) for i in sample)
        if codecs.stores_raw(packed, len(sample) * step, enc.raw_below):
            frame = codecs.raw_frame(step)
            for i in idx:
                parts.extend(frame.parts(raw[i * step : (i + 1) * step]))
            sizes[:] = frame.size
            return parts, sizes
    at = 0  # bytes packed into ``into``
    for j, i in enumerate(idx):
        data = sampled.pop(int(i), None)
        if data is None:
            piece = raw[i * step : (i + 1) * step]
            data = z.encode(piece) if z is not None else piece
        n = len(data)
        sizes[j] = n
        if into is not None and z is not None:
            if at + n <= into.size:
                into[at : at + n] = np.frombuffer(data, np.uint8)
                at += n
                continue
            if at:  # a frame past the bound (never): the frames packed so far come first
                parts.append(into[:at].data)
            into, at = None, 0
        parts.append(data)
    if into is not None and at:
        parts.append(into[:at].data)
    return parts, sizes


@functools.lru_cache(maxsize=64)
def _zstd(level: int, checksum: bool) -> Any:
    import numcodecs

    return numcodecs.Zstd(level=level, checksum=checksum)
