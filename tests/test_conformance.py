"""Conformance: Zarr arrays as other tools write them, through the pipeline, to the bit.

Each case writes a small array with a real tool (zarr-python 3 writing v2 and v3, tensorstore,
xarray, or by hand from the spec where no tool writes the case), runs the pipeline's chain over
it on a real Dask cluster, and compares every bit of the output with NumPy's chain over what
zarr-python reads from the input; the output is read back with tensorstore too. Shapes are not
multiples of the chunks, some chunks are absent (they read as the fill value), and values
include NaN payloads, infinities, signed zeros and subnormals.

Damaged inputs (a truncated chunk, a short frame, an empty file, a cut shard, a bad index or
checksum) must end the run with a :class:`ChunkError` naming the store and the key, the output
left incomplete. The same suite runs with ``backend: gpu`` on the GPU host (``pytest -m gpu``).
"""

from __future__ import annotations

import json
import math
import re
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from lzma import LZMAError
from pathlib import Path
from typing import Any

import numcodecs
import numcodecs.zarr3
import numpy as np
import pytest
import zarr
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    ZstdCodec,
)

from pipeline import verify as pipeline_verify
from pipeline.config import parse_config
from pipeline.errors import ChunkError, InputError
from pipeline.running.runner import RunOptions, run
from pipeline.store.shards import PROBLEMS
from tests.conftest import pipeline_process, record_of
from tests.faultkit import file_states

SHAPE = (13, 22)
CHUNKS = (4, 6)


def chain(x: np.ndarray) -> np.ndarray:
    """The pipeline's reference chain, multiply by 5, square, add to itself, in plain NumPy."""
    with np.errstate(all="ignore"):
        y = x * x.dtype.type(5) if x.dtype.kind == "f" else x * 5
        y = y * y
        return y + y


def values(dtype: str, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """Test data of ``dtype``: random, with the special values its kind has."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dt.kind == "f":
        x = rng.standard_normal(shape).astype(dt)
        flat = x.reshape(-1)
        native = dt.newbyteorder("=")
        bits = np.dtype(f"u{dt.itemsize}")
        nan_payload = (np.array(np.nan, native).view(bits) | 0x5).view(native)
        tiny = np.finfo(native).smallest_subnormal
        specials = [np.nan, np.inf, -np.inf, -0.0, tiny, -tiny, nan_payload, 1e30]
        for i, v in enumerate(specials):
            flat[7 * i + 3] = v
        return x
    info = np.iinfo(dt)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return rng.integers(lo, hi, shape, endpoint=True).astype(dt)


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal element for element, bit for bit (NaN payloads and signed zeros included)."""
    if got.shape != want.shape or got.dtype.newbyteorder("=") != want.dtype.newbyteorder("="):
        return False
    a = np.ascontiguousarray(got, got.dtype.newbyteorder("="))
    b = np.ascontiguousarray(want, want.dtype.newbyteorder("="))
    return bool(np.array_equal(a.view(np.uint8), b.view(np.uint8)))


def drop_some_chunks(root: Path, keep: Callable[[str], bool] | None = None) -> None:
    """Delete a few stored chunk files of an array (they must read as the fill value)."""
    names = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith((".z", "zarr.json"))
    )
    for name in names[1::3]:
        if keep is None or not keep(name):
            (root / name).unlink()


# --------------------------------------------------------------------------------------------
# Writers: each writes an array at ``path`` (a directory) and returns nothing; the expected
# input is whatever zarr-python then reads there.


@dataclass(frozen=True)
class Case:
    id: str
    write: Callable[[Path], None]
    array: str = ""
    """the array's path in the store ('' at the root)"""
    output: str = ""
    """the output's path in its store: by default the variable's name for a variable of an
    xarray Dataset (the output is a Dataset too), else the root"""


def zarr3(dtype: str = "float32", drop: bool = False, **kw: Any) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        kw.setdefault("chunks", CHUNKS)
        with warnings.catch_warnings():  # numcodecs.* codecs warn that they are not in the spec
            warnings.simplefilter("ignore")
            made = {k: v() if callable(v) else v for k, v in kw.items()}
            a = zarr.create_array(store=str(path), shape=SHAPE, dtype=dtype, **made)
            a[...] = values(dtype)
        if drop:
            drop_some_chunks(path)

    return write


def zarr2(dtype: str = "float32", drop: bool = False, **kw: Any) -> Callable[[Path], None]:
    return zarr3(dtype, drop, zarr_format=2, **kw)


def tensorstore(spec: dict[str, Any], dtype: str = "float32", partial: bool = False) -> Any:
    def write(path: Path) -> None:
        ts = pytest.importorskip("tensorstore")
        full = {"kvstore": {"driver": "file", "path": str(path)}, **spec}
        t = ts.open(full, create=True).result()
        x = values(dtype)
        if partial:  # only some chunks written: the rest are absent
            t[: x.shape[0] // 2, :7].write(x[: x.shape[0] // 2, :7]).result()
        else:
            t.write(x).result()

    return write


def xarray_dataset(zarr_format: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        xr = pytest.importorskip("xarray")
        x = values("float32")
        ds = xr.Dataset(
            {"temp": (("y", "x"), x, {"units": "K"})},
            coords={"y": np.arange(SHAPE[0]), "x": np.arange(SHAPE[1]) * 0.5},
        )
        with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec
            warnings.simplefilter("ignore")
            ds.to_zarr(
                str(path), zarr_format=zarr_format, encoding={"temp": {"chunks": CHUNKS}}, mode="w"
            )

    return write


def v2_null_fill_by_hand(dtype: str) -> Callable[[Path], None]:
    """A v2 array whose .zarray says ``"fill_value": null`` (tensorstore's default, zarr-python
    2's ``fill_value=None``), with chunks never written: they read as 0."""

    def write(path: Path) -> None:
        path.mkdir(parents=True)
        meta = {
            "zarr_format": 2,
            "shape": list(SHAPE),
            "chunks": list(CHUNKS),
            "dtype": np.dtype(dtype).str,
            "compressor": {"id": "zstd", "level": 1},
            "fill_value": None,
            "order": "C",
            "filters": None,
            "dimension_separator": ".",
        }
        (path / ".zarray").write_text(json.dumps(meta))
        x = values(dtype)
        comp = numcodecs.Zstd(level=1)
        for i in range(0, SHAPE[0], CHUNKS[0]):
            for j in range(0, SHAPE[1], CHUNKS[1]):
                if (i + j) % 3 == 0:
                    continue  # never written
                block = np.zeros(CHUNKS, np.dtype(dtype))
                part = x[i : i + CHUNKS[0], j : j + CHUNKS[1]]
                block[: part.shape[0], : part.shape[1]] = part
                name = f"{i // CHUNKS[0]}.{j // CHUNKS[1]}"
                (path / name).write_bytes(comp.encode(block))

    return write


def sharded(index_location: str = "end", inner: list[Any] | None = None, **kw: Any) -> Any:
    inner = inner if inner is not None else [BytesCodec(), ZstdCodec(level=1)]
    return zarr3(
        chunks=(8, 12),
        serializer=ShardingCodec(chunk_shape=CHUNKS, codecs=inner, index_location=index_location),
        compressors=None,
        **kw,
    )


def _ts_v2(compressor: Any, dtype: str = "<f4", **meta: Any) -> dict[str, Any]:
    return {
        "driver": "zarr",
        "metadata": {
            "shape": list(SHAPE),
            "chunks": list(CHUNKS),
            "dtype": dtype,
            "compressor": compressor,
            **meta,
        },
    }


def _ts_v3(codecs: list[Any], dtype: str = "float32", chunks: Any = CHUNKS) -> dict[str, Any]:
    return {
        "driver": "zarr3",
        "metadata": {
            "shape": list(SHAPE),
            "data_type": dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
            "codecs": codecs,
        },
    }


def stored_units(root: Path) -> list[Path]:
    """The stored chunk (or shard) files of an array."""
    return sorted(
        p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr.json"))
    )


def rewrite_shard(raw: bytes, change: Callable[[bytes], bytes], n: int = 0) -> bytes:
    """A shard of the ``sharded`` writer (index at the end, with its crc32c) with each inner
    frame changed by ``change``, and an index that points at the new frames; ``n``: how many
    chunks the shard holds (0: the ``sharded`` writer's 4)."""
    import google_crc32c

    n = n or (8 // CHUNKS[0]) * (12 // CHUNKS[1])
    k = 16 * n + 4
    table = np.frombuffer(raw[-k:-4], "<u8").reshape(n, 2).copy()
    body = b""
    for row in table:
        if int(row[0]) == 2**64 - 1:
            continue  # an absent chunk
        frame = change(raw[int(row[0]) : int(row[0]) + int(row[1])])
        row[:] = [len(body), len(frame)]
        body += frame
    index = table.astype("<u8").tobytes()
    return body + index + google_crc32c.value(index).to_bytes(4, "little")


def changed(
    writer: Callable[[Path], None], change: Callable[[bytes], bytes], shards: bool = False
) -> Callable[[Path], None]:
    """``writer``, then every stored chunk's bytes (every inner frame's, with ``shards``)
    changed by ``change``."""

    def write(path: Path) -> None:
        writer(path)
        for p in stored_units(path):
            raw = p.read_bytes()
            p.write_bytes(rewrite_shard(raw, change) if shards else change(raw))

    return write


def trailer(raw: bytes) -> bytes:
    """Bytes after the frame: numcodecs' Blosc, zlib and gzip decoders ignore them."""
    return raw + b"\x00\x00\x00trailer"


#: A zstd skippable frame (RFC 8878, 3.1.2) of 6 bytes of user data: decoders skip it.
SKIPPABLE = (0x184D2A5E).to_bytes(4, "little") + (6).to_bytes(4, "little") + b"a note"


def skippable_first(raw: bytes) -> bytes:
    return SKIPPABLE + raw


def skippable_after(raw: bytes) -> bytes:
    return raw + SKIPPABLE


def two_frames(raw: bytes) -> bytes:
    """The zstd frame's content as two frames back to back: numcodecs decodes both."""
    data = bytes(numcodecs.Zstd().decode(raw))
    cut = len(data) // 3
    return numcodecs.Zstd(level=1).encode(data[:cut]) + numcodecs.Zstd(level=3).encode(data[cut:])


def key_made_a_directory(writer: Callable[[Path], None], key: str) -> Callable[[Path], None]:
    """``writer``, then the stored unit ``key`` replaced by a directory (holding a file):
    zarr-python's stores read a key that is a directory as absent (the fill value)."""

    def write(path: Path) -> None:
        writer(path)
        (path / key).unlink()
        (path / key).mkdir()
        (path / key / "0").write_bytes(b"not a chunk")

    return write


def key_under_a_file(writer: Callable[[Path], None], folder: str) -> Callable[[Path], None]:
    """``writer``, then the folder of chunks ``folder`` replaced by a file: the keys under it
    read as absent in zarr-python's stores (NotADirectoryError)."""

    def write(path: Path) -> None:
        import shutil

        writer(path)
        shutil.rmtree(path / folder)
        (path / folder).write_bytes(b"not a folder")

    return write


def filters_listed_empty(writer: Callable[[Path], None]) -> Callable[[Path], None]:
    """``writer`` (Zarr v2), then every ``.zarray`` of the store, and each array's copy in
    ``.zmetadata``, saying ``"filters": []`` where it said ``null``: what zarrs, zarr-python
    3.0 and VirtualiZarr wrote; zarr-python 3.1 reads it as no filters, and warns that it is
    "contrary to the Zarr V2 specification" each time it opens the array."""

    def write(path: Path) -> None:
        writer(path)
        for doc in path.rglob(".zarray"):
            meta = json.loads(doc.read_text())
            meta["filters"] = meta["filters"] or []
            doc.write_text(json.dumps(meta))
        consolidated = path / ".zmetadata"
        if consolidated.exists():
            meta = json.loads(consolidated.read_text())
            for key, value in meta["metadata"].items():
                if key.endswith(".zarray"):
                    value["filters"] = value["filters"] or []
            consolidated.write_text(json.dumps(meta))

    return write


#: Blosc frames that c-blosc would read past the end of, when cut: small chunks are stored
#: as they are inside the frame (and so is everything at clevel 0).
_BLOSC_LZ4 = BloscCodec(cname="lz4", shuffle="shuffle")

_BYTES_ZSTD = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "zstd"}]

#: A chain only Zarr decodes (numcodecs' Delta filter), its chunks Blosc frames.
_DELTA_BLOSC = zarr3(filters=lambda: [numcodecs.zarr3.Delta(dtype="<f4")], compressors=_BLOSC_LZ4)


#: tensorstore's shards of 2 inner shards of 4 x 12, each after a transpose: stored as 12 x 4,
#: of 3 chunks of 4 x 4 (a grid of 3 x 1 stored, 1 x 3 in the array's axes).
_TS_NESTED_TRANSPOSED = tensorstore(
    _ts_v3(
        [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [4, 12],
                    "codecs": [
                        {"name": "transpose", "configuration": {"order": [1, 0]}},
                        {
                            "name": "sharding_indexed",
                            "configuration": {
                                "chunk_shape": [4, 4],
                                "codecs": [{"name": "bytes"}],
                                "index_codecs": [{"name": "bytes"}],
                            },
                        },
                    ],
                },
            }
        ],
        chunks=(8, 12),
    )
)


def _ts_sharded(codecs: list[Any], index_codecs: list[Any], partial: bool = False) -> Any:
    """tensorstore writing shards of 2 x 2 chunks, their inner chunks' ``codecs``, their index's
    ``index_codecs`` (only some chunks written where ``partial``)."""
    sharding = {"chunk_shape": list(CHUNKS), "codecs": codecs, "index_codecs": index_codecs}
    spec = _ts_v3([{"name": "sharding_indexed", "configuration": sharding}], chunks=(8, 12))
    return tensorstore(spec, partial=partial)


#: The chunks in a shard of :func:`_ts_transposed_shards`: 3 x 2 of its transposed 12 x 8.
_TRANSPOSED_SHARD_CHUNKS = 6


def _ts_transposed_shards(codecs: list[Any]) -> Any:
    """tensorstore writing a ``transpose`` codec (order [1, 0]) before ``sharding_indexed``
    (valid Zarr v3): shards of 8 x 12 stored as 12 x 8, cut into inner chunks of 4 x 4 (which
    cut the shard untransposed too, so zarr-python reads it), their ``codecs`` given."""
    sharding = {"chunk_shape": [4, 4], "codecs": codecs}
    transpose = {"name": "transpose", "configuration": {"order": [1, 0]}}
    codecs_ = [transpose, {"name": "sharding_indexed", "configuration": sharding}]
    return tensorstore(_ts_v3(codecs_, chunks=(8, 12)))


