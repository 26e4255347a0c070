"""Stored chunks decoded from their bytes, by the codec chain their metadata names.

Zarr names every codec by its spec name and configuration: v3 arrays list ``codecs``
(``transpose``, ``bytes``, ``zstd``, ``blosc``, ``gzip``, ``crc32c``, ``numcodecs.*``, and
``sharding_indexed`` around an inner chain), v2 arrays a numcodecs ``compressor`` and
``filters``. :func:`v3_format` and :func:`v2_format` map such a chain, read from the metadata
document (by spec name and configuration, never by Python class), onto numcodecs
implementations; :meth:`ChunkFormat.decode_into` turns one
stored chunk's bytes into exactly its array with zarr-python's semantics, in the calling thread
(numcodecs releases the GIL while it decompresses), or raises :class:`Damaged` saying why.
A chain this module does not know gives ``None``: the caller reads such arrays through Zarr.

Every step is checked, so a damaged chunk can never pass as data: each decoded chunk must have
exactly its size (a short frame, a truncated file or a 0-byte file fail), crc32c checksums must
match, and a shard index must point inside its shard (the index is read by
:mod:`pipeline.store.shards`). :func:`check_frames` checks zstd frames before a GPU decodes them.
No check refuses what numcodecs, and so zarr-python, decodes to the chunk: bytes after a Blosc
frame, zstd's skippable frames, zstd frames back to back are read as numcodecs reads them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.errors import cause
from pipeline.store.grid import Shape, chunk_coordinates, chunks_per_unit
from pipeline.store.shards import (
    EMPTY,
    Damaged,
    Frames,
    ShardFormat,
    encode_shard,
    strip_crc32c,
    unit_frames,
)

#: How the pipeline itself encodes and decodes a chunk: one zstd frame, or the raw bytes.
FrameCodec = Literal["zstd", "none"]

#: A CRC-32C of the bytes, 4 bytes little endian after them: Zarr v3's ``crc32c`` codec, and
#: numcodecs' ``CRC32C`` with its checksum at the end (the same bytes). Checked here, by
#: :func:`~pipeline.store.shards.strip_crc32c`; numcodecs' with its checksum at the start keeps
#: its own configuration and is decoded by numcodecs.
CRC32C = '{"id": "crc32c"}'


@dataclass(frozen=True)
class ChunkFormat:
    """How one stored chunk's bytes become its array (an inner chunk, for sharded arrays)."""

    shape: Shape
    """the chunk's shape"""
    stored: str
    """the dtype as stored (``'>f4'`` for big-endian data); decoded chunks are in native order"""
    codecs: tuple[str, ...]
    """bytes-to-bytes codecs in encode order, each a numcodecs configuration as JSON (the
    v2 compressor is the last; :data:`CRC32C` is a crc32c checksum at the end)"""
    filters: tuple[str, ...] = ()
    """v2 filters in encode order (numcodecs configurations as JSON)"""
    transpose: tuple[int, ...] | None = None
    """v3 ``transpose`` codec's order (the encoder stores ``chunk.transpose(order)``)"""
    order: str = "C"
    """v2 memory order of a chunk's elements: 'C' or 'F'"""

    @property
    def dtype(self) -> np.dtype:
        """The decoded chunk's dtype: the stored dtype in native byte order."""
        d = np.dtype(self.stored)
        return d.newbyteorder("=") if d.byteorder not in ("=", "|") else d

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.stored).itemsize

    @property
    def plain(self) -> bool:
        """True when a chunk's decoded bytes are the chunk in C order and native byte order:
        no filters, no transposition, and only zstd or no compressor (what the GPU decodes)."""
        return (
            not self.filters
            and self.transpose is None
            and (self.order == "C" or _single_axis(self.shape))
            and np.dtype(self.stored) == self.dtype
            and self.frame_codec is not None
        )

    @property
    def frame_codec(self) -> str | None:
        """'zstd' or 'none' when the bytes-to-bytes chain is one zstd codec or empty."""
        if not self.codecs:
            return "none"
        if len(self.codecs) == 1 and _codec_id(self.codecs[0]) == "zstd":
            return "zstd"
        return None

    @property
    def costly_decode(self) -> bool:
        """Whether a codec of the chain decodes at under about 1 GB/s a core: zstd,
        zlib, gzip, lzma or bz2, or Blosc around one of them (Blosc's lz4 decodes at
        3.40 GB/s a core, zstd frames of zarr-python 3's default at 0.80; 15 MiB chunks of
        the benchmark's field, the H200 host, 2026-12-01)."""
        slow = {"zstd", "zlib", "gzip", "lzma", "bz2"}
        for config in (*self.filters, *self.codecs):  # a v2 compressor may be written as a filter
            c = json.loads(config)
            if c.get("id") in slow or (c.get("id") == "blosc" and c.get("cname") in slow):
                return True
        return False

    @property
    def in_place(self) -> bool:
        """Whether a chunk decodes straight into its place in a C-contiguous destination:
        no filters or transposition, C order, and after any trailing checksums at most one
        compressor that declares its decoded size (zstd, blosc). Else it is decoded into a
        new array and copied."""
        if self.filters or self.transpose is not None:
            return False
        if self.order != "C" and not _single_axis(self.shape):
            return False
        ids = [_codec_id(c) for c in self._without_trailing_checksums()]
        return ids in ([], ["zstd"], ["blosc"])

    @property
    def raw(self) -> bool:
        """Whether a chunk is stored as its bytes (no filters, no compressor; a trailing
        checksum at most), so that a stored chunk of another length was cut short or added
        to: it is no decoding that gives another size."""
        return not self.filters and not self._without_trailing_checksums()

    def _without_trailing_checksums(self) -> list[str]:
        """The codecs left once the checksums applied last (outermost) are taken off."""
        codecs = list(self.codecs)
        while codecs and codecs[-1] == CRC32C:
            codecs.pop()
        return codecs

    def decode_into(self, raw: Any, dest: np.ndarray) -> None:
        """Decode one stored chunk's bytes into ``dest`` (the chunk's shape and
        :attr:`dtype`; any strides). Raises :class:`Damaged` when the bytes do not decode to
        exactly the chunk, and numcodecs' ``UnknownCodecError`` as it is where a codec of the
        chain has no implementation in this process (:func:`is_unknown_codec`)."""
        with _codec_errors_as_damage():
            if self._fast_into(raw, dest):
                return
            dest[...] = self._decoded(raw)

    def decode(self, raw: Any) -> np.ndarray:
        """One stored chunk's bytes as its array (a new array of the chunk's shape, native byte
        order): how an edge chunk, stored whole and partly outside the array, is read. Raises
        :class:`Damaged` and ``UnknownCodecError`` as :meth:`decode_into` does (a codec's
        own error, a cut zstd frame's ``RuntimeError``, had come out as it was, a line naming
        neither the store nor the chunk)."""
        with _codec_errors_as_damage():
            return self._decoded(raw)

    def _decoded(self, raw: Any) -> np.ndarray:
        """:meth:`decode` without its errors turned into :class:`Damaged`."""
        data: Any = raw
        for config in reversed(self.codecs):
            data = _decode_bytes(config, data)
        # a filter's arithmetic over stored inf and NaN (Delta's running sum: inf + -inf) gives
        # what Zarr reads too; NumPy's warning about it is not the run's to print (see
        # ignore_filter_arithmetic_warnings for Zarr's own decoding threads)
        with np.errstate(all="ignore"):
            for config in reversed(self.filters):  # a v2 Blosc filter's frame checked too
                data = _decode_bytes(config, data, filter=True)
        if self.raw:  # stored as it is: its length is the chunk's, or it was cut or added to
            from numcodecs.compat import ensure_ndarray_like

            _check_size(ensure_ndarray_like(data).nbytes, self.nbytes, raw=True)
        arr = _as_array(data, np.dtype(self.stored), self.nbytes)
        if arr.size != math.prod(self.shape):
            _check_size(arr.size * arr.dtype.itemsize, self.nbytes)
        if self.transpose is not None:
            stored_shape = tuple(self.shape[i] for i in self.transpose)
            arr = arr.reshape(stored_shape).transpose(np.argsort(self.transpose))
        else:
            arr = arr.reshape(-1, order="A").reshape(self.shape, order=self.order)  # type: ignore[call-overload]
        return arr.astype(self.dtype, copy=False)

    def _fast_into(self, raw: Any, dest: np.ndarray) -> bool:
        """Decode straight into ``dest`` when nothing but one known compressor (after any
        checksums) stands between the bytes and the chunk; False when that does not apply."""
        if not self.in_place or not dest.flags.c_contiguous:
            return False
        data: Any = raw
        codecs = self._without_trailing_checksums()
        for _ in range(len(self.codecs) - len(codecs)):
            data = strip_crc32c(data)
        out = dest.reshape(-1).view(np.uint8)
        if not codecs:
            _check_size(len(memoryview(data).cast("B")), self.nbytes, raw=not self.filters)
            out[:] = np.frombuffer(data, np.uint8)
        else:
            codec_id = _codec_id(codecs[0])
            size = _content_size(codec_id, data)
            if size is None or (codec_id == "zstd" and size < self.nbytes):
                return False  # numcodecs decides, as for zarr-python (see _content_size)
            _check_size(size, self.nbytes)
            _decoded_by(codec_id, _codec(codecs[0]), data, out=out)
        if np.dtype(self.stored) != self.dtype:
            dest.view(np.dtype(self.stored)).byteswap(inplace=True)
        return True


