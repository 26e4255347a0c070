"""Arrays in stores: what a stored array is (:class:`ArrayInfo`), opening and describing it,
creating an output's metadata, and reading and writing attributes.

Zarr itself reads and writes every metadata document (``zarr.json``/``.zarray``), so every
output is a store that Zarr made and any Zarr reader reads; :class:`ArrayInfo` is what the
pipeline needs besides, to read and write stored units without Zarr: the grid, the chunk keys,
the codecs (by spec name, :mod:`pipeline.store.codecs`) and the fill value.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipeline.errors import (
    CREDENTIALS_FIX,
    ChunkError,
    InputError,
    OutputError,
    StoreError,
    cause,
    missing_credentials,
    name_shown,
    names_shown,
    refused_access,
    s3_denied,
    some_shown,
    storage_failure,
)
from pipeline.ops import stages
from pipeline.store import codecs, grid, references, shards
from pipeline.store.codecs import FrameCodec
from pipeline.store.grid import Shape
from pipeline.store.ledger import RECORD
from pipeline.store.local_files import (
    is_not_a_file_refusal,
    not_a_file,
    not_a_file_refusal,
    path_words,
)
from pipeline.store.location import (
    Folder,
    Location,
    first_not_a_file,
    is_link_refusal,
    is_os_file,
    is_write_probe,
    key_under,
)

if TYPE_CHECKING:
    from pipeline.config.models import GenerateConfig


def check_reader_sees_chunks(info: ArrayInfo, probes: int = 8) -> str | None:
    """Refuse (InputError, fields ``store`` and ``key``) an input whose stored units Zarr finds
    where the pipeline's raw reader finds none, or other bytes: the reader would read them
    as the fill value. A cheap probe, at plan time: for up to ``probes`` units spread over
    the grid, the key the reader computes must be Zarr's key, and each unit Zarr's store
    holds must be there for the reader with the same size. When Zarr holds none of those (a
    sparse array, or one whose chunks lie under another chunk key encoding's keys), the first
    stored key under the array is looked for (:func:`_first_stored_key`: a listing that stops
    at the first name that is not metadata, one level at a time): a chunk key of the array's
    own encoding is checked as the probed ones are; one of another encoding is refused
    (:func:`_misplaced`); else the probed units are looked for under the other encodings'
    keys (:func:`_refuse_units_under_other_keys`). A dense array lists nothing. Returns the
    first stored unit's key it found (the lowest probed, or the one listed), which the plan
    decodes (:func:`check_chunk_fits`); None where it found none."""

    if not all(info.unit):  # no grid (a chunk of 0 is refused elsewhere)
        return None
    unit_grid = info.grid
    n = math.prod(unit_grid)
    if not n:
        return None
    arr = open_zarr_array(info.location, info.path)
    store, prefix = arr.store_path.store, arr.store_path.path
    flat = _probed_units(n, probes)
    present: list[str] = []
    for i in flat:
        index = tuple(int(j) for j in np.unravel_index(i, unit_grid))
        key = key_under(prefix, arr.metadata.encode_chunk_key(index))
        if info.key(index) != key:
            raise InputError(
                f"the pipeline would read unit {list(index)} of {name_shown(info.location)} from "
                "key "
                f"{info.key(index)!r}, but Zarr stores it at {key!r}: copy the array with "
                "zarr-python into a new store (default chunk keys) and use that",
                store=info.location.url,
                key=key,
            )
        if _asked(info, key, store.exists(key)):
            present.append(key)
    if not present:
        found = _stored_key_of(info, arr, store, prefix)
        if found is not None:
            present.append(found)
        else:
            _refuse_units_under_other_keys(info, arr, store, prefix, flat)
    for key in present:
        want, got = _asked(info, key, store.getsize(key)), info.location.size(key)
        if got != want:
            raise InputError(
                f"Zarr finds {key!r} in {info.location} ({want} bytes), the pipeline's reader "
                f"{'does not' if got is None else f'finds {got} bytes'}: it would read that "
                "chunk wrong; copy the array into a directory or an object store and use that",
                store=info.location.url,
                key=key,
            )
    return present[0] if present else None


def _asked(info: ArrayInfo, key: str, request: Any) -> Any:
    """The answer of ``request`` (a coroutine of Zarr's store: whether the input's ``key`` is
    there, its size), the store's failure to give it (:func:`~pipeline.errors.storage_failure`:
    an S3 server's HTTP 500) an InputError naming the store, the key and the fix (fields
    ``store``, ``key``, ``reason``, ``status`` 'unreadable'): plan had said only "a store
    answered ...", naming no store, where the input and the output were both on S3 (h65f)."""
    from zarr.core.sync import sync

    try:
        return sync(request)
    except Exception as e:
        failure = storage_failure(e)
        if failure is None:
            raise
        raise InputError(
            f"cannot read input store {info.location}: it answered {failure} for {key!r}; "
            f"{info.location.answer_fix(failure, side='input')}",
            store=info.location.url,
            key=key,
            reason=failure,
            status="unreadable",
        ) from None


