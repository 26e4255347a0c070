"""A run from start to finish: plan, check, start the cluster, compute, finish, summarise.

The order matters for the guarantees: everything that can be checked is checked before the
cluster starts or any byte is written; the output is marked incomplete from its creation until
every block is recorded as written; the cluster is closed on every exit path; and an
interrupted run leaves a record that ``--resume`` continues from.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import __version__, cluster, graph, layout, storage
from pipeline.blocks import STATS
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.hardware import Facts, facts_from_workers, worker_facts
from pipeline.plan import ClusterPlan, Plan, make_plan
from pipeline.report import Progress, Summary, gbps, task_breakdown

log = logging.getLogger("pipeline")


class Interrupted(Exception):
    """The user pressed Ctrl-C (or the process got SIGTERM); the output is resumable."""


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices that are not part of the config."""

    overwrite: bool = False
    resume: bool = False
    report: str | None = None
    """save Dask's performance report (HTML) here"""
    summary_json: str | None = None
    progress: str = "auto"
    """auto, bar, plain or none"""
    interval: float = 5.0
    """seconds between plain progress lines"""


# --------------------------------------------------------------------------------------------
# Checks that run before anything is written.


def _real(loc: storage.Location, path: str) -> str:
    full = loc.join(path)
    return os.path.realpath(full) if loc.is_local else full.rstrip("/")


def check_not_overlapping(plan: Plan) -> None:
    """Refuse an output equal to, inside, or containing the input."""
    a = _real(plan.input.location, plan.input.path)
    b = _real(plan.output.location, plan.output.path)
    if plan.input.location.is_local != plan.output.location.is_local:
        return
    sep = "/"
    if a == b or b.startswith(a + sep) or a.startswith(b + sep):
        rel = "is" if a == b else ("is inside" if b.startswith(a + sep) else "contains")
        raise PipelineError(
            f"the output {b} {rel} the input {a}; the input is never modified: choose an "
            "output.store elsewhere"
        )


def check_writable(loc: storage.Location) -> None:
    """Refuse an output location that cannot be written (before anything is written)."""
    if loc.is_local:
        probe = loc.url
        while not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
            raise PipelineError(
                f"cannot write the output at {loc.url}: {probe} is not a writable directory; "
                "choose another output.store or fix its permissions"
            )
        return
    loc.writable_probe()


def output_state(plan: Plan) -> str:
    """'absent', 'complete', 'incomplete' (ours, interrupted) or 'foreign' (something else)."""
    info = plan.output
    meta_key = f"{info.path}/zarr.json" if info.path else "zarr.json"
    if not info.location.exists(meta_key):
        if info.location.exists(info.path) and info.location.list(info.path):
            return "foreign"
        return "absent"
    try:
        attrs = storage.read_attributes(info.location, info.path)
    except Exception:
        return "foreign"
    status = attrs.get("pipeline", {}).get("status")
    return {"complete": "complete", "incomplete": "incomplete"}.get(status, "foreign")


def decide_start(plan: Plan, options: RunOptions) -> str:
    """'fresh' (create the output), 'resume' or 'done'; or a PipelineError saying why not."""
    state = output_state(plan)
    where = plan.output.location.join(plan.output.path)
    if state == "absent":
        return "fresh"
    if options.overwrite:
        return "fresh"
    if options.resume:
        if state == "complete":
            return "done"
        if state == "foreign":
            raise PipelineError(
                f"{where} exists but was not written by this pipeline; nothing to resume "
                "(use --overwrite to replace it)"
            )
        manifest = plan.sink.ledger.read_manifest() if plan.sink.ledger else None
        if manifest is None:
            raise PipelineError(f"{where} has no run record to resume from; use --overwrite")
        if manifest.get("fingerprint") != plan.fingerprint():
            raise PipelineError(
                f"the config or the input changed since the interrupted run that wrote {where} "
                "(its record does not match); resume with the same config and input, or use "
                "--overwrite to start over"
            )
        return "resume"
    if state == "incomplete":
        raise PipelineError(
            f"{where} is incomplete (an interrupted run): `run --resume` finishes it, "
            "`run --overwrite` starts over"
        )
    if state == "complete":
        raise PipelineError(f"{where} already exists; pass --overwrite to replace it")
    raise PipelineError(
        f"{where} already exists (not written by this pipeline); pass --overwrite to replace it"
    )


