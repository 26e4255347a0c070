"""Synthetic inputs: the array a config's ``input.generate`` describes, made deterministically.

Every stored unit is generated on its own from ``(seed, unit index)``, so the data does not
depend on the number of workers or the order of tasks. ``normal`` and ``uniform`` draw from
NumPy's PCG64 on the CPU or CuPy's generator on a GPU (each deterministic, but the two devices
draw different numbers; the attributes record which); ``ramp`` is arithmetic, identical on both,
and compresses well (for datasets larger than the disk). An input is marked unfinished in its
attributes from its creation until every unit is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import devices
from pipeline.config.models import Config
from pipeline.devices.base import Encoding
from pipeline.devices.hardware import Facts
from pipeline.errors import (
    GENERATE_AGAIN,
    ClusterError,
    ConfigError,
    InputError,
    Interrupted,
    StoreError,
    disk_full,
    name_shown,
    refused_access,
    said_then,
    some_shown,
)
from pipeline.planning.blocks import generated_layout
from pipeline.planning.plan import ClusterPlan, Sink, generate_section, plan_generation
from pipeline.reporting.progress import Progress
from pipeline.running import output, waiting
from pipeline.running.output import check_writable
from pipeline.running.tasks import target, write_unit, writing_to, written_through
from pipeline.running.workers import Bound, Workers, local_workers
from pipeline.store import arrays, datasets, grid
from pipeline.store.arrays import GENERATED, ArrayInfo
from pipeline.store.grid import Shape
from pipeline.store.ledger import RECORD, UNIT_CHECK_WITHIN, InputLock, remove_if_empty
from pipeline.store.location import Folder, Location, links_said, symbolic_links

RAMP_PERIOD = 1024

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class GenSpec:
    """What a generation task needs."""

    sink: Sink
    distribution: str
    seed: int
    big_endian: bool = False
    """the input is stored big-endian (``dtype: '>f4'``): units are byte-swapped on the CPU"""
    lock: InputLock | None = None
    """the generation's lock, held: each unit's write asks it first (``check_held``)"""


def generate_input(config: Config, progress: str = "auto", interval: float = 5.0) -> ArrayInfo:
    """Create the input ``config.input.generate`` describes, on the run's backend; the
    input's :class:`ArrayInfo` (``interval``: seconds between plain progress lines). Raises
    :class:`~pipeline.errors.Interrupted` on Ctrl-C (the input stays marked unfinished),
    ConfigError (``key``) when the config has no ``input.generate``; OutputError, before
    anything is written, where the config's output lies in the input's store or contains it
    (:func:`pipeline.running.output.check_stores_apart`: its run would refuse it; ``pipeline
    generate`` had made the input there, then ``run`` refused, as ``when_missing`` had);
    InputError (``status`` 'generating', ``holder``) where another process generates the
    input now: it holds the input's lock (:class:`~pipeline.store.ledger.InputLock`,
    ``<array>/.pipeline/generate.lock``), taken before anything is written and given up (its
    folder removed) at the end, however the generation ends (one whose holder has ended is
    taken over, as the output's lock is, with whatever that killed generation left:
    :func:`pipeline.store.arrays.stopped_generation`). Two generations at once had both
    written the input, exiting 0 with the last one's data or failing with misleading
    lines."""
    if config.input.generate is None:
        raise ConfigError(
            "the config has no input.generate section: add one (shape, dtype, ...) or point "
            "input.store at existing data",
            key="input.generate",
        )
    output.check_stores_apart(config)
    cp = plan_generation(config, Facts.local(want_gpu=config.backend != "cpu"))
    loc = Location.of(config.input.store, config.input.storage_options, "input")
    check_writable(loc)
    path = config.input.array.strip("/")
    lock = InputLock(loc, path)
    _refuse_if_generating(lock)  # before the checks: another's half-made input is no stranger's
    lock.check_apart()  # a run's output, or another generation, above or inside it
    try:
        check_generate_target(loc, path, config.input.generate.zarr_format)
    except InputError:
        _refuse_if_generating(lock)  # one that began meanwhile, whose making the checks saw
        raise
    stopped = arrays.stopped_generation(loc, path)
    if stopped is not None:  # taken over: its lock, and what it wrote
        who = f" (pid {stopped['pid']})" if "pid" in stopped else ""
        log.log(
            logging.INFO if progress != "none" else logging.DEBUG,
            "input %s: its generation%s was stopped before it finished: generating it again",
            loc.join(path),
            who,
        )
    made = lock.folders_to_make()
    lock.acquire()  # one generation of an input at a time; a run reading it refuses meanwhile
    try:
        lock.check_apart()  # again, held: one of two writers nested taking locks at once sees
        # the other
        info = _generate_locked(config, cp, lock, progress, interval)
    except BaseException as e:
        try:  # the lock, and its folder in the array's; a lock that stays is said in e's line
            lock.clear_after(e)
        finally:
            remove_if_empty(made)  # made by the lock alone (a generation stopped before writing)
        raise
    try:
        lock.clear()  # the lock, and its folder in the array's
    finally:
        remove_if_empty(made)
    return info


def _refuse_if_generating(lock: InputLock) -> None:
    """Refuse (InputError 'generating') where another process holds ``lock`` now."""
    holder = lock.holder()
    if holder is not None:
        raise lock.busy(holder)


def _generate_locked(
    config: Config, cp: ClusterPlan, lock: InputLock, progress: str, interval: float
) -> ArrayInfo:
    """:func:`generate_input`'s making of the input, its ``lock`` held; the input's
    ArrayInfo. Each unit's write, and the mark that the input is generated, ask first that
    the lock at its path is still this generation's (``check_held``): it writes by the path,
    and an input moved away while it was generated had been written on where it was, into
    whatever was put there, the generation exiting 0 (h76d)."""
    loc = lock.location
    where = loc.join(lock.array_path)
    begun = False  # whether the input is being made: a Ctrl-C before leaves what was there
    try:
        # a joined cluster's workers are checked before anything is written (their Python's
        # packages): the input had been made, unfinished, before they were refused
        with _workers(cp, loc) as workers:
            # tasks of an earlier generation of this input, its process killed, may still run:
            # waited for before the input is replaced, or their units land in the new one
            workers.wait_for_writers(loc, lock.array_path)
            # what is there is another's where its lock was taken since, or another folder
            # where it was moved away (h78a); what it writes goes into the folder held (h79c)
            with lock.held_store() as (_, held):
                # unfinished until every unit is written
                begun = True
                spec = create_input(config, cp.backend, held)
            spec = dataclasses.replace(spec, lock=lock)
            _generate_units(workers, spec, progress, interval)
        with lock.held_folder() as folder:
            mark_generated(loc, spec.sink.info.path, folder, lock)
    except KeyboardInterrupt:
        waiting.take()
        # before the input is made (its workers starting, an earlier generation's tasks
        # waited for), nothing is written: the line had said the input was unfinished, of
        # one that did not exist (h81a)
        state = "incomplete" if begun else "untouched"
        raise Interrupted("generate", where, state, joined=cp.scheduler != "local") from None
    except StoreError as e:  # a full disk: its line had said `run --resume`, which refused
        said = said_then(e, GENERATE_AGAIN)
        if said is None:
            raise
        raise said from None
    except OSError as e:  # a full disk under zarr-python's writes of the metadata
        said = disk_full(e, where, GENERATE_AGAIN)
        if said is None:
            raise
        raise said from None
    except ClusterError as e:
        d = e.data
        if d.get("reason") == "lost" and d.get("during") == "compute":  # had said run --resume
            from pipeline.running.cluster import lost_scheduler

            unfinished = f"the input {name_shown(where)} stays unfinished"
            lost = lost_scheduler(
                d["address"], "compute", d["cause"], unfinished, "generate it again"
            )
            raise lost from None
        if d.get("reason") != "workers-died":
            raise
        raise _workers_died(e, cp, where) from None
    return spec.sink.info


def _workers_died(e: ClusterError, cp: ClusterPlan, where: str) -> ClusterError:
    """``e``, workers that kept dying generating a unit of the input ``where`` on the cluster
    ``cp`` (:func:`~pipeline.running.cluster.workers_died`), with what to do: give each task
    more memory, then generate the input again (it stays unfinished: a run would read none of
    it); the line had said that `run --resume` finishes the output."""
    from pipeline.running.cluster import memory_advice, workers_died

    d = e.data
    more = memory_advice(cp, d.get("memory_limit"), cp.scheduler == "local")
    fix = f"the input {name_shown(where)} stays unfinished: {more}; then generate it again"
    return workers_died(d["task"], d.get("worker"), d.get("memory_limit"), d["deaths"], fix)


def check_generate_target(loc: Location, array: str, zarr_format: int = 3) -> None:
    """Refuse to generate over data that ``generate`` did not create: it replaces what is at
    the input's path, and an input is someone's data (InputError: ``input``, ``status``
    'foreign'); and a path under a Zarr array (also where the array's folder holds the
    store's root, :func:`pipeline.store.arrays.array_above`) or a local file, or one that is
    a local file,
    where nothing can be made (InputError: ``input``, ``status`` 'blocked', ``blocking``,
    ``node``, as :func:`pipeline.running.output.check_parents`); nor an input it generated
    whose folder now holds files that are not the array's (:func:`_refuse_stray`); nor an
    array (of Zarr format ``zarr_format``) in a group it would leave inconsistent
    (:func:`_check_enclosing_groups`). What a generation that was stopped before it finished
    left (:func:`pipeline.store.arrays.stopped_generation`) is taken over, whatever it is."""
    path = array.strip("/")
    where = loc.join(path)
    found = arrays.node_in_the_way(loc, path)
    above = arrays.array_above(loc)  # the store's root itself inside an array's folder
    if above is not None or found is not None:
        if above is not None:
            place, node = above
            why = f"{name_shown(place)} is {arrays.NODE_WORDS[node]}, and {arrays.NODE_WHY[node]}"
        elif found is not None:
            here, node = found
            place = loc.join(here)
            if node == "dangling":
                why = arrays.dangling_link(place, "input")
            elif here == path:
                why = f"{name_shown(where)} is a file, which generate never replaces"
            else:
                why = (
                    f"{name_shown(place)} is {arrays.NODE_WORDS[node]}, and {arrays.NODE_WHY[node]}"
                )
        raise InputError(
            f"cannot generate the input at {name_shown(where)}: {why}; point input.store (or "
            "input.array) "
            "elsewhere",
            input=where,
            status="blocked",
            blocking=place,
            node=node,
        )
    if arrays.stopped_generation(loc, path) is not None:
        # what a generation stopped (killed) before it finished left, in any state (its
        # folder half cleared, metadata without attributes, some chunks): taken over, as its
        # lock is; it had been refused as data generate did not create
        _refuse_links(loc, path, where)
        _check_enclosing_groups(loc, path, zarr_format)
        return
    for meta in ("zarr.json", ".zarray", ".zgroup"):
        if loc.exists(f"{path}/{meta}" if path else meta):
            try:
                attrs = arrays.read_attributes(loc, path)
            except Exception:
                attrs = {}
            if GENERATED in attrs:  # ours: generating again replaces what is under it
                _refuse_links(loc, path, where)
                _refuse_stray(loc, path, where)
                _check_enclosing_groups(loc, path, zarr_format)
                return
            break
    else:
        # empty, or a .DS_Store alone, or the lock folder a generation stopped before it wrote
        # anything left (a killed one's lock file: the OS lock on it is gone)
        if not [n for n in loc.entries(path) if n != RECORD]:
            _check_enclosing_groups(loc, path, zarr_format)
            return
    raise InputError(
        f"{name_shown(where)} already holds data that `pipeline generate` did not create; "
        "generate never "
        "replaces it: point input.store (or input.array) elsewhere, or remove it yourself",
        input=where,
        status="foreign",
    )


def _check_enclosing_groups(loc: Location, path: str, zarr_format: int) -> None:
    """Refuse to generate the array at ``path`` (of Zarr format ``zarr_format``) inside
    groups it would leave inconsistent, before anything is written (InputError: ``input``,
    ``group``, ``status``):

    - 'formats': a group above it of the other Zarr format, or holding both formats'
      metadata (:func:`pipeline.running.output.mixed_formats`). zarr-python then wrote the
      array's format's metadata above it: a v2 group (a Dataset xarray wrote with
      ``zarr_format=2``) got a v3 ``zarr.json`` beside its ``.zgroup``, and readers, which
      take the ``zarr.json``, no longer saw the group's own arrays.
    - 'consolidated': a group at or above it holding a consolidated copy of its members'
      metadata (v2 ``.zmetadata``, v3 ``consolidated_metadata``): the copy, which
      ``zarr.open_group`` and ``xr.open_zarr`` read in place of the members' own, did not
      list the new array.
    - 'dataset': its group holds an xarray Dataset (arrays that name their dimensions,
      :func:`pipeline.store.datasets.dims_of`): the array generate makes names none, and
      ``xr.open_zarr`` of the group then failed (KeyError) for every variable.

    The groups counted include those above the store's root (:func:`_outermost_group`:
    ``input.store: ds.zarr/gen``).
    """
    loc, path = _outermost_group(loc, path)
    parts = path.split("/") if path else []
    if not parts:  # the store's root is the array, in no group
        return
    where = loc.join(path)
    other = 2 if zarr_format == 3 else 3
    for depth in range(len(parts)):
        group = "/".join(parts[:depth])
        place = loc.join(group) if group else loc.url
        key = f"{group}/{{}}" if group else "{}"
        v3 = loc.exists(key.format("zarr.json"))
        mixed = output.mixed_formats(loc, group) if v3 else []
        # a lone .zmetadata too: the zarr.json made beside it had mixed the formats (h55a)
        v2 = output.mixed_formats(loc, group) if not v3 else []
        if mixed:
            why = f"it {output.both_formats(mixed)}, and readers take its zarr.json"
        elif (v3 and zarr_format == 2) or (v2 and zarr_format == 3):
            found = "zarr.json" if v3 else v2[0]
            why = (
                f"it is a Zarr v{other} group ({found}) and generate writes Zarr v{zarr_format} "
                f"(input.generate.zarr_format), whose metadata in it would hide "
                + ("the new array from readers of the v3 group" if v3 else "its v2 arrays")
                + f"; set input.generate.zarr_format: {other}, or"
            )
        else:
            continue
        raise InputError(
            f"cannot generate the input at {name_shown(where)} inside {name_shown(place)}: {why}"
            + ("" if why.endswith(", or") else ";")
            + " point input.store (or input.array) outside it",
            input=where,
            group=place,
            status="formats",
        )
    store = loc.zarr_store(read_only=True)
    parent = "/".join(parts[:-1])
    # a v2 .zmetadata without its .zgroup opens as no group, but the .zgroup Zarr writes
    # beside it for the new array makes it one, whose copy would not list that array (h55a)
    copies = datasets.consolidated_groups(store, parent) or [
        g
        for g in ("/".join(parts[:d]) for d in range(len(parts) - 1, -1, -1))
        if loc.exists(f"{g}/.zmetadata" if g else ".zmetadata")
    ]
    if copies:
        place = loc.join(copies[0]) if copies[0] else loc.url
        raise InputError(
            f"cannot generate the input at {name_shown(where)}: {name_shown(place)} holds a "
            "consolidated copy of its "
            "members' metadata, which zarr.open_group and xr.open_zarr read in place of the "
            "members' own and which would not list the new array; point input.store (or "
            "input.array) outside that group",
            input=where,
            group=place,
            status="consolidated",
        )
    named = [
        name
        for name, arr in datasets.group_arrays(store, parent).items()
        if name != parts[-1] and datasets.dims_of(arr)
    ]
    if named:
        place = loc.join(parent) if parent else loc.url
        raise InputError(
            f"cannot generate the input at {name_shown(where)}: {name_shown(place)} holds an "
            "xarray Dataset (its "
            f"arrays name their dimensions: {named[0]}), and the array generate makes names "
            "none, so xarray could no longer open the group; point input.store (or "
            "input.array) outside it",
            input=where,
            group=place,
            status="dataset",
        )


def _outermost_group(loc: Location, path: str) -> tuple[Location, str]:
    """The array at ``path`` of ``loc`` seen from the outermost Zarr group that holds the
    store's root, where there is one (``input.store: ds.zarr/gen``, or ``ds.zarr/sub`` with
    ``input.array: gen``): that group's location and the array's path in it; else ``loc``
    and ``path``. A group is a folder holding ``zarr.json``, ``.zgroup`` or ``.zattrs``; the
    climb stops at the first folder that holds none, or where the store has no folder above
    it (:meth:`~pipeline.store.location.Location.parent`). The groups above the store's root
    had not been looked at: an xarray Dataset, a group with a consolidated copy, a group of
    the other format got the new array with exit 0, and xr.open_zarr of the Dataset failed."""
    while True:
        up = loc.parent()
        if up is None:
            return loc, path
        holder, name = up
        try:
            grouped = any(holder.exists(m) for m in ("zarr.json", ".zgroup", ".zattrs"))
        except OSError as e:  # refused: nothing is known above a prefix granted alone
            if not refused_access(e):
                raise
            grouped = False
        if not grouped:
            return loc, path
        loc, path = holder, f"{name}/{path}" if path else name


def _refuse_links(loc: Location, path: str, where: str) -> None:
    """Refuse to generate again over a local input whose folder holds a symbolic link below
    it (:func:`~pipeline.store.location.symbolic_links`, the generation's lock's folder
    aside: a ``c`` moved to another disk, a chunk file), as ``run --overwrite`` refuses an
    output's (``check_no_links``): clearing the array deletes the link alone, and the old
    chunks it leads to had stayed there with no word (h84b). InputError: ``input``,
    ``status`` 'linked', ``link``, ``target``, ``links``."""
    if not loc.is_local:
        return
    links = symbolic_links(loc.join(path), skip=(RECORD,))
    if not links:
        return
    one = len(links) == 1
    raise InputError(
        f"cannot generate {name_shown(where)} again: {links_said(links, loc.join(path))}; "
        "generating it again would delete the link alone and leave what it leads to (the old "
        "chunks, or files generate never wrote) with no word: remove "
        f"{'that link' if one else 'those links'} yourself (what "
        f"{'it leads' if one else 'they lead'} to is kept: delete it too where it is the old "
        "input's), or point input.store (or input.array) elsewhere",
        input=where,
        status="linked",
        link=links[0][0],
        target=links[0][1],
        links=[p for p, _, _ in links],
    )


def _refuse_stray(loc: Location, path: str, where: str) -> None:
    """Refuse to generate again over an input ``generate`` made whose folder holds, beside the
    array's metadata and chunks, files or folders put there since
    (:func:`pipeline.store.arrays.stray_entries`: a user's notes, another array put inside
    it): Zarr's ``create_array(overwrite=True)`` deletes everything under the array's path,
    and had deleted them (``run --overwrite`` refuses the same, ``check_only_array_files``).
    InputError: ``input``, ``status`` 'stray', ``stray`` (their keys below the array)."""
    stray = arrays.stray_entries(loc, path, keep=(RECORD,))  # the generation's lock's folder
    if not stray:
        return
    some = some_shown(stray)
    raise InputError(
        f"{name_shown(where)} holds, beside the generated array's metadata and chunks, {some}: "
        "generate "
        "replaces the array and never deletes other files: move them out, or point "
        "input.store (or input.array) elsewhere",
        input=where,
        status="stray",
        stray=stray,
    )


def _generate_units(workers: Workers, spec: GenSpec, progress: str, interval: float) -> None:
    """Generate every unit of ``spec``'s array on ``workers`` (threads of this process, or a
    Dask cluster: :mod:`pipeline.running.workers`), one task per unit."""
    info = spec.sink.info
    units = list(grid.iter_indices(info.grid))
    name = f"pipeline-generate-{uuid.uuid4().hex}"  # a name of its own, as a run's blocks
    make = Bound(name, generate_unit, spec)
    dsk = {(name, *u): (make, tuple(u)) for u in units}
    unit_bytes = float(np.prod(info.unit) * info.dtype.itemsize)
    with Progress(len(dsk), unit_bytes, progress, interval, label="generate") as bar:
        workers.work = "generate"  # a stop's words are of units of the input, not blocks
        workers.compute(dsk, list(dsk), lambda _key, _result: bar.advance())


def _workers(cp: ClusterPlan, store: Location) -> contextlib.AbstractContextManager[Workers]:
    return local_workers(cp) if cp.scheduler == "local" else _joined(cp, store)


@contextlib.contextmanager
def _joined(cp: ClusterPlan, store: Location) -> Iterator[Workers]:
    """The workers of the scheduler ``cp`` names, refused where they cannot open the input's
    ``store`` (:func:`~pipeline.running.cluster.check_store_packages`)."""
    from pipeline.running import cluster

    client = cluster.join(cp.scheduler, cp.timeout)
    try:
        cluster.check_store_packages(client, cp.scheduler, {"input": store}, cp.timeout)
        with cluster.registered(client, cluster.PipelineSetup(cp.backend, None), cp.scheduler):
            yield cluster.DaskWorkers(client, cp.scheduler, None, cp.timeout)
    finally:
        cluster.close_client(client)


def create_input(config: Config, backend: str, held: Location | None = None) -> GenSpec:
    """Create the input's metadata with Zarr (replacing it); the spec of its generation.
    ``held``: the input's store as its generation's lock reaches it (``Ledger.held_store``:
    through its folder held open), which what is deleted and written here goes into wherever
    it is moved meanwhile (None: by its path); the spec, which its workers are given, names
    the store by its path."""
    g = generate_section(config)
    chunk, unit = generated_layout(g)
    loc = Location.of(config.input.store, config.input.storage_options, "input")
    into = held or loc
    path = config.input.array.strip("/")
    # nvCOMP encodes frames up to 4 MiB, and writes no content checksum
    checksum = g.codec.name == "zstd" and g.codec.checksum
    small = grid.nbytes(chunk, np.dtype(g.dtype)) <= (4 << 20)
    big_endian = np.dtype(g.dtype).byteorder == ">"
    encode_on = backend if small and not checksum and not big_endian else "cpu"
    attrs: dict[str, Any] = {
        GENERATED: {
            # until every unit is written (mark_generated): a reader must not take the chunks
            # not yet written for fill values
            "status": "incomplete",
            "distribution": g.distribution,
            "seed": g.seed,
            "generator": ("numpy-pcg64" if encode_on == "cpu" else "cupy-default_rng")
            if g.distribution != "ramp"
            else "arithmetic",
        }
    }
    store = into.zarr_store(read_only=False)
    if into is loc and loc.is_local and not path and os.path.islink(loc.url):
        # zarr-python replaces an array at the store's root by deleting the root folder
        # (rmtree), which refuses a symbolic link ("a store answered OSError: Cannot call
        # rmtree on a symbolic link", h57f): the folder the link leads to is the store
        from zarr.storage import LocalStore

        store = LocalStore(os.path.realpath(loc.url), read_only=False)
    # what was there is deleted here, not by Zarr's overwrite, which deletes the whole
    # folder: the folder of the generation's lock (InputLock) stays
    arrays.clear_array(into, path, keep=RECORD)
    arrays.create_generated(store, path, g, chunk, unit, attrs)
    info = arrays.describe_array(loc, path)
    sink = Sink(
        info=info,
        block=info.unit,
        backend=encode_on,
        encoding=Encoding(
            codec=g.codec.name,
            level=g.codec.level,
            checksum=g.codec.checksum,
            raw_below=g.codec.store_raw_below,
        ),
        ledger=None,
    )
    return GenSpec(sink=sink, distribution=g.distribution, seed=g.seed, big_endian=big_endian)


def mark_generated(
    loc: Location, path: str, folder: Folder | None = None, lock: InputLock | None = None
) -> None:
    """Mark the generated input at ``path`` finished (``pipeline_generated.status: complete``);
    call once every unit is written. ``folder``: the array's folder, held open by its
    generation's ``lock`` (``Ledger.held_folder``), into which the mark goes, once what was
    read by the path is found still that folder's (``Ledger.check_at_path``)."""
    doc = dict(arrays.read_attributes(loc, path).get(GENERATED) or {})
    doc["status"] = "complete"
    if folder is not None and lock is not None:
        lock.check_at_path(folder)
    # the lock checked again as one step with the mark's write (h84c)
    check = None if lock is None else (lambda: lock.check_writing(folder))
    arrays.update_attributes(loc, path, {GENERATED: doc}, folder, check)


