"""A run from start to finish: plan, check, start the cluster, compute, finish, summarise.

The order matters for the guarantees: everything that can be checked is checked before the
cluster starts or any byte is written (the command line's local GPU cluster alone begins
starting just before the plan reads the input, and is stopped where a check refuses the run:
its workers write nothing to the output, ``workers.begun_early``); the output is marked
incomplete from its creation until every block is recorded as written; the cluster is closed
on every exit path; and an interrupted run leaves a record that ``--resume`` continues from.
What the output is and how a run starts there is :mod:`pipeline.running.output`'s; the
cluster is :mod:`pipeline.running.cluster`'s; one task is :mod:`pipeline.running.tasks`'.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config.models import Config
from pipeline.config.urls import home_problem
from pipeline.devices.hardware import Facts, facts_from_workers, worker_facts
from pipeline.errors import (
    INTERRUPTED_FLAG,
    RUN_AGAIN,
    RUN_THEN,
    ClusterError,
    ConfigError,
    InputError,
    Interrupted,
    OutputError,
    PipelineError,
    PlanError,
    StoreError,
    disk_full,
    name_shown,
    said_then,
    some_shown,
)
from pipeline.ops import stages
from pipeline.planning import Plan, describe, make_plan, plan_here
from pipeline.planning.plan import ClusterPlan, gpu_wait, local_cluster_plan, protocol_of
from pipeline.planning.variable import with_output_array
from pipeline.reporting.lines import PROGRESS_LINE
from pipeline.reporting.progress import Progress
from pipeline.reporting.summary import Summary, summarise
from pipeline.running import graph, output, waiting
from pipeline.running.output import NONFINITE
from pipeline.running.tasks import STATS, marked_counts, staging_per_thread
from pipeline.running.workers import Workers, begun_early, local_workers
from pipeline.store import arrays, grid
from pipeline.store.ledger import remove_if_empty, summed_counts
from pipeline.store.location import Aside, Location, local_within

if TYPE_CHECKING:
    from pipeline.running.cluster import PipelineSetup

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices that are not part of the config."""

    overwrite: bool | None = None
    """replace an existing output: True; never replace it: False, whatever the config's
    ``output.overwrite`` says; None (the default, no ``--overwrite``): as ``output.overwrite``
    says (:func:`settled` makes it True where that is true; False stays the caller's no, which
    a refusal of an output there words as asked)"""
    resume: bool = False
    report: str | None = None
    """save Dask's performance report (HTML) here"""
    summary_json: str | None = None
    progress: str = "auto"
    """auto, bar, plain or none"""
    interval: float = 5.0
    """seconds between plain progress lines"""
    process_ends: bool = False
    """this process ends right after the run (the command line's own): a local cluster's
    worker processes are not waited for once they are exiting (``cluster.connect``); not one
    of the Python API's options"""


# --------------------------------------------------------------------------------------------
# Planning, and the cluster the plan runs on.


def plan_run(config: Config) -> Plan:
    """The plan of a run on a local cluster (no cluster is started)."""
    return plan_here(config)


def _early_cluster(config: Config, facts: Facts) -> ClusterPlan | None:
    """The local cluster a run of ``config`` plans on this machine (``facts``), known before
    the input is read (:func:`~pipeline.planning.plan.local_cluster_plan`); None where the
    config is refused for it (the plan says why)."""
    try:
        return local_cluster_plan(config, facts)
    except PipelineError:
        return None


def plan_joined(config: Config, client: Any) -> Plan:
    """The plan of a run on the cluster ``client`` is joined to (at the config's
    ``cluster.scheduler``): :func:`plan_on_cluster`."""
    return plan_on_cluster(config, client, config.cluster.scheduler)


def plan_for_client(config: Config, client: Any) -> Plan:
    """The plan of a run on a caller's ``client`` (``pipeline.run(config, client=...)``,
    ``pipeline.plan(config, client=...)``), once its cluster has a running worker (a
    ClusterError after ``cluster.timeout`` where none comes: :func:`cluster.wait_running`):
    :func:`plan_on_cluster`, whatever the config's ``cluster.scheduler``."""
    from pipeline.running import cluster

    address = client.scheduler.address
    # a cluster without a running worker (none yet, all paused) had kept the run waiting
    cluster.wait_running(client, address, config.cluster.timeout, config.cluster.timeout)
    return plan_on_cluster(config, client, address)


def plan_on_cluster(config: Config, client: Any, address: str) -> Plan:
    """The plan of a run on the cluster of ``client`` (its scheduler at ``address``, as the
    config names it or the client's own), a cluster the run does not start: sized by its
    workers' facts (:func:`cluster_facts`: their GPUs and free device memory, cores, memory
    limits, how many share a GPU), with their number, the fewest threads and how they talk;
    the store packages its workers lack refused (``check_store_packages``). Raises
    ClusterError (``reason`` 'lost', ``during`` 'plan') for a lost scheduler, and
    'no-workers' (:func:`pipeline.running.cluster.no_workers`) where its workers all left
    (a bare ValueError of ``min`` had said so)."""
    from pipeline.running import cluster

    facts, workers = cluster_facts(client, address, config.cluster.timeout)
    threads = min(w["nthreads"] for w in workers.values())
    plan = make_plan(
        config,
        facts,
        scheduler_workers=len(workers),
        scheduler_threads=threads,
        worker_protocol=protocol_of(workers),
    )
    cluster.check_store_packages(client, address, _stores(plan), config.cluster.timeout)
    return plan


#: The modules a worker imports for the run's tasks, imported before it says the bytes its
#: process holds (:func:`~pipeline.devices.hardware.worker_facts`): a fresh CPU worker of
#: 63 MiB held 81 MiB with them.
TASK_IMPORTS = ("pipeline.running.tasks",)


