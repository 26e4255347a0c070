"""Plan, then run: everything about a run resolved and checked before a cluster starts.

:func:`make_plan` turns a :class:`~pipeline.config.models.Config`, the machine's
:class:`~pipeline.devices.hardware.Facts` and the input's metadata into a frozen :class:`Plan`,
in named steps: the backend and why; the input; each stage's dtype; the workers and threads;
the memory budgets; the block (Dask chunk) shape with the output's chunks and shards and where
frames are decoded and encoded; the checks. A plan that cannot fit is refused here, with the
numbers and a block size that would fit. The plan's :attr:`Plan.identity` is what a run
records, so that a resume with another config or input is refused.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.config.models import Config, GenerateConfig
from pipeline.devices.base import Encoding, GpuWait
from pipeline.devices.hardware import Facts, visible_gpu_ids
from pipeline.errors import (
    ConfigError,
    InputError,
    ListingError,
    PlanError,
    name_shown,
    public_url,
)
from pipeline.ops import stages
from pipeline.planning import blocks, memory
from pipeline.planning.memory import Memory
from pipeline.planning.specs import Sink, Source
from pipeline.planning.variable import (
    Carried,
    carried,
    integer_decoding_note,
    values_chain,
    with_output_array,
)
from pipeline.store import arrays, grid, ledger
from pipeline.store.arrays import ArrayInfo
from pipeline.store.grid import Shape
from pipeline.store.ledger import Ledger
from pipeline.store.local_files import (
    not_a_file,
    not_a_file_refusal,
)
from pipeline.store.location import (
    Location,
    dangling_link_on,
    is_os_file,
    link_refusal,
    links_above,
)

log = logging.getLogger(__name__)

#: nvCOMP decodes frames up to this size quickly; larger frames decode on the CPU. It gives a
#: frame one thread block, so one call's rate grows with its frames: 16 MB frames of the
#: benchmarks' field (zstd as zarr-python 3 writes it) decoded at 4.9 GB/s in calls of 8 (a
#: block's), 9.5 in calls of 16, and 33.8 with 12 threads each making calls of 8 on a stream of
#: its own, against 9.3 for numcodecs on the 16 cores (H200 host, 2026-12-01, probe kept with
#: issue 17's notes). Not used yet: the path's bound is elsewhere (v2 Blosc, whose CPU decode
#: is cheap, ran at 5.85 and 5.79 GB/s warm where v3 zstd ran at 6.01 and 5.48, in the same
#: two `make bench` runs).
GPU_FRAME_LIMIT = 4 << 20

#: Blocks per thread an automatic block aims at where a GPU run decodes its input on the CPU
#: (Blosc, large zstd chunks). Each task then overlaps its CPU decode with other tasks' GPU
#: work, and the last wave is short; but each block's output frames are encoded in one nvCOMP
#: call, whose rate grows with the frames it is given (H200 host, 2026-11-30, 128 KiB frames of
#: the benchmarks' field values, one stream: 5.7 GB/s for 512 frames, 9.0 for 1024, 9.8 for
#: 2048; calls on four streams at once did not add up: 5.8 GB/s for 512 frames each). On that
#: host, 8 GB float32 of 16 MB chunks on /dev/shm, 3 workers x 4 threads, warm, medians of 3
#: (ranges): 80 MB blocks (about 8 a thread) ran v2 Blosc at 4.31 (4.22-4.72) GB/s and
#: zarr-python 3's zstd at 3.16 (3.15-3.41); 128 MB blocks (about 5 a thread) 4.48
#: (4.28-5.12) and 3.69 (3.30-3.70); 192 MB 4.54 and 3.22; 256 MB (2 a thread) 3.99 and 2.72
#: (the tail: one wave in flight). Earlier (6 GB): 32 MiB blocks 3.34 and 2.63.
CPU_DECODE_BLOCKS_PER_THREAD = 5

#: ... but not smaller than this: with 16 MB chunks on the same host (2026-11-30, 3 GB, 3 x 4
#: threads, 3 warm runs) one-chunk blocks ran v2 Blosc at 2.15-2.21 GB/s, where 110 MB blocks
#: ran 3.90-4.10; 32 MiB blocks were slower than 64 MiB ones above.
CPU_DECODE_MIN_BLOCK = 64 << 20

#: A local CPU cluster of at most this many task threads in all runs them as threads of this
#: process (``cluster.protocol: auto``), with more in worker processes. On the 2-core machine
#: threads started in 0.1-0.5 s where two worker processes took 2.8-5.8 s, and computed a
#: 1.1 GB input in 18-22 s where the processes took 24-34 s. A CPU task holds Python's GIL
#: for about a fifth of its time (measured there): a few threads share it well, a host's worth
#: of them waits on it: on the H200 host (2026-12-01, 8 GB v2 Blosc, cold) 16 threads of one
#: process computed 0.58-0.71 GB/s where 16 worker processes of one thread computed 2.04-2.12.
THREADS_IN_PROCESS = 4


@dataclass(frozen=True)
class ClusterPlan:
    """The cluster the run uses."""

    scheduler: str
    """'local' or an address"""
    backend: str
    gpus: tuple[int, ...]
    workers: int
    """all of them: GPUs x workers_per_gpu on a local GPU cluster"""
    threads_per_worker: int
    workers_per_gpu: int
    device_budget: int | None
    host_budget: int | None
    protocol: str
    timeout: float
    dashboard: str
    mps: str = ""
    """the CUDA MPS control program that runs a local GPU cluster's workers under a daemon of
    the run's own (:mod:`pipeline.running.mps`); '' for none"""
    own: bool = True
    """whether the run starts the workers itself (a local cluster, of the config's
    ``workers_per_gpu``); False for a cluster joined by address or a caller's client, whose
    ``workers_per_gpu`` its workers' GPUs tell (:attr:`Facts.workers_per_gpu`)"""

    def on_threads(self, report: bool = False) -> bool:
        """Whether the tasks run as threads of this process under Dask's threaded scheduler
        rather than on a Dask cluster: a local CPU run whose workers are threads of this
        process anyway (``protocol`` 'inproc': :func:`local_protocol`), with no dashboard and
        no performance report (``report``), both of which are distributed's. Never for a
        caller's client (not ``own``), whose workers run the tasks, threads of this process
        or not."""
        return (
            self.own
            and self.scheduler == "local"
            and self.backend == "cpu"
            and self.protocol == "inproc"
            and not self.dashboard
            and not report
        )


