"""Zarr arrays read from their files with numcodecs, independently of the pipeline and of
zarr-python: what the benchmark checks outputs with, and what its CPU-decode ceilings decode.

Zarr v2 (``.zarray``: a numcodecs ``compressor`` and ``filters``, C or F order) and Zarr v3
(``zarr.json``: ``bytes`` with its endianness, then bytes-to-bytes codecs such as ``zstd``,
``blosc``, ``gzip``, ``crc32c``, or ``sharding_indexed`` around such a chain) on a local file
system. Chunks that are not stored read as the fill value. Every crc32c is verified, and a
chunk must decode to exactly its size.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Shape = tuple[int, ...]

#: A shard index entry that points at no chunk (an empty inner chunk).
_MISSING = 2**64 - 1


class Crc32c:
    """Zarr v3's ``crc32c`` codec on decode: the trailing 4-byte little-endian checksum is
    verified and removed."""

    def decode(self, data: Any, out: Any = None) -> Any:
        import google_crc32c

        view = memoryview(data).cast("B")
        body, stored = view[:-4], int.from_bytes(view[-4:], "little")
        if google_crc32c.value(bytes(body)) != stored:
            raise ValueError("crc32c checksum mismatch")
        if out is None:
            return body
        np.frombuffer(out, np.uint8)[: len(body)] = np.frombuffer(body, np.uint8)
        return out


def _numcodec(config: dict[str, Any]) -> Any:
    import numcodecs

    return numcodecs.get_codec(dict(config))


def _v3_codec(codec: dict[str, Any]) -> Any:
    """The numcodecs object that decodes a v3 bytes-to-bytes codec (zstd, blosc and gzip
    frames describe themselves, so only the name matters)."""
    name = codec["name"]
    if name == "crc32c":
        return Crc32c()
    if name in ("zstd", "blosc", "gzip"):
        return _numcodec({"id": name})
    if name.startswith("numcodecs."):
        return _numcodec({"id": name.split(".", 1)[1], **codec.get("configuration", {})})
    raise ValueError(f"the benchmark's reader does not know the v3 codec {name!r}")


@dataclass(frozen=True)
class Chain:
    """How one stored chunk's bytes become its array."""

    shape: Shape
    stored: np.dtype
    """the dtype as stored (its byte order included)"""
    codecs: tuple[Any, ...] = ()
    """bytes-to-bytes codecs in encode order (numcodecs objects)"""
    filters: tuple[Any, ...] = ()
    """v2 filters in encode order"""
    order: str = "C"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.stored.itemsize

    def decode_bytes(self, raw: Any, out: np.ndarray | None = None) -> Any:
        """The chunk's decoded bytes (before filters), written into ``out`` (a uint8 buffer of
        :attr:`nbytes`) when given."""
        data: Any = raw
        steps = list(reversed(self.codecs))
        for i, codec in enumerate(steps):
            last = i == len(steps) - 1
            data = codec.decode(data, out=out if last and not self.filters else None)
        if out is not None and not self.filters and data is not out:
            out[:] = np.frombuffer(data, np.uint8)
            data = out
        return data

    def decode(self, raw: Any) -> np.ndarray:
        """The chunk as an array (native byte order); ValueError when it does not decode to
        exactly the chunk."""
        data = self.decode_bytes(raw)
        for f in reversed(self.filters):
            data = f.decode(data)
        from numcodecs.compat import ensure_contiguous_ndarray

        arr = ensure_contiguous_ndarray(data).view(np.uint8).view(self.stored)
        if arr.size != math.prod(self.shape):
            raise ValueError(
                f"a chunk decodes to {arr.size * arr.itemsize} bytes, not {self.nbytes}"
            )
        arr = arr.reshape(self.shape, order=self.order)  # type: ignore[call-overload]
        return arr.astype(self.stored.newbyteorder("="), copy=False)


