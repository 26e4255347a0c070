"""What one task does to one block: read it, run the stages, write it.

A run's task is :func:`run_block` (see :mod:`pipeline.running.graph`): it takes small frozen
specs and a block index, so a task pickles to a few hundred bytes, and a block goes from file to
file on one worker thread. The steps are functions of their own for the Dask array views of
the benchmarks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from pipeline import devices
from pipeline.errors import (
    GENERATE_AGAIN,
    RESUME_FINISHES,
    VERIFY_NAMES,
    ChunkError,
    ClusterError,
    InputError,
    PipelineError,
    StoreError,
    cause,
    disk_full,
    name_shown,
    one_line,
    storage_failure,
)
from pipeline.ops import stages
from pipeline.store import arrays, codecs, grid, shards
from pipeline.store.arrays import ArrayInfo
from pipeline.store.grid import Shape
from pipeline.store.shards import EMPTY

if TYPE_CHECKING:
    from pipeline.planning.specs import Sink, Source
    from pipeline.store.location import Folder, Location

#: Fields of the per-block statistics a write returns, in order (times in microseconds of
#: task time, summed over the block's phases on its worker thread).
STATS = (
    "elements",
    "bytes_read",
    "bytes_written",
    "nan",
    "posinf",
    "neginf",
    "us_read",
    "us_decode",
    "us_stages",
    "us_encode",
    "us_write",
)

_CLOCK = threading.local()

log = logging.getLogger("pipeline")

_T = TypeVar("_T")


@contextlib.contextmanager
def _timed(phase: str) -> Iterator[None]:
    """Add the time spent in ``phase`` to this thread's tally (read back by write_block)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _add(phase, time.perf_counter() - t0)


def _add(what: str, amount: float) -> None:
    """Add ``amount`` to this thread's tally of ``what`` (a phase's seconds, bytes read)."""
    tally = _CLOCK.__dict__.setdefault("tally", {})
    tally[what] = tally.get(what, 0) + amount


def _take_tally() -> dict[str, float]:
    tally = _CLOCK.__dict__.get("tally", {})
    _CLOCK.tally = {}
    return tally


# --------------------------------------------------------------------------------------------
# Reading.


@functools.lru_cache(maxsize=16)
def _zarr_array(info: ArrayInfo) -> Any:
    from pipeline.store.arrays import open_zarr_array

    return open_zarr_array(info.location, info.path)


def _count_read(raw: Any) -> None:
    _add("bytes_read", len(raw) if raw is not None else 0)


def _count_stored(info: ArrayInfo, units: Iterable[Shape]) -> None:
    """Count the stored bytes of ``units`` (local files; absent ones hold none), read by
    zarr-python, whose reads give no sizes back."""
    sizes = (info.location.size(info.key(u)) for u in units)
    _add("bytes_read", sum(n or 0 for n in sizes))


def _unreadable_unit(
    info: ArrayInfo, block_index: Shape, block: Shape, error: Exception
) -> Exception:
    """The ChunkError for a block zarr-python could not read: its first stored unit that
    zarr-python cannot read on its own (each is read once more, only on this failure path),
    or the block's region where every unit reads alone; the InputError of
    :func:`unreadable` where the store would not give a unit's bytes, and of
    :func:`codec_missing_here` where a codec has no implementation here (not damage); a
    package this process cannot import, ``error`` itself (not damage either: the run says
    whose Python lacks it, ``cluster.lacking_module``)."""
    if isinstance(error, ImportError):
        return error
    if codecs.is_unknown_codec(error):  # no bytes are damaged: the codec is missing here
        return codec_missing_here(info, error)
    reason = cause(error)
    z = _zarr_array(info)
    for unit in grid.units_in(block_index, block, info.unit, info.shape):
        try:
            z[grid.unit_slices(unit, info.unit, info.shape)]
        except Exception as e:  # codecs raise RuntimeError, ValueError, zlib.error, ...
            if isinstance(e, ImportError):
                return e
            failure = storage_failure(e)
            if failure is not None:
                return unreadable(info, info.key(unit), failure)
            if codecs.is_unknown_codec(e):
                return codec_missing_here(info, e)
            key = info.key(unit)  # a shard's damaged frame named at each level, as the run names
            found = arrays.damaged_frame_in(info.location, z, key)  # one it decodes itself
            if found is not None:
                return damaged(info, key, str(found), found.problem)
            return damaged(info, key, cause(e), "codec")
    region = [[s.start, s.stop] for s in grid.unit_slices(block_index, block, info.shape)]
    return damaged(info, f"in the region {region}", reason, "codec")


def unreadable(info: ArrayInfo, key: str, failure: str) -> InputError:
    """The one-line error for a stored unit of the input that its store would not give
    (``failure``: :func:`~pipeline.errors.storage_failure`'s words, an HTTP status, a
    permission): fields ``store``, ``key``, ``reason``."""
    store = info.location.url
    failure = one_line(failure)
    fix = info.location.answer_fix(failure, side="input")
    return InputError(
        f"cannot read input chunk {key!r} of {name_shown(store)}: the store answered {failure}; "
        "the "
        f"output stays incomplete: {fix}; then {VERIFY_NAMES}",
        store=store,
        key=key,
        reason=failure,
    )