# --------------------------------------------------------------------------------------------


def plan_run(config: Config) -> Plan:
    """The plan of a run on a local cluster (no cluster is started)."""
    return make_plan(config, Facts.local(want_gpu=config.backend != "cpu"))


@contextlib.contextmanager
def _cluster_and_plan(config: Config) -> Iterator[tuple[Any, Plan, float]]:
    """Plan, then start (or join) the cluster; yields (client, plan, seconds to start it)."""
    if config.cluster.scheduler == "local":
        plan = plan_run(config)
        check_not_overlapping(plan)
        check_writable(plan.output.location)
        t0 = time.perf_counter()
        with cluster.connect(plan.cluster) as client:
            yield client, plan, time.perf_counter() - t0
        return
    t0 = time.perf_counter()
    client = cluster.join(config.cluster.scheduler, config.cluster.timeout)
    try:
        infos = list(client.run(worker_facts).values())
        facts = facts_from_workers(infos)
        workers = client.scheduler_info()["workers"]
        threads = min(w["nthreads"] for w in workers.values())
        plan = make_plan(config, facts, scheduler_workers=len(workers), scheduler_threads=threads)
        check_not_overlapping(plan)
        check_writable(plan.output.location)
        client.register_plugin(cluster.PipelineSetup(plan.backend, plan.cluster.device_budget))
        yield client, plan, time.perf_counter() - t0
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=10)