def unit_values(spec: GenSpec, unit_index: Shape, xp: Any) -> Any:
    """The values of one unit at its full (padded) shape, with array module ``xp``."""
    info: ArrayInfo = spec.sink.info
    shape, dtype = tuple(info.unit), info.dtype
    if spec.distribution == "ramp":
        # global C-order index of each element, modulo the period: exact in every dtype
        lin = xp.zeros(shape, dtype=np.int64)
        stride = 1
        for a in reversed(range(len(shape))):
            coord = xp.arange(shape[a], dtype=np.int64) + unit_index[a] * info.unit[a]
            lin += coord.reshape((-1,) + (1,) * (len(shape) - a - 1)) * stride
            stride *= info.shape[a]
        period = RAMP_PERIOD
        if dtype.kind in "iu":
            period = min(period, int(np.iinfo(dtype).max) + 1)
        v = lin % period
        return (v * 0.5).astype(dtype) if dtype.kind == "f" else v.astype(dtype)
    seed = int(np.random.SeedSequence([spec.seed, *unit_index]).generate_state(1)[0])
    rng = xp.random.default_rng(seed)
    if dtype.kind == "f":
        work = np.float32 if dtype.itemsize <= 4 else np.float64
        if spec.distribution == "normal":
            return rng.standard_normal(shape, dtype=work).astype(dtype)
        return rng.random(shape, dtype=work).astype(dtype)
    info_i = np.iinfo(dtype)
    if spec.distribution == "normal":  # integers around 0 with a spread of 1000
        v = rng.standard_normal(shape, dtype=np.float64) * 1000.0
        return xp.clip(xp.rint(v), info_i.min, info_i.max).astype(dtype)
    return rng.integers(int(info_i.min), int(info_i.max), size=shape, dtype=dtype, endpoint=True)