def cluster_facts(client: Any, address: str, timeout: float) -> tuple[Facts, dict[str, Any]]:
    """(the facts a plan assumes on the cluster of ``client``, its scheduler at ``address``;
    its workers, as the scheduler knows them): each worker's own, asked of it
    (:func:`~pipeline.devices.hardware.facts_from_workers` of their :func:`worker_facts`),
    with the device memory the pipeline's warm workers hold counted as free (asked first, as
    it gives their pools' cached blocks back: ``held_device_memory``), and this process's
    available memory (for what it reads itself). A caller's client's had been this machine's
    (its GPU's free memory, its cores; a GPU run refused where this process sees no GPU),
    but for the workers' memory limits and GPU sharing. ClusterError 'no-workers' where the
    cluster has none, 'lost' for a lost scheduler, 'no-answer' for workers that do not answer
    within ``timeout`` seconds (:func:`~pipeline.running.cluster.ask_workers`)."""
    import psutil

    from pipeline.running import cluster

    held = cluster.held_device_memory(client, address, timeout)
    workers = _scheduler_workers(client, address)
    # the tasks' modules imported first: the bytes a worker process holds before its tasks
    answers = cluster.ask_workers(
        client,
        worker_facts,
        (TASK_IMPORTS,),
        "pipeline-facts",
        address,
        "plan",
        timeout,
        "its facts for the plan",
    )
    if not answers or not workers:
        raise cluster.no_workers(address)
    here = int(psutil.virtual_memory().available)
    return facts_from_workers(answers, held, here), workers


def _stores(plan: Plan) -> dict[str, Any]:
    """{'input': the input's Location, 'output': the output's}, as the workers open them."""
    return {"input": plan.input.location, "output": plan.output.location}


def _scheduler_workers(client: Any, address: str) -> dict[str, Any]:
    """{worker address: what the scheduler ``address`` knows of it (``nthreads``, ...)}, asked
    off the main thread (:func:`pipeline.running.cluster.ask`: a lost scheduler as
    ClusterError)."""
    from pipeline.running import cluster

    return cluster.ask(
        client, lambda: client.scheduler_info()["workers"], "pipeline-workers", address, "plan"
    )


def setup_plugin(plan: Plan) -> PipelineSetup:
    """The per-worker set-up for this plan: budget, and (GPU) staging buffers and kernels
    made before the first task, and how the workers' threads wait for the GPU
    (:func:`~pipeline.planning.plan.gpu_wait`)."""
    from pipeline.running import cluster

    block_bytes = int(np.prod(plan.block)) * max(
        plan.input.dtype.itemsize, plan.output.dtype.itemsize
    )
    return cluster.PipelineSetup(
        plan.backend,
        plan.cluster.device_budget,
        chain=plan.chain,
        staging_bytes=int(block_bytes * 1.05) + (1 << 20),
        staging_per_thread=staging_per_thread(plan.source),
        gpu_wait=gpu_wait(plan.source, plan.backend),
    )


Connect = Callable[[], contextlib.AbstractContextManager[Workers]]


@contextlib.contextmanager
def _planned(
    config: Config, client: Any = None, report: str | None = None, process_ends: bool = False
) -> Iterator[tuple[Plan, Connect]]:
    """The plan, and how to get its workers (:mod:`pipeline.running.workers`): a local run's
    are started only when ``connect()`` is entered (after every check); an address is joined
    first, since the plan needs its workers. A ``client`` given by the caller (e.g. a
    benchmark reusing warm workers) is used as is and left open. ``report``: where to save
    Dask's performance report. ``process_ends``: see :class:`RunOptions`."""
    if config.cluster.scheduler == "local" and client is None:
        facts = Facts.local(want_gpu=config.backend != "cpu")  # once: the workers use memory
        with begun_early(_early_cluster(config, facts), process_ends) as early:
            plan = make_plan(config, facts)
            if early is not None and early.plan != plan.cluster:  # not the cluster begun
                stopped, early = early, None
                if stopped.stop():
                    raise KeyboardInterrupt  # pressed while it stopped
            yield (
                plan,
                lambda: local_workers(
                    plan.cluster,
                    report,
                    plugin=lambda: setup_plugin(plan),
                    process_ends=process_ends,
                    started=early,
                ),
            )
        return
    from pipeline.running import cluster

    if client is not None:
        plan = plan_for_client(config, client)
        yield plan, _registered(client, client.scheduler.address, plan, report)
        return
    address = config.cluster.scheduler
    client = cluster.join(address, config.cluster.timeout)
    try:
        plan = plan_joined(config, client)
        yield plan, _registered(client, address, plan, report)
    finally:
        cluster.close_client(client)


def _registered(client: Any, address: str, plan: Plan, report: str | None) -> Connect:
    """How to connect to a cluster that is already there (its scheduler at ``address``): set
    its workers up for ``plan``, and leave it without the pipeline's plugin once the run is
    done (:func:`~pipeline.running.cluster.registered`)."""
    from pipeline.running import cluster

    @contextlib.contextmanager
    def connect() -> Iterator[Workers]:
        with cluster.registered(client, setup_plugin(plan), address):
            yield cluster.DaskWorkers(client, address, report, plan.cluster.timeout)

    return connect


# --------------------------------------------------------------------------------------------
# The run.


def run(config: Config, options: RunOptions | None = None, client: Any = None) -> Summary:
    """Run the pipeline the config describes; the run's :class:`Summary`.

    ``client``: an existing Dask client to run on (left open), instead of the config's cluster.

    Order: plan and check (nothing written), decide how to start from what the output holds,
    take the output's lock, start the cluster, create (or keep, on resume) the output marked
    incomplete, compute the missing blocks, check every block is recorded, mark the output
    complete, drop the record. Any failure before the output was created leaves no trace."""
    options = settled(config, options or RunOptions())
    complete: list[str] = []  # the output, once this run has it complete
    try:
        return _run(config, options, client, complete)
    except KeyboardInterrupt as e:
        joined = client is not None or config.cluster.scheduler != "local"
        if isinstance(e, Interrupted):
            if joined and not e.joined:  # the workers are not the run's: they run on
                raise Interrupted(e.what, e.where, e.state, e.refused, joined=True) from None
            raise
        # before the output's lock (the plan, its checks), or after the run (a joined
        # scheduler's client closing): the output untouched, or complete
        waiting.take()
        where = complete[0] if complete else ""
        raise Interrupted(
            "run", where, "complete" if complete else "untouched", joined=joined
        ) from None


