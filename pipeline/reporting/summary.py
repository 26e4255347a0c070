"""What the user sees when a run ends: the run's :class:`Summary`, as a table on the terminal
and the same facts as JSON for scripts (``--summary-json``), and where task time went.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.errors import name_shown
from pipeline.planning.memory import bytes_text
from pipeline.planning.plan import Plan
from pipeline.reporting.info import versions
from pipeline.reporting.progress import gbps, rate_said


@dataclass(repr=False)
class Summary:
    """The run's facts, as printed at the end and saved by ``--summary-json``. Its ``repr()``
    is one line (status, output, blocks, bytes in, time); its ``str()`` and a notebook's
    display the table ``pipeline run`` prints (:meth:`rows`); every fact stays a field."""

    status: str
    """how the run ended: ``'complete'``; a resume of a complete output, which computes nothing,
    ``'complete (nothing to do)'`` or what it wrote again (``'complete (run record written
    again)'``); a run that does not complete raises instead of returning"""
    backend: str
    """``'cpu'`` (NumPy) or ``'gpu'`` (CuPy)"""
    backend_reason: str
    """why that backend, in words (``backend: auto``'s choice, or the config's)"""
    input: str
    """the input array, as the lines say it (its store's path or URL, and the array's path)"""
    output: str
    """what to open the result with: for a Dataset output (the input a variable of an xarray
    Dataset, written with its coordinates), the group that ``xr.open_zarr`` opens; else the
    array, which ``zarr.open_array`` opens"""
    output_array: str
    """the output array's own path (a Dataset output's variable: ``output`` and the variable's
    name); the same as ``output`` for an array written alone"""
    workers: int
    """how many Dask workers ran the blocks (a thread each where ``workers_in_process``)"""
    threads_per_worker: int
    """task threads of each worker"""
    gpus: list[int]
    """the GPUs the workers used, by their index; [] on the CPU"""
    blocks_total: int
    """how many blocks (Dask tasks) the output has"""
    blocks_done: int
    """the blocks this run computed and wrote"""
    blocks_skipped: int
    """the blocks an earlier, interrupted run had written, which a resume kept"""
    bytes_in: int
    """bytes of input this run computed on, decoded (elements times the input dtype's
    itemsize; a packed variable's stored dtype); the blocks skipped are not counted"""
    bytes_out: int
    """bytes of output this run wrote, before encoding (elements times the output dtype's
    itemsize)"""
    stored_bytes_read: int | None
    """None where they are not counted: an input read through zarr-python from a store of
    another machine (its reads give no sizes back, and a size asked of each file would double
    its requests)"""
    stored_bytes_written: int
    """bytes of the output's files this run wrote, encoded (their stored size)"""
    seconds: dict[str, float]
    """wall-clock seconds of each phase that ran (:data:`PHASES`: ``plan``, ``cluster``,
    ``prepare``, ``compute``, ``finish``, ``close``; ``generate`` where the input was made
    first), one after the other, and ``total``, their sum"""
    gbps_in: float
    """throughput: ``bytes_in`` over the ``compute`` phase's seconds, in GB/s (1e9 bytes a
    second); 0.0 where no block was computed"""
    peak_device_bytes: int | None
    """the most GPU memory any GPU worker held during the run, in bytes; None on the CPU"""
    device_budget: int | None
    """the GPU memory each GPU worker may use, in bytes, as planned; None on the CPU"""
    peak_host_bytes: int
    """the highest resident memory (RSS) of any worker's process during the run, in
    bytes; where ``workers_in_process``, the run's own process's, which its workers share"""
    host_budget: int | None
    """the host memory each worker may use, in bytes, as planned (its memory limit); None
    where there is none"""
    nan: int
    """how many elements of the whole output are NaN (the blocks a resume kept included)"""
    posinf: int
    """how many elements of the whole output are +inf"""
    neginf: int
    """how many elements of the whole output are -inf"""
    task_time: dict[str, float]
    """where the tasks' time went, as fractions of their summed task time, not seconds
    (they add up to 1: ``read``, ``decode``, ``stages``, ``encode``, ``write``; ``read+decode``
    for an input read through zarr-python); {} where no block was computed"""
    bound_by: str
    """what most task time was spent on, in words (``'codec-bound: ...'``,
    ``'storage-bound: ...'``); '' where neither was most of it"""
    dashboard: str | None
    """the address of Dask's dashboard of the run's cluster; None where it had none"""
    stages: list[str]
    """the stages as the plan describes them, with their dtypes
    (``'multiply(factor=3) int8 -> int16'``)"""
    dashboard_closed: bool = False
    """whether that dashboard was closed with the run (the local cluster the run started and
    stopped): printed as the run started, as Dask prints it, and left out of the summary's
    table, where the link would be dead by the time it is read (a joined cluster's, still
    serving, is in it)"""
    versions: dict[str, str] = field(default_factory=dict)
    """the versions of the libraries that ran it ({library: version})"""
    hardware: dict[str, Any] = field(default_factory=dict)
    """the machine's facts (``hostname``, ``cpus``, ``host_memory_bytes``, ``gpus``, ...)"""
    config: dict[str, Any] = field(default_factory=dict)
    """the config that ran, as a mapping (credentials masked)"""
    notes: list[str] = field(default_factory=list)
    """the plan's notes, in words"""
    blocks_per_worker: dict[str, int] = field(default_factory=dict)
    """{worker address: blocks it computed in this run}"""
    workers_gone: list[str] = field(default_factory=list)
    """the workers of ``blocks_per_worker`` that were gone at the work's end (killed, and
    started again by their nanny under another address, or left the cluster)"""
    workers_in_process: bool = False
    """the workers were threads of the run's process: the peak host memory is that process's,
    which all of them share"""

    def _per_worker(self) -> str:
        """The blocks each worker computed, in the order of their addresses ('5, 4'), a
        worker gone by the work's end named after its count ('5, 2 (tcp://10.0.0.7:39151,
        gone), 2')."""
        return ", ".join(
            f"{n} ({w}, gone)" if w in self.workers_gone else str(n)
            for w, n in self.blocks_per_worker.items()
        )

    def __repr__(self) -> str:
        """``<Summary complete: out.zarr; 3 of 3 blocks written, 8.20 KiB in, 1.52 s, cpu>``."""
        skipped = f", {self.blocks_skipped} already done" if self.blocks_skipped else ""
        return (
            f"<Summary {self.status}: {name_shown(self.output)}; {self.blocks_done} of "
            f"{self.blocks_total} blocks written{skipped}, {bytes_text(self.bytes_in)} in, "
            f"{self.seconds.get('total', 0):.2f} s, {self.backend}>"
        )

    def __str__(self) -> str:
        """:meth:`rows` as ``pipeline run`` prints them where its output is no terminal."""
        from pipeline.reporting.tables import table_text

        return table_text(self.rows(), "run summary")

    def _repr_html_(self) -> str:
        """A notebook's display: the table of :meth:`__str__`, as it is printed."""
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    def to_json(self) -> str:
        """Every field as JSON text: what ``--summary-json`` (``summary_json=``) saves."""
        return json.dumps(asdict(self), indent=1, default=str)

    def rows(self) -> list[tuple[str, str]]:
        """The table's rows, (label, text) pairs, as ``pipeline run`` prints them."""
        s = self.seconds
        # a run that computed no block (a resume with nothing to do) measured no throughput,
        # task time or memory: its rows say so, rather than 0.00 GB/s and a peak of 0 B
        unmeasured = "— (no block was computed in this run)"
        peak_dev = (
            "—"
            if self.peak_device_bytes is None
            else unmeasured
            if not self.blocks_done
            else (
                f"{bytes_text(self.peak_device_bytes)} per GPU worker (budget "
                f"{bytes_text(self.device_budget) if self.device_budget else 'none'})"
            )
        )
        rows = [
            ("status", self.status),
            ("backend", f"{self.backend} ({self.backend_reason})"),
            (
                "workers",
                f"{self.workers} x {self.threads_per_worker} threads"
                + (f" on GPUs {self.gpus}" if self.gpus else ""),
            ),
            (
                "blocks",
                f"{self.blocks_done} written"
                + (f", {self.blocks_skipped} already done (skipped)" if self.blocks_skipped else "")
                + f", of {self.blocks_total}",
            ),
            *(
                [("blocks per worker", self._per_worker())]
                if len(self.blocks_per_worker) > 1
                else []
            ),
            (
                "bytes",
                f"in {bytes_text(self.bytes_in)} ({stored_text(self.stored_bytes_read)}), "
                f"out {bytes_text(self.bytes_out)} "
                f"({bytes_text(self.stored_bytes_written)} stored)",
            ),
            ("time", f"{s.get('total', 0):.2f} s total: " + phases_text(s)),
            (
                "throughput",
                f"{rate_said(self.gbps_in * 1e9)} of input (compute phase)"
                if self.blocks_done
                else unmeasured,
            ),
            (
                "task time",
                (
                    ", ".join(f"{k} {v:.0%}" for k, v in self.task_time.items())
                    + (f" — {self.bound_by}" if self.bound_by else "")
                )
                or unmeasured,
            ),
            ("peak device memory", peak_dev),
            ("peak host memory", self._host_memory() if self.blocks_done else unmeasured),
            ("non-finite values", f"NaN {self.nan}, +inf {self.posinf}, -inf {self.neginf}"),
            ("output", name_shown(self.output)),
        ]
        if self.output_array != self.output:  # a Dataset: the group, and its variable
            rows.append(("output array", name_shown(self.output_array)))
        if self.dashboard and not self.dashboard_closed:
            rows.append(("dashboard", self.dashboard))
        rows += [("note", n) for n in self.notes]
        return rows

    def _host_memory(self) -> str:
        budget = self.host_budget
        if not self.workers_in_process:
            shown = bytes_text(budget) if budget else "none"
            return f"{bytes_text(self.peak_host_bytes)} per worker (budget {shown})"
        shown = bytes_text(budget * self.workers) if budget else "none"
        return (
            f"{bytes_text(self.peak_host_bytes)} in the run's process, whose "
            f"{self.workers} workers are threads (budget {shown})"
        )