@contextlib.contextmanager
def _codec_errors_as_damage() -> Iterator[None]:
    """A codec's error decoding a stored chunk as :class:`Damaged` ('codec'); numcodecs'
    ``UnknownCodecError`` passes as it is (no implementation here: no bytes are damaged, the
    caller says so)."""
    try:
        yield
    except Damaged:
        raise
    except Exception as e:  # codecs raise RuntimeError, ValueError, zlib.error, ...
        if not_installed(e):
            raise
        raise Damaged(cause(e), "codec") from None


def _single_axis(shape: Shape) -> bool:
    """At most one axis longer than 1: C and F order lay the elements out alike."""
    return sum(1 for s in shape if s != 1) <= 1


def _check_size(got: int, want: int, raw: bool = False) -> None:
    if got != want:
        raise Damaged(size_damage(got, want, raw), "size", sizes=(got, want))


def size_damage(got: int, want: int, raw: bool = False) -> str:
    """The damage of a stored chunk that decodes to ``got`` bytes where it holds ``want``:
    for a ``raw`` one (stored as its bytes, no compressor: :attr:`ChunkFormat.raw`), that it
    was cut short (truncated) or added to, its length and a raw chunk's; a raw chunk cut short
    had been said to "decode to 100 bytes", as if a codec had decoded it."""
    if not raw:
        return f"it decodes to {got} bytes, not the chunk's {want}"
    if got < want:
        return f"it is cut short: {got} bytes where an uncompressed chunk is {want}"
    return f"it holds bytes past its end: {got} where an uncompressed chunk is {want}"


def _as_array(data: Any, stored: np.dtype, want: int) -> np.ndarray:
    """numcodecs' output as an array of the stored dtype (zarr-python's V2Codec does the same:
    a view as the array's dtype); ``want``: the chunk's bytes, said where the output holds no
    whole number of elements."""
    from numcodecs.compat import ensure_ndarray_like

    arr = ensure_ndarray_like(data)
    if arr.dtype != stored:
        if arr.nbytes % stored.itemsize:
            raise Damaged(
                f"it decodes to {arr.nbytes} bytes, not a whole number of {stored} elements",
                "size",
                sizes=(arr.nbytes, want),
            )
        arr = arr.reshape(-1).view(stored)
    return np.asarray(arr)


@functools.lru_cache(maxsize=256)
def _codec(config: str) -> Any:
    """The numcodecs codec of a configuration (cached: codecs are stateless for decoding)."""
    import numcodecs

    return numcodecs.get_codec(json.loads(config))


@functools.lru_cache(maxsize=256)
def _codec_id(config: str) -> str:
    """The codec id of a numcodecs configuration (JSON), parsed once per configuration: it is
    asked for each chunk decoded (:meth:`ChunkFormat.decode_into`, :func:`check_unit`), where
    parsing it each time cost 8 of the 35 us a 4 KB chunk of ``bytes``, ``blosc``, ``zstd``
    took to decode, and a 200 MB store of such chunks 1.67 s of read CPU time against 2.0-2.1
    s (the CPU backend, 2 cores, 2026-12-04)."""
    return str(json.loads(config)["id"])


def _decode_bytes(config: str, data: Any, filter: bool = False) -> Any:
    """``data`` decoded by the numcodecs codec ``config`` (JSON; :data:`CRC32C` checked here),
    a v2 filter's where ``filter``; raises :class:`Damaged` in the run's words where the codec
    refuses the bytes (:func:`_refused`), numcodecs' ``UnknownCodecError`` as it is."""
    if config == CRC32C:
        return strip_crc32c(data)
    codec_id = _codec_id(config)
    if codec_id == "blosc":
        blosc_header(data)
    return _decoded_by(codec_id, _codec(config), data, filter=filter)


def _decoded_by(codec_id: str, codec: Any, data: Any, out: Any = None, filter: bool = False) -> Any:
    """``codec.decode(data, out)`` (``codec`` numcodecs', of id ``codec_id``), its refusal of
    the bytes raised as :class:`Damaged` in the run's words (:func:`_refused`). What is no
    refusal of the bytes passes as it is: numcodecs' ``UnknownCodecError`` (a codec not
    installed), ``MemoryError``."""
    try:
        return codec.decode(data) if out is None else codec.decode(data, out=out)
    except MemoryError:
        raise
    except Exception as e:  # zlib.error, BadGzipFile, EOFError, LZMAError, RuntimeError...
        if not_installed(e):
            raise
        raise _refused(codec_id, data, filter) from None


#: numcodecs' checksum codecs, by id: their decoding fails where the checksum (4 bytes) is
#: missing or does not match the bytes.
_CHECKSUMS = {"crc32", "adler32", "fletcher32", "jenkins_lookup3", "crc32c"}

#: A codec's name in a damage line, where it is not its id.
_SAID_NAMES = {"blosc": "Blosc", "lz4": "LZ4", "lzma": "LZMA"}


def _refused(codec_id: str, data: Any, filter: bool = False) -> Damaged:
    """What a chunk's damage is where the codec ``codec_id`` refused its bytes ``data`` (a
    ``filter``'s: a v2 filter's, a v3 array-to-array codec's), in the run's words, as a
    crc32c checksum's is said: "its gzip data does not decode: cut short or altered (1104
    bytes)", "its fletcher32 checksum does not match", "it holds 0 bytes, too few for its crc32
    checksum". Each codec's own words had been said (zlib's "error: Error -3 while
    decompressing data: incorrect header check", "BadGzipFile: CRC check failed 0x0 !=
    0xf1d1ea00", "EOFError: Compressed file ended before the end-of-stream marker was
    reached", numcodecs' "IndexError: Out of bounds on buffer access (axis 0)")."""
    try:
        n = memoryview(data).nbytes
    except TypeError:
        n = int(getattr(data, "nbytes", 0))
    name = _SAID_NAMES.get(codec_id, codec_id)
    if codec_id in _CHECKSUMS:
        if n < 4:
            return Damaged(f"it holds {n} bytes, too few for its {name} checksum", "checksum")
        return Damaged(f"its {name} checksum does not match", "checksum")
    if filter and codec_id not in _BYTES_TO_BYTES:
        return Damaged(f"its {n} bytes do not decode through its {name} filter", "codec")
    return Damaged(f"its {name} data does not decode: cut short or altered ({n} bytes)", "codec")


def blosc_header(data: Any) -> int:
    """The decoded size a Blosc frame's header declares (``nbytes``), once its ``cbytes`` is
    checked against the bytes stored. c-blosc's decompressor is given no source length and
    reads ``cbytes`` bytes whatever is there: a frame cut short would decode the bytes that
    follow it in memory (a reused buffer, the next frame of a shard) without an error, so a
    header that says more bytes than are stored is refused (zarr-python's read of it is
    undefined). Bytes stored after the frame are allowed: c-blosc reads no further than
    ``cbytes`` (and refuses a frame whose blocks do not fit in it), so numcodecs, and
    zarr-python through it, decode such a chunk and ignore what follows the frame; the
    frame is decoded here from the same bytes, trailer included, as they are."""
    view = memoryview(data).cast("B")
    if len(view) < 16:
        raise Damaged(f"it holds {len(view)} bytes, too few for a Blosc header", "frame")
    cbytes = int.from_bytes(view[12:16], "little")
    if cbytes > len(view):
        raise Damaged(f"its Blosc header says {cbytes} bytes, but {len(view)} are stored", "frame")
    return int.from_bytes(view[4:8], "little")


def _content_size(codec_id: str, data: Any) -> int | None:
    """The decoded size a compressed frame declares in its header (zstd, blosc), or None
    when the codec has no such header or the frame does not say.

    For zstd, the first frame's, or None where the bytes do not start with a zstd frame (a
    skippable frame first). numcodecs decodes a chunk of several frames (skippable frames
    among them, or frames back to back) into the sum of their content sizes, so a chunk is
    decoded straight into its place only where its first frame declares exactly the chunk's
    bytes (numcodecs then refuses what follows unless it adds no bytes, skippable or empty
    frames, as it does for zarr-python); elsewhere numcodecs decodes it as for zarr-python."""
    if codec_id == "zstd":
        view = memoryview(data).cast("B")
        if len(view) < 4 or int.from_bytes(view[:4], "little") != ZSTD_MAGIC:
            return None
        return zstd_content_size(view)
    if codec_id == "blosc":
        return blosc_header(data)
    return None