@dataclass(frozen=True, repr=False)
class Plan:
    """A whole run, resolved. Its ``repr()`` is one line (input and output with their shapes
    and dtypes, the stages, the blocks, the backend); its ``str()`` and a notebook's display
    (``_repr_html_``) the table ``pipeline plan`` prints, where :func:`pipeline.plan` made it
    (:attr:`shown`)."""

    config: Config
    """the config the plan was made of (:class:`~pipeline.Config`)"""
    backend: str
    """where the stages compute: ``'cpu'`` (NumPy) or ``'gpu'`` (CuPy)"""
    backend_reason: str
    """why that backend, in words (``backend: auto``'s choice, or the config's)"""
    source: Source
    """how the input's blocks are read (``source.info`` is :attr:`input`)"""
    sink: Sink
    """how the output's blocks are written (``sink.info`` is :attr:`output`)"""
    chain: tuple[stages.BoundStage, ...]
    """the stages in order, each with its ``in_dtype``, ``out_dtype`` and ``describe()``"""
    block: Shape
    """a Dask task's block shape, in elements (whole shards of the output, or chunks)"""
    n_blocks: int
    """how many blocks (Dask tasks) the run has"""
    cluster: ClusterPlan
    """the cluster the run uses: its ``workers``, ``threads_per_worker``, ``gpus``, budgets"""
    memory: Memory
    """the projected memory per task and per worker, in bytes, against the budgets"""
    decode_on: str
    """where the input's stored chunks are decoded: ``'cpu'`` or ``'gpu'``"""
    encode_on: str
    """where the output's chunks are encoded: ``'cpu'`` or ``'gpu'``"""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """what the plan's ``note`` rows say, in words"""
    facts: Facts | None = None
    """the machine (or the weakest worker of a joined cluster) the plan was sized for"""
    carried: Carried = field(default_factory=Carried)
    """what the input is besides its values (an xarray variable, its Dataset, its packing),
    and what the output carries over"""
    output_now: str | None = field(default=None, compare=False)
    """what a run does at the output as it is now, and the command of ``run`` that writes it
    (``pipeline plan``'s "output now" row, :func:`pipeline.running.output.output_now_refused`),
    where :func:`pipeline.plan` looked; None where the plan did not look"""
    shown: str | None = field(default=None, compare=False)
    """the table ``pipeline plan`` prints of this plan (its rows,
    :func:`pipeline.planning.rows.describe`, with the "output now" row, as
    :func:`pipeline.reporting.tables.print_rows` prints them to a file), which
    :func:`pipeline.plan` puts here: its ``str()``. None for a plan made otherwise"""

    def __repr__(self) -> str:
        """One line, as a Dask array's or an xarray object's first line: ``<Plan in.zarr
        (30, 70) int8 -> out.zarr (30, 70) int16: multiply(factor=3), square(); 3 blocks of
        (10, 70); cpu>``. The places as the table says them (a password as ``***``); every
        value stays a field (``p.output.dtype``, ``p.chain``...)."""
        i, o = self.input, self.output
        chain = ", ".join(
            s.describe().removesuffix(f" {s.in_dtype} -> {s.out_dtype}") for s in self.chain
        )
        return (
            f"<Plan {i.location.shown(i.path)} {i.shape} {i.dtype} -> "
            f"{o.location.shown(o.path)} {o.shape} {o.dtype}: {chain}; {self.n_blocks} "
            f"block{'s' if self.n_blocks != 1 else ''} of {tuple(self.block)}; {self.backend}>"
        )

    def __str__(self) -> str:
        """The table ``pipeline plan`` prints (:attr:`shown`), where :func:`pipeline.plan`
        made this plan; else its ``repr()``. (The table's rows and their printing are of
        modules that import this one: :mod:`~pipeline.planning.rows`,
        :mod:`~pipeline.reporting.tables`.)"""
        return self.shown if self.shown is not None else repr(self)

    def _repr_html_(self) -> str:
        """A notebook's display: :meth:`__str__` as it is printed."""
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    @property
    def input(self) -> ArrayInfo:
        """The input array's layout: ``shape``, ``dtype`` as stored, ``chunk``, ..."""
        return self.source.info

    @property
    def output(self) -> ArrayInfo:
        """The output array's layout: ``shape``, ``dtype`` (the last stage's), ``chunk``, ..."""
        return self.sink.info

    @property
    def block_grid(self) -> Shape:
        """How many blocks along each axis (their product is :attr:`n_blocks`)."""
        return grid.grid_shape(self.input.shape, self.block)

    @functools.cached_property
    def identity(self) -> dict[str, Any]:
        """What must not change between a run and its resume: input (where, and its metadata
        and files), output (where, codec, the dimension names ``output.dimension_names``
        gives), stages, layout, and where frames are encoded (the GPU and CPU encoders write
        different bytes). Paths are resolved, so the same store
        spelled another way (relative, ``file://``) is the same run. Taken once per plan."""
        c = self.config
        ident = {
            "input": [
                input_place(self.input.location, self.input.path),
                self._input_store.identity,
            ],
            # exclude_none: store_raw_below left out keeps the identity of runs made before it
            "output": [
                self.output.location.said(self.output.path),  # a password masked
                c.output.codec.model_dump(exclude_none=True),
            ],
            "stages": [s.describe() for s in self.chain],
            "block": list(self.block),
            "chunk": list(self.output.chunk),
            "unit": list(self.output.unit),
            "encode_on": self.encode_on,
        }
        if self.source.unpacking is not None:  # only then: other runs' fingerprints stay
            ident["unpack"] = self.source.unpacking.describe()
        if self.carried.names_given:  # only then: other runs' fingerprints stay
            ident["dimension_names"] = list(self.carried.dimension_names or ())
        frame = self._frame_identity()
        if frame is not None:  # only then: other runs' fingerprints stay
            ident["coordinates"] = frame
        return ident

    def _frame_identity(self) -> str | None:
        """For an output written as a variable with its input group's attributes and
        coordinates around it (``carried.frame``): a digest of that group's metadata
        documents and of each coordinate array's (:func:`identify_store`), which the output
        carries, so a resume notices them rewritten (helper-41: the output kept the old
        coordinates and was marked complete). None otherwise."""
        return frame_identity(self.input.location, self.carried)

    @functools.cached_property
    def _input_store(self) -> StoreIdentity:
        return _input_identity(self.input)

    @property
    def input_unstamped(self) -> str | None:
        """Why the input's identity cannot show a rewrite that keeps its files' names and
        sizes (:attr:`StoreIdentity.unstamped`: its store gives no change stamp for some of
        its files), as :attr:`identity` found it; None where it can."""
        return self._input_store.unstamped

    @property
    def input_linked(self) -> dict[tuple[int, int], str]:
        """The local input's files that have other names (a link count above 1: ``ln``,
        ``cp -al``), by (device, inode): each one's path below the input array's folder, as
        :attr:`identity` found them (no look of its own: the identity's walk took each file's
        link count); {} where none has, or the input is no local folder."""
        files = self._input_store.files or {}
        return {(f[0], f[1]): name for name, f in files.items() if f[5] > 1}

    def input_unchanged(self) -> bool:
        """Whether the input's metadata and files, and the coordinates and group attributes
        the output carries, are still what :attr:`identity` took (the run's start, or its
        resume): not rewritten while the run read them, as far as the identity sees (where
        :attr:`input_unstamped` says why it cannot, True proves nothing of the files'
        bytes). A status-change time is a change here even where a link count changed with
        it: a file rewritten in place, its time put back, may have been linked meanwhile
        (only the run's own deletion of links is not: :meth:`input_relinked`)."""
        return bool(
            _input_identity(self.input).identity == self.identity["input"][1]
            and self._frame_identity() == self.identity.get("coordinates")
        )

    def input_changes(self) -> str:
        """What differs in the input between :attr:`identity` and now, in words that follow
        "changed while this run read it: " (for a line that names the change, not only that
        there is one): its metadata, a file gone, added or of another size or times (named,
        some of them, for a local store), the coordinates or group attributes the output
        carries; "its files' stamps" where the store keeps no per-file record
        (:attr:`StoreIdentity.files` is None). "" where nothing differs."""
        fresh = _input_identity(self.input)
        said = identity_changes(self._input_store, fresh)
        if self._frame_identity() != self.identity.get("coordinates"):
            said.append("the coordinates or group attributes the output carries")
        return "; ".join(said)

    def input_relinked(self, unlinked: set[tuple[int, int]]) -> bool:
        """Where the local input's files now differ from what :attr:`identity` took only by
        the links to them that this run deleted, ``unlinked`` (device, inode) (an output that
        was a ``cp -al`` copy of the input, deleted by ``--overwrite``, had changed the
        shared files' status-change times, and the run ended "the input changed while this
        run read it": h72c; :func:`only_relinked`), take the identity again, of the input as
        it is now, and say True (the run record is to be written again with it); else
        False, the identity as it was (a real change is then found by
        :meth:`input_unchanged` at the run's end)."""
        if not unlinked or not self.input.location.is_local:
            return False
        fresh = _input_identity(self.input)
        if fresh.identity == self.identity["input"][1]:
            return False
        if not only_relinked(self._input_store, fresh, unlinked):
            return False
        self._take_input(fresh)
        return True

    def _take_input(self, fresh: StoreIdentity) -> None:
        """Keep ``fresh`` as the input's identity (:attr:`identity`'s input part)."""
        self.__dict__["_input_store"] = fresh
        self.__dict__["identity"] = {
            **self.identity,
            "input": [self.identity["input"][0], fresh.identity],
        }

    def retaken(self) -> Plan:
        """This plan with its :attr:`identity` taken again, of the input as it is now (what
        ``run`` would compare with the output's record if it started now; the plan keeps the
        one its run started with)."""
        fresh = copy.copy(self)
        for name in ("identity", "_input_store"):
            fresh.__dict__.pop(name, None)
        return fresh

    def fingerprint(self) -> str:
        """A short hash of :meth:`identity` (:func:`identity_fingerprint`)."""
        return identity_fingerprint(self.identity)


def identity_fingerprint(identity: dict[str, Any]) -> str:
    """A short hash of a run's ``identity`` (:attr:`Plan.identity`, or one read back from an
    output's record, as JSON holds it): 16 hex digits. The record holds both, so an identity
    edited since the run is one its ``fingerprint`` was not taken of (``pipeline verify``)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


#: The fields of a run's record that its ``check`` (:func:`record_check`) does not cover,
#: each covered otherwise: ``identity`` by ``fingerprint``, ``stages`` by the identity's,
#: ``stored`` by its own ``check`` (:func:`pipeline.store.arrays.stored_edited`).
COVERED_OTHERWISE = ("check", "fingerprint", "identity", "stages", "stored")


def record_check(record: dict[str, Any]) -> str:
    """16 hex digits of every field of a run's ``record`` (its run record, or an output's
    ``pipeline`` attribute) but those :data:`COVERED_OTHERWISE`, as JSON holds them: what
    it says of the coordinates and group attributes the run wrote, of the groups whose
    consolidated copies it drops and writes again, its status and summary (h57a: an edit of
    these had been taken, a later fresh start deleting the user's array the record was
    edited to name)."""
    rest = {k: v for k, v in record.items() if k not in COVERED_OTHERWISE}
    doc = json.dumps(rest, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def with_check(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ``check`` (:func:`record_check`), as a run writes it."""
    return {**record, "check": record_check(record)}


def fields_edited(record: Any) -> bool:
    """Whether a run's ``record`` holds a ``check`` that is not that of its fields
    (:func:`record_check`): one of them edited since the run wrote it. False where it holds
    none (an earlier version's record)."""
    return (
        isinstance(record, dict) and "check" in record and record["check"] != record_check(record)
    )


def record_edited(record: Any) -> str | None:
    """How a run's ``record`` (its run record, or an output's ``pipeline`` attribute) is not
    as a run writes it, in a few words: its ``identity`` is not the one its ``fingerprint``
    was taken of (:func:`identity_fingerprint`), or its ``stages``, where it repeats them
    for readers, are not its identity's, or its ``stored`` record of the files the run wrote
    is not as the run took it (:func:`pipeline.store.arrays.stored_edited`), or its other
    fields are not those its ``check`` was taken of (:func:`fields_edited`). Edited since
    the run, so nothing it says of what
    made the output can be taken (``pipeline verify``; ``run``, which had called an edit of
    its stages "the stages changed"). None where it is whole, or holds no identity: no
    record, or an earlier version's, which did not record one."""
    if not isinstance(record, dict) or "identity" not in record:
        return None
    identity, fingerprint = record.get("identity"), record.get("fingerprint")
    if not isinstance(identity, dict) or fingerprint != identity_fingerprint(identity):
        return "its identity is not the one its fingerprint was taken of"
    if "stages" in record and record.get("stages") != identity.get("stages"):
        return "its stages are not those its identity records"
    if arrays.stored_edited(record.get("stored")):  # h56b: had been "files' sizes differ"
        return "its `stored` record of the files the run wrote is not the one the run took"
    if fields_edited(record):  # h57a: its coordinates, group attributes, ... had been taken
        return (
            "its fields are not those its `check` was taken of: what it says of the "
            "coordinates, group attributes or consolidated copies the run wrote, or of its "
            "status, was changed"
        )
    return None


