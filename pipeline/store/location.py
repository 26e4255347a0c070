"""Where a store is, and raw bytes in and out of it: :class:`Location`.

Chunk bytes go straight through the file system (local files, or fsspec for URLs), because the
pipeline encodes and decodes chunks itself, on the device that holds them; Zarr gets a store
object on the same file system and root (:meth:`Location.zarr_store`) for the metadata. Keys are
taken literally on every file system (fsspec's globbing never sees them).

A location is small and picklable: tasks carry it to the workers, which open file systems
lazily, once per process.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import errno
import functools
import json
import os
import re
import stat
import sys
import threading
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Container, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pipeline.config.urls import (
    LOCAL_SCHEMES,
    caching_layer_problem,
    file_url_problem,
    misplaced_options_problem,
    signature_versions,
    storage_option_problem,
    url_query_problem,
    url_userinfo_problem,
    without_query,
    without_userinfo,
)
from pipeline.errors import (
    CREDENTIALS_FIX,
    ConfigError,
    InputError,
    ListingError,
    OutputError,
    PipelineError,
    StoreError,
    asked_of,
    disk_full,
    hidden_options,
    hide_url_secrets,
    mark_asked,
    missing_credentials,
    name_shown,
    names_credential,
    one_line,
    public_url,
    refused_access,
    refused_credentials,
    refused_request,
    s3_action,
    said_option,
    some_shown,
    storage_failure,
    storage_fix,
)
from pipeline.store.local_files import (
    DOCUMENTS,
    NO_BYTES,
    NotAFile,
    not_a_file,
    not_a_file_refusal,
    open_local_file,
)

_FS_CACHE: dict[str, tuple[Any, Any, str]] = {}
_FS_LOCK = threading.Lock()
#: Held while a member of an archive other than zip is read: fsspec's tar (and libarchive)
#: file systems read every member through one shared file position, so two threads reading
#: at once (a worker's task threads, its decoding pool) get each other's bytes. zipfile
#: locks its own shared file.
_ARCHIVE_READ_LOCK = threading.RLock()

#: The name that :meth:`Location.writable_probe`'s object, written and deleted at a store's
#: root, begins with; each probe adds ``-`` and a fresh UUID's 32 hex digits, so that runs
#: probing one store at once (two writing variables into one group) never delete or find
#: each other's object (one shared name had failed a run: "... is still there after it was
#: deleted", the other run's probe).
WRITE_PROBE = ".pipeline-write-probe"
_PROBE_NAME = re.compile(re.escape(WRITE_PROBE) + r"(?:-[0-9a-f]{32})?")


def is_write_probe(name: str) -> bool:
    """Whether ``name`` (a key relative to a store's root) is a write probe's object, this
    release's (:data:`WRITE_PROBE`, ``-`` and 32 hex digits) or an older one's (the bare
    name), left where its run stopped mid-probe or still in flight."""
    return _PROBE_NAME.fullmatch(name) is not None


#: Files that operating systems and file managers write into any folder a user browses, and
#: that no Zarr reader reads, by name: ``.DS_Store`` (macOS Finder's view settings),
#: ``Thumbs.db`` (Windows Explorer's thumbnail cache), ``desktop.ini`` (Windows Explorer's
#: folder settings) and ``.directory`` (KDE's Dolphin and Konqueror); and, by prefix,
#: ``._NAME`` (AppleDouble files: macOS writes one beside each file it copies to a volume that
#: keeps no extended attributes, such as FAT, exFAT, SMB and NFS shares, and tar/zip of its
#: files hold them). Where they are says nothing about who wrote a store or whether it is
#: whole: the checks that an output or input is this pipeline's, complete, unchanged or
#: alone in its folder pass them by (:func:`is_os_file`); ``--overwrite`` deletes them with
#: the output they are in.
OS_FILES = frozenset((".DS_Store", "Thumbs.db", "desktop.ini", ".directory"))

#: The prefix of AppleDouble files (see :data:`OS_FILES`).
APPLE_DOUBLE_PREFIX = "._"


def is_os_file(key: str) -> bool:
    """Whether the last part of ``key`` (a name, or a key or path with ``/`` between its
    parts) names a file of :data:`OS_FILES`, or an AppleDouble file (``._NAME``). By the
    name alone: ``key`` must be known to be a file's (a key of a file listing, such as
    :meth:`Location.file_sizes` gives); a name from a listing of one folder, which may be a
    folder's (a Zarr array or group named ``._x``, a legal node name), is judged by
    :meth:`Location.entries`, which keeps folders."""
    name = key.rstrip("/").rpartition("/")[2]
    return name in OS_FILES or (
        name.startswith(APPLE_DOUBLE_PREFIX) and len(name) > len(APPLE_DOUBLE_PREFIX)
    )


def _without_localhost(path: str) -> str:
    """The path of a ``file://`` URL without its scheme: ``localhost/tmp/x`` is ``/tmp/x``
    (RFC 8089: the host ``localhost`` is this machine, in any case; fsspec read it as a
    relative folder ``localhost``, and an output went to ``./localhost/tmp/x``: helper-41)."""
    host, slash, rest = path.partition("/")
    return (slash + rest or "/") if host.lower() == "localhost" else path


def _is_tar(path: str) -> bool:
    """Whether the file at ``path`` is a tar archive (plain, or gzip/bz2/xz compressed)."""
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _asking(action: str) -> Callable[[_Method], _Method]:
    """A method of :class:`Location` whose first argument is a key, whose failure, where it
    is a store's answer, carries the store, the key and ``action`` (:func:`mark_asked`):
    s3fs's ``PermissionError: Forbidden`` names no key, and a refusal that no step named
    had been 'a store answered PermissionError ...' where both stores were on S3."""

    def wrap(method: _Method) -> _Method:
        @functools.wraps(method)
        def asked(self: Location, key: Any = "", *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, key, *args, **kwargs)
            except Exception as e:
                if not self.is_local and isinstance(key, str):
                    mark_asked(e, self.url, key, action)
                raise

        return cast(_Method, asked)

    return wrap


@dataclass(frozen=True)
class Location:
    """A store: a local path or an fsspec URL (chained URLs such as ``zip::file:///a.zip`` or
    ``zip::s3://bucket/x.zip`` too; none through fsspec's caching layers, which
    :meth:`of` refuses), with its file system's options.

    Keys are store keys (``arr/c/0/1``), taken literally on every file system: ``[``, ``*``,
    ``?`` and spaces are characters of a name, never a pattern. Remote keys are joined onto the
    root path of the URL's file system (``fsspec.url_to_fs``), which is also the root of the
    Zarr store :meth:`zarr_store` gives, so the raw reader and Zarr read the same objects.
    """

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False)
    setting: str = field(default="", compare=False)
    """The config section that names the store ('input', 'output'), for the lines about its
    ``storage_options`` (:func:`options_problem`); '' where none does."""
    reached: str = field(default="", compare=False, repr=False)
    """Where a local store's files are reached in place of :attr:`url`, which lines still
    say: the ``/proc/self/fd`` name of its root folder held open (:meth:`Folder.location`),
    which names that folder wherever it is moved; '' (every store made otherwise): by
    :attr:`url`. No part of what the store is (equality, hash, repr)."""

    @classmethod
    def of(
        cls, url: str, storage_options: dict[str, Any] | None = None, setting: str = ""
    ) -> Location:
        """``url``: a path, ``file://`` or ``local://`` URL (all read as local files: a
        ``local://`` store had passed as remote, and the checks that keep the input and the
        output apart, which compare local paths, let it through), or any fsspec URL;
        ``storage_options`` are the file system's options (s3fs: endpoint_url, key, secret...).
        A URL carrying credentials its file system does not take from a URL
        (``s3://KEY:SECRET@bucket/``: :func:`url_userinfo_problem`) is a StoreError that
        names storage_options and never the credentials. A file URL that names a host other
        than ``localhost`` (``file://HOST/path``) is a
        StoreError (:func:`file_url_problem`), as is an HTTP(S) URL with a query
        (:func:`url_query_problem`: its parameters go in ``storage_options``' ``params``) or
        a fragment, one read through one of fsspec's caching layers
        (:func:`caching_layer_problem`), and ``storage_options`` with a key naming a file
        system the URL does not chain (:func:`misplaced_options_problem`).
        A local path that is a zip file is read as the zip store it holds
        (``zip::file://PATH``), and one that is a tar file as its tar store
        (``tar::file://PATH``); a relative local path at the end of a chained URL is made
        absolute, so every process opens the same file. ``setting``: the config section that
        names the store ('input' or 'output'), which a line about its storage_options names.
        """
        problem = url_userinfo_problem(url)  # never the credentials
        if problem is not None:
            raise StoreError(problem, store=without_userinfo(url))
        problem = caching_layer_problem(url) or url_query_problem(url)  # no query's values
        if problem is None:
            problem = misplaced_options_problem(url, storage_options or {})
        if problem is not None:
            raise StoreError(problem, store=without_query(url))
        problem = file_url_problem(url)
        if problem is not None:
            raise StoreError(f"{name_shown(url)}: {problem}", store=url)
        for scheme in LOCAL_SCHEMES:  # fsspec's local file system, by either of its names
            if url.startswith(scheme):
                url = _without_localhost(url[len(scheme) :])
        if _chained(url):
            *outer, inner = url.split("::")
            for scheme in LOCAL_SCHEMES:
                if inner.startswith(scheme):
                    inner = "file://" + _without_localhost(inner[len(scheme) :])
            if "://" not in inner or inner.startswith("file://"):
                inner = "file://" + _absolute(inner.removeprefix("file://"))
            url = "::".join([*outer, inner])
        elif "://" not in url:
            url = _absolute(url)
            if os.path.isfile(url) and zipfile.is_zipfile(url):
                url = f"zip::file://{url}"
            elif os.path.isfile(url) and _is_tar(url):  # helper-40: "no Zarr array at"
                url = f"tar::file://{url}"
        return cls(url, dict(storage_options or {}), setting)

    @property
    def protocol(self) -> str:
        """'file' for local paths, else the scheme of the outermost file system ('s3',
        'memory', 'zip', ...)."""
        return "file" if self.is_local else _outer_protocol(self.url)

    @property
    def is_local(self) -> bool:
        return "://" not in self.url and not _chained(self.url)

    @property
    def local_root(self) -> str | None:
        """The local path the store's bytes are under: the store's own path, or the
        ``file://`` path at the end of a chained URL (an archive);
        None for a store that is not on this machine's file system."""
        if self.is_local:
            return self.url
        inner = self.url.rsplit("::", 1)[-1] if _chained(self.url) else ""
        return inner.removeprefix("file://") if inner.startswith("file://") else None

    def __str__(self) -> str:
        return public_url(self.url)

    def __repr__(self) -> str:
        """The URL with its password masked and every value of ``storage_options`` hidden
        (:func:`~pipeline.errors.hidden_options`): a plan, an array's info and a ledger hold a
        Location, and their ``repr`` (a notebook's display) had shown the key and secret."""
        shown = hidden_options(self.storage_options)
        return f"Location(url={hide_url_secrets(self.url)!r}, storage_options={shown!r})"

    def real(self) -> Location:
        """This store with the symbolic links of its local path (its own, or the file at the
        end of a chained URL) resolved on this machine's file system, as ``os.path.realpath``
        resolves them (``..`` and ``//`` too); itself where it has no local path. Two names
        of one store, a link to it or to a folder above it, give the same URL."""
        root = self.local_root
        if root is None:
            return self
        real = os.path.realpath(root)
        url = real if self.is_local else self.url[: len(self.url) - len(root)] + real
        return dataclasses.replace(self, url=url)

    def said(self, *parts: str) -> str:
        """:meth:`join` as lines and records say it: with a password in the URL masked
        (:func:`~pipeline.errors.public_url`: ``http://user:***@host/...``)."""
        return public_url(self.join(*parts))

    def shown(self, *parts: str) -> str:
        """:meth:`said` as a message's line says it: quoted as Python writes it where a part
        holds a line break or another control character (:func:`~pipeline.errors.name_shown`),
        so that an array or group named so keeps the line one."""
        return name_shown(self.said(*parts))

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
        if self.url.endswith("://"):  # the file system's root: reference://, memory://
            return self.url + tail
        return f"{self.url.rstrip('/')}/{tail}"

    def parent(self) -> tuple[Location, str] | None:
        """The folder that holds the store's root, as a Location (same storage options), and
        the root's name in it; None where the store has no such folder (a chained URL: an
        archive, a cache; a file system's root; a relative local path's folder)."""
        if self.is_local:
            parent, name = os.path.split(self.url.rstrip("/"))
            if not (name and parent):
                return None
            if self.reached:  # the folder above the one held, wherever that is now
                return dataclasses.replace(Location.of(parent), reached=f"{self.reached}/.."), name
            return Location.of(parent), name
        if "::" in self.url or "://" not in self.url:
            return None
        scheme, _, rest = self.url.partition("://")
        parent, _, name = rest.rstrip("/").rpartition("/")
        if not parent or not name:
            return None
        return Location.of(f"{scheme}://{parent}", self.storage_options, self.setting), name

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
        FileNotFoundError when what holds the store, such as a zip file, is absent), and
        ConfigError when its ``storage_options`` hold what its file system would refuse or
        misread, as a config's check says it (:func:`storage_option_error`), make none
        (:func:`options_problem`) or, once
        they make one, in a process that is no Dask worker, name an ``endpoint_url`` where
        nothing listens
        (:func:`endpoint_refused`: botocore retries a connection refused on every request,
        with growing pauses, so the first steps said it after 10 to 20 s; a worker, whose
        plan found the endpoint listening, keeps those retries for a server restarting)."""
        key = json.dumps([self.url, self.storage_options], sort_keys=True, default=str)
        stamp = self.archive_stamp()
        with _FS_LOCK:
            got = _FS_CACHE.get(key)
            if got is None or got[0] != stamp:
                problem = storage_option_error(self.url, self.storage_options, self.setting)
                if problem is not None:  # the config's own check, for a store made otherwise
                    raise problem
                options = {"use_listings_cache": False, **self.storage_options}
                if stamp is not None:  # fsspec keeps one instance per URL otherwise
                    options["skip_instance_cache"] = True
                opened = _open_fs(self.url, options, self.setting)  # sends nothing
                # nothing listening: said at once, after the options (which say their own
                # fault without the network: an option s3fs does not take is said first)
                if key not in _FS_CACHE and not _in_worker():
                    refused = endpoint_refused(self.url, self.storage_options, self.setting)
                    if refused is not None:
                        raise refused
                got = (stamp, *opened)
                _FS_CACHE[key] = got
        return got[1], got[2]

    def archive_stamp(self) -> tuple[int, int, int, int] | None:
        """(inode, size, mtime, ctime; nanoseconds) of a local file holding an archive store
        (a zip or tar); None otherwise: it changes when the file is replaced or written."""
        inner = self.url.rsplit("::", 1)[-1]
        if "::" not in self.url or not inner.startswith("file://") or self.archive() is None:
            return None
        try:
            st = os.stat(inner.removeprefix("file://"))
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def _path(self, key: str) -> str:
        """Where ``key`` is: a local path, or a path of the URL's file system. Raises
        StoreError (fields ``store``, ``key``) for a key an HTTP URL cannot name as it is
        (:func:`url_unsafe`)."""
        if self.is_local:
            return self.join(key) if not self.reached else _below(self.reached, key)
        self.check_url_safe(key)
        return key_under(self._resolve()[1], key)

    def _key_of(self, path: str) -> str:
        """The store key of ``path``, a path of the store's file system under its root (as
        :meth:`_path` makes it); ``path`` itself where it is not under it."""
        root = self._resolve()[1].rstrip("/")
        if not root:
            return path.strip("/")
        return path[len(root) :].strip("/") if path.startswith(root + "/") else path

    def check_url_safe(self, key: str) -> None:
        """Raise StoreError (fields ``store``, ``key``) where this store is reached over HTTP
        and ``key`` (a key, or an array's path) holds what a URL reads otherwise than as a
        name (:func:`url_unsafe`): the pipeline, zarr-python and xarray would all ask for
        another URL (xarray read such a variable as its fill value, 2026-12-02)."""
        if self.is_local or not _over_http(self.url):
            return
        unsafe = url_unsafe(key)
        if unsafe is not None:
            raise StoreError(
                f"the name {key!r} in {self.url} holds {unsafe}, so it cannot be read over "
                "HTTP as named (zarr-python and xarray would ask for another URL too): copy "
                "the store to a local folder, or rename the array or coordinate whose name "
                "holds it",
                store=self.url,
                key=key,
            )

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
        reader uses (:meth:`read`), with deletes that take keys literally; a local folder's
        reads never wait on a key that is no file
        (:class:`~pipeline.store.local_zarr.NonBlockingLocalStore`)."""
        if self.is_local:  # its reads never wait on a key that is no file (a named pipe)
            from pipeline.store.local_zarr import NonBlockingLocalStore

            return NonBlockingLocalStore(self.reached or self.url, read_only=read_only)
        self._resolve()  # storage_options that make no file system: ConfigError, as for reads
        options = {"use_listings_cache": False, **self.storage_options, "asynchronous": True}
        if self.archive_stamp() is not None:  # a fresh look at a zip that may be replaced
            options["skip_instance_cache"] = True
        fs, root = _open_fs(self.url, options, self.setting)
        if not fs.async_impl:
            fs = _async_wrapped(fs)
        return _literal_store_class()(fs=fs, path=root, read_only=read_only)

    @contextlib.contextmanager
    def asking(self, key: str, action: str) -> Iterator[None]:
        """Mark a store's answer raised inside (a request Zarr makes through
        :meth:`zarr_store`, which names no key) with this store, ``key`` and ``action``
        (:func:`~pipeline.errors.mark_asked`), as this class's own requests are."""
        try:
            yield
        except Exception as e:
            if not self.is_local:
                mark_asked(e, self.url, key, action)
            raise

    # -- raw bytes -------------------------------------------------------------------------

    @_asking("read")
    def read(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or None when there are none (no such key, or a
        directory there: :data:`NO_BYTES`, as zarr-python reads it)."""
        path = self._path(key)
        if self.is_local:
            try:
                with open_local_file(path) as f:
                    return f.read()
            except NotAFile as e:
                raise not_a_file_refusal(self.url, key, path, e.kind) from None
            except (*NO_BYTES, OSError) as e:
                failed: OSError = e
            self._refuse_link(key, path, failed)
            return None
        fs = self.fs()
        try:
            with _one_reader(fs):
                return fs.cat_file(path)
        except NO_BYTES:
            return None

    def _refuse_link(self, key: str, path: str, error: OSError) -> None:
        """After the local read of ``key`` (at ``path``) failed with ``error``: raise
        StoreError (:func:`link_refusal`) where the key, or a folder on its way below the
        store's root, is a symbolic link whose target does not exist (a git-annex or DataLad
        dataset whose content was never fetched: zarr-python reads such a chunk as the fill
        value, and a run had reported an all-fill output ``complete``); return where the key
        holds no bytes (:data:`NO_BYTES`: read as missing); re-raise ``error`` otherwise.
        A few ``lstat`` calls, on this failure path alone."""
        if isinstance(error, FileNotFoundError | NotADirectoryError):
            link = dangling_link_on(path, self.join(""))
            if link is not None:
                raise link_refusal(self.url, key, *link)
            return
        if isinstance(error, NO_BYTES):  # a loop of links (ELOOP) is raised as it is: its
            # one line says to mend or remove the link (errors.storage_fix)
            return
        raise error

    def read_small(self, keys: Sequence[str], batch: int = 64) -> dict[str, bytes | None] | None:
        """The bytes under each of ``keys``, small files read whole (metadata documents), or
        None for one that is absent or cannot be read (a folder, HTTP 403, a name a URL reads
        otherwise: whatever reads it next says why): of a store whose file system is
        asynchronous (s3, gcs, http), ``batch`` at a time on its event loop, each one request
        (:func:`whole_read_options`). None where the store's file system is not asynchronous
        (a local folder, an archive): the caller reads them one by one (:meth:`read`)."""
        if self.is_local or self.archive() is not None:
            return None
        fs = self.fs()
        if not getattr(fs, "async_impl", False) or getattr(fs, "asynchronous", False):
            return None
        from fsspec.asyn import sync

        options = whole_read_options(fs)

        async def one(key: str) -> bytes | None:
            try:
                return bytes(await fs._cat_file(self._path(key), **options))
            except Exception:  # absent, a folder, refused: the reader that follows says so
                return None

        async def all_of() -> list[bytes | None]:
            got: list[bytes | None] = []
            for i in range(0, len(keys), batch):
                got += await asyncio.gather(*(one(k) for k in keys[i : i + batch]))
            return got

        return dict(zip(keys, sync(fs.loop, all_of), strict=True))

    def read_into(self, key: str, alloc: Callable[[int], memoryview]) -> memoryview | None:
        """Read ``key`` into a buffer that ``alloc(size)`` returns (e.g. page-locked memory,
        reused across calls); the filled view, or None when the key is absent (as for
        :meth:`read`)."""
        if self.is_local:
            path = self._path(key)
            try:
                return _read_file_into(path, alloc)
            except NotAFile as e:
                raise not_a_file_refusal(self.url, key, path, e.kind) from None
            except OSError as e:
                failed: OSError = e
            self._refuse_link(key, path, failed)
            return None
        data = self.read(key)
        if data is None:
            return None
        view = alloc(len(data))[: len(data)]
        view[:] = data
        return view

    @_asking("look up")
    def size(self, key: str) -> int | None:
        """Bytes stored under ``key``, or None when there are none."""
        path = self._path(key)
        try:
            return os.path.getsize(path) if self.is_local else int(self.fs().size(path))
        except FileNotFoundError as e:
            failed = e
        if self.is_local:
            self._refuse_link(key, path, failed)
        return None

    @_asking("write")
    def write(self, key: str, parts: Sequence[Any], atomic: bool = False) -> int:
        """Store the concatenation of ``parts`` (bytes-like) under ``key``; bytes written.

        A write that fails leaves no partial file; a full disk (or quota) is a StoreError.
        ``atomic``: the key appears only once all its bytes are there (local files: written
        under a hidden name, then renamed; objects in a store appear whole anyway)."""
        path = self._path(key)
        try:
            if self.is_local:
                _write_file(path, parts, atomic)
            else:
                self.fs().pipe_file(path, b"".join(bytes(memoryview(p)) for p in parts))
        except OSError as e:
            full = disk_full(e, self._as_said(path))
            if full is not None:
                raise full from None
            raise
        return sum(memoryview(p).nbytes for p in parts)

    @_asking("write")
    def write_new(self, key: str, parts: Sequence[Any]) -> int | None:
        """:meth:`write`, made only where no object is under ``key`` (S3: a conditional PUT,
        If-None-Match: \\*, atomic in the store): bytes written, or None where one was there,
        or another write of it was under way (nothing written then). A writer whose lock
        another took meanwhile (S3 has no write conditional on another object) can so never
        write over what that one wrote (h83f). On a store without that condition (no S3, or
        an S3-compatible one answering 501) a plain :meth:`write`."""
        if self._s3() is None or self.url in _UNCONDITIONAL:
            return self.write(key, parts)
        data = b"".join(bytes(memoryview(p)) for p in parts)
        try:
            self.fs().pipe_file(self._path(key), data, mode="create")
        except FileExistsError:
            return None
        except OSError as e:
            if _error_code(e) in ("ConditionalRequestConflict", "409"):
                return None
            if _error_code(e) not in _NO_CONDITIONS:
                raise
            _UNCONDITIONAL.add(self.url)
            return self.write(key, parts)
        return len(data)

    def _as_said(self, path: str) -> str:
        """The local ``path`` (:meth:`_path`'s) as lines say it: by :attr:`url`, never by
        the ``/proc/self/fd`` name it is :attr:`reached` by."""
        if self.reached and (path == self.reached or path.startswith(self.reached + "/")):
            return self.url + path[len(self.reached) :]
        return path

    @contextlib.contextmanager
    def folder(self, key: str) -> Iterator[Folder | None]:
        """The local folder at ``key`` (an array's, '' the store's root) held open while
        inside (:class:`Folder`); None for a store that is no local folder, or where no
        folder is at ``key`` (nothing, a file)."""
        if not self.is_local:
            yield None
            return
        path = self.join(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            yield None
            return
        try:
            yield Folder(fd, path)
        except BaseException as e:
            said_by_path(e, f"/proc/self/fd/{fd}", path)
            raise
        finally:
            os.close(fd)

    @_asking("look up")
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
        path = key_under(root, key)
        try:
            if fs.exists(path):
                return True
        except OSError as e:
            # the store's own name, a prefix with no object at it, refused to credentials
            # granted only the keys under it (S3: s3:GetObject on bucket/out.zarr/*, which a
            # HEAD of bucket/out.zarr is not; s3fs asks that before it lists): what is under
            # it says, by a listing inside the grant, and a refused listing the HEAD's answer
            listed = None if key or not refused_access(e) else self._lists_under(fs, path)
            if listed is None:
                raise
            return listed
        if key:
            return False
        # the store itself: some file systems answer no for their root though they list what
        # is in it (reference://, whose root '' holds its keys: F1 refused such an input as
        # "does not exist", which zarr-python opens)
        try:
            return bool(fs.ls(path, detail=False))
        except Exception:  # one that lists nothing, or refuses to (HTTP 403): not a yes
            return False

    @staticmethod
    def _lists_under(fs: Any, path: str) -> bool | None:
        """Whether a listing of the keys under ``path`` (its prefix ``path/``, not a folder
        above it) names any; None where that listing is refused too."""
        try:
            return bool(fs.ls(path.rstrip("/") + "/", detail=False))
        except FileNotFoundError:
            return False
        except Exception:  # refused as well: the caller's own answer stands
            return None

    def is_object(self, key: str = "") -> bool:
        """Whether ``key`` ('' for the store itself) is one stored object (a file) and no
        folder of keys besides, in a store that is not a local folder (an object store can
        hold both at one name); False where that cannot be asked."""
        if self.is_local:
            return False
        try:
            fs, root = self._resolve()
            path = key_under(root, key)
            return bool(fs.isfile(path)) and not fs.isdir(path)
        except Exception:  # a store that cannot tell: what is there is judged later
            return False

    def delete(self, key: str, recursive: bool = False) -> None:
        """Delete ``key``, and with ``recursive`` everything under it; nothing there is fine.

        Raises OutputError (``output``: this store, ``path``: the first file or folder that
        stays) when something cannot be deleted, once everything else is gone: a replaced
        output that kept some of its old files, or a run record that kept old markers, would
        pass for what it is not."""
        path = self._path(key)
        try:
            if not self.is_local:
                _remove_literally(self.fs(), path, recursive)
            elif os.path.isdir(path) and not os.path.islink(path):
                _remove_local_tree(path)
            elif os.path.lexists(path):
                os.remove(path)
        except FileNotFoundError:  # gone meanwhile
            return
        except OSError as e:
            raise self._undeleted(e, key, path) from None

    def delete_files(self, keys: Sequence[str], folders: Sequence[str] = ()) -> None:
        """Delete each of ``keys``, files (objects) alone, never a folder; one that is not
        there is fine. On an object store concurrently (one DELETE each, as a recursive
        :meth:`delete` deletes what it lists), every one tried whatever another's answered.
        Then each of ``folders`` (keys, deepest first) where it is left empty, on a store
        that has folders of its own (a local one, ``memory://``; S3 has none: a prefix whose
        keys are gone is gone). What deletes a set of keys under a folder that may hold
        others' files too, which stay: the run record's own on an object store
        (:meth:`pipeline.store.ledger.Ledger.clear`), where a recursive delete had deleted
        a user's objects with them (h85b).

        Raises OutputError as :meth:`delete` does, naming the first key that stays."""
        if self.is_local:
            for key in keys:
                self.delete(key)
        elif keys:
            paths = [self._path(k) for k in keys]
            try:
                _remove_files(self.fs(), paths)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise self._undeleted(e, keys[0], paths[0]) from None
        if self.versions_tagged:
            return
        for folder in folders:
            path = self._path(folder)
            with contextlib.suppress(OSError, NotImplementedError):  # not empty, or gone
                if self.is_local:
                    os.rmdir(path)
                elif not self.fs().ls(path, detail=False):
                    self.fs().rmdir(path)

    def _undeleted(self, e: OSError, key: str, path: str) -> OutputError:
        """The refusal of :meth:`delete` of ``key`` (at ``path``), which the store or the
        file system answered with ``e``."""
        where = self._as_said(e.filename if isinstance(e.filename, str) else path)
        failure = storage_failure(e) if not self.is_local else None
        if failure is not None:  # a store's answer (S3: no s3:DeleteObject), not a file's:
            # "write permission on its folder, no immutable attribute" had been said (h65f)
            where = getattr(e, _UNDELETED, where)  # the object it refused, not its folder
            said = self.join(self._key_of(where) if where != path else key)
            # a recursive delete lists first: a refused listing is no refused delete
            what = (
                f"list {self.shown(key)} to delete it"
                if s3_action(e) == "list"
                else (f"delete {said}")
            )
            return OutputError(
                f"cannot {what} ({failure}): "
                f"{self.answer_fix(failure, side='output')}, or delete it yourself",
                output=self.url,
                path=where,
                reason=failure,
            )
        return OutputError(
            f"cannot delete {name_shown(where)} ({type(e).__name__}: {e.strerror or e}): make "
            "it "
            "deletable (write permission on its folder, no immutable attribute) or delete "
            "it yourself",
            output=self.url,
            path=where,
        )

    def file_sizes(self, key: str) -> dict[str, int]:
        """The size of every file (object) under ``key``, by its store key: one walk of the
        folder, or one listing of an object store (no reads)."""
        return {k: size for k, (size, _) in self.file_sizes_and_times(key).items()}

    @_asking("list")
    def file_sizes_and_times(self, key: str) -> dict[str, tuple[int, float | None]]:
        """The size (bytes) and the last modification time of every file (object) under
        ``key``, by its store key, from one walk of the folder or one listing of an object
        store (no reads): a local file's ``st_mtime_ns`` (nanoseconds), an object's
        ``LastModified`` (S3; seconds since the epoch, to its second) or what else the
        listing gives (:func:`modified_time`), None where it gives none. Times compare
        between files of one store only."""
        base = key.strip("/")
        found: dict[str, tuple[int, float | None]] = {}
        if self.is_local:
            root = self.join(base)
            for path, sub in local_files(root):
                with contextlib.suppress(FileNotFoundError):  # gone meanwhile, or a dangling link
                    st = os.stat(path)
                    found[f"{base}/{sub}" if base else sub] = (st.st_size, st.st_mtime_ns)
            return found
        top = self._path(base).rstrip("/")
        try:
            with self._listing_of(top):
                listed = self.fs().find(top, detail=True)
        except FileNotFoundError:
            return found
        for name, d in listed.items():
            rel = name[len(top) :].lstrip("/") if name.startswith(top) else name
            found[f"{base}/{rel}" if base else rel] = (int(d.get("size") or 0), modified_time(d))
        return found

    @_asking("list")
    def stamped_files(self, key: str) -> dict[str, dict[str, Any]]:
        """Every file (object) under ``key`` of a store that is not a local folder, by its
        path on the file system, with what its listing says and ``stamp``: what changes when
        the file is rewritten (:func:`change_stamp`), or None where the store gives nothing
        that does. {} where nothing is listed there (an HTTP server that answers 404 to a
        folder's URL). Raises ListingError where the server refuses the listing (an HTTP 4xx
        other than 404); :meth:`stamped_keys` stamps keys known otherwise.

        Files the listing gives no stamp for are asked one by one (``info``: for HTTP a HEAD
        request, which gives ETag or Last-Modified where the server sends them, and the size).
        A key of a reference file system (kerchunk, ``reference://``) is stamped by what it
        points at: its inline bytes' digest, or the referenced range with the target file's
        own stamp (a local target's size, modification and status-change times), since
        rewriting the target changes the key's bytes and nothing in the references."""
        fs = self.fs()
        try:
            with self._listing_of(self._path(key)):
                found = fs.find(self._path(key), detail=True)
        except FileNotFoundError:
            return {}
        files = {name: {**d, "stamp": change_stamp(d)} for name, d in found.items()}
        refs = _reference_fs(fs)
        if refs is not None:
            targets: dict[str, str | None] = {}
            for name, d in files.items():
                d["stamp"] = _reference_stamp(refs, name, targets)
            return files
        unstamped = [name for name, d in files.items() if d["stamp"] is None]
        for name, info in _infos(fs, unstamped).items():
            stamp = change_stamp(info)
            if stamp is not None:
                files[name] = {**files[name], "size": info.get("size"), "stamp": stamp}
        return files

    def stamped_keys(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What :meth:`stamped_files` gives, for the store keys ``keys`` (known without a
        listing: those an array's metadata implies) of a store that is not a local folder: by
        path on the file system, the keys that are there, each with ``size`` and ``stamp``
        (:func:`change_stamp`; None where the store gives none) from ``info`` (for HTTP a
        HEAD request each, 64 at a time). A key the store says is not there (no such file,
        HTTP 404 or 410) is left out, as a listing leaves it out; one whose ``info`` fails
        otherwise (HTTP 403, 500, a lost connection) is there with neither size nor stamp."""
        fs = self.fs()
        paths = [self._path(k) for k in keys]
        files: dict[str, dict[str, Any]] = {}
        for name, info in _asked_infos(fs, paths).items():
            if isinstance(info, BaseException):
                if _absent(info):
                    continue
                info = {}
            files[name] = {"size": info.get("size"), "stamp": change_stamp(info)}
        return files

    def path_of(self, key: str) -> str:
        """The name by which :meth:`stamped_files` and :meth:`stamped_keys` give ``key``: its
        path on the store's file system (a local path for a local store)."""
        return self._path(key)

    @contextlib.contextmanager
    def _listing_of(self, folder: str) -> Iterator[None]:
        """Turn a server's refusal to list ``folder`` into a ListingError naming this store
        (:func:`listing_error`)."""
        try:
            yield
        except Exception as e:
            refused = listing_error(self.url, folder, e)
            if refused is None:
                raise
            raise refused from None

    @_asking("list")
    def list(self, key: str) -> list[str]:
        """Names directly under ``key`` (empty when it does not exist). Raises ListingError
        where the store's server refuses to list it (:meth:`_listing_of`)."""
        path = self._path(key)
        if self.is_local:
            try:
                return sorted(os.listdir(path))
            except FileNotFoundError:
                return []
        fs = self.fs()
        try:
            with self._listing_of(path):
                listed = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in listed)

    @_asking("list")
    def tagged_list(self, key: str) -> dict[str, str | None]:
        """The names directly under ``key`` (:meth:`list`'s), each with the tag of its
        version as the listing gives it (S3's ETag, unquoted: one LIST request per 1000
        names), None where the store gives none (a local folder, another fsspec store).
        Raises ListingError as :meth:`list` does."""
        if not self.versions_tagged:
            return dict.fromkeys(self.list(key))
        path = self._path(key)
        try:
            with self._listing_of(path):
                listed = self.fs().ls(path, detail=True)
        except FileNotFoundError:
            return {}
        tags: dict[str, str | None] = {}
        for d in listed:
            tag = d.get("ETag") if d.get("type") != "directory" else None
            name = str(d["name"]).rstrip("/").rsplit("/", 1)[-1]
            tags[name] = str(tag).strip('"') if tag else None
        return tags

    def entries(self, key: str) -> builtins.list[str]:
        """The names directly under ``key`` that are no files an operating system wrote there
        (:func:`is_os_file`: ``.DS_Store``, ``Thumbs.db``, an AppleDouble ``._NAME``) nor a
        write probe's object (:func:`is_write_probe`: another run's, probing the same store
        at once, had made a group look occupied for that moment), sorted,
        as :meth:`list` gives them otherwise (empty when ``key`` does not exist): how the
        checks of what an output, an input or a group holds list a folder. A name of that
        kind that is a folder (a local directory; a prefix of an object store, with or
        without an object at the same name), such as a Zarr array or group named ``._x``, is
        kept: such files are files, and a node of that name had been passed by as one. Only
        such names are asked about (one ``isdir`` each). Raises ListingError as
        :meth:`list` does."""
        names = self.list(key)
        if not any(is_os_file(n) or is_write_probe(n) for n in names):
            return names

        def is_folder(name: str) -> bool:
            at = f"{key.strip('/')}/{name}".lstrip("/")
            if self.is_local:
                return os.path.isdir(self._path(at))
            try:
                return bool(self.fs().isdir(self._path(at)))
            except Exception:  # gone meanwhile, or a server that will not say: a file, as
                return False  # its name says (what every listing had taken it for)

        return [n for n in names if not (is_os_file(n) or is_write_probe(n)) or is_folder(n)]

    @_asking("write")
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; False when it already did."""
        path = self._path(key)
        if self.is_local:
            folders_made(os.path.dirname(path))
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

    # -- compare-and-swap on one object (S3's If-Match), for lock objects ------------------

    def _s3(self) -> Any | None:
        """This location's s3fs file system where it is one (its conditional requests on an
        object's ETag, If-Match, are asked for through it), else None."""
        if self.is_local:
            return None
        fs = self.fs()
        return fs if callable(getattr(fs, "_call_s3", None)) else None

    @property
    def versions_tagged(self) -> bool:
        """Whether this store tags each version of an object (S3's ETag), as
        :meth:`read_tagged`, :meth:`tagged_list` and the conditional writes on a version
        (:meth:`replace_if`) use it."""
        return self._s3() is not None

    @_asking("read")
    def read_tagged(self, key: str) -> tuple[bytes, str | None] | None:
        """The bytes under ``key`` and the tag of that version of it, read in one request (on
        S3 its ETag, which :meth:`replace_if` and :meth:`delete_if` compare); the tag is None
        on a store that has no such conditions here (a local folder, gcs, memory). None
        where there is no such object."""
        fs = self._s3()
        if fs is None:
            data = self.read(key)
            return None if data is None else (data, None)
        from fsspec.asyn import sync

        bucket, name, _ = fs.split_path(self._path(key))

        async def get() -> tuple[bytes, str | None]:
            got = await fs._call_s3("get_object", Bucket=bucket, Key=name)
            body = got["Body"]
            try:
                data = await body.read()
            finally:
                body.close()
            return data, got.get("ETag")

        try:
            return sync(fs.loop, get)
        except NO_BYTES:
            return None

    @_asking("write")
    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        """Write ``data`` under ``key`` only if it still holds the version ``tag`` (as
        :meth:`read_tagged` gave it): S3's conditional PUT, If-Match, atomic in the store, so
        of processes that read one version and each replace it, one alone does. The new
        version's tag; None where it was not replaced (another version there, or none).
        Raises NotImplementedError on a store without such a condition (:meth:`read_tagged`
        gives no tag there), or an S3-compatible one that refuses it (501 NotImplemented)."""
        done = self._if_match("put_object", "writes", key, tag, Body=data)
        return None if done is None else str(done.get("ETag", "")) or None

    @_asking("delete")
    def delete_if(self, key: str, tag: str) -> bool:
        """Delete ``key`` only if it still holds the version ``tag`` (S3's conditional
        DELETE, If-Match); False where it holds another one or none. Raises
        NotImplementedError as :meth:`replace_if` does."""
        return self._if_match("delete_object", "deletes", key, tag) is not None

    def _if_match(self, request: str, what: str, key: str, tag: str, **params: Any) -> Any:
        """S3's ``request`` (``put_object``, ``delete_object``) of ``key`` with ``params``,
        made only where ``key`` still holds the version ``tag`` (If-Match): S3's answer, or
        None where it holds another version or none. NotImplementedError where the store has
        no such condition, or refuses it (``what``: 'writes', 'deletes', for its line)."""
        fs = self._s3()
        if fs is None:
            raise NotImplementedError(f"{self.url} has no conditional {what} on a version")
        path = self._path(key)
        bucket, name, _ = fs.split_path(path)
        try:
            return fs.call_s3(request, Bucket=bucket, Key=name, IfMatch=tag, **params)
        except OSError as e:
            if _condition_failed(e):
                return None
            if _error_code(e) in _NO_CONDITIONS:
                raise NotImplementedError(f"{self.url} refuses conditional {what}") from e
            raise
        finally:
            fs.invalidate_cache(path)

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
                archive=kind,
            )

    def answer_fix(self, failure: str, side: str = "") -> str:
        """What to do about this store's answer ``failure``
        (:func:`~pipeline.errors.storage_failure`), knowing where its URL and options are
        set and what they hold: nothing listening at ``storage_options``' endpoint_url
        (:func:`endpoint_fix`); a refusal of access fixed where its credentials are (a user
        and password in the URL, said as ``input.store``'s URL, rather than storage_options
        that hold none: :func:`_url_credentials`), with where a chain's options go
        (:func:`~pipeline.config.urls.chain_options_hint`); else
        :func:`~pipeline.errors.storage_fix` for the section (``setting``, or ``side`` where
        the location has none), or for "the store" where neither is known."""
        from pipeline.config.urls import chain_options_hint

        setting = self.setting or side
        side = setting or "input"
        named = f"{setting}.storage_options" if setting else "the store's storage_options"
        fix = endpoint_fix(self.storage_options, failure, side)
        if fix is None:
            fix = storage_fix(failure, side)
            refused = refused_credentials(failure)
            if _url_credentials(self.url) and (
                refused or failure.startswith(("HTTP 401", "HTTP 403", "PermissionError"))
            ):
                url = f"{setting}.store's URL" if setting else "the store's URL"
                where = f"the user and password in {url}"
                if option_credentials(self.storage_options):
                    where += f" or the credentials in {side}.storage_options"
                fix = (
                    f"correct {name_shown(where)}: the store refused them"
                    if refused or failure.startswith("HTTP 401")
                    else f"give access to it (its permissions, or {name_shown(where)})"
                )
            hint = chain_options_hint(self.url, self.storage_options)
            if hint is not None and failure.startswith(("HTTP 401", "HTTP 403")):
                fix = f"{fix}; {hint}"
        return fix.replace(f"{side}.storage_options", named).replace(
            f"{side}.store", f"{setting}.store" if setting else "the store's URL"
        )

    def answered(self, e: BaseException) -> bool:
        """Whether the failure ``e`` (or an error it came from) is this store's answer: a
        request to a URL under the store's (aiohttp's ``request_info``: the same scheme,
        host, port, and a path below the store's), or a local file under the store's
        folder (an ``OSError``'s ``filename``), or one this store's own method was refused
        (:func:`~pipeline.errors.asked_of`: its request marked with the store's URL)."""
        from urllib.parse import urlsplit

        here = self.url.rsplit("::", 1)[-1]
        mark = asked_of(e)
        if mark is not None and (mark[0] == self.url or mark[0].startswith(here.rstrip("/") + "/")):
            return True
        seen: list[BaseException] = []
        x: BaseException | None = e
        while x is not None and not any(x is y for y in seen):
            seen.append(x)
            asked = getattr(getattr(x, "request_info", None), "real_url", None)
            if asked is not None and "://" in here:
                try:
                    a, b = urlsplit(str(asked)), urlsplit(here)
                    same = (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
                except ValueError:
                    same = False
                if same and a.path.rstrip("/").startswith(b.path.rstrip("/")):
                    return True
            name = getattr(x, "filename", None) if isinstance(x, OSError) else None
            root = self.local_root
            if isinstance(name, str) and root is not None:
                root, name = os.path.realpath(root), os.path.realpath(name)
                if name == root or name.startswith(root.rstrip(os.sep) + os.sep):
                    return True
            x = x.__cause__ or x.__context__
        return False

    def writable_probe(self) -> None:
        """Raise OutputError when nothing can be written here (InputError for the input's
        store, which ``generate`` writes: ``setting`` 'input'). The probe object is gone
        afterwards, whether the probe succeeded or not."""
        self.refuse_archive()
        probe = f"{WRITE_PROBE}-{uuid.uuid4().hex}"
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
            raise self.write_refused(e) from None

    def write_refused(self, e: BaseException) -> PipelineError:
        """The error of a write into this store that it refused with ``e`` (the store's answer:
        a PermissionError, an HTTP 403), in one line naming the store, its answer and the
        fix (its permissions or credentials, or another store): OutputError (``output``), or
        InputError (``input``) for the input's store, which ``generate`` writes."""
        if self.setting == "input":
            return InputError(_unwritable(self, e), input=self.url)
        return OutputError(_unwritable(self, e), output=self.url)


def config_stores(config: Any) -> list[Location]:
    """The input's and the output's :class:`Location` of ``config`` (a Config; none for
    None, or where a store cannot be one: its own line says why elsewhere)."""
    stores = []
    for setting in ("input", "output"):
        section = getattr(config, setting, None)
        with contextlib.suppress(Exception):
            stores.append(Location.of(section.store, section.storage_options, setting))  # type: ignore[union-attr]
    return stores


def _url_credentials(url: str) -> bool:
    """Whether a part of ``url`` (alone or in a '::' chain) carries a user or password that
    its file system takes from the URL (HTTP(S), FTP, SFTP: ``http://user:pw@host/...``)."""
    from urllib.parse import urlsplit

    for bit in url.split("::"):
        if "://" not in bit:
            continue
        try:
            parts = urlsplit(bit)
            if parts.username is not None or parts.password is not None:
                return True
        except ValueError:
            continue
    return False


#: Options that carry credentials to a store, whatever their names say
#: (:func:`option_credentials`): s3fs's (its ``S3FileSystem``'s ``key``, ``secret``,
#: ``token``, their aliases ``username`` and ``password``, the aiobotocore ``session`` it is
#: given, which holds them, botocore's ``profile``), gcsfs's ``token``, FTP's, SFTP's and
#: SMB's ``username`` and ``password``, and the headers, query parameters and
#: authentication an HTTP file system sends, and a client's own options (``client_kwargs``:
#: botocore's ``aws_secret_access_key``, ...). ``username`` and ``password`` had been
#: missing: an FTP store's refusal of a password given in storage_options advised the
#: URL's user alone.
CREDENTIAL_OPTIONS = frozenset(
    {
        "key",
        "secret",
        "token",
        "username",
        "password",
        "session",
        "profile",
        "headers",
        "params",
        "auth",
        "client_kwargs",
    }
)


def option_credentials(options: Any) -> bool:
    """Whether ``options`` (a store's storage_options, a chain's under its protocols' names
    too) hold an option that carries credentials: one of :data:`CREDENTIAL_OPTIONS`, or one
    whose name says it holds one, as a summary masks it
    (:func:`~pipeline.errors.names_credential`: ``account_key``, ``sas_token``, ...)."""
    if not isinstance(options, dict):
        return False
    return any(
        k in CREDENTIAL_OPTIONS
        or names_credential(k)
        or (isinstance(v, dict) and option_credentials(v))
        for k, v in options.items()
    )


def _unwritable(location: Location, e: BaseException) -> str:
    """The line for the store ``location`` that refused the probe's write with ``e``: the
    output's, or the input's that ``generate`` writes (``location.setting`` 'input', whose
    line names input.store and input.storage_options). Credentials missing or refused are
    fixed where they are (the section's storage_options, or its URL:
    :meth:`Location.answer_fix`), a store that forbids writing by its permissions or another
    store, anything else by another store."""
    where = str(location)
    side = "input" if location.setting == "input" else "output"
    if missing_credentials(e):
        return (
            f"cannot write to the {side} store {name_shown(where)}: no credentials were found for "
            "it: "
            f"{CREDENTIALS_FIX}"
        )
    failure = storage_failure(e) or f"{type(e).__name__}: {e}"
    fix = location.answer_fix(failure, side=side)
    unreachable = endpoint_fix(location.storage_options, failure, side)
    if unreachable is not None:
        return f"cannot write to the {side} store {name_shown(where)} ({failure}): {unreachable}"
    if refused_credentials(failure):
        return f"cannot write to the {side} store {name_shown(where)} ({failure}): {fix}"
    request = refused_request(e, location)
    if request is not None and request[0] != "write":
        # the probe was written, and its look-up (a HEAD, a listing) refused: credentials that
        # may write the store but not read it back had been told "cannot write", "choose a
        # writable store"; a run reads what it writes (its record, its lock, verify)
        action, asked = request
        return (
            f"cannot {action} the {side} store {name_shown(where)}: it answered {failure} to "
            f"{asked}, "
            f"which it let be written: {fix}"
        )
    if failure.startswith(("HTTP 401", "HTTP 403", "PermissionError")):
        return (
            f"cannot write to the {side} store {name_shown(where)} ({failure}): {fix}, or choose a "
            f"writable {side}.store"
        )
    return (
        f"cannot write to the {side} store {name_shown(where)} ({failure}); choose a "
        f"writable {side}.store"
    )


#: What says a file was rewritten, in the details fsspec's file systems give of it (their
#: listings, ``info``), best first: ``CRC``, a zip member's checksum of its bytes; ``ETag``
#: and the rest, an object store's; ``Content-MD5``, ``Digest`` and ``Last-Modified``, the
#: headers of an HTTP server's answer to HEAD.
CHANGE_STAMPS = (
    "CRC",
    "ETag",
    "etag",
    "md5Hash",
    "LastModified",
    "mtime",
    "created",
    "Content-MD5",
    "Digest",
    "Last-Modified",
)


def modified_time(details: dict[str, Any]) -> float | None:
    """A file's last modification time in seconds since the epoch, from the details fsspec's
    file systems give of it (S3's ``LastModified``, a local or in-memory file system's
    ``mtime``, GCS's ``updated``: a datetime, a number or ISO 8601 text); None where they
    hold none or none that reads so."""
    import datetime as dt

    for k in ("LastModified", "mtime", "last_modified", "updated"):
        v = details.get(k)
        if isinstance(v, dt.datetime):
            return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).timestamp()
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str):
            with contextlib.suppress(ValueError):
                return modified_time({k: dt.datetime.fromisoformat(v)})
    return None


def change_stamp(details: dict[str, Any]) -> Any:
    """The first of :data:`CHANGE_STAMPS` that ``details`` (a file's, from a listing or
    ``info``) holds; None where it holds none."""
    return next((details[k] for k in CHANGE_STAMPS if details.get(k) is not None), None)


def _infos(fs: Any, names: Sequence[str], batch: int = 64) -> dict[str, dict[str, Any]]:
    """``fs.info`` of each of ``names`` ({} for one it cannot give: a server that refuses
    HEAD, a file gone meanwhile: no stamp, and the identity says it cannot see),
    :func:`_asked_infos`."""
    return {
        name: {} if isinstance(info, BaseException) else info
        for name, info in _asked_infos(fs, names, batch).items()
    }


def listing_error(
    store: str, folder: str, e: BaseException, alone: str = ""
) -> ListingError | None:
    """The ListingError for ``e`` when it is a server's refusal to list ``folder`` of the store
    ``store`` (an HTTP 4xx other than 404, which fsspec reads as no such folder, or a 501:
    a server without folder listings, such as nginx without ``autoindex``); None for any
    other error. ``alone``: a way to do without the listing, named first among the fixes."""
    failure = storage_failure(e)
    if failure is None or not re.match(r"HTTP (4\d\d|501)\b", failure):
        return None
    first = alone + ", or " if alone else ""
    copy = "or copy the store to a local folder or an object store"
    if failure.startswith("HTTP 401"):  # credentials: no listing setting of the server's
        said = (
            f"the server of {store} refuses to list the folder {name_shown(folder)} without "
            "credentials "
            f"({failure}), which the pipeline needs listed here: {first}give credentials that "
            "the server accepts (the store's storage_options: client_kwargs auth, or "
            f"headers), {copy}"
        )
    elif failure.startswith("HTTP 403"):  # no permission, or no listings (nginx answers 403)
        said = (
            f"the server of {store} forbids listing the folder {name_shown(folder)} ({failure}: no "
            "permission for it, or no folder listings, as nginx without autoindex answers), "
            f"which the pipeline needs listed here: {first}give access to it (its "
            "permissions, or credentials in the store's storage_options), or enable folder "
            f"listings on it (nginx: `autoindex on`), {copy}"
        )
    else:
        said = (
            f"the server of {store} refuses to list the folder {name_shown(folder)} ({failure}), "
            "which "
            f"the pipeline needs listed here: {first}enable folder listings on it (nginx: "
            f"`autoindex on`), {copy}"
        )
    return ListingError(said, store=store, folder=folder, failure=failure)


def _absent(error: BaseException) -> bool:
    """Whether ``error``, from a file system's ``info``, says there is no such file: a
    FileNotFoundError of its own, or over HTTP (where fsspec raises FileNotFoundError for any
    failure) one whose cause is a 404 or 410."""
    if not isinstance(error, FileNotFoundError):
        return False
    failure = storage_failure(error)
    return failure is None or failure.startswith(("HTTP 404", "HTTP 410"))


def whole_read_options(fs: Any) -> dict[str, Any]:
    """Keyword arguments of ``fs._cat_file`` that read a small file whole in one request:
    s3fs asks for an object's size first (a HEAD, then the GET: two round trips per metadata
    document; for an absent one a HEAD and a listing) so as to read a large one in parts on
    several connections (``max_concurrency``, 10 by default); ``max_concurrency=1`` reads it
    with one GET, an absent one a 404. {} for file systems without that option."""
    import inspect

    try:
        parameters = inspect.signature(fs._cat_file).parameters
    except (AttributeError, TypeError, ValueError):
        return {}
    return {"max_concurrency": 1} if "max_concurrency" in parameters else {}


def _asked_infos(
    fs: Any, names: Sequence[str], batch: int = 64
) -> dict[str, dict[str, Any] | BaseException]:
    """``fs.info`` of each of ``names``, or the error it raised, ``batch`` at a time on an
    asynchronous file system (HTTP: HEAD requests) or on as many threads otherwise."""
    if not names:
        return {}
    if getattr(fs, "async_impl", False) and not getattr(fs, "asynchronous", False):
        from fsspec.asyn import sync

        async def ask(name: str) -> dict[str, Any] | BaseException:
            try:
                return dict(await fs._info(name))
            except Exception as e:
                return e

        async def ask_all() -> list[dict[str, Any] | BaseException]:
            got: list[dict[str, Any] | BaseException] = []
            for i in range(0, len(names), batch):
                got += await asyncio.gather(*(ask(n) for n in names[i : i + batch]))
            return got

        return dict(zip(names, sync(fs.loop, ask_all), strict=True))

    def ask_sync(name: str) -> dict[str, Any] | BaseException:
        try:
            return dict(fs.info(name))
        except Exception as e:
            return e

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(batch, len(names))) as pool:
        return dict(zip(names, pool.map(ask_sync, names), strict=True))


def _reference_fs(fs: Any) -> Any:
    """The reference file system (kerchunk) ``fs`` is, or reads through (a chained file
    system over it; fsspec's caching layers are refused: :meth:`Location.of`); None where it
    is none."""
    from fsspec.implementations.chained import ChainedFileSystem
    from fsspec.implementations.reference import ReferenceFileSystem

    while isinstance(fs, ChainedFileSystem) and getattr(fs, "fs", None) is not None:
        fs = fs.fs
    return fs if isinstance(fs, ReferenceFileSystem) else None


def _reference_stamp(refs: Any, name: str, targets: dict[str, str | None]) -> str | None:
    """The stamp of the key ``name`` of the reference file system ``refs``: its inline bytes'
    digest, or the range it points at with its target's stamp (``targets``: those already
    taken, by URL); None where the target has none."""
    import hashlib

    try:
        part = refs.references[name]
    except KeyError:
        return None
    if isinstance(part, str):
        part = part.encode()
    if hasattr(part, "to_bytes"):
        part = part.to_bytes()
    if isinstance(part, bytes):
        return "inline:" + hashlib.sha256(part).hexdigest()[:16]
    url, *extent = part
    if url not in targets:
        targets[url] = _target_stamp(refs, url)
    stamp = targets[url]
    return None if stamp is None else f"{url}\0{extent}\0{stamp}"


def _target_stamp(refs: Any, url: str) -> str | None:
    """The stamp of the file ``url`` that keys of the reference file system ``refs`` point
    into: a local file's size, modification and status-change times (nanoseconds), or what
    its own file system's ``info`` gives (:func:`change_stamp`, with the size); 'missing'
    for a local file that is not there; None where nothing says it was rewritten."""
    from fsspec.core import split_protocol

    protocol, path = split_protocol(url)
    if protocol in (None, "file", "local"):
        try:
            st = os.stat(_without_localhost(path) if protocol else path)
        except OSError:
            return "missing"
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    target = refs.fss.get(protocol)
    if target is None:
        return None
    info = _infos(target, [url]).get(url, {})
    stamp = change_stamp(info)
    return None if stamp is None else f"{info.get('size')}:{stamp}"


def _async_wrapped(fs: Any) -> Any:
    """A synchronous file system as the asynchronous one Zarr's store needs (fsspec's
    ``AsyncFileSystemWrapper``, which runs each call on a thread of its own). Where the file
    system's members share one file position (:func:`_one_reader`), its reads hold
    :data:`_ARCHIVE_READ_LOCK`: Zarr reads a region's chunks at once, and got each other's
    bytes (every read of a 200-chunk array in a tar archive came back wrong)."""
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper, async_wrapper

    wrapped = AsyncFileSystemWrapper(fs, asynchronous=True)
    lock = _read_lock(fs)
    if lock is not None:
        for name in ("cat_file", "cat_ranges", "cat", "get_file", "get"):
            read = getattr(fs, name)

            def locked(*args: Any, _read: Any = read, _lock: Any = lock, **kwargs: Any) -> Any:
                with _lock:
                    return _read(*args, **kwargs)

            setattr(wrapped, f"_{name}", async_wrapper(locked, obj=wrapped))
    return wrapped


def _one_reader(fs: Any) -> contextlib.AbstractContextManager[Any]:
    """What a read from ``fs`` holds: its :func:`_read_lock`, else nothing."""
    lock = _read_lock(fs)
    return contextlib.nullcontext() if lock is None else lock


def _read_lock(fs: Any) -> Any:
    """The lock that reads from ``fs`` take one at a time, where they must: an archive whose
    members share one file position (any but zip), :data:`_ARCHIVE_READ_LOCK`. None for any
    other file system."""
    from fsspec.archive import AbstractArchiveFileSystem
    from fsspec.implementations.zip import ZipFileSystem

    if isinstance(fs, AbstractArchiveFileSystem) and not isinstance(fs, ZipFileSystem):
        return _ARCHIVE_READ_LOCK
    return None


#: Files of at least this many bytes are unlinked on several threads (:func:`_remove_local_tree`).
BIG_FILE = 1 << 20


def _remove_local_tree(path: str) -> None:
    """Delete the local directory ``path`` and everything under it; what is already gone is
    fine. Its files of at least :data:`BIG_FILE` bytes are unlinked first, on up to 8 threads:
    the kernel frees a file's pages in the thread that unlinks it. On the H200 host's tmpfs
    (2026-11-30, .scratch/probe24.py, medians of 3), 8 GB in 500 files of 16 MB took 0.51 s
    with ``shutil.rmtree`` and 0.12 s on 8 threads, while 16,000 empty files took 0.05 s with
    it and 0.33 s on 8 threads, so small files are left to it. ``shutil.rmtree`` then removes
    the rest; symbolic links are removed, never followed. Raises the OSError of the first
    entry that cannot be deleted (its ``filename`` the entry's path), once all else is gone."""
    import shutil

    big = _big_files(path)
    if len(big) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(8, len(big), os.cpu_count() or 1)) as pool:
            list(pool.map(_unlink_quietly, big))
    failed: list[tuple[str, OSError]] = []

    def note(_func: Any, where: str, exc: Any) -> None:
        error = exc[1] if isinstance(exc, tuple) else exc  # onerror's exc_info; onexc's error
        if not isinstance(error, FileNotFoundError):
            failed.append((where, error))

    if sys.version_info >= (3, 12):  # which renamed the handler, and warns of the old name
        shutil.rmtree(path, onexc=note)
    else:
        shutil.rmtree(path, onerror=note)
    if failed:
        where, error = failed[0]
        error.filename = where  # rmtree's own names the entry relative to its folder
        raise error


def _big_files(path: str) -> list[str]:
    """The files of at least :data:`BIG_FILE` bytes under the local directory ``path``, links
    not followed; a folder that is gone or unreadable is skipped (rmtree reports it)."""
    big: list[str] = []
    folders = [path]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    elif (
                        entry.is_file(follow_symlinks=False)
                        and entry.stat(follow_symlinks=False).st_size >= BIG_FILE
                    ):
                        big.append(entry.path)
        except OSError:
            continue
    return big


def _unlink_quietly(path: str) -> None:
    """Unlink the file ``path``; one that cannot be is left to rmtree, which reports it."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def _read_file_into(path: str, alloc: Callable[[int], memoryview]) -> memoryview:
    """A local file's bytes in the buffer ``alloc(size)`` gives. Raises OSError where it
    cannot be read (:data:`NO_BYTES` where there is no file, or a directory:
    :meth:`Location.read_into` reads those as missing), NotAFile where it is no file
    (:func:`open_local_file`)."""
    with open_local_file(path, buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        view = alloc(size)[:size]
        got = 0
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                raise OSError(errno.EIO, f"{path}: short read")
            got += n
        return view


def first_not_a_file(folder: str, skip: frozenset[str] = frozenset()) -> tuple[str, str] | None:
    """The first path below the local ``folder`` that is no file nor folder
    (:func:`not_a_file`: a named pipe, a device, a socket, or a symbolic link to one), by
    name, a folder's files before its folders, as (its key under ``folder``, '/'-separated;
    what it is), or None where there is none or ``folder`` cannot be listed. Names in
    ``skip`` directly in ``folder`` are not looked in. Listings and the ``stat`` of a link
    alone: nothing is opened, so nothing waits (a read of an output's chunk that is a named
    pipe had hung ``verify`` past Ctrl-C and SIGTERM, h84a). Folders reached through a link
    are not walked (a link to nothing is :func:`dangling_link_on`'s)."""
    todo = [""]
    while todo:
        key = todo.pop()
        try:
            with os.scandir(os.path.join(folder, key) if key else folder) as listed:
                entries = sorted(listed, key=lambda e: e.name)
        except OSError:  # gone meanwhile, or not readable: whatever reads it says so
            continue
        below: list[str] = []
        for entry in entries:
            name = f"{key}/{entry.name}" if key else entry.name
            try:
                if entry.is_symlink():
                    mode = os.stat(entry.path).st_mode  # through the link
                elif entry.is_dir(follow_symlinks=False):
                    if key or entry.name not in skip:
                        below.append(name)
                    continue
                elif entry.is_file(follow_symlinks=False):
                    continue
                else:
                    mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:  # a link to nothing, or gone meanwhile
                continue
            kind = not_a_file(mode)
            if kind is not None:
                return name, kind
        todo += reversed(below)  # the first by name is walked next
    return None


def dangling_link_on(path: str, root: str) -> tuple[str, str] | None:
    """The local ``path``, or the first folder above it that lies below ``root`` (the
    store's folder), that is a symbolic link whose target does not exist: (the link, the
    path it names, resolved against the link's folder); None where there is none (``path``
    is simply absent)."""
    root = os.path.normpath(root)
    here = os.path.normpath(path)
    while here.startswith(root.rstrip(os.sep) + os.sep):  # by path: a link is not resolved
        if os.path.islink(here) and not os.path.exists(here):
            try:
                target = os.path.join(os.path.dirname(here), os.readlink(here))
            except OSError:
                target = "a path"
            return here, os.path.normpath(target)
        up = os.path.dirname(here)
        if up == here:  # the file system's root ('/'): a store there ends the climb too
            break
        here = up
    return None


def is_link_refusal(e: BaseException) -> bool:
    """Whether ``e`` is :func:`link_refusal`'s: a key that is a symbolic link to nothing."""
    return isinstance(e, StoreError) and getattr(e, "reason", None) == "dangling link"


def link_refusal(store: str, key: str, link: str, target: str) -> StoreError:
    """The one line for the key ``key`` of the local store ``store`` that reads through the
    symbolic link ``link`` to ``target``, which does not exist: not a missing key, which
    reads as the fill value, since its content was most likely never fetched (a git-annex or
    DataLad dataset keeps every file as such a link until ``git annex get`` or ``datalad
    get``). StoreError, fields ``store``, ``key``, ``link``, ``target``, ``reason`` ('dangling
    link'). Where the link is a metadata document read through as a folder (``.zattrs``
    walked as a node, its ``.zattrs/zarr.json`` read), ``key`` is the document's own: no
    Zarr key lies below one, and the line had named ``'.zattrs/zarr.json'``."""
    parts = key.split("/")
    for i in range(1, len(parts)):  # the link a document on the key's way: name it
        if parts[i - 1] in DOCUMENTS and link.endswith(os.sep.join(parts[:i])):
            key = "/".join(parts[:i])
            break
    where = f"{key!r} of {store}"
    document = key.rpartition("/")[2] in DOCUMENTS
    record = ".pipeline" in key.split("/")  # the run record's (not a chunk's: h72c)
    unless = (
        ""
        if document or record
        else ", or remove the link if the chunk is meant to be the fill value"
    )
    via = "" if link.endswith(key.replace("/", os.sep)) else f" (through {link})"
    return StoreError(
        f"{name_shown(where)} is a symbolic link{via} to {target}, which does not exist (its "
        "content "
        "never fetched?), so it is not read as a missing key: fetch the content (`git annex "
        f"get {link}` or `datalad get {link}`){unless}",
        store=store,
        key=key,
        link=link,
        target=target,
        reason="dangling link",
    )


def _write_file(path: str, parts: Sequence[Any], atomic: bool) -> None:
    """Write ``parts`` to the local file ``path`` (``atomic``: under a hidden name, then
    renamed); a write that fails removes what it wrote. Either way the bytes go into a new
    file: what was at ``path`` (a hard link whose inode another store shares, as ``cp -al
    in.zarr out.zarr`` or ``rsync --link-dest`` leave, or a symbolic link) is replaced, never
    written through (h72c: a chunk written over such a link had rewritten the input's)."""
    folders_made(os.path.dirname(path))
    _write_named(path, parts, atomic, None)


def folders_made(path: str) -> None:
    """Make the local folder ``path`` and those above it where missing, as
    ``os.makedirs(path, exist_ok=True)`` does, but without failing where another process
    removes and makes one of them again meanwhile (a run ending removes its record folder as
    the next takes its lock and makes it anew): ``os.makedirs`` raises FileExistsError where
    its ``mkdir`` finds the folder there and its look after finds none, which had failed a
    lock's take one time in thousands. FileExistsError only where what is there is no folder
    (a file). Where another process keeps removing it, it returns after some tries without
    it: a folder removed just after it is made is the same race, which the caller's next
    step meets as the folder's absence (a lock's take tries again; a write fails saying so)
    (the last try's ``os.makedirs`` had raised FileExistsError again, under load)."""
    for _ in range(40):
        try:
            os.makedirs(path, exist_ok=True)
            return
        except FileExistsError as e:
            there = e.filename if isinstance(e.filename, str) else path
            try:  # one look (two had met a folder, then none): a folder or none, try again
                mode = os.stat(there).st_mode
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(mode):  # a file there
                raise


def _write_named(name: str, parts: Sequence[Any], atomic: bool, dir_fd: int | None) -> None:
    """:func:`_write_file`'s write of the file ``name``, whose folder exists: a path, or a
    name in the folder open as ``dir_fd`` (None: a path)."""
    target = name
    if atomic:
        head, tail = os.path.split(name)
        target = os.path.join(head, f".{tail}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666, dir_fd=dir_fd)
        except FileExistsError:  # an earlier write's, or a link: unlinked, not truncated
            os.unlink(target, dir_fd=dir_fd)
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666, dir_fd=dir_fd)
        with open(fd, "wb", buffering=0) as f:
            for p in parts:
                mv = memoryview(p).cast("B")
                done = 0
                while done < mv.nbytes:
                    done += f.write(mv[done:])
        if atomic:
            os.replace(target, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(target, dir_fd=dir_fd)
        raise


def _folder_made(dir_fd: int, rel: str) -> int:
    """A new descriptor of the folder ``rel`` ('c/0', '' for itself) under the folder open
    as ``dir_fd``, each folder on its way made where missing (:func:`os.makedirs`, relative
    to a descriptor)."""
    at = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
    try:
        for part in (p for p in rel.split("/") if p):
            try:
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=at)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):  # another thread's, meanwhile
                    os.mkdir(part, 0o777, dir_fd=at)
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=at)
            os.close(at)
            at = below
    except BaseException:
        os.close(at)
        raise
    return at


def said_by_path(e: BaseException, named: str, path: str) -> None:
    """The file names of ``e`` (an ``OSError``'s ``filename`` and ``filename2``, of it and of
    every error it came from) that lie under ``named`` (a folder's ``/proc/self/fd/FD`` name,
    by which :meth:`Folder.location` reaches it) said by ``path``, the folder's own, as
    lines say them: a failed write through the held folder (a consolidated copy's rename
    onto an immutable ``zarr.json``) had named ``/proc/self/fd/22/zarr.json`` to the user,
    a name of that process alone, gone by the time it was read (h80a). Rewritten as the
    error leaves the folder held, whose descriptor that name is no more once it is closed."""
    seen: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and not any(x is s for s in seen):
        seen.append(x)
        if isinstance(x, OSError):
            for attr in ("filename", "filename2"):
                name = getattr(x, attr, None)
                if isinstance(name, str) and (name == named or name.startswith(named + "/")):
                    setattr(x, attr, os.path.normpath(path + name[len(named) :]))
        x = x.__cause__ or x.__context__


class Aside:
    """Files moved aside in a local folder (:meth:`Folder.set_aside`), deleted on a thread of
    their own meanwhile: a replaced output's old chunks, whose deletion (the kernel freeing
    their pages: 0.15 s of the H200 host's 7.27 GB output on tmpfs, on 8 threads) had been
    the whole of a replacing run's ``prepare`` phase, overlap its compute phase instead.
    :meth:`finish` waits for the deletion; one with nothing set aside has nothing to wait
    for. The folder is deleted through a descriptor of the folder it is in, never by a path
    that another store may be put at meanwhile."""

    def __init__(self, parent: int | None = None, name: str = "", said: str = "", url: str = ""):
        self._failure: BaseException | None = None
        self._stays = ""  # the first file or folder that could not be deleted, as said
        self._said, self._url = said, url
        self._thread: threading.Thread | None = None
        if parent is not None:
            self._thread = threading.Thread(
                target=self._delete, args=(parent, name), name="pipeline-aside", daemon=True
            )
            self._thread.start()

    def _delete(self, parent: int, name: str) -> None:
        """Delete the folder ``name`` under the folder ``parent`` (a descriptor, closed
        here): everything in it that can be, the first entry that cannot recorded (its path
        below ``parent``, as :meth:`finish` names it: the file that stays, where naming the
        folder it was moved into had sent the user to that folder's attributes)."""
        import shutil

        failed: list[tuple[str, BaseException]] = []

        def stays(_: Any, path: str, exc: Any) -> None:
            e = exc if isinstance(exc, BaseException) else exc[1]  # onerror's exc_info
            if not isinstance(e, FileNotFoundError):  # gone meanwhile
                failed.append((path, e))

        try:
            if sys.version_info >= (3, 12):
                shutil.rmtree(name, dir_fd=parent, onexc=stays)  # links removed, not followed
            else:
                shutil.rmtree(name, dir_fd=parent, onerror=stays)
            if failed:
                self._stays, self._failure = failed[0]
        except BaseException as e:
            self._failure = e
        finally:
            os.close(parent)

    def finish(self) -> None:
        """Wait until what was set aside is deleted; OutputError (``output``: the store,
        ``path``: the first file or folder in it that stays) where some of it could not be, as
        :meth:`Location.delete` says it: an output called complete beside old chunks it
        could not delete had been no cleaner than a replacement that kept them."""
        if self._thread is None:
            return
        self._thread.join()
        self._thread = None
        failure, self._failure = self._failure, None
        if failure is None:
            return
        e = failure if isinstance(failure, OSError) else OSError(str(failure))
        where = (
            os.path.join(os.path.dirname(self._said), self._stays) if self._stays else self._said
        )
        raise OutputError(
            f"cannot delete {name_shown(where)} ({type(e).__name__}: {e.strerror or e}): "
            "make it deletable (write permission on its folder, no immutable attribute) or "
            "delete it yourself",
            output=self._url,
            path=where,
        ) from None


@dataclass(frozen=True)
class Folder:
    """A local folder held open (:meth:`Location.folder`): its files, read and written by
    their names under it (``c/0/1``, ``.pipeline/lock``), are that folder's wherever it is
    moved meanwhile (``mv out.zarr moved.zarr``), never those of what is put at the path it
    was opened at (``path``, said in lines). A block's write checks its run's lock and writes
    its units and marker through one, so none lands in a new run's output made at the old
    path between that check and its write (h77e)."""

    fd: int
    path: str

    def read(self, name: str, most: int | None = 1 << 16) -> bytes:
        """Up to ``most`` bytes (None: all) of the file ``name`` (not through a link at its
        last part); b'' where there is none, or it cannot be read."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self.fd)
        except OSError:
            return b""
        try:
            if most is None:
                with open(fd, "rb", closefd=False) as f:
                    return f.read()
            return os.pread(fd, most, 0)
        except OSError:
            return b""
        finally:
            os.close(fd)

    def at_path(self) -> bool:
        """Whether the path it was opened at (:attr:`path`) still names this folder: False
        where it was moved away or removed, whatever was put there since."""
        try:
            at, it = os.stat(self.path), os.fstat(self.fd)
        except OSError:
            return False
        return (at.st_dev, at.st_ino) == (it.st_dev, it.st_ino)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """This folder's exclusive OS lock (``flock`` on its descriptor) held while inside,
        waited for where another holds it: a run taking the lock of the array in it takes
        this one first (``Ledger._acquire_local``), so that a write made inside after a check
        of that lock (an output's "complete" mark, ``arrays.update_attributes``) is one step
        with it. Nothing held where the file system locks no folders."""
        import fcntl

        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF):
                raise
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def location(self, store: Location, key: str) -> Location:
        """``store`` (a local one, whose folder at ``key`` this is: '' its root) reached
        through this folder (:attr:`Location.reached`): its files, and zarr-python's and
        xarray's writes through :meth:`Location.zarr_store`, are this folder's store's
        wherever it is moved meanwhile, never those of what is put at its path. On Linux, by
        ``/proc/self/fd/FD`` (the folder, wherever it is; with ``..`` for each part of
        ``key``: ``key``'s own folders moved apart from it are found out by the caller's
        check), which names it in this process alone; ``store`` as it is (by its path)
        where there is no such name, or it names another folder."""
        if not store.is_local:
            return store
        named = f"/proc/self/fd/{self.fd}"
        try:
            if not os.path.samestat(os.stat(named), os.fstat(self.fd)):
                return store
        except OSError:
            return store
        depth = sum(1 for p in key.split("/") if p)
        return dataclasses.replace(store, reached=named + "/.." * depth)

    def set_aside(self, names: Sequence[str], into: str, url: str = "") -> Aside:
        """Move the entries ``names`` directly under this folder into a new folder of their
        own under ``into`` (a folder under this one, made where missing), one rename each,
        and delete them there on a thread (:class:`Aside`; ``url``: the store its line
        names). An entry that cannot be moved (gone meanwhile, a mount point) stays where it
        is, for the caller to delete; nothing moved where ``into`` cannot be made."""
        try:
            parent = _folder_made(self.fd, into)
        except OSError:
            return Aside()
        name = uuid.uuid4().hex
        try:
            os.mkdir(name, dir_fd=parent)
            at = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError:
            os.close(parent)
            return Aside()
        try:
            for n in names:
                with contextlib.suppress(OSError):
                    os.rename(n, n, src_dir_fd=self.fd, dst_dir_fd=at)
        finally:
            os.close(at)
        return Aside(parent, name, os.path.join(self.path, into, name), url)

    def write(self, name: str, parts: Sequence[Any], atomic: bool = False) -> int:
        """:meth:`Location.write` of the file ``name`` under this folder, the folders on its
        way made where missing; bytes written."""
        head, _, tail = name.rpartition("/")
        try:
            at = _folder_made(self.fd, head)
            try:
                _write_named(tail, parts, atomic, at)
            finally:
                os.close(at)
        except OSError as e:
            full = disk_full(e, os.path.join(self.path, name))
            if full is not None:
                raise full from None
            raise
        return sum(memoryview(p).nbytes for p in parts)


def _below(root: str, key: str) -> str:
    """The local path of ``key`` under the folder ``root``, as :meth:`Location.join`
    joins it."""
    tail = "/".join(p.strip("/") for p in key.split("/") if p)
    return os.path.join(root, tail) if tail else root


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def local_files(root: str) -> Iterator[tuple[str, str]]:
    """Every file under the local folder ``root``: its path, and its path below ``root``
    with '/' between names. Folders that are links are followed, as Zarr reads through them
    (chunks moved to another disk behind a linked ``c``), but not one linking to ``root`` or
    above it (:func:`links_above`: the walk would take in the store's neighbours), nor a
    folder twice (a loop of links ends). Without the links, the files of a complete output
    behind a linked folder had been recorded as none, and one deleted since was neither
    seen by `verify` nor by a resume (h65d)."""
    real_root = os.path.realpath(root)
    seen: set[tuple[int, int]] = set()  # folders by (device, inode)
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = [d for d in dirs if not links_above(os.path.join(dirpath, d), real_root)]
        rel = os.path.relpath(dirpath, root)
        for f in files:
            yield os.path.join(dirpath, f), f if rel == "." else f"{rel.replace(os.sep, '/')}/{f}"


def folder_listings(
    root: str,
) -> Iterator[tuple[str, int, list[os.DirEntry[str]], list[str]]]:
    """Each folder of a walk from the local folder ``root`` (``root`` first), listed once:
    its path, its device, its entries (one ``scandir`` each: an entry is told a file, a
    folder or a link by the listing's own types, and carries its inode, so a store of millions
    of chunk files gets no look at each), and a list into which the caller puts the paths of
    the entries to walk into next (as ``os.walk``'s ``dirs``). A folder is listed once however
    it is reached (by device and inode: a loop of links ends); one gone, no folder or not
    readable is passed over (nothing under it is written)."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        into: list[str] = []
        yield folder, st.st_dev, entries, into
        stack.extend(into)


def folder_links(root: str, deep: bool = True) -> list[tuple[str, str]]:
    """Every symbolic link to a folder under the local folder ``root`` (``root`` itself
    not counted): its path, and where it leads (resolved). Followed as :func:`local_files`
    follows them, to find links behind links; not one to ``root`` or above it
    (:func:`links_above`, which no walk follows), nor a folder twice; and every link to
    nothing (yet), where it would lead, since a folder may be made there (a resume's, an
    input's that ``input.generate.when_missing`` makes). Costs one listing per folder
    (:func:`folder_listings`): no ``stat`` per chunk. ``deep`` False: the links among
    ``root``'s own entries alone (one listing). [] where ``root`` is no folder. Sorted by
    the link's path: the walk goes in the file system's own order (``scandir``), and which
    of several links a refusal named had depended on it (ext4 and tmpfs named others, h78b)."""
    real_root = os.path.realpath(root)
    found: list[tuple[str, str]] = []
    for _, _, entries, into in folder_listings(root):
        for e in entries:
            try:
                if e.is_symlink():
                    if not e.is_dir():
                        if not _leads_somewhere(e) and not links_above(e.path, real_root):
                            # to nothing yet: where its folder would be (an input not made
                            # yet, a resume's chunk folder), counted too (h74a)
                            found.append((e.path, os.path.realpath(e.path)))
                        continue  # a link to a file, or not followed
                    if links_above(e.path, real_root):
                        continue  # to the store or above
                    found.append((e.path, os.path.realpath(e.path)))
                elif not e.is_dir(follow_symlinks=False):
                    continue
            except OSError:
                continue
            if deep:
                into.append(e.path)
    return sorted(found)


def symbolic_links(root: str, skip: Container[str] = ()) -> list[tuple[str, str, str]]:
    """Every symbolic link under the local folder ``root`` (``root`` itself not counted, nor
    ``root``'s own entries named in ``skip``), to a file, a folder or nothing: its path,
    where it leads (resolved; a link to nothing, where it would lead) and what is there
    ('a folder', 'a file', 'nothing'). No link is followed: these are what deleting the
    folder deletes (the link alone, never what it leads to) and what a write replaces (a
    link at a chunk's key). One listing per folder (:func:`folder_listings`: an entry is
    told a link by the listing's own type), a look only at each link. Sorted by path; []
    where ``root`` is no folder."""
    found: list[tuple[str, str, str]] = []
    for folder, _, entries, into in folder_listings(root):
        for e in entries:
            if folder == root and e.name in skip:
                continue
            try:
                if e.is_symlink():
                    target = os.path.realpath(e.path)
                    there = os.path.isdir(e.path), os.path.exists(e.path)
                    what = "a folder" if there[0] else "a file" if there[1] else "nothing"
                    found.append((e.path, target, what))
                elif e.is_dir(follow_symlinks=False):
                    into.append(e.path)
            except OSError:
                continue
    return sorted(found)


def links_said(links: Sequence[tuple[str, str, str]], root: str, most: int = 3) -> str:
    """The links ``links`` (:func:`symbolic_links`' of the folder ``root``) as a line names
    them: the first by its path and where it leads, the others (``most`` in all) by their
    path below ``root``, then how many more there are."""
    (path, target, what), rest = links[0], links[1:]
    gone = ", which is not there" if what == "nothing" else ""
    first = f"{name_shown(path)} is a symbolic link to {name_shown(target)}{gone}"
    if not rest:
        return first
    others = [os.path.relpath(p, root) for p, _, _ in rest]
    return f"{first} (and so are {some_shown(others, most - 1)})"


def files_on_inodes(
    root: str, inodes: Container[tuple[int, int]], skip: Container[str] = ()
) -> list[str]:
    """The files under the local folder ``root`` whose (device, inode) is among ``inodes``
    (another name of one of a store's files: a hard link), sorted; ``root``'s own entries
    named in ``skip`` left out. Walked as :func:`local_files` walks (folders that are links
    followed, not one to ``root`` or above it, each folder once), by one listing per folder
    (:func:`folder_listings`: a file's inode is the listing's own, its device its folder's),
    and only a file found so is looked at (``lstat``): no look at each chunk file."""
    real_root = os.path.realpath(root)
    found: list[str] = []
    for folder, device, entries, into in folder_listings(root):
        for e in entries:
            try:
                if e.is_dir():
                    top = folder == root and e.name in skip
                    if not top and not links_above(e.path, real_root):
                        into.append(e.path)
                elif not e.is_symlink() and (device, e.inode()) in inodes:
                    at = os.lstat(e.path)
                    if (at.st_dev, at.st_ino) in inodes:
                        found.append(e.path)
            except OSError:
                continue
    return sorted(found)


def _leads_somewhere(entry: os.DirEntry[str]) -> bool:
    """Whether the listed symbolic link ``entry``, no folder, leads to something (a file);
    False where its target is not there. Its target's ``stat`` is the one ``entry.is_dir()``
    made and kept, so a link to a file costs no second look."""
    try:
        entry.stat()
    except FileNotFoundError:
        return False
    return True


def links_above(path: str, real_root: str) -> bool:
    """Whether ``path`` is a link to the store's folder ``real_root`` (resolved) or one above
    it (``up -> ..``): not followed, or a walk would take in the store's neighbours, an
    output being written among them (helper-44: every run then ended "the input changed
    while this run read it")."""
    if not os.path.islink(path):
        return False
    real = os.path.realpath(path)
    return real == real_root or real_root.startswith(real.rstrip(os.sep) + os.sep)


def local_within(path: str, root: str) -> bool:
    """Whether the local ``path`` is the file or folder ``root`` or lies inside it, whether
    or not either exists yet: by their paths with links resolved, and by the file system's
    identity (device and inode) of the folders they are in, so that one folder reached by
    two paths that no link explains (a bind mount of it, or of a folder above it; one
    export mounted twice) is one place. Compared by path alone, a store of the input
    reached through a bind mount had been taken for another store, and ``--overwrite``
    deleted the input (h65d)."""
    p, r = os.path.realpath(_absolute(path)), os.path.realpath(_absolute(root))
    if p == r or p.startswith(r.rstrip(os.sep) + os.sep):
        return True
    try:
        r_base, r_tail = _existing_part(r)
        p_base, p_tail = _existing_part(p)
        r_id = _file_id(r_base)
        if r_tail:  # root is not there yet: nor is anything inside it, which lies below the
            # same existing folder, under the same names
            return _file_id(p_base) == r_id and p_tail[: len(r_tail)] == r_tail
        folder = p_base  # root is there: it is p's nearest existing folder or one above it
        while True:
            if _file_id(folder) == r_id:
                return True
            parent = os.path.dirname(folder)
            if parent == folder:
                return False
            folder = parent
    except OSError:  # a folder that cannot be looked at: told by the paths alone
        return False


def local_same(path: str, root: str) -> bool:
    """Whether the local ``path`` and ``root`` are one file or folder (:func:`local_within`
    both ways)."""
    return local_within(path, root) and local_within(root, path)


def _existing_part(path: str) -> tuple[str, list[str]]:
    """The nearest folder or file at or above the resolved ``path`` that exists, and the
    names below it that do not."""
    tail: list[str] = []
    while not os.path.exists(path):
        parent, name = os.path.split(path)
        if parent == path:
            break
        tail.insert(0, name)
        path = parent
    return path, tail


def _file_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _chained(url: str) -> bool:
    """Whether ``url`` chains file systems (``zip::file:///a.zip``): it has '::' after a
    protocol fsspec knows (a local path may contain '::' too)."""
    if "::" not in url:
        return False
    from fsspec.registry import known_implementations, registry

    protocol = _outer_protocol(url)
    return protocol in known_implementations or protocol in registry


def missing_packages(urls: list[str]) -> dict[str, str]:
    """{URL: why this process cannot open its file systems} for those of ``urls`` (
    :class:`Location` URLs: a local path, a URL, a chain ``zip::s3://...``) whose file system's
    package is not installed here: fsspec's ImportError in one line (``Install s3fs to access
    S3``); a URL whose every file system imports (or names a protocol fsspec does not know,
    which opening the store says) is left out. Run on the workers of a joined cluster
    (:func:`pipeline.running.cluster.check_store_packages`), whose Python may lack what the
    plan's process has."""
    import fsspec

    missing: dict[str, str] = {}
    for url in urls:
        if "://" not in url and "::" not in url:
            continue  # a local path: fsspec's own local file system
        for bit in url.split("::"):
            protocol = bit.partition("://")[0]
            try:
                fsspec.get_filesystem_class(protocol)
            except ImportError as e:
                missing[url] = one_line(str(e) or type(e).__name__)
                break
            except Exception:  # not a protocol fsspec knows: the store's opening says so
                continue
    return missing


def _outer_protocol(url: str) -> str:
    """The scheme of the outermost file system of a URL: 'zip' for ``zip::file:///a.zip``."""
    return url.split("::", 1)[0].split("://", 1)[0]


def url_unsafe(key: str) -> str | None:
    """What in ``key`` (a store key: an array's or a coordinate's name within its path) a URL
    reads otherwise than as a name, described; None where nothing does. ``?`` starts a URL's
    query and ``#`` its fragment, and ``%`` with two hex digits is an escape: a key holding one
    is another URL (a name with a space, which the client escapes, is fine)."""
    if "?" in key:
        return "'?', which starts a URL's query"
    if "#" in key:
        return "'#', which starts a URL's fragment"
    escape = re.search(r"%[0-9A-Fa-f]{2}", key)
    if escape is not None:
        return f"{escape.group()!r}, which a URL reads as an escaped character"
    return None


def _over_http(url: str) -> bool:
    """Whether the keys of the store at ``url`` are paths of HTTP(S) URLs: ``url`` itself, or
    a chain whose keys go to HTTP past layers that take no path of their own; not
    one whose keys another file system takes (``zip::https://...``: the archive's members)."""
    try:
        _, protocol, _ = _keys_part(url)
    except (ImportError, ValueError):  # a protocol fsspec does not know: not read over HTTP
        return False
    return protocol in ("http", "https")


def key_under(root: str, key: str) -> str:
    """``key`` under the file system path ``root`` (Zarr's FsspecStore joins the same way)."""
    root = root.rstrip("/")
    return (f"{root}/{key}" if root else key).rstrip("/")


def _chain_join(url: str, tail: str) -> str:
    """A chained URL whose path is ``tail`` below the chain's root (:func:`_keys_part`)."""
    i, protocol, path = _keys_part(url)
    bits = url.split("::")
    bits[i] = f"{protocol}://{key_under(path, tail)}"
    return "::".join(bits)


def _keys_part(url: str) -> tuple[int, str, str]:
    """(index in the chain, protocol, path) of the part of ``url`` (plain or chained with
    '::') whose file system the store's keys are paths of: the first that has a path, or that
    is not a layer that takes the path of what it wraps (fsspec's ``ChainedFileSystem``; its
    caching layers are refused by :meth:`Location.of`, so none is expected here)."""
    import fsspec
    from fsspec.implementations.chained import ChainedFileSystem

    bits = url.split("::")
    for i, bit in enumerate(bits):
        protocol, _, path = bit.partition("://")
        cls = fsspec.get_filesystem_class(protocol)
        if path or i == len(bits) - 1 or not issubclass(cls, ChainedFileSystem):
            return i, protocol, path
    raise AssertionError("unreachable: the last bit always takes the path")


def _open_fs(url: str, options: dict[str, Any], setting: str = "") -> tuple[Any, str]:
    """(file system, root path) of ``url``, its client made (:func:`_connect`); StoreError
    when it cannot be opened, ConfigError when ``options`` make no file system
    (:func:`options_problem`: an unknown option, one of the wrong kind, an endpoint that is
    no URL), naming ``setting``'s storage_options."""
    import fsspec

    try:
        fs, root = fsspec.url_to_fs(url, **options)
    except ImportError as e:
        raise StoreError(f"cannot open {url}: {e}", store=url) from e
    except TypeError as e:  # a keyword the file system's class does not take
        raise options_problem(url, options, setting, e) from None
    except Exception as e:  # each file system raises its own types (BadZipFile, ...)
        if missing_credentials(e):
            raise StoreError(
                f"cannot open {url}: no credentials were found for it: {CREDENTIALS_FIX}",
                store=url,
            ) from e
        raise StoreError(
            f"cannot open {url} ({type(e).__name__}: {e}); check the store's URL and its "
            "storage_options",
            store=url,
        ) from e
    try:
        _connect(fs)
    except Exception as e:
        if isinstance(e, OSError) or missing_credentials(e):
            pass  # an answer, not the options: the first request says it, as it did
        else:
            raise options_problem(url, options, setting, e) from None
    return fs, root


def _endpoint(options: Any) -> str | None:
    """The ``endpoint_url`` in ``storage_options`` (or their ``client_kwargs``), if any."""
    if not isinstance(options, dict):
        return None
    for where in (options, options.get("client_kwargs")):
        if isinstance(where, dict) and isinstance(where.get("endpoint_url"), str):
            return str(where["endpoint_url"])
    return None


def _option_error(url: str, setting: str, keys: tuple[Any, ...], said: str) -> ConfigError:
    """The one line for the store option at ``keys`` of ``setting``'s storage_options (of the
    store at ``url``), ``said`` after its key, a name in it said as a config's line says it
    (:func:`~pipeline.config.problems.dotted_key`: one holding a dot, colon or space, which
    may be a value, as ``***``); no file or line (a store opened otherwise than from a
    config, whose check names them)."""
    from pipeline.config.problems import dotted_key  # pydantic's: loaded for an error alone

    key = dotted_key((*((setting,) if setting else ()), "storage_options", *keys))
    return ConfigError(f"{key}: {said}", file=None, line=None, key=key, store=public_url(url))


#: Words of a failure to reach a server at all: nothing listens, its name is not known, or it
#: speaks no TLS where https was asked (or TLS where http was).
UNREACHABLE = (
    "cannot connect to host",
    "could not connect to the endpoint",
    "connect timeout",
    "connection refused",
    "name or service not known",
    "ssl validation failed",
    "wrong version number",
)


def _speaks_tls(sock: Any, host: str) -> bool:
    """False where the server on ``sock`` answers a TLS handshake with no TLS (OpenSSL's
    WRONG_VERSION_NUMBER: a plain HTTP server); True otherwise, its certificate unchecked
    (the client's ``verify`` decides that) and any other failure left to the client."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        context.wrap_socket(sock, server_hostname=host).close()
    except ssl.SSLError as e:
        return e.reason != "WRONG_VERSION_NUMBER"
    except OSError:
        return True
    return True


def _in_worker() -> bool:
    """Whether this thread runs a Dask worker's task (Dask's ``get_worker`` finds one)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except (ValueError, AttributeError):
        return False
    return True


def _proxied(endpoint: str, options: Any) -> bool:
    """Whether requests to ``endpoint`` go through a proxy (``config_kwargs``' ``proxies``, or
    the environment's HTTP(S)_PROXY not bypassed by NO_PROXY): a direct connection says
    nothing about it then."""
    import urllib.request
    from urllib.parse import urlsplit

    config = options.get("config_kwargs") if isinstance(options, dict) else None
    if isinstance(config, dict) and config.get("proxies"):
        return True
    parts = urlsplit(endpoint)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def endpoint_refused(
    url: str, options: Any, setting: str, attempts: int = 2, pause: float = 0.5
) -> ConfigError | None:
    """The ConfigError for ``storage_options``' ``endpoint_url`` (:func:`_endpoint`) where
    nothing listens: a TCP connection to its host and port refused, or its host's name not
    known, on each of ``attempts`` tries ``pause`` seconds apart (a server restarting
    answers the next); or, for an https endpoint, a server that answers a TLS handshake with
    no TLS (:func:`_speaks_tls`: botocore retried its SSLError as long). None where it
    connects, where the answer is none of those (a timeout, a network that is down:
    botocore's retries may yet get through, and say the rest), where a proxy carries the
    requests (:func:`_proxied`), and where no endpoint_url is given.
    Nothing is sent; the line names the section's endpoint_url and its host, never a
    credential (:func:`endpoint_fix`)."""
    import socket
    import time
    from urllib.parse import urlsplit

    endpoint = _endpoint(options)
    if endpoint is None or _proxied(endpoint, options):
        return None
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    if not host or port is None:
        return None
    failure = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause)
        try:
            with socket.create_connection((host, port), timeout=5) as sock:
                if parts.scheme != "https" or _speaks_tls(sock, host):
                    return None
                failure = "wrong version number: it speaks no TLS, where https was asked"
                break  # an answer, not a blip
        except ConnectionRefusedError:
            failure = "connection refused"
        except socket.gaierror as e:
            if e.errno not in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)):
                return None
            failure = "name or service not known"
        except OSError:
            return None
    side = setting or "input"
    fix = endpoint_fix(options, failure, side)
    if fix is None:
        return None
    if not setting:
        fix = fix.replace("input.storage_options", "the store's storage_options")
    key = f"{setting}.storage_options" if setting else None
    scheme_host = f"{parts.scheme}://{host}:{port}"
    return ConfigError(
        f"{setting + ' store ' if setting else ''}{public_url(url)}: {fix} ({failure})",
        file=None,
        line=None,
        key=key,
        store=public_url(url),
        endpoint=scheme_host,
    )


def endpoint_fix(options: Any, failure: str, side: str) -> str | None:
    """Where ``storage_options`` name an ``endpoint_url`` and the store's ``failure``
    (:func:`storage_failure`) says nothing answered there: the fix, naming the section's
    endpoint_url and its host (never credentials); else None."""
    from urllib.parse import urlsplit

    endpoint = _endpoint(options)
    if endpoint is None or not any(w in failure.lower() for w in UNREACHABLE):
        return None
    try:
        parts = urlsplit(endpoint)
        host = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        host = "its host"
    return (
        f"nothing answers at {side}.storage_options endpoint_url ({host}): correct "
        f"{side}.storage_options endpoint_url (its host, port, and http or https)"
    )


def _connect(fs: Any) -> None:
    """Make the client of a file system that makes it only on its first request, and check
    what that request would make of the options, so options that make none are known where
    the file system is opened, not as the library's error from whatever step asks first
    (a raw ``TypeError`` or botocore error, with no setting named). No request is sent.

    s3fs: its botocore session and client, from ``storage_options``' ``key``, ``secret``,
    ``endpoint_url``, ``client_kwargs``, ``config_kwargs`` and the rest, unknown ones
    included; then the signature version the client signs with (``config_kwargs``'
    ``signature_version``: botocore knows it only when it signs) and the credentials' type
    (YAML's ``secret: 12345678`` is a number, which botocore cannot sign with). fsspec's HTTP
    file system: its aiohttp session (``client_kwargs``), and the names of the options it
    passes to every request, which aiohttp must take. Layers that wrap one (a zip on S3) are
    connected through the file they read, on their first read."""
    if getattr(fs, "asynchronous", False):
        return
    connect = getattr(fs, "connect", None)
    if connect is not None and hasattr(fs, "set_session"):
        connect()
        _check_signing(fs)
        return
    # an HTTP file system's module is loaded where one is made: not imported for another
    # (aiohttp's import took 0.15 s of a local run's plan, 2026-12-03)
    http = sys.modules.get("fsspec.implementations.http")
    if http is not None and isinstance(fs, http.HTTPFileSystem):
        import inspect

        from aiohttp import ClientSession
        from fsspec.asyn import sync

        request = inspect.signature(ClientSession._request)
        for name in fs.kwargs:
            if name not in request.parameters or name in ("self", "method", "str_or_url"):
                raise TypeError(f"aiohttp's requests take no option {name!r}")
        _check_http_values(fs)
        sync(fs.loop, fs.set_session)


def _check_http_values(fs: Any) -> None:
    """Raise where an option of fsspec's HTTP file system has a value aiohttp refuses only
    when it sends: ``headers`` that are no mapping, and ``auth`` (of the requests, or of
    ``client_kwargs``' session), which aiohttp takes only as its ``BasicAuth`` object, which
    YAML cannot make (a list or text was its bare "BasicAuth() tuple is required"). What
    aiohttp takes besides YAML's kinds, from a config given to the API as a mapping, passes:
    ``headers`` as a multidict (``CIMultiDict``), a ``timeout`` as its ``ClientTimeout``."""
    from aiohttp import BasicAuth, ClientTimeout
    from aiohttp.typedefs import MultiDict, MultiDictProxy  # aiohttp's own header types

    headers = fs.kwargs.get("headers")
    if headers is not None and not isinstance(headers, (dict, MultiDict, MultiDictProxy)):
        raise OwnWordsTypeError("headers is not a mapping of header names to values")
    timeout = fs.kwargs.get("timeout")
    if timeout is not None and not (_number(timeout) or isinstance(timeout, ClientTimeout)):
        raise OwnWordsTypeError("timeout is not a number of seconds")
    for where, given in (("auth", fs.kwargs), ("client_kwargs' auth", fs.client_kwargs)):
        auth = given.get("auth") if isinstance(given, dict) else None
        if auth is not None and not isinstance(auth, BasicAuth):
            raise OwnWordsTypeError(
                f"{name_shown(where)} must be aiohttp's BasicAuth, which a YAML config cannot "
                "make: give "
                "the user and password in the store's URL (https://user:password@host/...), or "
                "an Authorization header in headers"
            )


class OwnWordsTypeError(TypeError):
    """A TypeError of the pipeline's own words that name an option and say no value
    (``key is not a string``): :func:`options_problem` says it whole. Hiding the options'
    values in it had taken words out of it (``key: [a]`` made "key is not ... string",
    ``key: [string]`` "key is not a ...")."""


def _check_signing(fs: Any) -> None:
    """Raise where the botocore client of an s3fs file system cannot sign a request: a
    signature version botocore does not know (its own ``UnknownSignatureVersionError``, as
    its signer would raise on the first request: one given as text the options' check has
    refused already, :func:`~pipeline.config.urls.signature_versions`), credentials that
    are no strings."""
    import botocore
    from botocore.exceptions import UnknownSignatureVersionError

    config = getattr(getattr(getattr(fs, "s3", None), "meta", None), "config", None)
    version = getattr(config, "signature_version", None)
    signed = version is not None and version is not botocore.UNSIGNED
    known, said = signature_versions()
    if signed and (not isinstance(version, str) or version not in known):
        raise UnknownSignatureVersionError(
            signature_version=f"{version} (botocore knows {', '.join(said)})"
        )
    for name in ("key", "secret", "token"):
        value = getattr(fs, name, None)
        if value is not None and not isinstance(value, str):
            raise OwnWordsTypeError(
                f"{name} is not a string (YAML read it as a number or other type)"
            )
    block = getattr(fs, "default_block_size", None)
    if block is not None and not (_number(block) and block == int(block) and block >= 1):
        raise OwnWordsTypeError("default_block_size is not a whole number of bytes")
    _check_http_settings(getattr(fs, "config_kwargs", None), getattr(fs, "client_kwargs", None))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_http_settings(config: Any, client: Any) -> None:
    """Raise where botocore's HTTP layer would fail on a setting only when it sends (each
    request then failed, retried, as "HTTPClientError: An HTTP Client raised an unhandled
    exception: ..."): ``config_kwargs``' ``connect_timeout`` and ``read_timeout`` that are no
    number, ``max_pool_connections`` no whole number of at least 1, ``proxies`` no mapping
    or a proxy's URL no text (``{http: 8080}``: "'int' object has no attribute
    'startswith'"); the config refuses them at their lines first
    (:func:`~pipeline.config.urls.kind_option`, :func:`~pipeline.config.urls.text_option`);
    ``client_kwargs``' ``verify`` neither true, false nor an existing CA bundle's path (as
    text, or a ``pathlib.Path`` in a config given to the API as a mapping: botocore takes
    either), nor one beginning with ``~``, which botocore does not expand."""
    config = config if isinstance(config, dict) else {}
    for name in ("connect_timeout", "read_timeout"):
        if name in config and config[name] is not None and not _number(config[name]):
            raise OwnWordsTypeError(f"config_kwargs' {name} is not a number of seconds")
    pool = config.get("max_pool_connections")
    if pool is not None and not (_number(pool) and pool == int(pool) and pool >= 1):
        raise OwnWordsTypeError(
            "config_kwargs' max_pool_connections is not a whole number of at least 1"
        )
    proxies = config.get("proxies")
    if proxies is not None and not isinstance(proxies, dict):
        raise OwnWordsTypeError("config_kwargs' proxies is not a mapping of schemes to proxy URLs")
    if isinstance(proxies, dict) and not all(isinstance(v, str) for v in proxies.values()):
        raise OwnWordsTypeError("config_kwargs' proxies holds a proxy whose URL is not text")
    verify = client.get("verify") if isinstance(client, dict) else None
    # as botocore opens it: '~/ca.pem' as it is (no home folder expanded), so a bundle that
    # exists only once expanded had passed here and failed each request
    bundle = isinstance(verify, (str, os.PathLike)) and os.path.exists(verify)
    if not bundle and isinstance(verify, (str, os.PathLike)) and os.fspath(verify)[:1] == "~":
        raise OwnWordsTypeError(
            "client_kwargs' verify begins with '~', a home folder, which botocore does not "
            "expand (it opens the path as written): write the CA bundle's path in full"
        )
    if verify is not None and not isinstance(verify, bool) and not bundle:
        raise OwnWordsTypeError(
            "client_kwargs' verify is neither true, false nor the path of a CA bundle that "
            "exists here"
        )


def storage_option_error(
    url: str, options: dict[str, Any], setting: str = ""
) -> ConfigError | None:
    """The ConfigError for the first of ``options`` (the ``storage_options`` of the store at
    ``url``) that its file system or its client would refuse or misread
    (:func:`~pipeline.config.urls.storage_option_problem`, the config's own check: an
    ``endpoint_url`` with credentials in it, ``asynchronous: true``, an option of the wrong
    kind, ``anon: 'false'``, an ``s3_additional_kwargs`` parameter no S3 operation takes or
    a value none of those it takes, ``ServerSideEncryption: AES257``, ...); None where there
    is none. A config's stores are refused so where it is read, at the option's line
    (:func:`~pipeline.config.problems.checked`); this is the same line, without a file's,
    for a store opened otherwise: a ``Location`` made through the Python API from no config
    had been checked at its opening only for some of them, and wrote its objects without the
    encryption asked for, or failed at its first write with botocore's or S3's words."""
    base = f"{setting}.storage_options" if setting else "storage_options"
    found = storage_option_problem(url, options, base)
    return None if found is None else _option_error(url, setting, found.keys, found.said)


def options_problem(
    url: str, options: dict[str, Any], setting: str, error: BaseException
) -> ConfigError:
    """The ConfigError for ``storage_options`` with which the file system of ``url`` cannot
    be made (``error``, the library's): one line naming ``{setting}.storage_options`` (or
    "the store's storage_options" where no setting is known) and the library's reason,
    without the options' values (:func:`_without_values`: a key or secret it quotes is
    hidden; option names are said; an :class:`OwnWordsTypeError`'s own words said whole).
    Fields: ``key`` (the setting's dotted name, or None),
    ``store`` (the URL, its password hidden) and ``reason`` (the library's, values hidden)."""
    import fsspec

    key = f"{setting}.storage_options" if setting else None
    named = key or "the store's storage_options"
    if isinstance(error, OwnWordsTypeError):  # no value in them: said whole, every word
        reason = _without_names(f"TypeError: {error}", options)
    else:
        reason = f"{type(error).__name__}: {error}"
        reason = _without_values(_without_names(reason, options), options)
    try:
        cls = fsspec.get_filesystem_class(_outer_protocol(url))
        library = cls.__module__.split(".")[0]
        takes = f" as {library}'s {cls.__name__} takes them"
    except Exception:
        library, takes = "its file system", ""
    if _unsaid_names(options):  # brk82: {secret:VALUE} made an option named 'secret:VALUE'
        reason += (
            f"; '***' is an option {library} does not take, whose name looks like no option's "
            "and is not said (in YAML, 'name: value' needs a space after its colon, and each "
            "value its name)"
        )
    return ConfigError(
        f"{named} make no file system for {public_url(url)} ({reason}): correct {named}{takes}",
        file=None,
        line=None,
        key=key,
        store=public_url(url),
        reason=reason,
    )


def _unsaid_names(options: Any) -> list[str]:
    """The names in ``options`` (keys of nested mappings too) that are never said
    (:func:`~pipeline.errors.said_option`: no plain identifier), longest first."""
    names: set[str] = set()

    def collect(v: Any) -> None:
        if isinstance(v, dict):
            for k, item in v.items():
                if said_option(k) != k:
                    names.add(str(k))
                collect(item)
        elif isinstance(v, (list, tuple, set)):
            for item in v:
                collect(item)

    collect(options)
    return sorted(names, key=len, reverse=True)


def _without_names(text: str, options: Any) -> str:
    """``text`` with every option name that is never said (:func:`_unsaid_names`: YAML's
    ``{secret:VALUE}`` makes one named ``secret:VALUE``) shown as ``***``."""
    for name in _unsaid_names(options):
        if name:
            text = text.replace(name, "***")
    return text


def _without_values(text: str, options: Any) -> str:
    """``text`` with every text value in ``options`` (nested mappings and lists too) shown as
    ``...``: a library's error that quotes an option (``Invalid endpoint: VALUE``) says no
    value, a key or secret above all. A value of fewer than 4 characters is hidden where
    it stands as a word of its own, so that it does not take letters out of other words."""
    values: list[str] = []

    def collect(v: Any) -> None:
        if isinstance(v, str):
            if v:
                values.append(v)
        elif isinstance(v, dict):
            for item in v.values():
                collect(item)
        elif isinstance(v, (list, tuple, set)):
            for item in v:
                collect(item)

    collect(options)
    for value in sorted(set(values), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "...")
        else:
            text = re.sub(rf"(?<![\w.]){re.escape(value)}(?![\w.])", "...", text)
    return text


def _condition_failed(error: OSError) -> bool:
    """Whether ``error`` (as s3fs translates botocore's) is S3's refusal of a conditional
    request on an object's ETag: 412 PreconditionFailed (another version is there), 409
    ConditionalRequestConflict (another write to it meanwhile), or NoSuchKey (none is)."""
    if isinstance(error, FileNotFoundError):
        return True
    return _error_code(error) in ("PreconditionFailed", "ConditionalRequestConflict", "412")


#: The error codes of an S3-compatible store that has no conditional requests on an ETag.
_NO_CONDITIONS = ("NotImplemented", "501")
#: The URLs of locations whose store answered a create-only write (:meth:`Location.write_new`)
#: with :data:`_NO_CONDITIONS`, in this process: written plainly since.
_UNCONDITIONAL: set[str] = set()


def _error_code(error: OSError) -> str | None:
    """The S3 error code behind ``error`` (botocore's, which s3fs translated), if any."""
    response = getattr(error.__cause__, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code if isinstance(code, str) else None


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


#: The attribute by which a refused delete of one of many paths names it (s3fs's
#: ``PermissionError`` names none): :meth:`Location.delete`'s line says that object.
_UNDELETED = "pipeline_undeleted"


async def _remove_files_async(fs: Any, paths: Sequence[str], batch: int = 64) -> None:
    """``_rm_file`` each path of an async file system, ``batch`` at a time; every one is
    tried, whatever an earlier one's delete answered (a refused marker had kept the run's
    lock, later in the record's listing, from being deleted), then the first refusal is
    raised, naming its path (:data:`_UNDELETED`)."""
    first: BaseException | None = None
    for i in range(0, len(paths), batch):
        got = await asyncio.gather(
            *(fs._rm_file(p) for p in paths[i : i + batch]), return_exceptions=True
        )
        for p, r in zip(paths[i : i + batch], got, strict=True):
            refused = isinstance(r, BaseException) and not isinstance(r, FileNotFoundError)
            if refused and first is None:
                first = cast(BaseException, r)
                with contextlib.suppress(AttributeError):
                    setattr(first, _UNDELETED, p)
    if first is not None:
        raise first


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
                await self.fs._rm_file(key_under(self.path, key))

        async def delete_dir(self, prefix: str) -> None:
            self._check_writable()
            try:
                found = await self.fs._find(key_under(self.path, prefix), withdirs=False)
            except FileNotFoundError:
                return
            await _remove_files_async(self.fs, found)

        async def list_dir(self, prefix: str) -> AsyncIterator[str]:
            # FsspecStore lists "/" + prefix under an empty root (a zip's), which archive
            # file systems do not find
            try:
                found = await self.fs._ls(key_under(self.path, prefix), detail=False)
            except FileNotFoundError:
                return
            for p in found:
                yield p.rstrip("/").rsplit("/", 1)[-1]

    return LiteralFsspecStore
