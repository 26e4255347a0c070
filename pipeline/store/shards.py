"""The shard index of Zarr v3's ``sharding_indexed`` codec, and where a stored unit's frames lie.

A shard is its chunks' frames back to back, with an index at its end (or start): one
little-endian uint64 (offset, nbytes) pair per chunk, in C order over the shard's chunk grid,
``EMPTY`` in both for an absent chunk, then (by default) the index's CRC-32C. This module is the
one implementation of that index: :func:`encode_index` writes it, :func:`decode_index` reads it,
and :func:`shard_frames` finds a shard's frames through it, checked to lie inside the shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.store.grid import chunk_coordinates

#: Marks an absent inner chunk in a shard index (Zarr's sharding codec).
EMPTY = 2**64 - 1


#: What :class:`Damaged` finds wrong with a stored unit: {problem: what it means}. The kind
#: names the check that found it: the same cut zstd frame is 'frame' where the pipeline checks
#: frames before nvCOMP decodes them (the GPU path), 'codec' where the CPU codec finds it.
PROBLEMS = {
    "size": "it decodes (or declares it decodes) to other than the chunk's bytes",
    "frame": "the frame checks before decoding found it cut short (longer than the bytes "
    "stored) or malformed",
    "checksum": "its crc32c codec's checksum is missing or does not match",
    "index": "its shard index is short, fails its crc32c checksum, points outside the shard or "
    "into its index, has two chunks' bytes overlapping, or says every chunk is absent in a "
    "shard that holds bytes besides it",
    "codec": "a codec refused its bytes (a cut or malformed frame, a codec's own checksum) or "
    "decoded them to the wrong shape",
}


class Damaged(ValueError):
    """A stored chunk or shard that cannot be decoded to exactly its array; the message says
    why in a few words (the caller names the store and the key).

    Fields: ``problem`` (a key of :data:`PROBLEMS`), ``chunk`` (the index, in C order, of the
    chunk within its stored unit whose frame is bad, where the unit holds several; else None),
    ``sizes`` (for a chunk decoded whole to other than its bytes: (bytes decoded, bytes the
    metadata's dtype and chunk shape say), which tells a chunk damaged from metadata edited
    since: :func:`pipeline.store.arrays.chunk_misfit`; else None).
    """

    def __init__(
        self,
        message: str,
        problem: str,
        chunk: int | None = None,
        sizes: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message)
        assert problem in PROBLEMS, problem
        self.problem = problem
        self.chunk = chunk
        self.sizes = sizes

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.problem, self.chunk, self.sizes))


@dataclass(frozen=True)
class Frames:
    """Where the frames of one stored unit lie within its bytes."""

    offsets: np.ndarray
    """byte offset of each chunk's frame in the unit (``EMPTY`` when absent)"""
    sizes: np.ndarray
    """byte length of each frame (``EMPTY`` when absent)"""


@dataclass(frozen=True)
class ShardFormat:
    """Zarr v3's ``sharding_indexed`` codec: the index's place and whether it is checksummed."""

    index_at_end: bool
    index_crc32c: bool
    index_big_endian: bool = False
    """the index's integers big-endian (its ``bytes`` codec's ``endian``), as tensorstore and
    zarr-python may write it; the pipeline decodes such shards only through Zarr, each shard's
    index checked first (:func:`codecs.unit_check`)"""


def strip_crc32c(data: Any) -> memoryview:
    """Zarr v3's ``crc32c`` codec: the bytes followed by their CRC-32C (4 bytes, little
    endian); the bytes, once the checksum matches. Raises :class:`Damaged` otherwise."""
    import google_crc32c

    view = memoryview(data).cast("B")
    if len(view) < 4:
        raise Damaged(f"it holds {len(view)} bytes, too few for its crc32c checksum", "checksum")
    body, stored = view[:-4], bytes(view[-4:])
    if google_crc32c.value(bytes(body)).to_bytes(4, "little") != stored:  # it takes bytes only
        raise Damaged("its crc32c checksum does not match", "checksum")
    return body


#: :func:`decode_index`'s damage where the index's checksum does not match.
INDEX_CHECKSUM = "its shard index's crc32c checksum does not match"


def index_nbytes(n_chunks: int, crc32c: bool = True) -> int:
    """Bytes of the index of a shard of ``n_chunks`` chunks."""
    return 16 * n_chunks + (4 if crc32c else 0)


def encode_index(offsets: np.ndarray, sizes: np.ndarray) -> bytes:
    """Index bytes (with their CRC-32C) for a shard whose chunk ``i`` (C order over the chunk
    grid) sits at ``offsets[i]`` with ``sizes[i]`` bytes; ``EMPTY`` in both marks an absent
    chunk."""
    import google_crc32c

    raw = np.stack([offsets, sizes], axis=-1).astype("<u8").tobytes()
    return raw + google_crc32c.value(raw).to_bytes(4, "little")


def encode_shard(frames: list[Any], shard: ShardFormat) -> bytes:
    """A shard of the chunks' ``frames`` (bytes-like each, in C order over the shard's chunk
    grid; None for an absent chunk) back to back, with its index laid out as ``shard`` says
    (at its end or start, with a crc32c checksum or not, its integers little or big endian):
    what Zarr's sharding codec reads as those chunks."""
    import google_crc32c

    n = len(frames)
    k = index_nbytes(n, shard.index_crc32c)
    offsets = np.full(n, EMPTY, np.uint64)
    sizes = np.full(n, EMPTY, np.uint64)
    at = 0 if shard.index_at_end else k
    for i, frame in enumerate(frames):
        if frame is not None:
            size = len(memoryview(frame).cast("B"))
            offsets[i], sizes[i] = at, size
            at += size
    table = np.stack([offsets, sizes], axis=-1)
    index = table.astype(">u8" if shard.index_big_endian else "<u8").tobytes()
    if shard.index_crc32c:
        index += google_crc32c.value(index).to_bytes(4, "little")
    body = b"".join(memoryview(f).cast("B") for f in frames if f is not None)
    return body + index if shard.index_at_end else index + body


def decode_index(
    raw: Any, n_chunks: int, crc32c: bool = True, big_endian: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, sizes) from index bytes (uint64 each, little-endian unless ``big_endian``).
    Raises :class:`Damaged` when the index is not :func:`index_nbytes` long or its checksum
    does not match."""
    view = memoryview(raw).cast("B")
    want = index_nbytes(n_chunks, crc32c)
    if len(view) != want:
        raise Damaged(f"its shard index is {len(view)} bytes, not {want}", "index")
    try:
        body = strip_crc32c(view) if crc32c else view
    except Damaged:
        raise Damaged(INDEX_CHECKSUM, "index") from None
    table = np.frombuffer(body, ">u8" if big_endian else "<u8").reshape(n_chunks, 2)
    return table[:, 0].astype(np.uint64), table[:, 1].astype(np.uint64)


def shard_frames(
    raw: Any,
    n_chunks: int,
    shard: ShardFormat,
    grid: tuple[int, ...] | None = None,
    axes: tuple[int, ...] | None = None,
) -> Frames:
    """Where each inner chunk's bytes lie in a shard (``EMPTY`` for absent chunks), from its
    index; raises :class:`Damaged` ('index') for an index that is missing, fails its checksum,
    points outside the shard's chunk bytes, gives two chunks overlapping bytes
    (:func:`_overlapping`), or says every chunk is absent in a shard that holds bytes besides
    its index (:func:`_all_absent`), naming the inner chunk whose entry is wrong by its
    coordinates in the shard's chunk grid ``grid`` (``n_chunks`` chunks; None: by its index in
    C order), as the damage lines of its frames name it: in the array's axes, where ``axes``
    says which array axis each of the grid's is (a shard stored transposed:
    :func:`~pipeline.store.grid.chunk_coordinates`). Unused bytes between frames are
    allowed, as the sharding specification allows them (an append-only writer leaves them)."""
    size = len(memoryview(raw).cast("B")) if raw is not None else 0
    k = index_nbytes(n_chunks, shard.index_crc32c)
    if size < k:
        raise Damaged(f"the shard holds {size} bytes, fewer than its {k}-byte index", "index")
    view = memoryview(raw).cast("B")
    index = view[size - k :] if shard.index_at_end else view[:k]
    try:
        offsets, sizes = decode_index(index, n_chunks, shard.index_crc32c, shard.index_big_endian)
    except Damaged as e:
        if not shard.index_at_end or str(e) != INDEX_CHECKSUM:
            raise
        # the index is its last bytes: a shard cut short is read as an index of other bytes,
        # which had been said as a checksum that does not match, no more
        raise Damaged(
            f"{INDEX_CHECKSUM}: the shard ({size} bytes) was cut short, or its index (its last "
            f"{k} bytes) altered",
            "index",
        ) from None
    check_frames(offsets, sizes, size, k, shard, grid, axes)
    return Frames(offsets, sizes)


def check_frames(
    offsets: np.ndarray,
    sizes: np.ndarray,
    size: int,
    k: int,
    shard: ShardFormat,
    grid: tuple[int, ...] | None = None,
    axes: tuple[int, ...] | None = None,
) -> None:
    """Raise :class:`Damaged` ('index') where a shard's decoded index (``offsets``,
    ``sizes``: :func:`decode_index`) does not fit the shard of ``size`` bytes whose index is
    ``k`` bytes (:func:`shard_frames`' checks, with no need of the shard's bytes: the plan
    reads only its index and its size, h73b)."""
    absent = (offsets == EMPTY) & (sizes == EMPTY)
    lo, hi = (0, size - k) if shard.index_at_end else (k, size)
    present = ~absent
    if not present.any():
        _all_absent(size, k)
    else:
        off, n = offsets[present], sizes[present]
        bad = (off < lo) | (n > hi - off) | (off > hi)
        if bad.any():
            first = int(np.flatnonzero(present)[np.flatnonzero(bad)[0]])
            o, n_first = int(offsets[first]), int(sizes[first])
            at = (size - k, size) if shard.index_at_end else (0, k)
            where = f"{_chunk_named(first, grid, axes)}: offset {o}, {n_first} bytes"
            if o + n_first <= size and o < at[1] and o + n_first > at[0]:  # in the shard
                raise Damaged(  # review 41: it had said "outside the shard"
                    f"its shard index points into the shard's own index ({where}, over the "
                    f"{k}-byte index at bytes {at[0]}..{at[1]} of {size})",
                    "index",
                    chunk=first,
                )
            raise Damaged(
                f"its shard index points outside the shard ({where}, of {size})",
                "index",
                chunk=first,
            )
        _overlapping(offsets, sizes, np.flatnonzero(present), grid, axes)


def _chunk_named(i: int, grid: tuple[int, ...] | None, axes: tuple[int, ...] | None = None) -> str:
    """The inner chunk ``i`` (its index in C order) in a damage line: by its coordinates in
    the shard's chunk grid ``grid`` (``inner chunk [0, 1]``), in the array's axes where
    ``axes`` is given (:func:`~pipeline.store.grid.chunk_coordinates`), or ``chunk i`` where
    ``grid`` is None."""
    if grid is None:
        return f"chunk {i}"
    return f"inner chunk {chunk_coordinates(i, grid, axes)}"


def _all_absent(size: int, k: int) -> None:
    """Raise :class:`Damaged` ('index') for a shard of ``size`` bytes whose ``k``-byte index
    says every chunk is absent while it holds bytes besides the index. No writer makes one:
    zarr-python (``write_empty_chunks`` false or true), tensorstore and zarrs delete a shard
    whose chunks all read as the fill value, or store those chunks. Such a shard is damaged
    (its index overwritten, or never written over the chunks a writer stopped midway had
    written), and zarr-python reads every chunk of it as the fill value, without an error."""
    if size > k:
        raise Damaged(
            f"its shard index says every chunk is absent, but the shard holds {size - k} bytes "
            f"besides its {k}-byte index",
            "index",
        )


def _overlapping(
    offsets: np.ndarray,
    sizes: np.ndarray,
    present: np.ndarray,
    grid: tuple[int, ...] | None,
    axes: tuple[int, ...] | None = None,
) -> None:
    """Raise :class:`Damaged` ('index') where the index gives two of the ``present`` chunks
    (their indices, in C order) bytes that overlap, other than one frame named twice (the same
    offset and size, as a writer storing equal chunks once may write). No writer lays frames
    over one another (zarr-python, tensorstore and zarrs write each chunk's frame after the
    last): such an index is damaged, and zarr-python reads the chunks from the bytes it points
    to without an error (an uncompressed chunk from the bytes of others). The chunks are named
    as :func:`_chunk_named` names them in ``grid`` (and ``axes``)."""
    if len(present) < 2:
        return
    off, n = offsets[present], sizes[present]
    order = np.lexsort((n, off))
    so, sn = off[order], n[order]
    reach = np.maximum.accumulate(so + sn)[:-1]  # the furthest any frame before each one ends
    twice = (so[1:] == so[:-1]) & (sn[1:] == sn[:-1])
    bad = (so[1:] < reach) & ~twice
    if bad.any():
        j = int(np.flatnonzero(bad)[0]) + 1
        later = int(present[order[j]])
        # the frame before it in offset order that reaches furthest: one it overlaps
        earlier = int(present[order[int(np.argmax(so[:j] + sn[:j]))]])
        a, b = sorted((earlier, later))
        na, nb = _chunk_named(a, grid, axes), _chunk_named(b, grid, axes)
        both = f"{na.replace('chunk', 'chunks', 1)} and {nb.rsplit('chunk ', 1)[1]}"
        raise Damaged(
            f"its shard index gives {both} overlapping bytes ({na}: offset "
            f"{int(offsets[a])}, {int(sizes[a])} bytes; {nb}: offset {int(offsets[b])}, "
            f"{int(sizes[b])} bytes)",
            "index",
            chunk=later,
        )


def unit_frames(
    raw: Any,
    n_chunks: int,
    shard: ShardFormat | None,
    grid: tuple[int, ...] | None = None,
    axes: tuple[int, ...] | None = None,
) -> Frames:
    """Where each chunk's bytes lie in a stored unit (``raw`` None: the unit is absent, so
    every chunk is); ``grid``: a shard's chunk grid, which names the inner chunk whose index
    entry is wrong (:func:`shard_frames`), in the array's axes ``axes`` (where the shard is
    stored transposed)."""
    if raw is None:
        empty = np.full(n_chunks, EMPTY, dtype=np.uint64)
        return Frames(empty, empty.copy())
    if shard is None:
        n = len(memoryview(raw).cast("B"))
        return Frames(np.zeros(1, np.uint64), np.array([n], np.uint64))
    return shard_frames(raw, n_chunks, shard, grid, axes)