def stored_text(n: int | None) -> str:
    """``12.3 MiB stored``, or that they were not counted (None)."""
    if n is None:
        return "stored bytes not counted: read through zarr-python"
    return f"{bytes_text(n)} stored"


def task_breakdown(us: dict[str, int]) -> tuple[dict[str, float], str]:
    """Fractions of task time per phase, and which resource bounds the run."""
    total = sum(us.values())
    if total <= 0:
        return {}, ""
    frac = {k: v / total for k, v in us.items()}
    io = frac.get("read", 0) + frac.get("write", 0)
    codec = frac.get("decode", 0) + frac.get("encode", 0)
    if io >= 0.6:
        bound = "storage-bound: most task time is reading and writing the stores"
    elif codec >= 0.6:
        bound = "codec-bound: most task time is decoding and encoding chunks"
    else:
        bound = ""
    return frac, bound


#: The phases of a run, in order (``Summary.seconds``), one after the other, with no time
#: between them (the total is their sum): ``start`` the command line's own start (process
#: start to the run's, its imports and the config), set by the command line only; ``generate``
#: the input made first (``input.generate.when_missing``), where it was; ``plan`` the plan,
#: the checks and the output's lock (a command's local GPU cluster begun first, its workers
#: starting meanwhile: ``workers.begun_early``); ``cluster`` the workers started or joined
#: (what is left of their start); ``prepare``
#: the output made ready (a replaced one deleted, the new one created, or a resumed one's
#: record read); ``compute``, up to the last block's result; ``finish`` (Dask's performance
#: report fetched and saved, ``--report``; every block checked, the output marked complete);
#: ``close`` the stop of the workers the run started.
PHASES = ("start", "generate", "plan", "cluster", "prepare", "compute", "finish", "close")