def _attrs(plan: Plan, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = {
        "status": status,
        "version": __version__,
        "source": {
            "store": plan.config.input.store,
            "array": plan.config.input.array,
            "shape": list(plan.input.shape),
            "dtype": str(plan.input.dtype),
        },
        "stages": [s.describe() for s in plan.chain],
        "integer_overflow": plan.config.integer_overflow,
        "backend": plan.backend,
        "encoded_on": plan.encode_on,
        "fingerprint": plan.fingerprint(),
    }
    doc.update(extra or {})
    return {"pipeline": doc}


def run(config: Config, options: RunOptions | None = None) -> Summary:
    """Run the pipeline the config describes; the run's :class:`Summary`."""
    options = options or RunOptions()
    t_start = time.perf_counter()
    gen = config.input.generate
    if gen is not None and gen.when_missing:
        loc = storage.Location.of(config.input.store, config.input.storage_options)
        key = f"{config.input.array.strip('/')}/zarr.json" if config.input.array else "zarr.json"
        if not (loc.exists(key) or loc.exists(key.replace("zarr.json", ".zarray"))):
            log.info("input %s is missing: generating it (input.generate)", loc.url)
            generate_input(config)
    with _cluster_and_plan(config) as (client, plan, t_cluster):
        t_plan = time.perf_counter() - t_start - t_cluster
        start = decide_start(plan, options)
        dashboard = _dashboard(client, plan)
        if dashboard:
            log.warning("dashboard: %s", dashboard)
        for note in plan.notes:
            log.warning("note: %s", note)
        if start == "done":
            log.warning(
                "%s is already complete; nothing to do", plan.output.location.join(plan.output.path)
            )
            return _summary(
                plan,
                client,
                {},
                0,
                plan.n_blocks,
                t_start,
                {"plan": t_plan},
                dashboard,
                "complete (nothing to do)",
            )
        ledger = plan.sink.ledger
        assert ledger is not None
        ledger.acquire()  # before anything is written: a second run stops here
        released = False
        try:
            if start == "fresh":
                _create_output(plan)
            done = ledger.done() if start == "resume" else set()
            all_blocks = list(layout.iter_indices(plan.block_grid))
            pending = [b for b in all_blocks if b not in done]
            if start == "resume":
                log.warning(
                    "resuming: %d of %d blocks already written, %d to go",
                    len(all_blocks) - len(pending),
                    len(all_blocks),
                    len(pending),
                )
            cluster.reset_peaks(client)
            t0 = time.perf_counter()
            totals = _compute(client, plan, pending, options)
            t_compute = time.perf_counter() - t0
            t0 = time.perf_counter()
            recorded = ledger.done()
            missing = [b for b in all_blocks if b not in recorded]
            if missing:
                raise PipelineError(
                    f"{len(missing)} block(s) have no record of being written (first: "
                    f"{missing[0]}); the output stays incomplete: `run --resume` retries them"
                )
            summary = _summary(
                plan,
                client,
                totals,
                len(pending),
                len(all_blocks) - len(pending),
                t_start,
                {"plan": t_plan, "cluster": t_cluster, "compute": t_compute},
                dashboard,
                "complete",
            )
            storage.update_attributes(
                plan.output.location,
                plan.output.path,
                _attrs(plan, "complete", {"finished": _now(), "summary": _attr_summary(summary)}),
            )
            ledger.clear()
            released = True
            summary.seconds["finish"] = time.perf_counter() - t0
            summary.seconds["total"] = time.perf_counter() - t_start
            return summary
        finally:
            if not released:
                with contextlib.suppress(Exception):
                    ledger.release()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _create_output(plan: Plan) -> None:
    """Create the output, replacing what was there except the run record (which holds the
    lock this run has taken)."""
    o = plan.output
    storage.clear_array(o.location, o.path, keep=".pipeline")
    o.location.delete(f"{o.path}/.pipeline/done" if o.path else ".pipeline/done", recursive=True)
    storage.create_output(
        o.location,
        o.path,
        o.shape,
        o.dtype,
        o.chunk,
        o.unit if o.sharded else None,
        o.codec or "none",
        plan.sink.level,
        plan.sink.checksum,
        _attrs(plan, "incomplete", {"started": _now()}),
        overwrite=False,
    )


def _dashboard(client: Any, plan: Plan) -> str | None:
    if plan.cluster.scheduler == "local" and not plan.cluster.dashboard:
        return None
    try:
        return client.dashboard_link
    except Exception:
        return None


def _compute(client: Any, plan: Plan, pending: list, options: RunOptions) -> dict[str, int]:
    """Submit the pending blocks, follow them, and sum their statistics."""
    from distributed import as_completed, performance_report

    totals = dict.fromkeys(STATS, 0)
    if not pending:
        return totals
    stats = graph.build(plan.source, plan.sink, plan.chain, plan.backend)
    dsk, keys = graph.block_keys(stats, pending)
    report = (
        performance_report(filename=options.report) if options.report else contextlib.nullcontext()
    )
    block_bytes = float(np.prod(plan.block) * plan.input.dtype.itemsize)
    with report:
        futures = client.get(dsk, keys, sync=False)
        try:
            with Progress(len(futures), block_bytes, options.progress, options.interval) as bar:
                for fut in as_completed(futures):
                    values = _result(fut)
                    for k, v in zip(STATS, values.reshape(-1, len(STATS)).sum(axis=0), strict=True):
                        totals[k] += int(v)
                    bar.advance()
        except BaseException as e:
            with contextlib.suppress(Exception):  # the scheduler may be gone
                client.cancel(futures)
            if isinstance(e, KeyboardInterrupt):
                raise Interrupted() from None
            if _lost_scheduler(e):
                raise PipelineError(
                    f"lost the Dask scheduler ({_scheduler_name(plan)}) during the run "
                    f"({type(e).__name__}); the output stays incomplete: `run --resume` "
                    "finishes it"
                ) from None
            raise
    return totals


def _lost_scheduler(e: BaseException) -> bool:
    """Whether ``e`` says the connection to the scheduler is gone (not a task's failure)."""
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError

    return isinstance(e, (CancelledError, CommClosedError))


def _scheduler_name(plan: Plan) -> str:
    s = plan.cluster.scheduler
    return "the local cluster's" if s == "local" else s


def _result(fut: Any) -> np.ndarray:
    from distributed import KilledWorker

    try:
        return fut.result()
    except PipelineError:
        raise
    except KilledWorker as e:
        raise PipelineError(
            f"workers died repeatedly running {e.task}; the output stays incomplete "
            "(`run --resume` continues): check worker memory (cluster.host_memory_limit)"
        ) from None
    except MemoryError as e:
        raise PipelineError(
            f"out of memory in a task ({e}); lower chunking.target_bytes or "
            "cluster.threads_per_worker, then `run --resume`"
        ) from None
    except Exception as e:
        name = type(e).__name__
        if "OutOfMemory" in name:
            raise PipelineError(
                f"the GPU ran out of memory ({e}); lower chunking.target_bytes "
                "or cluster.threads_per_worker, then `run --resume`"
            ) from None
        raise


def _summary(
    plan: Plan,
    client: Any,
    totals: dict[str, int],
    done: int,
    skipped: int,
    t_start: float,
    seconds: dict[str, float],
    dashboard: str | None,
    status: str,
) -> Summary:
    from pipeline.info import versions

    peaks = {}
    with contextlib.suppress(Exception):
        peaks = cluster.read_peaks(client)
    peak_dev = max((p.get("device", 0) for p in peaks.values()), default=0)
    peak_rss = max((p.get("rss", 0) for p in peaks.values()), default=0)
    frac, bound = task_breakdown({k[3:]: totals.get(k, 0) for k in STATS if k.startswith("us_")})
    seconds = dict(seconds)
    seconds["total"] = time.perf_counter() - t_start
    elements = totals.get("elements", 0)
    return Summary(
        status=status,
        backend=plan.backend,
        backend_reason=plan.backend_reason,
        input=plan.input.location.join(plan.input.path),
        output=plan.output.location.join(plan.output.path),
        workers=plan.cluster.workers,
        threads_per_worker=plan.cluster.threads_per_worker,
        gpus=list(plan.cluster.gpus),
        blocks_total=plan.n_blocks,
        blocks_done=done,
        blocks_skipped=skipped,
        bytes_in=elements * plan.input.dtype.itemsize,
        bytes_out=elements * plan.output.dtype.itemsize,
        stored_bytes_read=totals.get("bytes_read", 0),
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
        stages=[s.describe() for s in plan.chain],
        versions=versions(),
        config=plan.config.model_dump(mode="json"),
        notes=list(plan.notes),
    )


def _attr_summary(s: Summary) -> dict[str, Any]:
    return {
        "blocks": s.blocks_total,
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "nan": s.nan,
        "posinf": s.posinf,
        "neginf": s.neginf,
        "seconds": round(s.seconds.get("compute", 0.0), 3),
    }


# --------------------------------------------------------------------------------------------
# Generating inputs.


def generate_input(config: Config, progress: str = "auto") -> storage.ArrayInfo:
    """Create the input ``config.input.generate`` describes, on the run's backend."""
    from distributed import as_completed

    from pipeline.generate import create_input, generate_unit
    from pipeline.plan import _threads, _workers

    if config.input.generate is None:
        raise PipelineError(
            "the config has no input.generate section: add one (shape, dtype, ...) or point "
            "input.store at existing data"
        )
    facts = Facts.local(want_gpu=config.backend != "cpu")
    if config.backend == "gpu" and not facts.gpu_usable:
        raise PipelineError(f"backend: gpu, but {facts.gpu_reason}; set backend: cpu")
    be = "gpu" if facts.gpu_usable and config.backend != "cpu" else "cpu"
    loc = storage.Location.of(config.input.store, config.input.storage_options)
    check_writable(loc)
    threads = _threads(config, be, None)
    cp = ClusterPlan(
        scheduler=config.cluster.scheduler,
        backend=be,
        gpus=tuple(range(len(facts.gpus))) if be == "gpu" else (),
        workers=_workers(config, be, facts, threads, None),
        threads_per_worker=threads,
        device_budget=None,
        host_budget=None,
        memory_pool=config.cluster.memory_pool,
        protocol=config.cluster.protocol,
        timeout=config.cluster.timeout,
        dashboard="",
    )
    spec = create_input(config, be)
    info = spec.sink.info
    units = list(layout.iter_indices(info.grid))
    cm = cluster.connect(cp) if cp.scheduler == "local" else _joined(cp)
    with cm as client:
        futures = client.map(generate_unit, [spec] * len(units), units, pure=False)
        unit_bytes = float(np.prod(info.unit) * info.dtype.itemsize)
        try:
            with Progress(len(futures), unit_bytes, progress, label="generate") as bar:
                for fut in as_completed(futures):
                    fut.result()
                    bar.advance()
        except BaseException as e:
            client.cancel(futures)
            if isinstance(e, KeyboardInterrupt):
                raise Interrupted() from None
            raise
    return info


@contextlib.contextmanager
def _joined(cp: ClusterPlan) -> Iterator[Any]:
    client = cluster.join(cp.scheduler, cp.timeout)
    try:
        client.register_plugin(cluster.PipelineSetup(cp.backend, None))
        yield client
    finally:
        client.close()