def generate_unit(spec: GenSpec, unit_index: Shape) -> int:
    """Generate and store one unit; bytes written. Counted as writing the input while it
    runs (:func:`~pipeline.running.tasks.writing_to`)."""
    with writing_to(target(spec.sink.info)):  # from its start, as a run's block
        return _generate_unit(spec, unit_index)


def _generate_unit(spec: GenSpec, unit_index: Shape) -> int:
    return written_through(  # the input's folder, wherever it goes (h77e)
        spec.sink,
        spec.lock.check_held if spec.lock is not None else None,
        lambda folder: _generate_unit_into(spec, unit_index, folder),
    )


def _generate_unit_into(spec: GenSpec, unit_index: Shape, folder: Folder | None) -> int:
    """:func:`_generate_unit`'s lock check and write, through the input's ``folder``
    (:func:`~pipeline.running.tasks.array_folder`)."""
    if spec.lock is not None:  # still this generation's, in the folder its unit goes into
        # (on an object store, one read of its lock object a second at most, not one per unit)
        spec.lock.check_held(folder, within=UNIT_CHECK_WITHIN)
    be = devices.get(spec.sink.backend)
    be.prepare()
    with be.on_stream():  # the values are drawn on the stream that encodes them
        data = unit_values(spec, unit_index, be.xp)
        if spec.big_endian:  # the values' bytes as the store holds them
            data = data.byteswap()
        # on an object store, created only where nothing is there: a generation whose lock
        # another took in the second its check stands is refused its write over a unit that
        # one wrote, rather than leaving it in that one's input, unsaid (h83f)
        lock = spec.lock
        check = None if lock is None else (lambda: lock.check_held(folder, strayed=_STRAYED))
        written = write_unit(be, spec.sink, tuple(unit_index), data, folder, existing=check)
        be.synchronize()
    return written


#: What a generation stopped at a unit's write says of the units it wrote in the second
#: before (:data:`~pipeline.store.ledger.UNIT_CHECK_WITHIN`), by the input's keys: none
#: over one the generation that took its lock wrote (each written only where nothing is),
#: and those that one writes after them are its own.
_STRAYED = (
    "the units it wrote since its lock was last found its own are written over by the "
    "generation that took it wherever that one writes them"
)