def input_place(location: Location, path: str) -> str:
    """Where the input is, as a run's identity records it: the array's path, with links
    resolved for a local store (a store reached through a symlink is the same input: helper-45
    was refused "the input moved"); the URL otherwise, with a password in it masked (it is
    stored in the output's attributes and run record: another password is the same input)."""
    import os

    if location.is_local:
        return os.path.realpath(location.join(path))
    return location.said(path)


def frame_identity(location: Location, kept: Carried) -> str | None:
    """For an output written as a variable with its input group's attributes and coordinates
    around it (``kept.frame``): a digest of what the output carries, by content: the group's
    attributes, and each coordinate array's metadata and stored bytes, in the input at
    ``location``; None otherwise. By content, not by file times: a group consolidated again
    for another member, or coordinates rewritten with the same bytes (xarray's ``to_zarr`` of
    another variable, a second output variable written beside this one) are no change
    (helper-44). (:meth:`Plan._frame_identity`; ``pipeline verify`` compares it with an
    output's record.)"""
    var = kept.variable
    if not kept.frame or var is None:
        return None
    digest = hashlib.sha256()
    digest.update(_canonical(_group_attributes(location, var.group)))
    for name in var.coords:
        path = f"{var.group}/{name}" if var.group else name
        digest.update(f"{name}\0".encode())
        for key in _array_keys(location, path):
            rel = key[len(path) + 1 :] if path else key
            if rel.split("/", 1)[0] == ".pipeline" or is_os_file(rel):
                continue
            data = location.read(key)
            if data is None:  # a key the metadata implies, not there (a listing omits it)
                continue
            if rel in ("zarr.json", ".zarray", ".zattrs"):  # parsed: the same document
                data = _canonical(_json_or_bytes(data))
            digest.update(f"{rel}\0".encode() + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def _array_keys(location: Location, path: str) -> list[str]:
    """The keys of the array at ``path`` of ``location``, sorted: those its folder's listing
    gives, or, where the server lists no folders (a listing refused, or one that lacks the
    array's metadata document: a 404 for a folder read as an empty one), those its metadata
    implies (:func:`~pipeline.store.arrays.implied_keys`), some perhaps absent, as
    :func:`identify_store` takes them."""
    try:
        listed = location.file_sizes(path)
    except ListingError:
        listed = {}
    documents = [f"{path}/{n}" if path else n for n in ("zarr.json", ".zarray")]
    if location.is_local or any(d in listed for d in documents):
        return sorted(listed)
    try:
        return sorted(arrays.implied_keys(location, path))
    except InputError:  # no array there: nothing of it to take
        return sorted(listed)


def _group_attributes(location: Location, group: str) -> Any:
    """The attributes of the group at ``group`` as its metadata says (v3 ``zarr.json``'s
    ``attributes``, v2 ``.zattrs``), without the consolidated copies a v3 document embeds."""
    raw = location.read(f"{group}/zarr.json" if group else "zarr.json")
    if raw is not None:
        doc = _json_or_bytes(raw)
        return doc.get("attributes") if isinstance(doc, dict) else doc
    return _json_or_bytes(location.read(f"{group}/.zattrs" if group else ".zattrs") or b"")


def _json_or_bytes(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.hex()


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, default=str).encode()


def _input_identity(info: ArrayInfo) -> StoreIdentity:
    """The input's metadata document, and the total size of its files with a digest of each
    file's name, size and times, so an input rewritten since a run (interrupted or complete)
    is noticed: for local stores the modification and status-change times (a copy that keeps
    modification times, ``cp -p``, still makes new files: helper-40), for object stores each
    object's ETag (or modification time), for a zip each member's CRC-32, with the archive
    file's own times; for HTTP what its HEAD answers say (ETag, Last-Modified); for references
    (kerchunk) the files they point into (:meth:`Location.stamped_files`).

    A store restored from a copy is a changed input (its files are new); where the input
    is, is the identity's other part (:attr:`Plan.identity`)."""
    return identify_store(info.location, info.path)


@dataclass(frozen=True)
class StoreIdentity:
    """What :func:`identify_store` took of an array's store."""

    identity: list[Any]
    """[digest of its metadata document, total bytes of its files, digest of their stamps]"""
    unstamped: str | None
    """None where every file has a stamp that a rewrite changes; else why not, in words that
    follow "the input's identity cannot show a rewrite that keeps names and sizes: " (an HTTP
    server that sends no ETag or Last-Modified, one that lists no files): then the identity
    sees only the metadata, the names and the sizes, and an equal one proves nothing"""
    files: dict[str, tuple[int, ...]] | None = field(default=None, compare=False)
    """A local store's files by path below the array: (device, inode, size, modification
    time, status-change time, link count); the identity's digest is of their size and
    times. None for other stores. Kept in memory only, for :func:`only_relinked`."""
    folders: tuple[str, ...] = field(default=(), compare=False)
    """A local store's folders (or links to folders) below the array whose names Zarr may
    read as keys (:data:`_READ_NAME`), for :func:`keys_out_of_shape_note`."""


def only_relinked(
    before: StoreIdentity, after: StoreIdentity, unlinked: set[tuple[int, int]]
) -> bool:
    """Whether the local store ``after`` differs from ``before`` only in the status-change
    times and fewer links of files whose (device, inode) is among ``unlinked``, the links
    a run deleted itself: an output that was a ``cp -al`` copy of the input, deleted by
    ``--overwrite`` (h72c), which changes no byte of the input. Any other change is one,
    a link made by another program too: a file rewritten in place with its modification
    time put back (``cp -p``, helper-40) may have been linked meanwhile. False where either
    is not a local store's."""
    if before.files is None or after.files is None or before.identity[:2] != after.identity[:2]:
        return False
    if before.files.keys() != after.files.keys():
        return False
    for name, was in before.files.items():
        now = after.files[name]
        if was == now:
            continue
        dev, ino, size, mtime, _, links = was
        if now[:4] != (dev, ino, size, mtime) or (dev, ino) not in unlinked or now[5] >= links:
            return False
    return True


def identity_changes(before: StoreIdentity, after: StoreIdentity) -> list[str]:
    """The differences of ``after`` from ``before`` (the same array's store, taken twice), in
    words: "its metadata", then for a local store each file gone, new or restamped (some of
    them named, by path below the array, with the stamp that differs: size, modification
    time, status-change time: the stamps the identity's digest takes), else "its files'
    sizes" or "its files' stamps". [] where the identities are equal."""
    said = []
    if before.identity[0] != after.identity[0]:
        said.append("its metadata")
    if before.files is not None and after.files is not None:
        fields = ("size", "modification time", "status-change time")
        changed = []
        for name in sorted(before.files.keys() | after.files.keys()):
            was, now = before.files.get(name), after.files.get(name)
            if was is None:
                changed.append(f"{name} (new)")
            elif now is None:
                changed.append(f"{name} (gone)")
            elif was[:2] != now[:2]:
                changed.append(f"{name} (another file)")
            elif was[2:5] != now[2:5]:
                which = [f for f, a, b in zip(fields, was[2:5], now[2:5], strict=True) if a != b]
                changed.append(f"{name} ({', '.join(which)})")
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            said.append(
                ("file " if len(changed) == 1 else "files ") + ", ".join(changed[:3]) + more
            )
    elif before.identity[1] != after.identity[1]:
        said.append("its files' sizes")
    elif before.identity[2:] != after.identity[2:]:
        said.append("its files' stamps")
    return said


def identify_store(location: Location, path: str) -> StoreIdentity:
    """The identity of the array at ``path`` of ``location`` (its ``identity``: [digest of its
    metadata document, total bytes of its files, digest of their stamps]), and whether it can
    show a rewrite at all (:attr:`StoreIdentity.unstamped`).

    A store that is not a local folder is listed once (no reads). Where the listing does not
    show the array's metadata document that was just read (a server that lists no folders:
    HTTP 403 or 404 for a folder's URL, or a page without links), the files are instead the
    keys the metadata implies (:func:`~pipeline.store.arrays.implied_keys`: its metadata
    documents and every unit of its grid), each asked for on its own (HTTP: a HEAD each);
    those not there are left out as a listing leaves them out, so the identity is the one a
    listing of the same files gives. Files only a listing shows (a stray file beside the
    chunks) are then not part of it."""
    names = [f"{path}/{n}" if path else n for n in ("zarr.json", ".zarray")]
    doc, meta_key = b"", ""
    for key in names:
        doc, meta_key = location.read(key) or b"", key
        if doc:
            break
    ident: list[Any] = [hashlib.sha256(doc).hexdigest()[:16]]
    if location.is_local:
        files: dict[str, tuple[int, ...]] = {}
        folders: list[str] = []
        ident += _local_files_identity(location, path, files, folders)
        return StoreIdentity(ident, None, files, tuple(folders))
    # one listing, no reads: an object rewritten gets a new ETag (S3, GCS) or time
    try:
        found = location.stamped_files(path)
        listed = location.path_of(meta_key) in found
    except ListingError:
        found, listed = {}, False
    if doc and not listed:
        found = location.stamped_keys(arrays.implied_keys(location, path))
    digest = hashlib.sha256()
    digest.update(f"{location.archive_stamp()}\n".encode())
    total = 0
    unstamped: list[str] = []
    for name in sorted(found):
        if "/.pipeline/" in name or is_os_file(name):
            continue
        d = found[name]
        total += int(d.get("size") or 0)
        # named as said: a URL's password is no part of the identity (another password,
        # the same input; helper-75: a resume with a new password was refused as a change)
        said = public_url(name)
        if d["stamp"] is None:
            unstamped.append(said)
        stamp = "" if d["stamp"] is None else d["stamp"]
        digest.update(f"{said}\0{d.get('size')}\0{stamp}\n".encode())
    why = None
    if not found:
        why = f"{location.protocol}:// lists no files under {location.shown(path)}"
    elif unstamped:
        why = (
            f"{location.protocol}:// gives no change stamp (ETag, Last-Modified, modification "
            f"time) for {len(unstamped)} of its {len(found)} files (first: {unstamped[0]})"
        )
    return StoreIdentity(ident + [total, digest.hexdigest()[:16]], why)


#: A name below an array's folder that zarr-python may read as a key of it, in any chunk key
#: encoding: a metadata document, or a chunk's key ('c', 'c/0/1', 'c.0.1', '0.1', '0/1'), or a
#: folder on the way to one ('c', 'c/0').
_READ_NAME = re.compile(
    r"(?:zarr\.json|\.zarray|\.zattrs|\.zgroup|\.zmetadata|(?:c(?:[/.]\d+)*)|\d+(?:[/.]\d+)*)"
)


def keys_out_of_shape_note(info: ArrayInfo, store: StoreIdentity) -> str | None:
    """The note, naming the first and how many, where the local input array ``info`` has a
    folder (or a link to one) at a chunk's key, or a file where its keys need a folder
    (``c/3`` a file, for the key ``c/3/0``); None where it has none. zarr-python's LocalStore
    reads every key there as missing (its ``get`` takes IsADirectoryError and
    NotADirectoryError for an absent key), so as the fill value, and the run reads what
    zarr-python reads; but no Zarr writer leaves either, so the chunks' data is lost or
    elsewhere (a copy gone wrong), and the user hears of it before the output says fill
    there (h72c). A note of the plan (:func:`make_plan`), so ``plan``, ``run --dry-run``,
    ``run`` (``-q`` too) and :func:`pipeline.plan` give it as every other note of how the
    input is read, and ``verify`` repeats it (it had been a bare log line of ``run``'s alone,
    when it took the input's identity: h74b). Folders and files are those the identity's walk
    saw (:attr:`StoreIdentity.folders`, ``files``)."""
    if store.files is None:
        return None
    key = info.key((0,) * len(info.shape))
    depth = (key[len(info.path) + 1 :] if info.path else key).count("/") + 1
    odd: list[tuple[str, int, str | None]] = []  # (first key, how many, the file above them)
    for name in store.folders:
        if name.count("/") + 1 == depth and _keys_at(info, name, folder=True):
            odd.append((name, 1, None))
    for name in (n.replace(os.sep, "/") for n in store.files):
        if name.count("/") + 1 < depth and name not in _METADATA_NAMES:
            under = _keys_at(info, name, folder=False)
            if under:
                zeros = ["0"] * (depth - 1 - name.count("/"))
                odd.append(("/".join([name, *zeros]), under, name))
    if not odd:
        return None
    first, _, file = min(odd)
    where = f"{first!r}, under the file {file!r}" if file else repr(first)
    return (
        f"the input {info.location.shown(info.path)} has {sum(n for _, n, _ in odd)} key(s) of "
        f"its chunks that are a folder, or lie under a file (first: {name_shown(where)}), which "
        "zarr-python, and so this run, reads as the fill value: no Zarr writer leaves them, so "
        "their chunks' data is missing; restore it from a good copy if the fill value is not "
        "meant there"
    )


def _keys_at(info: ArrayInfo, name: str, *, folder: bool) -> int:
    """How many chunk (or shard) keys of ``info`` the path ``name`` below the array holds the
    place of: a folder's, 1 where it is a key (0: no key of the array's grid); a file's, every
    key below it as a folder (a file ``c/3`` of a 6 x 4 grid is in the place of the 4 keys
    ``c/3/0`` to ``c/3/3``; ``c``, of every key), 0 where it is on the way to none."""
    ndim, grid = len(info.shape), info.grid
    prefix, sep = info.key_prefix, info.key_sep
    if not folder and prefix.endswith("/") and name == prefix[:-1]:
        return info.n_units
    if not name.startswith(prefix) or (not folder and sep != "/"):
        return 0
    parts = name[len(prefix) :].split(sep) if ndim else []
    if len(parts) != ndim if folder else len(parts) >= ndim:
        return 0
    if name != prefix + sep.join(parts) and ndim:
        return 0
    for axis, part in enumerate(parts):
        if not part.isdigit() or part != str(int(part)) or int(part) >= grid[axis]:
            return 0
    return int(np.prod(grid[len(parts) :], dtype=np.int64))


#: Zarr's metadata documents' names (never a chunk's key).
_METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})


