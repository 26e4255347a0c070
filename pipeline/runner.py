"""A run from start to finish: plan, check, start the cluster, compute, finish, summarise.

The order matters for the guarantees: everything that can be checked is checked before the
cluster starts or any byte is written; the output is marked incomplete from its creation until
every block is recorded as written; the cluster is closed on every exit path; and an
interrupted run leaves a record that ``--resume`` continues from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import cluster, graph
from pipeline._version import __version__
from pipeline.blocks import STATS
from pipeline.config import Config
from pipeline.devices.hardware import Facts, facts_from_workers, worker_facts
from pipeline.errors import OutputError, PipelineError, disk_full
from pipeline.planning import ClusterPlan, Plan, describe, make_plan
from pipeline.reporting.progress import Progress
from pipeline.reporting.summary import Summary, summarise
from pipeline.stale import as_recorded, recorded_run, said, stale_parts, with_block
from pipeline.store import arrays, grid
from pipeline.store.ledger import RECORD
from pipeline.store.location import Location

log = logging.getLogger("pipeline")


class Interrupted(Exception):
    """The user pressed Ctrl-C (or the process got SIGTERM) during ``what``: 'run' (the
    output is resumable) or 'generate' (the input ``where`` is unfinished: generate again)."""

    def __init__(self, what: str = "run", where: str = "") -> None:
        super().__init__(what, where)
        self.what = what
        self.where = where


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


def _real(loc: Location, path: str) -> str:
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


def check_writable(loc: Location) -> None:
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
    """What is at the output now:

    * 'absent': nothing, or only this pipeline's run record (a run that stopped before it
      created the array: nothing to keep);
    * 'complete' / 'incomplete': an array this pipeline wrote, finished or interrupted;
    * 'remains': files of an output this pipeline was replacing when it stopped (no array);
    * 'foreign': a Zarr array or group written by something else;
    * 'not-zarr': a directory with other files in it, which the pipeline never deletes.
    """
    info = plan.output
    meta_key = f"{info.path}/zarr.json" if info.path else "zarr.json"
    if not info.location.exists(meta_key):
        names = info.location.list(info.path)
        others = [n for n in names if n != RECORD]
        if not others:
            return "absent"
        if RECORD in names:
            return "remains"
        zarr_names = {".zarray", ".zgroup", ".zattrs", "zarr.json"}
        return "foreign" if zarr_names & set(others) else "not-zarr"
    try:
        attrs = arrays.read_attributes(info.location, info.path)
    except Exception:
        return "foreign"
    status = attrs.get("pipeline", {}).get("status")
    return {"complete": "complete", "incomplete": "incomplete"}.get(status, "foreign")


def decide_start(plan: Plan, options: RunOptions) -> str:
    """'fresh' (create the output), 'resume' or 'done'; or an OutputError saying why not.

    On ``--resume`` the output must be what this config makes of this input: a complete one
    (else 'done' would keep a stale output), and an incomplete one (else the resume would mix
    two runs' blocks); a refusal names what changed (the error's ``changed``).

    Reads only: nothing is written before this has decided (and the lock is taken)."""
    where = plan.output.location.join(plan.output.path)
    ledger = plan.sink.ledger
    if ledger is not None:
        holder = ledger.holder()
        if holder is not None:
            raise OutputError(ledger.busy_message(holder), output=where)
    state = output_state(plan)
    if state == "absent":
        return "fresh"
    if state == "not-zarr":
        some = ", ".join(n for n in plan.output.location.list(plan.output.path)[:3])
        raise OutputError(
            f"{where} is a directory that holds other files ({some}, ...), not a Zarr array; "
            "the pipeline never deletes it, even with --overwrite: choose another output.store "
            "or remove it yourself",
            output=where,
        )
    if options.overwrite:
        return "fresh"
    if options.resume:
        if state == "complete":
            changed = stale_parts(recorded_run(plan), plan, whole=True)
            if changed:
                raise OutputError(
                    f"{where} is complete, but {said(changed)}: `run --overwrite` recomputes it",
                    output=where,
                    changed=[part for part, _ in changed],
                )
            return "done"
        if state == "foreign":
            raise OutputError(
                f"{where} exists but was not written by this pipeline; nothing to resume "
                "(use --overwrite to replace it)",
                output=where,
            )
        if state == "remains":
            raise OutputError(
                f"{where} holds the remains of an output that a stopped run was replacing; "
                "nothing to resume: `run --overwrite` starts over",
                output=where,
            )
        manifest = ledger.read_manifest() if ledger else None
        if manifest is None:
            raise OutputError(
                f"{where} has no run record to resume from; use --overwrite", output=where
            )
        changed = stale_parts(manifest, plan, whole=False)
        if changed:
            raise OutputError(
                f"cannot resume {where}: {said(changed)} since the interrupted run; resume "
                "with the same config and input, or `run --overwrite` to start over",
                output=where,
                changed=[part for part, _ in changed],
            )
        return "resume"
    if state == "incomplete":
        raise OutputError(
            f"{where} is incomplete (an interrupted run): `run --resume` finishes it, "
            "`run --overwrite` starts over",
            output=where,
        )
    if state == "remains":
        raise OutputError(
            f"{where} holds the remains of an output that a stopped run was replacing: "
            "`run --overwrite` starts over",
            output=where,
        )
    if state == "complete":
        raise OutputError(f"{where} already exists; pass --overwrite to replace it", output=where)
    raise OutputError(
        f"{where} already exists (not written by this pipeline); pass --overwrite to replace it",
        output=where,
    )


def output_now(plan: Plan) -> str:
    """What is at the output and what ``run`` does with it, in words (``pipeline plan``)."""
    state = output_state(plan)
    if state == "complete":
        recorded = recorded_run(plan)
        changed = stale_parts(recorded, as_recorded(plan, recorded.get("identity")), whole=True)
        if changed:
            return f"complete, but {said(changed)}: `run --overwrite` recomputes it"
    if state == "incomplete":
        manifest = plan.sink.ledger.read_manifest() if plan.sink.ledger else None
        if manifest is None:
            return "incomplete, with no run record to resume from: `run --overwrite` starts over"
        changed = stale_parts(manifest, as_recorded(plan, manifest.get("identity")), whole=False)
        if changed:
            return (
                f"incomplete, and not resumable: {said(changed)} since the interrupted run: "
                "`run --overwrite` starts over"
            )
    return {
        "absent": "absent: `run` creates it",
        "complete": "complete: `run --overwrite` replaces it",
        "incomplete": "incomplete (an interrupted run): `run --resume` finishes it",
        "foreign": "something else is there: `run --overwrite` replaces it",
        "remains": "the remains of an interrupted replacement: `run --overwrite` starts over",
        "not-zarr": "a directory of other files, which `run` never deletes: choose another",
    }[state]


# --------------------------------------------------------------------------------------------


def plan_run(config: Config) -> Plan:
    """The plan of a run on a local cluster (no cluster is started)."""
    return make_plan(config, Facts.local(want_gpu=config.backend != "cpu"))


def setup_plugin(plan: Plan) -> cluster.PipelineSetup:
    """The per-worker set-up for this plan: budget, and (GPU) staging buffers and kernels
    made before the first task."""
    block_bytes = int(np.prod(plan.block)) * max(
        plan.input.dtype.itemsize, plan.output.dtype.itemsize
    )
    return cluster.PipelineSetup(
        plan.backend,
        plan.cluster.device_budget,
        chain=plan.chain,
        staging_bytes=int(block_bytes * 1.05) + (1 << 20),
    )


Connect = Callable[[], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def _planned(config: Config, client: Any = None) -> Iterator[tuple[Plan, Connect]]:
    """The plan, and how to get the cluster's client: a local cluster is started only when
    ``connect()`` is entered (after every check); an address is joined first, since the plan
    needs its workers. A ``client`` given by the caller (e.g. a benchmark reusing warm
    workers) is used as is and left open."""
    if client is not None:
        given = client
        # a warm cluster's workers hold device memory (cached blocks, their threads' buffers)
        # that this process would count as used: their next tasks reuse it
        held = cluster.held_device_memory(given)
        facts = Facts.local(want_gpu=config.backend != "cpu").plus_held(held)
        plan = make_plan(config, facts)

        @contextlib.contextmanager
        def as_given() -> Iterator[Any]:
            given.register_plugin(setup_plugin(plan))
            yield given

        yield plan, as_given
        return
    if config.cluster.scheduler == "local":
        plan = plan_run(config)
        yield plan, lambda: cluster.connect(plan.cluster, plugin=setup_plugin(plan))
        return
    client = cluster.join(config.cluster.scheduler, config.cluster.timeout)
    try:
        cluster.held_device_memory(client)  # gives cached blocks back before measuring
        infos = list(client.run(worker_facts).values())
        facts = facts_from_workers(infos)
        workers = client.scheduler_info()["workers"]
        threads = min(w["nthreads"] for w in workers.values())
        plan = make_plan(config, facts, scheduler_workers=len(workers), scheduler_threads=threads)

        @contextlib.contextmanager
        def joined() -> Iterator[Any]:
            client.register_plugin(setup_plugin(plan))
            yield client

        yield plan, joined
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
        # what the fingerprint is made of: once the run record is gone, a resume of a complete
        # output made from another config or input can still name what changed
        "identity": plan.identity,
    }
    doc.update(extra or {})
    return {"pipeline": doc}


def _recorded_block(config: Config, options: RunOptions) -> Config:
    """On ``--resume`` with an automatic block shape, the block of the run that wrote the
    output (from its run record, or a complete output's attributes): the automatic choice
    depends on the cluster's memory, and a resume on another cluster must write the same
    blocks (and find a complete output's shards, which are blocks by default, the same)."""
    if not options.resume or config.chunking.block != "auto":
        return config
    from pipeline.store.ledger import Ledger

    loc = Location.of(config.output.store, config.output.storage_options)
    path = config.output.array.strip("/")
    try:
        recorded: Any = Ledger(loc, path).read_manifest()
        if recorded is None:  # a complete output (or none: Zarr raises)
            recorded = arrays.read_attributes(loc, path).get("pipeline")
        identity = recorded.get("identity")
    except Exception:
        return config
    return with_block(config, identity)


def run(config: Config, options: RunOptions | None = None, client: Any = None) -> Summary:
    """Run the pipeline the config describes; the run's :class:`Summary`.

    ``client``: an existing Dask client to run on (left open), instead of the config's cluster.

    Order: plan and check (nothing written), decide how to start from what the output holds,
    take the output's lock, start the cluster, create (or keep, on resume) the output marked
    incomplete, compute the missing blocks, check every block is recorded, mark the output
    complete, drop the record. Any failure before the output was created leaves no trace."""
    options = options or RunOptions()
    if config.output.overwrite and not options.overwrite and not options.resume:
        options = dataclasses.replace(options, overwrite=True)  # the config asks for it
    t_start = time.perf_counter()
    gen = config.input.generate
    if gen is not None and gen.when_missing:
        loc = Location.of(config.input.store, config.input.storage_options)
        key = f"{config.input.array.strip('/')}/zarr.json" if config.input.array else "zarr.json"
        missing = not (loc.exists(key) or loc.exists(key.replace("zarr.json", ".zarray")))
        status = None if missing else arrays.generation_status(loc, config.input.array)
        unfinished = status == "incomplete"
        if missing or unfinished:
            log.info(
                "input %s is %s: generating it (input.generate.when_missing)",
                loc.join(config.input.array),
                "missing" if missing else "unfinished (an interrupted generate)",
            )
            generate_input(config, options.progress)
            # the run's own clock starts after the input exists
            t_start = time.perf_counter()
    config = _recorded_block(config, options)
    with _planned(config, client) as (plan, connect):
        t_plan = time.perf_counter() - t_start
        check_not_overlapping(plan)
        check_writable(plan.output.location)
        start = decide_start(plan, options)
        for label, text in describe(plan):
            log.debug("plan: %s: %s", label, text)
        for note in plan.notes:
            log.warning("note: %s", note)
        if start == "done":
            log.warning(
                "%s is already complete; nothing to do", plan.output.location.join(plan.output.path)
            )
            return _summary(
                plan,
                None,
                {},
                0,
                plan.n_blocks,
                t_start,
                {"plan": t_plan},
                None,
                "complete (nothing to do)",
            )
        ledger = plan.sink.ledger
        assert ledger is not None
        ledger.acquire()  # before anything is written: a second run stops here
        exists = start == "resume"
        finished = False
        try:
            t0 = time.perf_counter()
            with connect() as client:
                t_cluster = time.perf_counter() - t0
                dashboard = _dashboard(client, plan)
                if dashboard:
                    log.info("dashboard: %s", dashboard)
                if start == "fresh":
                    exists = True
                    _create_output(plan)
                summary = _compute_and_finish(
                    client, plan, start, options, t_start, t_plan, t_cluster, dashboard
                )
                finished = True
                return summary
        except OSError as e:
            full = disk_full(e, "the output")
            if full is not None:
                raise full from None
            raise
        finally:
            if not finished:
                with contextlib.suppress(Exception):
                    ledger.release()
                if not exists:
                    _remove_if_empty(plan)


def _compute_and_finish(
    client: Any,
    plan: Plan,
    start: str,
    options: RunOptions,
    t_start: float,
    t_plan: float,
    t_cluster: float,
    dashboard: str | None,
) -> Summary:
    ledger = plan.sink.ledger
    assert ledger is not None
    done = ledger.done() if start == "resume" else set()
    all_blocks = list(grid.iter_indices(plan.block_grid))
    pending = [b for b in all_blocks if b not in done]
    if start == "resume":
        log.warning(
            "resuming: %d of %d blocks already written (skipped), %d to go",
            len(all_blocks) - len(pending),
            len(all_blocks),
            len(pending),
        )
    cluster.reset_peaks(client)
    t0 = time.perf_counter()
    totals, per_worker = _compute(client, plan, pending, options)
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
    summary.blocks_per_worker = per_worker
    # the whole output's counts: this run's blocks, and those an interrupted run wrote
    whole = {k: totals.get(k, 0) for k in ("elements", "bytes_written", *NONFINITE)}
    skipped = [b for b in all_blocks if b in done]
    if skipped:
        before = ledger.counts(skipped)
        if before is None:
            log.warning(
                "the run record of the skipped blocks has no counts: the NaN/inf counts "
                "cover only the %d blocks this run wrote",
                len(pending),
            )
        else:
            whole = {k: v + before.get(k, 0) for k, v in whole.items()}
    summary.nan, summary.posinf, summary.neginf = (whole[k] for k in NONFINITE)
    arrays.update_attributes(
        plan.output.location,
        plan.output.path,
        _attrs(
            plan,
            "complete",
            {"finished": _now(), "summary": _attr_summary(plan, whole, summary)},
        ),
    )
    ledger.clear()
    summary.seconds["finish"] = time.perf_counter() - t0
    summary.seconds["total"] = time.perf_counter() - t_start
    return summary


def _remove_if_empty(plan: Plan) -> None:
    """After a run that failed before creating its output: remove the record directory and the
    output directory when nothing else is in them (what the lock created)."""
    o = plan.output
    if not o.location.is_local:
        return
    root = o.location.join(o.path)
    for d in (os.path.join(root, RECORD), root):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _create_output(plan: Plan) -> None:
    """Create the output, replacing what was there except the run record (which holds the lock
    this run has taken). The old metadata goes first, so a replacement cut short never leaves
    an array that claims to be complete; the new one is created marked incomplete, after the
    record of what this run computes."""
    o = plan.output
    ledger = plan.sink.ledger
    assert ledger is not None
    for meta in ("zarr.json", ".zarray", ".zattrs"):
        o.location.delete(f"{o.path}/{meta}" if o.path else meta)
    ledger.clear_done()
    ledger.delete_manifest()
    arrays.clear_array(o.location, o.path, keep=RECORD)
    ledger.write_manifest(
        {
            "fingerprint": plan.fingerprint(),
            "identity": plan.identity,
            "version": __version__,
            "started": _now(),
        }
    )
    arrays.create_output(
        o.location,
        o.path,
        o.shape,
        o.dtype,
        o.chunk,
        o.unit if o.sharded else None,
        o.codec or "none",
        plan.sink.encoding.level,
        plan.sink.encoding.checksum,
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


def _compute(
    client: Any, plan: Plan, pending: list, options: RunOptions
) -> tuple[dict[str, int], dict[str, int]]:
    """Submit the pending blocks, follow them, and sum their statistics; also how many blocks
    each worker computed (where each block's small result was made, before it is released)."""
    from distributed import as_completed, performance_report

    totals = dict.fromkeys(STATS, 0)
    if not pending:
        return totals, {}
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
            per_worker = _blocks_per_worker(client, futures)
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
    return totals, per_worker


def _blocks_per_worker(client: Any, futures: list) -> dict[str, int]:
    """{worker address: blocks it computed}, from where the blocks' results are held."""
    counts: dict[str, int] = {}
    with contextlib.suppress(Exception):  # a statistic: never fail a finished run over it
        for holders in client.who_has(futures).values():
            if holders:
                counts[holders[0]] = counts.get(holders[0], 0) + 1
    return dict(sorted(counts.items()))


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
    peaks = {}
    with contextlib.suppress(Exception):
        peaks = cluster.read_peaks(client)
    return summarise(plan, totals, peaks, done, skipped, t_start, seconds, dashboard, status)


NONFINITE = ("nan", "posinf", "neginf")


def _attr_summary(plan: Plan, whole: dict[str, int], s: Summary) -> dict[str, Any]:
    """What the output's attributes say about it: the whole array, however many runs wrote
    it (the compute seconds are the last run's)."""
    elements = whole.get("elements", 0)
    return {
        "blocks": s.blocks_total,
        "bytes_in": elements * plan.input.dtype.itemsize,
        "bytes_out": elements * plan.output.dtype.itemsize,
        "nan": whole.get("nan", 0),
        "posinf": whole.get("posinf", 0),
        "neginf": whole.get("neginf", 0),
        "seconds": round(s.seconds.get("compute", 0.0), 3),
    }


# --------------------------------------------------------------------------------------------
# Generating inputs.


def check_generate_target(loc: Location, array: str) -> None:
    """Refuse to generate over data that ``generate`` did not create: it replaces what is at
    the input's path, and an input is someone's data."""
    path = array.strip("/")
    where = loc.join(path)
    for meta in ("zarr.json", ".zarray", ".zgroup"):
        if loc.exists(f"{path}/{meta}" if path else meta):
            try:
                attrs = arrays.read_attributes(loc, path)
            except Exception:
                attrs = {}
            if "pipeline_generated" in attrs:
                return  # ours: generating again gives the same data
            break
    else:
        if not loc.list(path):
            return
    raise PipelineError(
        f"{where} already holds data that `pipeline generate` did not create; generate never "
        "replaces it: point input.store (or input.array) elsewhere, or remove it yourself"
    )


def generate_input(config: Config, progress: str = "auto") -> arrays.ArrayInfo:
    """Create the input ``config.input.generate`` describes, on the run's backend."""
    from distributed import as_completed

    from pipeline.generate import create_input, generate_unit, mark_generated
    from pipeline.planning.plan import plan_generation

    if config.input.generate is None:
        raise PipelineError(
            "the config has no input.generate section: add one (shape, dtype, ...) or point "
            "input.store at existing data"
        )
    cp = plan_generation(config, Facts.local(want_gpu=config.backend != "cpu"))
    be = cp.backend
    loc = Location.of(config.input.store, config.input.storage_options)
    check_writable(loc)
    check_generate_target(loc, config.input.array)
    where = loc.join(config.input.array.strip("/"))
    try:
        # marked unfinished from here until every unit is written
        spec = create_input(config, be)
        info = spec.sink.info
        units = list(grid.iter_indices(info.grid))
        cm = cluster.connect(cp) if cp.scheduler == "local" else _joined(cp)
        with cm as client:
            futures = client.map(generate_unit, [spec] * len(units), units, pure=False)
            unit_bytes = float(np.prod(info.unit) * info.dtype.itemsize)
            try:
                with Progress(len(futures), unit_bytes, progress, label="generate") as bar:
                    for fut in as_completed(futures):
                        fut.result()
                        bar.advance()
            except BaseException:
                client.cancel(futures)
                raise
        mark_generated(loc, info.path)
    except KeyboardInterrupt:
        raise Interrupted("generate", where) from None
    return info


@contextlib.contextmanager
def _joined(cp: ClusterPlan) -> Iterator[Any]:
    client = cluster.join(cp.scheduler, cp.timeout)
    try:
        client.register_plugin(cluster.PipelineSetup(cp.backend, None))
        yield client
    finally:
        client.close()