def phases_text(seconds: dict[str, float]) -> str:
    """``plan 0.52, cluster 2.40, ...``: the phases ``seconds`` has, in order (plan, cluster,
    compute and finish always, as 0.00 when absent)."""
    always = ("plan", "cluster", "compute", "finish")
    return ", ".join(f"{k} {seconds.get(k, 0):.2f}" for k in PHASES if k in seconds or k in always)


def summarise(
    plan: Plan,
    totals: dict[str, int],
    peaks: dict[str, dict[str, int]],
    done: int,
    skipped: int,
    t_start: float,
    seconds: dict[str, float],
    dashboard: str | None,
    status: str,
) -> Summary:
    """The summary of a run of ``plan``: ``totals`` are the blocks' summed statistics
    (``elements``, ``bytes_read``, ..., task microseconds per phase as ``us_<phase>``),
    ``peaks`` the workers' peak memory ({worker: {"rss": bytes, "device": bytes}}), ``done``
    and ``skipped`` the blocks this run wrote and found written, ``seconds`` the phases'
    wall-clock times (the total is taken from ``t_start``, a ``time.perf_counter()``)."""
    peak_dev = max((p.get("device", 0) for p in peaks.values()), default=0)
    peak_rss = max((p.get("rss", 0) for p in peaks.values()), default=0)
    us = {k[3:]: v for k, v in totals.items() if k.startswith("us_")}
    through_zarr = not plan.source.direct
    if through_zarr:  # zarr-python reads and decodes in one call: the time is not separable
        us = {"read+decode": us.pop("read", 0) + us.pop("decode", 0), **us}
    frac, bound = task_breakdown(us)
    seconds = dict(seconds)
    seconds["total"] = time.perf_counter() - t_start
    elements = totals.get("elements", 0)
    return Summary(
        status=status,
        backend=plan.backend,
        backend_reason=plan.backend_reason,
        input=plan.input.location.said(plan.input.path),
        output=plan.output.location.said(_opened(plan)),
        output_array=plan.output.location.said(plan.output.path),
        workers=plan.cluster.workers,
        threads_per_worker=plan.cluster.threads_per_worker,
        gpus=list(plan.cluster.gpus),
        blocks_total=plan.n_blocks,
        blocks_done=done,
        blocks_skipped=skipped,
        bytes_in=elements * plan.input.dtype.itemsize,
        bytes_out=elements * plan.output.dtype.itemsize,
        stored_bytes_read=(
            None
            if through_zarr and not plan.input.location.is_local
            else totals.get("bytes_read", 0)
        ),
        stored_bytes_written=totals.get("bytes_written", 0),
        seconds=seconds,
        gbps_in=gbps(elements * plan.input.dtype.itemsize, seconds.get("compute", 0)),
        peak_device_bytes=peak_dev if plan.backend == "gpu" else None,
        device_budget=plan.cluster.device_budget,
        peak_host_bytes=peak_rss,
        host_budget=plan.cluster.host_budget,
        nan=totals.get("nan", 0),
        posinf=totals.get("posinf", 0),
        neginf=totals.get("neginf", 0),
        task_time=frac,
        bound_by=bound,
        dashboard=dashboard,
        dashboard_closed=bool(dashboard) and plan.cluster.own,
        stages=[s.describe() for s in plan.chain],
        versions=versions(),
        hardware=plan.facts.as_dict() if plan.facts else {},
        config=plan.config.public_dict(),
        notes=list(plan.notes),
        workers_in_process=plan.cluster.scheduler == "local" and plan.cluster.protocol == "inproc",
    )


def _opened(plan: Plan) -> str:
    """The path, in the output's store, of what a user opens the output with: a Dataset
    output's group (``xr.open_zarr`` of the variable's own path fails: it is an array, not a
    group), else the array."""
    if plan.carried.frame:
        return plan.output.path.rpartition("/")[0]
    return plan.output.path