#: Bytes at a stored chunk's start that hold its compressor's header, the decoded size it
#: declares in it (Blosc's 16; a zstd frame header's 18 at most, RFC 8878, 3.1.1.1).
HEADER_BYTES = 32


def declares_size(chunk: ChunkFormat) -> bool:
    """Whether a stored chunk of ``chunk``'s format may declare its decoded size in its
    first bytes (:func:`declared_size`): no filters, and one zstd or Blosc compressor, with
    or without crc32c checksums after it."""
    ids = [_codec_id(c) for c in chunk._without_trailing_checksums()]
    return not chunk.filters and ids in (["zstd"], ["blosc"])


def declared_size(chunk: ChunkFormat, head: Any) -> int | None:
    """The decoded size that the first bytes ``head`` (up to :data:`HEADER_BYTES`) of one
    stored chunk of ``chunk``'s format declare, where one compressor that declares it (zstd,
    Blosc) is all the chain holds besides trailing crc32c checksums (no filters); None where
    the chain holds more, or the bytes declare none (a zstd frame that does not say its size,
    a skippable frame first, too few bytes). Nothing is checked or decoded: what the chunk's
    writer said it holds, which the plan compares with the metadata's size
    (:func:`pipeline.store.arrays.check_chunk_fits`); only a full decode says it does not."""
    if not declares_size(chunk):
        return None
    ids = [_codec_id(c) for c in chunk._without_trailing_checksums()]
    view = memoryview(head).cast("B")
    if ids == ["blosc"]:
        return int.from_bytes(view[4:8], "little") if len(view) >= 16 else None
    if ids != ["zstd"] or len(view) < 4 or int.from_bytes(view[:4], "little") != ZSTD_MAGIC:
        return None
    try:
        return zstd_content_size(view)
    except Damaged:  # a header cut short: the full decode says what it is
        return None


ZSTD_MAGIC = 0xFD2FB528

#: The first of the 16 magic numbers of zstd's skippable frames (RFC 8878, 3.1.2:
#: 0x184D2A50 to 0x184D2A5F), which decoders skip.
ZSTD_SKIPPABLE = 0x184D2A50


def zstd_content_size(frame: Any) -> int | None:
    """The Frame_Content_Size a zstd frame's header declares (RFC 8878, 3.1.1.1); None when the
    frame does not declare it. Raises :class:`Damaged` when the bytes are no zstd frame."""
    view = memoryview(frame).cast("B")
    if len(view) < 5 or int.from_bytes(view[:4], "little") != ZSTD_MAGIC:
        raise Damaged(f"it is not a zstd frame ({len(view)} bytes, no zstd magic number)", "frame")
    fhd = view[4]
    fcs_flag, single_segment, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    pos = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    if size == 0:
        return None
    if len(view) < pos + size:
        raise Damaged(f"its zstd frame header is cut short ({len(view)} bytes)", "frame")
    value = int.from_bytes(view[pos : pos + size], "little")
    return value + 256 if size == 2 else value