def settled(config: Config, options: RunOptions) -> RunOptions:
    """``options`` as a run of ``config`` takes them, checked before anything is planned (a
    file it writes at its end that it could not write, or inside a store; a report without
    bokeh): ConfigError; with ``overwrite`` left to the config (None) True where the config's
    ``output.overwrite`` asks it (and ``resume`` does not), else still None: an ``overwrite``
    given, False too, wins over the config (``pipeline.run(config, overwrite=False)`` had
    replaced a complete output of a config with ``output.overwrite: true``, h71w), and a
    False stays the caller's own no (:func:`decide`: its refusal of an output there says it
    is kept, as asked). ``run --dry-run`` settles them so too (:func:`preview`)."""
    for flag, path in (("--report", options.report), ("--summary-json", options.summary_json)):
        if path and "\0" in str(path):  # the checks below had raised "embedded null byte"
            raise ConfigError(
                f"{flag} {name_shown(path)}: the file's path holds a NUL character ('\\0'), which "
                "no "
                "file name can hold: write it without",
                option=flag,
                path=str(path),
            )
        home = home_problem(str(path)) if path else None
        if home is not None:  # ~nouser/s.json: a folder '~nouser' here, not made, not wanted
            raise ConfigError(f"{flag}: {home}", option=flag, path=str(path))
        if path:  # a store first: an output's folder not made yet is no "unwritable folder"
            _check_outside_stores(flag, str(path), config)
            _check_file_writable(flag, str(path))
    if options.report:
        import importlib.util

        if importlib.util.find_spec("bokeh") is None:  # found out only after the run otherwise
            raise ConfigError(
                "--report needs bokeh, which draws the report: pip install bokeh",
                option="--report",
                library="bokeh",
            )
    if options.overwrite is None and config.output.overwrite and not options.resume:
        options = dataclasses.replace(options, overwrite=True)  # left to the config: it says so
    return options


def run_config(config: Config, options: RunOptions) -> Config:
    """The config a run with ``options`` plans: ``output.array`` decided, and on ``--resume``
    the layout the output was begun in (:func:`pipeline.running.output.recorded_layout`)."""
    # the plan made of it next checks the input's documents (make_plan's input_info)
    return output.recorded_layout(with_output_array(config, check=False), options.resume)


def preview(plan: Plan, options: RunOptions) -> tuple[str, PipelineError | None]:
    """What a run with ``options`` (:func:`settled`) does at the output of ``plan``
    (:func:`run_config`'s), in words, and its refusal (None where it runs, or finds nothing
    to do): ``run --dry-run``'s "output now" row and exit. Decided by the run's own
    :func:`decide`, so the dry run answers as the run does (it had answered as ``pipeline
    plan``, whatever the flags: exit 0 before a run that refused, and no word of what
    ``--overwrite`` or ``--resume`` would do). Reads only: no lock, no run record."""
    try:
        start = decide(plan, options)
    except PipelineError as e:
        return output.refused_now(e), e
    left = total = 0
    if start == "resume":
        all_blocks = list(grid.iter_indices(plan.block_grid))
        done, gone = _written(plan, all_blocks)
        total, left = len(all_blocks), len(all_blocks) - len(done - set(gone))
    return output.run_now(plan, start, left, total), None


def _check_outside_stores(flag: str, path: str, config: Config) -> None:
    """Refuse a file the run would write at its end (``--report``, ``--summary-json``) inside
    the input's store (the input is never written: a summary over a chunk or a report over its
    ``zarr.json`` left it unreadable) or the output's (which the run writes, and whose folder
    a file of another kind turns into one the pipeline never deletes): ConfigError, fields
    ``option``, ``path``, ``store``. Local stores and archives only: a remote store's keys are
    no files."""
    import os

    full = os.path.realpath(os.path.abspath(os.path.expanduser(path)))
    for what, url, options in (
        ("input", config.input.store, config.input.storage_options),
        ("output", config.output.store, config.output.storage_options),
    ):
        local = Location.of(url, options).local_root  # an archive's file too
        if local is None:
            continue
        root = os.path.realpath(local)
        if local_within(full, root):  # through a bind mount of its folder too (h65d)
            raise ConfigError(
                f"{flag} {name_shown(path)}: that file is inside the {what} store "
                f"{name_shown(root)}, "
                "which "
                f"{'is never written' if what == 'input' else 'the run writes'}: give a "
                "file outside both stores",
                option=flag,
                path=path,
                store=root,
            )


def _check_file_writable(flag: str, path: str) -> None:
    """Refuse, before the run, a file the run would write at its end (``--report``,
    ``--summary-json``) that it could not write: in a folder that is absent or not writable, a
    folder itself, an existing file that is not writable, or a name longer than the file
    system allows (ConfigError, fields ``option``, ``path``). Found out only after the run, it
    had left the output incomplete or the command failing on a complete one."""
    import os

    full = os.path.abspath(os.path.expanduser(path))
    folder, name = os.path.split(full)
    why = None
    if os.path.isdir(full):
        why = "is a folder"
    elif not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        why = f"{name_shown(folder)} is not a writable folder"
    elif os.path.lexists(full):
        try:  # opened for appending, and closed: nothing in it changes
            os.close(os.open(full, os.O_WRONLY | os.O_APPEND))
        except OSError as e:
            why = f"it exists and cannot be written: {e.strerror}"
    else:
        try:
            longest = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            longest = 255
        if len(os.fsencode(name)) > longest:
            why = f"its name is longer than the {longest} bytes the file system allows"
    if why is not None:
        raise ConfigError(
            f"{flag} {name_shown(path)}: cannot write this file ({why}); give a file in a writable "
            "folder",
            option=flag,
            path=path,
        )