def _local_files_identity(
    location: Location,
    path: str,
    stats: dict[str, tuple[int, ...]] | None = None,
    folders: list[str] | None = None,
) -> list[Any]:
    """[total bytes, digest] of the files under the local array folder ``path`` of
    ``location`` (the run record and the files an operating system writes into folders,
    :func:`~pipeline.store.location.is_os_file`, left out): each file's path below it, size,
    modification and status-change time (nanoseconds).

    Raises StoreError (:func:`~pipeline.store.location.link_refusal`) where a name that Zarr
    reads as a key of the array (a chunk's, or a metadata document's: :data:`_READ_NAME`) is
    a symbolic link whose target does not exist: a git-annex or DataLad dataset's content
    never fetched, which zarr-python reads as the fill value. So a run refuses it at its plan,
    before anything is written; the walk saw it anyway. Likewise where such a name is no file
    nor folder (a named pipe, a device, a socket, or a link to one:
    :func:`~pipeline.store.local_files.not_a_file_refusal`), whose read would wait without end
    or give no chunk's bytes (a FIFO at a chunk's key had hung the run, h83g). ``stats``,
    where given, gets each file's (device, inode, size, modification and status-change time,
    link count) by its path (:attr:`StoreIdentity.files`), and ``folders`` the folders' paths
    that Zarr may read as keys (:attr:`StoreIdentity.folders`)."""
    import os

    root = location.join(path)
    total = 0
    entries = []
    real_root = os.path.realpath(root)
    seen: set[tuple[int, int]] = set()  # folders by (device, inode): a link loop ends
    # symlinked folders followed: chunks kept elsewhere behind a link are the input's too
    # (helper-43: a rewrite behind a linked `c` went unnoticed, and a resume mixed both)
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        st_dir = os.stat(dirpath)
        if (st_dir.st_dev, st_dir.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st_dir.st_dev, st_dir.st_ino))
        dirs[:] = [
            d
            for d in dirs
            if d != ".pipeline" and not links_above(os.path.join(dirpath, d), real_root)
        ]
        # each name's path below the root: the folder's, once, joined to the name (a relpath
        # of every file had been most of the walk's time, 2000 chunk files: h78c)
        below = os.path.relpath(dirpath, root)
        if folders is not None:
            for d in dirs:
                name = (d if below == "." else os.path.join(below, d)).replace(os.sep, "/")
                if _READ_NAME.fullmatch(name):
                    folders.append(name)
        for f in files:
            if is_os_file(f):  # a .DS_Store that Finder wrote is no change of the input
                continue
            file = os.path.join(dirpath, f)
            rel = f if below == "." else os.path.join(below, f)
            try:
                st = os.stat(file)
            except FileNotFoundError:  # a link to nothing (or a file gone meanwhile)
                name = rel.replace(os.sep, "/")
                link = dangling_link_on(file, root) if _READ_NAME.fullmatch(name) else None
                if link is not None:
                    key = f"{path}/{name}" if path else name
                    raise link_refusal(location.url, key, *link) from None
                entries.append(f"{rel}\0missing\n")
                continue
            kind = not_a_file(st.st_mode)
            if kind is not None and _READ_NAME.fullmatch(rel.replace(os.sep, "/")):
                key = rel.replace(os.sep, "/")
                raise not_a_file_refusal(location.url, f"{path}/{key}" if path else key, file, kind)
            total += st.st_size
            entries.append(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n")
            if stats is not None:
                stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink)
                stats[rel] = (st.st_dev, st.st_ino, *stamp)
    digest = hashlib.sha256("".join(sorted(entries)).encode()).hexdigest()[:16]
    return [total, digest]


# --------------------------------------------------------------------------------------------
# make_plan and its steps.


@dataclass(frozen=True)
class _Workers:
    """Who runs the tasks: the workers, their threads, the GPUs of a local cluster."""

    count: int
    threads: int
    per_gpu: int
    """workers sharing one GPU (a local GPU cluster's ``workers_per_gpu``; else the most that
    an existing cluster's workers report on one GPU, or 1)"""
    local: bool
    gpus: tuple[int, ...]
    own: bool = True
    """the run starts them (``cluster.scheduler`` 'local' and no caller's client)"""


@dataclass(frozen=True)
class _Context:
    """What every candidate block is planned against."""

    config: Config
    backend: str
    info: ArrayInfo
    out_dtype: np.dtype
    workers: _Workers
    device_budget: int | None
    host_budget: int
    protocol: str
    """how the workers talk (:func:`local_protocol`)"""
    carried: Carried = field(default_factory=Carried)
    cores: int = 1
    """the host's cores (``Facts.cpu_count``)"""
    room: memory.Room = field(default_factory=memory.Room)
    """what a refusal of memory may advise (:class:`~pipeline.planning.memory.Room`)"""
    baseline: int = memory.WORKER_BASELINE
    """host bytes a worker process holds besides its tasks
    (:func:`~pipeline.planning.memory.worker_baseline`)"""

    @property
    def unpacked(self) -> np.dtype | None:
        """The dtype the stored elements are decoded to before the stages (None: not
        decoded)."""
        u = self.carried.unpacking
        return np.dtype(u.dtype) if u is not None else None