def zstd_frame_size(frame: Any) -> int:
    """The number of bytes a zstd frame occupies, from its header and block headers (RFC 8878,
    3.1.1); raises :class:`Damaged` when the frame is cut short. Decoders read past a cut
    frame's end into whatever follows it, so a frame is measured before the GPU decodes it."""
    view = memoryview(frame).cast("B")
    zstd_content_size(view)  # checks the magic number and the header's length
    fhd = view[4]
    fcs_flag, single_segment, checksum, dict_flag = (
        fhd >> 6,
        (fhd >> 5) & 1,
        (fhd >> 2) & 1,
        fhd & 3,
    )
    pos = (
        5
        + (0 if single_segment else 1)
        + (0, 1, 2, 4)[dict_flag]
        + (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    )
    n = len(view)
    while True:
        if pos + 3 > n:
            raise Damaged(f"its zstd frame is cut short ({n} bytes)", "frame")
        header = view[pos] | (view[pos + 1] << 8) | (view[pos + 2] << 16)
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind == 3:
            raise Damaged("its zstd frame has a reserved block type", "frame")
        pos += 3 + (1 if kind == 1 else size)  # an RLE block stores one byte
        if last:
            break
    pos += 4 if checksum else 0
    if pos > n:
        raise Damaged(f"its zstd frame is cut short ({n} of {pos} bytes)", "frame")
    return pos


#: The most bytes one zstd block holds (RFC 8878, 3.1.1.2.4: Block_Maximum_Size is at most
#: 128 KiB).
ZSTD_BLOCK_MAX = 128 << 10


@dataclass(frozen=True)
class RawFrame:
    """How ``nbytes`` of data are stored as one zstd frame of raw (stored, uncompressed) blocks
    (RFC 8878, 3.1.1): a single-segment frame header declaring the content size, then the data
    in pieces of at most :data:`ZSTD_BLOCK_MAX` bytes, each after its 3-byte block header, the
    last one's marked last; no checksum. Every zstd decoder reads it (zarr-python through
    numcodecs, nvCOMP, the ``zstd`` tool); it is ``nbytes`` plus a few bytes per 128 KiB.

    Made by :func:`raw_frame`. Laid out as segments in frame order: header bytes and data
    pieces alternate, starting with header bytes."""

    nbytes: int
    """the data's size"""
    heads: np.ndarray
    """every header byte of the frame, in frame order (uint8)"""
    head_from: np.ndarray
    """where each header segment starts in :attr:`heads` (int64)"""
    head_at: np.ndarray
    """where each header segment goes in the frame (int64)"""
    head_len: np.ndarray
    """each header segment's length (int64)"""
    data_from: np.ndarray
    """where each data piece starts in the data (int64)"""
    data_at: np.ndarray
    """where each data piece goes in the frame (int64)"""
    data_len: np.ndarray
    """each data piece's length (int64)"""

    @property
    def size(self) -> int:
        """The frame's size in bytes."""
        return self.nbytes + len(self.heads)

    def parts(self, data: Any) -> list[Any]:
        """The frame of ``data`` (``nbytes`` bytes, bytes-like) as byte parts to concatenate:
        header bytes and views of ``data``, no copy of it."""
        view = memoryview(data).cast("B")
        out: list[Any] = []
        for hf, hl, df, dl in zip(
            self.head_from, self.head_len, self.data_from, self.data_len, strict=True
        ):
            out.append(self.heads[hf : hf + hl].data)
            out.append(view[df : df + dl])
        return out


@functools.lru_cache(maxsize=64)
def raw_frame(nbytes: int) -> RawFrame:
    """The layout of a zstd frame of raw blocks holding ``nbytes`` (see :class:`RawFrame`).
    The content size is written in the fewest bytes the format allows (1, 2, 4 or 8)."""
    if nbytes < 0:
        raise ValueError(f"a frame cannot hold {nbytes} bytes")
    if nbytes < 256:
        fcs_flag, fcs = 0, nbytes.to_bytes(1, "little")
    elif nbytes < 65536 + 256:
        fcs_flag, fcs = 1, (nbytes - 256).to_bytes(2, "little")
    elif nbytes < 1 << 32:
        fcs_flag, fcs = 2, nbytes.to_bytes(4, "little")
    else:
        fcs_flag, fcs = 3, nbytes.to_bytes(8, "little")
    header = ZSTD_MAGIC.to_bytes(4, "little") + bytes([fcs_flag << 6 | 1 << 5]) + fcs
    n_blocks = max(1, -(-nbytes // ZSTD_BLOCK_MAX))
    data_from = np.arange(n_blocks, dtype=np.int64) * ZSTD_BLOCK_MAX
    data_len = np.minimum(nbytes - data_from, ZSTD_BLOCK_MAX).astype(np.int64)
    heads = bytearray(header)
    head_from, head_len = [], []
    for j, size in enumerate(data_len.tolist()):
        head_from.append(0 if j == 0 else len(heads))
        last = 1 if j == n_blocks - 1 else 0
        heads += (size << 3 | last).to_bytes(3, "little")  # block type 0: raw
        head_len.append(len(header) + 3 if j == 0 else 3)
    head_len_a = np.asarray(head_len, dtype=np.int64)
    # a piece goes after every header segment so far and every piece before it
    head_at = data_from + np.concatenate([[0], np.cumsum(head_len_a)[:-1]])
    data_at = head_at + head_len_a
    return RawFrame(
        nbytes,
        np.frombuffer(bytes(heads), np.uint8),
        np.asarray(head_from, dtype=np.int64),
        head_at.astype(np.int64),
        head_len_a,
        data_from,
        data_at.astype(np.int64),
        data_len,
    )


#: How many frames of a unit are compressed to judge whether it compresses
#: (:func:`sample_frames`).
RAW_SAMPLE_FRAMES = 8


def sample_frames(idx: np.ndarray) -> np.ndarray:
    """Up to :data:`RAW_SAMPLE_FRAMES` of the frame indices ``idx``, spread evenly across them
    (first and last included): the sample that decides whether a unit's frames are stored raw."""
    if len(idx) <= RAW_SAMPLE_FRAMES:
        return idx
    return idx[np.linspace(0, len(idx) - 1, RAW_SAMPLE_FRAMES).round().astype(np.int64)]


#: Frames smaller than this are never stored raw by choice: zstd itself stores a small frame
#: that does not compress as a raw block, and a unit of thousands of tiny frames, each made of
#: parts of its own, took twice the time and six times the host memory the plan counts (a
#: 1000 x 1000 float32 array in 4-byte chunks, one shard, the CPU backend; 2026-11-30).
RAW_MIN_FRAME = 4096


def may_store_raw(frame_nbytes: int, raw_below: float | None) -> bool:
    """Whether a unit of frames of ``frame_nbytes`` decoded bytes is sampled at all (see
    :data:`RAW_MIN_FRAME`)."""
    return raw_below is not None and frame_nbytes >= RAW_MIN_FRAME


def stores_raw(compressed: int, raw: int, raw_below: float | None) -> bool:
    """Whether a sample of ``raw`` bytes that compressed to ``compressed`` bytes saves less than
    the fraction ``raw_below`` (then its unit's frames are stored as raw blocks)."""
    return raw_below is not None and raw > 0 and (raw - compressed) < raw_below * raw


# --------------------------------------------------------------------------------------------
# From metadata documents to formats.


@dataclass(frozen=True)
class StoredFormat:
    """How an array's stored units (files or objects) decode: one chunk each, or a shard of
    chunks with an index."""

    chunk: ChunkFormat
    shard: ShardFormat | None


def v2_format(meta: dict[str, Any]) -> StoredFormat | None:
    """The format of a Zarr v2 array from its ``.zarray`` document (as zarr-python's
    ``ArrayV2Metadata.to_dict()`` gives it); None for chains numcodecs does not know."""
    comp = meta.get("compressor")
    codecs = [] if comp is None else [_by_format(comp)]
    filters = [_by_format(f) for f in meta.get("filters") or []]
    if not _known(codecs + filters):
        return None
    return StoredFormat(
        chunk=ChunkFormat(
            shape=tuple(meta["chunks"]),
            stored=v2_dtype(meta["dtype"]).str,
            codecs=tuple(_json(c) for c in codecs),
            filters=tuple(_json(f) for f in filters),
            order=meta.get("order", "C"),
        ),
        shard=None,
    )


def v2_dtype(said: Any) -> np.dtype:
    """The NumPy dtype a ``.zarray``'s ``dtype`` says: a type string, or a structured type's
    fields as JSON gives them, lists (``[["a", "<f4"], ["b", "<i2", [2]]]``), which NumPy takes
    only as tuples (it had raised "Field elements must be 2- or 3-tuples", and not the
    plan's line refusing the dtype, as a v3 array's)."""

    def fields(x: Any) -> Any:
        if not isinstance(x, list):
            return x
        return [
            tuple(
                fields(part) if i == 1 else (tuple(part) if i == 2 else part)
                for i, part in enumerate(f)
            )
            if isinstance(f, list)
            else f
            for f in x
        ]

    return np.dtype(fields(said))


def v3_format(meta: dict[str, Any], dtype: np.dtype) -> StoredFormat | None:
    """The format of a Zarr v3 array from its ``zarr.json`` document; ``dtype`` is the array's
    (native) data type. None for codec chains this module does not know."""
    codecs = list(meta["codecs"])
    outer = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    if len(codecs) == 1 and codecs[0]["name"] == "sharding_indexed":
        conf = codecs[0].get("configuration", {})
        chunk = _v3_chain(conf.get("codecs", []), tuple(conf["chunk_shape"]), dtype)
        shard = _shard_format(conf)
        if chunk is None or shard is None or shard.index_big_endian:
            return None
        return StoredFormat(chunk, shard)
    chunk = _v3_chain(codecs, outer, dtype)
    return None if chunk is None else StoredFormat(chunk, None)


def _shard_format(conf: dict[str, Any]) -> ShardFormat | None:
    """The index of a ``sharding_indexed`` codec's configuration as a :class:`ShardFormat`;
    None for index codecs other than ``bytes`` with or without ``crc32c``."""
    index = conf.get("index_codecs", [])
    if [c["name"] for c in index] not in (["bytes"], ["bytes", "crc32c"]):
        return None
    endian = (index[0].get("configuration") or {}).get("endian", "little")
    return ShardFormat(conf.get("index_location", "end") == "end", len(index) == 2, endian == "big")


def _v3_chain(
    codecs: Sequence[dict[str, Any]], shape: Shape, dtype: np.dtype
) -> ChunkFormat | None:
    """[transpose] bytes [bytes-to-bytes codecs...] as a ChunkFormat; None otherwise."""
    names = [c["name"] for c in codecs]
    transpose = None
    i = 0
    if names[:1] == ["transpose"]:
        transpose = tuple(codecs[0]["configuration"]["order"])
        if sorted(transpose) != list(range(len(shape))):
            return None
        i = 1
    if i >= len(names) or names[i] != "bytes":
        return None
    endian = (codecs[i].get("configuration") or {}).get("endian", sys.byteorder)
    stored = dtype.newbyteorder("<" if endian == "little" else ">") if dtype.itemsize > 1 else dtype
    configs = [_v3_bytes_codec(c, dtype) for c in codecs[i + 1 :]]
    if any(c is None for c in configs) or not _known([c for c in configs if c]):
        return None
    return ChunkFormat(
        shape=shape,
        stored=stored.str,
        codecs=tuple(_json(c) for c in configs if c is not None),
        transpose=None if transpose == tuple(range(len(shape))) else transpose,
    )


@dataclass(frozen=True)
class UnitCheck:
    """How the stored units (chunks or shards) of an array whose codec chain only Zarr decodes
    are checked before Zarr reads them: where their Blosc frames lie, and their shard index.
    For such an array (an array-to-array ``numcodecs.*`` filter, say): c-blosc decodes a frame
    cut short from whatever memory follows it, without an error, and zarr-python with it, so
    such a chunk is damage that Zarr's read does not show (:func:`blosc_header` finds it). A Blosc
    frame under other bytes-to-bytes codecs (gzip, zstd, a checksum, a v2 filter's Blosc under
    the compressor) is reached by decoding those first, each Blosc frame among them checked.
    A shard's index is checked too (:func:`shards.shard_frames`), Blosc or not: zarr-python
    reads a chunk whose entry points into the index from the index's bytes, without an
    error."""

    layers: tuple[str, ...]
    """the chunk's bytes-to-bytes codecs from its innermost Blosc one outward, in encode order,
    as numcodecs configurations (JSON; :data:`CRC32C` a crc32c checksum at the end): the first
    is that Blosc codec, whose frame the others, decoded, give (none: only
    :attr:`whole` holds Blosc)"""
    shard: ShardFormat | None
    """the shard index, for a sharded array (each inner chunk's frame checked)"""
    chunk: Shape | None = None
    """a shard's inner chunk shape (None: unsharded, one chunk a unit)"""
    whole: tuple[str, ...] = ()
    """bytes-to-bytes codecs after the sharding one, over the whole shard (encode order, as
    :attr:`layers`): decoded first, each Blosc frame among them checked"""
    nested: UnitCheck | None = None
    """where a shard's inner chunks are shards themselves (a sharding codec in its inner
    chain): their check, each present inner chunk's bytes checked by it"""
    order: tuple[int, ...] | None = None
    """where ``transpose`` codecs come before the sharding one (tensorstore writes them so):
    the order they put a unit's axes in, so that a stored shard of a unit of shape ``unit``
    is of shape ``unit[order]`` and :attr:`chunk` is an inner chunk of that (None: no
    transposition)"""

    def stored_unit(self, unit: Shape) -> Shape:
        """The shape of the shard a unit of shape ``unit`` is stored as (its axes in
        :attr:`order`)."""
        return unit if self.order is None else tuple(unit[i] for i in self.order)

    def chunks_in(self, unit: Shape) -> int:
        """How many chunks one stored unit of shape ``unit`` holds (1 unsharded)."""
        return 1 if self.chunk is None else math.prod(unit) // math.prod(self.chunk)

    @property
    def strips(self) -> bool:
        """Whether the check decodes codecs of the chain (outside the innermost Blosc one, or
        over the whole shard), which :func:`check_unit` then takes off the unit's bytes."""
        return bool(self.whole) or self._strips_chunks

    @property
    def _strips_chunks(self) -> bool:
        """Whether each chunk's (or inner shard's) bytes lose codecs: a shard is made anew."""
        return len(self.layers) > 1 or (self.nested is not None and self.nested.strips)


def unit_check(
    meta: dict[str, Any], dtype: np.dtype, every_index: bool = False
) -> UnitCheck | None:
    """For an array's metadata document (a Zarr v3 ``zarr.json``, or a v2 ``.zarray`` with
    ``zarr_format`` 2) and its (native) ``dtype``: the :class:`UnitCheck` of its stored units
    where a chunk's chain holds a Blosc codec (``blosc``, ``numcodecs.blosc``; in v2 the
    compressor or a filter; in v3 a shard's inner chain, or after the sharding codec, over the
    whole shard) and every bytes-to-bytes codec outside the innermost one is one numcodecs
    decodes (gzip, zstd, crc32c, ``numcodecs.*``...), and a shard's index is one this module
    reads; and so for a sharded array whose chain :func:`v3_format` does not know (which only
    Zarr reads), its shard index alone checked where it holds no Blosc (shards within shards
    too), and with ``every_index`` for every sharded array whose index this module reads
    (``verify``, which reads inputs the pipeline decodes through zarr-python too); else
    None."""
    return _unit_check(meta, dtype, nested=every_index)


def _unit_check(meta: dict[str, Any], dtype: np.dtype, nested: bool) -> UnitCheck | None:
    """:func:`unit_check`; ``nested``: a shard's index is checked whatever its chain (``meta``
    may hold only the ``codecs`` of a shard's inner chunks, themselves shards)."""
    shard = None
    inner: UnitCheck | None = None
    chunk: Shape | None = None
    order: tuple[int, ...] | None = None
    whole: list[dict[str, Any] | None] = []
    if meta.get("zarr_format") == 2:
        comp = meta.get("compressor")
        configs = [*(meta.get("filters") or []), *([comp] if isinstance(comp, dict) else [])]
        chain: list[dict[str, Any] | None] = [_by_format(dict(c)) for c in configs]
    else:
        v3 = list(meta["codecs"])
        at = sharding_at(v3)
        if at is not None:
            whole = [_check_codec(c, dtype) for c in v3[at + 1 :]]
            conf = v3[at].get("configuration", {})
            shard = _shard_format(conf)
            if shard is None:
                return None
            chunk = tuple(conf["chunk_shape"])
            order = transposed_order(v3[:at], len(chunk))
            v3 = list(conf.get("codecs", []))
            if sharding_at(v3) is not None:
                inner = _unit_check({"codecs": v3}, dtype, nested=True)
                if inner is None:
                    return None
                v3 = []
        blosc = [i for i, c in enumerate(v3) if c["name"] in ("blosc", "numcodecs.blosc")]
        chain = [_check_codec(c, dtype) for c in v3[blosc[0] :]] if blosc else []
    innermost = [i for i, c in enumerate(chain) if c is not None and c.get("id") == "blosc"]
    layers = chain[innermost[0] :] if innermost else []
    no_blosc = not layers and not any(c is not None and c.get("id") == "blosc" for c in whole)
    if no_blosc and (shard is None or (not nested and v3_format(meta, dtype) is not None)):
        return None  # a shard only Zarr decodes has its index checked, Blosc or not
    known = [c for c in layers if c is not None]
    outside = [c for c in whole if c is not None]
    if len(known) < len(layers) or len(outside) < len(whole) or not _known(known[1:] + outside):
        return None
    return UnitCheck(
        tuple(_json(c) for c in known),
        shard,
        chunk,
        tuple(_json(c) for c in outside),
        inner,
        order,
    )


def sharding_at(chain: Sequence[dict[str, Any]]) -> int | None:
    """Where a v3 codec chain's ``sharding_indexed`` codec is: first, or after ``transpose``
    codecs only (valid Zarr v3, which tensorstore and zarr-python write: each shard is then
    stored transposed, its inner chunks cut from that); None where the chain has no sharding
    codec as its array-to-bytes one."""
    for i, c in enumerate(chain):
        if c.get("name") == "sharding_indexed":
            return i
        if c.get("name") != "transpose":
            return None
    return None


def transposed_order(lead: Sequence[dict[str, Any]], ndim: int) -> tuple[int, ...] | None:
    """The order the ``transpose`` codecs ``lead`` (in encode order) put a chunk's ``ndim``
    axes in, one after the other: the encoded chunk's axis ``k`` is the chunk's axis
    ``order[k]``; None where that is no change."""
    order = list(range(ndim))
    for c in lead:
        order = [order[i] for i in c["configuration"]["order"]]
    return None if order == list(range(ndim)) else tuple(order)


def _check_codec(codec: dict[str, Any], dtype: np.dtype) -> dict[str, Any] | None:
    """A v3 bytes-to-bytes codec as the numcodecs configuration that decodes it for
    :func:`unit_check`: those the pipeline decodes (:func:`_v3_bytes_codec`), and any other
    ``numcodecs.*`` one numcodecs has (``numcodecs.crc32``, ``numcodecs.fletcher32``...)."""
    config = _v3_bytes_codec(codec, dtype)
    if config is None and codec["name"].startswith("numcodecs."):
        config = _by_format(
            {"id": codec["name"].removeprefix("numcodecs."), **(codec.get("configuration") or {})}
        )
    return config


def check_unit(
    raw: Any,
    unit: Shape,
    check: UnitCheck,
    nested_in: str = "",
    axes: tuple[int, ...] | None = None,
) -> Any:
    """Check one stored unit ``raw`` (None: absent) of shape ``unit`` as ``check`` says: its
    shard index, and the Blosc frames of each chunk present in it: the codecs outside the
    innermost Blosc one are decoded, each Blosc frame among them checked, then that one's.
    Returns the unit's bytes with the codecs so decoded taken off (the bytes Zarr reads under
    :func:`stripped_document`'s chain, so that it does not decode them again): ``raw`` as it
    is where the check decodes none (:attr:`UnitCheck.strips`), an unsharded chunk's Blosc
    frame, a shard made anew of its chunks' frames (:func:`shards.encode_shard`, the index
    laid out as the original's) where they lose codecs; None for an absent unit. Raises
    :class:`Damaged` where a shard's index, a crc32c checksum, a Blosc header
    (:func:`blosc_header`) or an outer codec's stream (a cut gzip or zstd one: 'codec') is
    wrong, naming where in the shard by each level's grid coordinates (:func:`inner_chunk`:
    "(in the shard's inner chunk [1, 0])"; in a nested shard, "(in the shard's inner chunk
    [1, 0], itself a shard: in its inner chunk [0, 1])", its own index's damage "(in the
    shard's inner chunk [1, 0], itself a shard)": both levels had been "(inner chunk 1)
    (inner chunk 2)", flat indexes in words that did not tell them apart); numcodecs'
    ``UnknownCodecError`` as it is. Inner chunks are named in the array's axes, where the
    shard is stored transposed too (:attr:`UnitCheck.order`: tensorstore's ``transpose``
    before ``sharding_indexed``; their stored grid's coordinates had been said, which are not
    those zarr-python reads the chunk at). ``nested_in``: for the check of a nested shard,
    which inner chunk of the shard holding it that is (its words); ``axes``: the array's axis
    each of ``unit``'s axes is (None: ``unit`` is in the array's axes)."""
    axes = _stored_axes(len(unit), check.order, axes)
    unit = check.stored_unit(unit)
    try:
        if raw is not None and check.whole:
            with _codec_errors_as_damage():
                for config in reversed(check.whole):
                    raw = _decode_bytes(config, raw)
        grid = _grid(unit, check.chunk)
        frames = unit_frames(raw, check.chunks_in(unit), check.shard, grid, axes)
    except Damaged as e:
        if not nested_in:
            raise
        raise Damaged(f"{e} ({nested_in}, itself a shard)", e.problem, e.chunk) from None
    present = frames.sizes != EMPTY
    kept: list[Any] = [None] * len(present)
    for c in np.flatnonzero(present) if check.layers or check.nested else ():
        off, size = int(frames.offsets[c]), int(frames.sizes[c])
        frame: Any = memoryview(raw).cast("B")[off : off + size]
        where = inner_chunk(int(c), unit, check.chunk, axes) if check.shard else ""
        if check.nested is not None:  # the inner chunk is a shard: its own check, which names
            # both levels (a damage of its own index named by this one alone)
            assert check.chunk is not None
            try:  # every level above named (three levels had lost the outermost)
                within = _within(nested_in, where)
                kept[c] = check_unit(frame, check.chunk, check.nested, within, axes)
            except Damaged as e:  # the unit's chunk whose bytes hold the damage: this one
                raise Damaged(str(e), e.problem, int(c)) from None
            continue
        try:
            with _codec_errors_as_damage():
                for config in reversed(check.layers[1:]):
                    frame = _decode_bytes(config, frame)
                blosc_header(frame)
            kept[c] = frame
        except Damaged as e:
            said = f"{e} ({_within(nested_in, where)})" if where or nested_in else str(e)
            raise Damaged(said, e.problem, int(c) if check.shard else None) from None
    if raw is None or not check._strips_chunks:
        return raw
    if check.shard is None:
        return kept[0]
    return encode_shard(kept, check.shard)


def damaged_frame(
    raw: Any,
    unit: Shape,
    codecs: Sequence[dict[str, Any]],
    dtype: np.dtype,
    decode_other: Callable[[Sequence[dict[str, Any]], Shape, Any], Any],
    nested_in: str = "",
    axes: tuple[int, ...] | None = None,
    first: bool = False,
) -> Damaged | None:
    """The damage of the first frame of the stored shard ``raw`` (of shape ``unit``; its v3
    chain ``codecs``, a ``sharding_indexed`` codec first or after ``transpose`` codecs, which
    store the shard transposed: :func:`sharding_at`; ``dtype`` the array's, native) that
    does not decode, at every level of shards within shards, named as the run's reader names
    a frame of a shard it decodes (:func:`inner_chunk`, :func:`_within`: "(in the shard's inner
    chunk [1, 0], itself a shard: in its inner chunk [0, 1])") and said in its words: an inner
    chunk whose chain :func:`v3_format` knows is decoded by :meth:`ChunkFormat.decode` (a
    crc32c mismatch "its crc32c checksum does not match", a frame of the wrong size "it decodes
    to ... bytes"), any other by ``decode_other(codecs, shape, frame)``, which decodes one
    chunk of that chain (less the crc32c checksums at its end, checked here) as Zarr does
    (its error said as :func:`_codec_errors_as_damage` says it); the whole shard's codecs
    (after the sharding one) and each level's index (big-endian too) first.
    None where every frame decodes, or where a codec or index is one this module does not
    read. For the failure path only: where zarr-python could not read a sharded unit, which it
    names by no inner chunk (a nested shard's zstd, gzip or checksum damage had been named by
    the shard's key alone, in zarr-python's words). Inner chunks are named in the array's
    axes (``axes``: the array's axis each of ``unit``'s axes is; None: the array's own), as
    :func:`check_unit` names them. ``first``: only the first present frame is decoded (at
    every level), whatever it holds: the plan's check of one chunk
    (:func:`pipeline.store.arrays.check_chunk_fits`)."""
    at = sharding_at(codecs)
    if at is None:
        return None
    conf = dict(codecs[at].get("configuration") or {})
    shard = _shard_format(conf)
    if shard is None or "chunk_shape" not in conf:
        return None
    order = transposed_order(codecs[:at], len(unit))
    axes = _stored_axes(len(unit), order, axes)
    unit = unit if order is None else tuple(unit[i] for i in order)
    chunk = tuple(int(n) for n in conf["chunk_shape"])
    inner = list(conf.get("codecs", []))
    whole = [_check_codec(c, dtype) for c in codecs[at + 1 :]]
    if not inner or any(c is None for c in whole) or not _known([c for c in whole if c]):
        return None
    try:
        with _codec_errors_as_damage():
            for config in reversed(whole):
                assert config is not None
                raw = _decode_bytes(_json(config), raw)
        grid = _grid(unit, chunk)
        frames = unit_frames(raw, math.prod(grid or ()), shard, grid, axes)
    except Damaged as e:
        said = f"{e} ({nested_in}, itself a shard)" if nested_in else str(e)
        return Damaged(said, e.problem, sizes=e.sizes)
    nested = sharding_at(inner) is not None
    for c in np.flatnonzero(frames.sizes != EMPTY):
        off, size = int(frames.offsets[c]), int(frames.sizes[c])
        frame = memoryview(raw).cast("B")[off : off + size]
        where = _within(nested_in, inner_chunk(int(c), unit, chunk, axes))
        if nested:
            found = damaged_frame(frame, chunk, inner, dtype, decode_other, where, axes, first)
            if found is not None:
                return Damaged(str(found), found.problem, int(c), found.sizes)
        else:
            found = damaged_chunk(frame, chunk, inner, dtype, decode_other)
            if found is not None:
                return Damaged(f"{found} ({where})", found.problem, int(c), found.sizes)
        if first:
            break
    return None


def damaged_chunk(
    raw: Any,
    shape: Shape,
    codecs: Sequence[dict[str, Any]],
    dtype: np.dtype,
    decode_other: Callable[[Sequence[dict[str, Any]], Shape, Any], Any],
) -> Damaged | None:
    """The damage of one stored chunk ``raw`` of shape ``shape`` under the v3 chain
    ``codecs`` (no sharding codec in it; ``dtype`` the array's, native), said in the run's
    words, as :func:`damaged_frame` says a shard's frame's: a chain :func:`v3_format` knows
    decoded by :meth:`ChunkFormat.decode`; of any other (a ``numcodecs.*`` filter, a checksum
    numcodecs alone has), the bytes-to-bytes codecs after ``bytes`` decoded here one at a
    time, the outermost first, by numcodecs (the implementations zarr-python decodes them
    with), a refusal said by the codec it is (:func:`_refused`: "its gzip data does not
    decode: cut short or altered (1104 bytes)", "its crc32 checksum does not match"), then
    the rest by ``decode_other(codecs, shape, bytes)`` (zarr-python's decoding of one chunk),
    whose failure over bytes of another size than the chunk's is said so ("it decodes to 48
    bytes, not the chunk's 96"; zarr-python's "cannot reshape array of size 12 into shape
    (4,6)" had been said), any other in its words. None where it decodes. Raises numcodecs'
    ``UnknownCodecError``, and what ``decode_other`` raises that is no damage, as they are
    (a codec not installed is no damaged chunk). For the failure path, where zarr-python
    could not read the chunk (its own words name no codec, and a checksum's hold numbers)."""
    fixed = dtype.kind in "biufcmM"  # elements of a fixed size: decoded here
    leaf = _v3_chain(codecs, shape, dtype) if fixed else None
    try:
        with _codec_errors_as_damage():
            if leaf is not None:
                leaf.decode(raw)
                return None
            chain = list(codecs)
            at = next((i for i, c in enumerate(chain) if c.get("name") == "bytes"), None)
            data = raw
            while at is not None and len(chain) > at + 1:
                config = _check_codec(chain[-1], dtype)
                if config is None or not _known([config]):
                    break  # one numcodecs does not have: zarr-python decodes it with the rest
                data = _decode_bytes(_json(config), data)
                chain.pop()
            try:
                decode_other(chain, shape, data)
            except MemoryError:
                raise
            except Exception as e:
                if not_installed(e) or at is None:
                    raise
                n = memoryview(data).nbytes
                want = math.prod(shape) * _element_size(chain[:at], dtype)
                if n != want:
                    raise Damaged(
                        f"it decodes to {n} bytes, not the chunk's {want}", "size", sizes=(n, want)
                    ) from None
                raise
    except Damaged as e:
        return e
    return None


def _element_size(filters: Sequence[dict[str, Any]], dtype: np.dtype) -> int:
    """The size of one element as the ``bytes`` codec stores it after the array-to-array
    codecs ``filters`` (v3, in encode order): the data type the last one that names one
    gives (numcodecs' ``astype``, else its ``dtype``: a Delta's, a FixedScaleOffset's), else
    ``dtype``'s."""
    size = dtype.itemsize
    for f in filters:
        conf = f.get("configuration") or {}
        said = conf.get("astype", conf.get("dtype"))
        if isinstance(said, str):
            with contextlib.suppress(TypeError, ValueError):
                size = np.dtype(said).itemsize
    return size


def inner_chunk(
    c: int, unit: Shape, chunk: Shape | None, axes: tuple[int, ...] | None = None
) -> str:
    """The words for the inner chunk ``c`` (its index in C order over the shard's chunk grid)
    of a shard of shape ``unit`` whose chunks are of shape ``chunk`` (both as stored): "in
    the shard's inner chunk [1, 0]", by its grid coordinates in the array's axes, as every
    damage line names one (``axes``: the array's axis each of the stored shard's axes is,
    where it is stored transposed: :func:`~pipeline.store.grid.chunk_coordinates`)."""
    at = chunk_coordinates(c, _grid(unit, chunk) or (1,), axes)
    return f"in the shard's inner chunk {at}"


def _stored_axes(
    ndim: int, order: tuple[int, ...] | None, axes: tuple[int, ...] | None
) -> tuple[int, ...] | None:
    """The array's axis each axis of a stored shard is: ``order`` (:attr:`UnitCheck.order`,
    :func:`transposed_order`) puts the axes of a unit, themselves the array's ``axes`` (None:
    its own, in order), in the order they are stored; None where that is the array's own."""
    base = list(axes) if axes is not None else list(range(ndim))
    out = base if order is None else [base[i] for i in order]
    return None if out == list(range(ndim)) else tuple(out)


def _grid(unit: Shape, chunk: Shape | None) -> Shape | None:
    """A shard's chunk grid (None unsharded)."""
    return None if chunk is None else chunks_per_unit(unit, chunk)


def _within(nested_in: str, where: str) -> str:
    """Where a frame lies, for a damage line: ``where`` in its shard (:func:`inner_chunk`'s
    words), that shard being the inner chunk ``nested_in`` of the shard holding it (a nested
    shard), else ``where`` alone."""
    if not nested_in:
        return where
    return f"{nested_in}, itself a shard: " + where.replace("the shard's", "its", 1)


def stripped_document(meta: dict[str, Any], check: UnitCheck) -> dict[str, Any]:
    """The metadata document ``meta`` (as :func:`unit_check` took it, with ``check`` its
    check) less the codecs the check decodes: those after the innermost Blosc codec of a
    chunk's chain (the v2 compressor, a v2 filter's Blosc, a shard's inner chain, shards within
    shards too) and those over the whole shard. Zarr reads the bytes :func:`check_unit`
    returns under it as it reads the stored ones under ``meta``."""
    out = dict(meta)
    if meta.get("zarr_format") == 2:
        filters = list(meta.get("filters") or [])
        blosc = [i for i, c in enumerate(filters) if _by_format(dict(c)).get("id") == "blosc"]
        if len(check.layers) > 1 and blosc:  # a filter's Blosc frame is handed on
            out.update(filters=filters[: blosc[0] + 1], compressor=None)
        return out
    out["codecs"] = _stripped_codecs(list(meta["codecs"]), check)
    return out


def _stripped_codecs(codecs: list[dict[str, Any]], check: UnitCheck) -> list[dict[str, Any]]:
    """A v3 chain less the codecs ``check`` decodes (see :func:`stripped_document`); the
    array-to-array codecs before a sharding one kept."""
    at = sharding_at(codecs)
    if at is not None:
        conf = dict(codecs[at].get("configuration") or {})
        inner = list(conf.get("codecs", []))
        if check.nested is not None:
            conf["codecs"] = _stripped_codecs(inner, check.nested)
        elif len(check.layers) > 1:
            conf["codecs"] = inner[: _first_blosc(inner) + 1]
        return [*codecs[:at], {**codecs[at], "configuration": conf}]  # the whole shard's decoded
    return codecs[: _first_blosc(codecs) + 1] if len(check.layers) > 1 else codecs


def _first_blosc(codecs: list[dict[str, Any]]) -> int:
    """Where a v3 chain's first (innermost) Blosc codec is (:func:`unit_check`'s layers
    start there)."""
    return next(i for i, c in enumerate(codecs) if c["name"] in ("blosc", "numcodecs.blosc"))


def _v3_bytes_codec(codec: dict[str, Any], dtype: np.dtype) -> dict[str, Any] | None:
    """A v3 bytes-to-bytes codec as a numcodecs configuration (None: not one we know)."""
    name = codec["name"]
    conf = dict(codec.get("configuration") or {})
    if name == "crc32c":
        return json.loads(CRC32C)
    if name == "zstd":
        return {"id": "zstd", "level": conf.get("level", 0)}
    if name == "gzip":
        return {"id": "gzip", "level": conf.get("level", 5)}
    if name == "blosc":  # a Blosc header describes its own frame; cname says what it costs
        return {"id": "blosc", **({"cname": conf["cname"]} if "cname" in conf else {})}
    if name.startswith("numcodecs."):
        config = {"id": name.removeprefix("numcodecs."), **conf}
        if config["id"] == "shuffle":  # zarr-python fills the element size in the same way
            config.setdefault("elementsize", dtype.itemsize)
        return _by_format(config) if config["id"] in _BYTES_TO_BYTES else None
    return None


#: numcodecs codecs that map bytes to bytes (the ones a v3 chain may hold after ``bytes``).
_BYTES_TO_BYTES = {"blosc", "zstd", "lz4", "zlib", "gzip", "bz2", "lzma", "shuffle", "crc32c"}


def _by_format(config: dict[str, Any]) -> dict[str, Any]:
    """A numcodecs configuration, with a crc32c checksum at the end written as :data:`CRC32C`
    whichever implementation wrote it: codecs are told apart by the bytes they write."""
    if config.get("id") == "crc32c" and config.get("location", "end") == "end":
        return json.loads(CRC32C)
    return config


def _known(configs: Sequence[dict[str, Any]]) -> bool:
    """Whether numcodecs (or this module, for crc32c) implements every codec named."""
    import numcodecs

    for c in configs:
        if _json(c) == CRC32C:
            continue
        try:
            numcodecs.get_codec(dict(c))
        except Exception:
            return False
    return True


def _json(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


#: The Python package that gives numcodecs a codec it registers only where the package is
#: installed, by the codec's id (numcodecs' optional codecs).
CODEC_PACKAGES = {"zfpy": "zfpy", "pcodec": "pcodec"}


def is_unknown_codec(e: BaseException) -> bool:
    """Whether ``e`` says that a codec the metadata names has no implementation here
    (numcodecs' or zarr's ``UnknownCodecError``): the package that provides it is not
    installed, which no chunk's bytes cause."""
    return type(e).__name__ == "UnknownCodecError"


def not_installed(e: BaseException) -> bool:
    """Whether ``e`` says that something decoding needs is not installed here: a codec
    (:func:`is_unknown_codec`), or a package its import did not find (an ``ImportError``: a
    worker whose Python lacks numcodecs, which had called every chunk damaged); no chunk's
    bytes cause it, and it passes as it is where a codec's error is called damage."""
    return is_unknown_codec(e) or isinstance(e, ImportError)


def named_codec(e: BaseException) -> str:
    """The codec an ``UnknownCodecError`` names (its id, unquoted), or '' where its message
    names none."""
    found = re.findall(r"'+([^']+)'+", str(e))
    return found[-1] if found else ""


def missing_codec(arr: Any) -> tuple[str, str] | None:
    """The first codec of the opened Zarr v3 array ``arr``'s chain (sharding's inner and
    index chains too) whose implementation is not installed here, as (its name in the
    metadata, the cause: numcodecs' ``UnknownCodecError``); None where every codec has one.
    zarr-python opens a v3 array that names a ``numcodecs.*`` codec whose package is missing
    (``numcodecs.pcodec`` without pcodec, ``numcodecs.zfpy`` without zfpy) and fails only as
    it decodes a chunk; a v2 array's codecs are made as it opens (it fails there)."""
    import numcodecs

    todo = list(getattr(arr.metadata, "codecs", ()))
    while todo:
        codec = todo.pop(0)
        todo += [*getattr(codec, "codecs", ()), *getattr(codec, "index_codecs", ())]
        config = getattr(codec, "codec_config", None)  # zarr's wrapper of a numcodecs codec
        if not isinstance(config, dict):
            continue
        try:
            numcodecs.get_codec(dict(config))
        except Exception as e:
            if is_unknown_codec(e):
                return str(getattr(codec, "codec_name", config.get("id"))), cause(e)
            raise
    return None


def unknown_codec_fix(name: str) -> str:
    """What installs the codec ``name`` (as the metadata names it: ``numcodecs.pcodec``,
    ``zfpy``, ``imagecodecs_jpeg2k``), in a line's words: numcodecs' optional codecs by their
    package (:data:`CODEC_PACKAGES`), others in general."""
    codec_id = name.removeprefix("numcodecs.")
    package = CODEC_PACKAGES.get(codec_id)
    how = f"`pip install {package}`" if package else "install the package that provides it"
    return f"{how} where the pipeline and its workers run"


def fill_bits(fill: Any, dtype: np.dtype) -> bytes:
    """A fill value as the bytes of one native element of ``dtype`` (exact: NaN payloads and
    signed zeros survive). ``fill`` is what zarr-python parsed from the metadata; None (a v2
    ``null`` fill value) reads as the dtype's zero, as zarr-python reads it."""
    if fill is None:
        return np.zeros((), dtype).tobytes()
    value = np.asarray(fill)
    if value.dtype.kind == dtype.kind and value.dtype.itemsize == dtype.itemsize:
        return value.astype(value.dtype.newbyteorder("="), copy=False).astype(dtype).tobytes()
    return np.asarray(fill, dtype=dtype).tobytes()


def check_frames(
    buf: np.ndarray, frames: Frames, codec: str, chunk_nbytes: int, grid: Shape | None = None
) -> np.ndarray:
    """:func:`_check_frames` of one stored unit's frames, whose chunk grid is ``grid`` (its
    damage named as every other damage line names it: "(in the shard's inner chunk [1, 1])",
    nothing more for an unsharded chunk; it had been "chunk 3: ...", a flat index); None: of
    frames that are no one unit's, their index in ``frames`` named ("chunk 3: ...")."""
    try:
        return _check_frames(buf, frames, codec, chunk_nbytes)
    except Damaged as e:
        if grid is None or e.chunk is None:
            raise
        text = str(e).removeprefix(f"chunk {e.chunk}: ")
        if math.prod(grid) > 1:
            text += f" ({inner_chunk(e.chunk, grid, (1,) * len(grid))})"
        raise Damaged(text, e.problem, e.chunk) from None


def _check_frames(buf: np.ndarray, frames: Frames, codec: str, chunk_nbytes: int) -> np.ndarray:
    """Check, before a GPU decodes them, the present frames of ``buf`` (a uint8 array holding
    stored units; ``frames`` offsets into it): which of them the GPU's decoder may take, and
    which no decoder decodes to exactly ``chunk_nbytes`` bytes. For no codec, each must be
    exactly ``chunk_nbytes`` bytes. For zstd, the GPU (nvCOMP, one frame per chunk) takes a
    stored chunk that is one whole zstd frame declaring exactly ``chunk_nbytes`` decoded
    bytes, with no content checksum; its length is measured from its block headers (a cut
    frame would be decoded from whatever bytes follow it).

    Returns a mask of the present frames to decode on the host instead, where numcodecs
    decodes them as zarr-python does (and refuses them there if they are damaged): those whose
    header declares no content size (the GPU's decoder cannot size them), those that carry a
    content checksum (the host's decoder verifies it; nvCOMP's is not known to), those that
    start with a skippable frame (RFC 8878, 3.1.2), and those with bytes after their first
    frame (more frames, skippable or not: numcodecs decodes them all, their content sizes
    summed; or bytes it refuses).

    Raises :class:`Damaged` naming the first frame that no decoder reads as the chunk: fewer
    than 6 bytes, neither zstd's nor a skippable frame's magic number (numcodecs' zstd has no
    legacy formats), a first frame whose header or blocks are cut short or that has a
    reserved block type, a first frame that declares more than the chunk, or a frame alone in
    its bytes that declares less. Vectorised over frames: a 256 MiB block holds thousands of
    them."""
    present = np.flatnonzero(frames.sizes != EMPTY)
    off = frames.offsets[present].astype(np.int64)
    size = frames.sizes[present].astype(np.int64)
    needs_host = np.zeros(len(present), bool)
    if codec == "none":
        _first_bad(
            present,
            size != chunk_nbytes,
            "it is cut short or added to: {} bytes where an uncompressed chunk is "
            + str(chunk_nbytes),
            size,
            "size",
        )
        return needs_host
    _first_bad(present, size < 6, "it holds {} bytes, too few for a zstd frame", size)
    magic = np.zeros(len(present), np.int64)
    for k in range(4):
        magic |= buf[off + k].astype(np.int64) << (8 * k)
    skippable = (magic & ~0xF) == ZSTD_SKIPPABLE
    _first_bad(
        present, ~skippable & (magic != ZSTD_MAGIC), "it is not a zstd frame ({} bytes)", size
    )
    needs_host[skippable] = True  # numcodecs skips it, and decodes what follows
    zstd = np.flatnonzero(~skippable)
    needs_host[zstd] = _check_zstd_frames(buf, present[zstd], off[zstd], size[zstd], chunk_nbytes)
    return needs_host


def _check_zstd_frames(
    buf: np.ndarray, present: np.ndarray, off: np.ndarray, size: np.ndarray, chunk_nbytes: int
) -> np.ndarray:
    """:func:`check_frames` for stored chunks that start with a zstd frame (its magic number
    checked): the mask of those to decode on the host."""
    end = off + size

    def byte(pos: np.ndarray) -> np.ndarray:
        ok = pos < end
        got = np.zeros(len(pos), np.int64)
        got[ok] = buf[pos[ok]]
        _first_bad(present, ~ok, "its zstd frame is cut short ({} bytes)", size)
        return got

    fhd = byte(off + 4)
    fcs_flag, single, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    pos = off + 5 + (1 - single) + np.array([0, 1, 2, 4])[dict_flag]
    fcs_size = np.where(fcs_flag == 0, single, np.array([0, 2, 4, 8])[fcs_flag])
    # the declared content size, gathered one byte at a time where the header has that many
    content = np.zeros(len(present), np.int64)
    for k in range(8):
        has = np.flatnonzero(fcs_size > k)
        if len(has):
            p = pos[has] + k
            ok = p < end[has]
            if not ok.all():
                _first_bad(
                    present[has], ~ok, "its zstd frame header is cut short ({} bytes)", size[has]
                )
            content[has] |= buf[p].astype(np.int64) << (8 * k)
    content = np.where(fcs_size == 2, content + 256, content)
    declared = fcs_size > 0
    # more than the chunk: whatever follows the frame only adds to what it decodes to
    _first_bad(
        present,
        declared & (content > chunk_nbytes),
        "its zstd frame declares {} decoded bytes, more than the chunk's " + str(chunk_nbytes),
        content,
        "size",
    )
    # the first block header; a frame of one block ends right after it
    block = pos + fcs_size
    header = byte(block) | byte(block + 1) << 8 | byte(block + 2) << 16
    last, kind, bsize = header & 1, (header >> 1) & 3, header >> 3
    _first_bad(present, kind == 3, "its zstd frame has a reserved block type ({} bytes)", size)
    frame_end = block + 3 + np.where(kind == 1, 1, bsize) + 4 * checksum
    one_block = last == 1
    _first_bad(
        present,
        one_block & (frame_end > end),
        "its zstd frame is {} bytes long, more than are stored",
        frame_end - off,
    )
    length = np.where(one_block, frame_end - off, 0)
    for i in np.flatnonzero(~one_block):  # frames of several blocks (over 128 KiB): walk them
        try:
            length[i] = zstd_frame_size(buf[off[i] : end[i]])  # raises where it is cut short
        except Damaged as e:
            raise Damaged(f"chunk {int(present[i])}: {e}", e.problem, int(present[i])) from None
    alone = length == size  # else bytes follow the first frame: more frames, or a trailer
    _first_bad(
        present,
        alone & declared & (content < chunk_nbytes),
        "its zstd frame declares {} decoded bytes, not the chunk's " + str(chunk_nbytes),
        content,
        "size",
    )
    return ~declared | (checksum == 1) | ~alone


def _first_bad(
    index: np.ndarray, bad: np.ndarray, text: str, values: np.ndarray, problem: str = "frame"
) -> None:
    """Raise Damaged (``problem``) for the first frame where ``bad`` holds (``text`` formatted
    with its value), naming the chunk's index within its unit."""
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        chunk = int(index[j])
        raise Damaged(f"chunk {chunk}: " + text.format(int(values[j])), problem, chunk)


__all__ = [
    "CRC32C",
    "RAW_MIN_FRAME",
    "RAW_SAMPLE_FRAMES",
    "ZSTD_BLOCK_MAX",
    "ZSTD_MAGIC",
    "ZSTD_SKIPPABLE",
    "ChunkFormat",
    "Damaged",
    "FrameCodec",
    "RawFrame",
    "StoredFormat",
    "UnitCheck",
    "blosc_header",
    "check_frames",
    "check_unit",
    "damaged_chunk",
    "damaged_frame",
    "fill_bits",
    "may_store_raw",
    "raw_frame",
    "sample_frames",
    "stores_raw",
    "stripped_document",
    "unit_check",
    "v2_dtype",
    "v2_format",
    "v3_format",
    "zstd_content_size",
    "zstd_frame_size",
]


#: NumPy's warnings about a filter's arithmetic over stored values (Delta's running sum over
#: inf and -inf gives NaN; a scale-offset overflows): what Zarr reads is the same, and the run
#: counts the non-finite values it writes.
FILTER_ARITHMETIC_WARNINGS = r"(invalid value|overflow|divide by zero) encountered in"


def ignore_filter_arithmetic_warnings() -> None:
    """Ignore :data:`FILTER_ARITHMETIC_WARNINGS` in this whole process, for processes the
    pipeline owns (the command line's, its workers'): Zarr decodes on threads of its own,
    where ``np.errstate`` does not reach. A Python caller's process is left as it is."""
    warnings.filterwarnings("ignore", message=FILTER_ARITHMETIC_WARNINGS, category=RuntimeWarning)