def _run(config: Config, options: RunOptions, client: Any, complete: list[str]) -> Summary:
    """:func:`run`, its options settled; the output's path is put in ``complete`` once it is
    (or was found) complete. A Ctrl-C while the output is locked comes out as
    :class:`Interrupted`, elsewhere as a bare ``KeyboardInterrupt``."""
    t_begin = time.perf_counter()
    # the run's own clock starts once the input exists; its making is a phase of its own
    made = _generate_if_missing(
        config,
        options.progress,
        options.interval,
        before=lambda: _check_before_generating(config, options, client),
    )
    t_start = time.perf_counter() if made else t_begin
    # _planned's make_plan checks the input's documents (input_info): once, not here too
    config = output.recorded_layout(with_output_array(config, check=False), options.resume)
    with _planned(config, client, options.report, options.process_ends) as (plan, connect):
        start = _check(plan, options)
        if start == "done":
            # stale or gone copies, an earlier version's record, the rest as the run wrote it:
            # written again, no data
            copies, record = output.copies_to_write(plan), output.record_to_rewrite(plan)
            groups = output.groups_to_write(plan)
            if copies or record or groups:
                output.write_again(plan)
                _progress_line(
                    options.progress,
                    logging.WARNING,
                    "%s is already complete; %s: nothing else to do",
                    plan.output.location.join(plan.output.path),
                    output.written_again(copies, record, groups=groups),
                )
            else:
                _progress_line(
                    options.progress,
                    logging.WARNING,
                    "%s is already complete; nothing to do",
                    plan.output.location.join(plan.output.path),
                )
                if output.record_kept(plan):  # a read-only output: said at any progress
                    log.warning(
                        "%s: %s", plan.output.location.join(plan.output.path), output.RECORD_KEPT
                    )
            if plan.input_unstamped is not None:  # it can show no rewrite since: say so
                log.warning(
                    "its input's store gives no change stamps (%s): whether the input was "
                    "rewritten since, keeping its files' names and sizes, cannot be told; %s",
                    plan.input_unstamped,
                    output.advice(
                        plan,
                        "--overwrite",
                        "`run --overwrite` recomputes it from the input as it is now",
                    ),
                )
            t_finish = time.perf_counter()
            recorded = output.recorded_run(plan).get("summary")
            counts = (
                {  # the output's non-finite values, as the run that made it counted them
                    k: int(recorded.get(k, 0)) for k in output.NONFINITE
                }
                if isinstance(recorded, dict)
                else {}
            )
            summary = summarise(
                plan,
                counts,
                {},
                0,
                plan.n_blocks,
                t_start,
                {"plan": t_finish - t_start},
                None,
                _done_status(bool(copies), record),
            )
            # making the summary (the library versions, the hardware) is this run's finish
            summary.seconds["finish"] = time.perf_counter() - t_finish
            output.drop_leftover_record(plan)
        else:
            try:
                summary = _execute(plan, start, connect, options, t_start)
            except (PipelineError, Interrupted) as e:  # the lock given up: ask `run`
                said = _as_run_takes(plan, e)
                if said is e:
                    raise
                raise said from None
        complete.append(plan.output.location.join(plan.output.path))
    return _closed(summary, t_begin, t_start)


#: A ``run`` command a line names.
_NAMED = re.compile(r"`(?:pipeline )?run(?: CONFIG)? (--resume|--overwrite)`")


def _as_run_takes(plan: Plan, e: PipelineError | Interrupted) -> PipelineError | Interrupted:
    """``e``, raised by a run once it began (its lock now given up), where the command its
    line names is one ``run`` takes at the output as it is now (:func:`output.run_accepts`);
    else the same error whose advice is ``run``'s own refusal of that command, which names
    the one it takes, or says that none writes there and what to do. A fix these lines ask
    for first (space freed, fewer threads, the input's packing corrected) changes neither
    the output nor the input's identity, so ``run`` takes the same command after it (the
    advice of a fix that may rewrite the input names ``pipeline verify`` instead,
    :data:`~pipeline.errors.VERIFY_NAMES`). A resume refused since (an input rewritten during
    the run, a lost run record) had still been named. ``e`` where ``run`` cannot be asked."""
    if isinstance(e, Interrupted):
        flag = INTERRUPTED_FLAG.get(e.state) if e.what == "run" and not e.refused else None
    elif e.data.get("lock_stays"):  # `run` would find this run's own lock, which its line
        return e  # says how to remove: the command it names is for after that
    elif e.data.get("status") == "displaced" and plan.output.location.is_local:
        # its command is for the output where it was moved, not what is at the path now (a
        # new run's, complete: its line had ended "... is complete, but the stages changed
        # ...: `run --overwrite` recomputes it"); an object store's keys are never moved: its
        # displaced run's output is what is at the path, which `run` is asked about
        return e
    else:
        named = _NAMED.search(str(e))
        flag = named.group(1) if named else None
    if flag is None:
        return e
    try:  # the input as it is now: the plan's identity is its start's
        took, refusals = output.run_accepts(plan.retaken(), (flag,))
    except Exception:  # a look only: the error stays as it was
        return e
    if took is not None or not refusals:
        return e
    refused = str(refusals[0])
    if isinstance(e, Interrupted):
        return Interrupted(e.what, e.where, e.state, refused, e.joined)
    text = str(e)
    cut = text.rfind("; ", 0, _NAMED.search(text).start())  # type: ignore[union-attr]
    return type(e)(f"{text[:cut] if cut > 0 else text}; {refused}", **e.data)


def _incomplete(plan: Plan) -> str:
    """The :class:`Interrupted` state of an output a stopped run leaves incomplete:
    'incomplete' (resumable), or 'unresumable' where the input's store gives no change stamps
    (a resume is refused: :attr:`Plan.input_unstamped`)."""
    return "incomplete" if plan.input_unstamped is None else "unresumable"


def _closed(summary: Summary, t_begin: float, t_start: float) -> Summary:
    """``summary``, whose phases follow each other from ``t_start``, with the time since its
    last as its ``close`` phase (the workers this run started stopped, a joined scheduler's
    client closed) and the input's making before ``t_start`` as its ``generate`` phase (where
    it was made): its total runs from ``t_begin`` to now, the sum of its phases."""
    s = summary.seconds
    t_end = time.perf_counter()
    s["close"] = t_end - t_start - sum(v for k, v in s.items() if k != "total")
    if t_start > t_begin:
        s["generate"] = t_start - t_begin
    s["total"] = t_end - t_begin
    return summary


