"""Zarr stores: where arrays live, what their layout is, and raw bytes in and out.

Zarr itself reads and writes the metadata (``zarr.json``/``.zarray``), so every output is a store
that Zarr made; chunk bytes go straight through the file system (local files, or fsspec for
URLs), because the pipeline encodes and decodes chunks itself, on the device that holds them.

All objects here are small and picklable: tasks carry them to the workers, which open file
systems lazily, once per process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pipeline import codecs, layout
from pipeline.errors import InputError, PipelineError, disk_full
from pipeline.layout import Shape

FrameCodec = Literal["zstd", "none"]

_FS_CACHE: dict[str, Any] = {}
_FS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Location:
    """A store: a local path or an fsspec URL, with its options."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, url: str, storage_options: dict[str, Any] | None = None) -> Location:
        """``url``: a path, ``file://`` URL (both read as local files), or any fsspec URL;
        ``storage_options`` are the file system's options (s3fs: endpoint_url, key, secret...).
        """
        if url.startswith("file://"):
            url = url[len("file://") :]
        if "://" not in url:
            url = os.path.abspath(os.path.expanduser(url))
        return cls(url, dict(storage_options or {}))

    @property
    def protocol(self) -> str:
        """'file' for local paths, else the URL's scheme ('s3', 'memory', ...)."""
        return "file" if self.is_local else self.url.split("://", 1)[0]

    @property
    def is_local(self) -> bool:
        return "://" not in self.url

    def __str__(self) -> str:
        return self.url

    def join(self, *parts: str) -> str:
        tail = "/".join(p.strip("/") for p in parts if p)
        if not tail:
            return self.url
        return os.path.join(self.url, tail) if self.is_local else f"{self.url.rstrip('/')}/{tail}"

    # -- file system -----------------------------------------------------------------------

    def fs(self) -> Any:
        """The fsspec file system of a URL (cached per process).

        Listings are not cached: workers in other processes write the chunks and the run
        record's markers, and a listing cached here would not show them.
        """
        import fsspec

        key = json.dumps([self.protocol, self.storage_options], sort_keys=True, default=str)
        with _FS_LOCK:
            fs = _FS_CACHE.get(key)
            if fs is None:
                opts = {"use_listings_cache": False, **self.storage_options}
                fs, _ = fsspec.url_to_fs(self.url, **opts)
                _FS_CACHE[key] = fs
        return fs

    def zarr_store(self, read_only: bool) -> Any:
        """A Zarr store object for this location."""
        from zarr.storage import FsspecStore, LocalStore

        if self.is_local:
            return LocalStore(self.url, read_only=read_only)
        return FsspecStore.from_url(
            self.url, storage_options=self.storage_options, read_only=read_only
        )

    # -- raw bytes -------------------------------------------------------------------------

    def read(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or None when there are none."""
        path = self.join(key)
        if self.is_local:
            try:
                with open(path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None
        fs = self.fs()
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            return None

    def read_into(self, key: str, alloc: Callable[[int], memoryview]) -> memoryview | None:
        """Read ``key`` into a buffer that ``alloc(size)`` returns (e.g. page-locked memory,
        reused across calls); the filled view, or None when the key is absent."""
        path = self.join(key)
        if self.is_local:
            try:
                with open(path, "rb", buffering=0) as f:
                    size = os.fstat(f.fileno()).st_size
                    view = alloc(size)[:size]
                    got = 0
                    while got < size:
                        n = f.readinto(view[got:])
                        if not n:
                            raise OSError(errno.EIO, f"{path}: short read")
                        got += n
                    return view
            except FileNotFoundError:
                return None
        data = self.read(key)
        if data is None:
            return None
        view = alloc(len(data))[: len(data)]
        view[:] = data
        return view

    def size(self, key: str) -> int | None:
        path = self.join(key)
        try:
            return os.path.getsize(path) if self.is_local else int(self.fs().size(path))
        except FileNotFoundError:
            return None

    def write(self, key: str, parts: Sequence[Any], atomic: bool = False) -> int:
        """Store the concatenation of ``parts`` (bytes-like) under ``key``; bytes written.

        A write that fails leaves no partial file. ``atomic``: the key appears only once all
        its bytes are there (local files: written under a hidden name, then renamed; objects
        in a store appear whole anyway)."""
        path = self.join(key)
        total = sum(memoryview(p).nbytes for p in parts)
        target = path
        try:
            if self.is_local:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if atomic:
                    head, tail = os.path.split(path)
                    target = os.path.join(
                        head, f".{tail}.tmp-{os.getpid()}-{threading.get_ident()}"
                    )
                try:
                    with open(target, "wb", buffering=0) as f:
                        for p in parts:
                            mv = memoryview(p).cast("B")
                            done = 0
                            while done < mv.nbytes:
                                done += f.write(mv[done:])
                    if atomic:
                        os.replace(target, path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.remove(target)
                    raise
            else:
                data = b"".join(bytes(memoryview(p)) for p in parts)
                self.fs().pipe_file(path, data)
        except OSError as e:
            full = disk_full(e, path)
            if full is not None:
                raise full from None
            raise
        return total

    def exists(self, key: str = "") -> bool:
        path = self.join(key)
        return os.path.exists(path) if self.is_local else bool(self.fs().exists(path))

    def delete(self, key: str, recursive: bool = False) -> None:
        path = self.join(key)
        if self.is_local:
            if os.path.isdir(path):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)
            return
        fs = self.fs()
        if fs.exists(path):
            fs.rm(path, recursive=recursive)

    def list(self, key: str) -> list[str]:
        """Names directly under ``key`` (empty when it does not exist)."""
        path = self.join(key)
        if self.is_local:
            try:
                return sorted(os.listdir(path))
            except FileNotFoundError:
                return []
        fs = self.fs()
        try:
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
        except FileNotFoundError:
            return []

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; False when it already did."""
        path = self.join(key)
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        try:  # atomic where the store supports it (S3: a conditional PUT, If-None-Match: *)
            self.fs().pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        return True

    def writable_probe(self) -> None:
        """Raise PipelineError when nothing can be written here."""
        probe = ".pipeline-write-probe"
        try:
            self.write(probe, [b"ok"])
            self.delete(probe)
        except PipelineError:
            raise
        except Exception as e:
            raise PipelineError(
                f"cannot write to {self.url} ({type(e).__name__}: {e}); choose a writable "
                "output.store"
            ) from None


# --------------------------------------------------------------------------------------------
# What an array is, and how its chunks are keyed and encoded.


@dataclass(frozen=True)
class ArrayInfo:
    """A stored array's layout, enough to read or write its units without Zarr."""

    location: Location
    path: str
    """path of the array inside the store ('' at the root)"""
    shape: Shape
    dtype: np.dtype
    """the elements' dtype in native byte order (what a decoded chunk holds)"""
    zarr_format: int
    chunk: Shape
    """inner chunk shape (what one frame holds)"""
    unit: Shape
    """shape one storage key holds: the shard, or the chunk when unsharded"""
    sharded: bool
    index_at_end: bool
    codec: FrameCodec | None
    """'zstd' or 'none' when each chunk is one plain frame (bytes in native order, C order,
    no filters, zstd or nothing): what the GPU decodes and the pipeline writes; else None"""
    key_prefix: str
    key_sep: str
    format: codecs.StoredFormat | None = None
    """how the stored units decode on the CPU (any chain numcodecs knows); None: only Zarr
    can read this array (the slow path)"""
    fill: bytes | None = None
    """the fill value's bytes, one native element (what an absent chunk reads as); None: zeros"""

    @property
    def grid(self) -> Shape:
        return layout.grid_shape(self.shape, self.unit)

    @property
    def n_units(self) -> int:
        return int(np.prod(self.grid))

    @property
    def chunks_per_unit(self) -> Shape:
        return layout.chunks_per_unit(self.unit, self.chunk)

    @property
    def chunk_nbytes(self) -> int:
        return layout.nbytes(self.chunk, self.dtype)

    @property
    def nbytes(self) -> int:
        return layout.nbytes(self.shape, self.dtype)

    @property
    def fill_bytes(self) -> bytes:
        """The fill value as the bytes of one element (zeros when the metadata has none)."""
        return self.fill if self.fill is not None else bytes(self.dtype.itemsize)

    def key(self, index: Shape) -> str:
        """The store key of the unit at grid ``index`` (relative to the store root)."""
        k = self.key_prefix + self.key_sep.join(str(i) for i in index)
        return f"{self.path}/{k}" if self.path else k

    def describe(self) -> str:
        shard = f" in shards {list(self.unit)}" if self.sharded else ""
        return (
            f"{list(self.shape)} {self.dtype}, chunks {list(self.chunk)}{shard}, "
            f"{self.codecs_text()}, Zarr v{self.zarr_format}"
        )

    def codecs_text(self) -> str:
        """The chunks' codecs in a few words (for plans and summaries)."""
        if self.format is None:
            return self.codec or "codecs only Zarr knows (read through Zarr, slowly)"
        c = self.format.chunk
        names = [json.loads(x)["id"] for x in (*c.filters, *c.codecs)]
        extra = []
        if c.transpose is not None:
            extra.append(f"transposed {list(c.transpose)}")
        if c.order == "F":
            extra.append("order F")
        if np.dtype(c.stored) != c.dtype:
            extra.append("big-endian" if np.dtype(c.stored).byteorder == ">" else "swapped")
        return " + ".join(names or ["no compressor"]) + "".join(f", {e}" for e in extra)


def _describe_v3(doc: dict[str, Any], dtype: np.dtype) -> dict[str, Any]:
    outer = tuple(doc["chunk_grid"]["configuration"]["chunk_shape"])
    enc = doc.get("chunk_key_encoding") or {"name": "default"}
    default = enc.get("name", "default") == "default"
    sep = (enc.get("configuration") or {}).get("separator", "/" if default else ".")
    fmt = codecs.v3_format(doc, dtype)
    sharded = fmt is not None and fmt.shard is not None
    if not sharded and doc["codecs"] and doc["codecs"][0]["name"] == "sharding_indexed":
        inner = tuple(doc["codecs"][0]["configuration"]["chunk_shape"])  # read through Zarr
    else:
        inner = fmt.chunk.shape if fmt is not None else outer
    return dict(
        key_prefix="c" + sep if default else "",
        key_sep=sep,
        unit=outer,
        chunk=inner,
        sharded=sharded,
        index_at_end=fmt.shard.index_at_end if fmt is not None and fmt.shard else True,
        format=fmt,
    )


def _describe_v2(doc: dict[str, Any]) -> dict[str, Any]:
    chunks = tuple(doc["chunks"])
    return dict(
        key_prefix="",
        key_sep=doc.get("dimension_separator") or ".",
        unit=chunks,
        chunk=chunks,
        sharded=False,
        index_at_end=True,
        format=codecs.v2_format(doc),
    )


def _checked_grid(
    location: Location, path: str, shape: Shape, unit: Shape, chunk: Shape
) -> dict[str, Shape]:
    """The stored units and chunks of an array of ``shape``, checked: a chunk (or shard) with
    a 0-length axis holds nothing, so no grid of them covers a non-empty array (zarr-python
    fails on it too): InputError. An empty array (a 0-length axis) has no chunks to read;
    its 0-length chunk axes are taken as 1 so that the geometry stays defined."""
    if 0 in shape:
        return {"unit": tuple(max(u, 1) for u in unit), "chunk": tuple(max(c, 1) for c in chunk)}
    for name, shp in (("chunks", chunk), ("shards", unit)):
        if 0 in shp:
            where = location.join(path)
            raise InputError(
                f"{where}: its {name} {list(shp)} have a 0-length axis, so they cannot hold "
                f"any part of the {list(shape)} array (zarr-python cannot read it either); "
                f"rewrite the input with {name} of at least 1 on every axis",
                store=where,
                shape=shape,
                chunks=shp,
            )
    return {"unit": unit, "chunk": chunk}


def open_zarr_array(location: Location, path: str, mode: Literal["r", "r+"] = "r") -> Any:
    """Open an array with Zarr, turning the usual mistakes into one-line errors."""
    import zarr

    if not location.exists():
        raise PipelineError(
            f"input store {location} does not exist; create it with `pipeline generate CONFIG` "
            "or fix input.store"
        )
    try:
        with warnings.catch_warnings():
            # zarr warns that numcodecs.* codecs are not in the v3 spec: a concern for whoever
            # writes such arrays, not for a reader of them
            warnings.simplefilter("ignore", UserWarning)
            node = zarr.open(
                store=location.zarr_store(read_only=(mode == "r")), path=path or None, mode=mode
            )
    except FileNotFoundError:
        raise PipelineError(
            f"no Zarr array at {location}{'/' + path if path else ''}; check input.array"
        ) from None
    except Exception as e:  # zarr raises several types for unreadable metadata
        raise PipelineError(f"cannot open {location}/{path}: {type(e).__name__}: {e}") from None
    if isinstance(node, zarr.Group):
        members = sorted(k for k, v in node.members(max_depth=None) if isinstance(v, zarr.Array))
        hint = f"; arrays in it: {', '.join(members[:8])}" if members else ""
        raise PipelineError(
            f"{location}/{path} is a Zarr group, not an array: set input.array to the array's "
            f"path{hint}"
        )
    return node


def describe_array(location: Location, path: str, arr: Any | None = None) -> ArrayInfo:
    """Inspect a stored array (opened read-only) into an :class:`ArrayInfo`.

    The codec chain is read from the metadata document by spec name and configuration
    (:mod:`pipeline.codecs`); the fill value as zarr-python parses it (a v2 ``null`` reads as
    zero). Raises InputError for a 0-d array."""
    arr = arr if arr is not None else open_zarr_array(location, path)
    stored = np.dtype(arr.dtype)
    dtype = stored.newbyteorder("=") if stored.byteorder not in ("=", "|") else stored
    meta: Any = arr.metadata
    if arr.ndim == 0:
        raise InputError(
            f"{location}/{path} is a 0-d array; the pipeline needs ndim >= 1",
            store=str(location),
            array=path,
        )
    doc = meta.to_dict()
    parts = _describe_v3(doc, dtype) if meta.zarr_format == 3 else _describe_v2(doc)
    shape = tuple(arr.shape)
    parts.update(_checked_grid(location, path, shape, parts["unit"], parts["chunk"]))
    fmt = parts["format"]
    plain = fmt is not None and fmt.chunk.plain
    return ArrayInfo(
        location=location,
        path=path.strip("/"),
        shape=shape,
        dtype=dtype,
        zarr_format=meta.zarr_format,
        codec=fmt.chunk.frame_codec if plain else None,
        fill=codecs.fill_bits(meta.fill_value, dtype),
        **parts,
    )


def create_output(
    location: Location,
    path: str,
    shape: Shape,
    dtype: np.dtype,
    chunk: Shape,
    shard: Shape | None,
    codec: FrameCodec,
    level: int,
    checksum: bool,
    attributes: dict[str, Any],
    overwrite: bool,
) -> ArrayInfo:
    """Create the output array's metadata with Zarr (v3); chunks are written later, raw."""
    import zarr
    from zarr.codecs import ZstdCodec

    compressors = ZstdCodec(level=level, checksum=checksum) if codec == "zstd" else None
    arr = zarr.create_array(
        store=location.zarr_store(read_only=False),
        name=path or None,
        shape=shape,
        dtype=dtype,
        chunks=chunk,
        shards=shard,
        compressors=compressors,
        fill_value=0,
        attributes=attributes,
        overwrite=overwrite,
        zarr_format=3,
    )
    info = describe_array(location, path, arr)
    if info.codec != codec:  # pragma: no cover - guards against a Zarr layout change
        raise RuntimeError(f"Zarr wrote an unexpected codec chain: {arr.metadata}")
    return info


def clear_array(location: Location, path: str, keep: str) -> None:
    """Delete everything stored under ``path`` except the entry named ``keep``."""
    for name in location.list(path):
        if name != keep:
            location.delete(f"{path}/{name}" if path else name, recursive=True)


def update_attributes(location: Location, path: str, attrs: dict[str, Any]) -> None:
    """Merge ``attrs`` into the array's attributes (Zarr rewrites its metadata document)."""
    import zarr

    arr = zarr.open_array(store=location.zarr_store(read_only=False), path=path, mode="r+")
    arr.update_attributes(attrs)


def read_attributes(location: Location, path: str) -> dict[str, Any]:
    import zarr

    arr = zarr.open_array(store=location.zarr_store(read_only=True), path=path, mode="r")
    return dict(arr.attrs)