@dataclass(frozen=True)
class _Choice:
    """One block shape, and what follows from it."""

    block: Shape
    unit_out: Shape
    chunk_out: Shape
    decode_on: str
    encode_on: str
    memory: Memory
    decode_threads: int = 1


def plan_here(config: Config) -> Plan:
    """The plan of a run on a local cluster, sized for this machine (no cluster is started,
    nothing is written)."""
    return make_plan(config, Facts.local(want_gpu=config.backend != "cpu"))


def make_plan(
    config: Config,
    facts: Facts,
    scheduler_workers: int | None = None,
    scheduler_threads: int | None = None,
    worker_protocol: str | None = None,
) -> Plan:
    """Resolve ``config`` against ``facts`` and the input's metadata; raise a
    :class:`~pipeline.errors.PipelineError` (PlanError, InputError, ConfigError, ...) when the
    run cannot go as configured.

    ``scheduler_workers``/``scheduler_threads`` describe an existing cluster (joined by
    address, or a caller's client); ``worker_protocol``, how its workers talk (the scheme of
    their addresses, :func:`protocol_of`): what they can reach is theirs, not the config's.
    """
    notes: list[str] = []
    decided = config.output.array is None  # with_output_array checks the input's documents
    config = with_output_array(config)
    backend, why = choose_backend(config, facts)
    protocol = worker_protocol or local_protocol(
        config, backend, facts, joined=scheduler_workers is not None
    )
    check_stores_reachable(config, protocol, existing=worker_protocol is not None)
    info, arr = input_info(config, notes, checked=decided)
    check_output_options(config)
    kept = carried(config, arr, (config.output.array or "").strip("/"), facts.host_available_bytes)
    notes += kept.notes
    integer_note = integer_decoding_note(info.location.join(info.path), kept.unpacking, info.dtype)
    notes += [integer_note] if integer_note else []
    chain = values_chain(config, info.dtype, kept.unpacking)
    _check_axes(config, info)
    workers = _plan_workers(config, backend, facts, scheduler_workers, scheduler_threads)
    # a caller's client's workers are not this run's local cluster, whatever the config's
    # cluster.scheduler: their own memory limits size the plan, as a joined cluster's
    own = workers.own
    ctx = _Context(
        config=config,
        backend=backend,
        info=info,
        out_dtype=chain[-1].out_dtype,
        workers=workers,
        device_budget=_device_budget(config, backend, facts, workers),
        host_budget=memory.host_budget(config, facts, workers.count, own),
        protocol=protocol,
        carried=kept,
        cores=facts.cpu_count,
        room=memory.Room(
            joined=scheduler_threads is not None,
            workers=workers.count,
            host_memory=facts.host_total_bytes,
            worker_memory_limit=None if own else facts.worker_memory_limit,
            gpu_memory=min((g.total_bytes for g in facts.gpus), default=None),
            backend=backend,
            host_fraction=(
                config.cluster.host_memory_limit
                if isinstance(config.cluster.host_memory_limit, float)
                else None
            ),
            measured=not own and facts.worker_process_bytes is not None,
            decimal=tuple(
                kind
                for kind in ("host", "device")
                if memory.decimal(getattr(config.cluster, f"{kind}_memory_limit"))
            ),
        ),
        # a joined cluster's workers as they measure themselves, a local one's assumed
        baseline=memory.worker_baseline(backend, None if own else facts.worker_process_bytes),
    )
    base = blocks.alignment(info, config.output)
    choice = _choose_block(ctx, base)
    _check_choice(ctx, choice, base)
    notes += _codec_notes(ctx, choice)
    # a local input's files walked once, the run checked: its odd keys are a note of the plan
    # (plan, run -q and verify say it too), and the walk is the identity the run takes
    store = _input_identity(info) if info.location.is_local else None
    odd = keys_out_of_shape_note(info, store) if store is not None else None
    plan = _assemble(ctx, facts, why, chain, choice, [*notes, odd] if odd else notes)
    if store is not None:
        plan.__dict__["_input_store"] = store  # Plan._input_store, not walked again
    return plan


def choose_backend(config: Config, facts: Facts) -> tuple[str, str]:
    """('gpu' or 'cpu', why): the config's backend, or for ``auto`` the GPU when one is
    usable. Raises PlanError (fields ``key`` 'backend', ``backend``, ``reason``: why no GPU is
    usable) for ``backend: gpu`` where no GPU is usable."""
    if config.backend == "gpu" and not facts.gpu_usable:
        raise PlanError(
            f"backend: gpu, but {facts.gpu_reason}; run on a GPU host or set backend: cpu",
            key="backend",
            backend="gpu",
            reason=facts.gpu_reason,
        )
    if config.backend == "cpu":
        return "cpu", "backend: cpu in the config"
    if facts.gpu_usable:
        why = (
            "backend: gpu in the config" if config.backend == "gpu" else f"auto: {facts.gpu_reason}"
        )
        return "gpu", why
    return "cpu", f"auto: no GPU ({facts.gpu_reason}), running on the CPU"


def input_info(
    config: Config, notes: list[str], checked: bool = False
) -> tuple[ArrayInfo, Any | None]:
    """The input's layout, checked readable and finished (InputError otherwise), and the
    Zarr array (opened read-only); for an input that ``run`` will generate first
    (``input.generate`` with ``when_missing``: it does not exist yet, or its generation was
    interrupted or stopped, :func:`arrays.stopped_generation`), the layout it will be given,
    and None; one whose generation was stopped, where ``run`` does not generate it, is refused
    naming the command that does (:func:`arrays.check_generation_stopped`). An input that
    another process is generating, or writing as a run's output, now is refused
    (:func:`arrays.check_not_being_written`). Its metadata documents, its groups'
    and its group's members', are checked (:func:`arrays.check_documents`) unless
    ``checked``: :func:`with_output_array` has just checked them, deciding ``output.array``
    (one check per plan: on a remote store each document is a request)."""
    loc = Location.of(config.input.store, config.input.storage_options, "input")
    gen = config.input.generate
    if gen is not None:  # one being generated now, its metadata maybe not written yet
        arrays.check_not_being_written(loc, config.input.array, generation_only=True)
    # inside an output another run writes now (or an input being generated): deleted as read
    ledger.check_read_apart(loc, config.input.array)
    if gen is not None and gen.when_missing:
        path = config.input.array.strip("/")
        keys = [f"{path}/{k}" if path else k for k in ("zarr.json", ".zarray")]
        # a generation killed (its lock left), before it wrote the metadata too: unfinished
        stopped = arrays.stopped_generation(loc, path) is not None
        if not stopped and not any(loc.exists(k) for k in keys):
            notes.append("the input does not exist yet: `run` generates it first")
            return planned_input(config), None
        if stopped or arrays.generation_status(loc, path) == "incomplete":
            how = "a stopped" if stopped else "an interrupted"
            notes.append(f"the input is unfinished ({how} generate): `run` generates it again")
            return planned_input(config), None
    # one whose generation was stopped, before its metadata was written too (it had been "no
    # Zarr array at ...: it is a folder of no Zarr metadata; check input.array")
    arrays.check_generation_stopped(loc, config.input.array, gen is not None)
    try:
        if not checked:
            arrays.check_documents(loc, config.input.array, around=True)
        arr = arrays.open_zarr_array(loc, config.input.array, checked=True)
    except InputError as e:
        raise absent_input(config, loc, e) from None
    info = arrays.describe_array(loc, config.input.array, arr)
    arrays.check_finished(loc, config.input.array, config.input.generate is not None)
    check_generated_input(config, arr)
    # one stored chunk decoded: a dtype or chunk shape edited since the chunks were written is
    # refused here, before the output is made (h72d), not at the run's first read
    arrays.check_chunk_fits(info, arr, arrays.check_reader_sees_chunks(info))
    notes += arrays.reading_notes(loc, config.input.array.strip("/"), arr)
    return info, arr


def absent_input(config: Config, loc: Location, e: InputError) -> InputError:
    """``e``, the refusal of the input at ``loc``; for a store that does not exist (``status``
    'absent'), the same refusal with the line that says what makes it and, for a relative
    path, the directory it was taken from (:func:`_absent_store_line`), as ``plan``, ``run``
    and ``verify`` all say it (``verify``, opening the input itself, had said neither). Where
    ``input.generate`` describes an input that ``generate`` refuses (chunks that do not tile
    its shards), that refusal is raised (ConfigError): the line had named `pipeline generate`."""
    if getattr(e, "status", "") != "absent" or e.data.get("reason") or loc.exists():
        return e  # (a store that is a link to nothing: its own line, h72c)
    if config.input.generate is not None:  # the command it names must not refuse: its refusal
        blocks.generated_layout(generate_section(config))  # (it had named `pipeline generate`)
    return InputError(_absent_store_line(config, loc), **e.data)


def _absent_store_line(config: Config, loc: Location) -> str:
    """The line for an input store that does not exist: ``pipeline generate`` where the config
    describes the input (``input.generate``), and where the path is relative, the directory it
    was taken from (a config run from another directory than its author's)."""
    fixes = ["fix input.store"]
    if config.input.generate is not None:
        fixes.insert(0, "`pipeline generate CONFIG` creates it from input.generate")
    raw = config.input.store
    spaces = (  # ' in.zarr' (quoted in YAML): the space shows in no path said (h72t)
        f" (it begins or ends with a space, {raw!r}: write it without, {raw.strip()!r})"
        if raw != raw.strip()
        else ""
    )
    return (
        f"input store {name_shown(str(loc))} does not exist: {' or '.join(fixes)}"
        + spaces
        + relative_store_note(raw, loc)
    )


