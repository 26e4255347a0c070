"""The memory model: what one task holds, on the device and the host, against the budgets a
worker may use; and the one-line refusal of a plan that does not fit.

Every number is an upper bound from a block's bytes (:func:`project_memory`), so a plan that
fits here fits when it runs; budgets come from the config and the machine's :class:`Facts`
(:func:`device_budget`, :func:`host_budget`), and one the machine cannot give is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config.models import Config
from pipeline.devices.hardware import Facts
from pipeline.errors import PlanError
from pipeline.store import grid
from pipeline.store.arrays import ArrayInfo
from pipeline.store.grid import Shape

#: nvCOMP's batch-encode scratch per call: a fixed part and a part per frame. Measured on an
#: H100 (nvCOMP 6.0, 128 KiB frames): 1.24 GB asked for one 64 MiB block (512 frames), and
#: about 1.7 GB for 256 MiB blocks (2048 frames).
NVCOMP_SCRATCH_FIXED = 1100 << 20
NVCOMP_SCRATCH_PER_FRAME = 400 << 10
#: Host bytes a worker process needs besides its tasks (interpreter, libraries, Dask, and a
#: GPU worker's CUDA context), assumed where the workers are not there to be measured: a
#: local cluster's, planned before it starts.
WORKER_BASELINE = 400 << 20
#: Host bytes a measured worker process (a joined cluster's: :func:`worker_baseline`) may gain
#: while it runs tasks besides their blocks (Dask's own state, the allocator's slack, codecs
#: imported on first use). A CPU worker of 63 MiB held 81 MiB once the tasks' modules were
#: imported, 86 MiB after a run (distributed 2026.7, zarr 3).
WORKER_HEADROOM = 64 << 20
#: What a worker started anew may measure more than the one measured (its libraries' buffers,
#: the allocator's): a `--memory-limit` advised by a refusal holds this more, so that workers
#: started as it says plan (:class:`Room`'s ``measured``).
MEASURED_SLACK = 16 << 20


def worker_baseline(backend: str, measured: int | None) -> int:
    """Host bytes a worker process holds besides its tasks: ``measured`` (a joined cluster's
    heaviest worker process, its tasks' modules imported: ``Facts.worker_process_bytes``)
    and :data:`WORKER_HEADROOM`, where its workers were measured; else (a local cluster, not
    started yet) :data:`WORKER_BASELINE`. A GPU run's is never less than WORKER_BASELINE: a
    worker that has not used its GPU yet holds no CUDA context, which its first task makes.
    A joined worker started with `--memory-limit 250MB` (a CPU worker of 81 MiB) had been
    refused for an assumed 400 MiB, though blocks of hundreds of KiB fit it with room."""
    if measured is None:
        return WORKER_BASELINE
    own = measured + WORKER_HEADROOM
    return max(own, WORKER_BASELINE) if backend == "gpu" else own


@dataclass(frozen=True)
class Memory:
    """Projected memory: an upper bound per task, and per worker with its threads in flight."""

    device_per_task: int
    """GPU bytes one task holds at most (0 on the CPU)"""
    host_per_task: int
    """host bytes one task holds at most"""
    device_per_worker: int
    """GPU bytes a worker holds at most, its tasks in flight together"""
    host_per_worker: int
    """host bytes a worker's process holds at most: its tasks in flight and its
    baseline (interpreter, libraries, Dask)"""
    device_budget: int | None
    """GPU bytes each worker may hold; None on the CPU"""
    host_budget: int | None
    """host bytes each worker may hold (its memory limit); None where there is none"""
    baseline: int = WORKER_BASELINE
    """host bytes of ``host_per_worker`` that the worker process holds besides its tasks
    (:func:`worker_baseline`)"""

    def fits(self) -> bool:
        """Whether a worker's projected memory is within both budgets (a budget of None
        always holds it)."""
        dev_ok = self.device_budget is None or self.device_per_worker <= self.device_budget
        host_ok = self.host_budget is None or self.host_per_worker <= self.host_budget
        return dev_ok and host_ok


@dataclass(frozen=True)
class ReadCost:
    """What reading one block holds in host memory besides the block itself."""

    stored: int
    """bytes of stored (compressed) units held at once: one unit when the CPU decodes (units
    are read and decoded one after another), the whole block's when the GPU does (one copy to
    the device) or when Zarr reads the block from the units its check hands on
    (``info.unit_check``); a compressed unit can be a little larger than its data"""
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
        scratch = min(chunks, 10) * 2 * chunk + bin_
        if info.unit_check is None:
            return ReadCost(stored=0, scratch=scratch)
        # the block's units, checked and handed on to Zarr (tasks._checked_units), held at
        # once, and one more as it is read and checked
        units = math.prod(grid.grid_shape(block, info.unit)) + 1
        return ReadCost(stored=int(1.05 * units * unit) + (1 << 16), scratch=scratch)
    if decode_on == "gpu":
        return ReadCost(stored=int(1.05 * bin_) + (1 << 16), scratch=0)
    fast = info.format is not None and info.format.chunk.in_place
    return ReadCost(stored=int(1.05 * unit) + (1 << 16), scratch=chunk * (1 if fast else 3))


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
    unpacked: np.dtype | None = None,
    decode_threads: int = 1,
    baseline: int = WORKER_BASELINE,
) -> Memory:
    """Upper bounds of the memory one task needs, from the block's bytes.

    ``unpacked``: the dtype packed values are decoded to before the stages (CF unpacking),
    on the device the stages run on: the decoded block and a mask of its missing elements
    (one byte each) are held besides the stored block.

    ``read`` is what reading the block holds besides the block (:func:`read_cost`; by default
    a block's worth of stored bytes). ``decode_threads`` over 1: a worker's pool of that many
    threads reads and decodes the units of its tasks' blocks, so the read's bytes are held once
    per pool thread rather than once per task.

    GPU task, device: the compressed input (~1x), the decoded block (1x, +1x when its chunks
    need reordering), the chain's output (1x), encode slots (~1x), nvCOMP's encode scratch,
    and one reordering copy of the output when its chunks are not C-order slabs. Host: the
    read's stored bytes and scratch, the page-locked decoded block when the CPU decodes, and
    page-locked staging for the encoded output. CPU task, host: the
    read, the decoded block, the chain's output, a reordering copy of it when the output's
    chunks are not slabs, and the encoded frames.
    """
    bin_ = math.prod(block) * np.dtype(in_dtype).itemsize
    bout = math.prod(block) * np.dtype(out_dtype).itemsize
    read = read or ReadCost(stored=int(1.05 * bin_), scratch=0)
    reorder_out = 0 if slab_out else bout
    unpack = math.prod(block) * (np.dtype(unpacked).itemsize + 1) if unpacked else 0
    if backend == "gpu":
        dev = bin_ * (2 + (0 if slab_in else 1)) + bout * (2 + (0 if slab_out else 1)) + unpack
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
        host += unpack
    pool = max(0, decode_threads - threads) if decode_threads > 1 else 0
    pooled = (read.stored + read.scratch) * pool
    return Memory(
        device_per_task=dev,
        host_per_task=host,
        device_per_worker=int(dev * threads * 1.1),
        host_per_worker=host * threads + pooled + baseline,
        device_budget=device_budget,
        host_budget=host_budget,
        baseline=baseline,
    )


# --------------------------------------------------------------------------------------------
# Budgets.


def _resolve_budget(value: Any, total: int, default_fraction: float) -> int:
    """The budget ``value`` gives of ``total`` bytes; a size as it is (a
    :class:`~pipeline.config.models.Size` keeps the text the config wrote, which the lines
    comparing it say)."""
    if value == "auto":
        return int(total * default_fraction)
    if isinstance(value, float):
        return int(total * value)
    return value if isinstance(value, int) else int(value)


def device_budget(config: Config, facts: Facts, per_gpu: int) -> int:
    """Device bytes one worker may use: ``cluster.device_memory_limit`` (per GPU; auto and
    fractions are of the free memory of the GPU with the least) split between the ``per_gpu``
    workers that share a GPU. Raises PlanError (``key`` 'cluster.device_memory_limit') for a
    limit over the GPU's memory."""
    value = config.cluster.device_memory_limit
    gpu = min(facts.gpus, key=lambda g: g.total_bytes)
    if isinstance(value, int) and value > gpu.total_bytes:
        raise PlanError(
            f"cluster.device_memory_limit {size_said(value, value)} is more than GPU "
            f"{gpu.index} ({gpu.name}) has, {size_said(gpu.total_bytes, value)}: lower it, or "
            "give a fraction "
            "of the GPU such as 0.8",
            key="cluster.device_memory_limit",
            budget=value,
            gpu_memory=gpu.total_bytes,
        )
    budget = _resolve_budget(value, min(g.free_bytes for g in facts.gpus), 0.8)
    return budget if per_gpu == 1 else budget // per_gpu  # a size the config wrote, as written


def host_budget(config: Config, facts: Facts, workers: int, local: bool) -> int:
    """Host bytes one worker may use (``cluster.host_memory_limit``).

    A local cluster's ``workers`` share this host's RAM: auto is 0.8 of a worker's share, a
    fraction is of that share, and a size that all of them together could not have is refused.
    A joined cluster's workers each have their own limit (``facts.worker_memory_limit``, the
    weakest worker's): auto is that limit, a fraction is of it, and a larger size is refused.
    Raises PlanError (``key`` 'cluster.host_memory_limit') naming the numbers and the fix.
    """
    value = config.cluster.host_memory_limit
    explicit = value if isinstance(value, int) else None
    limit = facts.worker_memory_limit
    if not local and limit is not None:
        if explicit is not None and explicit > limit:
            raise PlanError(
                f"cluster.host_memory_limit {size_said(explicit, value)} per worker is more "
                f"than the {size_said(limit, value)} that the cluster's weakest worker may use "
                f"(its memory limit): lower it, or start the workers with `--memory-limit "
                f"{size_said(explicit, value).replace(' ', '')}`",
                key="cluster.host_memory_limit",
                budget=explicit,
                worker_memory_limit=limit,
            )
        return _resolve_budget(value, limit, 1.0)
    ram = facts.host_total_bytes
    share = ram // max(workers, 1)
    if explicit is not None and explicit * workers > ram:
        raise PlanError(
            f"cluster.host_memory_limit {size_said(explicit, value)} per worker x {workers} "
            f"worker(s) = {size_said(explicit * workers, value)} is more than this host's "
            f"{size_said(ram, value)} of RAM: lower it to at most "
            f"{size_said(at_most(share, decimal(value)), value)} (or auto), or run fewer workers",
            key="cluster.host_memory_limit",
            budget=explicit,
            workers=workers,
            host_memory=ram,
        )
    return _resolve_budget(value, share, 0.8)


#: The units a size is shown in, largest first: powers of 1024 as IEC 80000-13 writes them
#: (``KiB``; Dask's ``format_bytes`` picks the unit so but writes ``kiB``, which the run's
#: summary had shown), or those of powers of 1000 (``kB``, ``MB``, ``GB``), for a line whose
#: budget the config wrote so (:func:`decimal`); Dask's ``parse_bytes`` reads both back.
_UNITS = {
    False: (
        (1 << 50, "PiB"),
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ),
    True: ((10**15, "PB"), (10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB")),
}


def decimal(value: Any) -> bool:
    """Whether the config wrote the size ``value`` in units of powers of 1000 (``8GB``:
    :class:`~pipeline.config.models.Size`): the lines that compare it say every size so."""
    return bool(getattr(value, "decimal", False))


def at_least(n: int, decimal: bool = False) -> int:
    """``n`` rounded up to what :func:`bytes_text` shows (two decimals of the unit it picks),
    so that a size written as it is shown (Dask's ``parse_bytes``, through a float) is never
    less than ``n``."""
    for unit, _ in _UNITS[decimal]:
        if n >= unit * 0.9:
            shown = math.ceil(n * 100 / unit)
            while int(float(f"{shown / 100:.2f}") * unit) < n:
                shown += 1
            return int(float(f"{shown / 100:.2f}") * unit)
    return n


def at_most(n: int, decimal: bool = False) -> int:
    """``n`` rounded down to what :func:`bytes_text` shows, so that a size written as it is
    shown is never more than ``n`` (a limit named as the most a setting may be)."""
    for unit, _ in _UNITS[decimal]:
        if n >= unit * 0.9:
            shown = math.floor(n * 100 / unit)
            while shown > 0 and int(float(f"{shown / 100:.2f}") * unit) > n:
                shown -= 1
            return int(float(f"{shown / 100:.2f}") * unit)
    return n


def size_flag(n: int, decimal: bool = False) -> str:
    """At least ``n`` bytes as a command line's size takes it ('400.10MiB', one word)."""
    return bytes_text(at_least(n, decimal), decimal).replace(" ", "")


def bytes_text(n: int | None, decimal: bool = False) -> str:
    """A byte count as people read it ('1.24 GiB', '8.20 KiB', '100 B'; '1.33 GB' where
    ``decimal``): two decimals of the largest unit of which it is at least 0.9, as Dask's
    ``format_bytes`` picks it; 'unlimited' for no budget."""
    if n is None:
        return "unlimited"
    for unit, prefix in _UNITS[decimal]:
        if n >= unit * 0.9:
            return f"{n / unit:.2f} {prefix}"
    return f"{n} B"


def size_said(n: int | None, like: Any) -> str:
    """``n`` bytes in a line that compares them with the config's size ``like``: as the
    config wrote it where ``n`` is that size (``8GB``, not 7.45 GiB), else in its unit
    family (:func:`decimal`)."""
    written = getattr(like, "written", None)
    if written is not None and n is not None and n == like:
        return str(written)
    return bytes_text(n, decimal(like))


# --------------------------------------------------------------------------------------------
# The refusal.


@dataclass(frozen=True)
class Room:
    """What a refusal may tell a user to change, and how far each budget can go.

    ``joined``: the workers were started outside this run (joined by address, or a caller's
    client): their threads are theirs (the config's ``cluster.threads_per_worker`` is not
    used), and on a cluster joined by address their memory limit (``worker_memory_limit``, the
    weakest worker's) caps ``cluster.host_memory_limit``. Else this run starts ``workers``
    workers that share ``host_memory`` bytes of RAM. ``gpu_memory``: the smallest GPU's bytes,
    the most ``cluster.device_memory_limit`` may be (None on the CPU).
    """

    joined: bool = False
    workers: int = 1
    host_memory: int = 0
    worker_memory_limit: int | None = None
    gpu_memory: int | None = None
    backend: str = "cpu"
    host_fraction: float | None = None
    """``cluster.host_memory_limit`` when it is a fraction (of a joined worker's memory limit,
    or of a local worker's share of RAM): a worker limit advised on a joined cluster must
    hold the budget after it"""
    decimal: tuple[str, ...] = ()
    """the kinds of memory ('host', 'device') whose budget the config wrote in units of
    powers of 1000 (``8GB``: :func:`decimal`): a refusal of that kind says its sizes so"""
    measured: bool = False
    """the worker process's bytes were measured on the workers (:func:`worker_baseline`): a
    worker limit advised holds :data:`MEASURED_SLACK` more, as workers started anew measure
    a little more or less"""


#: A fix a refusal names: its words, and the config's key of the one setting it changes
#: (None where it changes none, or several: a worker's flag, workers and their budget).
Fix = tuple[str, str | None]


def _raise_budget(kind: str, need: int, per_gpu: int, room: Room) -> Fix:
    """How to give a worker ``need`` bytes of ``kind`` memory, as advice that works when it is
    followed ('' when no setting can: a block or fewer threads must do), with the key of the
    budget where raising that alone does it."""
    dec = kind in room.decimal  # in the units the config wrote the budget in
    if kind == "device":
        size = at_least(need * per_gpu, dec)
        if room.gpu_memory is None or size <= room.gpu_memory:
            per = " per GPU" if per_gpu > 1 else ""
            return (
                f"raise cluster.device_memory_limit to at least {bytes_text(size, dec)}{per}",
                "cluster.device_memory_limit",
            )
        return "", None
    size = at_least(need, dec)
    limit = room.worker_memory_limit
    if room.joined and limit is not None:
        if size > limit and room.measured:  # for workers started anew, measured anew
            size = at_least(need + MEASURED_SLACK, dec)
        if size <= limit:
            return (
                f"raise cluster.host_memory_limit to at least {bytes_text(size, dec)} (auto: "
                f"all of the workers' {bytes_text(limit, dec)} memory limit)",
                "cluster.host_memory_limit",
            )
        fraction = room.host_fraction
        if fraction is not None and fraction < 1:
            # the budget is int(limit * fraction): the limit whose fraction holds ``size``
            whole = math.ceil(size / fraction)
            while int(whole * fraction) < size:
                whole += 1
            return (
                f"start the workers with `--memory-limit {size_flag(whole, dec)}` or more "
                f"(cluster.host_memory_limit: {fraction} of it is the budget), or with "
                f"`--memory-limit {size_flag(size, dec)}` and cluster.host_memory_limit: auto (the "
                f"weakest worker's memory limit, {bytes_text(limit, dec)}, is the most "
                "cluster.host_memory_limit may be on a joined cluster)",
                None,
            )
        return (
            f"start the workers with `--memory-limit {size_flag(size, dec)}` or more (the "
            f"weakest worker's memory limit, {bytes_text(limit, dec)}, is the most "
            "cluster.host_memory_limit may be on a joined cluster)",
            None,
        )
    if size * room.workers <= room.host_memory or not room.host_memory:
        return (
            f"raise cluster.host_memory_limit to at least {bytes_text(size, dec)}",
            "cluster.host_memory_limit",
        )
    fewer = room.host_memory // size
    if fewer < 1:
        return "", None
    lever = (
        "cluster.gpus or cluster.workers_per_gpu" if room.backend == "gpu" else "cluster.workers"
    )
    return (
        f"run at most {fewer} worker(s) ({lever}) with cluster.host_memory_limit of at least "
        f"{bytes_text(size, dec)} (this host's {bytes_text(room.host_memory, dec)} of RAM is "
        "shared by its workers)",
        None,
    )


def does_not_fit(
    mem: Memory,
    block: Shape,
    base: Shape,
    smaller: Shape | None,
    threads: int,
    per_gpu: int,
    room: Room | None = None,
) -> Fix:
    """The refusal of a plan whose memory does not fit, in one line: the sum against the
    budget (and where the budget comes from), then what would fit, as the settings of the
    cluster the plan is for can give it (``room``: a joined cluster's workers are started with
    their threads and memory limits, a local cluster's take the config's); with the config's
    key of the setting its first fix changes (``chunking.block`` where a smaller block fits,
    ``cluster.threads_per_worker``, ``cluster.workers_per_gpu``, the budget's
    ``cluster.host_memory_limit`` or ``cluster.device_memory_limit``), the refusal's
    ``key`` (so a config file's line is said: :func:`pipeline.config.loading.locate`); None
    where that fix is no one setting of the config (a worker's flag, another host)."""
    room = room or Room()
    if mem.device_budget is not None and mem.device_per_worker > mem.device_budget:
        kind, need, budget = "device", mem.device_per_worker, mem.device_budget
        per_task, task, fixed = mem.device_per_task, mem.device_per_task * 1.1, 0
        whose = (
            f"the {per_gpu} workers that share it" if room.joined else "its cluster.workers_per_gpu"
        )
        source = (
            f" per worker (cluster.device_memory_limit, "
            f"{bytes_text(budget * per_gpu, 'device' in room.decimal)} per GPU, split between "
            f"{whose}: {per_gpu} workers)"
            if per_gpu > 1
            else ""
        )
    else:
        kind, need, budget = "host", mem.host_per_worker, mem.host_budget or 0
        per_task, task, fixed, source = mem.host_per_task, mem.host_per_task, mem.baseline, ""
    dec = kind in room.decimal  # in the units the config wrote the budget in
    # the budget the config wrote as it wrote it (100MB), one it made in its units
    budget_said = (
        size_said(budget, budget) if hasattr(budget, "written") else bytes_text(budget, dec)
    )
    fixed_text = f"{bytes_text(fixed, dec)} for the worker process + " if fixed else ""
    overhead = "(+10%) " if kind == "device" else ""
    sums = (
        f"{fixed_text}{threads} task(s) in flight x {bytes_text(per_task, dec)} per block of "
        f"{list(block)} {overhead}= {bytes_text(need, dec)} > {budget_said}{source}"
    )
    budget_key = f"cluster.{kind}_memory_limit"
    if budget <= fixed:  # the budget is what is refused, whatever the fix
        fix = _raise_budget(kind, need, per_gpu, room)[0] or (
            f"run on a host with more than {bytes_text(need, dec)} of RAM per worker"
        )
        return (
            f"the plan does not fit the {kind} memory budget: {sums}; the budget does not even "
            f"hold a worker process: {fix}",
            budget_key,
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
    levers: list[Fix] = []
    # fewer threads only when one thread fits: else no thread count can help
    if fit_threads >= 1:
        if room.joined:
            levers.append(
                (
                    f"start the workers with `--nthreads {fit_threads}`"
                    if fit_threads < threads
                    else "start the workers with fewer threads (`--nthreads`)",
                    None,
                )
            )
        else:
            levers.append(
                (
                    f"cluster.threads_per_worker: {fit_threads} would fit"
                    if fit_threads < threads
                    else "lower cluster.threads_per_worker",
                    "cluster.threads_per_worker",
                )
            )
    if per_gpu > 1 and kind == "device":  # a joined cluster's are its own: no key sets them
        levers.append(
            ("start fewer workers on each GPU", None)
            if room.joined
            else ("lower cluster.workers_per_gpu", "cluster.workers_per_gpu")
        )
    fix, key = _raise_budget(kind, need, per_gpu, room)
    if fix:
        levers.append((("or " if levers else "") + fix, key))
    if not levers:
        levers.append(
            (
                f"run on a host with more than {bytes_text(need, dec)} of RAM per worker"
                if kind == "host"
                else f"run on a GPU with more than {bytes_text(need * per_gpu, dec)} of memory",
                None,
            )
        )
    said = ", ".join(words for words, _ in levers)
    first = "chunking.block" if smaller is not None else levers[0][1]
    return f"the plan does not fit the {kind} memory budget: {sums}; {hint}; {said}", first