def _probed_units(n: int, probes: int) -> list[int]:
    """Up to ``probes`` of a grid's ``n`` units by flat index, spread over it: the first few,
    the quarters and the last."""
    return sorted({*range(min(n, probes // 2)), *(n * k // 4 for k in range(1, 4)), n - 1})


def check_units_at_their_keys(info: ArrayInfo, probes: int = 8) -> None:
    """``verify``'s part of :func:`check_reader_sees_chunks`: where Zarr finds none of up to
    ``probes`` units spread over the grid at the keys the metadata gives, refuse the input
    whose units lie under another chunk key encoding's keys: the first stored key under the
    array (:func:`_stored_key_of`), else the probed units' keys of the other encodings
    (:func:`_refuse_units_under_other_keys`). Asks for the probed units' sizes (a HEAD
    each over HTTP, where fsspec's ``exists`` GETs the whole unit), so verify reads each unit
    it compares once, and lists only where none is there (a listing that stops at the first
    stored key, :func:`_first_stored_key`); a unit whose size the store will not say counts
    as there."""
    if not all(info.unit) or not info.n_units:
        return
    flat = _probed_units(info.n_units, probes)
    for i in flat:
        index = tuple(int(j) for j in np.unravel_index(i, info.grid))
        try:
            if info.location.size(info.key(index)) is not None:
                return
        except Exception:  # a store that will not say (HTTP 403): no refusal from a guess
            return
    arr = open_zarr_array(info.location, info.path)
    store, prefix = arr.store_path.store, arr.store_path.path
    if _stored_key_of(info, arr, store, prefix) is None:
        _refuse_units_under_other_keys(info, arr, store, prefix, flat)


def _refuse_units_under_other_keys(
    info: ArrayInfo, arr: Any, store: Any, prefix: str, flat: Sequence[int]
) -> None:
    """Refuse (InputError, fields ``store`` and ``key``) an input none of whose probed units
    (the grid positions ``flat``) is at the key its metadata gives, one of which is at the
    key of another chunk key encoding (:func:`_other_unit_keys`): its chunks were written
    under other keys than its metadata says (zarr-python 2's ``NestedDirectoryStore`` before
    2.8 wrote ``0/0`` keys and no ``dimension_separator``, which reads as ``0.0``), so
    zarr-python reads every element as the fill value, and the run would write an output of
    fill values alone, marked complete, that verify passes. A store that has no unit at
    either key (an array never written) is not refused."""

    for i in flat:
        index = tuple(int(j) for j in np.unravel_index(i, info.grid))
        zarr_key = key_under(prefix, arr.metadata.encode_chunk_key(index))
        for other, setting in _other_unit_keys(info, index):
            key = key_under(prefix, other)
            if key == zarr_key or not _asked(info, key, store.exists(key)):
                continue
            raise _misplaced(info, key, zarr_key, setting)


def _misplaced(info: ArrayInfo, key: str, zarr_key: str, setting: str) -> InputError:
    """The refusal of an input whose chunk at ``key`` (a key of another chunk key encoding,
    which the metadata ``setting`` names) its metadata names as ``zarr_key``; where a
    consolidated copy lists the array (an xarray Dataset's), the edit's next step too
    (:func:`then_consolidated`: h65a, the edit alone met the plan's refusal of that copy,
    stale)."""
    return InputError(
        f"the chunks of {info.location.shown(info.path)} are stored at keys such as "
        f"{key!r}, but its metadata names them as {zarr_key!r}, where none is, so "
        "zarr-python reads every element as the fill value: give its metadata the "
        f"key encoding they were written with ({setting})"
        f"{then_consolidated(info.location, info.path)}, or copy the array with "
        "a reader that finds them",
        store=info.location.url,
        key=key,
    )


#: What follows an edit of an input node's own metadata that a consolidated copy lists, as
#: the refusals of such a copy, stale, say it (``planning.variable.check_consolidated``).
RECONSOLIDATE = "consolidate the input's metadata again (zarr.consolidate_metadata on its store)"


def then_consolidated(location: Location, path: str) -> str:
    """``", then "`` and :data:`RECONSOLIDATE`, for a line that asks for an edit of the
    metadata document of the node at ``path`` (its chunk key encoding, its fill value),
    where a consolidated copy in the store lists that node: v2's ``.zmetadata`` or v3's
    ``consolidated_metadata`` of a group at or above it (``to_zarr`` writes one at the
    Dataset's group). The edit alone leaves that copy stale, which ``xr.open_zarr`` reads and
    the plan refuses (h65a: its line named only the edit). '' where none lists it. Reads
    those groups' documents only."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        return ""
    groups = ["/".join(parts[:depth]) for depth in range(len(parts))]
    keys = [_key_in(g, n) for g in groups for n in (".zmetadata", "zarr.json")]
    found = _read_documents(location, keys)
    for g in groups:
        rel = "/".join(parts[len(g.split("/")) if g else 0 :])
        for name, names in (
            (".zmetadata", (f"{rel}/.zarray", f"{rel}/.zgroup")),
            ("zarr.json", (rel,)),
        ):
            parsed = found.get(_key_in(g, name))
            doc = parsed.doc if isinstance(parsed, _Parsed) else None
            if name == "zarr.json" and isinstance(doc, dict):
                doc = doc.get("consolidated_metadata")
            listed = doc.get("metadata") if isinstance(doc, dict) else None
            if isinstance(listed, dict) and any(n in listed for n in names):
                return f", then {RECONSOLIDATE}"
    return ""


def _other_unit_keys(info: ArrayInfo, index: Shape) -> list[tuple[str, str]]:
    """The keys the unit at grid ``index`` has under the other chunk key encodings of the
    array's Zarr format, each with the metadata setting that names it so: Zarr v2's other
    ``dimension_separator``; Zarr v3's ``default`` encoding with the other separator and the
    ``v2`` encoding with either (``c/0/0``, ``c.0.0``, ``0.0``, ``0/0``)."""
    names = [str(i) for i in index]
    if not names:  # a 0-d array's one chunk: no separator to mistake
        return []
    if info.zarr_format == 2:
        sep = "/" if info.key_sep == "." else "."
        return [(sep.join(names), f'"dimension_separator": "{sep}" in its .zarray')]
    found = []
    for name, sep, prefix in (
        ("default", "/", "c/"),
        ("default", ".", "c."),
        ("v2", ".", ""),
        ("v2", "/", ""),
    ):
        if (prefix, sep) != (info.key_prefix, info.key_sep):
            encoding = f'{{"name": "{name}", "configuration": {{"separator": "{sep}"}}}}'
            found.append(
                (
                    prefix + sep.join(names),
                    f"chunk_key_encoding {encoding} in its zarr.json",
                )
            )
    return found


def _stored_key_of(info: ArrayInfo, arr: Any, store: Any, prefix: str) -> str | None:
    """For an array none of whose probed units is at its key: the first stored key under it
    (:func:`_first_stored_key`) when that is a unit's key of the array's own chunk key
    encoding, None when there is none (an array never written, a server that will not list)
    or it is no unit's key. Raises the refusal of :func:`_misplaced` when it is a unit's key
    of another encoding (:func:`_other_unit_keys`): its chunks lie where Zarr finds none.
    An S3 listing refused for want of s3:ListBucket (:func:`~pipeline.errors.s3_denied`)
    raises an InputError naming it (fields ``store``, ``status`` 'unreadable', ``reason``)."""
    from zarr.core.sync import sync

    if not info.grid:  # a 0-d array's one chunk: no separator to mistake
        return None

    def indices(rel: str) -> list[tuple[tuple[str, str], Shape]]:
        return [(e, i) for e in _ENCODINGS if (i := _unit_index(info, rel, *e)) is not None]

    try:
        found = sync(_first_stored_key(store, prefix, len(info.grid) + 1, indices))
    except Exception as e:  # a server that lists no folders (HTTP 403): no such probe
        failure = storage_failure(e)
        if failure is None:
            raise
        if s3_denied(e) is None:
            return None
        # S3 lists to every user who may (s3:ListBucket): a refusal is said, not taken for
        # an array with no chunk to find, whose misplaced chunks would run as its fill value
        raise InputError(
            f"cannot list input store {info.location} for the first stored chunk of "
            f"{info.path.strip('/') or 'its array'}: it answered {failure}; "
            f"{info.location.answer_fix(failure, side='input')}",
            store=info.location.join(info.path),
            status="unreadable",
            reason=failure,
        ) from None
    if found is None:
        return None
    rel = found[len(prefix) :].lstrip("/") if prefix else found
    parsed = indices(rel)
    if any(e == (info.key_prefix, info.key_sep) for e, _ in parsed):
        return found
    for _, index in parsed:
        zarr_key = key_under(prefix, arr.metadata.encode_chunk_key(index))
        for other, setting in _other_unit_keys(info, index):
            if other == rel and found != zarr_key:
                raise _misplaced(info, found, zarr_key, setting)
    return None


#: The chunk key encodings, as an ArrayInfo's ``(key_prefix, key_sep)``: Zarr v2's two
#: separators (v3's ``v2`` encoding), v3's ``default`` with either.
_ENCODINGS = (("", "."), ("", "/"), ("c/", "/"), ("c.", "."))


def _unit_index(info: ArrayInfo, rel: str, key_prefix: str, sep: str) -> Shape | None:
    """The grid index whose key (relative to the array) is ``rel`` under the chunk key
    encoding ``(key_prefix, sep)`` (:data:`_ENCODINGS`); None when ``rel`` is no key of a
    unit of the grid under it."""
    if not rel.startswith(key_prefix):
        return None
    parts = rel[len(key_prefix) :].split(sep)
    if len(parts) != len(info.grid) or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    index = tuple(int(p) for p in parts)
    if any(str(i) != p or i >= g for i, p, g in zip(index, parts, info.grid, strict=True)):
        return None
    return index


def _is_metadata(name: str) -> bool:
    """Whether a name listed in an array's folder is no chunk's: a metadata document, a
    hidden name (a chunk's never starts with '.': not this pipeline's ``.pipeline``) or a
    file an operating system wrote there (:func:`is_os_file`)."""
    return name.startswith(".") or name == "zarr.json" or is_os_file(name)


def _chunk_like(name: str) -> bool:
    """Whether a name listed under an array may be a part of a chunk key of any encoding
    (``c``, ``c.0.1``, ``0``, ``0.1``: :data:`_CHUNK_KEY_ROOT`), and no metadata
    (:func:`_is_metadata`): a user's ``README.txt`` listed first beside misplaced chunks had
    been taken for the first stored key, and the input run as its fill value (h64d)."""
    return not _is_metadata(name) and _CHUNK_KEY_ROOT.match(name) is not None


async def _first_stored_key(
    store: Any, prefix: str, levels: int, is_key: Any = lambda rel: False
) -> str | None:
    """The first key under ``prefix`` in a Zarr store that may be a chunk key, found going down
    at most ``levels`` levels along the first such name of each folder, stopping at a file
    or a key (relative to ``prefix``) that ``is_key`` takes; None when the array's folder
    holds none. Each folder's listing stops at that name where the store can stop early:
    a local directory's ``os.scandir``, an S3 listing's pages of 100 names
    (:func:`_first_s3_entry`); elsewhere Zarr's ``list_dir`` (one GET of an HTTP folder's page,
    an archive's listing in memory)."""
    at = prefix
    for _ in range(levels):
        name, folder = await _first_entry(store, at)
        if name is None:
            return None if at == prefix else at
        at = key_under(at, name)
        if folder is False or is_key(at[len(prefix) :].lstrip("/")):
            return at
    return at


async def _first_entry(store: Any, folder: str) -> tuple[str | None, bool | None]:
    """The first name directly under ``folder`` (a key) of a Zarr store that may be a chunk
    key's part (:func:`_chunk_like`), and whether it is a folder (None: not known); None when
    there is none or ``folder`` is a file."""
    from zarr.storage import LocalStore

    if isinstance(store, LocalStore):
        try:
            with os.scandir(os.path.join(store.root, folder)) as entries:
                for entry in entries:
                    if _chunk_like(entry.name):
                        return entry.name, entry.is_dir()
        except (FileNotFoundError, NotADirectoryError):
            pass
        return None, None
    fs: Any = getattr(store, "fs", None)
    protocol = getattr(fs, "protocol", ())
    if "s3" in ((protocol,) if isinstance(protocol, str) else protocol) and hasattr(fs, "_call_s3"):
        bucket, key, _ = fs.split_path(f"{store.path}/{folder}".rstrip("/"))
        try:
            return await _first_s3_entry(fs, bucket, f"{key}/" if key else "")
        except FileNotFoundError:  # no such bucket
            return None, None
    async for name in store.list_dir(folder):
        if _chunk_like(name):
            return name, None
    return None, None


#: An S3 listing's page (``MaxKeys``) and the most pages :func:`_first_s3_entry` asks for: a
#: folder whose first 1,000 names hold none that may be a chunk's is taken to hold none.
_S3_PAGE, _S3_PAGES = 100, 10


async def _first_s3_entry(fs: Any, bucket: str, prefix: str) -> tuple[str | None, bool | None]:
    """:func:`_first_entry` on S3: the first name directly under ``prefix`` (a key's folder,
    ending in '/', or '') of ``bucket`` that may be a chunk key's part, and whether it is a
    folder, from pages of ``_S3_PAGE`` names (S3's ``ListObjectsV2`` through s3fs's
    ``call_s3``, in its coroutine form, which passes its options such as requester-pays and
    retries, and raises botocore's errors as s3fs's own listings do: ``PermissionError``
    where s3:ListBucket is refused), no more than ``_S3_PAGES`` of them. s3fs's private
    ``_iterdir``, used before, stopped after 8 files: 20 of a user's listed before the chunks
    (upper case sorts before ``c``) had hidden them, and a sparse array of misplaced chunks
    had run as its fill value (h65f)."""
    request: dict[str, Any] = {
        "Bucket": bucket,
        "Prefix": prefix,
        "Delimiter": "/",
        "MaxKeys": _S3_PAGE,
    }
    for _ in range(_S3_PAGES):
        page = await fs._call_s3("list_objects_v2", **request)
        found = [
            (p["Prefix"][len(prefix) :].rstrip("/"), True) for p in page.get("CommonPrefixes", [])
        ]
        found += [(c["Key"][len(prefix) :], False) for c in page.get("Contents", [])]
        for name, folder in sorted(found):
            if _chunk_like(name):
                return name, folder
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            break
        request["ContinuationToken"] = token
    return None, None


# --------------------------------------------------------------------------------------------
# What an array is, and how its chunks are keyed and encoded.


@dataclass(frozen=True)
class ArrayInfo:
    """A stored array's layout, enough to read or write its units without Zarr."""

    location: Location
    """the store the array is in (its ``said(path)`` names it as the lines do)"""
    path: str
    """path of the array inside the store ('' at the root)"""
    shape: Shape
    """the array's shape, a tuple of ints"""
    dtype: np.dtype
    """the elements' dtype in native byte order (what a decoded chunk holds)"""
    zarr_format: int
    """2 or 3"""
    chunk: Shape
    """inner chunk shape (what one frame holds)"""
    unit: Shape
    """shape one storage key holds: the shard, or the chunk when unsharded"""
    sharded: bool
    """whether each stored unit is a Zarr v3 shard of several chunks"""
    index_at_end: bool
    """where a shard's index is: at its end (True, Zarr's default) or its start"""
    codec: FrameCodec | None
    """'zstd' or 'none' when each chunk is one plain frame (bytes in native order, C order,
    no filters, zstd or nothing): what the GPU decodes and the pipeline writes; else None"""
    key_prefix: str
    """what every chunk key begins with: ``'c/'`` (or ``'c.'``) for Zarr v3's default keys,
    '' for Zarr v2's"""
    key_sep: str
    """the separator of a chunk key's indices: ``'/'`` or ``'.'``"""
    format: codecs.StoredFormat | None = None
    """how the stored units decode on the CPU (any chain numcodecs knows); None: only Zarr
    can read this array (the slow path)"""
    fill: bytes | None = None
    """the fill value's bytes, one native element (what an absent chunk reads as); None: zeros"""
    unit_check: codecs.UnitCheck | None = None
    """for an array only Zarr decodes (``format`` None) whose chunks hold a Blosc frame (under
    other codecs too), or that is sharded: how its stored units are checked before Zarr reads
    them (a cut Blosc frame reads as whatever memory follows it; an index entry pointing into
    the shard's own index, as the index's bytes); else None"""

    @property
    def grid(self) -> Shape:
        """How many stored units (shards, or chunks) along each axis."""
        return grid.grid_shape(self.shape, self.unit)

    @property
    def n_units(self) -> int:
        """How many stored units (shard files, or chunk files) the array has."""
        return int(np.prod(self.grid))

    @property
    def chunks_per_unit(self) -> Shape:
        """How many chunks a stored unit holds along each axis (1s where unsharded)."""
        return grid.chunks_per_unit(self.unit, self.chunk)

    @property
    def chunk_nbytes(self) -> int:
        """Bytes of one chunk, decoded."""
        return grid.nbytes(self.chunk, self.dtype)

    @property
    def nbytes(self) -> int:
        """Bytes of the whole array, decoded."""
        return grid.nbytes(self.shape, self.dtype)

    @property
    def fill_bytes(self) -> bytes:
        """The fill value as the bytes of one element (zeros when the metadata has none)."""
        return self.fill if self.fill is not None else bytes(self.dtype.itemsize)

    def key(self, index: Shape) -> str:
        """The store key of the unit at grid ``index`` (relative to the store root)."""
        k = self.key_prefix + self.key_sep.join(str(i) for i in index)
        return f"{self.path}/{k}" if self.path else k

    def describe(self) -> str:
        """The layout in a few words (the plan's input and output rows): shape, dtype, chunks,
        shards where a stored unit holds several chunks (read through Zarr too: a shard whose
        index or codecs only Zarr reads, which ``sharded`` leaves False, had been said as its
        inner chunks alone), codecs, format."""
        in_shards = self.sharded or self.unit != self.chunk
        shard = f" in shards {list(self.unit)}" if in_shards else ""
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
    at = codecs.sharding_at(doc["codecs"])
    if not sharded and at is not None:  # read through Zarr; after transposes, in the array's axes
        given = doc["codecs"][at]["configuration"]["chunk_shape"]
        order = codecs.transposed_order(doc["codecs"][:at], len(given)) or range(len(given))
        inner = tuple(given[list(order).index(axis)] for axis in range(len(given)))
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
                f"{name_shown(where)}: its {name} {list(shp)} have a 0-length axis, so they "
                "cannot hold "
                f"any part of the {list(shape)} array (zarr-python cannot read it either); "
                f"rewrite the input with {name} of at least 1 on every axis",
                store=where,
                shape=shape,
                chunks=shp,
            )
    return {"unit": unit, "chunk": chunk}


#: zarr-python's warnings (``ZarrUserWarning``) about an input's format that the pipeline
#: reads as it is, which neither it (it only reads the input) nor its user can act on for the
#: run: each time it opens an array whose codecs include numcodecs' Zarr 3 codecs
#: (``numcodecs.delta``, ...), that they are not in the Zarr v3 spec; and (zarr-python 3.4) that
#: a stored chunk size of 0 is read as 1 (the pipeline reads it so too: an empty array's
#: output is made, see ``_checked_grid``).
FORMAT_WARNINGS = (
    "Numcodecs codecs are not in the Zarr version 3 specification",
    r".*The stored chunk shape .* is invalid",  # after "Array 'URL': "
    # a shard compressed whole (codecs after `sharding_indexed`): the pipeline reads whole
    # units, so partial reads lost cost it nothing; the line had shown twice a run (h55c)
    "Combining a `sharding_indexed` codec disables partial reads",
    # a v3 and a v2 document side by side (zarr-python 3 and 2 both wrote there): said
    # once a command, by the plan's note and verify's (:func:`other_format_metadata`); it
    # had been zarr-python's warning each time the input was opened, 3 times in a run
    r"Both zarr\.json \(Zarr format 3\) and \.z(array|group) \(Zarr format 2\) metadata",
    # a v2 array whose `"filters": []` (zarrs, zarr-python 3.0 and VirtualiZarr wrote it so)
    # reads as no filters, as every reader takes it; the line had shown 3 times a run and
    # twice a verify, and where warnings are errors (`-W error`) the input was refused as
    # "metadata zarr-python cannot read" (h71t)
    "Found an empty list of filters in the array metadata document",
)

#: NumPy's warning as zarr-python parses a fill value beyond its float dtype's range (a
#: float32 array's ``fill_value`` 1e40, which it reads as inf): 4 lines on stderr at each
#: opening, a plan's 4 times. The plan says it once, in a note (:func:`beyond_range_fill`).
#: Only from zarr-python's dtype module: the same warning of a cast elsewhere is kept.
FILL_CAST_WARNING = "overflow encountered in cast"
FILL_CAST_MODULE = r"zarr\.core\.dtype\."

#: ``warnings.catch_warnings`` swaps the process's filters and puts the old ones back on exit:
#: two threads inside it at once (thread workers opening the input) put back each other's, and
#: one's warning shows. So one thread at a time.
_WARNINGS_LOCK = threading.RLock()


@contextlib.contextmanager
def format_warnings_ignored() -> Iterator[None]:
    """Within the block, ignore :data:`FORMAT_WARNINGS`, and no other warning. zarr-python
    emits them from its I/O thread, which the process's filters govern, so the block must stay
    open until zarr-python has opened the array."""
    from zarr.errors import ZarrUserWarning

    with _WARNINGS_LOCK, warnings.catch_warnings():
        for message in FORMAT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=ZarrUserWarning)
        warnings.filterwarnings(
            "ignore", message=FILL_CAST_WARNING, category=RuntimeWarning, module=FILL_CAST_MODULE
        )
        yield


@contextlib.contextmanager
def read_warnings_ignored() -> Iterator[None]:
    """:func:`format_warnings_ignored`, and NumPy's warnings of a filter's arithmetic over
    stored values (:data:`~pipeline.store.codecs.FILTER_ARITHMETIC_WARNINGS`: a Delta's
    running sum over inf), which zarr-python's reading of a right store gives: for a read
    again where the process's filters raised one of them as an error (a caller's ``-W
    error``, whose process runs the tasks of an in-process cluster: the warning had been said
    as a damaged chunk), the process's other filters kept. Under the same lock."""
    with format_warnings_ignored():
        warnings.filterwarnings(
            "ignore", message=codecs.FILTER_ARITHMETIC_WARNINGS, category=RuntimeWarning
        )
        yield


def other_format_metadata(location: Location, path: str, arr: Any) -> str | None:
    """Where the array ``arr`` at ``path`` is read from its Zarr v3 ``zarr.json`` and a Zarr
    v2 ``.zarray`` is there too (zarr-python 3 and 2 both wrote at that path): what is read,
    in words for a note, as zarr-python 3 reads it (the ``zarr.json`` whenever there is one,
    as the pipeline's own readers do; zarr-python 2 reads the ``.zarray``); None where there
    is no such pair. zarr-python's own warning of it, each time the array is opened, is
    ignored (:data:`FORMAT_WARNINGS`)."""
    if getattr(arr.metadata, "zarr_format", None) != 3:
        return None
    v2 = _key_in(path, ".zarray")
    if not location.exists(v2):
        return None
    return (
        f"{location.shown(path)} holds both Zarr v3 metadata (zarr.json) and Zarr v2 metadata "
        "(.zarray), as zarr-python 3 and 2 both writing there leave it: this reads the "
        f"zarr.json's array ({list(arr.shape)} {arr.dtype}), as zarr-python 3 does, where "
        "zarr-python 2 reads the .zarray's; delete the metadata and chunks of the one not meant"
    )


def beyond_range_fill(location: Location, path: str, arr: Any) -> str | None:
    """Where the metadata document of the array ``arr`` at ``path`` names a finite number as
    its fill value that its float dtype cannot hold (float32's 1e40, float16's 70000, or as
    a string, "1e40", as older writers and hand edits leave it): in words for a note, what
    zarr-python reads it as (inf or -inf), which every absent chunk reads as, and so the run
    (before any unpacking); None otherwise (an integer dtype's such fill value zarr-python refuses:
    :func:`unreadable_metadata`)."""
    dtype = np.dtype(arr.dtype)
    if dtype.kind != "f":
        return None
    key = _key_in(path, "zarr.json" if arr.metadata.zarr_format == 3 else ".zarray")
    found = _read_documents(location, [key])[key]
    doc = found.doc if isinstance(found, _Parsed) else None
    value = doc.get("fill_value") if isinstance(doc, dict) else None
    shown = json.dumps(value)  # as the document says it
    if isinstance(value, str) and not value.lower().startswith("0x"):  # "1e40" reads so too
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    with np.errstate(over="ignore"):  # the cast zarr-python makes (float16's 65520 too)
        held = np.asarray(value, dtype=dtype.newbyteorder("="))
    if not math.isfinite(value) or np.isfinite(held):
        return None
    read = "inf" if value > 0 else "-inf"
    return (
        f"{location.shown(key)} names the fill value {shown}, beyond {dtype.name}'s range: "
        f"zarr-python reads it, and so every absent chunk, as {read}; if another value was "
        f"meant, write one {dtype.name} holds in that document{then_consolidated(location, path)}"
    )


def reading_notes(location: Location, path: str, arr: Any) -> list[str]:
    """The notes of how the input array ``arr`` at ``path`` is read, in words, which ``plan``
    and ``run`` give and ``verify`` repeats (it compares what it reads so, h65a: it had said
    none of the fill value's): its metadata of both Zarr formats
    (:func:`other_format_metadata`), a fill value beyond its dtype's range
    (:func:`beyond_range_fill`). Reads only its metadata."""
    found = [other_format_metadata(location, path, arr), beyond_range_fill(location, path, arr)]
    return [n for n in found if n]


def _did_you_mean(location: Location, path: str) -> str:
    """`` (did you mean 'fields/air'?)`` naming the arrays of ``path``'s parent group whose
    names are close to its last part (helper-41: a misspelled array got no hint, a group lists
    its arrays), a name that differs only in case first (``TEMP`` for ``temp``, which difflib
    alone finds no closer than any other), each by its path from the store's root, as
    input.array takes it (``fields/air``: the name alone, ``air``, had named no array of the
    store); where none is close, the arrays of that very name in the groups below the parent
    (:func:`_arrays_below`: a Dataset xarray wrote with ``to_zarr(STORE, group="g/h")``, its
    variable named ``air`` where input.array takes ``g/h/air``, had got no hint); '' when
    neither finds one."""
    import difflib

    parts = path.strip("/").split("/")
    if any(p != p.strip() for p in parts):  # ' g/h/a ' quoted in YAML: no path shows it
        meant = "/".join(p.strip() for p in parts)
        return f" (a part of it begins or ends with a space: did you mean {meant!r}?)"
    parent, _, name = path.strip("/").rpartition("/")
    if not name:
        return ""
    try:
        names = [
            n
            for n in location.list(parent)
            if node_type(location, f"{parent}/{n}".strip("/")) == "array"
        ]
    except Exception:  # a hint only: no group there (``h/air`` of ``g/h/air``), or none listed
        names = []
    # compared case-folded, so a name in another case is closest ('TEMP' for 'temp', which
    # difflib alone finds no closer than any other name)
    folded = [n.casefold() for n in names]
    near = difflib.get_close_matches(name.casefold(), folded, n=3)
    close = [n for f in near for n in names if n.casefold() == f]
    close = [key_under(parent, n) for n in dict.fromkeys(close)][:3]
    if not close:
        return _named_below(location, parent, path.strip("/"))
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _named_below(location: Location, parent: str, path: str) -> str:
    """:func:`_did_you_mean`'s hint where ``parent`` holds no array of a close name: the
    arrays below ``parent`` of the last part of ``path`` (``air`` of a Dataset xarray wrote
    with ``to_zarr(STORE, group="g/h")``), else those below the store's root whose path ends
    with ``path`` (``h/air``, the group's path given in part), by their paths from the store's
    root (:func:`_arrays_below`, bounded); where none is, the arrays below ``parent`` by
    their paths, as a group given as input.array lists its own (h85f: a name close to none
    had got no names at all, where a misspelled one got "did you mean" and a group its
    arrays); '' where there are none."""
    name = path.rpartition("/")[2].casefold()
    try:
        below = _arrays_below(location, parent)
        close = [b for b in below if b.rpartition("/")[2].casefold() == name]
        if not close and parent:
            tail = f"/{path.casefold()}"
            close = [b for b in _arrays_below(location, "") if b.casefold().endswith(tail)]
    except Exception:  # a hint only
        return ""
    if not close:
        return _arrays_listed(location, parent, below)
    shown = " or ".join(repr(c) for c in close[:3])
    return f" (did you mean {shown}? input.array is the path from the store's root)"


def _arrays_listed(location: Location, parent: str, below: list[str]) -> str:
    """:func:`_named_below`'s hint where no array's name is close: ``below``, the arrays below
    ``parent`` (or where there are none, or ``parent`` is no group, the store's), by their
    paths from the store's root, eight at most; '' where the store holds none."""
    where = f"below {parent!r}" if parent else "in the store"
    if not below and parent:
        where = "in the store"
        try:
            below = _arrays_below(location, "")
        except Exception:  # a hint only
            return ""
    if not below:
        return ""
    more = ", ..." if len(below) > 8 else ""
    return f" (no name is close; the arrays {where}: {names_shown(sorted(below)[:8])}{more})"


#: The metadata documents of a node that must each be a JSON object where they are there, by
#: name: what each holds, in a line's words.
_OBJECT_DOCUMENTS = {
    "zarr.json": "Zarr v3 metadata",
    ".zarray": "Zarr v2 array metadata",
    ".zgroup": "Zarr v2 group metadata",
    ".zattrs": "Zarr v2 attributes",
}


def is_member_name(name: str) -> bool:
    """Whether ``name`` (one name of a group's listing) may be a member of the group: any
    name but Zarr's own metadata files (:data:`_OBJECT_DOCUMENTS`, ``.zmetadata``), an OS
    file (``.DS_Store``, ``._x``), the pipeline's write probes and its record folder
    (:data:`pipeline.store.ledger.RECORD`, where a group's lock is). A name starting with
    ``.`` (``.x``) is a member like any other: xarray reads it as a variable, so it is
    checked like one."""
    return not (
        name in _OBJECT_DOCUMENTS
        or name in (".zmetadata", RECORD)
        or is_os_file(name)
        or is_write_probe(name)
    )


_JSON_KINDS = {
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    dict: "a JSON object",
}


def refuse_documents_not_files(location: Location, path: str) -> None:
    """Refuse, in :func:`~pipeline.store.local_files.not_a_file_refusal`'s one line, a metadata
    document of the local node at ``path``, or of a group above it, that is no file nor
    folder (a named pipe: zarr-python's opening waits on it without end, h83g). A ``stat``
    of each name, no read; nothing for a store that is not local. For the openings that come
    before :func:`check_documents` (which refuses it too, as it reads the documents)."""
    if not location.is_local:
        return
    parts = [p for p in path.strip("/").split("/") if p]
    for depth in range(len(parts) + 1):
        found = _document_not_a_file(
            location,
            "/".join(parts[:depth]),
            ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"),
        )
        if found is not None:
            key, kind = found
            raise not_a_file_refusal(location.url, key, location.join(key), kind)


def _document_not_a_file(
    location: Location, node: str, names: Sequence[str]
) -> tuple[str, str] | None:
    """The first of the metadata documents ``names`` of the local ``node`` that is no file
    nor folder, as (its key, what it is: :func:`~pipeline.store.local_files.not_a_file`);
    None where each is a file, a folder or absent (or cannot be read: the opening says so).
    A ``stat`` of each name, no read."""
    for name in names:
        key = _key_in(node, name)
        try:
            kind = not_a_file(os.stat(location.join(key)).st_mode)
        except OSError:  # absent, or unreadable: the opening says so
            continue
        if kind is not None:
            return key, kind
    return None


def refuse_output_not_files(
    location: Location,
    path: str,
    chunks: bool = True,
    coordinates: Collection[str] | None = None,
) -> None:
    """Refuse what the pipeline reads of the output array at ``path`` of the local
    ``location`` that is no file nor folder (a named pipe, a device, a socket, or a link to
    one: :func:`~pipeline.store.local_files.not_a_file`), in one line naming it and a fix that
    works: the metadata documents of the array and of the groups above it, and with
    ``chunks`` every name in the array's folder but its run record (``.pipeline``, whose
    parts :meth:`~pipeline.store.ledger.Ledger.misshapen` names, with what to remove). A
    chunk or shard file that is a named pipe had hung ``verify`` (sampled and ``--all``)
    past Ctrl-C and SIGTERM, and ``run``, refusing the output for its files' sizes, had sent
    its user to that ``verify``; a ``zarr.json`` that is one had hung ``run`` (h84a). A
    chunk's fix is ``run --overwrite``, which deletes the array's files, that one too; a
    document's, a good copy (the array's: or the array's folder removed, and a run then
    writes it anew; a group's is the user's).

    ``coordinates``: for an output written as a Dataset (its group the parent of ``path``),
    the names of the coordinate arrays the run writes there; None for an array alone. The
    group's own documents are then the run's too (removed, ``run --overwrite`` writes them
    again), and so is each coordinate (its documents, and with ``chunks`` its chunks: removed,
    ``run --overwrite`` writes it again); another member's documents are its owner's to
    restore. They had been refused with an input's fix alone ("restore the document from a
    good copy"), and ``run --overwrite`` refused them too (h85a). Listings and ``stat``
    alone: nothing is opened (:func:`~pipeline.store.location.first_not_a_file`); nothing
    for a store that is not local (an object store holds no such thing). OutputError, fields
    ``output``, ``key``, ``kind``, ``reason`` ('not a file')."""
    if not location.is_local:
        return
    path = path.strip("/")
    where = location.join(path)
    group = path.rpartition("/")[0] if coordinates is not None else None
    try:
        refuse_documents_not_files(location, path)
    except StoreError as e:
        if not is_not_a_file_refusal(e):
            raise
        key = str(getattr(e, "key", ""))
        node = key.rpartition("/")[0]
        if node == path:
            fix = (
                f"restore it from a good copy, or remove {name_shown(where)} yourself: "
                + ("`run --overwrite`" if group is not None else "a run")
                + " then writes the output anew"
            )
        elif node == group:
            fix = (
                "restore it from a good copy, or remove it yourself: `run --overwrite` then "
                "writes the output's group document again (the input's attributes, not any "
                "other it held)"
            )
        else:
            fix = "restore the document from a good copy"
        raise _not_a_file_output(location, key, str(getattr(e, "kind", "")), fix, where) from None
    if group is not None:
        _refuse_members_not_files(location, path, group, set(coordinates or ()), chunks)
    if not chunks:
        return
    found = first_not_a_file(where, skip=frozenset((RECORD,)))
    if found is not None:
        raise _not_a_file_below(location, path, found, "the array's", where)


def _not_a_file_below(
    location: Location, array: str, found: tuple[str, str], whose: str, where: str
) -> OutputError:
    """:func:`_not_a_file_output` of ``found`` (its name below the folder of ``array``, an
    array the run writes, and what it is: :func:`~pipeline.store.location.first_not_a_file`'s):
    where it is a chunk's, ``run --overwrite`` writes the output again, deleting ``whose``
    files ("the array's", "the coordinate x's"); anything else no Zarr writer leaves, the
    user's to remove."""
    name, kind = found
    key = _key_in(array, name)
    top = name.partition("/")[0]
    if _is_metadata(top) or not _chunk_like(top):
        fix = f"remove {name_shown(location.join(key))} yourself (no Zarr writer leaves one)"
    else:
        fix = f"`run --overwrite` writes the output again (it deletes {whose} files, that one too)"
    return _not_a_file_output(location, key, kind, fix, where)


def _refuse_members_not_files(
    location: Location, path: str, group: str, coordinates: set[str], chunks: bool
) -> None:
    """:func:`refuse_output_not_files`' look at the other members of the Dataset output's
    ``group`` (the output variable at ``path`` aside): each one's metadata documents, and with
    ``chunks`` the files of each of ``coordinates`` (the run's) that is there. A ``stat`` of
    each name, and listings: nothing is opened."""
    where = location.join(path)
    own = path.rpartition("/")[2]
    try:
        names = sorted(location.entries(group))
    except Exception:  # not listable: whatever reads it says so
        return
    for name in names:
        if name == own or not is_member_name(name):
            continue
        member = _key_in(group, name)
        folder = location.join(member)
        ours = name in coordinates
        found = _document_not_a_file(
            location, member, ("zarr.json", ".zarray", ".zattrs", ".zgroup")
        )
        if found is not None:
            key, kind = found
            if ours:
                fix = (
                    f"remove {name_shown(folder)} yourself (the coordinate array {name!r} "
                    "that the run writes), then `run --overwrite` writes it again"
                )
            else:
                fix = (
                    f"restore the document from a good copy, or remove {name_shown(folder)} "
                    "yourself (an array of the output's group that the run does not write)"
                )
            raise _not_a_file_output(location, key, kind, fix, where)
        if not (chunks and ours):
            continue
        found = first_not_a_file(folder)
        if found is not None:
            raise _not_a_file_below(location, member, found, f"the coordinate {name}'s", where)


def _not_a_file_output(
    location: Location, key: str, kind: str, fix: str, where: str
) -> OutputError:
    """:func:`refuse_output_not_files`'s line for ``key`` of the output at ``where``, that is
    ``kind``, with ``fix``."""
    e = not_a_file_refusal(location.url, key, location.join(key), kind, fix)
    return OutputError(str(e), output=where, key=key, kind=kind, reason="not a file")


def check_documents(location: Location, path: str, around: bool = False) -> None:
    """Refuse, in one line naming the file, a metadata document of the node at ``path`` that
    is JSON but no JSON object (``zarr.json``, ``.zarray``, ``.zgroup``, ``.zattrs``; JSON
    ``null`` attributes read as none, as zarr-python reads them), or a ``zarr.json`` whose
    ``attributes`` are no object: zarr-python opens such an array, and its attributes had
    failed later as a bare ``IndexError``/``TypeError`` naming no file, or a group's had made
    a Dataset's variable an array alone (review 41). With ``around`` (the input, as it is
    planned), the groups above it too and the other members of its group (its Dataset's
    coordinates), which a run reads. InputError, fields ``store`` (the file), ``array``,
    ``status`` 'unreadable', ``reason``. A document that is there but not JSON at all (a
    truncated or hand-edited file, not UTF-8) is refused too, in one line naming the file and
    where its JSON breaks, where the run needs it: the node's, its groups' (a v2 group's
    consolidated copy, ``.zmetadata``, as well: ``xr.open_zarr`` reads it), and a member of
    its group that the run reads (:func:`_needed_members`: a dimension coordinate, one its
    ``coordinates`` or another CF reference that the carried arrays follow names, one the
    group's or another member's ``coordinates`` lists; in turn, what each of these names so);
    they had been left to the opening that follows, which named no file, called a coordinate
    gone from a consolidated group ("stale"), or, for a group's, took the variable for an
    array alone and wrote it without its Dataset. A member that nothing so names is not
    needed (another variable of the Dataset, one a ``long_name`` or ``comment`` mentions, or
    the variable's ``ancillary_variables``, which the run leaves out): the frame is read
    around it (:func:`pipeline.store.datasets`'s ``_frame``), as ``xr.open_zarr`` reads such
    a group from its consolidated metadata (a word of free text had made it needed: a broken
    sibling ``surface`` refused the run of a variable described "air temperature at
    surface"). A document that is absent or unreadable is left to the opening that follows.

    The documents are read in two rounds, each all at once where the store is not local
    (:func:`_read_documents`): every node's ``zarr.json``, then the v2 documents of the
    nodes that have none. On an S3 server answering each request 30 ms late (moto on the
    2-core machine, 2026-12-03), ``pipeline.plan`` of one variable of a Dataset of 100 v2
    variables took 80.8 and 79.2 s reading them one at a time, 20.7 and 20.6 s on threads;
    10.6-13.8 s without the check."""
    path = path.strip("/")
    nodes = [path]
    if around and path:
        parts = path.split("/")
        nodes += ["/".join(parts[:i]) for i in range(len(parts))]
        group = "/".join(parts[:-1])
        try:
            names = location.list(group)
        except Exception:  # a store that lists nothing: its members are read as they are
            names = []
        nodes += [
            f"{group}/{name}" if group else name
            for name in names
            if name != parts[-1] and is_member_name(name)
        ]
    groups = set(nodes[1 : len(path.split("/")) + 1]) if around and path else set()
    v3 = _read_documents(location, [_key_in(node, "zarr.json") for node in nodes])
    v2_nodes = [n for n in nodes if v3[_key_in(n, "zarr.json")] is None]
    v2 = _read_documents(
        location,
        [_key_in(n, name) for n in v2_nodes for name in _OBJECT_DOCUMENTS if name != "zarr.json"]
        + [_key_in(n, ".zmetadata") for n in v2_nodes if n in groups],
    )
    found = {**v3, **v2}
    members = [n for n in nodes if n not in groups and n != path]
    named = _needed_members(path, members, found) if around and path else set()
    for node in nodes:
        member = node not in groups and node != path
        if not member or node.rpartition("/")[2] in named:
            _check_not_broken(location, node, path, found, member)
        _check_node_documents(location, node, path, found)
        if around and (not member or node.rpartition("/")[2] in named):
            _check_dimension_names(location, node, path, found, member)
        if around and node in groups:
            _check_consolidated_dimension_names(location, node, path, found)


#: Threads that read a remote store's metadata documents at once (:func:`check_documents`).
DOCUMENT_READERS = 16


def _key_in(node: str, name: str) -> str:
    return f"{node}/{name}" if node else name


def _read_documents(location: Location, keys: list[str]) -> dict[str, Any]:
    """Each of ``keys``: its JSON, parsed; None where it is absent, unreadable or no JSON
    (left to the opening that follows). A remote store's are read at once: on its file
    system's event loop, one request each (:meth:`Location.read_small`), else on up to
    :data:`DOCUMENT_READERS` threads."""

    def one(key: str) -> Any:
        try:
            raw = location.read(key)
        except Exception as e:  # a folder, unreadable: the opening says so
            if is_link_refusal(e):  # a link to nothing, which Zarr would read as absent
                raise
            if is_not_a_file_refusal(e):  # a named pipe, which zarr-python's read waits on
                raise
            return None
        if raw is None:
            return None
        try:
            return _Parsed(json.loads(raw))
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            return _Broken(_where_broken(e))

    if not location.is_local and keys:
        raw = location.read_small(keys)  # an asynchronous file system's: a GET each
        if raw is not None:
            return {k: None if b is None else _parsed(b) for k, b in raw.items()}
    if location.is_local or len(keys) < 2:
        return {k: one(k) for k in keys}
    with ThreadPoolExecutor(min(DOCUMENT_READERS, len(keys))) as pool:
        return dict(zip(keys, pool.map(one, keys), strict=True))


def _parsed(raw: bytes) -> _Parsed | None:
    """``raw`` parsed as JSON; None where it is none (left to the opening that follows)."""
    try:
        return _Parsed(json.loads(raw))
    except Exception:
        return None


@dataclass(frozen=True)
class _Parsed:
    """A document read and parsed (its JSON may be ``null``)."""

    doc: Any


@dataclass(frozen=True)
class _Broken:
    """A document read that is not JSON: where, in a few words (:func:`_where_broken`)."""

    said: str


def _where_broken(e: ValueError) -> str:
    """Where a document's JSON breaks, in a few words: ``Expecting ',' delimiter at line 3
    column 5``; ``not UTF-8 text`` for bytes that are no text."""
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    return "not UTF-8 text"


def _needed_members(path: str, members: list[str], found: dict[str, Any]) -> set[str]:
    """The names of those of ``members`` (nodes of the group of the variable at ``path``)
    that a run of the variable reads, by the documents read (``found``): what xarray's
    reading of it, and the arrays carried beside it, follow from its dimension names and CF
    references (:func:`pipeline.store.references.needed_members`), never a word of free text
    (a ``long_name``, a ``comment``: one had made a broken sibling named ``surface`` refuse
    the run of a variable whose ``long_name`` was "air temperature at surface")."""
    group, _, name = path.rpartition("/")
    variable = _variable_documents(path, found)
    if variable is None:  # its own documents are refused (or opened) first
        return set()
    infos: dict[str, tuple[tuple[str | None, ...] | None, dict[str, Any]] | None] = {}
    for node in members:
        if not _is_group(node, found):
            infos[node.rpartition("/")[2]] = _variable_documents(node, found)
    group_attrs = _group_attributes(group, found)
    return references.needed_members(name, variable[0], variable[1], group_attrs, infos)


def _parsed_object(found: dict[str, Any], key: str) -> dict[str, Any] | None:
    parsed = found.get(key)
    return parsed.doc if isinstance(parsed, _Parsed) and isinstance(parsed.doc, dict) else None


def _is_group(node: str, found: dict[str, Any]) -> bool:
    """Whether the node is a group by its documents (a v3 ``zarr.json`` saying so, a v2
    ``.zgroup`` and no ``.zarray``): xarray reads no group of a group as a variable."""
    v3 = _parsed_object(found, _key_in(node, "zarr.json"))
    if v3 is not None:
        return v3.get("node_type") == "group"
    return found.get(_key_in(node, ".zgroup")) is not None and (
        found.get(_key_in(node, ".zarray")) is None
    )


def _group_attributes(group: str, found: dict[str, Any]) -> dict[str, Any]:
    """The attributes of the group ``group``, by its documents ({} where none are read)."""
    v3 = _parsed_object(found, _key_in(group, "zarr.json"))
    if v3 is not None:
        attrs = v3.get("attributes")
    else:
        attrs = _parsed_object(found, _key_in(group, ".zattrs"))
    return attrs if isinstance(attrs, dict) else {}


def _variable_documents(
    node: str, found: dict[str, Any]
) -> tuple[tuple[str | None, ...] | None, dict[str, Any]] | None:
    """(dimension names, attributes) of the array ``node`` by its documents, as xarray reads
    them (``pipeline.store.datasets.variable_of``: v3 ``dimension_names``, () for a v3
    scalar without; v2 ``_ARRAY_DIMENSIONS`` as xarray reads it, :func:`xarray_dimension_names`,
    else the names of the ``.zarray``'s NCZarr record; a null name is xarray's dimension None;
    None where it has none, or one not a name); None where one of its documents is not JSON
    (or not an object), so what it names is unknown."""
    keys = [_key_in(node, n) for n in (*_OBJECT_DOCUMENTS, ".zmetadata")]
    if any(isinstance(found.get(k), _Broken) for k in keys):
        return None
    v3 = found.get(_key_in(node, "zarr.json"))
    if isinstance(v3, _Parsed):
        if not isinstance(v3.doc, dict) or not isinstance(v3.doc.get("attributes", {}), dict):
            return None
        attrs = v3.doc.get("attributes") or {}
        names = v3.doc.get("dimension_names")
        shape = v3.doc.get("shape")
        if names is None and shape == []:
            names = []
    else:
        zattrs = found.get(_key_in(node, ".zattrs"))
        zarray = found.get(_key_in(node, ".zarray"))
        if isinstance(zattrs, _Parsed) and not isinstance(zattrs.doc, dict | None):
            return None
        if isinstance(zarray, _Parsed) and not isinstance(zarray.doc, dict):
            return None
        attrs = zattrs.doc or {} if isinstance(zattrs, _Parsed) else {}
        meta = zarray.doc if isinstance(zarray, _Parsed) else {}
        shape = meta.get("shape")
        if "_ARRAY_DIMENSIONS" in attrs:  # as xarray reads it: an object's keys, ...
            found_names = xarray_dimension_names(attrs["_ARRAY_DIMENSIONS"])
            names = list(found_names) if found_names is not None else None
        else:
            record = meta.get("_NCZARR_ARRAY")
            refs = record.get("dimrefs") if isinstance(record, dict) else None
            names = [r.rsplit("/", 1)[-1] if isinstance(r, str) else r for r in refs or []]
            names = names if refs is not None else None
    dims: tuple[str | None, ...] | None = None
    if (
        isinstance(names, list)
        and all(n is None or isinstance(n, str) for n in names)
        and (not isinstance(shape, list) or len(shape) == len(names))
    ):
        dims = tuple(names)
    return dims, attrs


def _check_not_broken(
    location: Location, node: str, path: str, found: dict[str, Any], member: bool
) -> None:
    """:func:`check_documents`: refuse a document of ``node`` (the input's, a group's above
    it, or, ``member``, a member of its group that it names) that is not JSON."""
    for name in (*_OBJECT_DOCUMENTS, ".zmetadata"):
        key = _key_in(node, name)
        broken = found.get(key)
        if not isinstance(broken, _Broken):
            continue
        what = _OBJECT_DOCUMENTS.get(name, "Zarr v2 consolidated metadata")
        whose = (
            f" of {node.rpartition('/')[2]!r}, which {path.rpartition('/')[2]!r} names (a "
            "coordinate or reference xarray reads with it)"
            if member
            else ""
        )
        fix = (
            "restore it, or write it again from the group (zarr.consolidate_metadata)"
            if name == ".zmetadata"
            else "restore it"
        )
        raise InputError(
            f"{location.shown(key)}: not JSON ({broken.said}), the {what}{whose}; {fix}",
            store=location.join(key),
            array=path,
            status="unreadable",
            reason=f"{name}: not JSON ({broken.said})",
        )


def xarray_dimension_names(value: Any) -> tuple[Any, ...] | None:
    """A Zarr v2 ``_ARRAY_DIMENSIONS`` attribute's value as xarray reads it: a list's
    entries, a JSON object's keys, a text of one letter as that one name (``"x"`` is
    ``("x",)``); None for a value xarray cannot read as names at all (a number, a boolean,
    null: ``xr.open_zarr`` raises a TypeError; a longer text: xarray's zarr backend pairs
    the value's items with the array's chunks, a text's letters, and its ``Variable`` then
    takes a text as one name, so that only a one-letter text of a 1-dimensional array
    reads, 2025.6.0). The entries are as stored (text, or null, a number, ... where the
    attribute is damaged: :func:`dimension_names_problem` says which are)."""
    if isinstance(value, str):
        return (value,) if len(value) == 1 else None
    if isinstance(value, list | tuple | dict):
        return tuple(value)
    return None


def _names(count: int) -> str:
    return f"{count} name" if count == 1 else f"{count} names"


def dimension_names_problem(
    value: Any,
    shape: tuple[int, ...],
    zarr_format: int,
    in_dataset: bool,
    written: bool = True,
    null_axes: bool = True,
) -> str | None:
    """What is wrong, in a few words, with the stored dimension names ``value`` (a Zarr v2
    ``_ARRAY_DIMENSIONS`` attribute, or a v3 ``dimension_names``, as parsed from their JSON)
    of an array of ``shape``, where ``xr.open_zarr`` (or zarr-python, for v3) fails on them or
    the output (Zarr v3) cannot hold them; None where they are read as xarray reads them
    (:func:`xarray_dimension_names`), some perhaps null or empty. ``in_dataset``: the array is
    a variable of an xarray Dataset (a group's member), whose dimension names xarray requires
    one size each: a name given to two axes of different sizes is refused then (xarray's
    "conflicting sizes for dimension"); an array alone keeps them as given. A v3 array with
    no ``dimension_names`` (null) is not looked at here (an array without dimension names).
    ``written`` False: the array is not written to the output (another variable of the
    Dataset), so a v2 number for a name, which xarray reads, is no problem. ``null_axes``
    False: a null name for axes of different sizes is no problem either (the input itself:
    Zarr's unnamed axes, as tensorstore writes a partly labelled array, ``["time", null,
    null]``; xarray cannot read it as a Dataset variable, so ``datasets.variable_of`` runs it
    as an array alone, as one without dimension names)."""
    key = "_ARRAY_DIMENSIONS" if zarr_format == 2 else "dimension_names"
    fails = (
        "zarr-python cannot open it"
        if zarr_format == 3
        else "xr.open_zarr fails on it"
        if in_dataset
        else "the output cannot carry it"
    )
    ndim = len(shape)
    of = f"for a {ndim}-dimensional array ({fails})"
    if zarr_format == 2:
        names = xarray_dimension_names(value)
    else:  # zarr-python reads any iterable (a text's letters, an object's keys)
        names = tuple(value) if isinstance(value, str | list | dict) else None
    if names is None:
        kind = "null" if value is None else _JSON_KINDS.get(type(value), "no list")
        if isinstance(value, str):
            kind = f"the text {value!r}"
        return f"{key} is {kind}, not a list of dimension names ({fails})"
    if len(names) != ndim:
        if isinstance(value, str) and zarr_format == 2:
            return f"{key} is the text {value!r}, one name, {of}"
        if isinstance(value, dict):
            return f"{key} is a JSON object of {len(names)} keys, read as names, {of}"
        return f"{key} lists {_names(len(names))} {of}"
    for axis, name in enumerate(names):
        if name is None or isinstance(name, str):
            continue
        said = json.dumps(name)
        kind = _JSON_KINDS.get(type(name), "no text")
        if zarr_format == 3 or isinstance(name, list | dict):
            why = fails
        elif not written:
            continue  # xarray reads a number as a name, and the output does not hold it
        else:  # xarray reads a number as a name, which Zarr v3's dimension_names cannot hold
            why = "a Zarr v3 output cannot hold it"
        return f"{key} gives axis {axis} the name {said}, {kind}, not text ({why})"
    if in_dataset:  # xarray's dimension None (a null name) too
        for name in dict.fromkeys(names):
            if name is None and not null_axes:
                continue
            sizes = [size for n, size in zip(names, shape, strict=True) if n == name]
            if len(set(sizes)) > 1:
                said = "null" if name is None else repr(name)
                return (
                    f"{key} names {said} for {len(sizes)} axes, of "
                    f"{' and '.join(str(s) for s in sizes)} elements (a dimension of an "
                    "xarray Dataset has one size: xr.open_zarr fails on it)"
                )
    return None


def _stored_dimension_names(
    node: str, found: dict[str, Any]
) -> tuple[str, Any, tuple[int, ...], int] | None:
    """The stored dimension names of the array ``node``, from its documents as read
    (``found``: :func:`_read_documents`): (the key of the document that holds them, their
    value, the array's shape, its Zarr format); None for no array, one without them (v3
    ``dimension_names`` absent or null, v2 ``_ARRAY_DIMENSIONS`` absent: an NCZarr record's
    are ``datasets.nczarr_problem``'s), or a shape that is no list of numbers (zarr-python's
    own refusal names it)."""
    v3 = found.get(_key_in(node, "zarr.json"))
    if isinstance(v3, _Parsed) and isinstance(v3.doc, dict):
        doc, key, zarr_format = v3.doc, _key_in(node, "zarr.json"), 3
        if doc.get("node_type") != "array" or doc.get("dimension_names") is None:
            return None
        value, shape = doc["dimension_names"], doc.get("shape")
    else:
        meta = found.get(_key_in(node, ".zarray"))
        attrs = found.get(_key_in(node, ".zattrs"))
        if not isinstance(meta, _Parsed) or not isinstance(meta.doc, dict):
            return None
        if not isinstance(attrs, _Parsed) or not isinstance(attrs.doc, dict):
            return None
        if "_ARRAY_DIMENSIONS" not in attrs.doc:
            return None
        key, zarr_format = _key_in(node, ".zattrs"), 2
        value, shape = attrs.doc["_ARRAY_DIMENSIONS"], meta.doc.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) for n in shape):
        return None
    return key, value, tuple(shape), zarr_format