def _done_status(copies: bool, record: bool) -> str:
    """The summary's status of a run that found its output complete: what it wrote again
    (its consolidated metadata, ``copies``; its run record as JSON text, ``record``), or
    nothing."""
    written = [w for w, did in (("run record", record), ("consolidated metadata", copies)) if did]
    if not written:
        return "complete (nothing to do)"
    return f"complete ({' and '.join(written)} written again)"


def _check_before_generating(config: Config, options: RunOptions, client: Any) -> None:
    """Refuse, before the input is generated, what the run would refuse once it is: the run
    of a local cluster plans the input to be made (its layout from ``input.generate``, as
    ``run --dry-run`` plans it) and decides at the output (:func:`decide`); a run on a
    cluster joined or given, whose plan needs its workers, checks its stage chain on the
    dtype to be made. h60h: a run with ``when_missing`` had generated the whole input (137 GB
    for configs/big.yaml) before refusing a stage's scalar its dtype cannot hold, an output
    already there without ``--overwrite``, a plan that cannot fit, all of which ``run
    --dry-run`` had refused at once."""
    planned = run_config(config, options)
    if planned.cluster.scheduler == "local" and client is None:
        decide(plan_here(planned), options)
        return
    from pipeline.planning.plan import generate_section

    stages.plan_chain(
        planned.stage_specs(), np.dtype(generate_section(planned).dtype), planned.integer_overflow
    )


def _generate_if_missing(
    config: Config, progress: str, interval: float = 5.0, before: Callable[[], None] | None = None
) -> bool:
    """Generate the input first when ``input.generate.when_missing`` asks for it and the input
    is missing or unfinished; whether it did. ``before``: the run's checks that need no input
    (:func:`_check_before_generating`), made first."""
    from pipeline.running.generate import generate_input

    gen = config.input.generate
    if gen is None or not gen.when_missing:
        return False
    loc = Location.of(config.input.store, config.input.storage_options, "input")
    key = f"{config.input.array.strip('/')}/zarr.json" if config.input.array else "zarr.json"
    missing = not (loc.exists(key) or loc.exists(key.replace("zarr.json", ".zarray")))
    status = None if missing else arrays.generation_status(loc, config.input.array)
    if not missing and status != "incomplete":
        return False
    # a generation killed (its lock left), before it wrote the metadata too: unfinished
    stopped = arrays.stopped_generation(loc, config.input.array) is not None
    missing = missing and not stopped
    output.check_stores_apart(config)  # before the input is written: the run would refuse
    if before is not None:
        before()
    _progress_line(
        progress,
        logging.INFO,
        "input %s is %s: generating it (input.generate.when_missing)",
        loc.join(config.input.array),
        "missing"
        if missing
        else f"unfinished (a{' stopped' if stopped else 'n interrupted'} generate)",
    )
    generate_input(config, progress, interval)
    return True


def _progress_line(progress: str, level: int, text: str, *args: Any) -> None:
    """A line of what the run is doing (the input generated first, a resume's blocks already
    written, an output already complete, nothing to do), logged at ``level`` where progress
    is shown; with ``progress`` 'none' (``pipeline.run``'s default, ``--progress none``) a
    debug line only (``-v``): the summary says the same (its phases, blocks skipped and
    status), and a caller who turned progress off had seen the line on stderr all the
    same."""
    log.log(level if progress != "none" else logging.DEBUG, text, *args, extra=PROGRESS_LINE)


def _check(plan: Plan, options: RunOptions) -> str:
    """Every check before anything is written, then how to start: 'fresh', 'resume' or
    'done' (:func:`pipeline.running.output.decide_start`); the plan goes to the log."""
    start = decide(plan, options)
    for label, text in describe(plan, report=bool(options.report)):
        log.debug("plan: %s: %s", label, text)
    for note in plan.notes:
        log.warning("note: %s", note)
    return start


def decide(plan: Plan, options: RunOptions) -> str:
    """How a run with ``options`` starts at the output: 'fresh', 'resume' or 'done'; or its
    refusal (an OutputError), from its checks before anything is written (the output neither
    overlaps the input nor is unwritable, :func:`pipeline.running.output.decide_start`).
    Reads only; the run (:func:`_check`) and its dry run (:func:`preview`) both ask it.
    A local input's identity is taken first (kept by the plan, which the run takes anyway):
    its walk refuses a chunk that is a symbolic link to nothing (a git-annex or DataLad
    dataset's content never fetched), which zarr-python reads as the fill value, before the
    output is made; a remote input's costs requests, and is taken where the run takes it."""
    if plan.input.location.is_local:
        _ = plan.identity
    return output.startable(
        plan,
        overwrite=bool(options.overwrite),
        resume=options.resume,
        declined=options.overwrite is False,
    )