def relative_store_note(raw: str, loc: Location) -> str:
    """`` (its relative path 'data/in.zarr' is taken from the directory the command runs in,
    /home/me)`` for a store the config names by a relative path, ``raw`` as written; '' for
    an absolute one or a URL: where a store is not found, the hint for a config run from
    another directory than its author's."""
    import os

    if not loc.is_local or os.path.isabs(os.path.expanduser(raw.removeprefix("file://"))):
        return ""
    where = os.getcwd()
    return (
        f" (its relative path {raw!r} is taken from the directory the command runs in, "
        f"{name_shown(where)})"
    )


def planned_input(config: Config) -> ArrayInfo:
    """The layout ``generate`` gives the input, without creating anything: the same
    metadata, made in memory. Raises ConfigError when the config has no input.generate."""
    from zarr.storage import MemoryStore

    g = generate_section(config)
    chunk, unit = blocks.generated_layout(g)
    loc = Location.of(config.input.store, config.input.storage_options, "input")
    arr = arrays.create_generated(MemoryStore(), "", g, chunk, unit, {})
    return arrays.describe_array(loc, config.input.array.strip("/"), arr)


def check_generated_input(config: Config, arr: Any) -> None:
    """Refuse (InputError, status 'differs': :func:`pipeline.store.arrays.check_as_generated`)
    the input ``arr`` (the Zarr array at ``input.store``/``input.array``) where ``generate``
    made it from another ``input.generate`` than the config's (shape, dtype, chunks, shards,
    codec, zarr_format, distribution or seed changed since): ``run``, with ``when_missing``
    too (it is not missing), had computed from the old data. Nothing where the config has no
    ``input.generate`` or ``generate`` did not make the array; ConfigError where the section
    makes no array (:func:`planned_input`'s)."""
    from zarr.storage import MemoryStore

    g = config.input.generate
    if g is None or arrays.GENERATED not in dict(arr.attrs):
        return
    g = generate_section(config)
    chunk, unit = blocks.generated_layout(g)
    made = {arrays.GENERATED: {"distribution": g.distribution, "seed": g.seed}}
    planned = arrays.create_generated(MemoryStore(), "", g, chunk, unit, made)
    loc = Location.of(config.input.store, config.input.storage_options, "input")
    arrays.check_as_generated(loc, config.input.array, arr, planned)


def generate_section(config: Config) -> GenerateConfig:
    """``input.generate``, its dtype checked; ConfigError (``key``) when the config has none."""
    g = config.input.generate
    if g is None:
        raise ConfigError(
            "the config has no input.generate section: add one (shape, dtype, ...) or point "
            "input.store at existing data",
            key="input.generate",
        )
    stages.check_dtype(np.dtype(g.dtype))
    return g


def local_protocol(config: Config, backend: str, facts: Facts, joined: bool = False) -> str:
    """How a local cluster's workers talk: ``cluster.protocol``, with ``auto`` resolved to
    threads of this process ('inproc') for the CPU backend when the run has at most
    :data:`THREADS_IN_PROCESS` task threads, else worker processes ('tcp'). A cluster that is
    already there (joined by address, or a caller's client: ``joined``) keeps the config's:
    what its workers are is not this process's to choose. ConfigError (``key``
    'cluster.protocol') for ``ucx`` on a local CPU cluster, which has no UCX workers."""
    chosen = config.cluster.protocol
    if chosen == "ucx" and backend != "gpu" and config.cluster.scheduler == "local" and not joined:
        # a local CPU cluster is a LocalCluster of tcp processes or threads: ucx had been
        # left out of it without a word, the run going over tcp
        raise ConfigError(
            "cluster.protocol: ucx is for a local GPU cluster (dask-cuda's workers, over "
            "NVLink); a local CPU cluster's workers are processes that talk over tcp, or "
            "threads of this process (inproc), and its blocks never travel between them: set "
            "cluster.protocol: auto (or tcp, inproc)",
            key="cluster.protocol",
        )
    if chosen != "auto" or config.cluster.scheduler != "local" or joined:
        return chosen
    if backend == "gpu":
        return "tcp"
    threads = threads_per_worker(config, backend, None)
    total = worker_count(config, backend, facts, threads, None) * threads
    return "inproc" if total <= THREADS_IN_PROCESS else "tcp"


def protocol_of(addresses: Iterable[str]) -> str | None:
    """How the workers at ``addresses`` talk: 'inproc' when every one is a thread of this
    process (``inproc://``: no other process can reach such an address), else the scheme of
    the first that is not ('tcp', 'ucx', ...); None for no address."""
    schemes = [a.split("://", 1)[0] if "://" in a else "tcp" for a in addresses]
    return next((s for s in schemes if s != "inproc"), "inproc" if schemes else None)


def check_stores_reachable(config: Config, protocol: str, existing: bool = False) -> None:
    """Refuse a ``memory://`` store that the workers could not see: it lives inside one
    process, so only workers that are threads of this process (``protocol`` 'inproc': a local
    cluster of threads, see :func:`local_protocol`, or an ``existing`` cluster whose workers'
    addresses say so, :func:`protocol_of`) share it (ConfigError: ``key``, ``store``). A
    caller's cluster of worker processes read such an input as empty: fill values, marked
    complete. Refuse an output inside an archive (``zip::...``), which is read-only
    (OutputError)."""
    in_process = protocol == "inproc" and (existing or config.cluster.scheduler == "local")
    for key, url in (("input.store", config.input.store), ("output.store", config.output.store)):
        if url.startswith("memory://") and not in_process:
            fix = (
                "run on a cluster of threads of this process (LocalCluster(processes=False))"
                if existing
                else "set cluster.protocol: inproc (a local cluster of threads)"
            )
            raise ConfigError(
                f"{key} {name_shown(url)} lives in this process's memory, which the workers' "
                f"processes cannot see: {fix}, or use a store every worker can reach (a path, s3://...)",
                key=key,
                store=url,
            )
    Location.of(config.output.store, config.output.storage_options, "output").refuse_archive(
        "output.store"
    )


def check_output_options(config: Config) -> None:
    """Refuse the output's ``storage_options`` where they make no file system, as the
    input's are refused where its metadata is read: its file system is opened (nothing is
    read or written; :meth:`~pipeline.store.location.Location.fs`: options the library does
    not take, ``asynchronous``, an ``endpoint_url`` with credentials in it or where nothing
    listens, ...), a ConfigError keyed ``output.storage_options``. ``pipeline plan`` had
    said them only where it looked at what is at the output, and ``pipeline.plan``, which
    does not, returned a plan whose run they refused."""
    Location.of(config.output.store, config.output.storage_options, "output").fs()


def _check_axes(config: Config, info: ArrayInfo) -> None:
    """Refuse shapes in the config with another number of axes than the input has (PlanError:
    ``key``, ``shape``, ``input_shape``), naming the fix: one size per axis, with an example
    where one is sure to fit (:func:`_axes_example`), or the setting omitted (h85d: the line
    had named none)."""
    ndim = len(info.shape)
    for name, shp in (
        ("output.chunks", config.output.chunks),
        ("output.shards", config.output.shards),
        ("chunking.block", config.chunking.block),
    ):
        if isinstance(shp, tuple) and len(shp) != ndim:
            example = _axes_example(config, name, shp, info)
            sizes = f"{ndim} sizes, one per axis" + (f", e.g. {example}" if example else "")
            if name == "output.shards":
                sizes += ", each a whole multiple of output.chunks'"
            raise PlanError(
                f"{name} has {len(shp)} {'axis' if len(shp) == 1 else 'axes'} but the input "
                f"has {ndim} ({list(info.shape)}): "
                f"give {sizes}; or omit it",
                key=name,
                shape=shp,
                input_shape=info.shape,
            )


def _axes_example(
    config: Config, name: str, shp: tuple[int, ...], info: ArrayInfo
) -> list[int] | None:
    """For :func:`_check_axes`' line: ``shp``, the sizes given as ``name``, made one per axis of
    the input (``info``) in a way the plan takes. A block: each size given rounded up to a
    whole multiple of the alignment (:func:`~pipeline.planning.blocks.alignment`: the
    input's stored units, the output's chunks and shards), past them the alignment itself
    (the smallest block there: an example of "the input's extent" had met the alignment's
    refusal). Chunks: those given, past them output.shards' (a shard of one chunk along that
    axis), else the input's extent; shards: those given, past them output.chunks' (one chunk
    a shard). None for shards where output.chunks is not given one per axis (the plan
    chooses them: no example is sure to hold whole chunks); sizes past the input's axes are
    dropped."""
    shape = info.shape
    if name == "chunking.block":  # the output's shapes are checked first: one per axis now
        base = blocks.alignment(info, config.output)
        return [
            *(grid.ceil_div(max(n, 1), b) * b for n, b in zip(shp, base, strict=False)),
            *base[len(shp) :],
        ]
    beside = config.output.shards if name == "output.chunks" else config.output.chunks
    if not (isinstance(beside, tuple) and len(beside) == len(shape)):
        if name == "output.shards":
            return None
        beside = shape
    return [*shp[: len(shape)], *beside[len(shp) :]]