def _dimension_names_fix(shape: tuple[int, ...], zarr_format: int, problem: str) -> str:
    """What to write in place of damaged dimension names (:func:`dimension_names_problem`'s
    ``problem``) of an array of ``shape``, in words."""
    if not shape:
        return "restore it: an empty list (the array has no dimensions)"
    return (
        f"restore it: a list of {_names(len(shape))}, one per dimension, each text"
        + (" (or null)" if zarr_format == 3 else "")
        + (", each used for axes of one size" if "axes, of" in problem else "")
    )


def _check_dimension_names(
    location: Location, node: str, path: str, found: dict[str, Any], member: bool
) -> None:
    """:func:`check_documents`: refuse the stored dimension names of the array ``node`` (the
    input, or a member of its group that it names: a coordinate, a CF reference) that
    :func:`dimension_names_problem` finds wrong, in one line naming the file (its
    ``.zattrs`` or ``zarr.json``), the problem and the fix. A v2 array's damaged
    ``_ARRAY_DIMENSIONS`` (another length than its dimensions: helper-47a) had made the input
    variable an array alone, its Dataset silently dropped, where xarray refuses the store;
    other damage failed as xarray's bare TypeError, or in a line naming no file; a v3 one,
    zarr-python's "ValueError: `dimension_names` and `shape` ...", naming no file either."""
    stored = _stored_dimension_names(node, found)
    if stored is None:
        return
    key, value, shape, zarr_format = stored
    # the input's own null names for axes of different sizes are unnamed axes: an array
    # alone (datasets.variable_of), not damage
    problem = dimension_names_problem(value, shape, zarr_format, bool(path), null_axes=member)
    if problem is None:
        return
    whose = (
        f" (of {node.rpartition('/')[2]!r}, which {path.rpartition('/')[2]!r} names: a "
        "coordinate or reference xarray reads with it)"
        if member
        else ""
    )
    fix = _dimension_names_fix(shape, zarr_format, problem)
    raise InputError(
        f"{location.shown(key)}{whose}: {problem}; {fix}",
        store=location.join(key),
        array=path,
        status="unreadable",
        reason=f"{key.rpartition('/')[2]}: {problem}",
        fix=fix,
    )


def _check_consolidated_dimension_names(
    location: Location, node: str, path: str, found: dict[str, Any]
) -> None:
    """:func:`check_documents`: refuse a v3 group's consolidated metadata (in its
    ``zarr.json``, which ``xr.open_zarr`` reads by default) that holds, for any array, stored
    dimension names zarr-python cannot parse (:func:`dimension_names_problem`): it then
    opens the group from it for none, and xarray fails on the input; the pipeline reads each
    array's own metadata, and had run on, silently, where xarray refuses. One line naming the
    file, the array and the fix (consolidate again). A v2 group's ``.zmetadata`` that differs
    from an array's own is ``datasets.stale``'s."""
    key = _key_in(node, "zarr.json")
    parsed = found.get(key)
    if not isinstance(parsed, _Parsed) or not isinstance(parsed.doc, dict):
        return
    copy = parsed.doc.get("consolidated_metadata")
    members = copy.get("metadata") if isinstance(copy, dict) else None
    if not isinstance(members, dict):
        return
    for name, doc in members.items():
        stored = _stored_dimension_names("", {"zarr.json": _Parsed(doc)})
        if stored is None or stored[3] != 3:
            continue
        _, value, shape, _ = stored
        problem = dimension_names_problem(value, shape, 3, True)
        if problem is None or "zarr-python" not in problem:
            continue  # parsed: xarray's reading of the copy is datasets.stale's concern
        fix = (
            "consolidate the input's metadata again (zarr.consolidate_metadata on its "
            "store), which copies each array's own"
        )
        raise InputError(
            f"{location.shown(key)}: its consolidated metadata, which xr.open_zarr reads, is "
            f"damaged for {name!r}: {problem}; {fix}",
            store=location.join(key),
            array=path,
            status="unreadable",
            reason=f"zarr.json: consolidated metadata of {name!r}: {problem}",
            fix=fix,
        )


def unreadable_dimension_names(
    location: Location, group: str, skip: tuple[str, ...]
) -> tuple[str, str, str] | None:
    """The first array directly in the group ``group`` of ``location`` (besides those of
    ``skip``) whose stored dimension names ``xr.open_zarr`` of the group (or, v3,
    zarr-python) fails on (:func:`dimension_names_problem`; a number for a name, which
    xarray reads, is not one): (the key of its ``.zattrs`` or ``zarr.json``, the problem in
    a few words, the fix in words); None where there is none, or the group cannot be listed.
    xarray reads every array of a group to open it, the variables it then drops too, so such
    an array that nothing the input names (:func:`check_documents` refuses those) makes the
    frame of a Dataset output unreadable to xarray; a line naming only the group and
    xarray's bare reason ("'int' object is not iterable") had said so."""
    try:
        names = location.list(group)
    except Exception:
        return None
    nodes = [_key_in(group, n) for n in sorted(names) if n not in skip and is_member_name(n)]
    v3 = _read_documents(location, [_key_in(n, "zarr.json") for n in nodes])
    v2_nodes = [n for n in nodes if v3[_key_in(n, "zarr.json")] is None]
    v2 = _read_documents(
        location, [_key_in(n, d) for n in v2_nodes for d in (".zarray", ".zattrs")]
    )
    found = {**v3, **v2}
    for node in nodes:
        stored = _stored_dimension_names(node, found)
        if stored is None:
            continue
        key, value, shape, zarr_format = stored
        problem = dimension_names_problem(value, shape, zarr_format, True, written=False)
        if problem is not None:
            return key, problem, _dimension_names_fix(shape, zarr_format, problem)
    return None


def _check_node_documents(location: Location, node: str, path: str, found: dict[str, Any]) -> None:
    """:func:`check_documents` for the documents of the one node ``node``, as read
    (``found``: :func:`_read_documents`)."""
    for name, what in _OBJECT_DOCUMENTS.items():
        key = _key_in(node, name)
        parsed = found.get(key)
        if not isinstance(parsed, _Parsed):
            continue  # absent, unreadable, not JSON (:func:`_check_not_broken`'s), or not
            # read (a v3 node's v2 documents)
        doc = found_doc = parsed.doc
        if name == "zarr.json" and isinstance(doc, dict):
            found_doc, what = doc.get("attributes"), "its attributes"
        if isinstance(found_doc, dict) or (found_doc is None and name in ("zarr.json", ".zattrs")):
            if name == "zarr.json":
                return  # a v3 node: its v2 documents, if any, are not read
            continue
        said = _JSON_KINDS.get(type(found_doc), "no JSON object")
        attributes = "attributes" in what
        fix = "make them a JSON object ({} for none)" if attributes else "restore it"
        raise InputError(
            f"{location.shown(key)}: {'' if attributes else 'the '}{what} "
            f"{'are' if attributes else 'is'} {said}, not a JSON object; {fix}",
            store=location.join(key),
            array=path,
            status="unreadable",
            reason=f"{name}: {what} {said}",
        )


def open_zarr_array(
    location: Location, path: str, mode: Literal["r", "r+"] = "r", checked: bool = False
) -> Any:
    """Open an array with Zarr, turning the usual mistakes into one-line InputErrors, with
    ``store`` (where the array was looked for: the store and ``array``, the path in it, joined)
    and ``status``: 'absent' (no store, or no array at the path), 'unreadable' (metadata Zarr
    cannot read; ``reason`` says why) or 'group' (a group, not an array; ``arrays``: the arrays
    in it). ``checked``: the caller has just made :func:`check_documents` of ``path`` (with
    ``around`` or not), which is then not made again."""
    import zarr

    where = location.join(path)
    location.check_url_safe(path)
    # a store whose server lists no folders (HTTP 403 or 404 for the folder's own URL) does
    # not show itself, but its array's metadata does
    try:
        shown = location.exists()
    except Exception as e:  # the store's answer (a wrong secret: S3 answers HEAD with 403)
        if missing_credentials(e):  # said as the store's, not "an S3 store needs credentials"
            raise InputError(
                f"cannot read input store {location}: no credentials were found for it: "
                f"{CREDENTIALS_FIX}",
                store=where,
                array=path,
                status="unreadable",
                reason="no-credentials",
            ) from None
        failure = storage_failure(e)
        if failure is None:
            raise
        raise unreadable_store(location, path, failure) from None
    if not shown and not _metadata_shows(location, path):
        root = location.join("")
        if location.is_local and os.path.islink(root):  # a link to nothing: not "absent",
            # which `pipeline generate` would be named to make (h72c)
            raise InputError(
                f"input store {dangling_input(root)}",
                store=where,
                array=path,
                status="absent",
                reason="dangling link",
            )
        raise InputError(
            f"input store {name_shown(str(location))} does not exist: fix input.store",
            store=where,
            array=path,
            status="absent",
        )
    if not checked:
        check_documents(location, path)
    try:
        with format_warnings_ignored():
            node = zarr.open(
                store=location.zarr_store(read_only=(mode == "r")), path=path or None, mode=mode
            )
    except FileNotFoundError:
        if not path and _members_under_dot(location):
            raise InputError(
                f"no Zarr array at {location}: the archive's members are named './...' (as "
                "`tar -C DIR -cf FILE .` names them), which Zarr cannot address; pack the "
                "store's contents by name instead (`tar -C DIR -cf FILE $(ls -A DIR)`) or as a "
                "zip",
                store=where,
                array=path,
                status="absent",
                reason="members under './'",
            ) from None
        listed = consolidated_listing(location, path)
        if listed is not None:
            copy, entry, document = listed
            raise InputError(
                f"no Zarr array at {location.shown(path)}: its own metadata {document} is gone, "
                f"but the consolidated metadata {location.shown(copy)} still lists it as "
                f"{entry!r} (xr.open_zarr reads that copy, the pipeline each array's own "
                f"metadata): write that entry back to {document}, or run on a fresh copy of "
                "the store",
                store=where,
                array=path,
                status="absent",
                reason="listed only in consolidated metadata",
            ) from None
        chunks = _chunks_without_metadata(location, path)
        if chunks is not None:
            raise InputError(
                f"no Zarr array at {location.shown(path)}: it holds chunks ({chunks}) but no "
                "metadata (zarr.json or .zarray), which Zarr reads first; restore the array's "
                "metadata document, or point input.store (or input.array) at the folder that "
                "holds it",
                store=where,
                array=path,
                status="absent",
                reason="no metadata",
            ) from None
        if location.archive() is None:  # a file is no store, whatever input.array names
            kind = _plain_file_kind(location)
            root = location.local_root or ""
            if kind is not None and os.path.basename(root) in _METADATA_NAMES:
                folder = os.path.dirname(root)  # in.zarr/zarr.json: the document, not its store
                raise InputError(
                    f"input store {location} is the Zarr metadata document of "
                    f"{name_shown(folder)}, not a store: set input.store to that folder",
                    store=where,
                    array=path,
                    status="absent",
                    reason="a metadata document",
                ) from None
            if kind is not None:
                fix = (
                    "convert it to Zarr first (in xarray: xr.open_dataset(FILE)"
                    ".to_zarr(STORE)), or set input.store to the Zarr store's folder"
                    if os.path.isfile(root)
                    else "set input.store to the Zarr store's folder"  # a pipe holds no data
                )
                raise InputError(
                    f"input store {location} is {kind}, not a Zarr store (a folder of keys "
                    f"with its zarr.json or .zarray): {fix}",
                    store=where,
                    array=path,
                    status="absent",
                    reason=kind.rpartition(", ")[2] if kind.startswith("a symbolic") else kind,
                ) from None
        plain = _plain_folder_refusal(location, path)
        if plain is not None:
            raise plain from None
        raise InputError(
            f"no Zarr array at {name_shown(f'{location}/{path}' if path else str(location))}; "
            "check input.array" + _did_you_mean(location, path),
            store=where,
            array=path,
            status="absent",
        ) from None
    except Exception as e:  # zarr raises several types for unreadable metadata
        if isinstance(e, ImportError):  # zarr's own import (a zarr.py of the user's): no
            raise  # document's fault; the command's line names the module and its file
        failure = storage_failure(e)  # the store's answer (HTTP 403, 500), not the bytes'
        if failure is not None:
            raise unreadable_store(location, path, failure) from None
        if codecs.is_unknown_codec(e):
            raise unknown_codec(location, path, codecs.named_codec(e), cause(e)) from None
        raise unreadable_metadata(location, path, cause(e)) from None
    if isinstance(node, zarr.Array):
        missing = codecs.missing_codec(node)
        if missing is not None:
            raise unknown_codec(location, path, *missing)
    if isinstance(node, zarr.Group):
        with format_warnings_ignored():  # opening each member warns again
            found = node.members(max_depth=None)
        # each named by its path from the store's root, what input.array takes: the path
        # in the group alone ('a' of the group 'g/h') named no array of the store
        members = sorted(key_under(path, k) for k, v in found if isinstance(v, zarr.Array))
        hint = f": {names_shown(members[:8])}{', ...' if len(members) > 8 else ''}"
        raise InputError(
            f"{location.shown(path)} is a Zarr group, not an array: set input.array to the "
            f"path of an array in it{hint if members else ''}",
            store=where,
            array=path,
            status="group",
            arrays=members,
        )
    return node


#: How many folders :func:`_arrays_below` looks into at most, and how many names in them it
#: asks about (a few reads each): a hint, not a search.
_MOST_FOLDERS_LOOKED_INTO = 64
_MOST_NAMES_ASKED = 256


