"""Plan, then run: everything about a run resolved and checked before a cluster starts.

``make_plan`` turns a :class:`~pipeline.config.Config` and the machine's :class:`Facts` into a
frozen :class:`Plan`: the backend and why, each stage's dtype, the block (Dask chunk) shape, the
output's chunks and shards, where frames are decoded and encoded, the workers and threads, and
the memory every task will need against the budget. A plan that cannot fit is refused here, with
the numbers and a block size that would fit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.blocks import Sink, Source
from pipeline.config import Config
from pipeline.devices.base import Encoding
from pipeline.devices.hardware import Facts, visible_gpu_ids
from pipeline.errors import PipelineError, PlanError
from pipeline.ops import stages
from pipeline.store import grid
from pipeline.store.arrays import (
    ArrayInfo,
    check_finished,
    check_reader_sees_chunks,
    describe_array,
    generation_status,
)
from pipeline.store.grid import Shape
from pipeline.store.ledger import Ledger
from pipeline.store.location import Location

#: nvCOMP decodes frames up to this size quickly; larger frames decode on the CPU.
GPU_FRAME_LIMIT = 4 << 20
#: Target size of an automatic output chunk (one zstd frame).
AUTO_CHUNK_BYTES = 128 << 10
#: nvCOMP's batch-encode scratch per call: a fixed part and a part per frame. Measured on an
#: H100 (nvCOMP 6.0, 128 KiB frames): 1.24 GB asked for one 64 MiB block (512 frames), and
#: about 1.7 GB for 256 MiB blocks (2048 frames).
NVCOMP_SCRATCH_FIXED = 1100 << 20
NVCOMP_SCRATCH_PER_FRAME = 400 << 10
#: Host bytes a worker process needs besides its tasks (interpreter, libraries, Dask).
WORKER_BASELINE = 400 << 20


@dataclass(frozen=True)
class Memory:
    """Projected memory: an upper bound per task, and per worker with its threads in flight."""

    device_per_task: int
    host_per_task: int
    device_per_worker: int
    host_per_worker: int
    device_budget: int | None
    host_budget: int | None

    def fits(self) -> bool:
        dev_ok = self.device_budget is None or self.device_per_worker <= self.device_budget
        host_ok = self.host_budget is None or self.host_per_worker <= self.host_budget
        return dev_ok and host_ok


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


@dataclass(frozen=True)
class Plan:
    """A whole run, resolved."""

    config: Config
    backend: str
    backend_reason: str
    source: Source
    sink: Sink
    chain: tuple[stages.BoundStage, ...]
    block: Shape
    n_blocks: int
    cluster: ClusterPlan
    memory: Memory
    decode_on: str
    encode_on: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    facts: Facts | None = None
    """the machine (or the weakest worker of a joined cluster) the plan was sized for"""

    @property
    def input(self) -> ArrayInfo:
        return self.source.info

    @property
    def output(self) -> ArrayInfo:
        return self.sink.info

    @property
    def block_grid(self) -> Shape:
        return grid.grid_shape(self.input.shape, self.block)

    @functools.cached_property
    def identity(self) -> dict[str, Any]:
        """What must not change between a run and its resume: input (where, and its metadata
        and files), output (where, codec), stages, layout, and where frames are encoded (the
        GPU and CPU encoders write different bytes). Paths are resolved, so the same store
        spelled another way (relative, ``file://``) is the same run. Taken once per plan."""
        c = self.config
        return {
            "input": [self.input.location.join(self.input.path), _input_identity(self.input)],
            "output": [self.output.location.join(self.output.path), c.output.codec.model_dump()],
            "stages": [s.describe() for s in self.chain],
            "block": list(self.block),
            "chunk": list(self.output.chunk),
            "unit": list(self.output.unit),
            "encode_on": self.encode_on,
        }

    def fingerprint(self) -> str:
        """A short hash of :meth:`identity`."""
        doc = self.identity
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


#: What says an object was rewritten, in the listings of fsspec's object stores, best first.
_STAMPS = ("ETag", "etag", "md5Hash", "LastModified", "mtime", "created")


def _input_identity(info: ArrayInfo) -> Any:
    """The input's metadata document, and the total size of its files with, for local stores,
    the newest mtime, for object stores a digest of each object's ETag (or modification time),
    so an input rewritten since a run (interrupted or complete) is noticed."""
    import os

    doc = (
        info.location.read(f"{info.path}/zarr.json" if info.path else "zarr.json")
        or info.location.read(f"{info.path}/.zarray" if info.path else ".zarray")
        or b""
    )
    ident: list[Any] = [hashlib.sha256(doc).hexdigest()[:16]]
    if not info.location.is_local:
        # one listing, no reads: an object rewritten gets a new ETag (S3, GCS) or time
        found = info.location.fs().find(info.location.join(info.path), detail=True)
        digest = hashlib.sha256()
        total = 0
        for name in sorted(found):
            if "/.pipeline/" in name:
                continue
            d = found[name]
            total += int(d.get("size") or 0)
            stamp = next((d[k] for k in _STAMPS if d.get(k) is not None), "")
            digest.update(f"{name}\0{d.get('size')}\0{stamp}\n".encode())
        ident += [total, digest.hexdigest()[:16]]
    else:
        root = info.location.join(info.path)
        total, newest = 0, 0.0
        for dirpath, _, files in os.walk(root):
            if "/.pipeline" in dirpath:
                continue
            for f in files:
                st = os.stat(os.path.join(dirpath, f))
                total += st.st_size
                newest = max(newest, st.st_mtime)
        ident += [total, newest]
    return ident


# --------------------------------------------------------------------------------------------


def _aligned(block: Shape, unit: Shape, shape: Shape) -> bool:
    """Every block boundary is a unit boundary: each axis is a whole multiple of the unit,
    or a single block covers the whole axis."""
    return all(b % u == 0 or b >= s for b, u, s in zip(block, unit, shape, strict=True))


def _lcm_shape(*shapes: Shape) -> Shape:
    return tuple(math.lcm(*axis) for axis in zip(*shapes, strict=True))


def _grow(base: Shape, shape: Shape, itemsize: int, target: int) -> Shape:
    """Grow ``base`` by whole factors, last axes first being already whole, until ``target``
    bytes: the first axis grows first (C-contiguous blocks), then the next."""
    block = list(base)
    for a in range(len(block)):
        cap = grid.ceil_div(shape[a], base[a])  # factors beyond the array gain nothing
        per = math.prod(block) * itemsize
        k = max(1, min(cap, target // max(per, 1)))
        block[a] = base[a] * k
        if k < cap:
            break
    return tuple(block)


def auto_chunk(unit: Shape, itemsize: int, target: int = AUTO_CHUNK_BYTES) -> Shape:
    """A chunk that tiles ``unit`` as C-order slabs of about ``target`` bytes."""
    n = len(unit)
    for k in range(n):
        tail = math.prod(unit[k + 1 :]) * itemsize
        if tail <= target:
            want = max(1, target // tail)
            c = max(d for d in _divisors(unit[k]) if d <= want)
            return (1,) * k + (c,) + tuple(unit[k + 1 :])
    return tuple(unit)  # unreachable: k = n-1 always has tail = itemsize


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _resolve_budget(value: Any, total: int, default_fraction: float) -> int:
    if value == "auto":
        return int(total * default_fraction)
    if isinstance(value, float):
        return int(total * value)
    return int(value)


@dataclass(frozen=True)
class ReadCost:
    """What reading one block holds in host memory besides the block itself."""

    stored: int
    """bytes of stored (compressed) units held at once: one unit when the CPU decodes (units
    are read and decoded one after another), the whole block's when the GPU does (one copy to
    the device); a compressed unit can be a little larger than its data"""
    scratch: int
    """decoding temporaries: a chunk-sized array for an edge chunk or a chain that cannot
    decode into place (filters, transposition, codecs with no size header: about three chunks'
    bytes), or Zarr's own buffers when Zarr reads the block (up to ten chunks decoded at once,
    and the region it assembles)"""


def read_cost(info: ArrayInfo, block: Shape, direct: bool, decode_on: str) -> ReadCost:
    """The host memory a task's read of ``block`` holds (see :class:`ReadCost`)."""
    unit = grid.nbytes(info.unit, info.dtype)
    chunk = info.chunk_nbytes
    bin_ = grid.nbytes(block, info.dtype)
    if not direct:
        chunks = math.prod(grid.grid_shape(block, info.chunk))
        return ReadCost(stored=0, scratch=min(chunks, 10) * 2 * chunk + bin_)
    if decode_on == "gpu":
        return ReadCost(stored=int(1.05 * bin_) + (1 << 16), scratch=0)
    fast = info.format is not None and _decodes_in_place(info.format.chunk)
    return ReadCost(stored=int(1.05 * unit) + (1 << 16), scratch=chunk * (1 if fast else 3))


def _decodes_in_place(fmt: Any) -> bool:
    """Whether the CPU decodes this chain's chunks straight into the block (one compressor that
    declares its decoded size, or none; no filters, no transposition)."""
    ids = [json.loads(c)["id"] for c in fmt.codecs if json.loads(c)["id"] != "crc32c"]
    return not fmt.filters and fmt.transpose is None and ids in ([], ["zstd"], ["blosc"])


def _device_budget(config: Config, facts: Facts, per_gpu: int) -> int:
    """Device bytes one worker may use: ``cluster.device_memory_limit`` (per GPU; auto and
    fractions are of the free memory of the GPU with the least) split between the ``per_gpu``
    workers that share a GPU. Raises PlanError for a limit over the GPU's memory."""
    value = config.cluster.device_memory_limit
    gpu = min(facts.gpus, key=lambda g: g.total_bytes)
    if isinstance(value, int) and value > gpu.total_bytes:
        raise PlanError(
            f"cluster.device_memory_limit {_fmt(value)} is more than GPU {gpu.index} "
            f"({gpu.name}) has, {_fmt(gpu.total_bytes)}: lower it, or give a fraction of the "
            "GPU such as 0.8",
            budget=value,
            gpu_memory=gpu.total_bytes,
        )
    return _resolve_budget(value, min(g.free_bytes for g in facts.gpus), 0.8) // per_gpu


def _host_budget(config: Config, facts: Facts, workers: int, local: bool) -> int:
    """Host bytes one worker may use (``cluster.host_memory_limit``).

    A local cluster's ``workers`` share this host's RAM: auto is 0.8 of a worker's share, a
    fraction is of that share, and a size that all of them together could not have is refused.
    A joined cluster's workers each have their own limit (``facts.worker_memory_limit``, the
    weakest worker's): auto is that limit, a fraction is of it, and a larger size is refused.
    Raises PlanError naming the numbers and the fix.
    """
    value = config.cluster.host_memory_limit
    explicit = value if isinstance(value, int) else None
    limit = facts.worker_memory_limit
    if not local and limit is not None:
        if explicit is not None and explicit > limit:
            raise PlanError(
                f"cluster.host_memory_limit {_fmt(explicit)} per worker is more than the "
                f"{_fmt(limit)} that the cluster's weakest worker may use (its memory limit): "
                f"lower it, or start the workers with `--memory-limit {_fmt(explicit)}`",
                budget=explicit,
                worker_memory_limit=limit,
            )
        return _resolve_budget(value, limit, 1.0)
    ram = facts.host_total_bytes
    share = ram // max(workers, 1)
    if explicit is not None and explicit * workers > ram:
        raise PlanError(
            f"cluster.host_memory_limit {_fmt(explicit)} per worker x {workers} worker(s) = "
            f"{_fmt(explicit * workers)} is more than this host's {_fmt(ram)} of RAM: lower it "
            f"to at most {_fmt(share)} (or auto), or run fewer workers",
            budget=explicit,
            workers=workers,
            host_memory=ram,
        )
    return _resolve_budget(value, share, 0.8)


def project_memory(
    backend: str,
    block: Shape,
    in_dtype: np.dtype,
    out_dtype: np.dtype,
    decode_on: str,
    encode_on: str,
    slab_in: bool,
    slab_out: bool,
    threads: int,
    device_budget: int | None,
    host_budget: int | None,
    frames_out: int = 1,
    read: ReadCost | None = None,
) -> Memory:
    """Upper bounds of the memory one task needs, from the block's bytes.

    ``read`` is what reading the block holds besides the block (:func:`read_cost`; by default
    a block's worth of stored bytes). GPU task, device: the compressed input (~1x), the decoded
    block (1x, +1x when its chunks need reordering), the chain's output (1x), encode slots
    (~1x), nvCOMP's encode scratch, and one reordering copy of the output when its chunks are
    not C-order slabs. Host: the read's stored bytes and scratch, the page-locked decoded block
    when the CPU decodes, and page-locked staging for the encoded output. CPU task, host: the
    read, the decoded block, the chain's output, a reordering copy of it when the output's
    chunks are not slabs, and the encoded frames.
    """
    bin_ = math.prod(block) * np.dtype(in_dtype).itemsize
    bout = math.prod(block) * np.dtype(out_dtype).itemsize
    read = read or ReadCost(stored=int(1.05 * bin_), scratch=0)
    reorder_out = 0 if slab_out else bout
    if backend == "gpu":
        dev = bin_ * (2 + (0 if slab_in else 1)) + bout * (2 + (0 if slab_out else 1))
        if encode_on == "gpu":  # slots, the compacted frames, and nvCOMP's scratch
            dev += int(bout * 2.05) + NVCOMP_SCRATCH_FIXED + NVCOMP_SCRATCH_PER_FRAME * frames_out
        host = read.stored + read.scratch + int(1.05 * bout)
        if decode_on == "cpu":
            host += bin_  # the page-locked block the CPU decodes into
        if encode_on == "cpu":
            host += 2 * bout + reorder_out  # the block back on the host, its frames
    else:
        dev = 0
        host = read.stored + read.scratch + bin_ + bout + reorder_out + int(1.05 * bout)
    return Memory(
        device_per_task=dev,
        host_per_task=host,
        device_per_worker=int(dev * threads * 1.1),
        host_per_worker=host * threads + WORKER_BASELINE,
        device_budget=device_budget,
        host_budget=host_budget,
    )


def make_plan(
    config: Config,
    facts: Facts,
    scheduler_workers: int | None = None,
    scheduler_threads: int | None = None,
) -> Plan:
    """Resolve ``config`` against ``facts``; raise PipelineError when it cannot run.

    ``scheduler_workers``/``scheduler_threads`` describe an existing cluster joined by address.
    """
    notes: list[str] = []
    # -- backend -----------------------------------------------------------------------------
    if config.backend == "gpu" and not facts.gpu_usable:
        raise PipelineError(
            f"backend: gpu, but {facts.gpu_reason}; run on a GPU host or set backend: cpu"
        )
    if config.backend == "cpu":
        be, why = "cpu", "backend: cpu in the config"
    elif facts.gpu_usable:
        be = "gpu"
        why = (
            "backend: gpu in the config" if config.backend == "gpu" else f"auto: {facts.gpu_reason}"
        )
    else:
        be, why = "cpu", f"auto: no GPU ({facts.gpu_reason}), running on the CPU"

    # -- input -------------------------------------------------------------------------------
    check_stores_reachable(config)
    loc_in = Location.of(config.input.store, config.input.storage_options)
    info_in = _input_info(config, loc_in, notes)
    chain = stages.plan_chain(config.stage_specs(), info_in.dtype, config.integer_overflow)
    out_dtype = chain[-1].out_dtype
    ndim = len(info_in.shape)

    def check_len(name: str, shp: Any) -> None:
        if isinstance(shp, tuple) and len(shp) != ndim:
            raise PipelineError(
                f"{name} has {len(shp)} axes but the input has {ndim} ({list(info_in.shape)})"
            )

    check_len("output.chunks", config.output.chunks)
    check_len("output.shards", config.output.shards)
    check_len("chunking.block", config.chunking.block)

    # -- output layout and blocks --------------------------------------------------------------
    out_chunks = config.output.chunks
    out_shards = config.output.shards
    direct = info_in.format is not None
    # blocks hold whole stored units of the input, so each unit is read and decoded by one
    # task only (Zarr's path too: a block cutting a 1 GiB chunk would have every task decode it)
    align: list[Shape] = [info_in.unit]
    if isinstance(out_chunks, tuple):
        align.append(out_chunks)
    if isinstance(out_shards, tuple):
        align.append(out_shards)
    base = _lcm_shape(*align)

    threads = _threads(config, be, scheduler_threads)
    local = config.cluster.scheduler == "local"
    # a local GPU cluster starts workers_per_gpu workers on each GPU; a joined one has what
    # `dask cuda worker` started: one per GPU
    per_gpu = config.cluster.workers_per_gpu if be == "gpu" and local else 1
    device_budget = None
    if be == "gpu" and facts.gpus:
        device_budget = _device_budget(config, facts, per_gpu)
    workers = _workers(config, be, facts, threads, scheduler_workers)
    host_budget = _host_budget(config, facts, workers, local)

    def decide(block: Shape) -> tuple[Shape, Shape, bool, str, str, Memory]:
        def chunk_for(unit: Shape) -> Shape:
            if isinstance(out_chunks, tuple):
                return out_chunks
            small = info_in.chunk_nbytes // info_in.dtype.itemsize * out_dtype.itemsize
            if grid.is_multiple(unit, info_in.chunk) and small <= (1 << 20):
                return info_in.chunk
            return auto_chunk(unit, out_dtype.itemsize)

        if out_shards == "none":
            chunk_out = out_chunks if isinstance(out_chunks, tuple) else block
            unit_out = chunk_out
        else:
            unit_out = block if out_shards == "auto" else out_shards
            chunk_out = chunk_for(unit_out)
        sharded = tuple(chunk_out) != tuple(unit_out)
        decode_on = "cpu"
        if be == "gpu" and _gpu_decodes(info_in):
            decode_on = "gpu"
        encode_on = be
        chunk_out_bytes = grid.nbytes(chunk_out, out_dtype)
        # nvCOMP encodes frames up to GPU_FRAME_LIMIT, and writes no content checksum
        nvcomp_can = chunk_out_bytes <= GPU_FRAME_LIMIT and not config.output.codec.checksum
        if be == "gpu" and config.output.codec.name == "zstd" and not nvcomp_can:
            encode_on = "cpu"
        mem = project_memory(
            be,
            block,
            info_in.dtype,
            out_dtype,
            decode_on,
            encode_on,
            grid.is_slab(info_in.unit, info_in.chunk),
            grid.is_slab(unit_out, chunk_out),
            threads,
            device_budget,
            host_budget,
            frames_out=math.prod(block) // math.prod(chunk_out),
            read=read_cost(info_in, block, direct, decode_on),
        )
        return unit_out, chunk_out, sharded, decode_on, encode_on, mem

    if config.chunking.block == "auto":
        # at most target_bytes, and small enough that every thread gets about two blocks
        per_thread = info_in.nbytes // max(1, 2 * workers * threads)
        target = max(1, min(config.chunking.target_bytes, per_thread))
        while True:
            block = _grow(base, info_in.shape, info_in.dtype.itemsize, target)
            decided = decide(block)
            if decided[-1].fits() or block == base:
                break
            target = max(target // 2, 1)
    else:
        block = config.chunking.block
        if not _aligned(block, base, info_in.shape):
            raise PipelineError(
                f"chunking.block {list(block)} is not a whole multiple of {list(base)} on every "
                "axis (the input's stored units and the output's chunks/shards): unaligned "
                f"parallel writes would corrupt data; use a multiple of {list(base)}"
            )
        decided = decide(block)
    unit_out, chunk_out, sharded, decode_on, encode_on, mem = decided
    for name, shp in (("output.chunks", chunk_out), ("output.shards", unit_out)):
        if not _aligned(block, shp, info_in.shape):
            raise PipelineError(
                f"{name} {list(shp)} does not divide the Dask block {list(block)}: every block "
                "must hold whole chunks and shards, or parallel writes corrupt data; choose "
                "shapes that divide the block"
            )
    if not grid.is_multiple(unit_out, chunk_out):
        raise PipelineError(
            f"output.shards {list(unit_out)} is not a whole multiple of output.chunks "
            f"{list(chunk_out)}; Zarr shards hold whole chunks"
        )
    if not mem.fits():
        smaller = _largest_fitting(block, base, lambda b: decide(b)[-1].fits())
        raise PlanError(
            _does_not_fit(mem, block, base, smaller, threads, per_gpu),
            block=block,
            block_that_fits=smaller,
            device_per_worker=mem.device_per_worker,
            device_budget=mem.device_budget,
            host_per_worker=mem.host_per_worker,
            host_budget=mem.host_budget,
        )

    if be == "gpu" and decode_on == "cpu":
        notes.append(
            "input frames are decoded on the CPU: "
            + (
                f"its codecs ({info_in.codecs_text()}) are decoded on the CPU cores"
                if info_in.codec is None
                else f"its chunks are {info_in.chunk_nbytes >> 20} MiB, too large for nvCOMP; "
                "shard the input with small chunks for GPU decoding"
            )
        )
    if be == "gpu" and encode_on == "cpu":
        notes.append(
            "output frames are encoded on the CPU: output.codec.checksum asks for zstd "
            "checksums, which nvCOMP does not write; set it to false for GPU encoding"
            if config.output.codec.checksum
            else f"output chunks of {grid.nbytes(chunk_out, out_dtype) >> 20} MiB are "
            "encoded on the CPU; use output.shards with small chunks for GPU encoding"
        )

    loc_out = Location.of(config.output.store, config.output.storage_options)
    info_out = ArrayInfo(
        location=loc_out,
        path=config.output.array.strip("/"),
        shape=info_in.shape,
        dtype=out_dtype,
        zarr_format=3,
        chunk=tuple(chunk_out),
        unit=tuple(unit_out),
        sharded=sharded,
        index_at_end=True,
        codec=config.output.codec.name,
        key_prefix="c/",
        key_sep="/",
    )
    source = Source(info=info_in, block=block, backend=be, direct=direct, decode_on=decode_on)
    sink = Sink(
        info=info_out,
        block=block,
        backend=encode_on,
        encoding=Encoding(
            codec=config.output.codec.name,
            level=config.output.codec.level,
            checksum=config.output.codec.checksum,
        ),
        ledger=Ledger(loc_out, info_out.path),
    )
    cluster = ClusterPlan(
        scheduler=config.cluster.scheduler,
        backend=be,
        gpus=visible_gpu_ids(config.cluster.gpus, facts)
        if be == "gpu" and config.cluster.scheduler == "local"
        else (),
        workers=workers,
        threads_per_worker=threads,
        workers_per_gpu=per_gpu,
        device_budget=device_budget,
        host_budget=host_budget,
        protocol=config.cluster.protocol,
        timeout=config.cluster.timeout,
        dashboard=config.cluster.dashboard,
    )
    return Plan(
        config=config,
        backend=be,
        backend_reason=why,
        source=source,
        sink=sink,
        chain=chain,
        block=block,
        n_blocks=math.prod(grid.grid_shape(info_in.shape, block)),
        cluster=cluster,
        memory=mem,
        decode_on=decode_on,
        encode_on=encode_on,
        notes=tuple(notes),
        facts=facts,
    )


def _gpu_decodes(info: ArrayInfo) -> bool:
    """Whether nvCOMP decodes this input's frames: plain zstd (or uncompressed) chunks of at
    most GPU_FRAME_LIMIT bytes (nvCOMP gives one thread block to a frame, so large frames
    decode faster on the CPU cores). Every other chain is decoded on the CPU."""
    return info.codec == "none" or (info.codec == "zstd" and info.chunk_nbytes <= GPU_FRAME_LIMIT)


def _input_info(config: Config, loc: Location, notes: list[str]) -> ArrayInfo:
    """The input's layout; for an input that ``run`` will generate first (``input.generate``
    with ``when_missing``: it does not exist yet, or its generation was interrupted), the
    layout it will be given. An unfinished generated input is refused otherwise (InputError)."""
    from pipeline.generate import planned_info

    gen = config.input.generate
    if gen is not None and gen.when_missing:
        path = config.input.array.strip("/")
        keys = [f"{path}/{k}" if path else k for k in ("zarr.json", ".zarray")]
        if not any(loc.exists(k) for k in keys):
            notes.append("the input does not exist yet: `run` generates it first")
            return planned_info(config)
        if generation_status(loc, path) == "incomplete":
            notes.append(
                "the input is unfinished (an interrupted generate): `run` generates it again"
            )
            return planned_info(config)
    info = describe_array(loc, config.input.array)
    check_finished(loc, config.input.array, config.input.generate is not None)
    check_reader_sees_chunks(info)
    return info


def check_stores_reachable(config: Config) -> None:
    """Refuse a ``memory://`` store that the workers could not see: it lives inside one
    process, so only a local cluster of threads (``cluster.protocol: inproc``) shares it.
    Refuse an output inside an archive (``zip::...``), which is read-only (OutputError)."""
    in_process = config.cluster.scheduler == "local" and config.cluster.protocol == "inproc"
    for key, url in (("input.store", config.input.store), ("output.store", config.output.store)):
        if url.startswith("memory://") and not in_process:
            raise PipelineError(
                f"{key} {url} lives in this process's memory, which the workers' processes "
                "cannot see: set cluster.protocol: inproc (a local cluster of threads), or use "
                "a store every worker can reach (a path, s3://...)"
            )
    Location.of(config.output.store, config.output.storage_options).refuse_archive("output.store")


def _threads(config: Config, be: str, scheduler_threads: int | None) -> int:
    if scheduler_threads:
        return scheduler_threads
    if config.cluster.threads_per_worker:
        return config.cluster.threads_per_worker
    return 4 if be == "gpu" else 1


def _workers(
    config: Config, be: str, facts: Facts, threads: int, scheduler_workers: int | None
) -> int:
    if scheduler_workers:
        return scheduler_workers
    if be == "gpu":
        gpus = len(visible_gpu_ids(config.cluster.gpus, facts)) or 1
        return gpus * config.cluster.workers_per_gpu
    if config.cluster.workers:
        return config.cluster.workers
    return max(1, facts.cpu_count // threads)


def _fmt(n: int | None) -> str:
    from dask.utils import format_bytes

    return "unlimited" if n is None else format_bytes(n)


def _largest_fitting(block: Shape, base: Shape, fits: Callable[[Shape], bool]) -> Shape | None:
    """The largest block below ``block`` on the first axis, there a whole multiple of
    ``base``, whose plan ``fits``; None when none does."""
    lo, hi = 0, grid.ceil_div(block[0], base[0]) - 1  # k * base[0] rows, k in [1, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits((mid * base[0], *block[1:])):
            lo = mid
        else:
            hi = mid - 1
    return (lo * base[0], *block[1:]) if lo else None


def _does_not_fit(
    mem: Memory, block: Shape, base: Shape, smaller: Shape | None, threads: int, per_gpu: int
) -> str:
    """The refusal of a plan whose memory does not fit, in one line: the sum against the
    budget (and where the budget comes from), then what would fit."""
    if mem.device_budget is not None and mem.device_per_worker > mem.device_budget:
        kind, need, budget = "device", mem.device_per_worker, mem.device_budget
        per_task, task, fixed = mem.device_per_task, mem.device_per_task * 1.1, 0
        source = (
            f" per worker (cluster.device_memory_limit, {_fmt(budget * per_gpu)} per GPU, "
            f"split between its cluster.workers_per_gpu: {per_gpu} workers)"
            if per_gpu > 1
            else ""
        )
    else:
        kind, need, budget = "host", mem.host_per_worker, mem.host_budget or 0
        per_task, task, fixed, source = mem.host_per_task, mem.host_per_task, WORKER_BASELINE, ""
    fixed_text = f"{_fmt(fixed)} for the worker process + " if fixed else ""
    overhead = "(+10%) " if kind == "device" else ""
    sums = (
        f"{fixed_text}{threads} task(s) in flight x {_fmt(per_task)} per block of "
        f"{list(block)} {overhead}= {_fmt(need)} > {_fmt(budget)}{source}"
    )
    if budget <= fixed:
        return (
            f"the plan does not fit the {kind} memory budget: {sums}; the budget does not even "
            f"hold a worker process: raise cluster.{kind}_memory_limit above {_fmt(need)}"
        )
    if smaller is not None:
        hint = (
            f"a block of {list(smaller)} would fit (set chunking.block, and output shards "
            "that divide it)"
        )
    elif tuple(block) == tuple(base):
        hint = (
            f"blocks cannot be smaller than {list(base)} (the input's stored units and the "
            "output's chunks and shards)"
        )
    else:
        hint = "smaller blocks would not fit either"
    fit_threads = int((budget - fixed) // max(task, 1))
    levers = (
        f"cluster.threads_per_worker: {fit_threads} would fit"
        if 1 <= fit_threads < threads
        else "lower cluster.threads_per_worker"
    )
    if per_gpu > 1 and kind == "device":
        levers += ", lower cluster.workers_per_gpu"
    return (
        f"the plan does not fit the {kind} memory budget: {sums}; {hint}; {levers}, "
        f"or raise cluster.{kind}_memory_limit"
    )


def describe(plan: Plan) -> list[tuple[str, str]]:
    """The plan as (label, text) rows, for `pipeline plan`, `run --dry-run` and ``-v``."""
    c = plan.cluster
    m = plan.memory
    block_bytes = math.prod(plan.block) * plan.input.dtype.itemsize
    where = "local cluster" if c.scheduler == "local" else f"the cluster at {c.scheduler}"
    rows = [
        ("input", f"{plan.input.location.join(plan.input.path)}: {plan.input.describe()}"),
        ("output", f"{plan.output.location.join(plan.output.path)}: {plan.output.describe()}"),
        ("stages", "; ".join(s.describe() for s in plan.chain)),
        ("backend", f"{plan.backend} ({plan.backend_reason})"),
        (
            "workers",
            f"{where}: {c.workers} worker(s) x {c.threads_per_worker} thread(s)"
            + (f" on GPUs {list(c.gpus)}" if c.gpus else ""),
        ),
        (
            "chunking",
            f"{plan.n_blocks} task(s), one per block of {list(plan.block)} "
            f"({_fmt(block_bytes)} of input each)",
        ),
        ("codec path", f"decode on {plan.decode_on}, encode on {plan.encode_on}"),
    ]
    threads = c.threads_per_worker
    if plan.backend == "gpu":
        per = c.workers_per_gpu
        source = (
            f"worker: cluster.device_memory_limit, {_fmt((m.device_budget or 0) * per)} per "
            f"GPU, split between the GPU's {per} workers (cluster.workers_per_gpu)"
            if per > 1
            else "GPU (cluster.device_memory_limit)"
            if c.scheduler == "local"
            else "worker (cluster.device_memory_limit, of each worker's GPU)"
        )
        rows.append(
            (
                "device memory",
                f"{_fmt(m.device_per_task)} per task; {threads} in flight (+10%) need "
                f"{_fmt(m.device_per_worker)} of the {_fmt(m.device_budget)} budget per "
                + source
                + _fits(m.device_per_worker, m.device_budget),
            )
        )
    rows.append(
        (
            "host memory",
            f"{_fmt(m.host_per_task)} per task; {threads} in flight + {_fmt(WORKER_BASELINE)} "
            f"for the worker need {_fmt(m.host_per_worker)} of the {_fmt(m.host_budget)} "
            "budget per worker" + _fits(m.host_per_worker, m.host_budget),
        )
    )
    rows += [("note", n) for n in plan.notes]
    return rows


def _fits(need: int, budget: int | None) -> str:
    return "" if budget is None else (" (fits)" if need <= budget else " (does not fit)")
