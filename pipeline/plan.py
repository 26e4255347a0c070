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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline import layout, spares, stages
from pipeline.backend import Encoding
from pipeline.blocks import Sink, Source
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.hardware import Facts, visible_gpu_ids
from pipeline.layout import Shape
from pipeline.ledger import Ledger
from pipeline.storage import ArrayInfo, Location, check_reader_sees_chunks, describe_array

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
    memory_pool: str
    protocol: str
    gpu_codec_slots: int | None
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
        return layout.grid_shape(self.input.shape, self.block)

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
            "host_share": self.sink.encoding.host_share,
        }

    def fingerprint(self) -> str:
        """A short hash of :meth:`identity`."""
        doc = self.identity
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _input_identity(info: ArrayInfo) -> Any:
    """The input's metadata document, and for local stores the total size and newest mtime of
    its files, so an input rewritten after an interruption is noticed."""
    import os

    doc = (
        info.location.read(f"{info.path}/zarr.json" if info.path else "zarr.json")
        or info.location.read(f"{info.path}/.zarray" if info.path else ".zarray")
        or b""
    )
    ident: list[Any] = [hashlib.sha256(doc).hexdigest()[:16]]
    if info.location.is_local:
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
        cap = layout.ceil_div(shape[a], base[a])  # factors beyond the array gain nothing
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
) -> Memory:
    """Upper bounds of the memory one task needs, from the block's bytes.

    GPU task, device: the compressed input (~1x), the decoded block (1x, +1x when its chunks
    need reordering), the chain's output (1x), encode slots (~1x), nvCOMP's encode scratch, and
    one reordering copy of the output when its chunks are not C-order slabs. Host: page-locked
    staging for the compressed input and output. CPU task, host: compressed input, decoded
    block, output, encoded frames.
    """
    bin_ = math.prod(block) * np.dtype(in_dtype).itemsize
    bout = math.prod(block) * np.dtype(out_dtype).itemsize
    if backend == "gpu":
        dev = bin_ * (2 + (0 if slab_in else 1)) + bout * (2 + (0 if slab_out else 1))
        if encode_on == "gpu":  # slots, the compacted frames, and nvCOMP's scratch
            dev += int(bout * 2.05) + NVCOMP_SCRATCH_FIXED + NVCOMP_SCRATCH_PER_FRAME * frames_out
        host = int(1.05 * bin_) + int(1.05 * bout)
        if decode_on == "cpu":
            host += 2 * bin_
        if encode_on == "cpu":
            host += 3 * bout
    else:
        dev = 0
        host = int(1.05 * bin_) + bin_ + 2 * bout + int(1.05 * bout)
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
    direct = info_in.codec is not None
    align: list[Shape] = []
    if direct:
        align.append(info_in.unit)
    if isinstance(out_chunks, tuple):
        align.append(out_chunks)
    if isinstance(out_shards, tuple):
        align.append(out_shards)
    if not align:
        align.append(info_in.chunk)
    base = _lcm_shape(*align)

    threads = _threads(config, be, scheduler_threads)
    device_budget = host_budget = None
    if be == "gpu" and facts.gpus:
        device_budget = _resolve_budget(
            config.cluster.device_memory_limit, min(g.free_bytes for g in facts.gpus), 0.8
        )
        if config.cluster.scheduler == "local":  # workers sharing one GPU share its budget
            device_budget //= config.cluster.workers_per_gpu
    workers = _workers(config, be, facts, threads, scheduler_workers)
    host_budget = _resolve_budget(
        config.cluster.host_memory_limit, facts.host_total_bytes // max(workers, 1), 0.8
    )

    def decide(block: Shape) -> tuple[Shape, Shape, bool, str, str, Memory]:
        def chunk_for(unit: Shape) -> Shape:
            if isinstance(out_chunks, tuple):
                return out_chunks
            small = info_in.chunk_nbytes // info_in.dtype.itemsize * out_dtype.itemsize
            if layout.is_multiple(unit, info_in.chunk) and small <= (1 << 20):
                return info_in.chunk
            return auto_chunk(unit, out_dtype.itemsize)

        if out_shards == "none":
            chunk_out = out_chunks if isinstance(out_chunks, tuple) else block
            unit_out = chunk_out
        else:
            unit_out = block if out_shards == "auto" else out_shards
            chunk_out = chunk_for(unit_out)
        sharded = tuple(chunk_out) != tuple(unit_out)
        decode_on = be
        if be == "gpu" and (
            not direct or (info_in.codec == "zstd" and info_in.chunk_nbytes > GPU_FRAME_LIMIT)
        ):
            decode_on = "cpu"
        encode_on = be
        chunk_out_bytes = layout.nbytes(chunk_out, out_dtype)
        if be == "gpu" and config.output.codec.name == "zstd" and chunk_out_bytes > GPU_FRAME_LIMIT:
            encode_on = "cpu"
        mem = project_memory(
            be,
            block,
            info_in.dtype,
            out_dtype,
            decode_on,
            encode_on,
            layout.is_slab(info_in.unit, info_in.chunk),
            layout.is_slab(unit_out, chunk_out),
            threads,
            device_budget,
            host_budget,
            frames_out=math.prod(block) // math.prod(chunk_out),
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
    if not layout.is_multiple(unit_out, chunk_out):
        raise PipelineError(
            f"output.shards {list(unit_out)} is not a whole multiple of output.chunks "
            f"{list(chunk_out)}; Zarr shards hold whole chunks"
        )
    if not mem.fits():
        raise PipelineError(_does_not_fit(mem, block, info_in, threads, be))

    if be == "gpu" and decode_on == "cpu":
        notes.append(
            "input frames are decoded on the CPU: "
            + (
                "Zarr codecs other than bytes+zstd"
                if not direct
                else f"its chunks are {info_in.chunk_nbytes >> 20} MiB, too large for nvCOMP; "
                "shard the input with small chunks for GPU decoding"
            )
        )
    if be == "gpu" and encode_on == "cpu":
        notes.append(
            f"output chunks of {layout.nbytes(chunk_out, out_dtype) >> 20} MiB are "
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
        fill_value=0,
    )
    source = Source(info=info_in, block=block, backend=decode_on, direct=direct)
    share, host_threads = _host_encode(config, facts, encode_on, workers)
    sink = Sink(
        info=info_out,
        block=block,
        backend=encode_on,
        encoding=Encoding(
            codec=config.output.codec.name,
            level=config.output.codec.level,
            checksum=config.output.codec.checksum,
            host_share=share,
            host_threads=host_threads,
        ),
        ledger=Ledger(loc_out, info_out.path),
        spares=_spares(config, loc_out, encode_on, threads),
    )
    cluster = ClusterPlan(
        scheduler=config.cluster.scheduler,
        backend=be,
        gpus=visible_gpu_ids(config.cluster.gpus, facts)
        if be == "gpu" and config.cluster.scheduler == "local"
        else (),
        workers=workers,
        threads_per_worker=threads,
        workers_per_gpu=config.cluster.workers_per_gpu if be == "gpu" else 1,
        device_budget=device_budget,
        host_budget=host_budget,
        memory_pool=config.cluster.memory_pool,
        protocol=config.cluster.protocol,
        gpu_codec_slots=config.cluster.gpu_codec_slots,
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
        n_blocks=math.prod(layout.grid_shape(info_in.shape, block)),
        cluster=cluster,
        memory=mem,
        decode_on=decode_on,
        encode_on=encode_on,
        notes=tuple(notes),
        facts=facts,
    )


def _spares(config: Config, loc: Location, encode_on: str, threads: int) -> int:
    """Spare files per worker process (see :mod:`pipeline.spares`)."""
    n = config.output.spare_files
    if n != "auto":
        return int(n) if loc.is_local else 0
    if encode_on == "gpu" and loc.is_local and spares.memory_backed(loc.url):
        return threads
    return 0


def _host_encode(config: Config, facts: Facts, encode_on: str, workers: int) -> tuple[float, int]:
    """(share of frames CPU threads encode beside the GPU, threads per worker for it)."""
    if encode_on != "gpu" or config.output.codec.name != "zstd":
        return 0.0, 0
    per_worker = max(1, facts.cpu_count // max(1, workers))
    return float(config.cluster.host_encode_share), per_worker


def _input_info(config: Config, loc: Location, notes: list[str]) -> ArrayInfo:
    """The input's layout; for an input that ``run`` will generate first (``input.generate``
    with ``when_missing``) and that does not exist yet, the layout it will be given."""
    gen = config.input.generate
    if gen is not None and gen.when_missing:
        path = config.input.array.strip("/")
        keys = [f"{path}/{k}" if path else k for k in ("zarr.json", ".zarray")]
        if not any(loc.exists(k) for k in keys):
            from pipeline.generate import planned_info

            notes.append("the input does not exist yet: `run` generates it first")
            return planned_info(config)
    info = describe_array(loc, config.input.array)
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


def _does_not_fit(mem: Memory, block: Shape, info: ArrayInfo, threads: int, be: str) -> str:
    if mem.device_budget is not None and mem.device_per_worker > mem.device_budget:
        kind, need, budget, per = (
            "device",
            mem.device_per_worker,
            mem.device_budget,
            mem.device_per_task,
        )
    else:
        kind, need, budget, per = (
            "host",
            mem.host_per_worker,
            mem.host_budget or 0,
            mem.host_per_task,
        )
    base = WORKER_BASELINE if kind == "host" else 0
    base_text = f"{_fmt(base)} for the worker process + " if base else ""
    sums = (
        f"{base_text}{threads} task(s) in flight x {_fmt(per)} per block of {list(block)} "
        f"= {_fmt(need)} > {_fmt(budget)}"
    )
    if budget <= base:
        return (
            f"the plan does not fit the {kind} memory budget: {sums}; the budget does not even "
            f"hold a worker process: raise cluster.{kind}_memory_limit above {_fmt(need)}"
        )
    # a block that would fit: scale the first axis down by the overshoot
    ratio = (budget - base) / max(need - base, 1)
    fit = list(block)
    fit[0] = max(1, int(block[0] * ratio))
    hint = (
        f"a block of {fit} would fit (set chunking.block, and output shards that divide it)"
        if block[0] * ratio >= 1
        else "smaller blocks would not fit either"
    )
    return (
        f"the plan does not fit the {kind} memory budget: {sums}; {hint}, "
        f"lower cluster.threads_per_worker, or raise cluster.{kind}_memory_limit"
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
    if plan.sink.spares:
        rows.append(
            (
                "spare files",
                f"{plan.sink.spares} per worker, pre-allocated ahead of the writes "
                "(output.spare_files)",
            )
        )
    threads = c.threads_per_worker
    if plan.backend == "gpu":
        rows.append(
            (
                "device memory",
                f"{_fmt(m.device_per_task)} per task; {threads} in flight (+10%) need "
                f"{_fmt(m.device_per_worker)} of the {_fmt(m.device_budget)} budget per "
                + (
                    f"worker (the GPU's, shared by {c.workers_per_gpu} workers)"
                    if c.workers_per_gpu > 1
                    else "GPU"
                )
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