def _plain_folder_refusal(location: Location, path: str) -> InputError | None:
    """The refusal of an input whose ``path`` (the store's root for '') is a folder of no
    Zarr metadata (a plain folder in a Dataset's group, an empty folder): it says so, with
    the arrays below it (:func:`_arrays_below`) for input.array, else names input.store where
    the folder is the store's root. Fields ``store``, ``array``, ``status`` 'absent',
    ``arrays``. It had been "no Zarr array at ...; check input.array", input.array being ''
    and the arrays in the folder unsaid. None where ``path`` is no folder, or a node."""
    try:
        listed = location.entries(path)
        if node_type(location, path) != "none" or (path and not listed):
            return None
        found = _arrays_below(location, path)
    except Exception:  # a hint only: the plain line
        return None
    where = location.join(path)
    what = "an empty folder" if not listed else "a folder of no Zarr metadata"
    if found:
        fix = f"set input.array to the path of one of the arrays below it: {names_shown(found[:8])}"
        fix += ", ..." if len(found) > 8 else ""
    elif path:
        fix = "check input.array" + _did_you_mean(location, path)
    else:
        fix = "set input.store to the Zarr store's folder (its zarr.json or .zarray is there)"
    return InputError(
        f"no Zarr array at {location.shown(path)}: it is {what} (no zarr.json, .zarray or "
        f".zgroup); {fix}",
        store=where,
        array=path,
        status="absent",
        arrays=found,
    )


def _arrays_below(location: Location, path: str) -> list[str]:
    """The paths (from the store's root) of the Zarr arrays in the folder ``path`` and its
    groups and plain folders below, as their metadata says, in the order found, breadth
    first, looking into :data:`_MOST_FOLDERS_LOOKED_INTO` folders and asking about
    :data:`_MOST_NAMES_ASKED` names at most."""
    found: list[str] = []
    folders, looked, asked = [path], 0, 0
    while folders and looked < _MOST_FOLDERS_LOOKED_INTO:
        folder = folders.pop(0)
        looked += 1
        try:
            names = location.entries(folder)
        except Exception:  # a file, not a folder: nothing below it
            continue
        for name in names:
            if not is_member_name(name):
                continue
            asked += 1
            if asked > _MOST_NAMES_ASKED:
                return found
            below = key_under(folder, name)
            kind = node_type(location, below)
            if kind == "array":
                found.append(below)
            elif kind in ("group", "none"):
                folders.append(below)
    return found


def unreadable_member(
    location: Location, group: str, skip: tuple[str, ...] = ()
) -> InputError | None:
    """The first member of the group ``group`` (by name; ``skip``: names not to try) whose
    metadata zarr-python refuses to open, as :func:`unreadable_metadata` refuses it, with
    the words of a Dataset's other member (xarray opens every member of the group, so one
    such member keeps it from opening the Dataset); None where every member opens, or the
    group cannot be listed. For a Dataset that xarray cannot open: which document to mend."""
    import zarr

    try:
        names = location.entries(group)
    except Exception:
        return None
    store = location.zarr_store(read_only=True)
    for name in names:
        if name in skip or not is_member_name(name):
            continue
        path = key_under(group, name)
        try:
            with format_warnings_ignored():
                zarr.open(store=store, path=path, mode="r")
        except Exception as e:
            if isinstance(e, FileNotFoundError) or storage_failure(e) is not None:
                continue  # no node there, or the store's answer: not the document's fault
            if codecs.is_unknown_codec(e):
                return unknown_codec(location, path, codecs.named_codec(e), cause(e), other=_ALONE)
            return unreadable_metadata(
                location,
                path,
                cause(e),
                what=f"another member of the Dataset {location.shown(group)}, which xarray "
                "reads to open it",
                other=_ALONE,
            )
    return None


#: The fix of a Dataset whose other member keeps xarray from opening it.
_ALONE = "set output.array: '' to write the variable alone, without its Dataset"


def unreadable_metadata(
    location: Location, path: str, reason: str, what: str = "", other: str = ""
) -> InputError:
    """The refusal of a node whose metadata document zarr-python refuses to open, for a value
    it does not take (an unknown data type, chunk grid or chunk key encoding, an ``order``
    other than C or F, a fill value its dtype cannot hold, chunks of another number of axes
    than the shape): one line naming the document (v3's ``zarr.json``, else v2's ``.zarray``
    or ``.zgroup``), zarr-python's reason, and the fix. InputError, fields ``store`` (the
    document), ``array``, ``status`` 'unreadable', ``reason``. It had been "cannot open
    STORE/PATH: ValueError: ...", naming neither the document nor what to do. A data type
    that is an array's real one, which zarr-python does not read (:func:`unread_data_type`:
    tensorstore's ``bfloat16``), is no value to mend: the line says the dtype, as the plan's
    refusal of a dtype the stages do not compute on does, with "convert" (field ``dtype``).
    Nor is a ``transpose`` codec before ``sharding_indexed`` whose inner chunks cut the
    transposed shard (:func:`transposed_sharding`: valid Zarr v3, which tensorstore writes,
    that zarr-python checks against the shard untransposed): the line says so, and to write
    the array again without that transpose (field ``codecs``); it had said to mend a value
    the document names, when none is wrong. ``what``: what the node is to the run, in words;
    ``other``: one more fix, in a line's words."""
    key = key_under(path, "zarr.json")
    if not location.exists(key):
        for v2 in (".zarray", ".zgroup"):
            if location.exists(key_under(path, v2)):
                key = key_under(path, v2)
                break
    said = f"{location.shown(key)} ({what})" if what else location.shown(key)
    found = _read_documents(location, [key])[key]
    doc = found.doc if isinstance(found, _Parsed) else None

    def refused(line: str, **fields: Any) -> InputError:
        return InputError(
            line + (f", or {other}" if other else ""),
            store=location.join(key),
            array=path,
            status="unreadable",
            reason=reason,
            **fields,
        )

    name = unread_data_type(doc)
    if name is not None:  # a data type of the array's own, which no edit of the name mends
        tool = " (tensorstore does)" if OTHER_TOOLS_DATA_TYPES.fullmatch(name) else ""
        if what:
            says = f"{said} names the data type {name}, which zarr-python cannot read ({reason})"
            fix = f"convert that array first, with a tool that reads it{tool}"
        else:
            says = (
                f"unsupported dtype {name}: {said} names a data type zarr-python cannot read "
                f"({reason}), and {stages.COMPUTED_ON}"
            )
            fix = f"convert the input first, with a tool that reads it{tool}"
        return refused(f"{says}; {fix}", dtype=name)
    layout = transposed_sharding(doc)
    if layout is not None:
        words, shard, inner = layout
        return refused(
            f"{said} puts {words}: valid Zarr v3 (tensorstore writes it) that zarr-python "
            f"cannot read ({reason}); write the array again without that transpose, with a "
            f"tool that reads it (tensorstore does), in shards {shard} of inner chunks {inner}",
            codecs="transpose before sharding_indexed",
        )
    beyond = _integer_fill_beyond_range(doc)
    if beyond is not None:  # zarr-python's reason names neither the value nor the dtype
        shown, dtype = beyond
        info = np.iinfo(dtype)
        return refused(
            f"{said} names the fill value {shown}, beyond {dtype.name}'s range [{info.min}, "
            f"{info.max}], which zarr-python cannot read ({reason}): write the value absent "
            f"chunks mean, one {dtype.name} holds, as the fill value in that document"
            f"{then_consolidated(location, path)}"
        )
    floats = _float_fill_of_integers(doc)
    if floats is not None:  # the data_type edited from a float one, or the fill value
        shown, dtype = floats
        return refused(
            f"{said} names the fill value {shown}, a float's, for its data type {dtype.name}, "
            f"which zarr-python cannot read ({reason}): if the data type was changed after "
            "the chunks were written, write back the one they were written with; else write "
            f"the value absent chunks mean, one {dtype.name} holds, as the fill value in that "
            f"document{then_consolidated(location, path)}"
        )
    return refused(
        f"{said} holds metadata zarr-python cannot read ({reason}): mend the value it names "
        f"in that document{then_consolidated(location, path)}, or write the array again with "
        "zarr-python or xarray"
    )


def _integer_array_fill(doc: Any) -> tuple[np.dtype, Any] | None:
    """The dtype and the fill value, as JSON gives it, of a metadata document (``doc``, its
    JSON) of an integer array (v3's ``data_type``, v2's ``dtype``), where the fill value is
    not a boolean; None for any other document (not an array's, a data type NumPy does not
    name, another kind of data type)."""
    try:
        name = doc["data_type"] if doc.get("zarr_format") == 3 else doc["dtype"]
        dtype = np.dtype(name)
        value = doc["fill_value"]
    except Exception:  # not an array's document, or a data type NumPy does not name
        return None
    if dtype.kind not in "iu" or isinstance(value, bool):
        return None
    return dtype, value


def _integer_fill_beyond_range(doc: Any) -> tuple[str, np.dtype] | None:
    """Where a metadata document (``doc``, its JSON) of an integer array names a whole
    number as its fill value that the dtype cannot hold (int8's 300, uint8's -1, int32's
    1e40), which zarr-python refuses with an OverflowError naming neither: the value as the
    document says it, and the dtype; None for any other document."""
    found = _integer_array_fill(doc)
    if found is None or not isinstance(found[1], (int, float)):
        return None
    dtype, value = found
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    info = np.iinfo(dtype)
    if info.min <= int(value) <= info.max:
        return None
    return json.dumps(value), dtype


def _float_fill_of_integers(doc: Any) -> tuple[str, np.dtype] | None:
    """Where a metadata document (``doc``, its JSON) of an integer array names a fill value
    that only a float type has (``"NaN"``, ``"Infinity"``, ``"-Infinity"``, v3's hex
    ``"0x7fc00000"``, a number with a fraction), which zarr-python refuses ("Invalid type:
    NaN. Expected an integer."): the value as the document says it, and the dtype; None for
    any other document. A float array whose ``data_type`` (``dtype``) was edited to an
    integer one of the same size keeps such a fill value (h72d: the line had said only to
    mend "the value it names"); it is also what a fill value written wrong looks like, so the
    line gives both fixes."""
    found = _integer_array_fill(doc)
    if found is None:
        return None
    dtype, value = found
    if isinstance(value, str):
        floats = value in ("NaN", "Infinity", "-Infinity") or value.lower().startswith("0x")
    else:
        floats = isinstance(value, float) and math.isfinite(value) and not value.is_integer()
    return (json.dumps(value), dtype) if floats else None


def transposed_sharding(doc: Any) -> tuple[str, list[int], list[int]] | None:
    """Where a Zarr v3 metadata document (``doc``, its JSON) has ``transpose`` codecs before
    its ``sharding_indexed`` one (:func:`codecs.sharding_at`) whose inner chunks cut the
    shard as those transpose it, and not the shard untransposed, as zarr-python 3 checks
    them (valid Zarr v3, which tensorstore writes and reads; zarr-python refuses to open
    it): the layout in words ("a transpose codec (order [1, 0]) before sharding_indexed,
    whose inner chunks [6, 4] cut the transposed shard [12, 8]"), the shard's shape and the
    inner chunks' in the array's axes ([8, 12], [4, 6]); None for any other document."""
    try:
        chain = doc["codecs"] if doc.get("zarr_format") == 3 else []
        at = codecs.sharding_at(chain)
        if not at:
            return None
        shard = [int(n) for n in doc["chunk_grid"]["configuration"]["chunk_shape"]]
        inner = [int(n) for n in chain[at]["configuration"]["chunk_shape"]]
        order = list(range(len(shard)))
        for c in chain[:at]:
            order = [order[int(i)] for i in c["configuration"]["order"]]
        if sorted(order) != list(range(len(shard))) or len(inner) != len(shard):
            return None
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        return None  # a document zarr-python refuses for another value
    stored = [shard[i] for i in order]
    untransposed = [0] * len(order)
    for k, i in enumerate(order):
        untransposed[i] = inner[k]
    if any(n < 1 for n in inner) or any(s % c for s, c in zip(stored, inner, strict=True)):
        return None  # inner chunks that cut no shard: a value to mend
    if not any(s % c for s, c in zip(shard, inner, strict=True)):
        return None  # zarr-python's check passes: its refusal is of another value
    codec = "a transpose codec" if at == 1 else f"{at} transpose codecs"
    return (
        f"{codec} (order {order}) before sharding_indexed, whose inner chunks {inner} cut "
        f"the transposed shard {stored}",
        shard,
        untransposed,
    )


#: Data types that other tools write and zarr-python does not read: tensorstore's (from
#: ml_dtypes) bfloat16, the 8-, 6- and 4-bit floats (``float8_e4m3fn``, ``float4_e2m1fn``)
#: and the 2- and 4-bit integers, by their names in a v2 ``dtype`` or v3 ``data_type``.
OTHER_TOOLS_DATA_TYPES = re.compile(r"bfloat16|float[468]_e\w+|u?int[24]")


def unread_data_type(doc: Any) -> str | None:
    """The data type a metadata document (``doc``: a v3 ``zarr.json``'s or v2 ``.zarray``'s
    JSON) names where that is an array's real data type that zarr-python does not read and
    the stages do not compute on: one of :data:`OTHER_TOOLS_DATA_TYPES` (tensorstore's
    ``bfloat16``), or one NumPy knows, as NumPy writes it (a v2 ``<f16``, NumPy's long
    double, is ``float128``; a v2 record whose fields are records or arrays, which
    zarr-python 2 wrote and 3 does not read; objects without a codec 3 reads); None for any
    other (a name garbled or misspelt, ``float128x``: a value of the document to mend; one
    NumPy reads as a dtype the stages compute on, ``<i1``, which zarr-python spells ``|i1``).
    Such an array is refused as its dtype is, not as a document to mend: no edit of its
    name reads its bytes as what they are."""
    if not isinstance(doc, dict) or _zarr_reads_data_type(doc):
        return None  # zarr-python failed on another value of the document
    v3 = doc.get("zarr_format") == 3
    said = doc.get("data_type" if v3 else "dtype")
    if isinstance(said, dict):  # a v3 data type with a configuration
        said = said.get("name")
    if isinstance(said, str) and OTHER_TOOLS_DATA_TYPES.fullmatch(said):
        return said
    if not isinstance(said, str) and (v3 or not isinstance(said, list)):
        return None
    try:
        with warnings.catch_warnings():  # NumPy's deprecated codes ('a') warn
            warnings.simplefilter("ignore")
            dtype = codecs.v2_dtype(said)  # a v2 record's fields as lists, too
    except Exception:  # TypeError, ValueError: not a data type NumPy knows
        return None
    return None if stages.supported_dtype(dtype) else str(dtype)


def _zarr_reads_data_type(doc: dict[str, Any]) -> bool:
    """Whether zarr-python reads the data type of the metadata document ``doc`` (a v2 one's
    with the object codec its filters or compressor name, as zarr-python looks it up); True
    where its modules that say so are not there (another release's layout: the refusal is
    then zarr-python's own, to mend)."""
    try:
        from zarr.core.dtype import get_data_type_from_json
        from zarr.core.metadata.v2 import get_object_codec_id
    except ImportError:
        return True

    try:
        if doc.get("zarr_format") == 3:
            get_data_type_from_json(doc.get("data_type"), zarr_format=3)
        else:
            filters = doc.get("filters")
            codecs_named = (*(filters if isinstance(filters, list) else ()), doc.get("compressor"))
            spec = {"name": doc.get("dtype"), "object_codec_id": get_object_codec_id(codecs_named)}
            get_data_type_from_json(spec, zarr_format=2)
    except Exception:
        return False
    return True


def unknown_codec(
    location: Location, path: str, name: str, reason: str, where: str = "", other: str = ""
) -> InputError:
    """The refusal of an array whose metadata names a codec with no implementation here
    (``where``: in the process that met it, '' for this one, or ``'the workers'``; ``other``:
    one more fix, in a line's words, as ``set output.array: '' ...`` for a coordinate): one line
    naming the metadata document (v3's ``zarr.json``, else v2's ``.zarray``), the codec and
    the package to install. InputError, fields ``store`` (the document), ``array``,
    ``status`` 'unreadable', ``codec``, ``reason``, ``fix``. It had been ``cannot open ...:
    UnknownCodecError`` (v2), or, for a v3 ``numcodecs.*`` codec whose package is missing
    (``numcodecs.pcodec``, ``numcodecs.zfpy``), which zarr-python opens, every chunk called
    damaged after the output was made, with the fix to restore or delete it."""
    v3 = location.exists(key_under(path, "zarr.json"))
    key = key_under(path, "zarr.json" if v3 else ".zarray")
    fix = codecs.unknown_codec_fix(name)
    codec = f"the codec {name!r}" if name else "a codec"
    here = f"in {where}" if where else "here"
    also = (
        " (a codec registered in this process alone, by numcodecs.register_codec, is not "
        "registered in them)"
        if where
        else ""
    )
    return InputError(
        f"{location.shown(key)} names {codec}, which has no implementation {here} ({reason}): "
        f"{fix}{also}, or rewrite the array with a codec this Python decodes"
        + (f", or {other}" if other else ""),
        store=location.join(key),
        array=path,
        status="unreadable",
        codec=name,
        reason=reason,
        fix=fix,
    )


#: What :func:`node_in_the_way` finds, in words, and why nothing can be made under it.
NODE_WORDS = {
    "array": "a Zarr array",
    "v2 array": "a Zarr v2 array",
    "file": "a file",
    "object": "a single object (a file, not a folder of keys)",
    "damaged": "a Zarr node whose metadata is not readable",
    "dangling": "a symbolic link to a path that does not exist",
}
NODE_WHY = {
    "array": "only a group holds arrays",
    "v2 array": "only a group holds arrays",
    "file": "no folder can be made in a file",
    "object": "an object is not a folder",
    "damaged": "it may be an array, which holds no other nodes",
    "dangling": "nothing can be written through it",
}


def node_in_the_way(location: Location, path: str) -> tuple[str, str] | None:
    """What stops anything from being made at ``path``: the first of the store's root and the
    nodes above ``path`` that is a Zarr array (a v3 ``zarr.json`` of an array, or a v2
    ``.zarray``: only a group holds other nodes, and zarr-python refuses to write under an
    array), or one whose metadata is not readable (:func:`node_type`'s 'damaged'), or, in a
    local store, a file (no folder can be made under it); or ``path`` itself, when it is a
    local file, or in an object store a single object and no folder of keys (it had been
    called "a directory that holds other files"), or a symbolic link to a path that does not
    exist (:func:`dangling_link`). (its path in the store, its kind: 'array', 'v2 array',
    'damaged', 'file', 'object' or 'dangling');
    None where each of them is a group, a folder or nothing yet. Reads only."""
    parts = [p for p in path.strip("/").split("/") if p]
    for depth in range(len(parts) + 1):
        here = "/".join(parts[:depth])
        if location.is_local:
            full = location.join(here)
            if os.path.islink(full) and not os.path.exists(full):  # it had been "a file"
                return here, "dangling"
            if os.path.lexists(full) and not os.path.isdir(full):
                return here, "file"
        if depth == len(parts):  # an array (or group) at ``path`` itself is the output's state
            return (here, "object") if location.is_object(here) else None
        kind = node_type(location, here)
        if kind == "array":
            v3 = location.exists(f"{here}/zarr.json" if here else "zarr.json")
            return here, "array" if v3 else "v2 array"
        if kind == "damaged":  # found by helper-38: written under, and left as it was
            return here, "damaged"
    return None


def dangling_input(path: str) -> str:
    """The refusal's words for the local input store ``path``, a symbolic link to a path
    that does not exist: naming its target and the fixes (its data elsewhere, a disk not
    mounted, a dataset not installed); it had been called a store that does not exist,
    the line naming ``pipeline generate`` to make it, which refuses the link."""
    try:
        target = os.path.join(os.path.dirname(path), os.readlink(path))
    except OSError:
        target = "a path"
    return (
        f"{name_shown(path)} is a symbolic link to {name_shown(target)}, which does not exist "
        "(a disk not mounted, "
        "a dataset not installed?): make its target there, mend the link, or fix input.store"
    )


def dangling_link(path: str, setting: str) -> str:
    """The refusal's words for the local ``path``, a symbolic link to a path that does not
    exist (:func:`node_in_the_way`'s 'dangling'), naming its target and the fixes, the store
    being ``setting``'s ('output' or 'input'): it had been called "a file", which ``ls``
    shows it is not."""
    try:
        target = os.path.join(os.path.dirname(path), os.readlink(path))
    except OSError:
        target = "a path"
    return (
        f"{name_shown(path)} is a symbolic link to {name_shown(target)}, which does not exist: "
        "make that folder (the "
        f"{setting} is then written there), remove the link, or choose another {setting}.store"
    )


def array_above(location: Location) -> tuple[str, str] | None:
    """The Zarr array whose folder holds the store's root, where there is one: the first
    folder above the root that is neither a Zarr group nor a folder without Zarr metadata
    (a plain folder, or one not made yet: both are climbed, as groups are), where it is an
    array, or a node whose metadata does not read (:func:`node_type`'s 'damaged', which may
    be one): (its URL, its kind as :func:`node_in_the_way` gives it: 'array', 'v2 array' or
    'damaged'). None where the climb reaches the top of the file system (or bucket) without
    one, or the store has no folder above it; or, past a folder without metadata, a folder
    whose metadata could not be asked for (an object store that refuses keys above a prefix:
    nothing is known there), or any folder above whose metadata the store refuses
    (:func:`~pipeline.errors.refused_access`: credentials granted only the store's prefix, an
    S3 policy on ``bucket/out.zarr/*``, had been refused the run). What
    :func:`node_in_the_way` finds inside the store, above it: ``input.store: arr.zarr/gen``
    (or ``output.store``), under an array, had been written into the array's folder (h54c),
    and so had ``arr.zarr/plain/gen`` (a plain folder between, or one the write makes:
    h55a). Reads only metadata."""
    here, past_plain = location, False
    while (up := here.parent()) is not None:
        holder, _ = up
        try:
            kind = node_type(holder, "")
        except OSError as e:
            # above a plain folder: not asked before, never a failure; or refused (HTTP 403):
            # credentials granted only the store's prefix may read nothing above it
            if past_plain or refused_access(e):
                return None
            raise
        if kind in ("group", "none"):
            past_plain = past_plain or kind == "none"
            here = holder
            continue
        if kind == "array":
            return holder.url, "array" if holder.exists("zarr.json") else "v2 array"
        return holder.url, "damaged"
    return None


#: The first bytes of files people point ``input.store`` at that are no Zarr store, and what
#: each is, in a line's words.
_FILE_MAGIC = (
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (netCDF-4)"),
    (b"CDF\x01", "a netCDF classic file"),
    (b"CDF\x02", "a netCDF 64-bit offset file"),
    (b"CDF\x05", "a netCDF 64-bit data file"),
    (b"GRIB", "a GRIB file"),
)


#: The names of Zarr's metadata documents (v3, v2 and consolidated), which a store holds.
_METADATA_NAMES = frozenset(("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"))


#: A name of a folder's listing that is a chunk's key, or the first part of one: v3's
#: default ``c`` (its chunks under ``c/0/1``), v2's ``0.1`` (or ``0`` under ``/`` keys).
_CHUNK_NAME = re.compile(r"c|\d+(\.\d+)*")


def consolidated_listing(location: Location, path: str) -> tuple[str, str, str] | None:
    """Where consolidated metadata still lists an array at ``path`` whose own metadata
    document is gone: (the key of the copy, ``.zmetadata`` or a group's ``zarr.json``, in the
    group that holds it; its entry for the array, ``t/.zarray`` or ``t``; the missing
    document's key); None where no copy lists it, or none can be read (a hint only).
    zarr-python opens such an array through that copy, and ``xr.open_zarr`` with it; the
    pipeline reads each array's own metadata, and had said "no Zarr array at ...: it is a
    folder of no Zarr metadata; check input.array", naming neither the copy nor the fix
    (h69a)."""
    for key, name, rel, held in _consolidated_copies(location, path):
        entry = f"{rel}/.zarray" if name == ".zmetadata" else rel
        found = held.get(entry)
        if name == "zarr.json" and not (
            isinstance(found, dict) and found.get("node_type") == "array"
        ):
            continue
        if isinstance(found, dict):
            return key, entry, f"{path}/{'.zarray' if name == '.zmetadata' else 'zarr.json'}"
    return None


def consolidated_v2_attributes(
    location: Location, path: str
) -> tuple[str, str, dict[str, Any]] | None:
    """The attributes the ``.zmetadata`` of the group holding the Zarr v2 array at ``path``
    gives it: (the copy's key, its entry ``t/.zattrs``, the attributes); None where no copy gives
    it any, or none can be read (a hint only)."""
    for key, name, rel, held in _consolidated_copies(location, path):
        if name != ".zmetadata":
            continue
        if isinstance(held.get(f"{rel}/.zarray"), dict):  # the copy that lists the array
            found = held.get(f"{rel}/.zattrs")
            return key, f"{rel}/.zattrs", dict(found) if isinstance(found, dict) else {}
    return None