def _plan_workers(
    config: Config,
    backend: str,
    facts: Facts,
    scheduler_workers: int | None,
    scheduler_threads: int | None,
) -> _Workers:
    """The workers: a joined cluster's or a caller's client's as they are, as many on one GPU
    as they report (:attr:`Facts.workers_per_gpu`; `dask cuda worker` starts one per GPU); a
    local GPU cluster's ``workers_per_gpu`` on each GPU it uses."""
    local = config.cluster.scheduler == "local"
    own = local and scheduler_workers is None
    threads = threads_per_worker(config, backend, scheduler_threads)
    gpus = visible_gpu_ids(config.cluster.gpus, facts) if backend == "gpu" and own else ()
    per_gpu = 1
    if backend == "gpu":
        per_gpu = config.cluster.workers_per_gpu if own else facts.workers_per_gpu or 1
    return _Workers(
        count=worker_count(config, backend, facts, threads, scheduler_workers),
        threads=threads,
        per_gpu=per_gpu,
        local=local,
        gpus=gpus,
        own=own,
    )


def threads_per_worker(config: Config, backend: str, scheduler_threads: int | None) -> int:
    """A joined cluster's threads; else the config's, or 4 per GPU worker, 1 per CPU worker.

    Four a GPU worker also where the CPU decodes the input: more threads ran faster on a warm
    cluster but made a user's run, counted from start to exit, slower. H200 host, 2026-11-30,
    8 GB float32 of 16 MB chunks on /dev/shm, medians of 3: on a warm cluster 3 x 8 threads ran
    v2 Blosc at 4.75 GB/s and zarr-python 3's zstd at 4.57 (6 GB: 3 x 4 ran 4.34 and 3.29), but
    cold ``pipeline run`` processes took 11.7 s (compute 2.19) and 11.8 s (2.29) with 3 x 8
    against 10.5 s (1.76) and 10.2 s (2.46) with 3 x 4: the cluster phase grew by 0.8-0.9 s
    and the first run's compute did not gain it back."""
    if scheduler_threads:
        return scheduler_threads
    if config.cluster.threads_per_worker:
        return config.cluster.threads_per_worker
    return 4 if backend == "gpu" else 1


