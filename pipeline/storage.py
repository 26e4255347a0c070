"""Zarr stores: where arrays live, what their layout is, and raw bytes in and out.

Zarr itself reads and writes the metadata (``zarr.json``/``.zarray``), so every output is a store
that Zarr made; chunk bytes go straight through the file system (local files, or fsspec for
URLs), because the pipeline encodes and decodes chunks itself, on the device that holds them.

All objects here are small and picklable: tasks carry them to the workers, which open file
systems lazily, once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import math
import os
import threading
import warnings
import zipfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pipeline import codecs, layout
from pipeline.errors import InputError, OutputError, PipelineError, StoreError, disk_full
from pipeline.layout import Shape

FrameCodec = Literal["zstd", "none"]

_FS_CACHE: dict[str, tuple[Any, Any, str]] = {}
_FS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Location:
    """A store: a local path or an fsspec URL (chained URLs such as ``zip::file:///a.zip`` or
    ``simplecache::s3://bucket/x.zarr`` too), with its file system's options.

    Keys are store keys (``arr/c/0/1``), taken literally on every file system: ``[``, ``*``,
    ``?`` and spaces are characters of a name, never a pattern. Remote keys are joined onto the
    root path of the URL's file system (``fsspec.url_to_fs``), which is also the root of the
    Zarr store :meth:`zarr_store` gives, so the raw reader and Zarr read the same objects.
    """

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, url: str, storage_options: dict[str, Any] | None = None) -> Location:
        """``url``: a path, ``file://`` URL (both read as local files), or any fsspec URL;
        ``storage_options`` are the file system's options (s3fs: endpoint_url, key, secret...).
        A local path that is a zip file is read as the zip store it holds
        (``zip::file://PATH``); a relative local path at the end of a chained URL is made
        absolute, so every process opens the same file.
        """
        if url.startswith("file://"):
            url = url[len("file://") :]
        if _chained(url):
            *outer, inner = url.split("::")
            if "://" not in inner or inner.startswith("file://"):
                inner = "file://" + _absolute(inner.removeprefix("file://"))
            url = "::".join([*outer, inner])
        elif "://" not in url:
            url = _absolute(url)
            if os.path.isfile(url) and zipfile.is_zipfile(url):
                url = f"zip::file://{url}"
        return cls(url, dict(storage_options or {}))

    @property
    def protocol(self) -> str:
        """'file' for local paths, else the scheme of the outermost file system ('s3',
        'memory', 'zip', ...)."""
        return "file" if self.is_local else _outer_protocol(self.url)

    @property
    def is_local(self) -> bool:
        return "://" not in self.url and not _chained(self.url)

    def __str__(self) -> str:
        return self.url

    def join(self, *parts: str) -> str:
        """The address of the key ``parts`` (joined by '/'): a local path, or a URL that fsspec
        resolves to the very object the reader reads (for a chained URL, the key goes into the
        chain's path: ``zip://arr/zarr.json::file:///a.zip``)."""
        tail = "/".join(p.strip("/") for p in parts if p)
        if not tail:
            return self.url
        if self.is_local:
            return os.path.join(self.url, tail)
        if _chained(self.url):
            return _chain_join(self.url, tail)
        return f"{self.url.rstrip('/')}/{tail}"

    # -- file system -----------------------------------------------------------------------

    def fs(self) -> Any:
        """The fsspec file system of a URL (cached per process).

        Listings are not cached: workers in other processes write the chunks and the run
        record's markers, and a listing cached here would not show them.
        """
        return self._resolve()[0]

    def _resolve(self) -> tuple[Any, str]:
        """(file system, root path) of the URL, once per process: keys join onto the root.
        A local archive file is opened again once it changed (a zip replaced between two
        runs on long-lived workers must not be read from its old directory).

        Raises StoreError when the file system cannot be opened (its ``__cause__`` is a
        FileNotFoundError when what holds the store, such as a zip file, is absent)."""
        key = json.dumps([self.url, self.storage_options], sort_keys=True, default=str)
        stamp = self._archive_stamp()
        with _FS_LOCK:
            got = _FS_CACHE.get(key)
            if got is None or got[0] != stamp:
                options = {"use_listings_cache": False, **self.storage_options}
                if stamp is not None:  # fsspec keeps one instance per URL otherwise
                    options["skip_instance_cache"] = True
                got = (stamp, *_open_fs(self.url, options))
                _FS_CACHE[key] = got
        return got[1], got[2]

    def _archive_stamp(self) -> tuple[int, int, int] | None:
        """(inode, size, mtime) of a local file holding an archive store; None otherwise."""
        inner = self.url.rsplit("::", 1)[-1]
        if "::" not in self.url or not inner.startswith("file://") or self.archive() is None:
            return None
        try:
            st = os.stat(inner.removeprefix("file://"))
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _path(self, key: str) -> str:
        """Where ``key`` is: a local path, or a path of the URL's file system."""
        if self.is_local:
            return self.join(key)
        return _under(self._resolve()[1], key)

    def archive(self) -> str | None:
        """The archive format ('zip', 'tar', ...) when the store is inside an archive file
        (read-only here), else None. Known from the URL alone, without opening anything."""
        if self.is_local:
            return None
        import fsspec
        from fsspec.archive import AbstractArchiveFileSystem

        protocol = _outer_protocol(self.url)
        try:
            cls = fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError):
            return None
        return protocol if issubclass(cls, AbstractArchiveFileSystem) else None

    def zarr_store(self, read_only: bool) -> Any:
        """A Zarr store object for this location: the same file system and root path the raw
        reader uses (:meth:`read`), with deletes that take keys literally."""
        from zarr.storage import LocalStore

        if self.is_local:
            return LocalStore(self.url, read_only=read_only)
        options = {"use_listings_cache": False, **self.storage_options, "asynchronous": True}
        if self._archive_stamp() is not None:  # a fresh look at a zip that may be replaced
            options["skip_instance_cache"] = True
        fs, root = _open_fs(self.url, options)
        if not fs.async_impl:
            from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

            fs = AsyncFileSystemWrapper(fs, asynchronous=True)
        return _literal_store_class()(fs=fs, path=root, read_only=read_only)

    # -- raw bytes -------------------------------------------------------------------------

    def read(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or None when there are none."""
        path = self._path(key)
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
        path = self._path(key)
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
        """Bytes stored under ``key``, or None when there are none."""
        path = self._path(key)
        try:
            return os.path.getsize(path) if self.is_local else int(self.fs().size(path))
        except FileNotFoundError:
            return None

    def write(self, key: str, parts: Sequence[Any], atomic: bool = False) -> int:
        """Store the concatenation of ``parts`` (bytes-like) under ``key``; bytes written.

        A write that fails leaves no partial file. ``atomic``: the key appears only once all
        its bytes are there (local files: written under a hidden name, then renamed; objects
        in a store appear whole anyway)."""
        path = self._path(key)
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
        """Whether ``key`` (a file, object or directory; '' for the store itself) exists."""
        if self.is_local:
            return os.path.exists(self._path(key))
        try:
            fs, root = self._resolve()
        except StoreError as e:
            if isinstance(e.__cause__, FileNotFoundError):  # e.g. the zip file is absent
                return False
            raise
        return bool(fs.exists(_under(root, key)))

    def delete(self, key: str, recursive: bool = False) -> None:
        """Delete ``key``, and with ``recursive`` everything under it; nothing there is fine."""
        path = self._path(key)
        if self.is_local:
            if os.path.isdir(path):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)
            return
        _remove_literally(self.fs(), path, recursive)

    def list(self, key: str) -> list[str]:
        """Names directly under ``key`` (empty when it does not exist)."""
        path = self._path(key)
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
        path = self._path(key)
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

    def refuse_archive(self, setting: str = "") -> None:
        """Raise OutputError when this location is inside an archive (read-only here);
        ``setting``: the config key that names it, for the message."""
        kind = self.archive()
        if kind is not None:
            raise OutputError(
                f"{self.url} is inside a {kind} archive, which the pipeline reads but never "
                f"writes: choose a directory or an object store{' for ' if setting else ''}"
                f"{setting}",
                output=self.url,
            )

    def writable_probe(self) -> None:
        """Raise OutputError when nothing can be written here. The probe object is gone
        afterwards, whether the probe succeeded or not."""
        self.refuse_archive()
        probe = ".pipeline-write-probe"
        try:
            self.write(probe, [b"ok"])
            self.delete(probe)
            if self.exists(probe):
                raise OSError(f"{self.join(probe)} is still there after it was deleted")
        except PipelineError:
            raise
        except Exception as e:
            with contextlib.suppress(Exception):
                self.delete(probe)
            raise OutputError(
                f"cannot write to {self.url} ({type(e).__name__}: {e}); choose a writable store",
                output=self.url,
            ) from None


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _chained(url: str) -> bool:
    """Whether ``url`` chains file systems (``zip::file:///a.zip``): it has '::' after a
    protocol fsspec knows (a local path may contain '::' too)."""
    if "::" not in url:
        return False
    from fsspec.registry import known_implementations, registry

    protocol = _outer_protocol(url)
    return protocol in known_implementations or protocol in registry


def _outer_protocol(url: str) -> str:
    """The scheme of the outermost file system of a URL: 'zip' for ``zip::file:///a.zip``."""
    return url.split("::", 1)[0].split("://", 1)[0]


def _under(root: str, key: str) -> str:
    """``key`` under the file system path ``root`` (Zarr's FsspecStore joins the same way)."""
    root = root.rstrip("/")
    return (f"{root}/{key}" if root else key).rstrip("/")


def _chain_join(url: str, tail: str) -> str:
    """A chained URL whose path is ``tail`` below the chain's root: the path belongs to the
    first file system in the chain that has one, or that is not a caching layer (fsspec's
    ``ChainedFileSystem``), which takes the path of what it wraps."""
    import fsspec
    from fsspec.implementations.chained import ChainedFileSystem

    bits = url.split("::")
    for i, bit in enumerate(bits):
        protocol, _, path = bit.partition("://")
        cls = fsspec.get_filesystem_class(protocol)
        if path or i == len(bits) - 1 or not issubclass(cls, ChainedFileSystem):
            bits[i] = f"{protocol}://{_under(path, tail)}"
            return "::".join(bits)
    raise AssertionError("unreachable: the last bit always takes the path")


def _open_fs(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    """(file system, root path) of ``url``; StoreError when it cannot be opened."""
    import fsspec

    try:
        return fsspec.url_to_fs(url, **options)
    except ImportError as e:
        raise StoreError(f"cannot open {url}: {e}", store=url) from e
    except Exception as e:  # each file system raises its own types (BadZipFile, ...)
        raise StoreError(
            f"cannot open {url} ({type(e).__name__}: {e}); check the store's URL and its "
            "storage_options",
            store=url,
        ) from e


def _remove_literally(fs: Any, path: str, recursive: bool) -> None:
    """Delete ``path`` (and with ``recursive`` what is under it) from an fsspec file system,
    taking every name literally. fsspec's ``rm`` expands its argument as a glob pattern, so a
    name with ``[``, ``*`` or ``?`` either was not found or, worse, matched other names
    (``out[v0].zarr`` matches ``outv.zarr``); listings (``find``) and ``rm_file`` do not."""
    if not recursive:
        _remove_files(fs, [path])
        return
    try:
        found = fs.find(path, withdirs=True, detail=True)
    except FileNotFoundError:
        return
    files = [p for p, info in found.items() if info.get("type") != "directory"]
    dirs = [p for p, info in found.items() if info.get("type") == "directory"]
    _remove_files(fs, files)
    # what remains of directories (pseudo-directories of memory://; none on S3), deepest first
    for d in sorted({*dirs, path} - set(files), key=len, reverse=True):
        with contextlib.suppress(OSError, NotImplementedError):
            fs.rmdir(d)


def _remove_files(fs: Any, paths: Sequence[str]) -> None:
    """``rm_file`` each path (concurrently on async file systems such as s3fs); a file that is
    already gone is fine."""
    if getattr(fs, "async_impl", False) and not getattr(fs, "asynchronous", False):
        from fsspec.asyn import sync

        sync(fs.loop, _remove_files_async, fs, paths)
        return
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(p)


async def _remove_files_async(fs: Any, paths: Sequence[str], batch: int = 64) -> None:
    """``_rm_file`` each path of an async file system, ``batch`` at a time."""
    for i in range(0, len(paths), batch):
        got = await asyncio.gather(
            *(fs._rm_file(p) for p in paths[i : i + batch]), return_exceptions=True
        )
        for r in got:
            if isinstance(r, BaseException) and not isinstance(r, FileNotFoundError):
                raise r


@functools.cache
def _literal_store_class() -> type:
    """Zarr's FsspecStore, joining keys onto its root as :class:`Location` does and taking
    them literally (see :func:`_remove_literally`): ``create_array(overwrite=True)`` at
    ``out[v0].zarr`` must not delete what ``outv.zarr`` holds. Made on first use: Zarr is
    imported lazily."""
    from zarr.storage import FsspecStore

    class LiteralFsspecStore(FsspecStore):
        async def delete(self, key: str) -> None:
            self._check_writable()
            with contextlib.suppress(*self.allowed_exceptions):
                await self.fs._rm_file(_under(self.path, key))

        async def delete_dir(self, prefix: str) -> None:
            self._check_writable()
            try:
                found = await self.fs._find(_under(self.path, prefix), withdirs=False)
            except FileNotFoundError:
                return
            await _remove_files_async(self.fs, found)

        async def list_dir(self, prefix: str) -> AsyncIterator[str]:
            # FsspecStore lists "/" + prefix under an empty root (a zip's), which archive
            # file systems do not find
            try:
                found = await self.fs._ls(_under(self.path, prefix), detail=False)
            except FileNotFoundError:
                return
            for p in found:
                yield p.rstrip("/").rsplit("/", 1)[-1]

    return LiteralFsspecStore


def check_reader_sees_chunks(info: ArrayInfo, probes: int = 8) -> None:
    """Refuse (InputError, fields ``store`` and ``key``) an input whose stored units Zarr finds
    where the pipeline's raw reader finds none, or other bytes: the reader would read them
    as the fill value. A cheap probe, at plan time: for up to ``probes`` units spread over
    the grid, the key the reader computes must be Zarr's key, and each unit Zarr's store
    holds must be there for the reader with the same size; when Zarr holds none of those
    (a sparse array), the first unit that a listing one level at a time finds is checked
    (nested keys only: a listing of flat keys would list the whole array)."""
    from zarr.core.sync import sync

    if not all(info.unit):  # no grid (a chunk of 0 is refused elsewhere)
        return
    grid = info.grid
    n = math.prod(grid)
    if not n:
        return
    arr = open_zarr_array(info.location, info.path)
    store, prefix = arr.store_path.store, arr.store_path.path
    flat = sorted({*range(min(n, probes // 2)), *(n * k // 4 for k in range(1, 4)), n - 1})
    present: list[str] = []
    for i in flat:
        index = tuple(int(j) for j in np.unravel_index(i, grid))
        key = _under(prefix, arr.metadata.encode_chunk_key(index))
        if info.key(index) != key:
            raise InputError(
                f"the pipeline would read unit {list(index)} of {info.location} from key "
                f"{info.key(index)!r}, but Zarr stores it at {key!r}: copy the array with "
                "zarr-python into a new store (default chunk keys) and use that",
                store=info.location.url,
                key=key,
            )
        if sync(store.exists(key)):
            present.append(key)
    levels = arr.metadata.encode_chunk_key((0,) * len(grid)).count("/") + 1
    if not present and levels > 1:
        found = sync(_first_listed(store, prefix, levels))
        present += [found] if found else []
    for key in present:
        want, got = sync(store.getsize(key)), info.location.size(key)
        if got != want:
            raise InputError(
                f"Zarr finds {key!r} in {info.location} ({want} bytes), the pipeline's reader "
                f"{'does not' if got is None else f'finds {got} bytes'}: it would read that "
                "chunk wrong; copy the array into a directory or an object store and use that",
                store=info.location.url,
                key=key,
            )


async def _first_listed(store: Any, prefix: str, levels: int) -> str | None:
    """The first key ``levels`` levels below ``prefix`` that a Zarr store lists, going down
    one level at a time along the first name (metadata and hidden names left out); None
    when a level is empty."""
    at = prefix
    for _ in range(levels):
        listed = [n async for n in store.list_dir(at)]
        names = sorted(n for n in listed if not n.startswith(".") and n != "zarr.json")
        if not names:
            return None
        at = _under(at, names[0])
    return at


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