def _read_unit(info: ArrayInfo, key: str, alloc: Callable[[int], memoryview]) -> Any:
    """``info.location.read_into(key, alloc)``, a storage failure (F8: an HTTP 403 was a bare
    ``ClientResponseError``) turned into :func:`unreadable`'s one line."""
    try:
        return info.location.read_into(key, alloc)
    except Exception as e:
        failure = storage_failure(e)
        if failure is None:
            raise
    # raised outside the handler, so the store's error is not its __context__ (helper-54:
    # aiohttp's, which does not pickle, made distributed hand back a bare Exception)
    raise unreadable(info, key, failure)


def damaged(info: ArrayInfo, key: str, reason: str, problem: str) -> ChunkError:
    """The one-line error for a stored unit of the input that cannot be decoded (``problem``:
    a key of :data:`~pipeline.store.shards.PROBLEMS`; ``reason`` said in one line: a codec's
    message may hold line breaks). A chunk decoded to another number of bytes than the
    metadata says (``problem`` 'size') is weighed against the chunks around it
    (:func:`~pipeline.store.arrays.chunk_misfit`, on this failure path only): where they
    misfit alike, the line says the metadata's dtype or chunk shape does not match the chunks
    as written (field ``misfit`` 'metadata', ``file`` its document); where no other stored
    chunk is found, that it is the chunk or the metadata (``misfit`` 'unknown'); h69e: a
    hand-edited ``data_type`` had been said as one damaged chunk, "restore the chunk"."""
    store = info.location.url
    reason = one_line(reason)
    misfit = _misfit(info, key, problem)
    words = None if misfit is None else arrays.misfit_words(misfit, info.location, info.path, key)
    if words is not None:
        said, fix, fields = words
        return ChunkError(
            f"{said}; the output stays incomplete: {fix}; then {VERIFY_NAMES}",
            store=store,
            key=key,
            reason=reason,
            problem=problem,
            **fields,
        )
    return ChunkError(
        f"input chunk {key!r} of {name_shown(store)} is damaged: {reason}; the output stays "
        "incomplete: "
        "restore the chunk (or delete it, and it reads as the fill value); then "
        f"{VERIFY_NAMES}",
        store=store,
        key=key,
        reason=reason,
        problem=problem,
    )


def _misfit(info: ArrayInfo, key: str, problem: str) -> arrays.Misfit | None:
    """:func:`~pipeline.store.arrays.misfit_of` the input's unit ``key``: whether the chunks
    around it decode to the same wrong size (its metadata edited since they were written).
    None where it cannot say: the damaged chunk's own line is said then."""
    if problem != "size":
        return None
    try:
        arr = _zarr_array(info)
    except Exception:  # the metadata no longer opens: the chunk's own line
        return None
    return arrays.misfit_of(info.location, info.path, arr, key, problem)


def codec_missing_here(info: ArrayInfo, e: BaseException) -> InputError:
    """The one line for a codec of the input's chain that this worker's process has no
    implementation of (``e``: numcodecs' ``UnknownCodecError``), though the plan's process
    had one: a codec registered in that process alone (``numcodecs.register_codec`` in a
    notebook), or a package its workers lack. It had been called a damaged chunk, with the fix
    to restore or delete it (a deleted chunk reads as the fill value), or come back as the bare
    UnknownCodecError with the worker's traceback. InputError, fields ``store`` (the metadata
    document), ``array``, ``status`` 'unreadable', ``codec``, ``reason``, ``fix``."""
    return arrays.unknown_codec(
        info.location, info.path, codecs.named_codec(e), cause(e), where="the workers"
    )


def read_block(src: Source, block_index: Shape) -> Any:
    """The input's block ``block_index`` as a NumPy or CuPy array (``src.backend``'s type),
    of ``src.dtype``: the stored elements, or their values where ``src.unpacking`` decodes
    them (CF packing, on the block's device).

    Raises :class:`~pipeline.errors.ChunkError` naming the store and key of a stored unit
    that does not decode to exactly its chunks."""
    be = devices.get(src.backend)
    be.prepare()
    with be.on_stream():
        out = _read_block(be, src, block_index)
        if src.unpacking is not None:
            with _timed("decode"):
                # _Unsigned: the same bytes, read with the other sign (a view, on either device)
                out = src.unpacking.stored(out)
                _refuse_unheld(be, src, block_index, out)
                out = be.unpack(src.unpacking, out)
        be.release_host_buffers()  # the block is on its device: its staging is free
    return out