def _execute(
    plan: Plan, start: str, connect: Connect, options: RunOptions, t_start: float
) -> Summary:
    """Take the output's lock, start the cluster, create the output (on a fresh start),
    compute and finish. A failure before the output exists leaves no trace; after, the lock
    is given up and the output stays resumable. The phases from ``t_start`` (the run's
    clock) follow each other, with no time between them."""
    ledger = plan.sink.ledger
    assert ledger is not None
    made = output.folders_to_make(plan)  # what the lock creates: all a failure may remove
    try:
        ledger.acquire()  # before anything is written: a second run stops here
    except OSError as e:  # the lock's own write, on a full disk: had been "a store answered
        # OSError: [Errno 28] ...: mend what is at that path"
        full = disk_full(e, plan.output.location.join(plan.output.path), RUN_AGAIN)
        if full is None:
            raise
        remove_if_empty(made)
        raise full from None
    try:  # again, now that this run's lock is held: what was decided before it may be stale
        # (another run wrote there, or inside, meanwhile: this one's create had deleted it),
        # and another writer nested with this output that took its own lock meanwhile looks
        # too, once it holds it, so one of the two sees the other (ledger.Ledger.check_apart)
        again = output.decide_start(
            plan,
            overwrite=bool(options.overwrite),
            resume=options.resume,
            locked=True,
            declined=options.overwrite is False,
        )
        if again != start:
            where = plan.output.location.join(plan.output.path)
            raise OutputError(
                f"{name_shown(where)} changed while this run began (another run wrote it "
                "meanwhile): "
                "give the command again",
                output=where,
                status="changed",
            )
    except BaseException as e:  # a Ctrl-C too: one landing here (an import of the second
        # look's, held back to its end) had left this process's lock held, and a notebook's
        # next run was refused as another thread's
        ledger.give_up(e)  # a lock that stays is said in e's line
        remove_if_empty(made)
        raise
    exists = start == "resume"  # an output of this run's, incomplete and resumable
    creating = False  # making the output: resumable only once it is made
    replacing = False  # and deleting what was there first
    finished = False
    aside = Aside()  # the old output's chunks, deleted while the run computes
    try:
        t0 = time.perf_counter()
        seconds = {"plan": t0 - t_start}  # its checks and the lock too
        with connect() as workers:
            t1 = time.perf_counter()
            seconds["cluster"] = t1 - t0
            dashboard = _dashboard(workers, plan)
            if dashboard:
                log.info("dashboard: %s", dashboard)
            # tasks of an earlier run of this output, its process killed, may still run
            workers.wait_for_writers(plan.sink.info.location, plan.sink.info.path)
            if start == "fresh":
                # only an --overwrite run finds something there to replace (the line of a
                # Ctrl-C meanwhile says whether what was there is gone: helper-89)
                replacing = bool(options.overwrite) and output.output_state(plan) != "absent"
                creating = True
                aside = output.create(plan)
                creating, exists = False, True
            unlisted = output.unlisted_by_v2_group(plan)  # written where v2 readers miss it
            if unlisted is not None:
                log.warning("%s", unlisted)
            summary = _compute_and_finish(
                workers, plan, start, options, (t_start, t1), seconds, dashboard, aside
            )
            finished = True
        # leaving stops the workers this run started, the close phase (a local GPU cluster's
        # CUDA contexts torn down by the driver, about 0.1 s a worker, one at a time, unless
        # options.process_ends: see cluster._stop_local); a cluster joined or given is left
        # running, and takes no time here
        return summary
    except (OSError, StoreError) as e:  # a full disk: what to do then, by what is left
        full = (
            disk_full(e, plan.output.location.join(plan.output.path))
            if isinstance(e, OSError)
            else e
        )
        if full is None or full.data.get("full") is None:  # no disk full: the error as it
            raise  # is, the output not read again (a store failing may fail that too)
        state = _left(plan, finished, exists, creating, replacing)
        # a write's line said `run --resume` wherever it came: while the output was made
        # (nothing to resume, what was there maybe deleted) as much as once it held blocks;
        # an output complete keeps the write's own line (not Python's OSError)
        then = RUN_THEN.get(state)
        raise (said_then(full, then) if then is not None else None) or full from None
    except KeyboardInterrupt as e:
        waiting.take()  # the lock is given up below, whatever comes
        if isinstance(e, Interrupted):
            raise
        state = _left(plan, finished, exists, creating, replacing)
        raise Interrupted("run", plan.output.location.join(plan.output.path), state) from None
    finally:
        if not finished:
            # the old chunks are gone before the lock is: a failure's own line stands
            with contextlib.suppress(BaseException):
                aside.finish()
            stop = sys.exc_info()[1]
            if exists and isinstance(stop, PipelineError):  # a refusal of its own, not an
                # interrupt nor a crash: the record keeps its line, which `plan`, `verify` and
                # a resume say (h85f: they had said "`run --resume` finishes it", which met it
                # again)
                output.record_stop(plan, stop)
            # the failure raised from here (sys.exc_info: the one replacing a handled one),
            # whose line says the lock stays where it cannot be given up
            ledger.give_up(sys.exc_info()[1])
            if not exists and not creating:  # the record marks what a replacement left
                remove_if_empty(made)


def _left(plan: Plan, finished: bool, exists: bool, creating: bool, replacing: bool) -> str:
    """What a run that stopped leaves at its output, as :class:`Interrupted`'s ``state``
    says it: stopped before the output was made (the cluster's start), while it was made (what
    was there partly deleted: helper-39 was told to resume, which then refused), or after it
    was complete (the workers' stop); not "resumable" in all of them. ``finished``: the run's
    work was done; ``exists``: the output was made (or resumed); ``creating``: it was being
    made, ``replacing`` what was there."""
    if finished or (exists and _marked_complete(plan)):
        return "complete"
    if creating:
        return "creating" if replacing else "creating-new"
    return _incomplete(plan) if exists else "untouched"


def _marked_complete(plan: Plan) -> bool:
    """Whether the output says it is complete (an interrupt that came after
    :func:`output.mark_complete` wrote so, while the run record was dropped or the workers
    stopped: helper-42 was told "incomplete, resumable")."""
    try:
        return output.output_state(plan) == "complete"
    except Exception:  # the interrupt's line says what is known; this is a look only
        return False


def _compute_and_finish(
    workers: Workers,
    plan: Plan,
    start: str,
    options: RunOptions,
    clock: tuple[float, float],
    seconds: dict[str, float],
    dashboard: str | None,
    aside: Aside,
) -> Summary:
    """Compute the blocks not yet written, check that every block is recorded, then mark the
    output complete; the run's summary. ``clock``: the run's start and the end of its last
    phase (the output made ready since is the ``prepare`` phase). ``aside``: the replaced
    output's chunks, deleted meanwhile: done before the output is called complete."""
    t_start, t_ready = clock
    assert plan.sink.ledger is not None
    plan.sink.ledger.adopt()  # the record its markers carry, made or found (h83f)
    if start == "resume":
        stopped = output.clear_stop(plan)
        if stopped is not None:  # it meets it again unless it was mended (h85f); a stop
            # that names nothing to mend (a lost scheduler) is said so (h86c); one of the
            # input's own data is met again, a mend of it (a changed input) then refused to a
            # resume: `run --overwrite` after it (h86f)
            log.warning(
                'the last run of %s stopped on "%s": this run %s',
                plan.output.location.join(plan.output.path),
                stopped.line,
                stopped.again(),
            )
    all_blocks = list(grid.iter_indices(plan.block_grid))
    done = _already_written(plan, start, all_blocks, options.progress)
    pending = [b for b in all_blocks if b not in done]
    workers.reset_peaks()
    t_compute = time.perf_counter()
    totals, per_worker, t_last = _compute(workers, plan, pending, options)
    # the compute phase ends with the last block's result: what follows it (Dask's
    # performance report fetched and saved, `--report`, 1.5 s of a 0.1 s run on 2 cores;
    # which worker held what) is the finish phase's, not the throughput's
    t_finish = t_last if t_last is not None else time.perf_counter()
    seconds = {**seconds, "prepare": t_compute - t_ready, "compute": t_finish - t_compute}
    markers = _check_recorded(plan, all_blocks)
    summary = summarise(
        plan,
        totals,
        _peaks(workers),
        len(pending),
        len(all_blocks) - len(pending),
        t_start,
        seconds,
        dashboard,
        "complete",
    )
    summary.blocks_per_worker = per_worker
    summary.workers_gone = [w for w in workers.gone if w in per_worker]
    skipped = [markers[b] for b in all_blocks if b in done]
    whole = _whole_counts(totals, skipped, len(pending))
    summary.nan, summary.posinf, summary.neginf = (whole[k] for k in NONFINITE)
    _check_input_unchanged(plan)
    aside.finish()
    output.mark_complete(plan, whole, summary.seconds.get("compute", 0.0))
    summary.seconds["finish"] = time.perf_counter() - t_finish
    summary.seconds["total"] = time.perf_counter() - t_start
    return summary