def _consolidated_copies(
    location: Location, path: str
) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Each consolidated copy of members' metadata in the group that holds ``path`` (the one
    ``xr.open_zarr`` of that group reads; v2 ``.zmetadata`` before a v3 group's inline copy):
    (its key, ``.zmetadata`` or ``zarr.json``, the array's name in that group, the copy's
    entries). Copies that cannot be read are passed over."""
    if not path:
        return
    group, _, rel = path.rpartition("/")
    for name in (".zmetadata", "zarr.json"):
        key = key_under(group, name)
        try:
            raw = location.read(key)
            doc = json.loads(raw) if raw else None
        except Exception:  # a hint only: the usual line stands
            continue
        if not isinstance(doc, dict):
            continue
        if name == ".zmetadata":
            held = doc.get("metadata")
        else:
            inline = doc.get("consolidated_metadata")
            held = inline.get("metadata") if isinstance(inline, dict) else None
        if isinstance(held, dict):
            yield key, name, rel, held


def _chunks_without_metadata(location: Location, path: str) -> str | None:
    """The first of the names at ``path`` of ``location`` (a folder with no Zarr metadata of
    its own) that look like chunks' keys (:data:`_CHUNK_NAME`), said (``under 'c/'``,
    ``'0.0'``), where every name there does and there is one: an array whose ``zarr.json`` or
    ``.zarray`` is gone, or was never copied (a copy of its chunks alone); None elsewhere (a
    folder of arrays or groups, those of a multiscale image named '0', '1', ... too, one that
    lists nothing or refuses to). It had been "no Zarr
    array at ...; check input.array", though no ``input.array`` finds the array there. A v2
    ``.zattrs`` beside them is the array's too (zarr-python 3 writes one for every v2 array,
    xarray one with ``_ARRAY_DIMENSIONS``), and no node without its ``.zarray``: it had kept
    the line "a folder of no Zarr metadata; check input.array" (h71t)."""
    try:
        names = [n for n in location.entries(path) if n != ".zattrs"]
    except Exception:  # a hint only: the usual line stands
        return None
    if not names or not all(_CHUNK_NAME.fullmatch(n) for n in names):
        return None
    try:  # members named so ('0', '1': the levels of a multiscale image) are no chunks
        if node_type(location, key_under(path, names[0])) != "none":
            return None
    except Exception:  # a hint only: the usual line stands
        return None
    return "under 'c/'" if names[0] == "c" else repr(names[0])


def _plain_file_kind(location: Location) -> str | None:
    """What the store ``location`` is where it is one plain local file, not a folder (an HDF5
    or netCDF file, by its first bytes; else 'a file'), or a named pipe, a socket, a device
    (:func:`~pipeline.store.local_files.path_words`, never opened), a symbolic link to one
    named with what it leads to; None where it is no such thing (a folder, an object
    store's prefix, nothing)."""
    root = location.local_root
    if root is None or not location.is_local:
        return None
    if not os.path.isfile(root):  # a named pipe, a socket, a device: said, never opened (h85a)
        return path_words(root)
    try:
        with open(root, "rb") as f:
            head = f.read(8)
    except OSError:
        return "a file"
    kind = next((kind for magic, kind in _FILE_MAGIC if head.startswith(magic)), "a file")
    if os.path.islink(root):  # the link named with what it leads to (h85a)
        return f"a symbolic link to {os.path.realpath(root)}, {kind}"
    return kind


def _members_under_dot(location: Location) -> bool:
    """Whether ``location`` is an archive whose only top-level name is '.': GNU tar's
    ``tar -C DIR -cf FILE .`` names every member './...', and fsspec's tar file system keeps
    the prefix, so Zarr (which refuses '.' in a path) finds nothing at the root."""
    if location.archive() is None:
        return False
    try:
        return location.list("") == ["."]
    except Exception:  # only a hint: the usual error stands
        return False


def _metadata_shows(location: Location, path: str) -> bool:
    """Whether Zarr metadata is at ``path`` of a store that does not show itself otherwise
    (its server lists no folders); False where it cannot be read (an absent zip file).

    Raises the InputError of :func:`unreadable_store` where the store refused or failed to
    give the metadata (an HTTP 403 for a signed URL's missing or wrong token, a 500, a lost
    connection): such a store was called absent ("does not exist: fix input.store"), whose
    fix is elsewhere."""
    try:
        return node_type(location, path.strip("/")) != "none"
    except Exception as e:
        failure = storage_failure(e)
    if failure is None:
        return False
    raise unreadable_store(location, path, failure)


def unreadable_store(location: Location, path: str, failure: str) -> InputError:
    """The one-line error for a store that would not give its metadata (the input's, or the
    output's that verify opens: ``location.setting``): ``failure`` is what it answered
    (:func:`~pipeline.errors.storage_failure`); fields ``store`` (the store and ``path``
    joined), ``array``, ``status`` 'unreadable', ``reason`` and ``setting``."""
    side = "output" if location.setting == "output" else "input"
    fix = location.answer_fix(failure, side=side)
    return InputError(
        f"cannot read {side} store {name_shown(location)}: it answered {failure} for the metadata "
        "of "
        f"{name_shown(path.strip('/')) or 'its root'}; {fix}",
        store=location.join(path),
        array=path,
        status="unreadable",
        reason=failure,
        setting=side,
    )


def implied_keys(location: Location, path: str) -> list[str]:
    """Every key the metadata of the array at ``path`` says it may hold, by store key (below
    the store's root): its metadata documents (v3 ``zarr.json``; v2 ``.zarray`` and
    ``.zattrs``) and the key of every stored unit of its grid (a shard, or a chunk; of a 0-d
    array, its one chunk), in the array's own chunk key encoding, as zarr-python reads them.
    What a store holds without a listing: a unit that is not there reads as the fill value.
    One key per unit, so a list of ``prod(grid)`` + 1 or 2 names. Raises InputError where
    no array opens at ``path`` (:func:`open_zarr_array`)."""
    path = path.strip("/")
    arr = open_zarr_array(location, path)
    meta = arr.metadata
    outer = meta.chunk_grid.chunk_shape if meta.zarr_format == 3 else meta.chunks
    unit_grid = tuple(-(-int(n) // int(c)) for n, c in zip(arr.shape, outer, strict=True))
    names = ["zarr.json"] if meta.zarr_format == 3 else [".zarray", ".zattrs"]
    names += [meta.encode_chunk_key(tuple(int(i) for i in ix)) for ix in np.ndindex(*unit_grid)]
    return [f"{path}/{n}" if path else n for n in names]


def describe_array(location: Location, path: str, arr: Any | None = None) -> ArrayInfo:
    """Inspect a stored array (opened read-only) into an :class:`ArrayInfo`.

    The codec chain is read from the metadata document by spec name and configuration
    (:mod:`pipeline.store.codecs`); the fill value as zarr-python parses it (a v2 ``null`` reads as
    zero). Raises InputError for a 0-d array."""
    arr = arr if arr is not None else open_zarr_array(location, path)
    stored = np.dtype(arr.dtype)
    dtype = stored.newbyteorder("=") if stored.byteorder not in ("=", "|") else stored
    meta: Any = arr.metadata
    if arr.ndim == 0:
        raise InputError(
            f"{location.shown(path)} is a 0-d array (one value, no axes to cut into blocks); the "
            "pipeline needs ndim >= 1: store the value as an array of shape [1], or compute "
            "it with NumPy",
            store=str(location),
            array=path,
        )
    with _WARNINGS_LOCK, warnings.catch_warnings():
        # a dtype without a v3 spec (strings, raw bytes): zarr-python warns as the document is
        # written out, several lines on stderr before the plan's one-line refusal of the dtype
        from zarr.errors import UnstableSpecificationWarning

        warnings.simplefilter("ignore", UnstableSpecificationWarning)
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
        unit_check=codecs.unit_check(doc, dtype) if fmt is None else None,
        **parts,
    )


def array_over_units(
    arr: Any, path: str, check: codecs.UnitCheck | None, units: dict[str, Any]
) -> Any:
    """A Zarr array read from memory: the metadata of ``arr`` (the input's array, opened at
    ``path``) less the codecs ``check`` decodes (:func:`codecs.stripped_document`; None: all
    of them kept), over ``units``, the stored units :func:`codecs.check_unit` returned (with
    ``check`` None, the stored units as they were read), by their keys in the store (an absent
    unit left out, which reads as the fill value). zarr-python reads a region of these units
    as it reads the same region of ``arr``, without reading the store again, nor decoding
    again what the check has decoded (a gzip or zstd stream over each Blosc frame, or over a
    whole shard)."""
    import zarr
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.metadata import ArrayV2Metadata, ArrayV3Metadata
    from zarr.storage import MemoryStore

    meta: Any = arr.metadata
    prototype = default_buffer_prototype()
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-python's about the format (see describe_array)
        doc = meta.to_dict()
        doc = doc if check is None else codecs.stripped_document(doc, check)
        kind = ArrayV3Metadata if meta.zarr_format == 3 else ArrayV2Metadata
        documents = dict(kind.from_dict(doc).to_buffer_dict(prototype))
    said = exact_fill_said(meta)
    if said is not None:  # zarr-python writes "NaN": an absent chunk had read as that NaN,
        # where the input's own reads its payload (h79a: the run's output, and verify's
        # reference, had differed from zarr-python's read of the input, exit 0)
        written = json.loads(documents["zarr.json"].to_bytes())
        written["fill_value"] = said
        documents["zarr.json"] = prototype.buffer.from_bytes(json.dumps(written).encode())
    path = path.strip("/")
    stored = {key_under(path, k): v for k, v in documents.items()}
    for key, raw in units.items():
        stored[key] = prototype.buffer.from_bytes(memoryview(raw).cast("B"))
    with format_warnings_ignored():
        return zarr.open_array(MemoryStore(stored, read_only=True), path=path, mode="r")


#: Kinds of dtypes whose stored chunks :func:`damaged_unit` decodes itself (fixed-size
#: elements); others (objects, text of variable length) are read through zarr-python.
_OWN_DECODE_KINDS = "biufcmM"


def damaged_unit(location: Location, path: str) -> tuple[str, str, str] | None:
    """The first stored unit (chunk or shard) of the array at ``path`` that does not decode to
    exactly its chunks, as the run's reader decodes the input's (the shard index checked,
    :meth:`codecs.ChunkFormat.decode`: a Blosc frame cut short, which zarr-python decodes from
    whatever memory follows it, is damage, as are a cut zstd or zlib stream and a wrong
    checksum): (its key in the store, why in a few words, the problem: a key of
    :data:`~pipeline.store.shards.PROBLEMS`); None where every stored unit decodes (absent ones
    read as the fill value). An array whose codec chain only Zarr knows, or of objects or
    text, is read unit by unit through zarr-python, and one of its units that fails is
    damaged; a store that does not answer, or a codec not installed here, is no damage (None:
    whatever reads the array next says so). For the arrays a Dataset output carries beside
    the variable (coordinates, bounds, grid mappings: 0-d ones too), which xarray reads whole.
    Raises the InputError of :func:`open_zarr_array`, and the StoreError of a local unit
    that is no file (:func:`~pipeline.store.local_files.not_a_file_refusal`: a named pipe,
    not read) or a link to nothing (:func:`~pipeline.store.location.link_refusal`)."""
    arr = open_zarr_array(location, path)
    meta: Any = arr.metadata
    if 0 in arr.shape:
        return None
    stored = np.dtype(arr.dtype)
    fmt: codecs.StoredFormat | None = None
    unit: Shape = tuple(arr.shape)
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doc = meta.to_dict()
    if stored.kind in _OWN_DECODE_KINDS:
        native = stored.newbyteorder("=") if stored.byteorder not in ("=", "|") else stored
        parts = _describe_v3(doc, native) if meta.zarr_format == 3 else _describe_v2(doc)
        fmt, unit = parts["format"], tuple(parts["unit"])
    check = None
    if fmt is None:
        unit = tuple(meta.chunk_grid.chunk_shape if meta.zarr_format == 3 else meta.chunks)
        check = codecs.unit_check(doc, stored)
    prefix = path.strip("/")
    indices = list(grid.iter_indices(grid.grid_shape(tuple(arr.shape), unit)))
    keys = [key_under(prefix, meta.encode_chunk_key(tuple(int(i) for i in ix))) for ix in indices]
    # an object store's units read concurrently, as xarray reads them (a local folder: None)
    fetched = location.read_small(keys) if fmt is not None else None
    for index, key in zip(indices, keys, strict=True):
        try:
            if fmt is None:
                if check is not None:  # a cut frame Zarr reads without an error
                    codecs.check_unit(location.read(key), unit, check)
                with format_warnings_ignored():
                    arr[grid.unit_slices(index, unit, tuple(arr.shape))]
                continue
            raw = fetched[key] if fetched is not None else location.read(key)
            per_unit = grid.chunks_per_unit(unit, fmt.chunk.shape)
            frames = shards.unit_frames(raw, math.prod(per_unit), fmt.shard, per_unit)
            for c in np.flatnonzero(frames.sizes != shards.EMPTY):
                off, size = int(frames.offsets[c]), int(frames.sizes[c])
                assert raw is not None
                try:
                    fmt.chunk.decode(memoryview(raw)[off : off + size])
                except shards.Damaged as e:  # which of the shard's chunks, as the run says
                    if fmt.shard is None:
                        raise
                    where = codecs.inner_chunk(int(c), unit, fmt.chunk.shape)
                    raise shards.Damaged(f"{e} ({where})", e.problem, int(c), e.sizes) from None
        except Exception as e:  # codecs raise RuntimeError, ValueError, zlib.error, ...
            if is_not_a_file_refusal(e) or is_link_refusal(e):
                # a key that is no file, or a link to nothing: its own line, as every such
                # key's; it had been "is damaged: StoreError: ..." (h86e)
                raise
            return _unit_damage(key, e, location, arr)
    return None


def _unit_damage(
    key: str, e: Exception, location: Location | None = None, arr: Any = None
) -> tuple[str, str, str] | None:
    """What reading the stored unit ``key`` raising ``e`` says, as :func:`damaged_unit` and
    :func:`damaged_unit_in` answer: (the key, why in a few words, the problem) for
    :class:`~pipeline.store.shards.Damaged` (its own problem) or a codec's error ('codec': of
    a shard of ``arr``, read from ``location``, its frame named, :func:`damaged_frame_in`);
    None for a store that does not answer or a codec not installed here (no damage)."""
    if isinstance(e, shards.Damaged):
        return key, str(e), e.problem
    if storage_failure(e) is not None or codecs.is_unknown_codec(e):
        return None
    found = damaged_frame_in(location, arr, key) if location is not None else None
    if found is not None:
        return key, str(found), found.problem
    return key, cause(e), "codec"


def damaged_frame_in(
    location: Location, arr: Any, key: str, raw: Any = None, first: bool = False
) -> shards.Damaged | None:
    """Where zarr-python could not read the stored unit ``key`` of the array ``arr`` (read
    again from ``location``): its damage in the run's own words, as its reader says it. A
    shard's first frame that does not decode, at every level of shards within shards (after
    ``transpose`` codecs too, as tensorstore writes them: its inner chunks named in the
    array's axes), named as the run's reader names a frame (:func:`codecs.damaged_frame`:
    "... (in the shard's inner chunk [1, 0], itself a shard: in its inner chunk [0, 1])");
    an unsharded chunk's, of a chain only Zarr decodes, by the codec that refuses it
    (:func:`codecs.damaged_chunk`: "its gzip data does not decode: cut short or altered (1104
    bytes)", "its crc32 checksum does not match"; what numcodecs does not decode, one chunk
    read through zarr-python, :func:`_zarr_decoded_chunk`); a v2 chunk's by the run's own
    decoder (:meth:`codecs.ChunkFormat.decode`). None for a unit the store does not give,
    where nothing is found damaged, or where a codec is not installed here (the caller says
    zarr-python's error for the unit, or that the codec is missing). zarr-python's own
    errors name no inner chunk (a nested shard's zstd, gzip or crc32c damage had been named by
    its key alone, h61e), and are said in each codec's words (zlib's "Error -3 while
    decompressing data", numcodecs' "Stored and computed crc32 checksum do not match. Stored:
    165445301. Computed: 865643476.", zarr-python's "cannot reshape array of size 12 into
    shape (4,6)": h63b). ``raw``: the unit's bytes, where the caller has read them. On the
    failure path, and for the plan's one chunk (:func:`check_chunk_fits`; ``first``: of a
    shard, its first present frame alone)."""
    meta: Any = arr.metadata
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doc = meta.to_dict()
    stored = np.dtype(arr.dtype)
    native = stored.newbyteorder("=") if stored.byteorder not in ("=", "|") else stored
    try:
        raw = location.read(key) if raw is None else raw
        if raw is None:
            return None
        if meta.zarr_format != 3:
            fmt = codecs.v2_format(doc)
            if fmt is not None and native.kind in _OWN_DECODE_KINDS:
                fmt.chunk.decode(raw)
            return None
        chain = list(doc.get("codecs") or [])
        unit = tuple(int(n) for n in meta.chunk_grid.chunk_shape)

        def decode(chain: Sequence[dict[str, Any]], shape: Shape, frame: Any) -> Any:
            return _zarr_decoded_chunk(doc, chain, shape, frame)

        if codecs.sharding_at(chain) is not None:  # after transposes too (tensorstore's)
            return codecs.damaged_frame(raw, unit, chain, native, decode, first=first)
        return codecs.damaged_chunk(raw, unit, chain, native, decode)
    except shards.Damaged as e:
        return e
    except Exception:  # a store that fails now, a codec missing: zarr-python's error is said
        return None


#: Stored units :func:`chunk_misfit` looks at besides the one that failed, at most, and how
#: many of them must be present for it to judge (the first ones in C order).
MISFIT_LOOK, MISFIT_PRESENT = 16, 2

#: The element sizes of each dtype kind Zarr holds numbers of (a hint of what a chunk of
#: another size was written as).
_KIND_SIZES = {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "c": (8, 16)}


@dataclass(frozen=True)
class Misfit:
    """A stored chunk that decodes to another number of bytes than the array's metadata says
    (:func:`chunk_misfit`), and what the chunks around it say of why."""

    key: str
    """the unit whose chunk misfits"""
    damage: str
    """its damage, in the run's words ("it decodes to 64 bytes, not the chunk's 128")"""
    got: int
    """bytes its chunk decodes to"""
    want: int
    """bytes the metadata's dtype and chunk shape say"""
    same: tuple[str, ...]
    """other stored units whose chunks decode to the same ``got`` bytes"""
    sound: tuple[str, ...]
    """other stored units that decode to their size"""
    document: str
    """the metadata document (``zarr.json`` or ``.zarray``, its key in the store)"""
    dtype: str
    """the metadata's dtype"""
    chunk: tuple[int, ...]
    """the metadata's chunk shape (inner chunks, in shards)"""
    written_as: str | None
    """a dtype of the same kind whose elements of ``chunk`` are ``got`` bytes; None for none"""

    @property
    def metadata(self) -> bool:
        """Every other chunk looked at misfits the same way: the metadata's dtype or chunk
        shape does not match the chunks as written (edited since), not one chunk damaged."""
        return bool(self.same) and not self.sound

    def said(self) -> str:
        """The metadata's reading in words, with what ``got`` bytes would be: "its metadata
        zarr.json (dtype float64, chunk shape [4, 4]) says 128 (64 bytes: 16 elements of
        float32, or 8 of float64)"."""
        hint = ""
        if self.written_as:  # an edited dtype, or an edited chunk shape: both said
            n, size = math.prod(self.chunk), np.dtype(self.dtype).itemsize
            other = f", or {self.got // size} of {self.dtype}" if self.got % size == 0 else ""
            hint = f" ({self.got} bytes: {n} elements of {self.written_as}{other})"
        return (
            f"its metadata {self.document} (dtype {self.dtype}, chunk shape "
            f"{list(self.chunk)}) says {self.want}{hint}"
        )

    def mismatch(self, what: str) -> str:
        """The start of a line saying the metadata does not match the chunks as written
        (:attr:`metadata`), ``what`` naming the array ("input s3://b/in.zarr")."""
        *some, last = [repr(k) for k in (self.key, *self.same)]
        return (
            f"{what} does not match its metadata: its chunks {', '.join(some)} and {last} each "
            f"decode to {self.got} bytes where {self.said()}: its dtype or chunk shape was "
            "changed after the chunks were written"
        )

    def either(self, what: str) -> str:
        """The start of a line saying the chunk is damaged or the metadata edited, where no
        other stored chunk tells which, ``what`` naming the chunk ("input chunk 'c/0/0' of
        s3://b/in.zarr")."""
        return (
            f"{what} decodes to {self.got} bytes{self.within} where {self.said()}: the chunk "
            "is damaged, or the metadata's dtype or chunk shape was changed after it was "
            "written (no other chunk looked at tells which)"
        )

    @property
    def within(self) -> str:
        """Where in the unit the chunk lies, as :attr:`damage` says it (" (in the shard's
        inner chunk [0, 1])"); '' for an unsharded chunk."""
        for raw in (False, True):  # a chunk stored uncompressed says it was cut short
            base = codecs.size_damage(self.got, self.want, raw)
            if self.damage.startswith(base):
                return self.damage[len(base) :]
        return ""


def chunk_misfit(location: Location, path: str, arr: Any, key: str) -> Misfit | None:
    """Where the stored unit ``key`` of the array ``arr`` (at ``path``) decodes to another
    number of bytes than its metadata's dtype and chunk shape say (a ``size`` damage,
    :func:`damaged_frame_in`): whether the metadata or the chunk is at fault, from the first
    other stored units in C order (up to :data:`MISFIT_PRESENT` of the first
    :data:`MISFIT_LOOK`): one that decodes to the same wrong size, and none that decodes
    right, is a dtype or chunk shape edited after the chunks were written (h69e: a hand-edited
    ``data_type``, float32 to float64, had been said as one damaged chunk, "restore the
    chunk"). None where ``key`` decodes right, is absent, or fails otherwise. Reads the
    store; on the failure path only. Never writes."""
    first = damaged_frame_in(location, arr, key)
    if first is None or first.problem != "size" or first.sizes is None:
        return None
    got, want = first.sizes
    meta: Any = arr.metadata
    unit = tuple(meta.chunk_grid.chunk_shape if meta.zarr_format == 3 else meta.chunks)
    prefix = path.strip("/")
    same: list[str] = []
    sound: list[str] = []
    indices = grid.iter_indices(grid.grid_shape(tuple(arr.shape), unit))
    for index in itertools.islice(indices, MISFIT_LOOK):
        other = key_under(prefix, meta.encode_chunk_key(tuple(int(i) for i in index)))
        if other == key:
            continue
        try:
            raw = location.read(other)
        except Exception:  # a store that fails now: the chunk's own line is said
            break
        if raw is None:
            continue
        found = damaged_frame_in(location, arr, other, raw)
        if found is None:
            sound.append(other)
        elif found.problem == "size" and found.sizes == (got, want):
            same.append(other)
        if len(same) + len(sound) >= MISFIT_PRESENT:
            break
    dtype = np.dtype(arr.dtype)
    chunk = unit
    if meta.zarr_format == 3:  # in shards: the innermost chunks, which the sizes are of
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chain = list(meta.to_dict().get("codecs") or [])
        while (at := codecs.sharding_at(chain)) is not None:
            conf = dict(chain[at].get("configuration") or {})
            chunk = tuple(int(k) for k in conf.get("chunk_shape", chunk))
            chain = list(conf.get("codecs") or [])
    n = math.prod(chunk)
    written_as = None
    size, rest = divmod(got, n) if n else (0, 1)
    if not rest and want == n * dtype.itemsize and size in _KIND_SIZES.get(dtype.kind, ()):
        written_as = str(np.dtype(f"{dtype.kind}{size}"))
    document = key_under(prefix, "zarr.json" if meta.zarr_format == 3 else ".zarray")
    return Misfit(
        key=key,
        damage=str(first),
        got=got,
        want=want,
        same=tuple(same),
        sound=tuple(sound),
        document=document,
        dtype=str(dtype),
        chunk=chunk,
        written_as=written_as,
    )


def misfit_of(location: Location, path: str, arr: Any, key: str, problem: str) -> Misfit | None:
    """:func:`chunk_misfit` of the stored unit ``key`` whose damage is ``problem``, for a
    'size' one only; None where it cannot say (the store fails now, the metadata no longer
    opens): the damaged chunk's own line is said then."""
    if problem != "size" or not key:
        return None
    try:
        return chunk_misfit(location, path, arr, key)
    except Exception:  # codecs, stores: on the failure path, the chunk's own line stands
        return None


def misfit_words(
    misfit: Misfit, location: Location, path: str, key: str
) -> tuple[str, str, dict[str, str]] | None:
    """How a line says the input's stored unit ``key`` (of the array at ``path``) whose chunk
    ``misfit`` decodes to another size than its metadata says: (the problem, the fix, the
    ChunkError's fields ``misfit`` and ``file``), as the run's failure path
    (:func:`pipeline.running.tasks.damaged`) and the plan's check (:func:`check_chunk_fits`)
    both say it: where the other chunks looked at misfit alike, the metadata does not match
    the chunks as written (``misfit`` 'metadata'); where no other stored chunk is found, the
    chunk is damaged or the metadata edited (``misfit`` 'unknown'). None where other chunks
    decode right: that one chunk is damaged, said as any other damage is."""
    if not misfit.metadata and misfit.sound:
        return None
    fields = {"file": location.join(misfit.document)}
    if misfit.metadata:
        said = misfit.mismatch(f"input {location.shown(path)}")
        fix = "write back the dtype and chunk shape they were written with"
        fields["misfit"] = "metadata"
    else:  # one chunk alone: it cannot tell which
        said = misfit.either(f"input chunk {key!r} of {location.url}")
        fix = (
            "restore the chunk (or delete it, and it reads as the fill value), or the "
            "metadata it was written with"
        )
        fields["misfit"] = "unknown"
    return said, fix, fields


def check_chunk_fits(info: ArrayInfo, arr: Any, key: str | None) -> None:
    """Refuse, at plan time, before anything is written, the input ``info`` (``arr``: its Zarr
    array) whose stored unit ``key`` (the first present one the plan's probe found:
    :func:`check_reader_sees_chunks`; None: none is stored, nothing to check) holds a chunk
    that decodes to another number of bytes than the metadata's dtype and chunk shape say,
    in the line the run's failure path says it in (:func:`misfit_words`: its metadata's
    ``data_type``/``dtype`` or ``chunks`` edited by hand after the chunks were written, judged
    against the chunks around it, :func:`chunk_misfit`), ending "nothing was written" (h72d:
    the run had said it at the first chunk read, after the output was made). ChunkError,
    fields ``store``, ``key``, ``reason``, ``problem`` 'size', ``misfit``, ``file``.

    One chunk is read, on the CPU, here (:func:`_first_chunk_damage`): where its one
    compressor declares its decoded size in its header (zstd, Blosc:
    :func:`codecs.declared_size`), its first :data:`codecs.HEADER_BYTES` bytes (one ranged
    request), and a declared size that is the metadata's ends the check; else the chunk
    whole, decoded as the run decodes it: the unit where unsharded (one request); of a shard
    whose chain the run decodes itself (:attr:`ArrayInfo.format`), its index, then its first
    present inner chunk (ranged requests); a shard only Zarr reads (a ``transpose`` before
    the sharding codec, shards within shards, a big-endian index, codecs over the whole
    shard) whole, its first present frame alone decoded, where it is at most
    :data:`PLAN_SHARD_READ` bytes (a larger one is not read). Only a full decode refuses. A
    chunk damaged otherwise, or of the wrong size where the chunks around it decode right,
    is the run's to say (the output stays incomplete), as before. A shard whose index does
    not fit the metadata (its crc32c checksum, its size, offsets outside the shard: checked
    from its ranged read and the shard's size) is weighed against the next present shard
    (:func:`_check_shard_fits`, h73b): refused, naming both the metadata edited and the shard
    damaged, where that one misfits too or none other is stored. Storage failures are the
    InputError of :func:`_asked`."""
    if key is None or np.dtype(info.dtype).kind not in _OWN_DECODE_KINDS:
        return
    found = _first_chunk_damage(info, arr, key)
    if found is not None and found.problem == "index" and _sharding(arr) is not None:
        _check_shard_fits(info, arr, key, found)
    if found is None or found.problem != "size":
        return
    misfit = misfit_of(info.location, info.path, arr, key, "size")
    words = None if misfit is None else misfit_words(misfit, info.location, info.path, key)
    if misfit is None or words is None:
        return  # other chunks decode right: one damaged chunk, the run's to say
    said, fix, fields = words
    raise ChunkError(
        f"{said}; nothing was written: {fix}",
        store=info.location.url,
        key=key,
        reason=" ".join(misfit.damage.split()),
        problem="size",
        **fields,
    )


def _sharding(arr: Any) -> dict[str, Any] | None:
    """The configuration of the v3 array ``arr``'s outermost sharding codec (after
    ``transpose`` codecs too); None where it is not sharded."""
    meta: Any = arr.metadata
    if meta.zarr_format != 3:
        return None
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chain = list(meta.to_dict().get("codecs") or [])
    at = codecs.sharding_at(chain)
    return None if at is None else dict(chain[at].get("configuration") or {})


def _check_shard_fits(info: ArrayInfo, arr: Any, key: str, found: shards.Damaged) -> None:
    """Refuse, at plan time, the input ``info`` whose first present shard ``key`` does not
    fit its metadata (``found``: its index's crc32c checksum does not match, the index is not
    the size the metadata's shard and inner chunk shapes imply, or it points outside the
    shard: :func:`_first_chunk_damage`), unless the next present shard in C order (of the
    first :data:`MISFIT_LOOK`) fits: then one shard is damaged, the run's to say, as before.
    The line names both readings, the metadata's shard or inner chunk shape (or index codecs)
    edited after the shards were written, and the shard damaged, and both fixes (h73b: every
    shard of an input whose shard or inner chunk shape was edited had been said damaged by
    the run, "restore the chunk (or delete it ...)", after the output was made). ChunkError,
    fields ``store``, ``key``, ``reason``, ``problem`` 'index', ``misfit`` ('metadata' where a
    second shard misfits too, 'unknown' where none other is stored), ``file``. Reads one more
    shard's index (and first inner chunk) by range, where there is one."""
    meta: Any = arr.metadata
    conf = _sharding(arr) or {}
    unit = tuple(int(n) for n in meta.chunk_grid.chunk_shape)
    inner = [int(n) for n in conf.get("chunk_shape", unit)]
    prefix = info.path.strip("/")
    other = None
    indices = grid.iter_indices(grid.grid_shape(tuple(arr.shape), unit))
    for index in itertools.islice(indices, MISFIT_LOOK):
        k = key_under(prefix, meta.encode_chunk_key(tuple(int(i) for i in index)))
        if k != key and _asked(info, k, arr.store_path.store.exists(k)):
            other = k
            break
    second = None if other is None else _first_chunk_damage(info, arr, other)
    if other is not None and (second is None or second.problem != "index"):
        return  # another shard fits: this one is damaged, the run's to say
    index_codecs = [c.get("name") for c in conf.get("index_codecs") or []]
    n = math.prod(grid.grid_shape(unit, tuple(inner)))
    size = shards.index_nbytes(n, "crc32c" in index_codecs)
    where = conf.get("index_location", "end")
    document = key_under(prefix, "zarr.json")
    reason = " ".join(str(found).split())
    said = (
        f"its metadata {document} (shard shape {list(unit)}, inner chunk shape {inner}, index "
        f"codecs {'+'.join(str(c) for c in index_codecs)}: {n} inner chunk(s) a shard, a "
        f"{size}-byte index at its {where})"
    )
    if other is not None:
        start = (
            f"input {info.location.shown(info.path)} does not fit {said}: its shards {key!r} "
            f"and {other!r} each fail it ({reason}): the metadata's shard or inner chunk shape "
            "(or index codecs) was changed after the shards were written, or the shards are "
            "damaged"
        )
    else:
        start = (
            f"input shard {key!r} of {info.location.url} does not fit {said}: {reason}: the "
            "metadata's shard or inner chunk shape (or index codecs) was changed after the "
            "shards were written, or the shard is damaged (no other shard looked at tells "
            "which)"
        )
    raise ChunkError(
        f"{start}; nothing was written: write back the shard and inner chunk shape (and index "
        "codecs) the shards were written with, or restore the shard",
        store=info.location.url,
        key=key,
        reason=reason,
        problem="index",
        misfit="metadata" if other is not None else "unknown",
        file=info.location.join(document),
    )


#: The most bytes of a stored shard that only Zarr reads (one whose codecs the run does not
#: decode itself, a zstd over the whole shard, say) the plan reads whole to decode one of its
#: chunks (:func:`check_chunk_fits`).
PLAN_SHARD_READ = 16 << 20


def _zarr_only_shards(arr: Any) -> bool:
    """Whether the v3 array ``arr``'s chain holds a sharding codec (after ``transpose`` codecs
    too): with :attr:`ArrayInfo.format` None, a shard only Zarr reads."""
    return _sharding(arr) is not None


def _first_chunk_damage(info: ArrayInfo, arr: Any, key: str) -> shards.Damaged | None:
    """The damage of the first chunk of the input's stored unit ``key``, read through Zarr's
    store and decoded as the run decodes it; None where it decodes, or the unit or chunk is
    absent. A chunk whose compressor's header declares the metadata's size
    (:func:`codecs.declared_size`: zstd, Blosc) is not read further: the first
    :data:`codecs.HEADER_BYTES` of it, one ranged request (a shard's: after its index's),
    else the chunk whole, decoded. A ranged request that fails, or is answered with more
    bytes than it asked for (a server that takes no ranges and sends the whole file, which
    the run, reading whole units, does not need), leaves the chunk unchecked."""
    from zarr.abc.store import RangeByteRequest, SuffixByteRequest
    from zarr.core.buffer import default_buffer_prototype

    store, prototype = arr.store_path.store, default_buffer_prototype()

    def ranged(where: Any, asked: int) -> bytes | None:
        try:
            got = _asked(info, key, store.get(key, prototype, byte_range=where))
        except Exception:  # no new refusal: whatever fails here, the run meets as it did
            return None
        if got is None or len(got) > asked:  # the range not taken: the whole file came
            return None
        return got.to_bytes()

    fmt = info.format
    start, length = 0, None  # where the chunk lies in the unit (None: all of it)
    if fmt is not None and fmt.shard is not None:
        n = math.prod(info.chunks_per_unit)
        size = shards.index_nbytes(n, fmt.shard.index_crc32c)
        index = ranged(
            SuffixByteRequest(size) if fmt.shard.index_at_end else RangeByteRequest(0, size),
            size,
        )
        if index is None:
            return None
        try:  # an index that does not fit: the metadata's or the shard's fault (h73b)
            offsets, sizes = shards.decode_index(index, n, fmt.shard.index_crc32c)
            try:
                total = _asked(info, key, store.getsize(key))
            except InputError:
                raise
            except Exception:  # a store that gives no size: the offsets go unchecked
                total = None
            if total is not None:
                shards.check_frames(
                    offsets, sizes, int(total), size, fmt.shard, tuple(info.chunks_per_unit)
                )
        except shards.Damaged as e:
            return e
        present = np.flatnonzero(sizes != shards.EMPTY)
        if not present.size:
            return None
        start, length = int(offsets[present[0]]), int(sizes[present[0]])
    if fmt is not None and codecs.declares_size(fmt.chunk):
        most = codecs.HEADER_BYTES if length is None else min(codecs.HEADER_BYTES, length)
        head = ranged(RangeByteRequest(start, start + most), most)  # S3: 416 for an empty one
        if head is not None and codecs.declared_size(fmt.chunk, head) == fmt.chunk.nbytes:
            return None
    if fmt is None or fmt.shard is None:
        whole = fmt is not None or not _zarr_only_shards(arr)
        if not whole and (_asked(info, key, store.getsize(key)) or 0) > PLAN_SHARD_READ:
            return None  # a large shard only Zarr reads: the run's to read
        raw = _asked(info, key, store.get(key, prototype))
        if raw is None:
            return None
        return damaged_frame_in(info.location, arr, key, raw.to_bytes(), first=True)
    assert length is not None
    frame = ranged(RangeByteRequest(start, start + length), length)
    if frame is None or len(frame) != length:
        return None  # beyond the shard: the run says the index's damage
    try:
        fmt.chunk.decode(frame)
    except shards.Damaged as e:
        return e
    return None


def _zarr_decoded_chunk(
    doc: dict[str, Any], chain: Sequence[dict[str, Any]], shape: Shape, frame: Any
) -> Any:
    """One chunk of shape ``shape`` decoded from its bytes ``frame`` by zarr-python, under the
    v3 codec chain ``chain`` and the data type and fill value of the array document ``doc``:
    an array of that one chunk, in memory. Raises what zarr-python raises."""
    import zarr
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.metadata import ArrayV3Metadata
    from zarr.storage import MemoryStore

    one = {
        **doc,
        "shape": list(shape),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(shape)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "codecs": list(chain),
        "attributes": {},
    }
    prototype = default_buffer_prototype()
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = ArrayV3Metadata.from_dict(one)
        stored = dict(meta.to_buffer_dict(prototype))
    key = meta.encode_chunk_key((0,) * len(shape))
    stored[key] = prototype.buffer.from_bytes(bytes(memoryview(frame).cast("B")))
    with format_warnings_ignored():
        return zarr.open_array(MemoryStore(stored, read_only=True), mode="r")[...]


def damaged_unit_in(
    location: Location,
    path: str,
    arr: Any,
    region: tuple[slice, ...],
    failed: bool = False,
    every_index: bool = False,
    units: dict[str, Any] | None = None,
) -> tuple[str, str, str] | None:
    """The first stored unit (chunk or shard) of the array ``arr`` (opened at ``path``) that
    holds part of ``region`` and is damaged, as the run finds its input's: (its key in the
    store, why in a few words, the problem: a key of :data:`~pipeline.store.shards.PROBLEMS`);
    None where none is found. Where the chain holds a Blosc codec (v2's compressor or a
    filter, v3's, under other bytes-to-bytes codecs too: :func:`codecs.unit_check`), each
    unit's Blosc frames are checked (:func:`codecs.check_unit`): zarr-python decodes a
    frame cut short from whatever memory follows it, without an error; with ``every_index``,
    each shard's index too, whatever the chain (:func:`codecs.unit_check`: zarr-python reads
    a chunk whose entry points into the index from the index's bytes, without an error).
    Where ``failed`` (zarr-python's read of ``region`` raised), each unit is also read alone
    through zarr-python, and the first that fails is the damaged one (a store that does not
    answer, or a codec not installed here, is no damage). For ``pipeline verify``, which
    reads both arrays through zarr-python; a storage failure reading a unit's bytes for the
    frame check is raised as the store raised it. ``units``, where given and a unit is
    checked, gets each present unit's stored bytes by its key, as they were read: the region
    is then read from them (:func:`array_over_units` with no check, the stored bytes under
    the array's own chain), not from the store again (h60f: verify had read every unit of a
    sharded input twice)."""
    meta: Any = arr.metadata
    if 0 in arr.shape or not region:
        return None
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doc = meta.to_dict()
    unit = tuple(meta.chunk_grid.chunk_shape if meta.zarr_format == 3 else meta.chunks)
    shape = tuple(arr.shape)
    check = codecs.unit_check(doc, np.dtype(arr.dtype), every_index)
    ranges = [
        range(r.start // u, grid.ceil_div(r.stop, u)) for r, u in zip(region, unit, strict=True)
    ]
    prefix = path.strip("/")
    for index in itertools.product(*ranges):
        key = key_under(prefix, meta.encode_chunk_key(tuple(int(i) for i in index)))
        if check is not None:
            raw = location.read(key)
            try:
                codecs.check_unit(raw, unit, check)
            except shards.Damaged as e:
                return _unit_damage(key, e)
            if units is not None and raw is not None:
                units[key] = raw
        if failed:
            try:
                with format_warnings_ignored():
                    arr[grid.unit_slices(index, unit, shape)]
            except Exception as e:  # codecs raise RuntimeError, ValueError, zlib.error, ...
                return _unit_damage(key, e, location, arr)
    return None


@dataclass(frozen=True)
class OutputLayout:
    """How the output array stores its chunks: what :func:`create_output` writes into its
    metadata, and what :func:`encoding_differs` compares a stored output's metadata with."""

    shape: Shape
    dtype: np.dtype
    chunk: Shape
    """the chunks' shape (inner chunks, in shards)"""
    shard: Shape | None
    """the shards' shape; None: unsharded"""
    codec: FrameCodec
    """'zstd' or 'none'"""
    level: int
    """zstd's level"""
    checksum: bool
    """whether zstd frames carry a checksum"""


def create_output(
    location: Location,
    path: str,
    layout: OutputLayout,
    attributes: dict[str, Any],
    overwrite: bool,
    dimension_names: tuple[str | None, ...] | None = None,
    fill: np.ndarray | None = None,
) -> ArrayInfo:
    """Create the output array's metadata with Zarr (v3), laid out as ``layout`` says, with
    ``dimension_names`` (the input's, some perhaps None; None: none) and the fill value
    ``fill`` (a 0-d array of ``layout.dtype``, :func:`chained_fill`; None: zero), to the bit
    (:func:`keep_fill_said`: a NaN's payload in hex); chunks are written later, raw, every
    one of them, whatever its values (a chunk all fill value too), so no element reads as
    the fill value."""
    with location.asking(_key_in(path.strip("/"), "zarr.json"), "write"):
        arr = _create_output_array(
            location.zarr_store(read_only=False),
            path,
            layout,
            attributes=attributes,
            overwrite=overwrite,
            dimension_names=dimension_names,
            fill=fill,
        )
        if fill is not None:  # the bits of a NaN, which zarr-python writes as "NaN"
            keep_fill_said(location, path, fill_said(fill))
    info = describe_array(location, path, arr)
    if info.codec != layout.codec:  # pragma: no cover - guards against a Zarr layout change
        raise RuntimeError(f"Zarr wrote an unexpected codec chain: {arr.metadata}")
    return info


def _create_output_array(
    store: Any,
    path: str,
    layout: OutputLayout,
    attributes: dict[str, Any] | None = None,
    overwrite: bool = False,
    dimension_names: tuple[str | None, ...] | None = None,
    fill: np.ndarray | None = None,
) -> Any:
    """:func:`create_output`'s Zarr call, in the Zarr store ``store``: the Zarr array."""
    import zarr
    from zarr.codecs import ZstdCodec

    compressors = (
        ZstdCodec(level=layout.level, checksum=layout.checksum) if layout.codec == "zstd" else None
    )
    return zarr.create_array(
        store=store,
        name=path or None,
        shape=layout.shape,
        dtype=layout.dtype,
        chunks=layout.chunk,
        shards=layout.shard,
        compressors=compressors,
        fill_value=0 if fill is None else fill[()],
        attributes=attributes or {},
        overwrite=overwrite,
        zarr_format=3,
        dimension_names=dimension_names,
    )


#: The fields of an output's metadata document that say how its chunks' bytes are stored
#: and found, by the names :func:`encoding_differs` says them with.
ENCODING_FIELDS = {
    "zarr_format": "Zarr format",
    "node_type": "node type",
    "codecs": "codecs",
    "chunk_key_encoding": "chunk key encoding",
    "storage_transformers": "storage transformers",
}


def encoding_differs(arr: Any, layout: OutputLayout) -> list[str]:
    """The fields of the stored output ``arr``'s metadata (a Zarr array) that say how its
    chunks' bytes are stored otherwise than :func:`create_output` writes them for
    ``layout`` (:data:`ENCODING_FIELDS`' words, e.g. 'codecs': a byte order, shard index place,
    checksum or compressor edited since; 'chunk key encoding'), each with what it holds now:
    the run writes its chunks' bytes itself, as its own metadata says, so a reader of
    another's reads other values (or the fill value) in every chunk. Zstd's ``level`` and
    ``checksum`` are not compared (they change no byte a reader decodes: a frame says itself
    whether it holds a checksum). [] where they agree."""
    import zarr

    planned = _create_output_array(zarr.storage.MemoryStore(), "", layout)
    with _WARNINGS_LOCK, warnings.catch_warnings():
        from zarr.errors import UnstableSpecificationWarning

        warnings.simplefilter("ignore", UnstableSpecificationWarning)
        has, wanted = arr.metadata.to_dict(), planned.metadata.to_dict()
    found = []
    for field, words in ENCODING_FIELDS.items():
        now, then = _without_level(has.get(field)), _without_level(wanted.get(field))
        if now != then:
            at, now, then = _first_difference(now, then)
            found.append(
                f"its {words}{' ' + at if at else ''} {json.dumps(now)} (the run wrote "
                f"{json.dumps(then)})"
            )
    return found


def _first_difference(now: Any, then: Any, at: str = "") -> tuple[str, Any, Any]:
    """Where two JSON-like documents first differ ('[0].configuration.endian'), and what each
    holds there."""
    if isinstance(now, dict) and isinstance(then, dict) and now.keys() == then.keys():
        for k in now:
            if now[k] != then[k]:
                return _first_difference(now[k], then[k], f"{at}.{k}" if at else k)
    if isinstance(now, list) and isinstance(then, list) and len(now) == len(then):
        for i, (a, b) in enumerate(zip(now, then, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{at}[{i}]")
    return at, now, then


def _without_level(doc: Any) -> Any:
    """``doc`` (JSON-like) without the ``level`` and ``checksum`` of a zstd codec's
    configuration (encoding settings only)."""
    if isinstance(doc, list | tuple):
        return [_without_level(d) for d in doc]
    if not isinstance(doc, dict):
        return doc
    out = {k: _without_level(v) for k, v in doc.items()}
    if out.get("name") == "zstd" and isinstance(out.get("configuration"), dict):
        out["configuration"] = {
            k: v for k, v in out["configuration"].items() if k not in ("level", "checksum")
        }
    return out


def chained_fill(
    fill: bytes, dtype: np.dtype, unpacking: Any, chain: Sequence[stages.BoundStage]
) -> np.ndarray:
    """The output's fill value: what a run computes of an input element equal to the input's
    fill value (``fill``: its bytes, one native element of ``dtype``, the stored dtype,
    :attr:`ArrayInfo.fill_bytes`), decoded by ``unpacking`` (CF packing,
    :class:`pipeline.ops.cf.Unpacking`; None: none) and put through ``chain`` as NumPy
    computes it (:func:`pipeline.ops.stages.apply_chain`, the run's arithmetic bit for bit):
    a 0-d array of the chain's result dtype. So the output's metadata says what an absent
    chunk of the input computes to (NaN stays NaN, 1.0 through ``* 2``, square, ``+ 1`` is
    5.0). Zero (zarr-python's default) where the decoding gives that element no value (an
    integer decoding of a masked element: a run refuses a block holding one, so no output
    element is computed from it)."""
    x = np.frombuffer(fill, dtype).copy()
    if unpacking is not None:
        if unpacking.unheld(x) is not None:
            out = chain[-1].out_dtype if chain else np.dtype(unpacking.dtype)
            return np.zeros((), out)
        x = unpacking.apply(x, np)
    return np.asarray(stages.apply_chain(chain, x)).reshape(())


def fill_said(fill: np.ndarray) -> int | float | str:
    """A fill value (0-d) as the output's v3 ``zarr.json`` says it, bit for bit, and as the
    output's record says it: an integer, a float (-0.0 too), "Infinity", "-Infinity", "NaN"
    for the spec's own NaN (sign 0, the mantissa's top bit alone set: float32's 0x7fc00000),
    and any other NaN (a payload, a sign, a signalling one) as the v3 spec's hex string of its
    bits, big-endian ("0x7fc00005"): zarr-python writes every NaN as "NaN", which had lost an
    input's payload, its spec's own NaN in the output's metadata where the run computes
    another (``multiply`` keeps the payload)."""
    value = fill.item()
    if isinstance(value, float) and math.isnan(value):
        bits = _float_bits(fill)
        return "NaN" if bits == _spec_nan_bits(fill.dtype) else f"0x{bits:0{fill.itemsize * 2}x}"
    if isinstance(value, float) and not math.isfinite(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def exact_fill_said(meta: Any) -> Any:
    """The fill value of an array's zarr-python metadata ``meta`` as its v3 document says it
    bit for bit (:func:`fill_said`: a NaN's payload and sign in hex), where zarr-python writes
    it otherwise: a v3 NaN fill value other than the spec's own, which zarr-python writes out
    as "NaN" (``to_dict``, ``to_buffer_dict``), read back as the spec's own NaN; None for
    any other (a v2 document's NaN is "NaN" alone, its own too)."""
    if meta.zarr_format != 3:
        return None
    fill = np.asarray(meta.fill_value)
    if fill.dtype.kind != "f" or not bool(np.isnan(fill)):
        return None
    said = fill_said(fill)
    return None if said == "NaN" else said


def _float_bits(x: np.ndarray) -> int:
    """The bits of the float ``x`` (0-d) as an unsigned integer."""
    return int(x.astype(x.dtype.newbyteorder("="), copy=False).view(f"u{x.itemsize}").item())


def _spec_nan_bits(dtype: np.dtype) -> int:
    """The bits of the NaN that the Zarr v3 spec's "NaN" names for the float ``dtype``: sign
    0, exponent all ones, the mantissa's top bit alone (float16 0x7e00, float64
    0x7ff8000000000000)."""
    nbits, mantissa = dtype.itemsize * 8, int(np.finfo(dtype).nmant)
    return ((1 << (nbits - 1)) - 1) & ~((1 << (mantissa - 1)) - 1)


def keep_fill_said(location: Location, path: str, said: Any) -> None:
    """Make the v3 metadata document of the array at ``path`` say its fill value as ``said``
    (:func:`fill_said`'s JSON value) where zarr-python wrote it otherwise: it writes every NaN
    as "NaN" (its ``to_json_scalar`` takes no bits), and reads a hex one into a NumPy scalar
    that may lose them (a float16 payload, a float32 signalling NaN), so no API of it can
    write the bits; only the document's ``fill_value`` is replaced, the rest as it wrote it."""
    key = _key_in(path.strip("/"), "zarr.json")
    raw = location.read(key)
    doc = json.loads(raw) if raw else None
    if not isinstance(doc, dict) or "fill_value" not in doc:
        return
    if json.dumps(doc["fill_value"]) == json.dumps(said):  # -0.0 apart from 0.0
        return
    doc["fill_value"] = said
    location.write(key, [json.dumps(doc, indent=2, allow_nan=True).encode()], atomic=True)


def fills_agree(expected: np.ndarray, found: Any, said: Any = None) -> bool:
    """Whether the fill value ``found`` (as zarr-python parsed it from the metadata) is
    ``expected`` (0-d), bit for bit, -0.0 apart from 0.0; a NaN by ``said``, the document's
    own ``fill_value`` (:func:`stored_fill_said`), its sign and payload too (the run writes
    them, :func:`keep_fill_said`, but zarr-python's parse may lose them: a float16 payload,
    a float32 signalling NaN), or, where it is None (unread), any NaN."""
    got = np.asarray(0 if found is None else found, dtype=expected.dtype)
    if expected.dtype.kind == "f" and np.isnan(expected) and np.isnan(got):
        if said == "NaN":
            return _float_bits(expected) == _spec_nan_bits(expected.dtype)
        if isinstance(said, str) and said.startswith("0x"):
            return said[2:].lower() == f"{_float_bits(expected):0{expected.itemsize * 2}x}"
        return True
    return got.tobytes() == expected.tobytes()


def stored_fill_said(location: Location, path: str) -> Any:
    """The ``fill_value`` of the v3 metadata document of the array at ``path`` as its JSON
    says it ("0x7fc00005", "NaN", 1.0); None where none is read."""
    try:
        raw = location.read(_key_in(path.strip("/"), "zarr.json"))
        doc = json.loads(raw) if raw else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return doc.get("fill_value") if isinstance(doc, dict) else None


#: What Zarr metadata says is at a path (:func:`node_type`).
NodeType = Literal["array", "group", "damaged", "none"]


def enclosing_groups(location: Location) -> list[tuple[Location, str]]:
    """The Zarr groups that hold the store's root folder, nearest first, with the store's
    path in each: each folder above it that is a Zarr group (:func:`node_type`), found
    however many folders up through folders that hold no Zarr metadata and nothing but the
    way down (absent, or empty besides: ``output.store: out.zarr/a/b`` with no group ``a``
    yet is in ``out.zarr``, at ``a/b``; h86d: only the folder just above had been looked at,
    and the alignment with ``out.zarr``'s dimensions was not checked), up to the first Zarr
    node that is not a group, a plain folder that holds other files (the user's own, left
    as it is: :func:`_only_the_way_down`), or the top. What the store holds is then below
    each (a member once the folders between are groups: :func:`write_groups_between`), and
    their consolidated metadata lists it. [] where the store has no folder above it
    (:meth:`Location.parent`), or none of them is a group."""
    found: list[tuple[Location, str]] = []
    here, tail = location, ""
    while (up := here.parent()) is not None:
        holder, name = up
        try:
            kind = node_type(holder, "")
        except OSError as e:  # refused: nothing is known above a prefix granted alone
            if not refused_access(e):
                raise _looked_around(e, holder, "") from None
            break
        if kind == "none" and not _only_the_way_down(holder, name):
            break  # a plain folder of the user's, holding more: no group metadata goes in it
        tail = f"{name}/{tail}" if tail else name
        if kind == "group":
            found.append((holder, tail))
        elif kind != "none":  # an array's folder, or damaged metadata: no group holds it
            break
        here = holder
    return found


def _only_the_way_down(folder: Location, name: str) -> bool:
    """Whether ``folder`` (one without Zarr metadata, :func:`enclosing_groups`) holds nothing
    but ``name``, the next folder down to the store: absent yet, or an empty way down, which
    the run may make a group (:func:`write_groups_between`). A folder that holds other files
    or folders is the user's own, which no run writes metadata into; nor one that cannot be
    listed."""
    try:
        return set(folder.list("")) <= {name}
    except (OSError, StoreError):  # refused (a ListingError too): nothing written there
        return False


def groups_between_missing(location: Location) -> list[str]:
    """The folders between the store's root and the groups enclosing it
    (:func:`enclosing_groups`) that hold no Zarr metadata, nearest the enclosing group first,
    as URLs: what :func:`write_groups_between` writes (a first run's, or a group its run
    wrote and that was removed since: readers of the enclosing group, ``xr.open_datatree``,
    do not reach the store through it). [] where none is missing. Reads only."""
    return [holder.join(folder) for holder, folder, _ in _groups_between(location)]


def _groups_between(location: Location) -> list[tuple[Location, str, bool]]:
    """Each folder between the store and a group enclosing it that holds no Zarr metadata:
    (the nearest enclosing group above it, the folder's path in it, whether that group is
    v3), once each."""
    found: dict[str, tuple[Location, str, bool]] = {}
    for holder, tail in enclosing_groups(location):
        try:
            v3 = holder.exists("zarr.json")
        except Exception as e:
            raise _looked_around(e, holder, "") from None
        parts = tail.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            url = holder.join(folder)
            if url in found:
                continue
            try:
                kind = node_type(holder, folder)
            except Exception as e:
                raise _looked_around(e, holder, folder) from None
            if kind == "none":
                found[url] = (holder, folder, v3)
    return list(found.values())


def _looked_around(e: Exception, holder: Location, folder: str) -> Exception:
    """The error for ``e``, raised where :func:`enclosing_groups` or :func:`_groups_between`
    read the metadata of ``folder`` of the group ``holder`` above the store: a store's
    answer (HTTP 500, a PermissionError, a lost connection: :func:`storage_failure`) as the
    one line of :func:`unreadable_store` that names the group's URL, the answer and the
    fix (verify's and run's line for their other reads of the store; it had passed up as the
    library's error, a line naming no store, h88c); ``e`` itself for anything else."""
    failure = storage_failure(e)
    return e if failure is None else unreadable_store(holder, folder, failure)


def write_groups_between(location: Location) -> list[str]:
    """Write a Zarr group's metadata (no attributes) into each folder between the store's
    root and the groups enclosing it (:func:`enclosing_groups`) that holds none
    (:func:`groups_between_missing`), in the format of the group above it (v3 ``zarr.json``,
    v2 ``.zgroup``): what the store holds is then a member of each, which their readers
    (``xr.open_datatree``, their consolidated metadata) list, as zarr-python writes the
    groups between for an array at a nested path (h86d: ``output.store: out.zarr/a/b`` wrote
    no ``a``, and ``out.zarr``'s readers did not see the output). The folders written, as
    URLs; [] where none was missing. The store's answer to a refused write (an ``OSError``:
    a folder that cannot be written) is raised, for the caller to name."""
    written: list[str] = []
    for holder, folder, v3 in _groups_between(location):
        if v3:
            doc = {"zarr_format": 3, "node_type": "group", "attributes": {}}
            holder.write(f"{folder}/zarr.json", [json.dumps(doc).encode()], atomic=True)
        else:
            holder.write(f"{folder}/.zgroup", [b'{"zarr_format": 2}'], atomic=True)
        written.append(holder.join(folder))
    return written


def node_type(location: Location, path: str) -> NodeType:
    """What the Zarr metadata document at ``path`` says is there: 'array' or 'group' (a v3
    ``zarr.json`` that is a JSON object with ``zarr_format`` 3 and that ``node_type``, or a v2
    ``.zarray`` / ``.zgroup`` that is a JSON object with ``zarr_format`` 2; an array's with
    every member its spec requires), 'damaged' (such a document that is not: truncated, not
    JSON, an array's without its shape or dtype), or 'none' (no such document: a plain
    directory, a lone ``.zattrs``, or nothing). Only metadata is read. A store not on this
    machine that could not be asked (no server answering: aiohttp's connection errors are
    ``OSError``s) raises that error, for the caller to name (:func:`_metadata_shows`): it had
    been 'none', and an HTTP input whose server was down "does not exist: fix input.store"."""
    for name, fmt in (("zarr.json", 3), (".zarray", 2), (".zgroup", 2)):
        key = f"{path}/{name}" if path else name
        try:
            doc = location.read(key)
        except OSError as e:  # a directory where the document belongs, or a file above it
            if not location.is_local and _unanswered(e):
                raise
            if location.exists(key):
                return "damaged"
            continue
        if doc is None:
            continue
        try:
            meta = json.loads(doc)
        except (ValueError, UnicodeDecodeError):
            return "damaged"
        if not isinstance(meta, dict) or meta.get("zarr_format") != fmt:
            return "damaged"
        kind = meta.get("node_type") if fmt == 3 else ("array" if name == ".zarray" else "group")
        if kind == "array":
            return "array" if _ARRAY_KEYS[fmt] <= set(meta) else "damaged"
        return "group" if kind == "group" else "damaged"
    return "none"


def _unanswered(e: OSError) -> bool:
    """Whether ``e``, raised reading a store not on this machine, says that no answer came (a
    connection refused, reset or timed out: Python's own, or aiohttp's, which are
    ``OSError``s too), not what the store answered."""
    return isinstance(e, (ConnectionError, TimeoutError)) or "aiohttp" in type(e).__module__


#: The members an array's metadata document must have for zarr-python to open it (each one
#: left out in turn, zarr 3.1: ``KeyError: 'dtype'``, ``TypeError``; v2's ``filters`` and
#: ``compressor`` may be missing).
_ARRAY_KEYS = {
    3: {"shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value", "codecs"},
    2: {"shape", "chunks", "dtype", "fill_value", "order"},
}


#: An array's own metadata documents (Zarr v3, v2, and consolidated metadata).
ARRAY_DOCUMENTS = frozenset(("zarr.json", ".zarray", ".zattrs", ".zmetadata"))

#: A chunk (or shard) key below its array: ``c/0/1`` or ``c.0.1`` (Zarr v3's default
#: encoding, '/' or '.' separated; ``c`` of a 0-d array), ``0/1`` or ``0.1`` (Zarr v2's, and
#: v3's ``v2`` encoding).
_CHUNK_KEY = re.compile(r"^(c([./]\d+)*|\d+([./]\d+)*)$")

#: The first part of a chunk key (a name directly under the array, file or folder).
_CHUNK_KEY_ROOT = re.compile(r"^(c(\.\d+)*|\d+(\.\d+)*)$")

#: A file being written when its writer was stopped: the pipeline's own (``.NAME.tmp-PID-TID``,
#: :meth:`Location.write`), zarr-python's (``NAME.HEX.partial``, its local store's atomic write,
#: which replaces the name's last suffix: ``zarr.json`` is ``zarr.HEX.partial``, chunk ``3.2``
#: is ``3.HEX.partial``) or tensorstore's lock (``KEY.__lock``); groups 1-3: what it was for.
_TEMPORARY = re.compile(
    r"^(?:\.(.+)\.tmp-\d+-\d+|(.+?)(?:\.json)?\.[0-9a-f]{32}\.partial|(.+)\.__lock)$"
)


@dataclass(frozen=True)
class _KeyRule:
    """How an array names its chunks (or shards): a prefix ('c' for Zarr v3's default
    encoding, '' for v2's and v3's ``v2``), the separator, and the grid of chunk indices."""

    prefix: str
    separator: str
    grid: tuple[int, ...]
    documents: frozenset[str] = ARRAY_DOCUMENTS
    """the array's own metadata documents (v3 ``zarr.json``; v2 ``.zarray``, ``.zattrs``)"""

    def holds(self, key: str, prefix_only: bool = False) -> bool:
        """Whether ``key`` (below the array) is one of its chunk keys (``prefix_only``: one
        without its last index, as zarr-python names a temporary of a '.'-separated key)."""
        if prefix_only and (self.separator != "." or not self.grid):
            return False
        parts = key.split(self.separator)
        if self.prefix:
            if parts[0] != self.prefix:
                return False
            parts = parts[1:]
        if not self.grid:  # a 0-d array: 'c', or v2's '0'
            return (not parts) if self.prefix else parts == ["0"]
        grid = self.grid[:-1] if prefix_only else self.grid
        if len(parts) != len(grid) or not all(p.isdigit() for p in parts):
            return False
        return all(int(p) < n for p, n in zip(parts, grid, strict=True))


def _key_rule(location: Location, path: str) -> _KeyRule | None:
    """The chunk keys of the array at ``path``, from its metadata (v3 ``chunk_key_encoding``
    and ``chunk_grid``, whose chunks are its shards where it has some; v2
    ``dimension_separator`` and ``chunks``); None where no readable array metadata says."""
    for name in ("zarr.json", ".zarray"):
        try:
            raw = location.read(f"{path}/{name}" if path else name)
            meta = json.loads(raw) if raw else None
        except (OSError, ValueError, UnicodeDecodeError):
            meta = None
        if not isinstance(meta, dict):
            continue
        try:
            shape = [int(n) for n in meta["shape"]]
            if name == "zarr.json":
                chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
                enc = meta.get("chunk_key_encoding") or {"name": "default"}
                sep = (enc.get("configuration") or {}).get(
                    "separator", "/" if enc.get("name") == "default" else "."
                )
                prefix = "c" if enc.get("name") == "default" else ""
            else:
                chunks, sep, prefix = meta["chunks"], meta.get("dimension_separator") or ".", ""
            grid = tuple(-(-n // max(int(c), 1)) for n, c in zip(shape, chunks, strict=True))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        v3 = name == "zarr.json"
        docs = frozenset({"zarr.json"} if v3 else {".zarray", ".zattrs"})
        return _KeyRule(prefix, str(sep), grid, docs)
    return None


def _is_array_file(rel: str, rule: _KeyRule | None = None) -> bool:
    """Whether ``rel`` (a key below an array) is the array's: its metadata, a chunk (one of
    ``rule``'s keys where the array's metadata gives it, else any name shaped like a chunk
    key), or one of those being written when its writer stopped."""
    if rel in (rule.documents if rule is not None else ARRAY_DOCUMENTS) or is_write_probe(rel):
        return True  # a v2 document in a v3 array's folder is a user's (helper-45)
    if rule.holds(rel) if rule is not None else _CHUNK_KEY.match(rel):
        return True
    head, _, name = rel.rpartition("/")
    temp = _TEMPORARY.match(name)
    if temp is None:
        return False
    meant = temp.group(1) or temp.group(2) or temp.group(3)
    meant = "zarr.json" if meant == "zarr" else meant
    full = f"{head}/{meant}" if head else meant
    if _is_array_file(full, rule):
        return True
    # zarr-python's temporary of chunk '3.2' is '3.HEX.partial': its last index is gone
    shortened = temp.group(2) is not None
    if not shortened:
        return False
    return rule.holds(full, prefix_only=True) if rule is not None else bool(_CHUNK_KEY.match(full))


def stray_entries(
    location: Location, path: str, keep: tuple[str, ...] = (), written: bool = False
) -> list[str]:
    """The names directly under the array at ``path``, and the files deeper, that are not the
    array's, by their keys below it: neither its metadata documents nor at a chunk key (nor
    one of those being written when a run was stopped), nor under one of ``keep`` (names
    directly under the array), which replacing the array must not delete: a user's notes,
    another array put inside it, a backup folder, at any depth (``c/notes.txt``, ``c/0/README``,
    a group at ``c/keep``: helper-41). One listing of every file under it. Files that
    operating systems and file managers write into any folder (:data:`OS_FILES
    <pipeline.store.location.OS_FILES>`: a ``.DS_Store``, an AppleDouble ``._c``) are none of
    them: replacing the array deletes them with it (a complete output holding one had been
    refused by ``plan`` and ``run``, and ``run --overwrite`` had refused to replace it).
    ``written``: the array is one this pipeline wrote, whose chunks lie at Zarr v3's default
    keys (``c/0/0``, what :func:`create_output` writes) whatever its metadata says now: a
    chunk key encoding edited by hand had made them files beside the array, and
    ``run --overwrite``, the fix that names the edit, refused the output."""
    base = f"{path.strip('/')}/" if path.strip("/") else ""
    rule = _key_rule(location, path)
    rules = [rule]
    if written and rule is not None and rule.documents == frozenset({"zarr.json"}):
        rules.append(replace(rule, prefix="c", separator="/"))

    def ours(rel: str) -> bool:
        return any(_is_array_file(rel, r) for r in rules)

    stray = [  # folders too, empty ones among them
        n
        for n in location.entries(path)
        if n not in keep and not _CHUNK_KEY_ROOT.match(n) and not ours(n)
    ]
    for key in location.file_sizes(path):
        rel = key[len(base) :]
        top = rel.split("/", 1)[0]
        if top in keep or top in stray or ours(rel) or is_os_file(rel):
            continue
        stray.append(rel)
    return sorted(stray)


def only_remains(location: Location, path: str) -> bool:
    """Whether the folder at ``path`` holds no file but those a write stopped midway leaves
    (zarr-python's ``NAME.HEX.partial``, the pipeline's ``.NAME.tmp-PID-TID``), if any: an
    array whose making a kill interrupted before its metadata was there (helper-42: such an
    empty coordinate folder blocked every later run), or those an operating system wrote there
    (:func:`~pipeline.store.location.is_os_file`). Nothing of anyone's is lost by deleting it.
    False where ``path`` is itself a file (a user's, not a folder of remains): a plain file at
    a coordinate's name, whose walk lists nothing under it, had been taken for an empty
    folder of remains and deleted by ``--overwrite`` (h80a)."""
    if location.is_local:
        full = location.join(path)
        if os.path.lexists(full) and not os.path.isdir(full):
            return False
    elif location.is_object(path):
        return False
    return all(
        _TEMPORARY.match(key.rpartition("/")[2]) or is_os_file(key)
        for key in location.file_sizes(path)
    )


def clear_array(location: Location, path: str, keep: str) -> None:
    """Delete everything stored under ``path`` except the entry named ``keep``: its metadata
    documents first, so that one stopped midway leaves no metadata that says its chunks,
    half deleted, are there (a generated input's had said 'complete')."""
    names = [n for n in location.list(path) if n != keep]
    names.sort(key=lambda n: n not in _METADATA_NAMES)  # stable: the documents first
    for name in names:
        location.delete(f"{path}/{name}" if path else name, recursive=True)


def update_attributes(
    location: Location,
    path: str,
    attrs: dict[str, Any],
    folder: Folder | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """Merge ``attrs`` into the array's attributes (Zarr rewrites its metadata document), its
    v3 fill value kept as the document said it (:func:`keep_fill_said`: zarr-python rewrites
    a NaN's bits as "NaN"). ``folder``: the array's local folder, held open
    (``Ledger.held_folder``), whose document is rewritten wherever that folder is now, never
    the one of an array put at ``path`` since (:func:`_attributes_in_folder`).

    ``check``: asked right before the write, raising where the writer may no longer write
    there (its lock's ``Ledger.check_writing``), and made one step with the write where the
    store allows it: through a local ``folder``, under an OS lock on that folder
    (:meth:`Folder.locked`), which a run taking the array's lock waits for
    (``Ledger._acquire_local``); on S3 the document is read with its ETag before ``check``
    and written back only while it is still that version (If-Match:
    :func:`_attributes_if_unchanged`), so a document rewritten meanwhile (by a run that took
    the lock after the check: its create) is read and checked again, which refuses. A run
    whose lock was taken over (paused past the lease) had written its "complete" into the
    new holder's output, its own metadata with it (h84c). On a store without such
    conditions (a local file system without folder locks, an S3-compatible store answering
    501, another fsspec store) the check comes just before the write, a window between."""
    import zarr

    if folder is not None:
        with folder.locked():
            if check is not None:
                check()
            _attributes_in_folder(folder, attrs)
        return
    if _attributes_if_unchanged(location, path, attrs, check):
        return
    if check is not None:
        check()
    raw = location.read(_key_in(path.strip("/"), "zarr.json"))
    doc = json.loads(raw) if raw else None
    arr = zarr.open_array(store=location.zarr_store(read_only=False), path=path, mode="r+")
    arr.update_attributes(attrs)
    if isinstance(doc, dict) and "fill_value" in doc:
        keep_fill_said(location, path, doc["fill_value"])


#: How many times :func:`_attributes_if_unchanged` reads the document again where it was
#: rewritten between its read and its write (by a writer whose lock check still passes).
_REWRITE_TRIES = 8


def _attributes_if_unchanged(
    location: Location, path: str, attrs: dict[str, Any], check: Callable[[], None] | None
) -> bool:
    """:func:`update_attributes` on a store with conditional writes (S3): the array's
    metadata document (a v3 ``zarr.json``, a v2 ``.zattrs``) read with its version's tag
    (:meth:`Location.read_tagged`, one GET), ``check`` asked, then the document with
    ``attrs`` merged in written only if it is still that version (:meth:`Location.replace_if`,
    If-Match; an absent ``.zattrs`` only if still absent, :meth:`Location.write_new`), the
    rest of it as it was; read, checked and written again where another version came
    meanwhile. True once written; False where the store has no such condition (nothing
    written: the caller writes as before), or no array is there (the caller's write says
    so). StoreError where it keeps being rewritten."""
    base = path.strip("/")
    for _ in range(_REWRITE_TRIES):
        key = _key_in(base, "zarr.json")
        read = location.read_tagged(key)
        doc = _json_or_none(read[0]) if read is not None else None
        if isinstance(doc, dict) and doc.get("node_type") == "array":
            doc["attributes"] = {**(doc.get("attributes") or {}), **attrs}
        elif isinstance(_json_or_none(location.read(_key_in(base, ".zarray")) or b""), dict):
            key = _key_in(base, ".zattrs")
            read = location.read_tagged(key)
            doc = {**((_json_or_none(read[0]) if read is not None else None) or {}), **attrs}
        else:
            return False
        if read is not None and read[1] is None:  # a store without versions' tags
            return False
        if check is not None:  # after the read: a version written since is not the one read
            check()
        body = json.dumps(doc, indent=2, allow_nan=True).encode()
        try:
            if read is None:
                if location.write_new(key, [body]) is not None:
                    return True
            elif read[1] is not None and location.replace_if(key, body, read[1]) is not None:
                return True
        except NotImplementedError:  # an S3-compatible store that refuses If-Match
            return False
    raise StoreError(
        f"{location.shown(_key_in(base, 'zarr.json'))} kept being rewritten while this run "
        "wrote its attributes: stop whatever else writes that array, then run again",
        where=location.join(base),
    )


def _attributes_in_folder(folder: Folder, attrs: dict[str, Any]) -> None:
    """:func:`update_attributes` through the array's ``folder``: its metadata document read
    and written (atomically) under it, as zarr-python writes it (JSON, indented by 2), the
    rest of the document as it was: a v3 array's ``zarr.json`` (its ``attributes``), else a
    v2 array's ``.zattrs`` beside its ``.zarray``. ArrayNotFoundError where it holds
    neither."""
    doc = _json_or_none(folder.read("zarr.json", most=None))
    if isinstance(doc, dict) and doc.get("node_type") == "array":
        doc["attributes"] = {**(doc.get("attributes") or {}), **attrs}
        name = "zarr.json"
    elif isinstance(_json_or_none(folder.read(".zarray", most=None)), dict):
        doc = {**(_json_or_none(folder.read(".zattrs", most=None)) or {}), **attrs}
        name = ".zattrs"
    else:
        from zarr.errors import ArrayNotFoundError

        raise ArrayNotFoundError(f"no array found in {folder.path}")
    folder.write(name, [json.dumps(doc, indent=2, allow_nan=True).encode()], atomic=True)


def _json_or_none(raw: bytes) -> Any:
    """The JSON document ``raw`` holds; None where it is empty or no JSON."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def read_attributes(location: Location, path: str) -> dict[str, Any]:
    import zarr

    with format_warnings_ignored():
        arr = zarr.open_array(store=location.zarr_store(read_only=True), path=path, mode="r")
    return dict(arr.attrs)


#: The output's attribute that records the run which made it (status, version, source,
#: stages, fingerprint, identity, ...): :func:`record_attribute` writes it, :func:`run_record`
#: reads it.
RUN_RECORD = "pipeline"


def record_attribute(record: dict[str, Any]) -> dict[str, str]:
    """The attribute that holds a run's ``record`` in its output: {``pipeline``: the record
    as JSON text}. Text, not a mapping: netCDF, and so xarray's ``to_netcdf`` of the output
    Dataset, takes no mapping as an attribute's value (it had refused the output with
    "Invalid value for attr 'pipeline'", the record to be dropped first: h67c); text survives
    that conversion, and ``json.loads`` gives the record back."""
    return {RUN_RECORD: json.dumps(record)}


def run_record(attrs: Any) -> dict[str, Any] | None:
    """The run record that the attributes ``attrs`` hold (:func:`record_attribute`'s JSON
    text, or, written by an earlier version, the mapping itself), as a mapping; None where
    they hold none, or what they hold under ``pipeline`` is no JSON text of a mapping (a
    user's own attribute of that name)."""
    value = attrs.get(RUN_RECORD) if isinstance(attrs, dict) else None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def record_in_earlier_form(attrs: Any) -> bool:
    """Whether the attributes ``attrs`` hold the run record as an earlier version wrote it:
    the mapping itself under ``pipeline``, not :func:`record_attribute`'s JSON text. It is the
    same record (:func:`run_record` reads either), but xarray's ``to_netcdf`` of the output
    refuses it ("Invalid value for attr 'pipeline'"): ``run --resume`` of the complete output
    writes it again as text (``running/output.py``, ``write_again``)."""
    return isinstance(attrs, dict) and isinstance(attrs.get(RUN_RECORD), dict)


# --------------------------------------------------------------------------------------------
# Inputs the pipeline generated, and whether they are finished.

#: The attribute of a generated input: how it was made, and whether every unit is written.
GENERATED = "pipeline_generated"


def create_generated(
    store: Any,
    path: str,
    g: GenerateConfig,
    chunk: Shape,
    unit: Shape,
    attrs: dict[str, Any],
) -> Any:
    """A generated input's metadata, created with Zarr in the Zarr store ``store`` (replacing
    what is there): Zarr v3 with zstd frames, in shards of ``unit`` when it is not ``chunk``,
    or Zarr v2; little-endian, or big-endian where ``g.dtype`` says so ('>f4': the v3 bytes
    codec's endian 'big', the v2 dtype '>f4'); the Zarr array. Nothing may be there but the
    folder ``.pipeline`` (the generation's lock, which Zarr's ``overwrite`` would delete with
    the folder: :func:`clear_array` empties it first, keeping that)."""
    import numcodecs
    import zarr
    from zarr.codecs import BytesCodec, ZstdCodec

    dtype = np.dtype(g.dtype)
    order: Literal["<", ">"] = (
        ">" if dtype.byteorder == ">" else "<"
    )  # zarr writes '>f4' little in v3
    zstd = g.codec.name == "zstd"
    v3 = g.zarr_format == 3
    if v3:
        comp: Any = ZstdCodec(level=g.codec.level, checksum=g.codec.checksum) if zstd else None
    else:
        comp = numcodecs.Zstd(level=g.codec.level, checksum=g.codec.checksum) if zstd else None
    return zarr.create_array(
        store=store,
        name=path or None,
        shape=g.shape,
        dtype=dtype if v3 else dtype.newbyteorder(order),
        serializer=BytesCodec(endian="big") if v3 and order == ">" else "auto",
        chunks=chunk,
        shards=unit if v3 and unit != chunk else None,
        compressors=comp,
        fill_value=0,
        attributes=attrs,
        overwrite=False,
        zarr_format=g.zarr_format,
    )


def generation_status(location: Location, path: str) -> str | None:
    """'complete' or 'incomplete' for an input that ``generate`` made (one made by a version
    that did not record it counts as complete); None for any other array, or no array. An
    array whose generation was stopped (:func:`stopped_generation`: its metadata written,
    its attributes maybe not, a Zarr v2 ``.zarray`` without its ``.zattrs``) is
    'incomplete'."""
    status = _generation_status(_attributes(location, path))
    if status != "complete" and stopped_generation(location, path) is not None:
        return "incomplete"
    return status


def stopped_generation(location: Location, path: str) -> dict[str, Any] | None:
    """The holder (``pid``, ``host``, ``since``, as far as known) of the generation of the
    array at ``path`` that was stopped (killed) before it finished; None where there was
    none. Such a generation left its lock (:meth:`pipeline.store.ledger.InputLock.left`),
    which every generation removes when it ends, and did not mark the array complete: it left
    the lock's folder alone, the array's folder half cleared, its metadata with or without
    its attributes, some of its chunks. A lock left after the array was marked complete (a
    kill as the lock was removed) is none. Reads only."""
    from pipeline.store import ledger

    path = path.strip("/")
    try:
        holder = ledger.InputLock(location, path).left()
    except Exception:  # the store's refusal (no credentials, HTTP 403), a path under a file:
        return None  # the input's opening names it, as it names it for every input
    if holder is None or _generation_status(_attributes(location, path)) == "complete":
        return None
    return holder


def check_generation_stopped(
    location: Location, path: str, described: bool, when_missing: bool = False
) -> None:
    """Refuse (InputError, as :func:`check_finished`: ``status`` 'incomplete', ``made_by``
    'generate', ``holder``) the input at ``path`` whose generation was stopped before it
    finished (:func:`stopped_generation`), in every state it may have left, its metadata
    written or not. Without metadata it had been "no Zarr array at ...: it is a folder of no
    Zarr metadata; check input.array", or "it holds chunks but no metadata", or (Zarr v2,
    its ``.zattrs`` not written) read as a complete array. Call it before the input is
    opened. Reads only."""
    holder = stopped_generation(location, path)
    if holder is None:
        return
    where = location.join(path.strip("/"))
    meta = any(location.exists(k) for k in _metadata_keys(path.strip("/")))
    lost = "some of its chunks were" if meta else "its metadata and chunks were"
    who = f" (pid {holder['pid']})" if "pid" in holder else ""
    raise InputError(
        f"the input {name_shown(where)} is unfinished: its generation{who} was stopped before it "
        f"finished, so {lost} never written; {_generate_again(described, when_missing)}",
        input=where,
        status="incomplete",
        made_by="generate",
        holder=holder,
    )


def _metadata_keys(path: str) -> list[str]:
    return [f"{path}/{k}" if path else k for k in ("zarr.json", ".zarray")]


def _generate_again(described: bool, when_missing: bool) -> str:
    """The fix of an input whose generation did not finish: the command that makes it again
    (``described``: the config has ``input.generate``; ``when_missing``: with
    ``when_missing: true``, so ``run`` does)."""
    if when_missing:  # the setting is there already (verify's line had asked for it)
        return "`pipeline run CONFIG` generates it again first (input.generate.when_missing)"
    if described:
        return (
            "`pipeline generate CONFIG` generates it again (or set "
            "input.generate.when_missing: true and `run` does)"
        )
    return "generate it again with `pipeline generate` and the config that describes it"


def _generation_status(attrs: dict[str, Any]) -> str | None:
    doc = attrs.get(GENERATED)
    if not isinstance(doc, dict):
        return None
    return "incomplete" if doc.get("status") == "incomplete" else "complete"


def _attributes(location: Location, path: str) -> dict[str, Any]:
    """The attributes of the array at ``path``; {} when there is none, or they cannot be
    read (describe_array names that problem)."""
    path = path.strip("/")
    if not any(location.exists(f"{path}/{k}" if path else k) for k in ("zarr.json", ".zarray")):
        return {}
    try:
        return read_attributes(location, path)
    except Exception:
        return {}


def check_not_being_written(location: Location, path: str, generation_only: bool = False) -> None:
    """Refuse (InputError: ``input``, ``status`` 'generating' or 'writing', ``holder``) to
    read the array at ``path`` that a process of the pipeline is writing now: ``generate``
    (or a run's ``input.generate.when_missing``), which holds the input's lock
    (:class:`~pipeline.store.ledger.InputLock`), or, unless ``generation_only``, a run
    writing it as its output (a chained run's input), which holds the output's lock. Its
    chunks are being replaced: a run had read them half-rewritten (or its attributes still
    said complete while its chunks were deleted). Reads only."""
    from pipeline.store import ledger

    path = path.strip("/")
    if generation_only:
        holder = ledger.InputLock(location, path).holder()
        found = None if holder is None else ("generate", holder)
    else:
        found = ledger.writer_of(location, path)
    if found is None:
        return
    what, holder = found
    where = location.join(path)
    who = ledger.holder_said(
        holder, ledger.GENERATING_CALL if what == "generate" else "`pipeline.run`"
    )
    doing = "being generated" if what == "generate" else "being written by a run, as its output,"
    raise InputError(
        f"the input {name_shown(where)} is {doing} now ({who}), so its chunks are being replaced: "
        "wait for it to end, then give this command again",
        input=where,
        status="generating" if what == "generate" else "writing",
        holder=holder,
    )


def check_finished(
    location: Location, path: str, described: bool, when_missing: bool = False
) -> None:
    """Refuse (InputError) an input that the pipeline began and did not finish: one whose
    generation was interrupted or stopped (:func:`check_generation_stopped`), or the output
    of an interrupted run (a chained run). The
    chunks they lack would be read as fill values. ``described``: the config has an
    ``input.generate`` section for it (the fix then is to generate it again with that config);
    ``when_missing``: that section has ``when_missing: true``, so ``run`` itself does.

    The error's fields: ``input`` (where), ``status`` ('incomplete'), ``made_by`` ('generate'
    or 'run')."""
    path = path.strip("/")
    attrs = _attributes(location, path)
    where = location.join(path)
    if GENERATED in attrs or run_record(attrs) is not None:
        check_not_being_written(location, path)  # its "unfinished" may be a live writer's
    check_generation_stopped(location, path, described, when_missing)
    if _generation_status(attrs) == "incomplete":
        fix = _generate_again(described, when_missing)
        raise InputError(
            f"the input {name_shown(where)} is unfinished: its generation was interrupted, so "
            "some of its "
            f"chunks were never written; {fix}",
            input=where,
            status="incomplete",
            made_by="generate",
        )
    run = run_record(attrs)
    if run is not None and run.get("status") == "incomplete":
        raise InputError(
            f"the input {name_shown(where)} is the output of an interrupted run, so some of its "
            "chunks "
            "were never written: `pipeline verify` with the config that made it names the "
            "command that finishes it",
            input=where,
            status="incomplete",
            made_by="run",
        )


def check_as_generated(location: Location, path: str, arr: Any, planned: Any) -> None:
    """Refuse (InputError) an input that ``generate`` made (its ``pipeline_generated``
    attribute) from another ``input.generate`` than the config's: ``arr`` the stored Zarr
    array, ``planned`` the Zarr array (metadata only, in memory) that ``input.generate`` makes
    now, with its ``pipeline_generated`` attribute. Compared: every field that the section holds
    and the input records, the metadata's shape, dtype, chunks, shards, compressor and Zarr
    format, and the attribute's distribution and seed (one that an older version did not
    record is not compared). An input that a run with ``when_missing`` finds, not missing, had
    been read as it was: an output computed from data the config no longer describes. An array
    that ``generate`` did not make is not compared.

    The error's fields: ``input`` (where), ``status`` 'differs', ``differs`` (each differing
    field's name, with its stored value and the config's)."""
    doc = dict(arr.attrs).get(GENERATED)
    if not isinstance(doc, dict):
        return
    made = dict(planned.attrs).get(GENERATED) or {}
    differs: dict[str, list[Any]] = {}
    stored, wanted = _made_of(arr, doc), _made_of(planned, made)
    for name, was in stored.items():
        if name in wanted and was != wanted[name]:
            differs[name] = [was, wanted[name]]
    if not differs:
        return
    where = location.join(path.strip("/"))
    was_words = ", ".join(f"{k} {_field_words(v[0])}" for k, v in differs.items())
    says_words = ", ".join(f"{k} {_field_words(v[1])}" for k, v in differs.items())
    raise InputError(
        f"the input {name_shown(where)} was generated with {was_words}, where input.generate now "
        "makes "
        f"{says_words}: a run would read an input that the config no longer describes; "
        "`pipeline generate CONFIG` generates it again as input.generate says (replacing it), "
        "or set input.generate back as it was",
        input=where,
        status="differs",
        differs=differs,
    )


def _made_of(arr: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """What a generated array (``arr``, its ``pipeline_generated`` attribute ``doc``) was made
    with, by the names of ``input.generate``'s fields: JSON-like values."""
    codec: Any = "none"
    if arr.compressors:  # zarr's ZstdCodec (v3) or numcodecs' Zstd (v2), as generate writes
        c = arr.compressors[0]
        codec = {
            "name": type(c).__name__.lower().removesuffix("codec"),
            "level": getattr(c, "level", None),
            "checksum": bool(getattr(c, "checksum", False)),
        }
    made: dict[str, Any] = {
        "shape": list(arr.shape),
        "dtype": _stored_dtype_words(arr),
        "chunks": list(arr.chunks),
        "shards": list(arr.shards) if arr.shards else "none",
        "codec": codec,
        "zarr_format": int(arr.metadata.zarr_format),
    }
    for name in ("distribution", "seed"):
        if name in doc:
            made[name] = doc[name]
    return made


def _stored_dtype_words(arr: Any) -> str:
    """The dtype of the Zarr array ``arr`` as ``input.generate.dtype`` names it, with the byte
    order it is stored in: ``'float32'`` little-endian, ``'>f4'`` big-endian (Zarr v2's dtype,
    v3's ``bytes`` codec's ``endian``, inside a sharding codec too), so a little-endian input
    is not taken for the big-endian one a config now describes."""
    stored = np.dtype(arr.dtype)
    native = stored.newbyteorder("=") if stored.byteorder not in ("=", "|") else stored
    big = stored.str[0] == ">"
    if arr.metadata.zarr_format == 3:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chain = arr.metadata.to_dict().get("codecs") or []
        while (at := codecs.sharding_at(chain)) is not None:  # after transposes too
            chain = (chain[at].get("configuration") or {}).get("codecs") or []
        conf = next((c.get("configuration") or {} for c in chain if c.get("name") == "bytes"), {})
        big = conf.get("endian", "little") == "big"
    return ">" + native.str[1:] if big and native.itemsize > 1 else str(native)


def _field_words(value: Any) -> str:
    """A field's value as the config writes it: ``[40, 50]``, ``zstd level 1``."""
    if isinstance(value, dict):
        words = f"{value['name']} level {value['level']}"
        return words + (" with checksum" if value["checksum"] else "")
    return str(value)


# --------------------------------------------------------------------------------------------
# What an output's stored units are, by their files' sizes.


def _unit_keys(arr: Any) -> list[str]:
    """Every key of the unit grid of the Zarr v3 array ``arr`` (its shards, or chunks where it
    is unsharded), relative to the array, in the grid's order."""
    unit = tuple(arr.shards or arr.chunks)
    return [
        arr.metadata.encode_chunk_key(index)
        for index in grid.iter_indices(grid.grid_shape(tuple(arr.shape), unit))
    ]


def unit_listing(location: Location, path: str) -> dict[str, tuple[int, float | None]]:
    """One listing of the array's folder at ``path``: every file under it by its store key,
    with its size and modification time (:meth:`Location.file_sizes_and_times`), for
    :func:`stored_units`, :func:`units_differ` and :func:`units_modified` to share."""
    return location.file_sizes_and_times(path.strip("/"))


def _unit_sizes(
    location: Location,
    path: str,
    arr: Any,
    listed: dict[str, tuple[int, float | None]] | None = None,
) -> list[tuple[str, int | None]]:
    """Each unit key of ``arr`` (:func:`_unit_keys`) with its file's size, None where no file
    is there: from ``listed`` (:func:`unit_listing`), else one listing of the array's folder."""
    base = path.strip("/")
    if listed is None:
        listed = unit_listing(location, path)
    found = [(key, listed.get(f"{base}/{key}" if base else key)) for key in _unit_keys(arr)]
    return [(key, None if f is None else f[0]) for key, f in found]


def stored_units(
    location: Location,
    path: str,
    arr: Any,
    listed: dict[str, tuple[int, float | None]] | None = None,
) -> dict[str, Any]:
    """What the Zarr v3 array ``arr`` at ``path`` stores now, by its units' files (its shard
    files, or chunk files where it is unsharded), from one listing of its folder (no reads):
    ``files`` (how many keys of its unit grid hold a file), ``bytes`` (their sizes' sum) and
    ``digest`` (32 hex digits, of every key of the grid, relative to the array, with its
    file's size or its absence). Two listings with one digest hold the same keys with files of
    the same sizes; where the array is does not enter it (an output moved holds the same).
    What a complete output records of the files its run wrote (:func:`units_differ` compares
    with it), with ``check``, :func:`_stored_check` of the three, so that an edit of the
    record is told from a change of the files (:func:`stored_edited`)."""
    import hashlib

    h = hashlib.sha256()
    files = size = 0
    for key, n in _unit_sizes(location, path, arr, listed):
        h.update(f"{key}:{'-' if n is None else n}\n".encode())
        if n is not None:
            files, size = files + 1, size + n
    doc: dict[str, Any] = {"files": files, "bytes": size, "digest": h.hexdigest()[:32]}
    return {**doc, "check": _stored_check(doc)}


def _stored_check(stored: dict[str, Any]) -> str:
    """16 hex digits of :func:`stored_units`' ``files``, ``bytes`` and ``digest``, as JSON
    holds them."""
    import hashlib

    doc = json.dumps([stored.get("files"), stored.get("bytes"), stored.get("digest")])
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def stored_edited(recorded: Any) -> bool:
    """Whether ``recorded``, the ``stored`` of a complete output's record
    (:func:`stored_units` as its run took it), was edited since: its ``check`` is not that
    of its other fields, or (a record from before ``check``) its ``digest`` is not 32 hex
    digits, as no run writes it. False where nothing is recorded (h56b: an edited digest had
    been "its shard files' sizes differ", the output said damaged where its files were
    whole)."""
    if not isinstance(recorded, dict) or "digest" not in recorded:
        return False
    if "check" in recorded:
        return recorded["check"] != _stored_check(recorded)
    digest = recorded["digest"]
    return not (
        isinstance(digest, str) and len(digest) == 32 and set(digest) <= set("0123456789abcdef")
    )


def units_differ(
    location: Location,
    path: str,
    arr: Any,
    recorded: Any,
    listed: dict[str, tuple[int, float | None]] | None = None,
) -> str | None:
    """Whether the unit files of the array ``arr`` at ``path`` are not those its run wrote
    (``recorded``: :func:`stored_units` then, the ``stored`` of a complete output's record),
    in a few words: how many of them are gone and their keys (three, then how many more:
    :func:`~pipeline.errors.some_shown`; the first alone had been named, h86c), or that their sizes
    differ (a file cut short, or another unit's put in its place). A file deleted reads as
    the fill value and a damaged one fails, which a sampled ``verify`` and a resume that
    trusted the record had passed. A file rewritten to its own size is not seen (``verify
    --all`` compares every block). None where they are the same, or nothing is recorded (an
    output written by a version that did not record its files). ``listed``: the array
    folder's listing (:func:`unit_listing`), else one is made."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("digest"), str):
        return None
    if listed is None:
        listed = unit_listing(location, path)
    if stored_units(location, path, arr, listed)["digest"] == recorded["digest"]:
        return None
    what = "shard files" if arr.shards else "chunk files"
    found = _unit_sizes(location, path, arr, listed)
    gone = [key for key, n in found if n is None]
    if gone:  # their keys in the store, as a listing shows them
        base = path.strip("/")
        keys = [f"{base}/{key}" if base else key for key in gone]
        return (
            f"{len(gone)} of its {len(found)} {what} gone ({some_shown(keys)}), read as the "
            "fill value"
        )
    now = sum(n or 0 for _, n in found)
    held = sum(n is not None for _, n in found)
    if (held, now) == (recorded.get("files"), recorded.get("bytes")):  # the same in all
        return (
            f"its {held} {what} hold {now} bytes in all, as the run wrote, but not at the "
            "same keys (files swapped or moved), or the digest of them that its record "
            "holds was edited since"
        )
    return (
        f"its {what}' sizes differ from those the run wrote ({now} bytes in all now, "
        f"{recorded.get('bytes', '?')} then: a file cut short or grown, or another unit's put "
        "in its place)"
    )


#: The metadata documents that :func:`units_modified` takes the time of: the one the run's
#: completion writes last (the array's attributes: a v3 array's ``zarr.json``, a v2 array's
#: ``.zattrs``).
_MARKED_DOCUMENTS = ("zarr.json", ".zattrs")


def mark_after_units(
    location: Location,
    path: str,
    arr: Any,
    before: dict[str, tuple[int, float | None]],
    after: dict[str, tuple[int, float | None]],
) -> str | None:
    """Once every block of the complete array ``arr`` at ``path`` was compared and each was
    as computed (``verify --all``): move the time of its attributes document (the mark of
    completion :func:`units_modified` reads) to that of its latest unit file, so that unit
    files modified after the mark but holding what the run wrote (touched, or copied without
    their times: ``cp -r``) are no longer taken as changed since, by ``run`` and ``verify``
    alike: ``run --resume`` had refused such an output, naming ``verify --all``, which passed
    it and changed nothing, so only ``run --overwrite`` cleared it (h84a). ``before`` and
    ``after``: :func:`unit_listing`'s of the array's folder before the blocks were read and
    after; the mark moves only where every unit file and the document are in both as they
    were (none written while the blocks were read: a file changed since its block was read
    stays later than the mark), and the document is so still. A later change of a unit file
    gives it a later time again. None where the mark was moved, or needed not be; else why
    it was not, in a few words: a store that is not local (an object's time is the server's,
    set where it is written), a file changed meanwhile, a unit file dated later than now (a
    mark moved there would hide a change made before that time), a time that cannot be set."""
    if not location.is_local:
        return "the store's times are its own, set where an object is written"
    base = path.strip("/")
    doc = next(
        (k for k in (f"{base}/{d}" if base else d for d in _MARKED_DOCUMENTS) if k in after),
        None,
    )
    keys = [f"{base}/{k}" if base else k for k in _unit_keys(arr)]
    if doc is None or any(before.get(k) != after.get(k) for k in [doc, *keys]):
        return "its files changed while the blocks were read"
    times = [t for k in keys if k in after and (t := after[k][1]) is not None]
    marked = after[doc][1]
    if not times or marked is None or max(times) <= marked:
        return None
    now = time.time_ns()
    ahead = [k for k in keys if k in after and (t := after[k][1]) is not None and t > now]
    if ahead:  # a mark moved there would hide any change made before that time (h84e)
        # each named, where each is to be touched (h86c: the first alone had been)
        clock, them = ("the file's time", "it") if len(ahead) == 1 else ("their times", "them")
        return (
            f"{some_shown([location.join(k) for k in ahead])} dated later than now: set "
            f"{clock} right (`touch` {them}) and verify --all again"
        )
    where = location.join(doc)
    try:
        st = os.stat(where)
        if st.st_mtime_ns != marked:
            return "its metadata was written meanwhile"
        os.utime(where, ns=(st.st_atime_ns, int(max(times))))
    except OSError as e:
        return f"the time of {name_shown(where)} cannot be set: {e.strerror or e}"
    return None


def units_modified(
    location: Location,
    path: str,
    arr: Any,
    recorded: Any,
    listed: dict[str, tuple[int, float | None]] | None = None,
) -> str | None:
    """Whether unit files of the complete array ``arr`` at ``path`` were modified after the
    run marked it complete, in a few words (how many, and their keys: three, then how many
    more, :func:`~pipeline.errors.some_shown`; the first alone had been named, h86c); None where
    none was, where ``recorded`` (the ``stored`` of its complete record) says nothing (no
    complete record, or an earlier version's) or where the store gives no times. The mark is
    the array's attributes document (:data:`_MARKED_DOCUMENTS`), which the run writes after
    every unit (:func:`update_attributes`), so a unit file later than it was written since: a
    file zeroed, a byte flipped or another put in its place at the same size, which
    :func:`units_differ`'s sizes do not see (h83a). From ``listed`` (:func:`unit_listing`),
    else one listing: the times of one store, no read of a unit. They prove no more than
    they say: a copy that did not keep them (``cp -r``) reads so where it copied the units
    after the document, and hides a change made before it where it copied the document last;
    S3's ``LastModified`` counts seconds."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("digest"), str):
        return None
    if listed is None:
        listed = unit_listing(location, path)
    base = path.strip("/")
    docs = [listed.get(f"{base}/{d}" if base else d) for d in _MARKED_DOCUMENTS]
    marked = next((d[1] for d in docs if d is not None), None)
    if marked is None:
        return None
    keys = [f"{base}/{k}" if base else k for k in _unit_keys(arr)]
    later = [k for k in keys if k in listed and (listed[k][1] or marked) > marked]
    if not later:
        return None
    what = "shard files" if arr.shards else "chunk files"
    return (
        f"{len(later)} of its {len(keys)} {what} modified after it was marked complete "
        f"({some_shown(later)})"
    )