#: An index of big-endian integers (tensorstore and zarr-python write one where asked): the
#: pipeline reads such shards only through Zarr.
_BIG_ENDIAN_INDEX = [{"name": "bytes", "configuration": {"endian": "big"}}, {"name": "crc32c"}]


def _sharded_delta_raw(index_location: str = "end", drop: bool = False) -> Callable[[Path], None]:
    """A chain only Zarr decodes (numcodecs' Delta filter), uncompressed, in shards whose index
    is bytes alone (no crc32c), at the shard's end (or its start); ``drop``: some shards
    deleted."""
    return zarr3(
        drop=drop,
        chunks=(8, 12),
        serializer=lambda: ShardingCodec(
            chunk_shape=CHUNKS,
            codecs=[numcodecs.zarr3.Delta(dtype="<f4"), BytesCodec()],
            index_codecs=[BytesCodec()],
            index_location=index_location,
        ),
        compressors=None,
    )


def _nested_shards(inner: Callable[[], list[Any]]) -> Callable[[Path], None]:
    """Shards of 2 inner shards of 2 chunks each (nested sharding, which only Zarr reads), the
    chunks' codecs ``inner()``, the inner shards' index bytes alone (no crc32c)."""
    return zarr3(
        chunks=(8, 12),
        serializer=lambda: ShardingCodec(
            chunk_shape=(4, 12),
            codecs=[ShardingCodec(chunk_shape=CHUNKS, codecs=inner(), index_codecs=[BytesCodec()])],
        ),
        compressors=None,
    )


_NESTED_SHARDS = _nested_shards(lambda: [BytesCodec()])


CASES = [
    # zarr-python 3, Zarr v3
    Case("zarr3-default-zstd", zarr3()),
    Case("zarr3-default-missing-chunks-nan-fill", zarr3(fill_value=np.nan, drop=True)),
    Case("zarr3-float64-fill-42", zarr3("float64", fill_value=42.0, drop=True)),
    Case("zarr3-int16", zarr3("int16", fill_value=-7, drop=True)),
    Case("zarr3-uint8", zarr3("uint8")),
    Case("zarr3-float16", zarr3("float16")),
    Case("zarr3-int8", zarr3("int8")),
    Case("zarr3-uint16-missing", zarr3("uint16", fill_value=9, drop=True)),
    Case("zarr3-no-compressor", zarr3(compressors=None)),
    Case("zarr3-blosc-lz4-shuffle", zarr3(compressors=BloscCodec(cname="lz4", shuffle="shuffle"))),
    Case(
        "zarr3-blosc-zstd-bitshuffle",
        zarr3(compressors=BloscCodec(cname="zstd", shuffle="bitshuffle")),
    ),
    Case("zarr3-gzip", zarr3("float64", compressors=GzipCodec(level=3))),
    Case("zarr3-zstd-crc32c", zarr3(compressors=[ZstdCodec(level=2), Crc32cCodec()])),
    Case("zarr3-zstd-checksum", zarr3(compressors=ZstdCodec(level=1, checksum=True))),
    Case("zarr3-transpose", zarr3(filters=[TransposeCodec(order=(1, 0))])),
    Case("zarr3-big-endian", zarr3(">f4", serializer=BytesCodec(endian="big"))),
    Case("zarr3-big-endian-int16", zarr3(">i2", serializer=BytesCodec(endian="big"))),
    Case(
        "zarr3-numcodecs-zlib",
        zarr3(compressors=lambda: [numcodecs.zarr3.Zlib(level=3)]),
    ),
    Case(
        "zarr3-numcodecs-shuffle-lz4",
        zarr3(compressors=lambda: [numcodecs.zarr3.Shuffle(), numcodecs.zarr3.LZ4()]),
    ),
    Case(
        "zarr3-numcodecs-delta-filter",  # an array-to-array codec only Zarr decodes
        zarr3(filters=lambda: [numcodecs.zarr3.Delta(dtype="<f4")]),
    ),
    # numcodecs' implementations of zstd and crc32c: the same bytes as zarr-python's
    Case("zarr3-numcodecs-zstd", zarr3(compressors=lambda: [numcodecs.zarr3.Zstd(level=1)])),
    Case(
        "zarr3-numcodecs-zstd-crc32c",
        zarr3(compressors=lambda: [numcodecs.zarr3.Zstd(level=1), numcodecs.zarr3.CRC32C()]),
    ),
    Case(
        "zarr3-numcodecs-crc32c-at-start",  # not Zarr's crc32c: the checksum comes first
        zarr3(
            compressors=lambda: [
                numcodecs.zarr3.Zstd(level=1),
                numcodecs.zarr3.CRC32C(location="start"),
            ]
        ),
    ),
    Case("zarr3-v2-chunk-keys", zarr3(chunk_key_encoding={"name": "v2", "separator": "."})),
    Case("zarr3-dot-separator", zarr3(chunk_key_encoding={"name": "default", "separator": "."})),
    Case(
        "zarr3-write-empty-chunks-false",
        zarr3(fill_value=0.0, config={"write_empty_chunks": False}, drop=True),
    ),
    Case("zarr3-sharded", sharded()),
    Case("zarr3-sharded-index-start", sharded(index_location="start")),
    Case("zarr3-sharded-missing", sharded(fill_value=np.inf, drop=True)),
    Case("zarr3-sharded-crc32c-inner", sharded(inner=[BytesCodec(), Crc32cCodec()])),
    Case("zarr3-sharded-blosc", sharded(inner=[BytesCodec(), BloscCodec(cname="lz4")])),
    Case(
        "zarr3-sharded-transposed-big-endian",
        sharded(inner=[TransposeCodec(order=(1, 0)), BytesCodec(endian="big")], dtype=">f8"),
    ),
    # zarr-python 3, Zarr v2
    Case("zarr2-default-blosc", zarr2()),
    Case("zarr2-zstd", zarr2(compressors=numcodecs.Zstd(level=1))),
    Case("zarr2-zlib", zarr2("float64", compressors=numcodecs.Zlib(level=1))),
    Case("zarr2-gzip", zarr2(compressors=numcodecs.GZip(level=1))),
    Case("zarr2-bz2", zarr2(compressors=numcodecs.BZ2(level=1))),
    Case("zarr2-lzma", zarr2("int16", compressors=numcodecs.LZMA())),
    Case("zarr2-lz4", zarr2(compressors=numcodecs.LZ4())),
    Case("zarr2-no-compressor", zarr2(compressors=None)),
    Case("zarr2-crc32c-at-end", zarr2(compressors=numcodecs.CRC32C())),
    Case("zarr2-crc32c-at-start", zarr2(compressors=numcodecs.CRC32C(location="start"))),
    Case("zarr2-order-f", zarr2(order="F")),
    Case("zarr2-order-f-missing", zarr2("int16", order="F", fill_value=3, drop=True)),
    Case("zarr2-slash-separator", zarr2(chunk_key_encoding={"name": "v2", "separator": "/"})),
    Case("zarr2-nan-fill-missing", zarr2(fill_value=np.nan, drop=True)),
    Case("zarr2-null-fill-missing", zarr2(fill_value=None, drop=True)),
    Case("zarr2-big-endian-f4", zarr2(">f4", compressors=numcodecs.Zstd(level=1))),
    Case("zarr2-big-endian-f8-blosc", zarr2(">f8")),
    Case("zarr2-big-endian-i2-missing", zarr2(">i2", fill_value=None, drop=True)),
    Case(
        "zarr2-filter-delta",
        zarr2("int16", filters=[numcodecs.Delta(dtype="<i2")], compressors=numcodecs.Zlib()),
    ),
    Case(
        "zarr2-filter-fixedscaleoffset",
        zarr2(
            "float64",
            filters=[numcodecs.FixedScaleOffset(offset=0, scale=100, dtype="<f8", astype="<i4")],
        ),
    ),
    Case("zarr2-filter-quantize", zarr2("float32", filters=[numcodecs.Quantize(3, "<f4")])),
    Case("zarr2-filter-shuffle", zarr2(filters=[numcodecs.Shuffle(elementsize=4)])),
    Case("zarr2-filter-astype", zarr2("float64", filters=[numcodecs.AsType("<f4", "<f8")])),
    # by hand, from the spec
    Case("v2-null-fill-by-hand-f4", v2_null_fill_by_hand("<f4")),
    Case("v2-null-fill-by-hand-i2", v2_null_fill_by_hand("<i2")),
    Case("v2-null-fill-by-hand-i2-big-endian", v2_null_fill_by_hand(">i2")),
    # `"filters": []` (zarrs, zarr-python 3.0, VirtualiZarr): zarr-python warns at each opening
    Case("zarr2-filters-listed-empty", filters_listed_empty(zarr2(fill_value=3.0, drop=True))),
    Case(
        "xarray-v2-dataset-filters-listed-empty",
        filters_listed_empty(xarray_dataset(2)),
        array="temp",
        output="temp",
    ),
    # tensorstore
    Case(
        "tensorstore-v2-zstd-null-fill-partial", tensorstore(_ts_v2({"id": "zstd"}), partial=True)
    ),
    Case(
        "tensorstore-v2-blosc",
        tensorstore(_ts_v2({"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1})),
    ),
    Case("tensorstore-v2-zlib-order-f", tensorstore(_ts_v2({"id": "zlib"}, order="F"))),
    Case("tensorstore-v2-big-endian", tensorstore(_ts_v2(None, dtype=">f8"), dtype=">f8")),
    Case("tensorstore-v3-zstd", tensorstore(_ts_v3(_BYTES_ZSTD))),
    Case(
        "tensorstore-v3-sharded-partial",
        tensorstore(
            _ts_v3(
                [
                    {
                        "name": "sharding_indexed",
                        "configuration": {"chunk_shape": list(CHUNKS), "codecs": _BYTES_ZSTD},
                    }
                ],
                chunks=(8, 12),
            ),
            partial=True,
        ),
    ),
    Case(
        "tensorstore-v3-sharded-big-endian-index-partial",
        _ts_sharded(_BYTES_ZSTD, _BIG_ENDIAN_INDEX, partial=True),
    ),
    Case("zarr3-sharded-delta-uncompressed-index-bytes-only", _sharded_delta_raw()),
    Case("zarr3-sharded-delta-uncompressed-index-at-start", _sharded_delta_raw("start", drop=True)),
    Case("zarr3-nested-shards", _NESTED_SHARDS),
    # chains only Zarr decodes whose check decodes the codecs over each Blosc frame, or over a
    # whole shard, and hands its bytes on to Zarr under the chain less those (h57c)
    Case(
        "zarr3-delta-blosc-under-zstd-crc32c-missing",
        zarr3(
            filters=lambda: [numcodecs.zarr3.Delta(dtype="<f4")],
            compressors=lambda: [_BLOSC_LZ4, ZstdCodec(), Crc32cCodec()],
            drop=True,
        ),
    ),
    Case(
        "zarr3-sharded-blosc-compressed-whole-missing",
        zarr3(
            chunks=(8, 12),
            serializer=lambda: ShardingCodec(chunk_shape=CHUNKS, codecs=[BytesCodec(), _BLOSC_LZ4]),
            compressors=ZstdCodec(),
            drop=True,
        ),
    ),
    Case(
        "zarr3-sharded-delta-blosc-under-zstd-index-at-start",
        zarr3(
            chunks=(8, 12),
            serializer=lambda: ShardingCodec(
                chunk_shape=CHUNKS,
                codecs=[numcodecs.zarr3.Delta(dtype="<f4"), BytesCodec(), _BLOSC_LZ4, ZstdCodec()],
                index_location="start",
            ),
            compressors=None,
        ),
    ),
    Case(
        "zarr3-nested-shards-blosc-under-gzip",
        _nested_shards(lambda: [BytesCodec(), _BLOSC_LZ4, GzipCodec()]),
    ),
    # xarray
    Case("xarray-v2-dataset", xarray_dataset(2), array="temp", output="temp"),
    Case("xarray-v3-dataset", xarray_dataset(3), array="temp", output="temp"),
    # stored bytes that are not one frame of exactly the chunk, which numcodecs decodes (and so
    # zarr-python): bytes after a Blosc, zlib or gzip stream, zstd's skippable frames, zstd
    # frames back to back (the GPU's decoder takes one frame a chunk: these go to the host)
    Case("zarr2-blosc-bytes-after-frame", changed(zarr2(compressors=numcodecs.Blosc()), trailer)),
    Case(
        "zarr2-blosc-zstd-bytes-after-frame",
        changed(zarr2(compressors=numcodecs.Blosc(cname="zstd")), trailer),
    ),
    Case("zarr3-blosc-bytes-after-frame", changed(zarr3(compressors=_BLOSC_LZ4), trailer)),
    Case(
        "zarr3-transpose-blosc-bytes-after-frame",
        changed(zarr3(filters=[TransposeCodec(order=(1, 0))], compressors=_BLOSC_LZ4), trailer),
    ),
    Case(
        "zarr3-sharded-blosc-bytes-after-frame",
        changed(sharded(inner=[BytesCodec(), _BLOSC_LZ4]), trailer, shards=True),
    ),
    Case("zarr2-zlib-bytes-after-stream", changed(zarr2(compressors=numcodecs.Zlib()), trailer)),
    Case(
        "zarr2-gzip-zeros-after-stream",
        changed(zarr2(compressors=numcodecs.GZip()), lambda raw: raw + bytes(8)),
    ),
    Case(
        "zarr2-zstd-skippable-frame-first",
        changed(zarr2(compressors=numcodecs.Zstd(level=1)), skippable_first),
    ),
    Case("zarr3-zstd-skippable-frame-first", changed(zarr3(), skippable_first)),
    Case("zarr3-zstd-skippable-frame-after", changed(zarr3(), skippable_after)),
    Case("zarr3-zstd-two-frames", changed(zarr3(), two_frames)),
    Case(
        "zarr3-transpose-zstd-two-frames",
        changed(zarr3(filters=[TransposeCodec(order=(1, 0))]), two_frames),
    ),
    Case("zarr3-sharded-zstd-two-frames", changed(sharded(), two_frames, shards=True)),
    Case("zarr3-sharded-zstd-skippable-first", changed(sharded(), skippable_first, shards=True)),
    # a chunk key that is a directory, or lies under a file: zarr-python reads it as absent
    Case("zarr2-chunk-key-a-directory", key_made_a_directory(zarr2(fill_value=1.5), "1.1")),
    Case("zarr3-chunk-key-a-directory", key_made_a_directory(zarr3(fill_value=1.5), "c/1/2")),
    Case("zarr3-shard-key-a-directory", key_made_a_directory(sharded(fill_value=-2.0), "c/0/1")),
    Case("zarr3-chunk-keys-under-a-file", key_under_a_file(zarr3(fill_value=np.nan), "c/2")),
]


# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)], ids=str)
def backend_client(request: Any) -> Iterator[tuple[str, Any]]:
    """A real Dask cluster for the module's runs (starting one per run would take minutes):
    two CPU worker processes, or one GPU worker."""
    from distributed import Client, LocalCluster

    if request.param == "gpu":
        from dask_cuda import LocalCUDACluster

        cluster: Any = LocalCUDACluster(
            n_workers=1, threads_per_worker=2, dashboard_address=":0", device_memory_limit=0
        )
    else:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        yield request.param, client


def _config(tmp: Path, backend: str, array: str = "", **output: Any) -> Any:
    return parse_config(
        {
            "input": {"store": str(tmp / "in.zarr"), "array": array},
            "output": {"store": str(tmp / "out.zarr"), **output},
            "stages": [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}],
            "backend": backend,
            "chunking": {"target_bytes": 600},  # several blocks, even for these small arrays
        }
    )


def _run(tmp: Path, backend_client: tuple[str, Any], array: str = "", **output: Any) -> Any:
    backend, client = backend_client
    return run(_config(tmp, backend, array, **output), RunOptions(progress="none"), client=client)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_output_is_numpys_chain_over_what_zarr_reads(tmp_path: Path, backend_client, case) -> None:
    case.write(tmp_path / "in.zarr")
    with warnings.catch_warnings():  # numcodecs.* codecs warn that they are not in the spec
        warnings.simplefilter("ignore")
        x = zarr.open_array(str(tmp_path / "in.zarr"), path=case.array, mode="r")[...]
    summary = _run(tmp_path, backend_client, case.array)
    assert summary.status == "complete"
    y = zarr.open_array(str(tmp_path / "out.zarr"), path=case.output, mode="r")
    want = chain(np.asarray(x).astype(y.dtype))
    got = y[...]
    assert same_bits(got, want), f"{case.id}: the output differs from NumPy's chain"
    assert record_of(y.attrs)["status"] == "complete"
    ts = pytest.importorskip("tensorstore")
    out = tmp_path / "out.zarr" / case.output
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out)}}
    assert same_bits(ts.open(spec).result().read().result(), got)