def _refuse_unheld(be: devices.Backend, src: Source, block_index: Shape, x: Any) -> None:
    """Raise the InputError of :func:`~pipeline.planning.variable.unheld_error` where the
    block ``x`` (stored elements, on ``be``'s device) holds an element that its decoding to
    integers cannot give a value (a missing one: NaN), naming its index and stored unit
    (:meth:`~pipeline.ops.cf.Unpacking.unheld`, on the host: a GPU block is copied there
    first, as the GPU backend's :meth:`unpack` does for an integer decoding); a decoding to
    floats checks nothing."""
    assert src.unpacking is not None
    if np.dtype(src.unpacking.dtype).kind not in "iu":
        return  # a decoding to floats holds every element
    # on the host, as the GPU backend decodes to integers anyway (its unpack): NumPy's checks,
    # which the GPU host's tests of 2026-12-01 did not run on CuPy
    host = x if be.xp is np else be.to_host(x)
    found = src.unpacking.unheld(host)
    if found is None:
        return
    from pipeline.planning.variable import unheld_error  # the input's Dataset: on this path alone

    origin = tuple(s.start for s in grid.unit_slices(block_index, src.block, src.info.shape))
    raise unheld_error(src.info, src.unpacking, found, origin, tuple(x.shape))


def staging_per_thread(src: Source) -> int:
    """The page-locked staging buffers one GPU task thread holds at once, since
    :func:`read_block` and :func:`write_block` each release theirs when they end: two where the
    task's own thread reads a block's stored units, one after another, into one buffer and
    decodes them into another (the block); else one (the stored bytes the GPU decodes, or the
    block the decoding pool or Zarr fills, then the block's encoded frames)."""
    reads_and_decodes = src.direct and src.decode_on == "cpu" and src.decode_threads <= 1
    return 2 if reads_and_decodes else 1


def _read_block(be: devices.Backend, src: Source, block_index: Shape) -> Any:
    info = src.info
    slices = grid.unit_slices(block_index, src.block, info.shape)
    if not src.direct:
        with _timed("read"):
            checked = None
            if info.unit_check is not None:  # Zarr reads a cut Blosc frame without an error
                checked = _checked_units(info, block_index, src.block)
            failed: Exception | None = None

            def read() -> np.ndarray:
                z = _zarr_array(info)
                if info.unit_check is not None and checked is not None:
                    z = arrays.array_over_units(z, info.path, info.unit_check, checked)
                return np.asarray(z[slices])

            try:
                try:
                    host = read()
                except Warning:  # one the process's filters raise (a caller's `-W error`,
                    # whose process runs an in-process cluster's tasks): zarr-python's of a
                    # right store, read again without them; any other still fails the read
                    with arrays.read_warnings_ignored():
                        host = read()
            except Exception as e:  # Zarr names no chunk: find the unit it cannot read
                failed = _unreadable_unit(info, block_index, src.block, e)
            if failed is not None:  # raised outside the handler: no unpicklable __context__
                raise failed
            if info.unit_check is None and info.location.is_local:  # Zarr's reads: not counted
                _count_stored(info, grid.units_in(block_index, src.block, info.unit, info.shape))
        return be.from_host(np.ascontiguousarray(host, dtype=info.dtype))
    units = grid.units_in(block_index, src.block, info.unit, info.shape)
    if src.decode_on == "gpu":
        try:
            return _read_block_gpu(be, info, units, slices)
        except _DecodeOnHost:
            pass  # frames the GPU should not decode: this block decodes on the CPU
    shape = grid.region_shape(slices)
    out = be.host_array(shape, info.dtype, "decoded")
    origin = tuple(s.start for s in slices)
    if src.decode_threads > 1:  # every block, so a task's thread holds no read buffer
        _decode_units_pooled(src.decode_threads, info, units, origin, out)
    else:
        for u in units:
            _decode_unit_on_host(info, u, origin, out, lambda n: be.host_buffer(n, "read"))
    return be.from_host(out)


def _checked_units(info: ArrayInfo, block_index: Shape, block: Shape) -> dict[str, Any]:
    """The stored units of the block ``block_index`` of an input only Zarr decodes whose
    chunks hold a Blosc frame or that is sharded (``info.unit_check``), each checked
    (:func:`codecs.check_unit`: its Blosc frames, its shard index) and handed on as the check
    leaves it, for Zarr to read (:func:`arrays.array_over_units`): c-blosc decodes a frame cut
    short from whatever memory follows it, without an error, so Zarr's read had given the
    output those bytes, marked complete; the codecs the check decodes (gzip or zstd over each
    Blosc frame, or over a whole shard) are not decoded again. {key: bytes}, absent units left
    out; their bytes are counted as read. Raises the ChunkError of :func:`damaged` naming the
    unit's key."""
    assert info.unit_check is not None
    out: dict[str, Any] = {}
    for unit in grid.units_in(block_index, block, info.unit, info.shape):
        key = info.key(unit)
        raw = _read_unit(info, key, lambda n: np.empty(n, np.uint8).data)  # not zeroed
        _count_read(raw)
        try:
            checked = codecs.check_unit(raw, info.unit, info.unit_check)
        except shards.Damaged as e:
            error = damaged(info, key, str(e), e.problem)
        else:
            if checked is not None:
                out[key] = checked
            continue
        raise error  # outside the handler: no __context__ to pickle
    return out


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (its threads, the pool)
_POOL_LOCK = threading.Lock()
_READ_BUFFER = threading.local()