def _already_written(plan: Plan, start: str, all_blocks: list, progress: str) -> set:
    """The blocks the run record marks written (on a resume; none on a fresh start); how many,
    a line of the run's progress (:func:`_progress_line`)."""
    if start != "resume":
        return set()
    done, gone = _written(plan, all_blocks)
    if gone:
        log.warning(
            "resuming: %d block(s) marked written no longer hold what was written (a chunk "
            "gone, of another size or changed since (a copy that did not keep the files' "
            "times, cp -r, reads so), or a marker unreadable or of another run's record: %s): "
            "written again",
            len(gone),
            _blocks_said(gone),
        )
        done -= set(gone)
    pending = sum(1 for b in all_blocks if b not in done)
    _progress_line(
        progress,
        logging.WARNING,
        "resuming: %d of %d blocks already written (skipped), %d to go",
        len(all_blocks) - pending,
        len(all_blocks),
        pending,
    )
    return done


def _written(plan: Plan, all_blocks: list) -> tuple[set, list]:
    """The blocks of ``all_blocks`` the run record marks written, and those of them that no
    longer hold what was written (:func:`_blocks_not_as_written`: a resume writes them
    again). Reads only."""
    assert plan.sink.ledger is not None
    done = plan.sink.ledger.done() & set(all_blocks)
    return done, _blocks_not_as_written(plan, sorted(done))


def _blocks_not_as_written(plan: Plan, done: list) -> list:
    """Of the blocks marked written (``done``), those whose stored units are no longer all
    there with the bytes written (their sizes' sum against the marker's ``bytes_written``,
    where it has one): a chunk deleted, or a copy that took the run record and not every chunk
    file (helper-40), which Zarr would read as the fill value, and call complete; and those
    whose marker holds no JSON object (:meth:`Ledger.each_marker`: empty, cut short, garbage;
    no release writes one), which proves nothing of its block (h61e: a block so marked, its
    chunk cut short, had been skipped unchecked and the output marked complete, unreadable);
    and those with a unit modified after the block's marker (:meth:`Ledger.mark` writes it
    after the block's units, so a later time is a change since: a file zeroed or a byte of it
    flipped at its size, which had been skipped and the output marked complete, unreadable
    or, uncompressed, one value wrong: h82b). One listing of the array's folder, no reads
    of the units: a marker's time is its file's (local, in nanoseconds) or object's (S3's
    ``LastModified``, to the second); where the store gives no times, sizes alone."""
    info, ledger = plan.sink.info, plan.sink.ledger
    assert ledger is not None
    if not done:
        return []
    stats = info.location.file_sizes_and_times(info.path)
    markers = ledger.each_marker(done)
    gone = []
    for block, recorded in zip(done, markers, strict=True):
        keys = [info.key(u) for u in grid.units_in(block, plan.sink.block, info.unit, info.shape)]
        written = (recorded or {}).get("bytes_written")
        marked = stats.get(ledger.marker_key(block), (0, None))[1]
        if (
            recorded is None
            or any(k not in stats for k in keys)
            or (written is not None and sum(stats[k][0] for k in keys) != written)
            or (marked is not None and any((stats[k][1] or 0) > marked for k in keys))
        ):
            gone.append(block)
    return gone


def _blocks_said(blocks: Sequence[Sequence[int]]) -> str:
    """``blocks`` (block indices) as a line names them: ``[0, 1], [2, 0] and 4 more``
    (:func:`~pipeline.errors.some_shown`; the first alone had been named, h86c)."""
    return some_shown([list(b) for b in blocks])


def _check_input_unchanged(plan: Plan) -> None:
    """Refuse to call the output complete when the input was rewritten while the run read it
    (helper-40: `pipeline generate` of another seed during a run left one block of the new
    data and fifteen of the old, marked complete): InputError, fields ``input``, ``changed``
    ['input.data'] (as a resume's refusal names it); the output stays incomplete, and a
    resume refuses it too."""
    where = plan.input.location.join(plan.input.path)
    if plan.input_unchanged():
        if plan.input_unstamped is not None:  # nothing it can see changed; say what it cannot
            log.warning(
                "the input %s was not checked for a rewrite while this run read it that kept "
                "its files' names and sizes (%s)",
                where,
                plan.input_unstamped,
            )
        return
    found = plan.input_changes()  # named: a line that says only "changed" cannot be checked
    raise InputError(
        f"the input {name_shown(where)} changed while this run read it (its metadata or files, or "
        "the coordinates the output carries, were rewritten by another program"
        + (f": {found}" if found else "")
        + "), so the output may mix both: it stays incomplete; `run --overwrite` computes it "
        "again from the input as it is now",
        input=where,
        changed=["input.data"],
    )