# --------------------------------------------------------------------------------------------
# Damaged chunks: one error naming the store and the key, the output left incomplete.


def _zarr3_unsharded(path: Path) -> None:
    zarr3(compressors=ZstdCodec(level=1))(path)


def _zarr2_zstd(path: Path) -> None:
    zarr2(compressors=numcodecs.Zstd(level=1))(path)


def _chunk(path: Path, key: str) -> Path:
    return path / key


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _short_frame(dtype: str) -> Callable[[Path], None]:
    """A valid zstd frame of only the first half of the chunk's bytes."""

    def damage(p: Path) -> None:
        n = int(np.prod(CHUNKS)) * np.dtype(dtype).itemsize
        p.write_bytes(numcodecs.Zstd(level=1).encode(np.zeros(n // 2, np.uint8)))

    return damage


def _long_frame(p: Path) -> None:
    """A valid zstd frame of more bytes than the chunk holds."""
    n = int(np.prod(CHUNKS)) * 4
    p.write_bytes(numcodecs.Zstd(level=1).encode(np.zeros(n + 4, np.uint8)))


def _shard_index(fix: Callable[[np.ndarray], None], recrc: bool = True) -> Callable[[Path], None]:
    """Rewrite a shard's index (at its end) with ``fix``, with a valid crc32c when asked."""

    def damage(p: Path) -> None:
        import google_crc32c

        raw = bytearray(p.read_bytes())
        n = (8 // CHUNKS[0]) * (12 // CHUNKS[1])
        k = 16 * n + 4
        table = np.frombuffer(bytes(raw[-k:-4]), "<u8").reshape(n, 2).copy()
        fix(table)
        body = table.astype("<u8").tobytes()
        crc = google_crc32c.value(body).to_bytes(4, "little") if recrc else raw[-4:]
        raw[-k:] = body + bytes(crc)
        p.write_bytes(bytes(raw))

    return damage


def _offset_past_end(t: np.ndarray) -> None:
    t[0, 0] = 1 << 40


def _size_past_end(t: np.ndarray) -> None:
    t[0, 1] = t[0, 1] + 10_000


def _flip_crc(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(bytes(raw))


def _short_frame_in_shard(p: Path) -> None:
    """The shard's first inner chunk replaced by a valid frame of half the chunk's bytes, with
    a valid index and crc32c pointing at it."""
    import google_crc32c

    raw = p.read_bytes()
    n = (8 // CHUNKS[0]) * (12 // CHUNKS[1])
    k = 16 * n + 4
    table = np.frombuffer(raw[-k:-4], "<u8").reshape(n, 2).copy()
    half = numcodecs.Zstd(level=1).encode(np.zeros(int(np.prod(CHUNKS)) * 2, np.uint8))
    body = raw[:-k] + half
    table[0] = [len(raw) - k, len(half)]
    index = table.astype("<u8").tobytes()
    p.write_bytes(body + index + google_crc32c.value(index).to_bytes(4, "little"))


def _cut_frame_in_shard(p: Path, which: int = 0) -> None:
    """The shard's inner frame ``which`` (in index order; the first by default) cut to half its
    bytes, with a valid index and crc32c pointing at what is left (the frames after it moved
    up)."""
    import google_crc32c

    raw = p.read_bytes()
    n = (8 // CHUNKS[0]) * (12 // CHUNKS[1])
    k = 16 * n + 4
    table = np.frombuffer(raw[-k:-4], "<u8").reshape(n, 2)
    frames = [raw[o : o + s] for o, s in table]
    frames[which] = frames[which][: len(frames[which]) // 2]
    sizes = [len(f) for f in frames]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    index = np.stack([offsets, sizes], -1).astype("<u8").tobytes()
    p.write_bytes(b"".join(frames) + index + google_crc32c.value(index).to_bytes(4, "little"))


def _cut_blosc_under(outer: Any) -> Callable[[bytes], bytes]:
    """A chunk's bytes whose Blosc frame, under the codec ``outer`` (a numcodecs codec), is cut
    to half its bytes, ``outer``'s own stream (a gzip or zstd stream, a checksum) whole again:
    the outer codec decodes it without an error."""

    def change(raw: bytes) -> bytes:
        frame = bytes(outer.decode(raw))
        return bytes(outer.encode(frame[: len(frame) // 2]))

    return change


def _cut_blosc_frame_under(outer: Any) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        p.write_bytes(_cut_blosc_under(outer)(p.read_bytes()))

    return damage


def _delta_blosc_under(outer: Callable[[], Any]) -> Callable[[Path], None]:
    """A chain only Zarr decodes (numcodecs' Delta filter) whose Blosc frames lie under the
    bytes-to-bytes codec ``outer()`` makes."""
    return zarr3(
        filters=lambda: [numcodecs.zarr3.Delta(dtype="<f4")],
        compressors=lambda: [_BLOSC_LZ4, outer()],
    )


def _cut_frames_of_zstd_shard(p: Path) -> None:
    """A shard compressed whole by zstd whose inner Blosc frames are cut to half their bytes
    (its index rewritten to point at what is left), the zstd frame around it whole again."""
    shard = bytes(numcodecs.Zstd().decode(p.read_bytes()))
    cut = rewrite_shard(shard, lambda frame: frame[: len(frame) // 2])
    p.write_bytes(bytes(numcodecs.Zstd().encode(cut)))


def _index_into_itself(
    at_end: bool, crc: bool, big: bool = False, n: int = 0
) -> Callable[[Path], None]:
    """A shard's first index entry moved to point into the shard's own index (its chunk's
    size kept; the index at the shard's ``at_end`` or start, with a ``crc`` valid again, its
    integers ``big``-endian; ``n`` chunks in the shard, 0: 4): zarr-python reads that chunk
    from the index's bytes."""

    def damage(p: Path) -> None:
        import google_crc32c

        raw = p.read_bytes()
        n_ = n or (8 // CHUNKS[0]) * (12 // CHUNKS[1])
        k = 16 * n_ + (4 if crc else 0)
        order = ">u8" if big else "<u8"
        index = raw[-k:] if at_end else raw[:k]
        table = np.frombuffer(index[: 16 * n_], order).reshape(n_, 2).astype(np.uint64)
        size = int(table[0, 1])
        table[0, 0] = len(raw) - k - size + 8 if at_end else 0
        body = table.astype(order).tobytes()
        body += google_crc32c.value(body).to_bytes(4, "little") if crc else b""
        p.write_bytes(raw[:-k] + body if at_end else body + raw[k:])

    return damage


def _inner_index_into_itself(p: Path, n: int = 2, entry: int = 0) -> None:
    """In a shard of :data:`_NESTED_SHARDS` (its index at the end, with its crc32c), the first
    inner shard's index entry ``entry`` (the first by default) moved 8 bytes into that inner
    shard's own index (which has no crc32c, and ``n`` entries); the outer index as it was."""
    raw = p.read_bytes()
    outer = np.frombuffer(raw[-36:-4], "<u8").reshape(2, 2)
    start, size = int(outer[0, 0]), int(outer[0, 1])
    inner = raw[start : start + size]
    table = np.frombuffer(inner[-16 * n :], "<u8").reshape(n, 2).copy()
    table[entry, 0] = size - 16 * n - int(table[entry, 1]) + 8
    inner = inner[: -16 * n] + table.tobytes()
    p.write_bytes(raw[:start] + inner + raw[start + size :])


def _inner_blosc_frame_cut(p: Path) -> None:
    """In a shard of :func:`_nested_shards` (its index at the end, with its crc32c), the first
    inner shard's first Blosc frame cut to half its bytes, both indexes pointing at what is
    left (the outer one's crc32c valid again)."""
    import google_crc32c

    raw = p.read_bytes()
    outer = np.frombuffer(raw[-36:-4], "<u8").reshape(2, 2)
    shards = [raw[int(o) : int(o) + int(n)] for o, n in outer]
    table = np.frombuffer(shards[0][-32:], "<u8").reshape(2, 2)
    frames = [shards[0][int(o) : int(o) + int(n)] for o, n in table]
    frames[0] = frames[0][: len(frames[0]) // 2]
    index = np.array([[0, len(frames[0])], [len(frames[0]), len(frames[1])]], "<u8")
    shards[0] = b"".join(frames) + index.tobytes()
    body = np.array([[0, len(shards[0])], [len(shards[0]), len(shards[1])]], "<u8").tobytes()
    p.write_bytes(b"".join(shards) + body + google_crc32c.value(body).to_bytes(4, "little"))


def _header_zeroed(p: Path) -> None:
    """The chunk's first 10 bytes zeroed (a gzip or bz2 stream's header)."""
    raw = p.read_bytes()
    p.write_bytes(bytes(10) + raw[10:])


def _under_gzip(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    """``damage`` done to a shard compressed whole by gzip, the gzip stream whole again."""

    def under(p: Path) -> None:
        p.write_bytes(bytes(numcodecs.GZip().decode(p.read_bytes())))
        damage(p)
        p.write_bytes(bytes(numcodecs.GZip().encode(p.read_bytes())))

    return under


DAMAGES = [
    ("v3-truncated", _zarr3_unsharded, "c/1/1", _truncate),
    ("v3-empty-file", _zarr3_unsharded, "c/0/1", _empty),
    ("v3-short-frame", _zarr3_unsharded, "c/2/0", _short_frame("float32")),
    ("v3-long-frame", _zarr3_unsharded, "c/2/0", _long_frame),
    ("v3-not-zstd", _zarr3_unsharded, "c/0/0", lambda p: p.write_bytes(b"not a frame at all")),
    ("v2-short-frame", _zarr2_zstd, "1.2", _short_frame("float32")),
    ("v2-truncated", _zarr2_zstd, "0.0", _truncate),
    ("v2-blosc-truncated", zarr2(), "1.1", _truncate),
    ("v2-gzip-truncated", zarr2(compressors=numcodecs.GZip()), "1.1", _truncate),
    ("v2-blosc-clevel0-cut", zarr2(compressors=numcodecs.Blosc(clevel=0)), "2.1", _truncate),
    ("v2-blosc-lz4-cut", zarr2(compressors=numcodecs.Blosc(cname="lz4")), "0.2", _truncate),
    ("v3-blosc-cut", zarr3(compressors=_BLOSC_LZ4), "c/1/1", _truncate),
    (
        "v3-transpose-blosc-cut",
        zarr3(filters=[TransposeCodec(order=(1, 0))], compressors=_BLOSC_LZ4),
        "c/2/1",
        _truncate,
    ),
    # a filter zarr-python decodes (read through Zarr, not the pipeline's own decoder)
    (
        "v3-delta-short-frame",
        zarr3(filters=lambda: [numcodecs.zarr3.Delta(dtype="<f4")]),
        "c/1/1",
        _short_frame("float32"),
    ),
    (
        "shard-blosc-cut-frame",
        sharded(inner=[BytesCodec(), _BLOSC_LZ4]),
        "c/0/0",
        _cut_frame_in_shard,
    ),
    ("v3-zstd-checksum-mismatch", zarr3(compressors=ZstdCodec(checksum=True)), "c/1/1", _flip_crc),
    ("v3-crc32c-mismatch", zarr3(compressors=[ZstdCodec(), Crc32cCodec()]), "c/1/0", _flip_crc),
    ("shard-cut", sharded(), "c/0/0", _truncate),
    ("shard-empty", sharded(), "c/1/1", _empty),
    ("shard-index-offset", sharded(), "c/0/1", _shard_index(_offset_past_end)),
    ("shard-index-size", sharded(), "c/1/0", _shard_index(_size_past_end)),
    ("shard-index-crc", sharded(), "c/0/0", _flip_crc),
    ("shard-short-frame", sharded(), "c/1/1", _short_frame_in_shard),
    # edge chunks (stored whole, partly past the array's end: decoded whole, then cut), whose
    # codec's own error (a cut zstd or zlib stream, a checksum) had ended the run as the bare
    # "RuntimeError: Zstd decompression error", naming neither the store nor the chunk
    ("v3-edge-chunk-truncated", _zarr3_unsharded, "c/3/3", _truncate),
    (
        "v3-transpose-edge-chunk-truncated",
        zarr3(filters=[TransposeCodec(order=(1, 0))]),
        "c/3/0",
        _truncate,
    ),
    ("v2-edge-chunk-truncated", _zarr2_zstd, "3.1", _truncate),
    ("v2-zlib-edge-chunk-truncated", zarr2(compressors=numcodecs.Zlib()), "1.3", _truncate),
    (
        "v2-order-f-edge-chunk-truncated",
        zarr2(order="F", compressors=numcodecs.BZ2()),
        "3.3",
        _truncate,
    ),
    (
        "v2-fletcher32-edge-chunk-mismatch",
        zarr2(compressors=numcodecs.Fletcher32()),
        "2.3",
        _flip_crc,
    ),
    (
        "shard-edge-inner-frame-cut",  # inner chunk [1, 1] of shard [1, 1] is an edge chunk
        sharded(),
        "c/1/1",
        lambda p: _cut_frame_in_shard(p, which=3),
    ),
    # cut Blosc frames of chains only Zarr decodes (a numcodecs.delta filter): c-blosc, and
    # zarr-python with it, decodes a small chunk's cut frame from whatever memory follows it,
    # without an error; the run had written those bytes' chain and marked the output complete
    ("v3-delta-blosc-cut", _DELTA_BLOSC, "c/1/1", _truncate),
    ("v3-delta-blosc-edge-chunk-cut", _DELTA_BLOSC, "c/3/3", _truncate),
    (
        "shard-delta-blosc-cut-frame",
        zarr3(
            chunks=(8, 12),
            serializer=lambda: ShardingCodec(
                chunk_shape=CHUNKS,
                codecs=[numcodecs.zarr3.Delta(dtype="<f4"), BytesCodec(), _BLOSC_LZ4],
            ),
            compressors=None,
        ),
        "c/1/0",
        _cut_frame_in_shard,
    ),
    # Blosc frames that are not the chunk's outermost codec, cut: a v2 filter's (the pipeline's
    # own decoder had not checked it) and, in chains only Zarr decodes, one under gzip, zstd or
    # a numcodecs checksum whose stream is whole (a file cut short fails in those codecs
    # already); each had been read from whatever memory followed it, the output complete
    (
        "v2-blosc-filter-cut",
        zarr2(filters=[numcodecs.Blosc(cname="lz4")], compressors=None),
        "1.1",
        _truncate,
    ),
    (
        "v2-delta-blosc-filters-edge-chunk-cut",
        zarr2(filters=[numcodecs.Delta(dtype="<f4"), numcodecs.Blosc()], compressors=None),
        "3.1",
        _truncate,
    ),
    (
        "v3-delta-blosc-under-gzip-cut",
        _delta_blosc_under(GzipCodec),
        "c/1/1",
        _cut_blosc_frame_under(numcodecs.GZip()),
    ),
    (
        "v3-delta-blosc-under-zstd-cut",
        _delta_blosc_under(ZstdCodec),
        "c/2/0",
        _cut_blosc_frame_under(numcodecs.Zstd()),
    ),
    (
        "v3-delta-blosc-under-crc32-cut",
        _delta_blosc_under(lambda: numcodecs.zarr3.CRC32()),
        "c/0/2",
        _cut_blosc_frame_under(numcodecs.CRC32()),
    ),
    (
        "shard-delta-blosc-under-zstd-cut-frame",
        zarr3(
            chunks=(8, 12),
            serializer=lambda: ShardingCodec(
                chunk_shape=CHUNKS,
                codecs=[numcodecs.zarr3.Delta(dtype="<f4"), BytesCodec(), _BLOSC_LZ4, ZstdCodec()],
            ),
            compressors=None,
        ),
        "c/0/1",
        lambda p: p.write_bytes(rewrite_shard(p.read_bytes(), _cut_blosc_under(numcodecs.Zstd()))),
    ),
    # a shard's index entry pointing into the index itself, in chains only Zarr decodes (no
    # Blosc, so no frame check): zarr-python read that chunk from the index's bytes without an
    # error, and the run marked the output complete (the pipeline's own decoder refuses it)
    (
        "shard-delta-index-into-itself",
        _sharded_delta_raw(),
        "c/1/0",
        _index_into_itself(True, False),
    ),
    (
        "shard-delta-index-at-start-into-itself",
        _sharded_delta_raw("start"),
        "c/0/1",
        _index_into_itself(False, False),
    ),
    (
        "tensorstore-shard-big-endian-index-into-itself",
        _ts_sharded([{"name": "bytes", "configuration": {"endian": "little"}}], _BIG_ENDIAN_INDEX),
        "c/1/1",
        _index_into_itself(True, True, big=True),
    ),
    # a gzip or bz2 stream's header zeroed in a chain only Zarr decodes: Python's decompressors
    # say so with an OSError (gzip's BadGzipFile, bz2's 'Invalid data stream'), which the run
    # had taken for the store's answer ("the store answered BadGzipFile", a storage fix)
    (
        "v3-delta-gzip-header-zeroed",
        zarr3(filters=lambda: [numcodecs.zarr3.Delta(dtype="<f4")], compressors=GzipCodec()),
        "c/1/1",
        _header_zeroed,
    ),
    (
        "v3-delta-bz2-header-zeroed",
        zarr3(
            filters=lambda: [numcodecs.zarr3.Delta(dtype="<f4")],
            compressors=lambda: numcodecs.zarr3.BZ2(),
        ),
        "c/0/2",
        _header_zeroed,
    ),
    ("shard-nested-inner-index-into-itself", _NESTED_SHARDS, "c/1/1", _inner_index_into_itself),
    # shards after a transpose codec (valid Zarr v3, which tensorstore writes; zarr-python
    # reads it where the inner chunks cut the shard both ways): the shard index and Blosc
    # frames had not been checked, zarr-python read a chunk from the index's bytes, or a cut
    # frame from whatever memory followed it, and the run marked the output complete
    (
        "tensorstore-transposed-shard-index-into-itself",
        _ts_transposed_shards([{"name": "bytes", "configuration": {"endian": "little"}}]),
        "c/0/1",
        _index_into_itself(True, True, n=_TRANSPOSED_SHARD_CHUNKS),
    ),
    (  # shards of 2 inner shards of 4 x 12, each after a transpose: 12 x 4, of 3 chunks
        "tensorstore-nested-transposed-shard-inner-index-into-itself",
        _TS_NESTED_TRANSPOSED,
        "c/0/1",
        lambda p: _inner_index_into_itself(p, n=3),
    ),
    (
        "tensorstore-transposed-shard-blosc-under-zstd-cut",
        _ts_transposed_shards(
            [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "shuffle"}},
                {"name": "zstd"},
            ]
        ),
        "c/1/0",
        lambda p: p.write_bytes(
            rewrite_shard(
                p.read_bytes(), _cut_blosc_under(numcodecs.Zstd()), n=_TRANSPOSED_SHARD_CHUNKS
            )
        ),
    ),
    (
        "shard-nested-inner-blosc-cut",
        _nested_shards(lambda: [BytesCodec(), _BLOSC_LZ4]),
        "c/0/0",
        _inner_blosc_frame_cut,
    ),
    (  # a shard compressed whole (gzip after the sharding codec), the gzip stream whole
        "shard-gzip-whole-index-into-itself",
        zarr3(
            chunks=(8, 12),
            serializer=lambda: ShardingCodec(chunk_shape=CHUNKS, codecs=[BytesCodec()]),
            compressors=GzipCodec(),
        ),
        "c/0/0",
        _under_gzip(_index_into_itself(True, True)),
    ),
]


def _append(extra: bytes) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        p.write_bytes(p.read_bytes() + extra)

    return damage


def _frames_short(p: Path) -> None:
    """Two valid zstd frames back to back, of half the chunk's bytes between them."""
    n = int(np.prod(CHUNKS)) * 4
    z = numcodecs.Zstd(level=1)
    p.write_bytes(z.encode(np.ones(n // 4, np.uint8)) + z.encode(np.ones(n // 4, np.uint8)))


def _junk_after_inner_frames(p: Path) -> None:
    p.write_bytes(rewrite_shard(p.read_bytes(), lambda raw: raw + b"\x00\x01\x02"))


#: Chunks that hold a whole frame (or frames) and more, which zarr-python cannot read either:
#: numcodecs refuses bytes after a zstd frame that are no frame, and after an LZ4 block; a
#: chunk of only a skippable frame decodes to nothing; frames may add up to less than a chunk.
REFUSED_BY_ZARR = [
    ("v3-zstd-bytes-after-frame", _zarr3_unsharded, "c/1/1", _append(b"\x00\x01\x02")),
    ("v3-zstd-frames-short", _zarr3_unsharded, "c/2/0", _frames_short),
    ("v2-zstd-only-a-skippable-frame", _zarr2_zstd, "0.1", lambda p: p.write_bytes(SKIPPABLE)),
    ("v2-lz4-bytes-after-frame", zarr2(compressors=numcodecs.LZ4()), "1.1", _append(b"trailer")),
    ("shard-zstd-bytes-after-frames", sharded(), "c/1/0", _junk_after_inner_frames),
]
DAMAGES += REFUSED_BY_ZARR


@pytest.mark.parametrize(
    ("writer", "key", "damage"),
    [d[1:] for d in REFUSED_BY_ZARR],
    ids=[d[0] for d in REFUSED_BY_ZARR],
)
def test_zarr_python_cannot_read_these_either(tmp_path: Path, writer, key, damage) -> None:
    """What the damage cases above add is damage by zarr-python's own reading: no false
    alarm (the cases of CASES that hold more than a frame are read alike)."""
    writer(tmp_path / "in.zarr")
    damage(tmp_path / "in.zarr" / key)
    z = zarr.open_array(str(tmp_path / "in.zarr"), mode="r")
    with pytest.raises((RuntimeError, ValueError)):  # numcodecs' errors, or Zarr's reshape
        z[...]


@pytest.mark.parametrize(
    ("writer", "key", "damage"), [d[1:] for d in DAMAGES], ids=[d[0] for d in DAMAGES]
)
def test_a_damaged_chunk_ends_the_run_naming_it(
    tmp_path: Path, backend_client, writer, key, damage
) -> None:
    writer(tmp_path / "in.zarr")
    target = tmp_path / "in.zarr" / key
    assert target.exists(), f"the writer did not write {key}"
    damage(target)
    before = {p: p.read_bytes() for p in (tmp_path / "in.zarr").rglob("*") if p.is_file()}
    with pytest.raises(ChunkError) as err:
        _run(tmp_path, backend_client)
    assert err.value.key == key
    assert err.value.store == str(tmp_path / "in.zarr")
    assert err.value.reason and err.value.problem in PROBLEMS
    y = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert record_of(y.attrs)["status"] == "incomplete"
    after = {p: p.read_bytes() for p in (tmp_path / "in.zarr").rglob("*") if p.is_file()}
    assert after == before, "the input was modified"


def test_the_plan_says_the_inner_chunks_of_shards_after_a_transpose(tmp_path: Path) -> None:
    """An input whose shards follow a transpose codec (tensorstore's layout, read through Zarr)
    is described with its inner chunks in the array's axes, as a shard's inner chunks are
    where the sharding codec comes first: the plan had said chunks of the shard's shape."""
    import pipeline

    src = tmp_path / "in.zarr"
    sharding = {"chunk_shape": [4, 2], "codecs": [{"name": "bytes"}, {"name": "zstd"}]}
    codecs = [
        {"name": "transpose", "configuration": {"order": [1, 0]}},
        {"name": "sharding_indexed", "configuration": sharding},
    ]
    tensorstore(_ts_v3(codecs, chunks=(8, 12)))(src)  # stored shards of 12 x 8
    with warnings.catch_warnings():  # zarr-python's, that a transpose first reads whole shards
        warnings.simplefilter("ignore")
        assert same_bits(zarr.open_array(src, mode="r")[...], values("float32"))
    cfg = _config(tmp_path, "cpu")
    info = pipeline.plan(cfg).input
    assert (info.chunk, info.unit) == ((2, 4), (8, 12)), (info.chunk, info.unit)
    assert "chunks [2, 4]" in info.describe(), info.describe()


#: tensorstore's shards after a transpose codec (order [1, 0]), of inner chunks that are not
#: square: shards of 8 x 12 stored as 12 x 8, cut into inner chunks of 4 x 2 (a grid of 3 x 4),
#: which are chunks of 2 x 4 in the array's axes (a grid of 4 x 3 in the shard); zarr-python
#: reads them (the inner chunks cut the shard untransposed too).
_OBLONG_CHUNKS = 12

#: The stored frame damaged in :data:`TRANSPOSED_DAMAGES` (index order: the stored grid's
#: [0, 2], the array's [2, 0]).
_DAMAGED_FRAME = 2


def _ts_oblong_transposed_shards(codecs: list[Any]) -> Any:
    """:data:`_OBLONG_CHUNKS`' layout, written by tensorstore, the inner chunks' ``codecs``."""
    sharding = {"chunk_shape": [4, 2], "codecs": codecs}
    transpose = {"name": "transpose", "configuration": {"order": [1, 0]}}
    codecs_ = [transpose, {"name": "sharding_indexed", "configuration": sharding}]
    return tensorstore(_ts_v3(codecs_, chunks=(8, 12)))


def _shard_table(raw: bytes, n: int) -> np.ndarray:
    """The (offset, size) rows of a shard's index at its end, with its crc32c."""
    return np.frombuffer(raw[-(16 * n + 4) : -4], "<u8").reshape(n, 2).astype(np.uint64)


def _with_table(raw: bytes, n: int, table: np.ndarray, body: bytes | None = None) -> bytes:
    """The shard ``raw`` (``n`` chunks, its index at its end with its crc32c) with its index
    ``table`` (crc32c valid again), its frames ``body`` where given."""
    import google_crc32c

    index = table.astype("<u8").tobytes()
    body = raw[: -(16 * n + 4)] if body is None else body
    return body + index + google_crc32c.value(index).to_bytes(4, "little")


def _frame_replaced(p: Path, which: int, frame: bytes) -> None:
    """The shard ``p``'s frame ``which`` (index order) replaced by ``frame``, the others kept."""
    raw = p.read_bytes()
    table = _shard_table(raw, _OBLONG_CHUNKS)
    frames = [raw[int(o) : int(o) + int(n)] for o, n in table]
    frames[which] = frame
    sizes = np.array([len(f) for f in frames], np.uint64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)
    body = b"".join(frames)
    p.write_bytes(_with_table(raw, _OBLONG_CHUNKS, np.stack([offsets, sizes], -1), body))


def _frame_cut(p: Path) -> None:
    raw = p.read_bytes()
    o, n = (int(v) for v in _shard_table(raw, _OBLONG_CHUNKS)[_DAMAGED_FRAME])
    _frame_replaced(p, _DAMAGED_FRAME, raw[o : o + n // 2])


def _entry_into_index(p: Path) -> None:
    raw = p.read_bytes()
    table = _shard_table(raw, _OBLONG_CHUNKS).copy()
    k = 16 * _OBLONG_CHUNKS + 4
    table[_DAMAGED_FRAME, 0] = len(raw) - k - int(table[_DAMAGED_FRAME, 1]) + 8
    p.write_bytes(_with_table(raw, _OBLONG_CHUNKS, table))


_TS_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}

#: (id, the inner chunks' codecs, how one of the 8 elements is encoded as a frame of them,
#: the damage of frame :data:`_DAMAGED_FRAME` of a shard, what the line says of it)
TRANSPOSED_DAMAGES = [
    (
        "index-into-itself",  # the shard index's check (the run's, verify's)
        [_TS_BYTES],
        lambda x: x.tobytes(),
        _entry_into_index,
        "its shard index points into the shard's own index (inner chunk {}:",
    ),
    (
        "blosc-cut",  # the Blosc frames' check
        [_TS_BYTES, {"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "shuffle"}}],
        lambda x: bytes(numcodecs.Blosc(cname="lz4", shuffle=numcodecs.Blosc.SHUFFLE).encode(x)),
        _frame_cut,
        "(in the shard's inner chunk {})",
    ),
    (
        "zstd-cut",  # zarr-python's read fails: the shard's frames walked after it
        [_TS_BYTES, {"name": "zstd"}],
        lambda x: bytes(numcodecs.Zstd().encode(x)),
        _frame_cut,
        "(in the shard's inner chunk {})",
    ),
]


def _inner_chunk_zarr_reads(src: Path, key: str, encode: Callable[[np.ndarray], bytes]) -> Any:
    """Where zarr-python reads the frame :data:`_DAMAGED_FRAME` of the shard ``key`` of the
    array at ``src``: that frame replaced (in a copy) by ``encode`` of an inner chunk of 42s,
    the inner chunk (of 2 x 4, in the array's axes, its coordinates in the shard) that alone
    reads 42 and held other values before; the shard's origin in the array is [0, 12]."""
    import shutil

    marked = src.parent / "marked.zarr"
    shutil.copytree(src, marked)
    _frame_replaced(marked / key, _DAMAGED_FRAME, encode(np.full(8, 42, "<f4")))
    with warnings.catch_warnings():  # zarr-python's, that a transpose first reads whole shards
        warnings.simplefilter("ignore")
        got = zarr.open_array(marked, mode="r")[0:8, 12:22]
    shutil.rmtree(marked)
    before = values("float32")[0:8, 12:22]
    found = [
        [i, j]
        for i in range(4)
        for j in range(3)
        if (got[2 * i : 2 * i + 2, 4 * j : 4 * j + 4] == 42).all()
        and not (before[2 * i : 2 * i + 2, 4 * j : 4 * j + 4] == 42).all()
    ]
    assert len(found) == 1, found
    changed = ~same_bits_mask(got, before)
    rows, cols = np.nonzero(changed)
    i, j = found[0]
    assert (rows // 2 == i).all() and (cols // 4 == j).all(), "another chunk reads otherwise"
    return found[0]


def same_bits_mask(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Element by element: equal bit for bit."""
    return np.ascontiguousarray(got).view(np.uint32) == np.ascontiguousarray(want).view(np.uint32)


@pytest.mark.parametrize(
    ("codecs", "encode", "damage", "said"),
    [d[1:] for d in TRANSPOSED_DAMAGES],
    ids=[d[0] for d in TRANSPOSED_DAMAGES],
)
def test_a_damaged_chunk_of_a_transposed_shard_is_named_in_the_arrays_axes(
    tmp_path: Path, backend_client, codecs, encode, damage, said
) -> None:
    """Shards stored transposed (tensorstore's transpose before sharding_indexed): a damaged
    inner chunk is named by its coordinates in the array's axes, the inner chunk zarr-python
    reads that frame as, by the run, its resume and verify, with the shard's key; they had
    been its coordinates in the stored (transposed) grid, [0, 2] for [2, 0]."""
    import pipeline

    src = tmp_path / "in.zarr"
    key = "c/0/1"
    _ts_oblong_transposed_shards(codecs)(src)
    where = _inner_chunk_zarr_reads(src, key, encode)
    assert where == [2, 0], where  # the stored grid's [0, 2]
    backend, client = backend_client
    summary = _run(tmp_path, backend_client)
    assert summary.status == "complete"
    damage(src / key)
    with warnings.catch_warnings():  # the damage reads otherwise there, or fails the shard
        warnings.simplefilter("ignore")
        try:
            got = zarr.open_array(src, mode="r")[0:8, 12:22]
        except Exception:
            pass
        else:
            before = values("float32")[0:8, 12:22]
            rows, cols = np.nonzero(~same_bits_mask(got, before))
            assert len(rows) and set(zip(rows // 2, cols // 4, strict=True)) == {tuple(where)}
    text = said.format(where)
    with pytest.raises(InputError) as found:
        pipeline.verify(_config(tmp_path, backend), all=True)
    assert found.value.key == key and text in str(found.value), str(found.value)
    with pytest.raises(ChunkError) as err:
        _run(tmp_path, backend_client, overwrite=True)
    assert err.value.key == key and text in str(err.value), str(err.value)
    with pytest.raises(ChunkError) as again:  # a resume of the output left incomplete
        run(_config(tmp_path, backend), RunOptions(progress="none", resume=True), client=client)
    assert str(again.value) == str(err.value)


def test_a_damaged_chunk_of_a_nested_transposed_shard_is_named_in_the_arrays_axes(
    tmp_path: Path, backend_client
) -> None:
    """A shard's inner shards stored transposed (tensorstore's transpose before the inner
    sharding_indexed), the index entry of the first inner shard's third chunk (its stored
    grid's [2, 0]) pointing into that shard's own index: the run and verify name it [0, 2],
    in the array's axes, the chunk zarr-python then reads otherwise (every level's transposes
    composed)."""
    import pipeline

    src = tmp_path / "in.zarr"
    key = "c/0/1"  # rows 0:8, columns 12:22 (of 24)
    _TS_NESTED_TRANSPOSED(src)
    assert _run(tmp_path, backend_client).status == "complete"
    _inner_index_into_itself(src / key, n=3, entry=2)
    with warnings.catch_warnings():  # zarr-python's, that a transpose first reads whole shards
        warnings.simplefilter("ignore")
        got = zarr.open_array(src, mode="r")[0:8, 12:22]
    rows, cols = np.nonzero(~same_bits_mask(got, values("float32")[0:8, 12:22]))
    # the inner shard [0, 0] (rows 0:4), its inner chunk [0, 2] (columns 12 + 8:12)
    assert len(rows) and set(zip(rows // 4, cols // 4, strict=True)) == {(0, 2)}
    said = "(inner chunk [0, 2]: offset "
    shard = "(in the shard's inner chunk [0, 0], itself a shard)"
    with pytest.raises(InputError) as found:
        pipeline.verify(_config(tmp_path, backend_client[0]), all=True)
    line = str(found.value)
    assert getattr(found.value, "key", None) == key and said in line and shard in line, line
    with pytest.raises(ChunkError) as err:
        _run(tmp_path, backend_client, overwrite=True)
    assert err.value.key == key and said in err.value.reason and shard in err.value.reason


def _cut(p: Path) -> None:
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _flipped(p: Path) -> None:
    """8 bytes in the middle of the chunk inverted."""
    raw = bytearray(p.read_bytes())
    m = len(raw) // 2
    raw[m : m + 8] = bytes(b ^ 0xFF for b in raw[m : m + 8])
    p.write_bytes(bytes(raw))


def _delta() -> list[Any]:
    return [numcodecs.zarr3.Delta(dtype="<f4")]


def _data(name: str) -> str:
    return f"its {name} data does not decode: cut short or altered \\(\\d+ bytes\\)"


#: Chains zarr-python and numcodecs write, one chunk damaged (cut, bytes flipped, emptied),
#: and what the run and verify say of it (a regular expression): (id, writer, key, damage,
#: reason). v3 chains with a numcodecs filter or checksum are decoded only by Zarr (the
#: failure path finds which codec refuses the bytes); the others by the run's own reader.
#: Each had said the codec's own words: zlib's "error: Error -3 while decompressing data",
#: "BadGzipFile: CRC check failed", "EOFError: Compressed file ended before the
#: end-of-stream marker was reached", "LZMAError: Corrupt input data", numcodecs' "Stored and
#: computed crc32 checksum do not match. Stored: ...", zarr-python's "ValueError: cannot
#: reshape array of size 12 into shape (4,6)".
CODEC_DAMAGES = [
    (
        "v3-delta-gzip-cut",
        zarr3(filters=_delta, compressors=GzipCodec()),
        "c/1/1",
        _cut,
        _data("gzip"),
    ),
    (
        "v3-delta-zlib-flipped",
        zarr3(filters=_delta, compressors=lambda: [numcodecs.zarr3.Zlib()]),
        "c/2/1",
        _flipped,
        _data("zlib"),
    ),
    (
        "v3-delta-lzma-emptied",
        zarr3(filters=_delta, compressors=lambda: [numcodecs.zarr3.LZMA()]),
        "c/0/1",
        _empty,
        "its LZMA data does not decode: cut short or altered \\(0 bytes\\)",
    ),
    (
        "v3-delta-bz2-flipped",
        zarr3(filters=_delta, compressors=lambda: [numcodecs.zarr3.BZ2()]),
        "c/1/2",
        _flipped,
        _data("bz2"),
    ),
    (
        "v3-fixedscaleoffset-zstd-cut",
        zarr3(
            filters=lambda: [
                numcodecs.zarr3.FixedScaleOffset(offset=0, scale=1000, dtype="<f4", astype="<i4")
            ],
            compressors=ZstdCodec(),
        ),
        "c/1/1",
        _cut,
        _data("zstd"),
    ),
    (
        "v3-delta-uncompressed-cut",
        zarr3(filters=_delta, compressors=None),
        "c/1/1",
        _cut,
        "it decodes to 48 bytes, not the chunk's 96",
    ),
    (
        "v3-crc32-flipped",
        zarr3(compressors=lambda: [numcodecs.zarr3.CRC32()]),
        "c/1/1",
        _flipped,
        "its crc32 checksum does not match",
    ),
    (
        "v3-zstd-adler32-emptied",
        zarr3(compressors=lambda: [numcodecs.zarr3.Zstd(), numcodecs.zarr3.Adler32()]),
        "c/1/1",
        _empty,
        "it holds 0 bytes, too few for its adler32 checksum",
    ),
    (
        "v3-delta-zstd-crc32c-cut",
        zarr3(filters=_delta, compressors=[ZstdCodec(), Crc32cCodec()]),
        "c/1/1",
        _cut,
        "its crc32c checksum does not match",
    ),
    ("v3-gzip-flipped", zarr3(compressors=GzipCodec()), "c/1/1", _flipped, _data("gzip")),
    (
        "v3-big-endian-gzip-cut",
        zarr3(">f4", serializer=BytesCodec(endian="big"), compressors=GzipCodec()),
        "c/1/1",
        _cut,
        _data("gzip"),
    ),
    ("v2-zlib-cut", zarr2(compressors=numcodecs.Zlib()), "1.1", _cut, _data("zlib")),
    ("v2-bz2-flipped", zarr2(compressors=numcodecs.BZ2()), "1.1", _flipped, _data("bz2")),
    (
        "v2-lz4-emptied",
        zarr2(compressors=numcodecs.LZ4()),
        "1.1",
        _empty,
        "its LZ4 data does not decode: cut short or altered \\(0 bytes\\)",
    ),
    ("v2-lzma-cut", zarr2(compressors=numcodecs.LZMA()), "2.1", _cut, _data("LZMA")),
    (
        "v2-fletcher32-flipped",
        zarr2(compressors=numcodecs.Fletcher32()),
        "1.1",
        _flipped,
        "its fletcher32 checksum does not match",
    ),
    (
        "v2-delta-zlib-emptied",
        zarr2(filters=[numcodecs.Delta(dtype="<f4")], compressors=numcodecs.Zlib()),
        "1.1",
        _empty,
        "its zlib data does not decode: cut short or altered \\(0 bytes\\)",
    ),
    (
        "v2-fixedscaleoffset-gzip-cut",
        zarr2(
            filters=[numcodecs.FixedScaleOffset(offset=0, scale=1000, dtype="<f4", astype="<i4")],
            compressors=numcodecs.GZip(),
        ),
        "1.1",
        _cut,
        _data("gzip"),
    ),
    (
        "v2-gzip-emptied",
        zarr2(compressors=numcodecs.GZip()),
        "1.1",
        _empty,
        "it decodes to 0 bytes, not the chunk's 96",
    ),
]


@pytest.mark.parametrize(
    ("writer", "key", "damage", "reason"),
    [d[1:] for d in CODEC_DAMAGES],
    ids=[d[0] for d in CODEC_DAMAGES],
)
def test_a_chunk_a_codec_refuses_is_said_in_the_runs_words(
    tmp_path: Path, backend_client, writer, key, damage, reason
) -> None:
    """A chunk whose codec refuses its bytes (a compressor's stream cut or altered, a
    numcodecs checksum that does not match, a filter's chunk of the wrong size): the run and
    verify say one line, in the run's words, naming the chunk's key, that it is damaged, which
    codec refuses it, and what to do; never the codec's own exception (which had been said)."""
    import pipeline

    src = tmp_path / "in.zarr"
    writer(src)
    assert _run(tmp_path, backend_client).status == "complete"
    damage(src / key)
    refusals = (RuntimeError, ValueError, OSError, EOFError, IndexError, zlib.error, LZMAError)
    with warnings.catch_warnings(), pytest.raises(refusals):  # zarr-python cannot read it
        warnings.simplefilter("ignore")
        zarr.open_array(src, mode="r")[...]
    said = f"input chunk {key!r} of {src}"
    with pytest.raises(InputError) as found:
        pipeline.verify(_config(tmp_path, backend_client[0]), all=True)
    line = str(found.value)
    assert found.value.key == key, line
    assert re.fullmatch(
        re.escape(said)
        + r" \(in the region [^)]*\) is damaged \("
        + reason
        + r"\); restore that chunk from its source.*",
        line,
    ), line
    with pytest.raises(ChunkError) as err:
        _run(tmp_path, backend_client, overwrite=True)
    assert err.value.key == key, str(err.value)
    assert re.fullmatch(reason, err.value.reason), err.value.reason
    assert str(err.value).startswith(f"{said} is damaged: {err.value.reason}; the output stays")
    for line in (str(found.value), str(err.value)):
        assert not re.search(r"[A-Z]\w*(Error|File)\b|Error -\d|Stored and computed", line), line


def _edited(path: Path, changes: dict[str, Any]) -> Path:
    """The array's own metadata document (``zarr.json`` or ``.zarray``) with ``changes``
    made by hand, as a user edits a dtype or chunk shape after the chunks were written."""
    doc = path / "zarr.json" if (path / "zarr.json").exists() else path / ".zarray"
    meta = json.loads(doc.read_text())
    if "chunk_shape" in changes:
        meta["chunk_grid"]["configuration"]["chunk_shape"] = changes.pop("chunk_shape")
    doc.write_text(json.dumps({**meta, **changes}))
    return doc


_SHARDED_F8 = zarr3(
    "float64",
    chunks=(8, 12),
    serializer=lambda: ShardingCodec(chunk_shape=CHUNKS, codecs=[BytesCodec(), ZstdCodec()]),
)

#: Metadata edited after the chunks were written: (id, writer, the edit, the dtype whose
#: elements the chunks hold, as the line hints it; None for a chunk shape edited).
METADATA_EDITS = [
    ("v3-zstd-f4-as-f8", zarr3(compressors=ZstdCodec()), {"data_type": "float64"}, "float32"),
    # i2 written, not i1: zarr-python 3.4 refuses an i1 array's bytes codec, written without
    # its endian, once the dtype says i2 (its metadata unreadable, said as such elsewhere)
    ("v3-raw-i2-as-i4", zarr3("int16", compressors=None), {"data_type": "int32"}, "int16"),
    ("v3-sharded-f8-as-f4", _SHARDED_F8, {"data_type": "float32"}, "float64"),
    ("v3-shards-index-first-f4-as-f8", sharded("start"), {"data_type": "float64"}, "float32"),
    (
        "tensorstore-v3-shards-f4-as-f8",
        tensorstore(
            _ts_v3(
                [
                    {
                        "name": "sharding_indexed",
                        "configuration": {"chunk_shape": list(CHUNKS), "codecs": _BYTES_ZSTD},
                    }
                ],
                chunks=(8, 12),
            )
        ),
        {"data_type": "float64"},
        "float32",
    ),
    (
        "tensorstore-v3-transposed-shards-f4-as-f8",
        _ts_transposed_shards([{"name": "bytes"}]),
        {"data_type": "float64"},
        "float32",
    ),
    ("v3-chunk-shape", zarr3(compressors=ZstdCodec()), {"chunk_shape": [4, 12]}, None),
    ("v2-zstd-f4-as-f8", zarr2(compressors=numcodecs.Zstd()), {"dtype": "<f8"}, "float32"),
    ("v2-blosc-i1-as-i2", zarr2("int8", compressors=numcodecs.Blosc()), {"dtype": "<i2"}, "int8"),
    ("v2-chunks", zarr2(compressors=numcodecs.Zlib()), {"chunks": [4, 12]}, None),
    ("tensorstore-v2-f4-as-f8", tensorstore(_ts_v2({"id": "zstd"})), {"dtype": "<f8"}, "float32"),
    (
        "tensorstore-v3-f4-as-f8",
        tensorstore(_ts_v3([{"name": "bytes", "configuration": {"endian": "little"}}])),
        {"data_type": "float64"},
        "float32",
    ),
]


@pytest.mark.parametrize(
    ("writer", "edit", "held"),
    [d[1:] for d in METADATA_EDITS],
    ids=[d[0] for d in METADATA_EDITS],
)
def test_metadata_edited_after_its_chunks_were_written_is_said_as_such(
    tmp_path: Path, backend_client, writer, edit, held
) -> None:
    """An input whose metadata's dtype (float32 to float64, int16 to int32, ...) or chunk
    shape was changed by hand after its chunks were written (zarr-python 2/3, tensorstore;
    unsharded and sharded): every chunk decodes to another size than the metadata says. h69e:
    the run said one chunk damaged, "restore the chunk". The line says the metadata does not
    match the chunks as written, naming its document, the sizes, the dtype its chunks hold
    them as, and the fix; the input is never modified. The plan says it, from one stored
    chunk it decodes, before the output is made (h72d: the run had, at its first chunk read,
    the output made and left incomplete)."""
    src = tmp_path / "in.zarr"
    writer(src)
    doc = _edited(src, dict(edit))
    before = file_states(src)
    with pytest.raises(ChunkError) as err:
        _run(tmp_path, backend_client)
    line = str(err.value)
    assert err.value.misfit == "metadata" and err.value.problem == "size", line
    assert err.value.file == str(doc), line
    assert line.startswith(f"input {src} does not match its metadata: its chunks "), line
    assert f"where its metadata {doc.name} (dtype " in line, line
    assert "its dtype or chunk shape was changed after the chunks were written" in line, line
    assert "write back the dtype and chunk shape they were written with" in line, line
    assert "restore the chunk" not in line, line
    if held is not None:  # the dtype whose elements the chunks hold, hinted
        assert re.search(rf" says \d+ \(\d+ bytes: \d+ elements of {held}, or ", line), line
    assert "; nothing was written: write back the dtype and chunk shape" in line, line
    assert not (tmp_path / "out.zarr").exists(), line
    assert file_states(src) == before


@pytest.mark.parametrize("edit", [{"data_type": "float64"}, None], ids=["edited", "cut"])
def test_the_only_chunk_of_another_size_is_said_as_damaged_or_edited(
    tmp_path: Path, backend_client, edit
) -> None:
    """An array of one stored chunk that decodes to another size than its metadata says (its
    dtype edited since, or the chunk replaced): nothing tells which, and the line says both,
    with both fixes (h69e: it had said only the chunk damaged), from the plan, before the
    output is made (h72d). Where other chunks decode right, a chunk of another size is
    damaged, as it was said, by the run (the plan decodes one chunk: c/0/0, which is right)."""
    src = tmp_path / "in.zarr"
    if edit is None:  # one raw chunk cut, among chunks that decode right
        zarr3(compressors=None)(src)
        (src / "c/1/1").write_bytes((src / "c/1/1").read_bytes()[:48])
    else:
        zarr3(compressors=ZstdCodec(), chunks=SHAPE)(src)
        _edited(src, dict(edit))
    before = file_states(src)
    with pytest.raises(ChunkError) as err:
        _run(tmp_path, backend_client)
    line = str(err.value)
    if edit is None:
        assert getattr(err.value, "misfit", None) is None, line
        assert line.startswith(f"input chunk 'c/1/1' of {src} is damaged: "), line
    else:
        n = SHAPE[0] * SHAPE[1]
        assert err.value.misfit == "unknown", line
        assert line.startswith(
            f"input chunk 'c/0/0' of {src} decodes to {4 * n} bytes where its metadata "
            f"zarr.json (dtype float64, chunk shape {list(SHAPE)}) says {8 * n} ({4 * n} "
            f"bytes: {n} elements of float32, or {n // 2} of float64): the chunk is damaged, "
            "or the metadata's dtype or chunk shape was changed after it was written"
        ), line
        assert "restore the chunk (or delete it" in line and "the metadata it was" in line
        assert "; nothing was written: " in line and not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before


#: The user's sharded input (h73b): 4 shards of 2 inner chunks each.
SHARDED_SHAPE, SHARD, INNER = (64, 64, 32), (16, 64, 32), (8, 64, 32)


def _sharded_by(writer: str, x: np.ndarray | None = None) -> Callable[[Path], None]:
    """A writer of the sharded input (:data:`SHARDED_SHAPE`, float32, shards of
    :data:`SHARD`, inner chunks of :data:`INNER`, filled with ``x`` or random values):
    zarr-python's ``create_array(..., shards=...)``, or tensorstore's with its index at the
    shard's 'end' or 'start', or after a ``transpose`` codec (order [2, 1, 0]: inner chunks
    of [8, 64, 8], a shard only Zarr reads) (``writer``: 'zarr', 'tensorstore-end',
    'tensorstore-start', 'tensorstore-transposed')."""
    x = np.random.default_rng(0).random(SHARDED_SHAPE, dtype="f4") if x is None else x

    def write(path: Path) -> None:
        if writer == "zarr":
            a = zarr.create_array(
                store=str(path), shape=SHARDED_SHAPE, dtype="f4", chunks=INNER, shards=SHARD
            )
            a[...] = x
            return
        ts = pytest.importorskip("tensorstore")
        where = "end" if writer == "tensorstore-transposed" else writer.split("-")[1]
        inner_codecs = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "zstd"}]
        index_codecs = [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "crc32c"},
        ]
        transposed = writer == "tensorstore-transposed"
        sharding = {
            "chunk_shape": [8, 64, 8] if transposed else list(INNER),
            "codecs": inner_codecs,
            "index_codecs": index_codecs,
            "index_location": where,
        }
        spec = {
            "driver": "zarr3",
            "kvstore": {"driver": "file", "path": str(path)},
            "metadata": {
                "shape": list(SHARDED_SHAPE),
                "data_type": "float32",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(SHARD)}},
                "codecs": [
                    *([{"name": "transpose", "configuration": {"order": [2, 1, 0]}}] * transposed),
                    {"name": "sharding_indexed", "configuration": sharding},
                ],
            },
        }
        ts.open(spec, create=True).result().write(x).result()

    return write


def _shard_edited(path: Path, edit: str) -> Path:
    """The sharded input's ``zarr.json`` edited by hand after its shards were written:
    'shard' (the chunk grid's shape to [32, 64, 32]), 'inner-4' or 'inner-16' (the sharding
    codec's inner chunk shape's first axis to 4 or 16: [4, 64, 32] or [16, 64, 32]),
    'index-codecs' (its index's crc32c dropped)."""
    doc = path / "zarr.json"
    meta = json.loads(doc.read_text())
    conf = meta["codecs"][-1]["configuration"]
    if edit == "shard":
        meta["chunk_grid"]["configuration"]["chunk_shape"] = [32, 64, 32]
    elif edit.startswith("inner-"):
        conf["chunk_shape"][0] = int(edit.removeprefix("inner-"))
    else:
        conf["index_codecs"] = [c for c in conf["index_codecs"] if c["name"] != "crc32c"]
    doc.write_text(json.dumps(meta))
    return doc


def _cli_config(tmp: Path, backend_client: tuple[str, Any]) -> tuple[Path, str]:
    """A config file of ``tmp/in.zarr`` to ``tmp/out.zarr``, and the address of the
    module's Dask scheduler to join (``--scheduler``)."""
    from tests.conftest import write_config

    backend, client = backend_client
    cfg = write_config(tmp, tmp / "in.zarr", tmp / "out.zarr", backend=backend)
    return cfg, client.scheduler.address


SHARD_EDITS = [
    (writer, edit)
    for writer in ("zarr", "tensorstore-end", "tensorstore-start", "tensorstore-transposed")
    for edit in ("shard", "inner-4", "inner-16")
] + [("zarr", "index-codecs")]


@pytest.mark.parametrize(("writer", "edit"), SHARD_EDITS, ids=[f"{w}-{e}" for w, e in SHARD_EDITS])
def test_a_sharded_inputs_shard_shape_edited_after_its_shards_were_written_is_refused_by_plan(
    tmp_path: Path, backend_client, cli, writer, edit
) -> None:
    """A sharded input (zarr-python's, tensorstore's with its index at the shard's end or
    start, or after a transpose) whose metadata's shard shape, inner chunk shape or index
    codecs were edited after its shards were written: every shard's index misfits alike (its
    crc32c checksum, its size, its offsets). h73b: plan passed, and the run said one shard
    damaged, "restore the chunk (or delete it ...)", which throws good data away, leaving an
    incomplete output.
    ``plan`` and ``run`` refuse it, before the output is made, in one line naming both
    readings (the metadata edited, the shards damaged) and both fixes; the input unchanged."""
    src = tmp_path / "in.zarr"
    _sharded_by(writer)(src)
    doc = _shard_edited(src, edit)
    before = file_states(src)
    cfg, address = _cli_config(tmp_path, backend_client)
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg, "--scheduler", address)
        line = err.strip().splitlines()[-1]
        assert rc != 0, err
        assert line.startswith(f"error: input {src} does not fit its metadata {doc.name} ("), line
        assert "its shards 'c/0/0/0' and 'c/1/0/0' each fail it (its shard index" in line
        assert "the metadata's shard or inner chunk shape (or index codecs) was changed " in line
        assert "after the shards were written, or the shards are damaged" in line, line
        assert line.endswith(
            "; nothing was written: write back the shard and inner chunk shape (and index "
            "codecs) the shards were written with, or restore the shard"
        ), line
        assert "delete it" not in line, line
        assert not (tmp_path / "out.zarr").exists(), line
        assert file_states(src) == before


def test_one_damaged_shard_among_good_ones_is_said_by_the_run_as_before(
    tmp_path: Path, backend_client, cli
) -> None:
    """One shard whose index's checksum fails, among shards that fit the metadata: the
    plan's check of a second shard tells it from an edited metadata (h73b), so the plan
    passes and the run says that shard damaged, as before: restore it (or delete it). An
    input of that one shard alone is refused by the plan, both readings said."""
    src = tmp_path / "in.zarr"
    x = np.arange(math.prod(SHARDED_SHAPE), dtype="f4").reshape(SHARDED_SHAPE)
    _sharded_by("zarr", x)(src)
    raw = bytearray((src / "c/0/0/0").read_bytes())
    raw[-1] ^= 0xFF  # the index's crc32c
    (src / "c/0/0/0").write_bytes(bytes(raw))
    before = file_states(src)
    cfg, address = _cli_config(tmp_path, backend_client)
    rc, _, err = cli("plan", cfg, "--scheduler", address)
    assert rc == 0, err
    rc, _, err = cli("run", cfg, "--scheduler", address)
    assert rc != 0
    assert f"error: input chunk 'c/0/0/0' of {src} is damaged: its shard index's crc32c " in err
    assert "restore the chunk (or delete it, and it reads as the fill value)" in err, err
    assert file_states(src) == before
    for key in ("c/1/0/0", "c/2/0/0", "c/3/0/0"):  # the damaged shard alone is left
        (src / key).unlink()
    before = file_states(src)
    rc, _, err = cli("plan", cfg, "--scheduler", address)
    line = err.strip().splitlines()[-1]
    assert rc != 0, err
    assert line.startswith(f"error: input shard 'c/0/0/0' of {src} does not fit its "), line
    assert "its shard index's crc32c checksum does not match: the metadata's shard or " in line
    assert "or the shard is damaged (no other shard looked at tells which)" in line, line
    assert line.endswith("or restore the shard"), line
    assert file_states(src) == before


def test_verify_says_an_outputs_edited_chunk_shape_as_its_metadata(
    tmp_path: Path, backend_client
) -> None:
    """A complete output whose ``zarr.json`` chunk shape was edited by hand since: verify
    said one chunk damaged. It says the output's metadata does not match its chunks as
    written, with ``run --overwrite``'s fix (h69e), and changes nothing."""
    from pipeline.errors import OutputError

    zarr3(compressors=ZstdCodec())(tmp_path / "in.zarr")
    assert _run(tmp_path, backend_client, chunks=[4, 6], shards=[4, 6]).status == "complete"
    out = tmp_path / "out.zarr"
    doc = _edited(out, {"chunk_shape": [4, 12]})
    before = file_states(out)
    config = _config(tmp_path, backend_client[0], chunks=[4, 6], shards=[4, 6])
    with pytest.raises(OutputError) as err:
        pipeline_verify(config, all=True)
    line = str(err.value)
    assert err.value.misfit == "metadata" and err.value.file == str(doc), line
    assert line.startswith(f"the output {out} does not match its metadata: its chunks "), line
    assert "(dtype float32, chunk shape [4, 12]) says 192 (96 bytes: " in line, line
    assert file_states(out) == before


def test_a_cut_blosc_frame_of_a_shard_compressed_whole_ends_the_run_naming_it(
    tmp_path: Path, backend_client
) -> None:
    """A shard that zarr-python compressed whole (zstd after the sharding codec), its inner
    chunks Blosc frames, one of them cut, the zstd frame around the shard whole: Zarr had read
    the cut frame from whatever memory followed it and the run marked the output complete."""
    writer = zarr3(
        chunks=(8, 12),
        serializer=lambda: ShardingCodec(chunk_shape=CHUNKS, codecs=[BytesCodec(), _BLOSC_LZ4]),
        compressors=ZstdCodec(),
    )
    test_a_damaged_chunk_ends_the_run_naming_it(
        tmp_path, backend_client, writer, "c/1/1", _cut_frames_of_zstd_shard
    )


def test_a_damaged_chunk_is_one_line_on_the_command_line(tmp_path: Path, cli) -> None:
    from tests.conftest import write_config

    _zarr2_zstd(tmp_path / "in.zarr")
    _short_frame("float32")(tmp_path / "in.zarr" / "1.2")
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    # the same error, from the worker that met it, with its data
    from tests.faultkit import refused

    e = refused("run", cfg, "--progress", "none", "--overwrite")
    assert isinstance(e, ChunkError) and lines[0] == f"error: {e}"
    assert (e.store, e.key) == (str(tmp_path / "in.zarr"), "1.2")


def _renamed_codec(fmt: int, name: str, package: str | None) -> Callable[[Path], None]:
    """An array zarr-python wrote (zstd), whose metadata then names the codec ``name`` in its
    place, as a store written where that codec's package is installed reads here, where it is
    not (skipped where ``package`` is installed)."""

    def write(path: Path) -> None:
        import importlib.util

        if package and importlib.util.find_spec(package) is not None:
            pytest.skip(f"{package} is installed here: the codec has an implementation")
        if fmt == 2:
            zarr2(compressors=numcodecs.Zstd(level=1))(path)
        else:
            zarr3(compressors=ZstdCodec(level=1))(path)
        doc_path = path / (".zarray" if fmt == 2 else "zarr.json")
        doc = json.loads(doc_path.read_text())
        if fmt == 2:
            doc["compressor"] = {"id": name, "level": 8}
        elif name in ("numcodecs.pcodec", "numcodecs.zfpy"):  # array-to-bytes: the chain
            doc["codecs"] = [{"name": name, "configuration": {"level": 8}}]
        else:
            doc["codecs"][-1] = {"name": name, "configuration": {"level": 8}}
        doc_path.write_text(json.dumps(doc))

    return write


@pytest.mark.parametrize(
    "fmt, name, package, fix",
    [
        (3, "numcodecs.pcodec", "pcodec", "`pip install pcodec`"),
        (3, "numcodecs.zfpy", "zfpy", "`pip install zfpy`"),
        (2, "pcodec", "pcodec", "`pip install pcodec`"),
        (2, "imagecodecs_jpeg2k", None, "install the package that provides it"),
        (3, "imagecodecs_jpeg2k", None, "install the package that provides it"),
    ],
)
def test_a_codec_not_installed_is_refused_before_anything_is_written(
    tmp_path: Path, cli, fmt: int, name: str, package: str | None, fix: str
) -> None:
    """An input whose metadata names a codec with no implementation here (numcodecs' optional
    pcodec and zfpy without their packages, an imagecodecs codec): one line naming the
    metadata document, the codec and what to install, from plan and run, nothing written. A
    v3 ``numcodecs.*`` codec zarr-python opens, failing only as it decodes: the run had made
    the output, then called every chunk damaged and told to restore or delete it (deleted, it
    reads as the fill value); the others were "cannot open ...: UnknownCodecError", no fix."""
    from tests.conftest import write_config
    from tests.faultkit import refused

    src = tmp_path / "in.zarr"
    _renamed_codec(fmt, name, package)(src)
    document = src / (".zarray" if fmt == 2 else "zarr.json")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr")
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        assert rc == 1, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"error: {document} names the codec {name!r}"), lines[0]
        assert fix in lines[0] and "damaged" not in lines[0], lines[0]
    e = refused("run", cfg)
    assert isinstance(e, InputError), e
    assert (e.store, e.codec, e.status) == (str(document), name, "unreadable")
    assert not (tmp_path / "out.zarr").exists()
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before


class XorCodec(numcodecs.abc.Codec):
    """A codec of the test's own (each byte XOR 0x5A), registered in the test's process only,
    as a notebook registers one (``numcodecs.register_codec``): the workers do not have it."""

    codec_id = "pipeline_test_xor"

    def encode(self, buf: Any) -> bytes:
        return (np.frombuffer(bytes(buf), np.uint8) ^ 0x5A).tobytes()

    def decode(self, buf: Any, out: Any = None) -> Any:
        data = (np.frombuffer(bytes(buf), np.uint8) ^ 0x5A).tobytes()
        return numcodecs.compat.ndarray_copy(data, out) if out is not None else data


def test_a_codec_the_workers_lack_is_said_so_not_called_damage(
    tmp_path: Path, backend_client
) -> None:
    """A codec this process has (registered here alone) and the cluster's worker processes do
    not: the plan passes, each worker fails to decode. It had come back as the bare
    UnknownCodecError with the worker's traceback, or, where a chunk decodes into its place,
    been called a damaged chunk, with the fix to restore or delete it (deleted, it reads as
    the fill value). One InputError naming the .zarray, the codec and that the workers lack
    it; the input untouched."""
    numcodecs.register_codec(XorCodec)
    try:
        src = tmp_path / "in.zarr"
        zarr2(compressors=XorCodec())(src)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = zarr.open_array(str(src), mode="r")[...]
        assert same_bits(x, values("float32"))  # zarr-python reads it here
        before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
        with pytest.raises(InputError) as info:
            _run(tmp_path, backend_client)
        e = info.value
        assert (e.store, e.status, e.codec) == (
            str(src / ".zarray"),
            "unreadable",
            "pipeline_test_xor",
        ), e
        line = str(e)
        assert len(line.splitlines()) == 1 and "damaged" not in line, line
        assert "no implementation in the workers" in line and "register_codec" in line, line
        assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before
    finally:
        numcodecs.registry.codec_registry.pop(XorCodec.codec_id, None)


def test_missing_chunks_are_not_damage(tmp_path: Path, backend_client) -> None:
    """Every chunk of a store absent (a store of fill values): the output is the chain over
    the fill value, not an error."""
    zarr3(fill_value=1.5)(tmp_path / "in.zarr")
    for p in list((tmp_path / "in.zarr" / "c").rglob("*")):
        if p.is_file():
            p.unlink()
    _run(tmp_path, backend_client)
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert same_bits(got, chain(np.full(SHAPE, 1.5, np.float32)))


# --------------------------------------------------------------------------------------------
# Noise: warnings about the input's format that neither the pipeline nor its user can act on.


@pytest.mark.parametrize("protocol", ["inproc", "tcp"], ids=["thread-workers", "worker-processes"])
def test_numcodecs_codecs_of_the_input_print_no_warning(tmp_path: Path, protocol: str) -> None:
    """An input whose codecs include numcodecs' Zarr 3 codecs (a Delta filter) is read by
    zarr-python, which warns on every open that they are not in the v3 spec: `run` and
    `verify`, as a user runs them, print no such line (the client opens the input, and so does
    each worker, threads and processes alike), and the output is NumPy's chain over what
    zarr-python reads, bit for bit."""
    import yaml

    zarr3(filters=lambda: [numcodecs.zarr3.Delta(dtype="<f4")])(tmp_path / "in.zarr")
    doc = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}],
        "backend": "cpu",
        "chunking": {"target_bytes": 600},  # a block per chunk: the workers open it at once
        "cluster": {"workers": 2, "threads_per_worker": 2, "dashboard": "", "protocol": protocol},
    }
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    for args in (["run", cfg, "--progress", "none"], ["verify", cfg, "--all"]):
        proc = pipeline_process(*args)
        assert proc.returncode == 0, proc.stderr
        assert "ZarrUserWarning" not in proc.stderr, proc.stderr
        assert "not in the Zarr version 3 specification" not in proc.stderr, proc.stderr
        # Delta's running sum over the stored inf and NaN: NumPy's warning is not printed
        assert "RuntimeWarning" not in proc.stderr, proc.stderr
    # the values hold inf and NaN: Delta's cumulative sum over them warns
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr")
        x = zarr.open_array(str(tmp_path / "in.zarr"), mode="r")[...]
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert same_bits(got, chain(x))


@pytest.mark.parametrize("array", ["", "temp"], ids=["array", "dataset-variable"])
def test_an_empty_filters_list_of_the_input_prints_no_warning(tmp_path: Path, array: str) -> None:
    """A Zarr v2 input whose ``.zarray`` says ``"filters": []`` (zarrs, zarr-python 3.0 and
    VirtualiZarr wrote it so) reads as no filters, and zarr-python warns so at each opening:
    `run` and `verify` print no such line (they had printed it 3 and 2 times), and the output
    is NumPy's chain over what zarr-python reads."""
    import yaml

    writer = xarray_dataset(2) if array else zarr2(fill_value=3.0, drop=True)
    filters_listed_empty(writer)(tmp_path / "in.zarr")
    doc = {
        "input": {"store": str(tmp_path / "in.zarr"), "array": array},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}],
        "backend": "cpu",
        "cluster": {"dashboard": ""},
    }
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    for args in (["run", cfg, "--progress", "none"], ["verify", cfg, "--all"]):
        proc = pipeline_process(*args)
        assert proc.returncode == 0, proc.stderr
        assert "Warning" not in proc.stderr, proc.stderr
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found an empty list of filters")
        x = zarr.open_array(str(tmp_path / "in.zarr"), path=array, mode="r")[...]
    got = zarr.open_array(str(tmp_path / "out.zarr"), path=array, mode="r")[...]
    assert same_bits(got, chain(x))


def test_numcodecs_codecs_of_a_dataset_print_no_warning(tmp_path: Path) -> None:
    """The same for a variable of a group (an xarray-style Dataset, whose coordinates the plan
    and `verify` open too), and for the group given as the input: `run` and `verify` print
    nothing of zarr's warning, and the group is refused in one line."""
    import yaml
    from zarr.codecs.numcodecs import Delta

    x = np.random.default_rng(3).standard_normal((8, 10)).astype("<f4")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr")
        g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=3)
        for name, values, dims in (
            ("temp", x, ("y", "x")),
            ("y", np.arange(8, dtype="<f4"), ("y",)),
        ):
            a = g.create_array(
                name,
                shape=values.shape,
                chunks=(4,) * values.ndim,
                dtype="<f4",
                filters=[Delta(dtype="<f4")],
                dimension_names=dims,
            )
            a[...] = values
    for array in ("temp", None):
        doc = {
            "input": {"store": str(tmp_path / "in.zarr"), **({"array": array} if array else {})},
            "output": {"store": str(tmp_path / "out.zarr"), "overwrite": True},
            "stages": [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}],
            "backend": "cpu",
            "cluster": {
                "workers": 1,
                "threads_per_worker": 2,
                "dashboard": "",
                "protocol": "inproc",
            },
        }
        cfg = tmp_path / "run.yaml"
        cfg.write_text(yaml.safe_dump(doc))
        if array is None:
            proc = pipeline_process("run", cfg, "--progress", "none")
            assert proc.returncode != 0
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            continue
        for args in (["run", cfg, "--progress", "none"], ["verify", cfg, "--all"]):
            proc = pipeline_process(*args)
            assert proc.returncode == 0, proc.stderr
            assert "ZarrUserWarning" not in proc.stderr, proc.stderr
            assert "not in the Zarr version 3 specification" not in proc.stderr, proc.stderr
    with warnings.catch_warnings():  # what zarr-python reads (Delta over floats rounds)
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr")
        read = zarr.open_array(str(tmp_path / "in.zarr"), path="temp", mode="r")[...]
    got = zarr.open_array(str(tmp_path / "out.zarr"), path="temp", mode="r")[...]
    assert same_bits(got, chain(read))


def _frame_at(raw: bytearray, at: list[int], crc32c: list[bool]) -> tuple[int, int]:
    """Where a frame lies in a shard's bytes ``raw`` (every index at its end): ``at``, one
    inner chunk's index (C order) a level, outermost first, each level's index with a crc32c
    or not (``crc32c``); (offset, size)."""
    start, size = 0, len(raw)
    for c, crc in zip(at, crc32c, strict=True):
        shard = bytes(raw[start : start + size])
        n = 2  # the shards below hold 2 inner chunks a level
        table = np.frombuffer(shard[-(16 * n + 4 * crc) :][: 16 * n], "<u8").reshape(n, 2)
        start, size = start + int(table[c, 0]), int(table[c, 1])
    return start, size


def _edit_nested(
    at: list[int], edit: Callable[[bytearray, int, int], None], crc32c: bool = True
) -> Callable:
    """A damage of a nested shard: ``edit(raw, offset, size)`` of the frame at ``at`` (outer
    inner chunk, then nested inner chunk; one index: the nested shard itself), in place (no
    frame changes its length, so no index above it changes); ``crc32c``: the nested shards'
    indexes have one (:data:`_NESTED_CRC`), else not (:func:`_nested_shards`)."""

    def damage(p: Path) -> None:
        raw = bytearray(p.read_bytes())
        edit(raw, *_frame_at(raw, at, [True, crc32c][: len(at)]))
        p.write_bytes(bytes(raw))

    return damage


def _blosc_cbytes_grown(raw: bytearray, off: int, size: int) -> None:
    """A Blosc frame's header saying 7 more compressed bytes than it holds."""
    cbytes = int.from_bytes(raw[off + 12 : off + 16], "little")
    raw[off + 12 : off + 16] = (cbytes + 7).to_bytes(4, "little")


def _flip_middle(raw: bytearray, off: int, size: int) -> None:
    raw[off + size // 2] ^= 0xFF


def _entry_past_the_end(raw: bytearray, off: int, size: int) -> None:
    """A shard's index (at its end, 2 entries, no crc32c) whose second entry's size is 1000
    bytes more."""
    at = off + size - 8
    grown = int.from_bytes(raw[at : at + 8], "little") + 1000
    raw[at : at + 8] = grown.to_bytes(8, "little")


def _flip_index(raw: bytearray, off: int, size: int) -> None:
    """A byte of a shard's index (at its end: its last 36 bytes for 2 chunks) flipped."""
    raw[off + size - 10] ^= 0xFF


def _edit_flat(p: Path, c: int, edit: Callable[[bytearray, int, int], None]) -> None:
    """``edit`` of the frame of inner chunk ``c`` of a shard of ``sharded`` (4 chunks)."""
    raw = bytearray(p.read_bytes())
    table = np.frombuffer(bytes(raw[-68:-4]), "<u8").reshape(4, 2)
    edit(raw, int(table[c, 0]), int(table[c, 1]))
    p.write_bytes(bytes(raw))


def _entry_past_the_end_flat(p: Path) -> None:
    """In a shard of ``sharded`` (4 chunks, its index at the end with its crc32c), the index
    entry of inner chunk 2 ([1, 0]) 1000 bytes longer, the index's crc32c valid again."""
    import google_crc32c

    raw = bytearray(p.read_bytes())
    at = len(raw) - 68 + 16 * 2 + 8
    raw[at : at + 8] = (int.from_bytes(raw[at : at + 8], "little") + 1000).to_bytes(8, "little")
    raw[-4:] = google_crc32c.value(bytes(raw[-68:-4])).to_bytes(4, "little")
    p.write_bytes(bytes(raw))


def _zstd_magic_broken(raw: bytearray, off: int, size: int) -> None:
    """A zstd frame's first byte (of its magic number) flipped: no longer a zstd frame."""
    raw[off] ^= 0xFF


def _zero_tail(raw: bytearray, off: int, size: int) -> None:
    """A frame's second half zeroed (its length kept)."""
    raw[off + size // 2 : off + size] = bytes(size - size // 2)


def _nested_entry_shrunk(p: Path) -> None:
    """In a shard of :data:`_NESTED_SHARDS`, the index entry (no crc32c) of the nested shard
    [1, 0]'s inner chunk [0, 1] 8 bytes shorter: that chunk's frame is 88 bytes, not 96."""
    raw = bytearray(p.read_bytes())
    start, size = _frame_at(raw, [1], [True])
    at = start + size - 32 + 16 + 8
    raw[at : at + 8] = (int.from_bytes(raw[at : at + 8], "little") - 8).to_bytes(8, "little")
    p.write_bytes(bytes(raw))


def _edit_three_levels(p: Path) -> None:
    """In a shard of shards of shards (1, then 2, then 2 inner chunks, every index with its
    crc32c), the first byte of the frame of the innermost chunk [0, 0] / [1, 0] / [0, 1]
    flipped: no longer a zstd frame."""
    raw = bytearray(p.read_bytes())
    start, size = 0, len(raw)
    for c, n in [(0, 1), (1, 2), (1, 2)]:
        table = np.frombuffer(bytes(raw[start : start + size])[-(16 * n + 4) : -4], "<u8")
        start, size = start + int(table.reshape(n, 2)[c, 0]), int(table.reshape(n, 2)[c, 1])
    raw[start] ^= 0xFF
    p.write_bytes(bytes(raw))


#: Shards of 2 inner shards (4 x 12, one above the other) of 2 chunks each (4 x 6, side by
#: side), Blosc frames with a crc32c checksum, both levels' indexes with their crc32c: the
#: inner chunk [1, 0] of a shard holds its nested shard's inner chunks [0, 0] and [0, 1].
_NESTED_CRC = zarr3(
    chunks=(8, 12),
    serializer=lambda: ShardingCodec(
        chunk_shape=(4, 12),
        codecs=[
            ShardingCodec(chunk_shape=CHUNKS, codecs=[BytesCodec(), _BLOSC_LZ4, Crc32cCodec()])
        ],
    ),
    compressors=None,
)

#: Damage at each level of a shard, and the reason its one line gives: each level named by its
#: grid coordinates and told apart (a nested shard's frame had been "(inner chunk 1) (inner
#: chunk 2)", flat indexes of both levels in the same words).
LEVELS = [
    (
        "nested-blosc-header",
        _nested_shards(lambda: [BytesCodec(), _BLOSC_LZ4]),
        "c/0/1",
        _edit_nested([1, 1], _blosc_cbytes_grown, crc32c=False),
        "its Blosc header says 119 bytes, but 112 are stored (in the shard's inner chunk [1, 0], "
        "itself a shard: in its inner chunk [0, 1])",
    ),
    (
        "nested-crc32c",
        _NESTED_CRC,
        "c/1/0",
        _edit_nested([0, 1], _flip_middle),
        "its crc32c checksum does not match (in the shard's inner chunk [0, 0], itself a "
        "shard: in its inner chunk [0, 1])",
    ),
    (
        "nested-index",
        _NESTED_CRC,
        "c/0/1",
        _edit_nested([1], _flip_index),
        "its shard index's crc32c checksum does not match: the shard (268 bytes) was cut short, "
        "or its index (its last 36 bytes) altered (in the shard's inner chunk [1, 0], itself a "
        "shard)",
    ),
    (
        "nested-index-outside",
        _nested_shards(lambda: [BytesCodec(), _BLOSC_LZ4]),
        "c/1/1",
        _edit_nested([1], _entry_past_the_end, crc32c=False),
        "its shard index points outside the shard (inner chunk [0, 1]: offset 112, 1112 bytes, "
        "of 256) (in the shard's inner chunk [1, 0], itself a shard)",
    ),
    (
        "index-outside",
        sharded(),
        "c/1/1",
        _entry_past_the_end_flat,
        "its shard index points outside the shard (inner chunk [1, 0]: offset 105, 1040 bytes, "
        "of 337)",
    ),
    (
        "outer-index",
        _NESTED_CRC,
        "c/0/1",
        lambda p: p.write_bytes(p.read_bytes()[:-10] + b"\xff" + p.read_bytes()[-9:]),
        "its shard index's crc32c checksum does not match: the shard (572 bytes) was cut "
        "short, or its index (its last 36 bytes) altered",
    ),
    (
        "blosc-header",
        sharded(inner=[BytesCodec(), _BLOSC_LZ4]),
        "c/0/1",
        lambda p: _edit_flat(p, 3, _blosc_cbytes_grown),
        "its Blosc header says 119 bytes, but 112 are stored (in the shard's inner chunk [1, 1])",
    ),
    # zarr-python's read of these fails naming no inner chunk (only Zarr reads nested shards
    # and chains with a numcodecs filter): the failing unit's frames are walked at each level
    (
        "nested-zstd-magic",
        _nested_shards(lambda: [BytesCodec(), ZstdCodec(level=1)]),
        "c/0/1",
        _edit_nested([1, 1], _zstd_magic_broken, crc32c=False),
        "its zstd data does not decode: cut short or altered (92 bytes) (in the shard's inner "
        "chunk [1, 0], itself a shard: in its inner chunk [0, 1])",
    ),
    (
        "nested-gzip-crc",
        _nested_shards(lambda: [BytesCodec(), GzipCodec()]),
        "c/1/0",
        _edit_nested([0, 1], lambda raw, off, size: _zero_tail(raw, off, size), crc32c=False),
        "its gzip data does not decode: cut short or altered (119 bytes) (in the shard's inner "
        "chunk [0, 0], itself a shard: in its inner chunk [0, 1])",
    ),
    (
        "nested-zstd-crc32c",
        _nested_shards(lambda: [BytesCodec(), ZstdCodec(level=1), Crc32cCodec()]),
        "c/0/1",
        _edit_nested([1, 1], _flip_middle, crc32c=False),
        "its crc32c checksum does not match (in the shard's inner chunk [1, 0], itself a shard: "
        "in its inner chunk [0, 1])",
    ),
    (
        "nested-bytes-size",
        _NESTED_SHARDS,
        "c/0/1",
        _nested_entry_shrunk,
        "it is cut short: 88 bytes where an uncompressed chunk is 96 (in the shard's inner chunk "
        "[1, 0], itself a shard: in its inner chunk [0, 1])",
    ),
    (
        "three-levels-zstd",
        zarr3(
            chunks=(8, 12),
            serializer=lambda: ShardingCodec(
                chunk_shape=(8, 12),
                codecs=[
                    ShardingCodec(
                        chunk_shape=(4, 12),
                        codecs=[
                            ShardingCodec(chunk_shape=CHUNKS, codecs=[BytesCodec(), ZstdCodec()])
                        ],
                    )
                ],
            ),
            compressors=None,
        ),
        "c/0/1",
        _edit_three_levels,
        "its zstd data does not decode: cut short or altered (86 bytes) (in the shard's inner "
        "chunk [0, 0], itself a shard: in its inner chunk [1, 0], itself a shard: in its inner "
        "chunk [0, 1])",
    ),
    (
        "delta-crc32c",  # a numcodecs filter: only Zarr decodes the chain
        zarr3(
            chunks=(8, 12),
            serializer=lambda: ShardingCodec(
                chunk_shape=CHUNKS,
                codecs=[numcodecs.zarr3.Delta(dtype="<f4"), BytesCodec(), Crc32cCodec()],
            ),
            compressors=None,
        ),
        "c/0/1",
        lambda p: _edit_flat(p, 2, _flip_middle),
        "its crc32c checksum does not match (in the shard's inner chunk [1, 0])",
    ),
    (
        "zstd-magic",
        sharded(),
        "c/0/1",
        lambda p: _edit_flat(p, 2, _zstd_magic_broken),
        # the GPU path checks zstd frames before nvCOMP decodes them; the CPU path says
        # numcodecs' refusal in the run's words
        {
            "cpu": "its zstd data does not decode: cut short or altered (105 bytes) (in the "
            "shard's inner chunk [1, 0])",
            "gpu": "it is not a zstd frame (105 bytes) (in the shard's inner chunk [1, 0])",
        },
    ),
]


@pytest.mark.parametrize(
    ("writer", "key", "damage", "reason"), [c[1:] for c in LEVELS], ids=[c[0] for c in LEVELS]
)
def test_a_damaged_frame_is_named_at_each_shard_level(
    tmp_path: Path, backend_client, writer, key, damage, reason
) -> None:
    writer(tmp_path / "in.zarr")
    damage(tmp_path / "in.zarr" / key)
    if isinstance(reason, dict):
        reason = reason[backend_client[0]]
    with pytest.raises(ChunkError) as err:
        _run(tmp_path, backend_client)
    assert str(err.value) == (
        f"input chunk {key!r} of {tmp_path / 'in.zarr'} is damaged: {reason}; the output stays "
        "incomplete: restore the chunk (or delete it, and it reads as the fill value); then "
        "`pipeline verify` with the run's config names the command that finishes the output"
    )


@pytest.mark.parametrize(
    "writer",
    [_TS_NESTED_TRANSPOSED, zarr3(filters=_delta, compressors=GzipCodec())],
    ids=["nested-transposed-shards", "v3-delta-over-inf"],
)
def test_verify_passes_an_undamaged_input_whose_reading_warns(
    tmp_path: Path, backend_client, writer
) -> None:
    """``pipeline.verify`` in a process where warnings are errors (pytest's, a caller's ``-W
    error``), of a right output whose input zarr-python warns while reading (its "Combining a
    `sharding_indexed` codec disables partial reads" of shards stored transposed; NumPy's
    "invalid value encountered" of a Delta's running sum over inf and -inf) passes, every
    block compared: the warning, raised in verify's reading, had been said as a damaged
    chunk of the input."""
    import pipeline

    writer(tmp_path / "in.zarr")
    assert _run(tmp_path, backend_client).status == "complete"
    result = pipeline.verify(_config(tmp_path, backend_client[0]), all=True)
    assert result.ok and result.checked == result.total, result


@pytest.mark.parametrize(
    "writer",
    [_TS_NESTED_TRANSPOSED, zarr3(filters=_delta, compressors=GzipCodec())],
    ids=["nested-transposed-shards", "v3-delta-over-inf"],
)
def test_a_run_on_workers_in_a_process_where_warnings_are_errors_completes(
    tmp_path: Path, writer
) -> None:
    """A run on an in-process cluster (``LocalCluster(processes=False)``: its tasks run in the
    caller's process) where warnings are errors (pytest's, a caller's ``-W error``), of an
    input zarr-python warns while reading (shards stored transposed; a Delta's running sum
    over inf) completes, its output NumPy's chain over what zarr-python reads: the warning,
    raised in the task's reading, had been said as a damaged input chunk."""
    from distributed import Client, LocalCluster

    writer(tmp_path / "in.zarr")
    with (
        LocalCluster(
            processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        assert _run(tmp_path, ("cpu", client)).status == "complete"
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        x = zarr.open_array(str(tmp_path / "in.zarr"), mode="r")[...]
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert same_bits(got, chain(x))


def _shards_of(inner: list[int], codecs: list[Any], index: list[Any]) -> dict[str, Any]:
    """A ``sharding_indexed`` codec of ``inner`` chunks, their ``codecs``, its ``index``."""
    conf = {"chunk_shape": inner, "codecs": codecs, "index_codecs": index}
    return {"name": "sharding_indexed", "configuration": conf}


@pytest.mark.parametrize(
    "codecs",
    [
        # an index of big-endian integers: read through Zarr
        [_shards_of(list(CHUNKS), [{"name": "bytes"}], _BIG_ENDIAN_INDEX)],
        # shards within shards: read through Zarr
        [
            _shards_of(
                list(CHUNKS),
                [_shards_of([2, 3], [{"name": "bytes"}], [{"name": "bytes"}])],
                [{"name": "bytes"}],
            )
        ],
    ],
    ids=["big-endian-index", "nested"],
)
def test_the_plan_says_the_shards_of_an_input_read_through_zarr(tmp_path: Path, codecs) -> None:
    """tensorstore's shards that only Zarr reads (their index of big-endian integers, or
    shards within shards) were said as their inner chunks alone, `chunks [4, 6], codecs only
    Zarr knows`, as if the input were not sharded; now as the pipeline's own shards are."""
    import pipeline

    src = tmp_path / "in.zarr"
    tensorstore(_ts_v3(codecs, chunks=(8, 12)))(src)
    info = pipeline.plan(_config(tmp_path, "cpu")).input
    assert info.format is None, "read through Zarr"
    said = info.describe()
    assert f"chunks {list(CHUNKS)} in shards [8, 12], codecs only Zarr knows" in said, said