@dataclass(frozen=True)
class Sharding:
    """A v3 shard: inner chunks of ``inner.shape``, an index of (offset, length) pairs."""

    inner: Chain
    index_crc: bool
    index_at_end: bool

    def grid(self, shard: Shape) -> Shape:
        return tuple(s // c for s, c in zip(shard, self.inner.shape, strict=True))

    def frames(self, raw: bytes | memoryview, n: int) -> list[tuple[int, int]]:
        """(offset, length) of each inner chunk of a shard file (offset -1: not stored)."""
        size = n * 16 + (4 if self.index_crc else 0)
        blob = raw[-size:] if self.index_at_end else raw[:size]
        if self.index_crc:
            blob = bytes(Crc32c().decode(blob))
        index = np.frombuffer(blob, "<u8").reshape(n, 2)
        out = []
        for off, length in index.tolist():
            if off == _MISSING:
                out.append((-1, 0))
            elif off + length > len(raw):
                raise ValueError("a shard index points past the end of its shard")
            else:
                out.append((int(off), int(length)))
        return out


class StoredArray:
    """One Zarr array on a local file system, read with numcodecs."""

    def __init__(
        self,
        root: Path,
        shape: Shape,
        chunk: Shape,
        chain: Chain,
        fill: Any,
        key: Any,
        sharding: Sharding | None = None,
    ) -> None:
        self.root = root
        self.shape = shape
        self.chunk = chunk
        """the shape of one stored file's region (the shard shape for sharded arrays)"""
        self.chain = chain
        self.dtype = chain.stored.newbyteorder("=")
        self.fill = fill
        self._key = key
        self.sharding = sharding

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def grid(self) -> Shape:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunk, strict=True))

    def units(self) -> list[Shape]:
        """Indices of every stored file's region, in C order."""
        return list(itertools.product(*(range(g) for g in self.grid)))

    def unit_path(self, idx: Shape) -> Path:
        return self.root / self._key(idx)

    def stored_bytes(self) -> int:
        """Bytes of the chunk (or shard) files that exist."""
        return sum(p.stat().st_size for p in map(self.unit_path, self.units()) if p.exists())

    def unit_bytes(self) -> int:
        """Bytes one stored file decodes to."""
        return math.prod(self.chunk) * self.dtype.itemsize

    def decode_file(self, raw: bytes | memoryview, out: np.ndarray) -> int:
        """Decode every chunk of one stored file's bytes into ``out`` (uint8, at least
        :meth:`unit_bytes`), in storage order; the bytes decoded. What a CPU decoder must do
        per file, without assembling the array."""
        if self.sharding is None:
            self.chain.decode_bytes(raw, out[: self.chain.nbytes])
            return self.chain.nbytes
        inner = self.sharding.inner
        per = inner.nbytes
        frames = self.sharding.frames(raw, math.prod(self.sharding.grid(self.chunk)))
        done = 0
        for k, (off, length) in enumerate(frames):
            if off >= 0:
                inner.decode_bytes(raw[off : off + length], out[k * per : (k + 1) * per])
                done += per
        return done

    def read_unit(self, idx: Shape) -> np.ndarray:
        """The region of one stored file, in the full chunk (or shard) shape."""
        path = self.unit_path(idx)
        if not path.exists():
            return np.full(self.chunk, self.fill, self.dtype)
        raw = path.read_bytes()
        if self.sharding is None:
            return self.chain.decode(raw)
        inner = self.sharding.inner
        grid = self.sharding.grid(self.chunk)
        out = np.full(self.chunk, self.fill, self.dtype)
        for k, (off, length) in enumerate(self.sharding.frames(raw, math.prod(grid))):
            if off >= 0:
                at = np.unravel_index(k, grid)
                sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(at, inner.shape, strict=True))
                out[sl] = inner.decode(raw[off : off + length])
        return out

    def read(self, lo: Shape, hi: Shape) -> np.ndarray:
        """The array's values in the box ``[lo, hi)``."""
        out = np.empty([b - a for a, b in zip(lo, hi, strict=True)], self.dtype)
        parts = [range(a // c, -(-b // c)) for a, b, c in zip(lo, hi, self.chunk, strict=True)]
        for idx in itertools.product(*parts):
            start = [i * c for i, c in zip(idx, self.chunk, strict=True)]
            src, dst = [], []
            for a, b, s0, c in zip(lo, hi, start, self.chunk, strict=True):
                src.append(slice(max(a, s0) - s0, min(b, s0 + c) - s0))
                dst.append(slice(max(a, s0) - a, min(b, s0 + c) - a))
            out[tuple(dst)] = self.read_unit(idx)[tuple(src)]
        return out


def open_array(store: Path, array: str = "") -> StoredArray:
    """The Zarr array at ``store``/``array`` (v3 ``zarr.json`` or v2 ``.zarray``)."""
    root = Path(store) / array if array else Path(store)
    if (root / "zarr.json").exists():
        meta = json.loads((root / "zarr.json").read_text())
        if meta.get("node_type") == "array":
            return _open_v3(root, meta)
    if (root / ".zarray").exists():
        return _open_v2(root, json.loads((root / ".zarray").read_text()))
    raise FileNotFoundError(f"no Zarr array at {root}")


def _fill(value: Any, dtype: np.dtype) -> Any:
    """A fill value as stored in metadata (numbers, 'NaN', 'Infinity', '-Infinity', hex bit
    patterns, or null for 0) as a scalar of ``dtype``."""
    if value is None:
        return dtype.type(0)
    if isinstance(value, str):
        if value.startswith("0x"):
            raw = int(value, 16).to_bytes(dtype.itemsize, "big")
            return np.frombuffer(raw, dtype.newbyteorder(">"))[0].astype(dtype)
        return dtype.type({"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}[value])
    return dtype.type(value)


def _open_v2(root: Path, meta: dict[str, Any]) -> StoredArray:
    stored = np.dtype(meta["dtype"])
    chunk = tuple(meta["chunks"])
    codecs = (_numcodec(meta["compressor"]),) if meta.get("compressor") else ()
    filters = tuple(_numcodec(f) for f in meta.get("filters") or ())
    chain = Chain(chunk, stored, codecs, filters, meta.get("order", "C"))
    sep = meta.get("dimension_separator", ".")

    def key(idx: Shape) -> str:
        return sep.join(map(str, idx)) if idx else "0"

    fill = _fill(meta.get("fill_value"), stored.newbyteorder("="))
    return StoredArray(root, tuple(meta["shape"]), chunk, chain, fill, key)


def _v3_chain(codecs: list[dict[str, Any]], shape: Shape, dtype: np.dtype) -> Chain:
    """The chain of a v3 ``codecs`` list without sharding: ``bytes``, then bytes codecs."""
    first, rest = codecs[0], codecs[1:]
    if first["name"] != "bytes":
        raise ValueError(f"the benchmark's reader does not know the v3 codec {first['name']!r}")
    endian = first.get("configuration", {}).get("endian", "little")
    stored = dtype.newbyteorder("<" if endian == "little" else ">")
    return Chain(shape, stored, tuple(_v3_codec(c) for c in rest))


def _open_v3(root: Path, meta: dict[str, Any]) -> StoredArray:
    dtype = np.dtype(meta["data_type"])
    chunk = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    enc = meta.get("chunk_key_encoding", {"name": "default"})
    sep = enc.get("configuration", {}).get("separator", "/" if enc["name"] == "default" else ".")
    prefix = "c" if enc["name"] == "default" else ""

    def key(idx: Shape) -> str:
        parts = [prefix, *map(str, idx)] if prefix else [str(i) for i in idx] or ["0"]
        return sep.join(parts)

    codecs = meta["codecs"]
    sharding = None
    if codecs[0]["name"] == "sharding_indexed":
        conf = codecs[0]["configuration"]
        inner_shape = tuple(conf["chunk_shape"])
        inner = _v3_chain(conf["codecs"], inner_shape, dtype)
        index_names = [c["name"] for c in conf.get("index_codecs", [])]
        sharding = Sharding(
            inner, "crc32c" in index_names, conf.get("index_location", "end") == "end"
        )
        chain = inner
    else:
        chain = _v3_chain(codecs, chunk, dtype)
    fill = _fill(meta.get("fill_value"), dtype)
    return StoredArray(root, tuple(meta["shape"]), chunk, chain, fill, key, sharding)