def _decode_pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` decoding threads (made on first use, in the worker).
    A run that asks for another size (a warm worker's next run) replaces it: the old pool's
    threads end once their queued units are done, and their read buffers with them."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != threads:
            if _POOL is not None:
                _POOL[1].shutdown(wait=False)
            _POOL = (threads, ThreadPoolExecutor(threads, "pipeline-decode"))
        return _POOL[1]


def _submit(threads: int, fn: Callable[[Any], Any], arg: Any) -> Future:
    """``fn(arg)`` on the decoding pool of ``threads`` threads. A pool that another run (of
    another size, on the same warm worker) replaced between the lookup and the submit refuses
    new work (RuntimeError): the unit goes to the pool that replaced it."""
    for _ in range(3):
        try:
            return _decode_pool(threads).submit(fn, arg)
        except RuntimeError:  # shut down meanwhile
            continue
    return _decode_pool(threads).submit(fn, arg)  # the interpreter's exit: its error, as is


def _pool_read_buffer(nbytes: int) -> memoryview:
    """This decoding thread's buffer for a stored unit's bytes (grown, and reused)."""
    buf = getattr(_READ_BUFFER, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _READ_BUFFER.buf = np.empty(max(1 << 20, int(nbytes * 1.25)), np.uint8)
    return buf[:nbytes].data


def _decode_units_pooled(
    threads: int, info: ArrayInfo, units: list[Shape], origin: Shape, out: np.ndarray
) -> None:
    """Read and decode ``units`` into ``out`` on this process's decoding pool, several at once
    (numcodecs and file reads release the GIL), and wait for every one of them before
    returning or raising (none may write into ``out`` after the task has moved on). The
    first failing unit, in the units' order, raises its error. The pool's read and decode
    time is added to this task's phases in proportion, summing to the time the task waited."""

    def job(u: Shape) -> tuple[dict[str, float], BaseException | None]:
        try:
            _decode_unit_on_host(info, u, origin, out, _pool_read_buffer)
            return _take_tally(), None
        except BaseException as e:  # handed to the task's thread, which raises it
            return _take_tally(), e

    t0 = time.perf_counter()
    futures = [_submit(threads, job, u) for u in units]
    done = [f.result() for f in futures]  # every unit's, errors included (job raises none)
    waited = time.perf_counter() - t0
    spent = {k: sum(t.get(k, 0.0) for t, _ in done) for k in ("read", "decode", "bytes_read")}
    busy = spent["read"] + spent["decode"]
    for phase in ("read", "decode"):
        _add(phase, waited * (spent[phase] / busy if busy else 0.5))
    _add("bytes_read", spent["bytes_read"])
    for _, error in done:
        if error is not None:
            raise error


def _decode_unit_on_host(
    info: ArrayInfo,
    unit_index: Shape,
    origin: Shape,
    out: np.ndarray,
    alloc: Callable[[int], memoryview],
) -> None:
    """Decode one stored unit's chunks into their places in ``out`` (the block, whose first
    element is the array's ``origin``), on the CPU: straight into the block where a chunk's
    place there is contiguous, else through a chunk-sized scratch array. The unit's bytes are
    read into ``alloc(size)``."""
    assert info.format is not None
    fmt = info.format.chunk
    key = info.key(unit_index)
    with _timed("read"):
        raw = _read_unit(info, key, alloc)
    _count_read(raw)
    with _timed("decode"):
        n_chunks = math.prod(info.chunks_per_unit)
        try:
            frames = shards.unit_frames(raw, n_chunks, info.format.shard, info.chunks_per_unit)
        except shards.Damaged as e:
            raise damaged(info, key, str(e), e.problem) from None
        fill = np.frombuffer(info.fill_bytes, info.dtype)[0]
        unit_origin = [i * u for i, u in zip(unit_index, info.unit, strict=True)]
        missing: InputError | None = None
        for c, chunk_index in enumerate(grid.iter_indices(info.chunks_per_unit)):
            start = [
                o + i * n for o, i, n in zip(unit_origin, chunk_index, info.chunk, strict=True)
            ]
            if any(a >= s for a, s in zip(start, info.shape, strict=True)):
                continue  # a chunk of an edge shard that lies wholly past the array's end
            stop = [min(a + n, s) for a, n, s in zip(start, info.chunk, info.shape, strict=True)]
            dest = out[
                tuple(slice(a - o, b - o) for a, b, o in zip(start, stop, origin, strict=True))
            ]
            size = int(frames.sizes[c])
            if size == EMPTY:
                dest[...] = fill
                continue
            off = int(frames.offsets[c])
            assert raw is not None
            frame = raw[off : off + size]
            try:
                if dest.shape == tuple(info.chunk):
                    fmt.decode_into(frame, dest)
                else:  # an edge chunk: stored whole, partly outside the array
                    whole = fmt.decode(frame)
                    dest[...] = whole[tuple(slice(0, e) for e in dest.shape)]
            except shards.Damaged as e:
                where = f" ({codecs.inner_chunk(c, info.unit, info.chunk)})" if info.sharded else ""
                raise damaged(info, key, f"{e}{where}", e.problem) from None
            except Exception as e:
                if not codecs.is_unknown_codec(e):
                    raise
                missing = codec_missing_here(info, e)
            if missing is not None:  # raised outside the handler: no unpicklable __context__
                raise missing


class _DecodeOnHost(Exception):
    """A unit holds zstd chunks that the GPU should not decode (no declared content size, a
    content checksum to verify, or not one frame alone: a skippable frame, several frames, bytes
    after the frame; see :func:`codecs.check_frames`): its block is decoded on the CPU instead,
    by numcodecs, as zarr-python decodes it."""


def _read_block_gpu(
    be: devices.Backend, info: ArrayInfo, units: list[Shape], slices: tuple[slice, ...]
) -> Any:
    """Decode a block's units with the GPU's zstd decoder: every unit's bytes are read into
    one page-locked buffer, checked frame by frame on the host (:func:`codecs.check_frames`),
    copied to the device once and decoded in one batch."""
    from pipeline.devices import gpu

    n_chunks = math.prod(info.chunks_per_unit)
    arena = gpu.Arena("read")
    offsets, sizes = [], []
    for u in units:
        key = info.key(u)
        with _timed("read"):
            base = arena.used
            raw = _read_unit(info, key, arena.take)
        _count_read(raw)
        with _timed("decode"):
            try:
                shard = info.format.shard if info.format is not None else None
                frames = shards.unit_frames(raw, n_chunks, shard, info.chunks_per_unit)
                host = np.frombuffer(raw, np.uint8) if raw is not None else np.zeros(0, np.uint8)
                needs_host = codecs.check_frames(
                    host, frames, info.codec or "none", info.chunk_nbytes, info.chunks_per_unit
                )
            except shards.Damaged as e:
                raise damaged(info, key, str(e), e.problem) from None
        if needs_host.any():
            raise _DecodeOnHost(key)
        present = frames.sizes != EMPTY
        offs = frames.offsets.copy()
        offs[present] += np.uint64(base)
        offsets.append(offs)
        sizes.append(frames.sizes)
    with _timed("decode"):
        flat = be.decode_frames(
            arena.view(),
            shards.Frames(np.concatenate(offsets), np.concatenate(sizes)),
            info.codec or "none",
            info.chunk_nbytes,
            info.dtype,
            info.fill_bytes,
        )
        per_unit = n_chunks * info.chunk_nbytes // info.dtype.itemsize
        xp = be.xp
        if len(units) == 1:
            unit = grid.frames_to_unit(flat, info.unit, info.chunk)
            return unit[tuple(slice(0, s.stop - s.start) for s in slices)]
        out = xp.empty(grid.region_shape(slices), dtype=info.dtype)
        for k, u in enumerate(units):
            unit = grid.frames_to_unit(
                flat[k * per_unit : (k + 1) * per_unit], info.unit, info.chunk
            )
            us = grid.unit_slices(u, info.unit, info.shape)
            out[grid.within(us, slices)] = unit[tuple(slice(0, a.stop - a.start) for a in us)]
        return out


# --------------------------------------------------------------------------------------------
# The stages, and moving blocks between devices.


def apply_stages(
    x: Any, chain: Sequence[stages.BoundStage], backend: str, owned: bool = False
) -> Any:
    """The fused chain over one block; ``owned``: ``x`` is this task's own, which the chain
    may overwrite (:func:`run_block`'s block, read by its own thread)."""
    be = devices.get(backend)
    be.prepare()
    with be.on_stream(), _timed("stages"):
        return be.apply_chain(chain, x, owned=owned)


def to_device(x: np.ndarray) -> Any:
    be = devices.get("gpu")
    be.prepare()
    return be.from_host(x)


def to_host(x: Any) -> np.ndarray:
    be = devices.get("gpu")
    be.prepare()
    return be.to_host(x)


def to_host_pinned(x: Any) -> np.ndarray:
    """A device block back in page-locked host memory (for results kept in memory)."""
    from pipeline.devices import gpu

    return gpu.GpuBackend().to_host(x, pinned=True)


def to_pinned(x: np.ndarray) -> np.ndarray:
    """A host block copied into page-locked memory (input held in memory for the GPU)."""
    from pipeline.devices import gpu

    return gpu.pinned_copy(x)


# --------------------------------------------------------------------------------------------
# Writing.


def write_unit(
    be: devices.Backend,
    sink: Sink,
    unit_index: Shape,
    data: Any,
    folder: Folder | None = None,
    existing: Callable[[], None] | None = None,
) -> int:
    """Encode and store one unit (``data`` at the unit's full shape); bytes written.
    ``folder``: the array's folder, held open by the task (:func:`array_folder`), which the
    unit goes into wherever it is now (None: by the path). ``existing``: where it is given
    and the unit is written by the path (an object store's keys), the unit is written only
    where no object is there yet (:meth:`Location.write_new
    <pipeline.store.location.Location.write_new>`), and where one is, ``existing()`` is
    asked first (it raises where the writer's lock is another's now: the unit is another
    writer's, not to be written over), then the unit is written over it (a retried task's
    own, or one a writer whose lock this one took over wrote after its take-over, h83f)."""
    info = sink.info
    flat = grid.unit_to_frames(data, info.chunk)
    n = math.prod(info.chunks_per_unit)
    present = grid.present_mask(unit_index, info.unit, info.chunk, info.shape)
    with _timed("encode"):
        parts, sizes = be.encode_frames(flat, n, present, sink.encoding)
        if info.sharded:
            offsets = np.full(n, EMPTY, dtype=np.uint64)
            real = sizes != EMPTY
            offsets[real] = np.concatenate([[0], np.cumsum(sizes[real])[:-1]]).astype(np.uint64)
            parts = [*parts, shards.encode_index(offsets, sizes)]
    key = info.key(unit_index)
    with _timed("write"), _storing(sink, key):
        if folder is not None:
            return folder.write(key[len(info.path) + 1 :] if info.path else key, parts)
        if existing is None:
            return info.location.write(key, parts)
        written = info.location.write_new(key, parts)
        if written is None:  # there already: another writer's, or this one's own
            existing()
            written = info.location.write(key, parts)
        return written


def array_folder(sink: Sink) -> contextlib.AbstractContextManager[Folder | None]:
    """The folder of the array ``sink`` writes, held open while inside (None where its store
    is no local folder, or nothing is at its path: then it is written by the path, and its
    lock's check by the path says so). A task checks its run's (generation's) lock through it
    and writes its units and marker through it: a store moved away between that check and
    those writes (``mv out.zarr moved.zarr``) receives them where it went, where they had
    gone by the path into a new run's output made there, after that run wrote the same
    block and said it complete (h77e)."""
    return sink.info.location.folder(sink.info.path)


def written_through(
    sink: Sink,
    check: Callable[[Folder | None], None] | None,
    write: Callable[[Folder | None], _T],
) -> _T:
    """``write(folder)`` through the folder of the array ``sink`` writes (:func:`array_folder`).
    Where it fails with a store's refusal or an OSError, ``check`` (a lock's ``check_held``;
    None: none) raises first where the folder's lock is no longer its holder's (the folder
    removed, ``rm -rf``: the write found it gone), so that the failure is said as that, not
    as a store's refusal."""
    with array_folder(sink) as folder:
        try:
            return write(folder)
        except (StoreError, OSError) as e:  # a store's refusal, or the folder gone
            failure = e
        # asked outside the handler: the store's error is not the displaced one's __context__
        if check is not None and folder is not None:
            check(folder)
        raise failure


def _then(sink: Sink) -> tuple[str, str, str]:
    """What ``sink`` writes, for a line about a write of it that failed: ('output', what is
    left, what finishes it) for a run's output (its blocks are marked in a run record:
    ``sink.ledger``), ('input', ...) for an input being generated, which has none."""
    where = sink.info.location.join(sink.info.path)
    if sink.ledger is None:
        return "input", f"the input {name_shown(where)} stays unfinished", GENERATE_AGAIN
    return "output", "the output stays incomplete", RESUME_FINISHES


def unwritable(sink: Sink, key: str, failure: str, what: str = "") -> StoreError:
    """The one-line error for ``key`` of ``sink`` (``what`` it is: a chunk or shard file by
    default, a block's marker) that its store would not take (``failure``:
    :func:`~pipeline.errors.storage_failure`'s words, a permission, an HTTP status), saying
    what is left and what finishes it once fixed; fields ``store``, ``key``, ``reason``,
    ``setting`` ('output', or 'input' for a generated input). A task had raised the bare
    ``OSError``, whose traceback each worker process printed ("Compute Failed"), before the
    run's last line (h57f)."""
    side, left, then = _then(sink)
    store = sink.info.location.url
    failure = one_line(failure)
    what = what or f"{side} chunk"
    fix = sink.info.location.answer_fix(failure, side=side)
    return StoreError(
        f"cannot write {what} {key!r} of {name_shown(store)}: the store answered {failure}; "
        f"{left}: {fix}; "
        f"then {then}",
        store=store,
        key=key,
        reason=failure,
        setting=side,
    )


@contextlib.contextmanager
def _storing(sink: Sink, key: str, what: str = "") -> Iterator[None]:
    """A write of ``key`` to ``sink``'s store: a store's refusal (a permission, an HTTP
    status: :func:`~pipeline.errors.storage_failure`) raised as :func:`unwritable`'s line (a
    full disk is :func:`~pipeline.errors.disk_full`'s: a chunk's write says so already, a
    marker's had been "the store answered OSError: [Errno 28] ...: mend what is at that
    path")."""
    failure: str | StoreError | None = None
    try:
        yield
    except PipelineError:
        raise
    except Exception as e:
        full = (
            disk_full(e, sink.info.location.join(key), _then(sink)[2])
            if isinstance(e, OSError)
            else None
        )
        failure = full or storage_failure(e)
        if failure is None:
            raise
    # raised outside the handler, so the store's error is not its __context__ (as
    # _read_unit's: an error that does not pickle made distributed hand back a bare Exception)
    if isinstance(failure, StoreError):
        raise failure
    if failure is not None:
        raise unwritable(sink, key, failure, what)


def _strayed(block_index: Shape) -> str:
    """What a run whose lock was taken by another run while it wrote the block
    ``block_index`` by the output's path (an object store's keys) says of that block: its
    units are written, perhaps into the other run's output, which no check before a write
    can rule out where the store has no write conditional on another object (S3)."""
    at = ", ".join(str(i) for i in block_index)
    return (
        f"its block ({at}), and any other it was writing then (one a worker thread at most), "
        "went to the output's keys after the lock was taken, so they may be in the output of "
        "the run that took it, however that run ends: `pipeline verify --all` with that "
        "run's config finds them"
    )


def write_block(y: Any, sink: Sink, block_id: Shape) -> np.ndarray:
    """Store one block; its statistics (see ``STATS``) as a tiny array for Dask."""
    be = devices.get(sink.backend)
    be.prepare()
    with be.on_stream():
        return _write_block(be, y, sink, block_id)


def _write_block(be: devices.Backend, y: Any, sink: Sink, block_id: Shape) -> np.ndarray:
    info = sink.info
    block_index = tuple(block_id)[: len(info.shape)]  # map_blocks adds the stats axis
    slices = grid.unit_slices(block_index, sink.block, info.shape)
    with _timed("stages"):
        nan, pos, neg = be.count_nonfinite(y)
    return written_through(
        sink,
        sink.ledger.check_held if sink.ledger is not None else None,
        lambda folder: _write_block_into(be, y, sink, block_index, slices, (nan, pos, neg), folder),
    )


def _write_block_into(
    be: devices.Backend,
    y: Any,
    sink: Sink,
    block_index: Shape,
    slices: tuple[slice, ...],
    nonfinite: tuple[int, int, int],
    folder: Folder | None,
) -> np.ndarray:
    """:func:`_write_block`'s writes, through the array's ``folder`` (:func:`array_folder`)."""
    info = sink.info
    nan, pos, neg = nonfinite
    written = 0
    xp = be.xp
    if sink.ledger is not None:  # the run's lock still in the output's folder, which its
        # writes go into wherever it is now (an output moved away while it ran: h76d, h77e)
        sink.ledger.check_held(folder)
    ledger = sink.ledger
    # on an object store, each unit created only where none is: a run whose lock another run
    # took after this check is refused its write over a unit that run wrote (h83f)
    existing = (
        None
        if ledger is None
        else (lambda: ledger.check_held(folder, strayed="" if folder else _strayed(block_index)))
    )
    for u in grid.units_in(block_index, sink.block, info.unit, info.shape):
        us = grid.unit_slices(u, info.unit, info.shape)
        part = y[grid.within(us, slices)]
        if part.shape == tuple(info.unit):
            data = part
        else:  # an edge unit: pad to the stored shape (the padding is never read)
            data = xp.zeros(info.unit, dtype=info.dtype)
            data[tuple(slice(0, e) for e in part.shape)] = part
        written += write_unit(be, sink, u, data, folder, existing)
    be.release_host_buffers()  # every frame is written: the staging is free
    if sink.ledger is not None:
        counts = block_counts(y.size, written, nan, pos, neg)
        marker = sink.ledger.marker_key(block_index)
        # and again: its marker marks this run's block alone; its units, written by the path
        # (an object store's keys), may have gone after a lock taken meanwhile: said so
        sink.ledger.check_held(folder, strayed="" if folder else _strayed(block_index))
        with _timed("write"), _storing(sink, marker, "the run record's marker"):
            sink.ledger.mark(block_index, counts, folder)
    t = _take_tally()
    micros = [int(t.get(k, 0.0) * 1e6) for k in ("read", "decode", "stages", "encode", "write")]
    stats = np.array(
        [y.size, int(t.get("bytes_read", 0)), written, nan, pos, neg, *micros], dtype=np.int64
    )
    return stats.reshape((1,) * len(block_index) + (len(STATS),))


def block_counts(
    elements: int, bytes_written: int, nan: int, posinf: int, neginf: int
) -> dict[str, int]:
    """What a block's marker records of it (``Ledger.mark``), in the order its bytes hold
    them: its elements, the bytes its units took, and its NaN, +inf and -inf values."""
    return {
        "elements": int(elements),
        "bytes_written": int(bytes_written),
        "nan": int(nan),
        "posinf": int(posinf),
        "neginf": int(neginf),
    }


def marked_counts(stats: np.ndarray) -> dict[str, int]:
    """:func:`block_counts` of the block whose task returned ``stats`` (:func:`write_block`'s
    statistics, :data:`STATS`): what its marker holds, known to the run without reading it
    (``Ledger.wrote``)."""
    row = np.asarray(stats).reshape(-1, len(STATS))[0]
    at = {k: int(v) for k, v in zip(STATS, row, strict=True)}
    return block_counts(at["elements"], at["bytes_written"], at["nan"], at["posinf"], at["neginf"])


# --------------------------------------------------------------------------------------------
# A whole block.


#: The arrays this process's tasks write now, {:func:`target` of one: how many tasks}, each
#: counted from its task's start to its end (:func:`writing_to`). A run whose client process
#: was killed leaves its running tasks running on a joined cluster's workers (Dask cannot stop
#: a thread; it only drops their results), and they went on to write their blocks and markers
#: into whatever was at the output then: a new run's, which they had overwritten after it
#: marked the output complete. A later run of the same array asks the workers (:func:`writing`)
#: and waits for them before it writes (:func:`wait_for_writers`).
_WRITING: dict[str, int] = {}
_WRITING_LOCK = threading.Lock()


def target(info: ArrayInfo) -> str:
    """The name of the array ``info`` that :data:`_WRITING` counts its writers under: its
    address with the links of a local path resolved (:meth:`Location.real
    <pipeline.store.location.Location.real>`), in the process that asks, a worker on its own
    file system, so that a run naming the output by another path that leads to it (a link to
    the store or to a folder above it) finds the tasks of one that named it otherwise (h76e:
    they had been counted by the path as written, and not waited for)."""
    return named(info.location, info.path)


def named(location: Location, path: str) -> str:
    """:func:`target` of the array at ``path`` in ``location``, which need not exist yet."""
    return location.real().join(path)


@contextlib.contextmanager
def writing_to(name: str) -> Iterator[None]:
    """Count a task of this process as writing the array named ``name`` (:func:`target`)
    while it runs."""
    with _WRITING_LOCK:
        _WRITING[name] = _WRITING.get(name, 0) + 1
    try:
        yield
    finally:
        with _WRITING_LOCK:
            left = _WRITING.pop(name) - 1
            if left:
                _WRITING[name] = left


def writing(location: Location, path: str) -> int:
    """How many tasks of this process write the array at ``path`` in ``location`` now (by
    its :func:`target`, resolved here)."""
    name = named(location, path)
    with _WRITING_LOCK:
        return _WRITING.get(name, 0)


#: How long a run waits for tasks of an earlier run still writing its output
#: (:func:`wait_for_writers`), and how often it asks.
EARLIER_WRITERS_SECONDS = 600.0
EARLIER_WRITERS_STEP = 0.25


def wait_for_writers(
    count: Callable[[], dict[str, int]], name: str, seconds: float = EARLIER_WRITERS_SECONDS
) -> None:
    """Wait until ``count()`` ({worker: how many of its tasks write the array named ``name``
    now}, :func:`writing` on each) is none, before a run writes there: tasks of an earlier run
    whose process was killed (its lock gone with it) still run on a joined cluster's workers,
    and wrote their blocks and markers into this run's output
    after it had written and marked them, the output called complete with the earlier run's
    values in it. Said once in a warning; ClusterError (``reason`` 'earlier-writers',
    ``output``, ``workers``) where they still write after ``seconds``; ``KeyboardInterrupt``
    on Ctrl-C."""
    from pipeline.running import waiting

    deadline = time.monotonic() + seconds
    said = False
    while True:
        busy = {w: n for w, n in count().items() if n}
        if not busy:
            return
        tasks, first = sum(busy.values()), sorted(busy)[0]
        where = f"worker {first}" if len(busy) == 1 else f"{len(busy)} workers ({first}, ...)"
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{tasks} task(s) of an earlier run still write {name} on {name_shown(where)} "
                "after "
                f"{seconds:g} s (its process is gone; a worker finishes a task it began): "
                "restart those workers, then give the command again",
                reason="earlier-writers",
                output=name,
                workers=sorted(busy),
            )
        if not said:
            said = True
            log.warning(
                "%d task(s) of an earlier run, whose process is gone, still write %s on %s: "
                "waiting for them to end before this run writes there",
                tasks,
                name,
                where,
            )
        waiting.wait(threading.Event(), EARLIER_WRITERS_STEP)


def run_block(
    source: Source, sink: Sink, chain: Sequence[stages.BoundStage], backend: str, index: Shape
) -> np.ndarray:
    """Block ``index`` from the input's files to the output's, on one worker thread: read
    (on ``source.backend``'s device), the stages (on ``backend``'s), written (from
    ``sink.backend``'s), the block moved between host and GPU where two of them differ; the
    block's statistics (:func:`write_block`). Counted as writing the output from its start
    (:func:`writing_to`)."""
    with writing_to(target(sink.info)):
        x = _moved(read_block(source, index), source.backend, backend)
        # the block read here is this task's alone (a new array on the CPU), so the CPU's
        # chain writes over it; a GPU's read may hand back a buffer it reuses: not written over
        owned = source.backend == backend == "cpu"
        y = _moved(apply_stages(x, chain, backend, owned), backend, sink.backend)
        return write_block(y, sink, index)


def _moved(x: Any, where: str, to: str) -> Any:
    """``x`` (on ``where``'s device) on ``to``'s."""
    if where == to:
        return x
    return to_device(x) if to == "gpu" else to_host(x)