def worker_count(
    config: Config, backend: str, facts: Facts, threads: int, scheduler_workers: int | None
) -> int:
    """A joined cluster's workers; else GPUs x ``workers_per_gpu``, or the config's CPU
    workers, or as many as the cores hold at ``threads`` each."""
    if scheduler_workers:
        return scheduler_workers
    if backend == "gpu":
        gpus = len(visible_gpu_ids(config.cluster.gpus, facts)) or 1
        return gpus * config.cluster.workers_per_gpu
    if config.cluster.workers:
        return config.cluster.workers
    return max(1, facts.cpu_count // threads)


def _device_budget(config: Config, backend: str, facts: Facts, workers: _Workers) -> int | None:
    """Device bytes a GPU worker may use; None on the CPU."""
    if backend != "gpu" or not facts.gpus:
        return None
    return memory.device_budget(config, facts, workers.per_gpu)


def _choose_block(ctx: _Context, base: Shape) -> _Choice:
    """The config's block (refused unless aligned to ``base``), or for ``auto`` the largest
    whole multiple of ``base`` up to ``chunking.target_bytes`` whose memory fits, small enough
    that every thread gets about two blocks (where a GPU run decodes on the CPU, about
    :data:`CPU_DECODE_BLOCKS_PER_THREAD`, in blocks of at least :data:`CPU_DECODE_MIN_BLOCK`)."""
    info, block = ctx.info, ctx.config.chunking.block
    if block != "auto":
        if not blocks.aligned(block, base, info.shape):
            raise PlanError(
                f"chunking.block {list(block)} is not a whole multiple of {list(base)} on every "
                "axis (the input's stored units and the output's chunks/shards): unaligned "
                f"parallel writes would corrupt data; use a multiple of {list(base)}",
                key="chunking.block",
                block=block,
                multiple_of=base,
            )
        return _choose(ctx, block)
    cpu_decoded = ctx.backend == "gpu" and not _gpu_decodes(info)
    per_slot = CPU_DECODE_BLOCKS_PER_THREAD if cpu_decoded else 2
    per_thread = info.nbytes // max(1, per_slot * ctx.workers.count * ctx.workers.threads)
    if cpu_decoded:
        per_thread = max(per_thread, CPU_DECODE_MIN_BLOCK)
    target = max(1, min(ctx.config.chunking.target_bytes, per_thread))
    while True:
        choice = _choose(ctx, blocks.grow(base, info.shape, info.dtype.itemsize, target))
        if choice.memory.fits() or choice.block == base:
            return choice
        target = max(target // 2, 1)


def _choose(ctx: _Context, block: Shape) -> _Choice:
    """The output's layout, the codec placement and the memory of blocks of ``block``."""
    info = ctx.info
    unit_out, chunk_out = blocks.output_layout(block, ctx.config.output, info, ctx.out_dtype)
    decode_on, encode_on = _codec_placement(ctx, chunk_out)
    pool = decode_threads(ctx, decode_on, block)
    mem = memory.project_memory(
        ctx.backend,
        block,
        info.dtype,
        ctx.out_dtype,
        decode_on,
        encode_on,
        grid.is_slab(info.unit, info.chunk),
        grid.is_slab(unit_out, chunk_out),
        ctx.workers.threads,
        ctx.device_budget,
        ctx.host_budget,
        frames_out=math.prod(block) // math.prod(chunk_out),
        read=memory.read_cost(info, block, info.format is not None, decode_on),
        unpacked=ctx.unpacked,
        decode_threads=pool,
        baseline=ctx.baseline,
    )
    return _Choice(block, unit_out, chunk_out, decode_on, encode_on, mem, pool)


def _codec_placement(ctx: _Context, chunk_out: Shape) -> tuple[str, str]:
    """(decode_on, encode_on): the GPU's backend decodes input frames that nvCOMP decodes
    (:func:`_gpu_decodes`) and encodes output frames of at most ``GPU_FRAME_LIMIT`` bytes
    without checksums (nvCOMP writes none); the CPU does the rest."""
    decode_on = "gpu" if ctx.backend == "gpu" and _gpu_decodes(ctx.info) else "cpu"
    codec = ctx.config.output.codec
    nvcomp_can = grid.nbytes(chunk_out, ctx.out_dtype) <= GPU_FRAME_LIMIT and not codec.checksum
    encode_on = ctx.backend
    if ctx.backend == "gpu" and codec.name == "zstd" and not nvcomp_can:
        encode_on = "cpu"
    return decode_on, encode_on


def _gpu_decodes(info: ArrayInfo) -> bool:
    """Whether nvCOMP decodes this input's frames: plain zstd (or uncompressed) chunks of at
    most GPU_FRAME_LIMIT bytes (nvCOMP gives one thread block to a frame, so large frames
    decode faster on the CPU cores). Every other chain is decoded on the CPU."""
    return info.codec == "none" or (info.codec == "zstd" and info.chunk_nbytes <= GPU_FRAME_LIMIT)


def _check_choice(ctx: _Context, choice: _Choice, base: Shape) -> None:
    """Refuse a block that the output's chunks and shards do not divide, shards that are not
    whole chunks, and memory that does not fit its budgets (PlanError, with a block that
    would fit)."""
    block, unit_out, chunk_out = choice.block, choice.unit_out, choice.chunk_out
    for name, shp in (("output.chunks", chunk_out), ("output.shards", unit_out)):
        if not blocks.aligned(block, shp, ctx.info.shape):
            raise PlanError(
                f"{name} {list(shp)} does not divide the Dask block {list(block)}: every block "
                "must hold whole chunks and shards, or parallel writes corrupt data; choose "
                "shapes that divide the block",
                key=name,
                shape=shp,
                block=block,
            )
    if not grid.is_multiple(unit_out, chunk_out):
        raise PlanError(
            f"output.shards {list(unit_out)} is not a whole multiple of output.chunks "
            f"{list(chunk_out)}; Zarr shards hold whole chunks",
            key="output.shards",
            shape=unit_out,
            multiple_of=chunk_out,
        )
    mem = choice.memory
    if not mem.fits():
        if tuple(block) == tuple(chunk_out):  # the chunk alone is the block that does not fit
            _refuse_chunks_past_the_array(ctx, chunk_out)
        smaller = blocks.largest_fitting(block, base, lambda b: _choose(ctx, b).memory.fits())
        said, key = memory.does_not_fit(
            mem, block, base, smaller, ctx.workers.threads, ctx.workers.per_gpu, ctx.room
        )
        raise PlanError(
            said,
            **({"key": key} if key is not None else {}),
            block=block,
            block_that_fits=smaller,
            device_per_worker=mem.device_per_worker,
            device_budget=mem.device_budget,
            host_per_worker=mem.host_per_worker,
            host_budget=mem.host_budget,
        )


def _refuse_chunks_past_the_array(ctx: _Context, chunk_out: Shape) -> None:
    """Refuse, at output.chunks, chunks given longer than the array on an axis where the plan
    does not fit its memory: Zarr stores every chunk whole, its edge padded, so such a chunk
    is held whole to be encoded (``chunks: [1000, 1000, 1000]`` over a [6, 4, 5] array, 7.45
    GiB of float64 each), and the refusal had named a budget of 16 GiB as the fix, where
    chunks of at most the array's shape hold it all. Called where the block is one chunk;
    nothing where output.chunks is auto or within the array (h72t)."""
    shape = ctx.info.shape
    if ctx.config.output.chunks == "auto" or all(
        c <= max(n, 1) for c, n in zip(chunk_out, shape, strict=True)
    ):
        return
    within = [min(c, max(n, 1)) for c, n in zip(chunk_out, shape, strict=True)]
    each = math.prod(chunk_out) * ctx.out_dtype.itemsize
    kind = "device" if ctx.backend == "gpu" else "host"
    dec = kind in ctx.room.decimal  # the budget's units, as the config wrote it (8GB)
    raise PlanError(
        f"output.chunks {list(chunk_out)} are longer than the array {list(shape)} on an axis, "
        f"and Zarr stores every chunk whole (its edge padded with the fill value), so each "
        f"chunk is {memory.bytes_text(each, dec)} to encode, which the memory budget does not "
        f"hold: give output.chunks of at most the array's shape, {within}",
        key="output.chunks",
        shape=chunk_out,
        array_shape=shape,
    )


def _codec_notes(ctx: _Context, choice: _Choice) -> list[str]:
    """Why a GPU run decodes or encodes frames on the CPU, and what would change it."""
    notes = []
    info, config = ctx.info, ctx.config
    if ctx.backend == "gpu" and choice.decode_on == "cpu":
        notes.append(
            "input frames are decoded on the CPU: "
            + (
                f"its codecs ({info.codecs_text()}) are decoded on the CPU cores"
                if info.codec is None
                else f"its chunks are {info.chunk_nbytes >> 20} MiB, too large for nvCOMP; "
                "shard the input with small chunks for GPU decoding"
            )
        )
    if ctx.backend == "gpu" and choice.encode_on == "cpu":
        notes.append(
            "output frames are encoded on the CPU: output.codec.checksum asks for zstd "
            "checksums, which nvCOMP does not write; set it to false for GPU encoding"
            if config.output.codec.checksum
            else f"output chunks of {grid.nbytes(choice.chunk_out, ctx.out_dtype) >> 20} MiB "
            "are encoded on the CPU; use output.shards with small chunks for GPU encoding"
        )
    return notes


def _assemble(
    ctx: _Context,
    facts: Facts,
    why: str,
    chain: tuple[stages.BoundStage, ...],
    choice: _Choice,
    notes: list[str],
) -> Plan:
    """The plan of the choices made: the input's source, the output's sink, the cluster."""
    config, info = ctx.config, ctx.info
    loc_out = Location.of(config.output.store, config.output.storage_options, "output")
    info_out = ArrayInfo(
        location=loc_out,
        path=(config.output.array or "").strip("/"),
        shape=info.shape,
        dtype=ctx.out_dtype,
        zarr_format=3,
        chunk=tuple(choice.chunk_out),
        unit=tuple(choice.unit_out),
        sharded=tuple(choice.chunk_out) != tuple(choice.unit_out),
        index_at_end=True,
        codec=config.output.codec.name,
        key_prefix="c/",
        key_sep="/",
    )
    block = choice.block
    codec = config.output.codec
    return Plan(
        config=config,
        backend=ctx.backend,
        backend_reason=why,
        source=Source(
            info=info,
            block=block,
            backend=ctx.backend,
            direct=info.format is not None,
            decode_on=choice.decode_on,
            decode_threads=choice.decode_threads,
            unpacking=ctx.carried.unpacking,
        ),
        sink=Sink(
            info=info_out,
            block=block,
            backend=choice.encode_on,
            encoding=Encoding(
                codec=codec.name,
                level=codec.level,
                checksum=codec.checksum,
                raw_below=codec.store_raw_below,
            ),
            ledger=Ledger(loc_out, info_out.path),
        ),
        chain=chain,
        block=block,
        n_blocks=math.prod(grid.grid_shape(info.shape, block)),
        cluster=_cluster_plan(
            config,
            ctx.backend,
            facts,
            ctx.workers,
            ctx.protocol,
            ctx.device_budget,
            ctx.host_budget,
        ),
        memory=choice.memory,
        decode_on=choice.decode_on,
        encode_on=choice.encode_on,
        notes=tuple(notes),
        facts=facts,
        carried=ctx.carried,
    )


def _cluster_plan(
    config: Config,
    backend: str,
    facts: Facts,
    workers: _Workers,
    protocol: str,
    device_budget: int | None,
    host_budget: int | None,
) -> ClusterPlan:
    return ClusterPlan(
        scheduler=config.cluster.scheduler,
        backend=backend,
        gpus=workers.gpus,
        workers=workers.count,
        threads_per_worker=workers.threads,
        workers_per_gpu=workers.per_gpu,
        device_budget=device_budget,
        host_budget=host_budget,
        protocol=protocol,
        timeout=config.cluster.timeout,
        dashboard=config.cluster.dashboard,
        mps=plan_mps(config, backend, workers.per_gpu, facts) if workers.own else "",
        own=workers.own,
    )


def local_cluster_plan(config: Config, facts: Facts) -> ClusterPlan:
    """The local cluster (``cluster.scheduler`` 'local') that :func:`make_plan` plans for a
    run of ``config`` on this machine (``facts``), from the config and the facts alone: its
    backend, workers, threads, budgets and protocol do not depend on the input, so a run may
    begin starting it before the input is read (``running/runner.py``), and compares it with
    the plan's own (``Plan.cluster``) once that is made. Raises what :func:`make_plan` raises
    for them (PlanError: ``backend: gpu`` where no GPU is usable)."""
    backend, _ = choose_backend(config, facts)
    protocol = local_protocol(config, backend, facts)
    workers = _plan_workers(config, backend, facts, None, None)
    return _cluster_plan(
        config,
        backend,
        facts,
        workers,
        protocol,
        _device_budget(config, backend, facts, workers),
        memory.host_budget(config, facts, workers.count, workers.local),
    )


def decode_threads(ctx: _Context, decode_on: str, block: Shape) -> int:
    """Threads of a worker process that read and decode a block's units at once: where a local
    GPU cluster's workers decode their input on the CPU and a ``block`` holds several stored
    units, the host's cores shared between its workers (rounded up, at least the task
    threads); else 1 (each task decodes its units in its own thread: a CPU run's task threads
    already fill the cores, a joined cluster's hosts are not known, and the pool reads whole
    units, so a block of one unit, such as one shard, gains nothing from it).

    On the H200 host (16 cores, 3 workers x 4 threads, so 6 threads a worker; 2026-11-30,
    8 GB of 16 MB chunks on /dev/shm, warm, medians of 3, alternating with one thread a
    task): v2 Blosc 4.80 and 5.22 GB/s -> 6.33 and 6.03; v3 zstd 3.83 and 3.91 -> 6.05 and
    6.10."""
    if ctx.backend != "gpu" or decode_on != "cpu" or not ctx.workers.local:
        return 1
    if ctx.info.format is None:  # Zarr reads the block
        return 1
    if math.prod(grid.grid_shape(block, ctx.info.unit)) < 2:
        return 1
    return max(ctx.workers.threads, -(-ctx.cores // max(1, ctx.workers.count)))


def plan_mps(config: Config, backend: str, per_gpu: int, facts: Facts) -> str:
    """The MPS control program a local GPU cluster's workers run under ('' for none): where
    ``cluster.mps`` is 'auto', the cluster is this run's own (``cluster.scheduler`` 'local'),
    several worker processes share each GPU, and the machine has the program
    (:attr:`Facts.mps_control`). Without MPS, the CUDA contexts of several processes on one
    GPU take turns on it; with it, their work runs side by side (the figures are
    ``cluster.mps``'s, in the config reference)."""
    if config.cluster.mps == "off" or config.cluster.scheduler != "local" or backend != "gpu":
        return ""
    return facts.mps_control if per_gpu > 1 else ""


def gpu_wait(source: Source, backend: str) -> GpuWait:
    """How a GPU run's worker threads wait for the GPU (:func:`pipeline.devices.gpu.set_wait`):
    'block' (asleep until the driver wakes them) where the workers' CPU decode of the input
    is what bounds the run (a decoding pool reads frames of a costly codec,
    :attr:`~pipeline.store.codecs.ChunkFormat.costly_decode`), so that threads waiting for the
    GPU leave the cores to it; else 'auto', CUDA's default, which spins a core while it waits
    and answers soonest.

    On the H200 host (2026-12-01; 8 GB of 16 MB chunks on /dev/shm, warm, one 3 x 4 cluster,
    2 rounds of 3 runs, medians, alternating): zarr-python 3's zstd 5.51 and 5.51 GB/s with
    'auto', 6.08 and 6.08 with 'block'; v2 Blosc lz4 6.16 and 6.50 with 'auto', 5.72 and
    5.71 with 'block'; the synthetic input (nvCOMP decodes) 5.38 and 5.35, 5.66 and 5.45, within
    the spread of its runs (4.62-5.77 against 5.30-5.72), so left at the default."""
    if backend != "gpu" or source.decode_on != "cpu" or source.decode_threads <= 1:
        return "auto"
    fmt = source.info.format
    return "block" if fmt is not None and fmt.chunk.costly_decode else "auto"


def plan_generation(config: Config, facts: Facts) -> ClusterPlan:
    """The cluster that ``generate`` runs on, and its backend: GPU workers when a GPU is
    usable and the config allows it, with no budgets (a unit at a time per thread)."""
    backend, _ = choose_backend(config, facts)
    protocol = local_protocol(config, backend, facts)
    check_stores_reachable(config, protocol)
    threads = threads_per_worker(config, backend, None)
    return ClusterPlan(
        scheduler=config.cluster.scheduler,
        backend=backend,
        gpus=tuple(range(len(facts.gpus))) if backend == "gpu" else (),
        workers=worker_count(config, backend, facts, threads, None),
        threads_per_worker=threads,
        workers_per_gpu=config.cluster.workers_per_gpu if backend == "gpu" else 1,
        device_budget=None,
        host_budget=None,
        protocol=protocol,
        timeout=config.cluster.timeout,
        dashboard="",
    )