def _check_recorded(plan: Plan, all_blocks: list) -> dict[Any, dict[str, Any]]:
    """Refuse to call the output complete unless the run record marks every block written
    (Zarr reads a missing chunk as the fill value, so the files prove nothing): OutputError
    with ``output``, ``status`` 'incomplete', ``unrecorded``, the blocks without a mark, and
    ``resumes`` True (`run --resume` retries them: nothing to mend, h86c).
    What each block's marker holds (``Ledger.recorded_markers``: one listing, and a read
    only of the markers this run neither wrote nor read in the version listed)."""
    assert plan.sink.ledger is not None
    # its markers, not their names alone: one of another run's record marks nothing (h83f)
    recorded = plan.sink.ledger.recorded_markers(all_blocks)
    missing = [b for b in all_blocks if b not in recorded]
    if missing:
        raise OutputError(
            f"{len(missing)} block(s) have no record of being written "
            f"({_blocks_said(missing)}), so the output stays incomplete; `run --resume` "
            "retries them",
            output=plan.output.location.join(plan.output.path),
            status="incomplete",
            unrecorded=missing,
            resumes=True,
        )
    return recorded


def _whole_counts(
    totals: dict[str, int], skipped: list[dict[str, Any]], written: int
) -> dict[str, int]:
    """The whole output's counts: this run's blocks, and those an interrupted run wrote (what
    their markers hold, ``skipped``)."""
    whole = {k: totals.get(k, 0) for k in ("elements", "bytes_written", *NONFINITE)}
    if not skipped:
        return whole
    before = summed_counts(skipped)
    if before is None:
        log.warning(
            "the run record of the skipped blocks has no counts: the NaN/inf counts "
            "cover only the %d blocks this run wrote",
            written,
        )
        return whole
    return {k: v + before.get(k, 0) for k, v in whole.items()}


def _peaks(workers: Workers) -> dict[str, dict[str, int]]:
    """The workers' peak memory since the run began; {} when it cannot be read."""
    with contextlib.suppress(Exception):
        return workers.peaks()
    return {}


def _dashboard(workers: Workers, plan: Plan) -> str | None:
    if plan.cluster.scheduler == "local" and not plan.cluster.dashboard:
        return None
    return workers.dashboard


def _compute(
    workers: Workers, plan: Plan, pending: list, options: RunOptions
) -> tuple[dict[str, int], dict[str, int], float | None]:
    """Run the pending blocks on ``workers``, follow them, and sum their statistics; also how
    many blocks each worker computed, and when the last block's result came (its
    ``time.perf_counter()``; None where no block ran). A task's failure comes out as the
    error that says what to change (:func:`_task_error`), Ctrl-C as
    :class:`~pipeline.errors.Interrupted`."""
    totals = dict.fromkeys(STATS, 0)
    last: list[float] = []
    if not pending:
        return totals, {}, None
    dsk, keys = graph.block_tasks(plan.source, plan.sink, plan.chain, plan.backend, pending)
    ledger = plan.sink.ledger
    block_bytes = float(np.prod(plan.block) * plan.input.dtype.itemsize)
    try:
        with Progress(len(keys), block_bytes, options.progress, options.interval) as bar:

            def add(key: Any, values: np.ndarray) -> None:
                for k, v in zip(STATS, values.reshape(-1, len(STATS)).sum(axis=0), strict=True):
                    totals[k] += int(v)
                if ledger is not None:  # its marker's bytes, known: not read at the end (h84c)
                    ledger.wrote(tuple(key[1:]), marked_counts(values))
                bar.advance()
                last[:] = [time.perf_counter()]

            per_worker = workers.compute(dsk, keys, add)
    except KeyboardInterrupt:
        waiting.take()
        raise Interrupted(
            "run", plan.output.location.join(plan.output.path), _incomplete(plan)
        ) from None
    except Exception as e:
        own = getattr(workers, "scheduler", "local") == "local"  # a cluster this run started
        error = _task_error(e, plan, own)
        if error is None:
            raise
        raise error from None
    return totals, per_worker, last[0] if last else None


def _task_error(e: Exception, plan: Plan, own: bool = True) -> PipelineError | None:
    """The error that says what to change for a task's failure ``e`` in a run of ``plan`` (on
    a cluster the run started: ``own``), where the pipeline has one: memory that ran out in a
    task (PlanError, ``memory`` 'host' or 'gpu', ``key`` 'cluster.threads_per_worker', the
    setting it says to lower: a config file's line is said); workers that died running a block
    (ClusterError 'workers-died', most likely for memory: what gives a block more memory,
    :func:`~pipeline.running.cluster.memory_advice`); a package a joined cluster's workers
    lack (ClusterError 'missing-package', :func:`~pipeline.running.cluster.lacking_module`);
    None for the rest (the pipeline's own errors among them), raised as they are."""
    if isinstance(e, ClusterError) and e.data.get("reason") == "workers-died":
        from pipeline.running.cluster import memory_advice, workers_died

        d = e.data
        more = memory_advice(plan.cluster, d.get("memory_limit"), own)
        fix = f"the output stays incomplete: {more}; then `run --resume` finishes the output"
        return workers_died(d["task"], d.get("worker"), d.get("memory_limit"), d["deaths"], fix)
    if isinstance(e, PipelineError):
        return None
    if not own:  # a package the workers of a joined cluster lack, that this process has
        from pipeline.running.cluster import lacking_module

        then = "; then `run --resume` finishes the output"
        lacking = lacking_module(e, plan.cluster.scheduler, then)
        if lacking is not None:
            return lacking
    if isinstance(e, MemoryError):
        return PlanError(
            f"out of memory in a task ({e}): lower cluster.threads_per_worker (a resume keeps "
            "this run's blocks: a smaller chunking.target_bytes takes effect only where a run "
            "starts over); then `run --resume` finishes the output",
            key="cluster.threads_per_worker",
            memory="host",
        )
    if "OutOfMemory" in type(e).__name__:
        return PlanError(
            f"the GPU ran out of memory ({e}): lower cluster.threads_per_worker (a resume keeps "
            "this run's blocks: a smaller chunking.target_bytes takes effect only where a run "
            "starts over); then `run --resume` finishes the output",
            key="cluster.threads_per_worker",
            memory="gpu",
        )
    return None
