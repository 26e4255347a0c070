"""The cluster a run uses: one it starts (and always closes), or one it joins by address.

``local`` with the GPU backend starts dask-cuda's ``LocalCUDACluster`` with
``workers_per_gpu`` workers per GPU, all at once; with the CPU backend a ``LocalCluster`` of
threads in this process (``protocol`` 'inproc') or of worker processes. An
address joins an existing scheduler whose workers were started with ``dask worker`` or
``dask cuda worker``; :class:`DaskWorkers` runs a run's graph on either. (A small local CPU
run with no dashboard and no report needs no cluster: :mod:`pipeline.running.workers`.) Each
worker gets the :class:`PipelineSetup` plugin: the device budget as the GPU memory pool's
limit, and a sampler of peak memory that the run summary reads back.

A local cluster is started and stopped so that Ctrl-C (SIGINT) ends a run at any moment and
nothing but the pipeline's own lines reaches the terminal: its worker processes never see SIGINT
(they are started with it blocked, see :class:`LocalStart`); a Ctrl-C while they start stops the
run as soon as they are up; and it is closed in order (:func:`_stop_local`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import importlib.util
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from distributed import Client, WorkerPlugin

from pipeline import errors
from pipeline.errors import ClusterError, name_shown
from pipeline.reporting.lines import PROGRESS_LINE
from pipeline.running import dashboard, fork_server, mps, threads, waiting
from pipeline.running.sampler import MemorySampler

if TYPE_CHECKING:
    from pipeline.devices.base import GpuWait
    from pipeline.store.location import Location

log = logging.getLogger("pipeline")

#: Level of Dask's own log lines (scheduler, nanny, workers) in clusters this process starts:
#: errors only, so a run's output is the pipeline's; the command line lowers it with ``-vv``.
DASK_LOG_LEVEL = logging.ERROR


class _PipelineTaskErrors(logging.Filter):
    """Drops a worker's "Compute Failed" record (with its traceback) when the task raised one
    of the pipeline's errors: the run reports that error itself, in one line."""

    NAMES = tuple(
        f"{name}("
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, errors.PipelineError)
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Compute Failed") or not record.args:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return not (len(args) > 3 and str(args[3]).startswith(self.NAMES))


def _quiet_task_errors() -> None:
    """Installs :class:`_PipelineTaskErrors` on this process's worker logger, once."""
    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _PipelineTaskErrors) for f in logger.filters):
        logger.addFilter(_PipelineTaskErrors())


class PipelineSetup(WorkerPlugin):
    """Per-worker set-up: GPU pool limit, nvCOMP allocator, how the worker's threads wait for
    the GPU (``gpu_wait``, in worker processes of their own), glibc's thresholds (in the
    worker processes of a cluster this process started: :mod:`pipeline.running.allocator`),
    the memory sampler, and the guard of the worker's heartbeat (:class:`HeartbeatGuard`), where
    the worker's start gave it none (:func:`dask_setup`: a caller's or a joined cluster's)."""

    name = "pipeline-setup"
    idempotent = False

    def __init__(
        self,
        backend: str,
        device_budget: int | None,
        interval: float = 0.05,
        chain: Any = None,
        staging_bytes: int = 0,
        ignore_sigint: bool = False,
        staging_per_thread: int = 2,
        gpu_wait: GpuWait = "auto",
    ):
        self.backend = backend
        self.device_budget = device_budget
        self.interval = interval
        self.chain = chain
        self.staging_bytes = staging_bytes
        self.staging_per_thread = staging_per_thread
        self.gpu_wait = gpu_wait
        self.ignore_sigint = ignore_sigint
        #: the workers are of a cluster this process started (not a caller's, nor one joined
        #: by address): their allocator is the pipeline's to set
        self.owned = ignore_sigint
        #: the process that made it: a worker there (a cluster of threads, ``inproc``, or a
        #: caller's ``LocalCluster(processes=False)``) is the caller's, whose warnings are its own
        self.client_pid = os.getpid()

    def setup(self, worker: Any) -> None:
        if self.ignore_sigint and threading.current_thread() is threading.main_thread():
            # it started with SIGINT blocked (see LocalStart); ignored as well, it stays without
            # it whatever a library later does with the thread's signal mask
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.backend == "gpu":
            from pipeline.devices import gpu

            gpu.setup(self.device_budget)
            if os.getpid() != self.client_pid:  # a caller's own process keeps its CUDA flags
                gpu.set_wait(self.gpu_wait)
            if self.staging_bytes:
                # the staging every thread holds at once, and the chain's kernel
                buffers = self.staging_per_thread * worker.state.nthreads
                gpu.warm(self.chain, buffers, self.staging_bytes)
        _quiet_task_errors()
        if os.getpid() != self.client_pid:  # the command line's own process does both itself
            from pipeline.running import allocator
            from pipeline.store.codecs import ignore_filter_arithmetic_warnings

            if self.owned:  # a caller's or a joined cluster's workers keep their allocator
                allocator.tune()
            ignore_filter_arithmetic_warnings()
        sampler = MemorySampler(self.backend, self.interval)
        sampler.start()
        worker._pipeline_sampler = sampler
        # a worker of a cluster this process started has its guard from its start (dask_setup)
        if not hasattr(worker, "_pipeline_heartbeat"):
            worker._pipeline_heartbeat = HeartbeatGuard(worker)
            worker._pipeline_plugin_guard = True

    async def teardown(self, worker: Any) -> None:
        sampler = getattr(worker, "_pipeline_sampler", None)
        if sampler is not None:
            sampler.stop()
        guard = getattr(worker, "_pipeline_heartbeat", None)
        if guard is not None and getattr(worker, "_pipeline_plugin_guard", False):
            del worker._pipeline_heartbeat, worker._pipeline_plugin_guard
            from distributed.core import Status

            await guard.release(
                closing=worker.status in (Status.closing, Status.closing_gracefully)
            )


class HeartbeatGuard:
    """Lets a closing worker finish its heartbeat in flight before it closes its connections.

    distributed's ``Worker.close`` removes the worker's plugins, stops its periodic callbacks
    and closes its connections to the scheduler, but does not wait for a heartbeat already
    waiting on the scheduler's reply: that heartbeat then fails with ``CommClosedError ...
    Stream is closed`` and the worker logs it, traceback and all, on the run's stderr (5 of 32
    successful runs on a busy 2-core machine). The guard tracks the heartbeat in flight; the
    teardown of the worker's preload (:func:`dask_teardown`) or of the plugin that made it
    (before the connections close) stops new ones and waits for it.
    """

    def __init__(self, worker: Any, wait: float = 10.0) -> None:
        self.callback = worker.periodic_callbacks["heartbeat"]
        self.beat = self.callback.callback
        self.wait = wait
        self.in_flight: asyncio.Future | None = None
        self.callback.callback = self._tracked

    async def _tracked(self) -> None:
        self.in_flight = asyncio.ensure_future(self.beat())
        await self.in_flight

    async def release(self, closing: bool) -> None:
        """Give the worker its own heartbeat back; when it is ``closing``, stop the heartbeats
        and wait (at most ``wait`` seconds) for the one in flight."""
        self.callback.callback = self.beat
        if not closing:
            return  # the plugin is replaced on a live worker: it keeps its heartbeat
        self.callback.stop()
        if self.in_flight is not None and not self.in_flight.done():
            await asyncio.wait([self.in_flight], timeout=self.wait)


#: A worker's states once its close has begun (``distributed.core.Status`` names).
_STOPPING = ("closing", "closing_gracefully", "closed")


class _WhileRunning(logging.Filter):
    """Lets a worker process's records through to stderr only while its worker is not
    stopping (:data:`_STOPPING`): what a worker logs as the run closes it (a heartbeat whose
    connection closed, a lost scheduler, its nanny's queue) is no failure of the run, which
    says in its own line why it stops."""

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(self.worker.status, "name", None) not in _STOPPING


def dask_setup(worker: Any) -> None:
    """The start of each worker of a local cluster of worker processes that this process
    starts (its preload, :func:`_worker_preloads`), before the worker registers with the
    scheduler, whatever becomes of the cluster's start (a Ctrl-C while it starts stops it
    before :class:`PipelineSetup` is registered): the worker's heartbeat guarded
    (:class:`HeartbeatGuard`) from its first beat, and Dask's stderr handlers in its process
    quiet once it is stopping (:class:`_WhileRunning`), unless they show Dask's info lines
    (``-vv``: the cluster's ``silence_logs``, which the worker set on them as it was made).
    A worker's heartbeat in flight as it closed, never guarded where the plugin was not
    registered (or was registered after that heartbeat began), had put distributed's "Failed
    to communicate with scheduler during heartbeat" and its 28-line traceback before the
    run's one line."""
    worker._pipeline_heartbeat = HeartbeatGuard(worker)
    handlers = {
        h
        for root in (*_SILENCED_ROOTS, "tornado")
        for h in logging.getLogger(root).handlers
        if isinstance(h, logging.StreamHandler) and h.level > logging.INFO
    }
    for h in handlers:
        h.addFilter(_WhileRunning(worker))


async def dask_teardown(worker: Any) -> None:
    """The close of a worker :func:`dask_setup` set up: its heartbeat in flight ends first."""
    guard = getattr(worker, "_pipeline_heartbeat", None)
    if guard is not None:
        from distributed.core import Status

        await guard.release(closing=worker.status in (Status.closing, Status.closing_gracefully))


def _worker_preloads() -> dict[str, Any]:
    """The options that make this module the preload of a local cluster's worker processes
    (:func:`dask_setup`), after those Dask's config names (``distributed.worker.preload``),
    which an explicit ``preload`` would otherwise replace. Arguments given to every preload
    at once (a list of strings; dask-cuda's ``--create-cuda-context`` is added so) are left
    so: this module's setup takes none."""
    import dask.config

    preload = dask.config.get("distributed.worker.preload", None) or []
    argv = dask.config.get("distributed.worker.preload-argv", None) or []
    if isinstance(preload, str):
        preload = [preload]
    if argv and not isinstance(argv[0], str):  # one list per preload
        argv = [*argv, []]
    return {"preload": [*preload, __name__], "preload_argv": list(argv)}


def _reset_peaks(dask_worker: Any) -> None:
    s = getattr(dask_worker, "_pipeline_sampler", None)
    if s is not None:
        s.reset()


def _read_peaks(dask_worker: Any) -> dict[str, int]:
    s = getattr(dask_worker, "_pipeline_sampler", None)
    return {} if s is None else s.peaks()


# --------------------------------------------------------------------------------------------
# Blocking calls on a cluster's client, and a scheduler lost meanwhile.

T = TypeVar("T")

#: What a run was doing when it lost its scheduler: the ``during`` of the ClusterError.
DOING = {
    "connect": "while connecting to it",
    "plan": "while asking its workers' facts for the plan",
    "setup": "while setting its workers up",
    "compute": "during the work",
}


def ask(
    client: Client,
    fn: Callable[[], T],
    name: str,
    address: str,
    during: str,
    to_the_end: bool = False,
) -> T:
    """``fn()``, a blocking call on ``client`` (of the scheduler ``address`` as the config
    names it, or 'local'), made off the main thread (:func:`waiting.call`, on a thread named
    ``name``, waited for to its end on a Ctrl-C where ``to_the_end``) during the run's phase
    ``during`` (a key of :data:`DOING`); its result.

    A scheduler that is gone or cannot be reached is raised as :func:`lost_scheduler`'s
    ClusterError, not as distributed's ``OSError``, ``CommClosedError`` or ``TimeoutError``
    (:func:`scheduler_gone`); at once when the client already knows it lost its connection
    (nothing is asked then: distributed would try to connect again for the client's whole
    timeout), and also when the answer came after the connection was lost (``scheduler_info``
    answers from what it last knew). A worker's or a task's error is raised as it is."""
    if client.status != "running":
        raise lost_scheduler(address, during, "connection lost")
    try:
        out = waiting.call(fn, name, to_the_end=to_the_end)
    except Exception as e:
        if scheduler_gone(e, client):
            raise lost_scheduler(address, during, type(e).__name__) from None
        other = other_pipeline(e, address) or lacking_module(e, address)
        if other is not None:
            raise other from None
        raise
    if client.status != "running":
        raise lost_scheduler(address, during, "connection lost")
    return out


def ask_workers(
    client: Client,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    name: str,
    address: str,
    during: str,
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """``client.run(fn, *args)``, {worker address: its answer}, ``what`` it is asked for (in
    the words of a line: 'its facts for the plan'), asked of each worker at once
    and each answer waited for at most ``timeout`` seconds (``cluster.timeout``), off the main
    thread as :func:`ask` asks (a lost scheduler as its ClusterError). ``Client.run`` waits
    for every worker without end: a stopped worker (SIGSTOP, a machine that froze) had kept
    the command waiting forever without a word. Workers that do not answer in time are
    raised as :func:`silent_workers`'s ClusterError (unless the scheduler went meanwhile); a
    worker that left as it was asked (its ``OSError``, and no longer the scheduler's) is left
    out."""

    def each() -> dict[str, Any]:
        workers = list(client.nthreads())  # the scheduler's workers now

        async def one(worker: str) -> tuple[str, Any]:
            try:
                got = await client.run(
                    fn, *args, workers=[worker], asynchronous=True, callback_timeout=timeout
                )
            except TimeoutError:
                return worker, _SILENT
            except OSError as e:  # the worker left, or the scheduler is gone: told below
                return worker, e
            return worker, got.get(worker, _GONE)

        async def all_of_them() -> list[tuple[str, Any]]:
            return list(await asyncio.gather(*(one(w) for w in workers)))

        answers = dict(client.sync(all_of_them))
        failed = {w: got for w, got in answers.items() if isinstance(got, OSError)}
        silent = sorted(w for w, got in answers.items() if got is _SILENT)
        for e in failed.values():
            if scheduler_gone(e, client):
                raise e  # as ask says a lost scheduler
        if silent:
            if scheduler_gone(TimeoutError(), client):  # no answer, as the scheduler went
                raise TimeoutError(f"no answer from the scheduler within {timeout:g} s")
            raise silent_workers(silent, address, during, timeout, what)
        if failed:
            there = set(client.nthreads())
            for w, e in failed.items():
                if w in there:  # a worker still there failed: its error, as it is
                    raise e
        return {w: got for w, got in answers.items() if got is not _GONE and w not in failed}

    return ask(client, each, name, address, during)


#: What :func:`ask_workers` notes for a worker that did not answer in time, or had left.
_SILENT, _GONE = object(), object()


def silent_workers(
    workers: list[str], address: str, during: str, timeout: float, what: str
) -> ClusterError:
    """The one-line ClusterError (``reason`` 'no-answer', ``workers``, ``address``,
    ``during``, ``timeout``, ``key`` 'cluster.timeout') of ``workers`` of the scheduler
    ``address`` that did not answer the run's question (``what`` it asked them for) within
    ``timeout`` seconds during its phase ``during`` (a key of :data:`DOING`)."""
    one = len(workers) == 1
    who = f"worker {workers[0]}" if one else f"workers {', '.join(workers)}"
    them, are = ("it", "is") if one else ("them", "are")
    left = "; `run --resume` finishes the incomplete output" if during == "compute" else ""
    return ClusterError(
        f"{who} of the cluster at {address} did not answer within {timeout:g} s "
        f"(cluster.timeout), asked for {what}: {them} {are} "
        f"stopped, frozen or overloaded; restart {them} (or end {them}: the run uses the "
        f"workers that answer), or raise cluster.timeout, and run again{left}",
        key="cluster.timeout",
        reason="no-answer",
        workers=tuple(workers),
        address=address,
        during=during,
        timeout=timeout,
    )


#: How distributed hands back a worker's failure to unpickle a function of the pipeline's
#: (its ``exception_text`` in a bare Exception): the package absent from the worker's Python,
#: or a name this process's pipeline has and the worker's, another version, has not.
_NO_PIPELINE = re.compile(r"No module named '(pipeline(?:\.[\w.]+)?)'")
_NOT_IN_PIPELINE = re.compile(r"Can't get attribute '([\w.]+)' on <module '(pipeline[\w.]*)'")


def other_pipeline(e: BaseException, address: str) -> ClusterError | None:
    """The one-line ClusterError for ``e``, a worker's failure to load what this process sent
    it (distributed's bare ``Exception`` quoting the worker's error), where the worker's Python
    has no pipeline (``reason`` 'no-pipeline') or another version of it, which lacks a name this
    one sends (``reason`` 'other-pipeline', ``module``, ``name``); None for any other error.
    The run had ended in ``error: Exception: ModuleNotFoundError("No module named
    'pipeline'")``, which did not say that it was the workers' (``address``: the scheduler's,
    as the config names it)."""
    if type(e) is not Exception:
        return None
    text = str(e)
    start = f"start them again with {_start(address)}"
    missing = _NO_PIPELINE.search(text)
    if missing is not None:
        return ClusterError(
            f"the workers of the cluster at {address} cannot import the pipeline (no module "
            f"named {missing.group(1)!r} in their Python): install it where they run, the "
            f"same version as this process's, or put it on their PYTHONPATH, and {start}",
            reason="no-pipeline",
            address=address,
            module=missing.group(1),
        )
    other = _NOT_IN_PIPELINE.search(text)
    if other is not None:
        name, module = other.groups()
        return ClusterError(
            f"the workers of the cluster at {address} run another version of the pipeline "
            f"than this process (their {module} has no {name!r}): {start}, in an environment "
            "with this process's version of the pipeline",
            reason="other-pipeline",
            address=address,
            module=module,
            name=name,
        )
    return None


#: A worker's ImportError of a package, as distributed hands it back (a bare Exception quoting
#: it, where the worker failed to load what this process sent) or as a task raised it.
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")

#: The top-level modules the pipeline's tasks import on a worker, of its declared dependencies
#: (a worker's Python with the pipeline installed has them; not the command's own: rich,
#: bokeh, tornado), which :func:`check_store_packages` asks the workers of a joined cluster for.
TASK_MODULES = (
    "numpy",
    "dask",
    "distributed",
    "zarr",
    "numcodecs",
    "google_crc32c",
    "fsspec",
    "pydantic",
    "yaml",
    "psutil",
)


def lacking_module(
    e: BaseException, address: str, then: str = "", workers: list[str] | None = None, total: int = 0
) -> ClusterError | None:
    """The one-line ClusterError (``reason`` 'missing-package', ``address``, ``module``,
    ``workers`` where known) for ``e``, a worker's failure to import a package that this
    process has (an ``ImportError`` a task raised, or distributed's bare ``Exception`` quoting
    one: the worker could not load what this process sent it), the pipeline's own aside
    (:func:`other_pipeline`); None for any other error, or a package this process lacks too.
    The run had ended in ``error: Exception: ModuleNotFoundError("No module named
    'pydantic'")``, or, for numcodecs missing where a task decodes, called an input chunk
    damaged and told to restore it. ``then``: what follows the fix (``; then ...``);
    ``workers`` of ``total``: those known to lack it."""
    if isinstance(e, ImportError):
        name = e.name or ""
    elif type(e) is Exception:
        found = _NO_MODULE.search(str(e))
        name = found.group(1) if found else ""
    else:
        return None
    top = name.partition(".")[0]
    if not top or top == "pipeline" or importlib.util.find_spec(top) is None:
        return None
    which = _which_workers(workers, total) if workers else "they lack"
    return ClusterError(
        f"the workers of the cluster at {address} cannot import {top!r}, which the pipeline's "
        f"tasks need ({which} it; this process has {_version_here(top)}): install it in the "
        f"workers' Python environment, as it is in this one, and start them again with "
        f"{_start(address)}{then}",
        reason="missing-package",
        address=address,
        module=top,
        workers=workers or [],
    )


def _version_here(module: str) -> str:
    """The distribution that gives this process the top-level ``module``, with its version
    ('pyyaml 6.0.2'), or the module's own name where none is known."""
    from importlib import metadata

    for dist in metadata.packages_distributions().get(module, []):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return module


def scheduler_gone(e: BaseException, client: Client) -> bool:
    """Whether ``e``, raised by a call on ``client``, says its scheduler is gone or cannot be
    reached: the client closed, or its futures cancelled under it; or an ``OSError`` (what
    distributed raises for a closed connection, ``CommClosedError``, and for a connection not
    made in time; asyncio's and concurrent.futures' ``TimeoutError`` are ``OSError`` too)
    while the client has lost its connection or the scheduler's port refuses connections.
    A worker's or a task's own ``OSError`` (a ``CommClosedError`` from a worker that died,
    passed on by the scheduler) comes while both hold, which takes :data:`CONFIRM` seconds to
    see."""
    from concurrent.futures import CancelledError

    from distributed.client import ClosedClientError

    if isinstance(e, (CancelledError, ClosedClientError)):
        return True
    if not isinstance(e, OSError):
        return False
    address = getattr(client.scheduler, "address", None)
    host_port = _host_port(address) if address else None  # None: not known (inproc, ucx)
    return _seen_within(
        lambda: (
            client.status != "running"
            or (host_port is not None and not _accepts(host_port, CONFIRM / 4))
        ),
        CONFIRM,
    )


#: Seconds within which the loss of a scheduler is seen after an error that may say so: a
#: killed scheduler's connections close a moment before its port refuses new ones, and its
#: client notices a moment later still.
CONFIRM = 2.0


def _seen_within(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether ``condition()`` holds now or within ``seconds`` (looked at every 50 ms)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _accepts(host_port: tuple[str, int], seconds: float) -> bool:
    """Whether the port ``host_port`` accepts a TCP connection within ``seconds``."""
    import socket

    try:
        socket.create_connection(host_port, timeout=seconds).close()
    except OSError:
        return False
    return True


#: What finishes a run's output that a lost scheduler stopped during the work.
_RESUME_FINISHES = "`run --resume` finishes the output"


def lost_scheduler(
    address: str,
    during: str,
    cause: str,
    unfinished: str = "what it did not finish stays marked unfinished",
    then: str = _RESUME_FINISHES,
) -> ClusterError:
    """The one-line ClusterError of the scheduler ``address`` ('local': a local cluster's)
    lost during the run's phase ``during`` (a key of :data:`DOING`), ``cause`` the error that
    said so, in a word or two. Lost during the work ('compute'), the line says what stays
    ``unfinished`` and what ``then`` finishes it (a run's output, by default; ``generate``
    says its own: the input, generated again). Fields: ``reason`` 'lost', ``address``,
    ``during``, ``cause``; ``resumes`` True where `run --resume` alone finishes the output
    (lost during a run's work: nothing there to mend, h86c)."""
    check = ""
    name = "the local cluster's scheduler"
    if address != "local":
        name = f"the Dask scheduler at {address}"
        check = f"check that it runs, with workers (`dask scheduler`, `dask worker {address}`)"
        if address.startswith("inproc://"):  # this process's own, a cluster of its threads
            check = f"check that its cluster is open, with workers ({_START_HERE})"
    fix = f"{check}, then run again" if check else "run again"
    if during == "compute":  # the command, which the run asks `run` of (runner._as_run_takes)
        fix = unfinished + (f": {check}" if check else "") + f"; then {then}"
    return ClusterError(
        f"lost {name} {DOING[during]} ({cause}); {fix}",
        address=address,
        reason="lost",
        during=during,
        cause=cause,
        **({"resumes": True} if during == "compute" and then == _RESUME_FINISHES else {}),
    )


#: How often a run on a Dask cluster asks whether it still has a worker (DaskWorkers._await).
WORKERLESS_STEP = 1.0


class DaskWorkers:
    """A run's tasks on a Dask cluster, through its ``client`` (of the scheduler ``scheduler``:
    'local' or its address), with Dask's performance report saved to ``report`` (an HTML
    file) when one is asked for. Has what a run asks of its workers
    (:class:`pipeline.running.workers.Workers`). A scheduler lost during any of its calls is
    a ClusterError (``reason`` 'lost', :func:`ask`); one lost after the work, while its
    statistics are read, only leaves them out (every block is written and recorded).
    ``timeout``: how long its work may go without a worker before a warning says so
    (cluster.timeout: :meth:`_await`)."""

    def __init__(
        self, client: Client, scheduler: str, report: str | None = None, timeout: float = 30.0
    ) -> None:
        self.client = client
        self.scheduler = scheduler
        self.report = report
        self.timeout = timeout
        self._statistics_lost = False
        self.work = "run"
        """what the tasks do, for the words of a stop (:data:`pipeline.running.threads.STOPPING`)"""
        self.gone: tuple[str, ...] = ()
        """the workers that ran tasks of the last :meth:`compute` and were gone at its end
        (killed, and started again by their nanny under another address, or left)"""

    def _ask(self, fn: Callable[[], T], name: str, during: str) -> T:
        return ask(self.client, fn, name, self.scheduler, during)

    def _ask_workers(
        self, fn: Callable[..., Any], args: tuple[Any, ...], name: str, during: str, what: str
    ) -> dict[str, Any]:
        return ask_workers(self.client, fn, args, name, self.scheduler, during, self.timeout, what)

    @property
    def dashboard(self) -> str | None:
        """The dashboard's link, None where there is none (a scheduler that serves no
        dashboard page: :func:`pipeline.running.dashboard.served`); a lost scheduler raised
        as ClusterError (a run asks for it before it makes its output)."""
        try:  # a joined scheduler's link is asked of it (a blocking call)
            link = self._ask(lambda: str(self.client.dashboard_link), "pipeline-dashboard", "setup")
        except ClusterError:
            raise
        except Exception:
            return None
        if self.scheduler == "local":  # a cluster this run started: its own dashboard
            return link
        try:
            there = dashboard.served()
            serves = self._ask(
                lambda: self.client.run_on_scheduler(there), "pipeline-dashboard", "setup"
            )
        except ClusterError:
            raise
        except Exception:  # a scheduler that does not say: the link, as it gives it
            return link
        return link if serves else None

    def wait_for_writers(self, location: Location, path: str) -> None:
        """Wait for tasks of an earlier run, whose client is gone, still writing the array
        at ``path`` in ``location`` on the workers
        (:func:`pipeline.running.tasks.wait_for_writers`; each resolves the array's links on
        its own file system, :func:`~pipeline.running.tasks.target`). Not asked of a cluster
        this run started (``scheduler`` 'local', closed at each run's end): no earlier run's
        task is on it, and the question would cost every local run a round trip to each
        worker before its output is made."""
        if self.scheduler == "local":
            return
        from pipeline.running import tasks

        def count() -> dict[str, int]:
            return self._ask_workers(
                tasks.writing,
                (location, path),
                "pipeline-writers",
                "setup",
                "the tasks of earlier runs that still write the array",
            )

        tasks.wait_for_writers(count, location.said(path))

    def reset_peaks(self) -> None:
        self._ask_workers(_reset_peaks, (), "pipeline-peaks", "compute", "its peak memory")

    def peaks(self) -> dict[str, dict[str, int]]:
        """{worker address: {"rss": bytes, "device": bytes}} since the last reset."""
        return self._statistic(
            lambda: self._ask_workers(
                _read_peaks, (), "pipeline-peaks", "compute", "its peak memory"
            ),
            "pipeline-peaks",
            {},
        )

    def _statistic(self, fn: Callable[[], T], name: str, default: T) -> T:
        """A statistic of the finished work: ``fn()`` (a blocking call), or ``default`` when
        it cannot be read (finished work never fails over it); a lost scheduler is said once,
        as a warning."""
        try:
            return self._ask(fn, name, "compute")
        except ClusterError as e:
            if e.data.get("reason") != "lost":  # a worker that did not answer: as below
                log.debug("a statistic of the work (%s): %s", name, e)
            elif not self._statistics_lost:
                self._statistics_lost = True
                log.warning(
                    "lost the Dask scheduler (%s) after the work, every block written: the "
                    "summary leaves out what only it knew (peak memory, workers gone)",
                    self.scheduler,
                )
        except Exception as e:
            log.debug("a statistic of the work (%s): %s: %s", name, type(e).__name__, e)
        return default

    def _await(self, done: threading.Event) -> None:
        """Wait for ``done`` (the work's results all in), asking a joined scheduler every
        :data:`WORKERLESS_STEP` seconds how many workers it has: once it has had none for
        ``timeout`` seconds (they all died or left during the work: a joined cluster's are
        not started again), one warning says so and what to do, and the work waits on for
        workers that join (an adaptive cluster's, say). The run had waited without a word,
        its progress stopped, until it was killed. A cluster the run started restarts its
        own workers: not asked."""
        if self.scheduler == "local":
            waiting.wait(done)
            return
        since: float | None = None
        while not waiting.wait(done, WORKERLESS_STEP):
            workers = self._ask(
                lambda: self.client.scheduler_info(n_workers=0).get("n_workers", 1),
                "pipeline-workers",
                "compute",
            )
            now = time.monotonic()
            since = None if workers else since if since is not None else now
            if since is not None and now - since >= self.timeout:
                log.warning(
                    "the cluster at %s has had no worker for %g s (they died or left during "
                    "the work): it waits for one; start workers (%s), or stop it (Ctrl-C)",
                    self.scheduler,
                    self.timeout,
                    _start(self.scheduler),
                )
                waiting.wait(done)  # said once: the work waits for workers that join
                return

    def compute(self, dsk: dict, keys: list, each: Callable[[Any, Any], None]) -> dict[str, int]:
        """Submit the graph ``dsk`` for its ``keys``, call ``each(key, result)`` as each task
        ends;
        ``{worker address: tasks it ran}``, each task counted where it ran, as its result says
        (:func:`_ran_on`), the workers gone by the end among them (:attr:`gone`). They had
        been counted where their results were held at the end (``Client.who_has``): a killed
        worker's tasks were left out, or counted on the worker that ran them again, and the
        summary's row of blocks per worker was missing. On any error the tasks are
        cancelled; a task's error is raised as the task raised it, workers that kept dying
        running a task as ClusterError (``reason`` 'workers-died', ``task``), a lost
        scheduler as ClusterError (``reason`` 'lost', ``address``, ``during`` 'compute')."""
        from distributed import as_completed

        dsk = {key: (_ran_on, *task) for key, task in dsk.items()}
        ran: dict[str, int] = {}
        self.gone = ()
        with _performance_report(self.report, self._ask, self.client):
            futures: list = []
            outcome: list[BaseException] = []
            given_up = threading.Event()

            def results() -> None:
                # on a thread of its own: as_completed waits on a Condition, which a Ctrl-C
                # landing inside it can break (running/waiting.py); this thread gets none
                try:  # on the client's loop: the run's client is no default (_client)
                    for fut in as_completed(futures, loop=self.client.loop):
                        if given_up.is_set():  # the run stopped: its results are not counted
                            return
                        worker, result = _result(fut)
                        ran[worker] = ran.get(worker, 0) + 1
                        each(fut.key, result)
                except BaseException as e:
                    outcome.append(e)

            try:
                submit = self.client.get  # sends the graph, waits for nothing
                futures = self._ask(
                    lambda: submit(dsk, keys, sync=False), "pipeline-submit", "compute"
                )
                self._await(waiting.run_in_thread(results, "pipeline-results"))
                if outcome:
                    raise outcome[0]
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    waiting.take()  # the tasks are cancelled and the cluster closed, whatever comes
                given_up.set()
                gone = isinstance(e, Exception) and scheduler_gone(e, self.client)
                if futures and not gone:  # a gone scheduler has nothing left to cancel
                    with contextlib.suppress(Exception):
                        waiting.call(lambda: self.client.cancel(futures), "pipeline-cancel")
                    if self.scheduler != "local":  # workers that stay up run on: wait for them
                        with contextlib.suppress(Exception):
                            waiting.call(lambda: self._settle(keys), "pipeline-settle")
                if gone:
                    raise lost_scheduler(self.scheduler, "compute", type(e).__name__) from None
                raise
            there = self._statistic(
                lambda: set(self.client.nthreads()),
                "pipeline-workers",
                None,
            )
            if there is not None:
                self.gone = tuple(sorted(w for w in ran if w not in there))
            return dict(sorted(ran.items()))

    def _settle(self, keys: list) -> None:
        """Return once no worker executes a task of ``keys`` any more, or after
        :data:`SETTLE_TIMEOUT` seconds (logged), whatever the workers answer: each look waits at
        most :data:`SETTLE_LOOK` seconds, and never past the deadline or past the moment the
        line "stopping: ..." is due (``Threads.TELL_AFTER``). A cancelled task that a worker is
        executing runs on to its end, writing its block: on a cluster that stays up (joined, or
        a caller's), that write could come after the run has given up the output's lock, into
        the output of the next run (an ``--overwrite`` with other stages: a stale block in an
        output marked complete). The cluster a run starts is stopped before the lock is given
        up, its tasks with it."""
        names = sorted({k[0] if isinstance(k, tuple) else k for k in keys})
        t0 = time.monotonic()
        deadline, told = t0 + SETTLE_TIMEOUT, False
        tell = t0 + threads.Threads.TELL_AFTER
        while True:
            # a worker whose event loop does not answer (a task holding it) holds each look
            # no longer than SETTLE_LOOK, the line "stopping:" no later than TELL_AFTER, and
            # the stop no longer than the deadline: a fixed 10 s had run past both
            now = time.monotonic()
            bound = min(SETTLE_LOOK, deadline - now, tell - now if not told else SETTLE_LOOK)
            try:
                running = sum(
                    self.client.run(_executing, names, callback_timeout=max(bound, 0.1)).values()
                )
            except TimeoutError:
                running = -1  # not known
            if not running:
                return
            if not told and time.monotonic() >= tell:
                told = True  # as a run on threads of this process says it
                log.warning(threads.STOPPING[self.work], extra=PROGRESS_LINE)
            if time.monotonic() >= deadline:
                log.warning(
                    "cancelled tasks may still be running on the cluster's workers after %g s, "
                    "and write blocks of this output",
                    SETTLE_TIMEOUT,
                )
                return
            time.sleep(0.1)


#: Seconds a run stopped on a cluster that stays up waits for the workers to end the tasks
#: they were executing (:meth:`DaskWorkers._settle`).
SETTLE_TIMEOUT = 120.0
#: The most seconds one look at what the workers execute waits for their answers (a worker's
#: event loop that a task holds answers none).
SETTLE_LOOK = 10.0


def _executing(names: list[str], dask_worker: Any) -> int:
    """How many tasks of the graphs ``names`` this worker is executing (cancelled ones too;
    ``Client.run`` gives ``dask_worker``)."""
    wanted = set(names)
    n = 0
    for key, ts in list(dask_worker.state.tasks.items()):
        name = key[0] if isinstance(key, tuple) else key
        if name in wanted and ts.state in ("executing", "cancelled", "resumed", "long-running"):
            n += 1
    return n


@contextlib.contextmanager
def _performance_report(path: str | None, ask: Callable[..., Any], client: Any) -> Iterator[None]:
    """Dask's performance report of what runs inside, saved to ``path`` (none when None), of
    ``client``'s cluster. Its start and its fetch from the scheduler (seconds) are blocking
    client calls, made with ``ask(fn, name, during)`` (:meth:`DaskWorkers._ask`: off the main
    thread, a lost scheduler as ClusterError). When what runs inside fails, that failure is
    what is raised, not the report's."""
    if not path:
        yield
        return
    from distributed import performance_report

    saving = performance_report(filename=path)
    ask(_as_current(client, saving.__enter__), "pipeline-report", "compute")
    done = _as_current(client, lambda: saving.__exit__(None, None, None))
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            ask(done, "pipeline-report", "compute")
        raise
    ask(done, "pipeline-report", "compute")


def _as_current(client: Any, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn``, called with ``client`` as what distributed's ``get_client()`` returns (the
    performance report asks it for its client): in the context of that call alone. The run's
    clients are no process-wide default (:func:`_client`), and a caller's client given to
    ``pipeline.run`` need not be the latest made; ``Client.as_current`` would also set Dask's
    ``scheduler`` for the whole process."""
    from distributed.client import _current_client

    def call() -> T:
        token = _current_client.set(client)
        try:
            return fn()
        finally:
            _current_client.reset(token)

    return call


def _client(address: Any, **kwargs: Any) -> Client:
    """A ``distributed.Client`` of the run's own (of a local cluster, or a scheduler's
    ``address``), never made the process's default: one that is (distributed's default
    ``set_as_default=True``) sets Dask's ``scheduler`` to ``dask.distributed`` for the whole
    process and takes ``get_client()`` and a plain ``dask.compute`` of the caller's other
    threads to the run's cluster while it runs; and two runs at once in threads, each
    restoring the setting it found on its close, left it set with no client after both had
    ended, so that the caller's next ``dask.compute`` failed ("Requested dask.distributed
    scheduler but no Client active"). The run sends its graph through the client itself."""
    return Client(address, set_as_default=False, **kwargs)


def _result(fut: Any) -> Any:
    """A task's result; workers that kept dying running it as ClusterError
    (:func:`workers_died`, its advice to read the workers' logs: the run's and
    ``generate``'s say what to change, :func:`workers_died` again)."""
    from distributed import KilledWorker

    try:
        return fut.result()
    except KilledWorker as e:
        worker = e.last_worker
        raise workers_died(
            str(e.task),
            getattr(worker, "address", None),
            getattr(worker, "memory_limit", None) or None,
            e.allowed_failures + 1,
            "the workers' logs say why",
        ) from None


def workers_died(
    task: str, worker: str | None, memory_limit: int | None, deaths: int, fix: str
) -> ClusterError:
    """The one-line ClusterError (``reason`` 'workers-died') of a task that ``deaths``
    workers, one after another, died running (Dask's ``KilledWorker``, after
    ``distributed.scheduler.allowed-failures``): the task (``task``, its key), the last
    worker (``worker``, its address) and its ``memory_limit`` (bytes, None for none), what
    most likely killed them (memory: a worker's nanny ends it past
    ``distributed.worker.memory.terminate``, 0.95 of its limit by default, and the system's
    OOM killer one past the machine's RAM; a crash, such as a segfault, is told by the
    workers' logs), then ``fix``, what to do. Fields: ``task``, ``worker``, ``memory_limit``,
    ``deaths``."""
    from pipeline.planning.memory import bytes_text

    limit = f", {bytes_text(memory_limit)}" if memory_limit else ""
    last = f" (the last {worker})" if worker else ""
    return ClusterError(
        f"{deaths} worker{'s' if deaths != 1 else ''} died one after another running "
        f"{_task_said(task)}{last}, most likely out of memory: a worker's nanny ends it past "
        f"distributed.worker.memory.terminate (0.95 of its memory limit{limit}), the system's "
        f"OOM killer one past the machine's RAM; {fix}",
        reason="workers-died",
        task=task,
        worker=worker,
        memory_limit=memory_limit,
        deaths=deaths,
    )


def memory_advice(cp: Any, memory_limit: int | None, own: bool) -> str:
    """What gives each task on the cluster the plan ``cp`` (a ``ClusterPlan``) describes more
    memory, where workers kept dying running one (:func:`workers_died`; the last one's memory
    limit ``memory_limit``, bytes, or None), by the setting that does on this cluster: where
    the run started it (``own``), ``cluster.threads_per_worker`` (fewer tasks at once on a
    worker) and ``cluster.host_memory_limit``; else (joined by address, a caller's client)
    its workers' own ``--nthreads`` and ``--memory-limit``, which the config does not set."""
    from pipeline.planning.memory import size_said

    threads = cp.threads_per_worker
    limit = memory_limit or cp.host_budget
    # the budget the config wrote (8GB) as written, where the limit is it
    now = f" ({size_said(limit, cp.host_budget)} now)" if limit else ""
    fewer = f"{threads} now: the blocks in memory at once on a worker"
    if own:
        more = f"raise cluster.host_memory_limit where the machine has the RAM{now}"
        if threads > 1:
            return f"lower cluster.threads_per_worker ({fewer}), or {more}"
        return f"{more}, or give fewer cluster.workers each more of it"
    if threads > 1:
        more = f"fewer threads ({fewer}) or a larger memory limit{now}"
        return f"start the workers with {more}: `dask worker --nthreads N --memory-limit SIZE`"
    return f"start the workers with a larger memory limit{now}: `dask worker --memory-limit SIZE`"


#: A task key of the pipeline's as a line says it: ('pipeline-block-TOKEN', i, j) is block (i, j).
_TASK_KEY = re.compile(r"^\('pipeline-(block|generate)-[0-9a-f]+', ([0-9, ]+)\)$")


def _task_said(task: str) -> str:
    """The task ``task`` (its key, as ``str``) as the line says it: 'block (0, 3)' for a run's
    block, 'the input's unit (0, 3)' for one ``generate`` writes, else 'task KEY'."""
    m = _TASK_KEY.match(task)
    if m is None:
        return f"task {task}"
    where = "block" if m.group(1) == "block" else "the input's unit"
    return f"{where} ({m.group(2).strip().rstrip(',')})"


def _ran_on(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """A task of :meth:`DaskWorkers.compute`: (the address of the worker it ran on,
    ``fn(*args)``)."""
    from distributed import get_worker

    return get_worker().address, fn(*args)


#: Seconds a closing worker gets to finish its tasks and stop before its nanny kills it; long,
#: since on a busy machine a worker's clean stop can take several seconds (Dask's default of 5
#: ran out and left a ``TimeoutError`` traceback on stderr).
WORKER_STOP_TIMEOUT = 30.0


@contextlib.contextmanager
def connect(
    plan_cluster: Any,
    quiet: bool | None = None,
    plugin: WorkerPlugin | None = None,
    process_ends: bool = False,
    started: LocalStart | None = None,
) -> Iterator[Client]:
    """Start or join the cluster the plan describes; always close what was started.

    ``quiet``: Dask's own logs at errors only (True), warnings (False), or ``DASK_LOG_LEVEL``.
    ``process_ends``: this process ends as soon as the work is done (the command line's), so
    a local cluster's close, after a run that raised nothing, stops waiting once every worker
    process is exiting (:func:`_stop_local`).
    A local cluster starts on a thread of its own (:class:`LocalStart`); a Ctrl-C
    (``KeyboardInterrupt``) while it starts, or at any later moment, closes it in order
    (:func:`_stop_local`) before the interrupt goes on. Raises :class:`ClusterError` when a
    local cluster cannot start. ``started``: the local cluster's start, begun already
    (:func:`begin`) for this plan.
    """
    if plan_cluster.scheduler != "local":
        client = join(plan_cluster.scheduler, plan_cluster.timeout)
        try:
            setup = plugin or PipelineSetup(plan_cluster.backend, plan_cluster.device_budget)
            with registered(client, setup, plan_cluster.scheduler):
                yield client
        finally:
            close_client(client)
        return
    setup = _with_sigint(plugin) or PipelineSetup(
        plan_cluster.backend, plan_cluster.device_budget, ignore_sigint=True
    )
    startup = started or LocalStart(plan_cluster, _level(quiet))
    try:
        yield startup.client(setup)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            waiting.take()  # the cluster is closed in order, whatever comes
        startup.stop()
        raise
    if startup.stop(process_ends):
        raise KeyboardInterrupt  # pressed while the cluster closed after the work was done


def _level(quiet: bool | None) -> int:
    """The level of Dask's own logs for :func:`connect`'s ``quiet``."""
    return DASK_LOG_LEVEL if quiet is None else (logging.ERROR if quiet else logging.WARNING)


#: Seconds :func:`begin` waits at most for the workers' processes to be forked.
FORK_WAIT = 1.0


def begin(plan_cluster: Any, quiet: bool | None = None) -> LocalStart:
    """Begin starting the local cluster of ``plan_cluster`` (a
    :class:`~pipeline.planning.plan.ClusterPlan`, scheduler 'local') on a thread of its own,
    and return once its worker processes are forked (:meth:`LocalStart.wait_forked`, at most
    :data:`FORK_WAIT` seconds): the caller then does its own work (a run's plan) while the
    workers start in their processes, and hands the start to :func:`connect` (``started``),
    which registers the plugin and closes the cluster (a later ``stop()`` then does nothing);
    where it never does, the caller stops it (``stop()``). The start's own Python work (up to
    the forks; the workers' registration with the scheduler follows on Dask's event loop) is
    done before the caller's begins: the two on two threads of one interpreter took turns
    on its lock (H200 host, 2026-12-03: the workers were forked 0.25 s later and the plan
    ended 0.70 s later than one after the other). Raises ``KeyboardInterrupt`` on Ctrl-C
    (the start is stopped first)."""
    startup = LocalStart(plan_cluster, _level(quiet))
    try:
        startup.begin()
        startup.wait_forked(FORK_WAIT)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            waiting.take()  # the start is stopped in order, whatever comes
        startup.stop()
        raise
    return startup


#: The loggers whose stderr handlers a run's local cluster quiets (distributed's
#: ``silence_logs`` does the same two).
_SILENCED_ROOTS = ("distributed", "bokeh")
_silence_lock = threading.Lock()
#: The level each run whose local cluster is up asked for (:func:`silenced_logs`), one list
#: of one level each, told apart by identity.
_silence_levels: list[list[int]] = []
#: The level of Dask's stderr handlers in this process while a run's local cluster stops,
#: where the run's level shows no info lines (``-vv``): none of distributed's records.
STOPPING_LEVEL = logging.CRITICAL + 1
#: Each quieted handler's level before the first of them, put back after the last.
_silence_saved: dict[logging.Handler, int] = {}


@contextlib.contextmanager
def silenced_logs(level: int) -> Iterator[Callable[[], None]]:
    """Dask's (and bokeh's) stderr handlers at ``level`` while a run's local cluster is up,
    counted across runs: the first to enter saves their levels, the last to leave puts them
    back, and while several are up the handlers take the most verbose level asked for. Two
    runs at once in one process (threads) each gave their cluster distributed's
    ``silence_logs``, which saved the level it found and restored it on close: the second
    saved the first's lowered level, and the first's close brought Dask's INFO lines back
    while the second ran. Entered before the cluster is made, so that distributed's own
    ``silence_logs`` (still given: it quiets the worker processes too) finds the handlers at
    its level already, and saves and restores nothing in this process. Yields the call that
    says the run's cluster is stopping: from then its handlers let nothing of Dask's through
    (:data:`STOPPING_LEVEL`, unless ``level`` shows info lines), as its worker processes do
    (:func:`dask_setup`): the scheduler's and nannies' errors as the run closes them are no
    failure of the run, which says its own line (an API caller's process: the command line's
    has distributed's loggers at CRITICAL, ``cli._driver_level``)."""
    entry = [level]

    def stopping() -> None:
        if level > logging.INFO:
            with _silence_lock:
                entry[0] = STOPPING_LEVEL
                _set_silence()

    with _silence_lock:
        if not _silence_levels:
            _silence_saved.clear()
            for root in _SILENCED_ROOTS:
                for h in logging.getLogger(root).handlers:
                    if isinstance(h, logging.StreamHandler):
                        _silence_saved[h] = h.level
        _silence_levels.append(entry)
        _set_silence()
    try:
        yield stopping
    finally:
        with _silence_lock:
            _silence_levels[:] = [e for e in _silence_levels if e is not entry]
            _set_silence()


_environ_lock = threading.Lock()
#: the local clusters of worker processes up now, and this process's environment before them
_environ_users: list[object] = []
_environ_saved: dict[str, str] = {}


@contextlib.contextmanager
def nanny_environment() -> Iterator[None]:
    """This process's environment put back, once the local clusters of worker processes up in
    it are closed, where distributed's nanny had changed it: before it spawns a worker it sets
    its ``pre-spawn-environ`` (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS``: 1, ``MALLOC_TRIM_THRESHOLD_``, a fixed ``PYTHONHASHSEED``) and
    ``__DASK_PARENT_PID`` in its own process's ``os.environ``, which an API caller's later
    subprocesses inherited after ``pipeline.run`` had returned. Counted across runs, as
    :func:`silenced_logs` is (two at once in threads: the first to enter saves, the last to
    leave puts back); a variable whose value is no longer the nanny's (set since by the caller)
    is left as it is."""
    from pipeline.running.fork_server import pre_spawn_environ

    token = object()
    with _environ_lock:
        if not _environ_users:
            _environ_saved.clear()
            _environ_saved.update(os.environ)
        _environ_users.append(token)
    try:
        yield
    finally:
        with _environ_lock:
            _environ_users.remove(token)
            if not _environ_users:
                saved = dict(_environ_saved)
                _environ_saved.clear()
                nanny = {**pre_spawn_environ(saved), "__DASK_PARENT_PID": str(os.getpid())}
                for name, value in nanny.items():
                    if os.environ.get(name) != value:
                        continue
                    if name in saved:
                        os.environ[name] = saved[name]
                    else:
                        os.environ.pop(name, None)


def _set_silence() -> None:
    """The quieted handlers at the most verbose level the runs up now asked for; at their own
    again when none is (call with ``_silence_lock`` held)."""
    for h, saved in _silence_saved.items():
        h.setLevel(min(e[0] for e in _silence_levels) if _silence_levels else saved)
    if not _silence_levels:
        _silence_saved.clear()


def _with_sigint(plugin: WorkerPlugin | None) -> WorkerPlugin | None:
    """``plugin``, set to ignore SIGINT in the workers of a cluster this process owns (and
    to set their allocator, :attr:`PipelineSetup.owned`)."""
    if isinstance(plugin, PipelineSetup):
        plugin.ignore_sigint = plugin.owned = True
    return plugin


def _script_hint() -> str:
    """Words for a cluster that did not start where this process runs a script with no
    ``if __name__ == "__main__":`` in it: its worker processes import the script again, and
    one that calls ``pipeline.run`` unguarded runs it again in each (whose lock on the output
    refuses them, so the workers fail to start). Not for ``python -m pipeline``, the
    ``pipeline`` command (whose script is guarded) or a guarded script (review: the hint had
    followed every failure in any of them)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if path is None or (spec is not None and spec.name.split(".")[0] == "pipeline"):
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read(1 << 20)
    except OSError:
        return ""
    if re.search(r"__name__\s*==\s*['\"]__main__['\"]", source):
        return ""
    return (
        "; where a script calls pipeline.run, its worker processes import the script again: "
        'call it under `if __name__ == "__main__":`'
    )


class LocalStart:
    """A local cluster brought up on a thread of its own, with SIGINT blocked on that thread.

    Ctrl-C at a terminal signals the whole process group. The workers must not get it (each
    would die with a traceback, and their work with them); only this process stops the run and
    closes the cluster. Dask's event loop thread, which starts the worker processes, is made by
    the starting thread and so inherits its blocked SIGINT, and a process started from it keeps
    the blocked signal through exec (what Python's own resource tracker relies on, bpo-33613).
    The main thread keeps SIGINT, so a Ctrl-C while the workers start is not lost (a process-wide
    ignored SIGINT would drop it): the main thread's wait is interrupted, and :meth:`stop` lets
    the start finish (at most ``START_WAIT`` seconds), then closes the cluster.

    Nothing starts before :meth:`begin` (or :meth:`client`); :meth:`stop` is safe at any
    moment after (a start that had not begun never will), and more than once. From
    :meth:`begin` to :meth:`stop`, Dask's loggers are quieted (:func:`silenced_logs`). The
    workers' plugin may be given once the start is under way (:meth:`client`): the start
    registers it as soon as the workers are up, or :meth:`client` does, whichever comes later.
    """

    #: Seconds :meth:`stop` waits for a start under way (its own timeouts end it sooner).
    START_WAIT = 300.0

    def __init__(self, p: Any, level: int, plugin: WorkerPlugin | None = None) -> None:
        self.plan = p
        self.cluster: Any = None
        self.client_: Client | None = None
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self.done = waiting.Done()
        self._lock = threading.Lock()
        self._begun = False
        self._stopped = False
        self._plugin = plugin
        self._registered = False  # the plugin, by the start (under _lock)
        self._level = level
        self._quiet = contextlib.ExitStack()
        self._stopping: Callable[[], None] = lambda: None  # silenced_logs' (begin)
        self.processes = p.backend == "gpu" or p.protocol != "inproc"
        self.mps: mps.Daemon | None = None
        self._thread = threading.Thread(
            target=self._start, args=(p, level), name="pipeline-cluster-start", daemon=True
        )

    def _start(self, p: Any, level: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        with self._lock:
            if self.cancelled.is_set():
                self.done.set()
                return
            self._begun = True
        try:
            try:  # its workers too: the client's wait for them ends in a TimeoutError
                if p.mps:
                    self.mps = mps.take(p.mps)  # the command line may have started it
                self.cluster = _start_local(p, level, self.mps.env if self.mps else {})
                if self.cancelled.is_set():
                    return
                self.client_ = _client(self.cluster)
                self.client_.wait_for_workers(p.workers, timeout=120)
            except (ImportError, OSError, RuntimeError, ValueError, TimeoutError) as e:
                raise ClusterError(
                    f"the local Dask cluster did not start ({e}); check the config's "
                    "cluster section (dashboard address, workers, memory limits)" + _script_hint(),
                    address="local",
                    reason="did-not-start",
                ) from None
            with self._lock:
                plugin, self._registered = self._plugin, self._plugin is not None
            if plugin is not None and not self.cancelled.is_set():
                self.client_.register_plugin(plugin)
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()

    def begin(self) -> None:
        """Begin the start on its thread (once; later calls do nothing) and return."""
        if self._thread.is_alive() or self.done.is_set() or self._stopped:
            return
        self._stopping = self._quiet.enter_context(silenced_logs(self._level))
        if self.processes:
            self._quiet.enter_context(nanny_environment())
            from multiprocessing import resource_tracker

            # The tracker's start unblocks SIGINT in the thread that starts it: start it here,
            # so that the starting thread still has SIGINT blocked when it starts the workers.
            # (Workers that are threads of this process need neither it nor a blocked SIGINT.)
            resource_tracker.ensure_running()
        self._thread.start()

    def wait_forked(self, seconds: float) -> None:
        """Wait until the start has forked or spawned every worker process (this process's
        children that ``multiprocessing`` started: only the cluster's, in the command line's
        process), or has ended, or ``seconds`` have passed: the start's Python work up to the
        forks (the scheduler, the nannies) is then done; the workers then start in their own
        processes, and their registration with the scheduler runs on Dask's event loop.
        Raises ``KeyboardInterrupt`` on Ctrl-C."""
        import multiprocessing

        deadline = time.monotonic() + seconds
        while not self.done.is_set() and time.monotonic() < deadline:
            if len(multiprocessing.active_children()) >= self.plan.workers:
                return
            waiting.wait(self.done, 0.005)

    def client(self, plugin: WorkerPlugin | None = None) -> Client:
        """Start the cluster (where :meth:`begin` has not); its client once it is up, with
        ``plugin`` (where given) registered with its workers. Raises the start's error, what
        a worker's set-up raised, or the ``KeyboardInterrupt`` of a Ctrl-C while waiting."""
        with self._lock:
            if self._stopped:  # a stopped start never comes up
                raise ClusterError(
                    "the local Dask cluster was stopped before it was used",
                    address="local",
                    reason="stopped",
                )
            if plugin is not None and self._plugin is None:
                self._plugin = plugin
        self.begin()
        waiting.wait(self.done)
        if self.error is not None:
            raise self.error
        assert self.client_ is not None
        with self._lock:
            late = not self._registered and self._plugin is not None
            self._registered = self._registered or late
        given = self._plugin
        if late and given is not None:  # given once the workers were up: registered here
            client = self.client_
            waiting.call(lambda: client.register_plugin(given), "pipeline-plugin")
        return self.client_

    def stop(self, process_ends: bool = False) -> bool:
        """Wait for a start under way to end, then close what it started, in order; each step
        runs to its end even when Ctrl-C interrupts it (``process_ends``: see
        :func:`_stop_local`). Whether a Ctrl-C came meanwhile. A second call does nothing."""
        with self._lock:
            self.cancelled.set()
            begun = self._begun
            if self._stopped:
                return False
            self._stopped = True
        self._stopping()
        try:
            interrupted = begun and _to_the_end(lambda: waiting.wait(self.done, self.START_WAIT))
            if not self.done.is_set():
                return interrupted
            if self.cluster is not None:
                cluster, self.cluster = self.cluster, None
                interrupted = _stop_local(self.client_, cluster, process_ends) or interrupted
            if self.mps is not None:  # once its clients, the workers, are gone or going
                daemon, self.mps = self.mps, None
                interrupted = (
                    _to_the_end(lambda: mps.stop(daemon, wait=not process_ends)) or interrupted
                )
            return interrupted
        finally:
            self._quiet.close()


def _to_the_end(step: Callable[[], Any]) -> bool:
    """Run ``step`` to its end on a thread of its own (its waits are distributed's, which a
    Ctrl-C landing inside them could break: running/waiting.py), even when a Ctrl-C interrupts
    the wait for it; its errors are logged at debug level and dropped (closing goes on).
    Whether a Ctrl-C came meanwhile."""
    try:
        waiting.call(step, "pipeline-close", to_the_end=True)
    except KeyboardInterrupt:
        return True
    except Exception as e:
        log.debug("closing the cluster: %s: %s", type(e).__name__, e)
    return False


def register(client: Client, plugin: WorkerPlugin, address: str) -> None:
    """Register ``plugin`` with the workers of ``client``'s scheduler (``address``, as the
    config names it): each worker runs its set-up now, and every worker that joins later
    runs it too. Raises what a worker's set-up raised, ClusterError for a lost scheduler."""
    ask(client, lambda: client.register_plugin(plugin), "pipeline-plugin", address, "setup")


#: Names, on a joined scheduler, of the distributed ``Semaphore`` whose leases are the runs of
#: the pipeline using its workers' plugin there, and of the ``Lock`` under which a run takes its
#: lease and registers the plugin, or gives it back and unregisters the plugin.
PLUGIN_USERS = "pipeline-setup-users"
PLUGIN_GUARD = "pipeline-setup-guard"
#: Leases of :data:`PLUGIN_USERS`: more runs at once than any scheduler sees.
_MAX_USERS = 1 << 20
#: Seconds a run's end waits at most for :data:`PLUGIN_GUARD`.
GUARD_WAIT = 30.0


@contextlib.contextmanager
def registered(client: Client, plugin: WorkerPlugin, address: str) -> Iterator[None]:
    """``plugin`` registered (:func:`register`) with the workers of a joined scheduler
    (``client``'s, ``address`` as the config names it) while the block runs; at its end it is
    unregistered again, unless another run of the pipeline still uses it. A plugin left on a
    shared scheduler was sent to every worker that joined it later: one started from a Python
    without the pipeline could not unpickle it and never started. The runs using the plugin
    are the leases of a distributed ``Semaphore`` on the scheduler (:data:`PLUGIN_USERS`;
    a lease of a run whose process died expires with its client's), taken and given back
    under a distributed ``Lock`` (:data:`PLUGIN_GUARD`), so that a run ending while another
    starts never unregisters the plugin that one has just registered.

    The scheduler is left as it was however the run ends: done, refused, failed, or stopped
    by Ctrl-C at any moment. A worker's set-up that raises leaves the plugin registered on
    the scheduler (distributed stores it before it sends it to the workers): it is
    unregistered before the error is raised (unless another run uses it). A Ctrl-C while the
    plugin is registered waits for the registration's end (it had gone on on its own thread,
    after the run had ended), then the end is done and the ``KeyboardInterrupt`` raised.
    Raises what :func:`register` raises; the end's errors are dropped (the scheduler may be
    gone)."""
    from distributed import Lock, Semaphore

    users = Semaphore(_MAX_USERS, PLUGIN_USERS, client.scheduler, client.loop)
    guard = Lock(PLUGIN_GUARD, client.scheduler, client.loop)
    name = _plugin_name(plugin)
    leased: list[bool] = []  # the lease this run holds, once taken

    def give_back() -> None:  # under the guard
        leased.clear()
        with contextlib.suppress(Exception):  # a lease expired meanwhile counts no more
            users.release()
        if users.get_value() == 0:
            client.unregister_worker_plugin(name)

    def enter() -> None:
        guard.acquire()
        try:
            users.acquire()
            leased.append(True)
            try:
                client.register_plugin(plugin)
            except BaseException:
                with contextlib.suppress(Exception):  # the worker's error is what is raised
                    give_back()
                raise
        finally:
            guard.release()

    def leave() -> None:
        if not guard.acquire(timeout=GUARD_WAIT):
            return  # another run holds it past all reason: the plugin is left
        try:
            give_back()
        finally:
            guard.release()

    try:
        try:
            ask(client, enter, "pipeline-plugin", address, "setup", to_the_end=True)
            yield
        finally:
            if leased and client.status == "running":
                with contextlib.suppress(Exception):
                    waiting.call(leave, "pipeline-plugin", to_the_end=True)
    finally:
        for held in (users, guard):  # their leases' refresh, on the client's event loop
            callback = getattr(held, "refresh_callback", None)
            if callback is not None and client.loop is not None:
                client.loop.add_callback(callback.stop)


def _plugin_name(plugin: WorkerPlugin) -> str:
    """The name ``plugin`` is registered under (distributed's own rule)."""
    from distributed.diagnostics.plugin import _get_plugin_name

    return str(_get_plugin_name(plugin))


def _worker_side() -> tuple[
    Callable[[str | None], dict[str, Any]],
    Callable[[list[str], str | None, list[str]], dict[str, Any]],
]:
    """``(pipeline_here, on_worker)``, made inside this function so that cloudpickle sends
    them by value (it sends a module's own function by name): a worker whose pipeline is
    another version, lacks these very functions, or is none, still answers which it runs.

    ``pipeline_here(unless)``: the pipeline the calling process imports, {'version': its
    ``__version__``, 'path': its folder, 'source': the first 16 hex digits of the SHA-256 of
    its source (every ``.py`` file of the package, ``__pycache__`` left out, by relative path
    and bytes: 1.4 MB, a few milliseconds), 'code': the same of its code, where ``unless`` is
    a 'source' and not this one (the caller's, or '' to have it: else None), each file's
    syntax tree without its positions and docstrings (``ast.dump``), so that an edit of
    comments, docstrings, blank lines or layout alone does not count (a file Python cannot
    parse counts by its bytes; 0.4 s), 'unread': why the source could not be read (a
    package whose loader gives no ``.py`` files: compiled files alone, a loader of its own),
    else None}; 'version' and 'path' None where it has no pipeline, 'source' and 'code' None
    where it has none or 'unread' says why. The files are read through the package's loader
    (``importlib.resources``): a folder, or a zip file on ``sys.path``.
    ``on_worker(urls, source, modules, needed)``: what a joined cluster's worker answers
    :func:`check_store_packages`, one round trip: {'pipeline': ``pipeline_here(source)``
    there, 'missing': :func:`~pipeline.store.location.missing_packages` of ``urls`` there,
    'shadows': :func:`~pipeline.shadowing.shadowing_files` there of ``modules`` (those this
    process has imported: the run's tasks import them there), each None where its pipeline
    has none; 'lacks': those of ``needed`` (top-level modules, :data:`TASK_MODULES`) its
    Python cannot find}. Both use the standard library and the package alone."""

    def without_docstrings(tree: Any) -> Any:
        """``tree`` (an ``ast.Module``) with the docstrings of its module, classes and
        functions left out: the text the README and ``pipeline plan`` show, never what a task
        runs."""
        import ast

        for node in ast.walk(tree):
            kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
            body = getattr(node, "body", None) if isinstance(node, kinds) else None
            if body and isinstance(body[0], ast.Expr):
                value = body[0].value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    setattr(node, "body", body[1:])  # noqa: B010 (each kind's own body)
        return tree

    def pipeline_here(unless: str | None = None) -> dict[str, Any]:
        import ast
        import hashlib

        try:  # the package's own version module (every release has one), not its API
            from pipeline import _version
        except ImportError:
            return {"version": None, "source": None, "code": None, "path": None, "unread": None}
        version = getattr(_version, "__version__", None)
        facts: dict[str, Any] = {"version": version, "source": None, "code": None}
        try:
            from importlib.resources import files

            root = files("pipeline")
            facts["path"] = str(root).rstrip("/\\")
            sources: list[tuple[str, bytes]] = []
            folders = [("", root)]
            while folders:
                relative, folder = folders.pop()
                for entry in folder.iterdir():
                    if entry.is_dir():
                        if entry.name != "__pycache__":
                            folders.append((f"{relative}{entry.name}/", entry))
                    elif entry.name.endswith(".py"):
                        sources.append((relative + entry.name, entry.read_bytes()))
        except Exception as e:  # a loader that gives no files
            return {"path": None, **facts, "unread": f"{type(e).__name__}: {e}"}
        if not sources:
            return {**facts, "unread": f"no .py files at {facts['path']}"}
        sources.sort()
        digest = hashlib.sha256()
        for relative, text in sources:
            digest.update(relative.encode() + b"\0" + text)
        facts["source"] = digest.hexdigest()[:16]
        if unless is not None and facts["source"] != unless:
            code = hashlib.sha256()
            for relative, text in sources:
                try:
                    tree = ast.dump(without_docstrings(ast.parse(text))).encode()
                except (SyntaxError, ValueError):
                    tree = text
                code.update(relative.encode() + b"\0" + tree + b"\0")
            facts["code"] = code.hexdigest()[:16]
        return {**facts, "unread": None}

    def on_worker(
        urls: list[str], source: str | None, modules: list[str], needed: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        import importlib.util

        facts = pipeline_here(source)
        lacks = []
        for name in needed:
            try:
                if importlib.util.find_spec(name) is None:
                    lacks.append(name)
            except (ImportError, ValueError):
                lacks.append(name)
        try:
            from pipeline.shadowing import shadowing_files
            from pipeline.store.location import missing_packages
        except ImportError:  # no pipeline, or one without them
            return {"pipeline": facts, "missing": None, "shadows": None, "lacks": lacks}
        try:
            shadows = shadowing_files(modules)
        except TypeError:  # another pipeline's, which takes no modules: refused as another
            shadows = None
        missing = missing_packages(urls)
        return {"pipeline": facts, "missing": missing, "shadows": shadows, "lacks": lacks}

    return pipeline_here, on_worker


#: The pipeline this process imports (``pipeline_here()`` of :func:`_worker_side`), once: its
#: source does not change under a run. Its 'code' too, once a worker's source differed.
_HERE: list[dict[str, Any]] = []


def _this_pipeline(code: bool = False) -> dict[str, Any]:
    if not _HERE or (code and _HERE[0]["code"] is None and _HERE[0]["source"] is not None):
        _HERE[:] = [_worker_side()[0]("" if code else None)]
    return _HERE[0]


def _imported_modules() -> list[str]:
    """The top-level modules this process has imported from files (a run's tasks import the
    same on the workers), the program's own and the pipeline left out, and those it imported
    from a file of the user's itself (a script's own ``test.py``: meant, not taken by
    mistake, where the workers start in its folder too)."""
    from pipeline.shadowing import shadowing_files

    names = []
    for name, module in list(sys.modules.items()):
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        if "." not in name and isinstance(origin, str) and os.path.isabs(origin):
            names.append(name)
    mine = {name for name, _, _ in shadowing_files()}
    return sorted(set(names) - mine - {"__main__", "__mp_main__", "pipeline"})


def check_store_packages(
    client: Client, address: str, stores: dict[str, Any], timeout: float
) -> None:
    """Refuse, before anything is written, workers of ``client``'s scheduler (``address``, as
    the config names it) that run another pipeline than this process's, or lack a package its
    tasks import (:data:`TASK_MODULES`: ClusterError 'missing-package' with ``module``, by
    :func:`lacking_module`; a worker without numcodecs had called each input chunk damaged,
    after the output was made), or that cannot open a
    store, in one round trip to them (which the plan of a joined cluster makes anyway; a local
    cluster the run starts runs this process's pipeline and is not asked), or that would
    import a file of the user's in the place of a module this process imported
    (:func:`_check_shadows`: ShadowedModuleError).

    Another pipeline: another version, or the same version edited (its source's digest,
    :func:`_worker_side`), or none; the workers would run other code than this process
    plans for, silently, unless a name this process sends was missing there
    (:func:`other_pipeline`). ClusterError (``reason`` 'other-pipeline', ``address``,
    ``workers``: those whose pipeline differs, ``theirs`` and ``ours``: the first one's and
    this process's pipeline, as :func:`_worker_side` says them; 'no-pipeline' with
    ``workers`` where it has none).

    A store whose file system the workers cannot open for want of its package
    (:func:`~pipeline.store.location.missing_packages`: s3fs for ``s3://``, aiohttp for
    ``http://``), though this process has it: ``stores`` is {'input' or 'output': its
    :class:`~pipeline.store.location.Location`}. Every task had failed with ``cannot open
    URL: Install s3fs to access S3``, which named no worker (this process has s3fs), after
    the output was made. ClusterError (``reason`` 'missing-package', ``address``, ``store``,
    ``workers``: those that lack it, ``cause``: fsspec's line); ClusterError 'lost' for a
    lost scheduler, and workers that do not answer within ``timeout`` seconds as
    :func:`silent_workers`'s."""
    urls = sorted({loc.url for loc in stores.values()})
    on_worker = _worker_side()[1]
    ours = _this_pipeline()
    modules = _imported_modules()
    answers: dict[str, dict[str, Any]] = ask_workers(
        client,
        on_worker,
        (urls, ours["source"], modules, _needed()),
        "pipeline-packages",
        address,
        "plan",
        timeout,
        "its packages",
    )
    _check_pipeline(address, ours, {w: a["pipeline"] for w, a in answers.items()})
    _check_task_modules(address, {w: a.get("lacks") or [] for w, a in answers.items()})
    _check_shadows(address, {w: a.get("shadows") or [] for w, a in answers.items()})
    missing = {w: a["missing"] or {} for w, a in answers.items()}
    for setting, loc in stores.items():
        lacking = sorted(w for w, there in missing.items() if loc.url in there)
        if not lacking:
            continue
        why = missing[lacking[0]][loc.url]
        raise ClusterError(
            f"the {setting} store {name_shown(loc)} cannot be opened on the cluster at {address}: "
            f"{_which_workers(lacking, len(answers))} its file system's package ({why}); "
            "install it in the workers' Python environment, as it is in this one, and start "
            "them again",
            reason="missing-package",
            address=address,
            store=str(loc),
            workers=lacking,
            cause=why,
        )


def _needed() -> tuple[str, ...]:
    """Of :data:`TASK_MODULES`, those this process has: what its workers must have too."""
    return tuple(m for m in TASK_MODULES if importlib.util.find_spec(m) is not None)


def _check_task_modules(address: str, lacks: dict[str, list[str]]) -> None:
    """Refuse workers (``lacks``: {worker address: the task modules it cannot import}) of the
    scheduler ``address`` that lack a package the pipeline's tasks import
    (:func:`lacking_module`), before anything is written: the first of them, by name."""
    missing = sorted({m for there in lacks.values() for m in there})
    if not missing:
        return
    module = missing[0]
    which = sorted(w for w, there in lacks.items() if module in there)
    error = lacking_module(ModuleNotFoundError(name=module), address, "", which, len(lacks))
    if error is not None:
        raise error


def _which_workers(some: list[str], total: int, verb: tuple[str, str] = ("lack", "lacks")) -> str:
    """'its worker W lacks' where the cluster has one worker; '2 of its 3 workers (W, ...)
    lack' else (``some``: the workers said, sorted; ``verb``: its plural and singular)."""
    if total == 1:
        return f"its worker {some[0]} {verb[1]}"
    more = ", ..." if len(some) > 1 else ""
    return f"{len(some)} of its {total} workers ({some[0]}{more}) {verb[len(some) == 1]}"


def _check_pipeline(address: str, ours: dict[str, Any], theirs: dict[str, dict[str, Any]]) -> None:
    """Refuse workers (``theirs``: {worker address: its pipeline, :func:`_worker_side`}) of the
    scheduler ``address`` whose pipeline is not this process's (``ours``): see
    :func:`check_store_packages`."""
    start = f"start them again with {_start(address)}"
    none = sorted(w for w, t in theirs.items() if t.get("source") is None and not t.get("unread"))
    if none:
        which = _which_workers(none, len(theirs), ("have", "has"))
        raise ClusterError(
            f"the workers of the cluster at {address} cannot import the pipeline ({which} "
            "none in their Python): install it where they run, the same version as this "
            f"process's, or put it on their PYTHONPATH, and {start}",
            reason="no-pipeline",
            address=address,
            module="pipeline",
            workers=none,
        )
    other = sorted(w for w, t in theirs.items() if not _same_pipeline(ours, t))
    unread = sorted(w for w, t in theirs.items() if t.get("source") is None or not ours["source"])
    if unread and not other:  # the same version: what can be compared
        why = theirs[unread[0]].get("unread") if ours["source"] else ours.get("unread")
        whose = f"worker {unread[0]}'s" if ours["source"] else "this process's"
        log.warning(
            "the workers of the cluster at %s run the pipeline %s, as this process does; their "
            "source was not compared with its, as %s pipeline gives none to read (%s)",
            address,
            ours["version"],
            whose,
            why,
        )
    if not other:
        return
    first = theirs[other[0]]

    def said(p: dict[str, Any]) -> str:
        return f"{p.get('version')} (source {p.get('source') or 'unread'}, at {p.get('path')})"

    edited = "" if first.get("version") != ours["version"] else " (the same version, edited)"
    which = _which_workers(other, len(theirs), ("run", "runs"))
    raise ClusterError(
        f"the workers of the cluster at {address} run another pipeline than this process"
        f"{edited}: {which} {said(first)}, this process {said(ours)}; {start}, in an "
        "environment with this process's pipeline (or run the pipeline from theirs)",
        reason="other-pipeline",
        address=address,
        workers=other,
        theirs=first,
        ours=ours,
    )


def _same_pipeline(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Whether a worker's pipeline (``theirs``) is this process's (``ours``), as
    :func:`_worker_side` says them: the same source, or the same code (its comments, blank
    lines or layout edited: the worker sent its code's digest as its source differed); the
    same version where either source cannot be read (a loader without ``.py`` files)."""
    if ours["source"] is None or theirs.get("source") is None:
        return bool(theirs.get("version") == ours["version"])
    if theirs["source"] == ours["source"]:
        return True
    code = theirs.get("code")
    return code is not None and code == _this_pipeline(code=True)["code"]


def _check_shadows(address: str, shadows: dict[str, list[Any]]) -> None:
    """Refuse workers of the scheduler ``address`` whose import of a module this process has
    imported (which the run's tasks import there) would take a file of the user's in its
    place (``shadows``: {worker address: its ``(module, file, installed)`` rows,
    :func:`~pipeline.shadowing.shadowing_files` there}): a ``numcodecs.py`` in the folder a
    ``dask worker`` was started in, or on its PYTHONPATH. The tasks had failed in the
    library's words, taken for a damaged input chunk ("module 'numcodecs' has no attribute
    'get_codec'"), the output left incomplete, and this process, looking for such files
    among its own modules, found none.
    ShadowedModuleError (``files`` and ``modules``: the first such worker's, ``workers``:
    every such worker, ``address``)."""
    which = sorted(w for w, rows in shadows.items() if rows)
    if not which:
        return
    rows = [tuple(row) for row in shadows[which[0]]]
    said = "; ".join(
        f"{file} for the module {name!r} (installed at {at})" for name, file, at in rows
    )
    them = "that file" if len(rows) == 1 else "those files"
    importing = _which_workers(which, len(shadows), ("import", "imports"))
    raise errors.ShadowedModuleError(
        f"the workers of the cluster at {address} take a file of the user's in the place of a "
        f"module the pipeline imports: {importing} "
        f"{said}; rename {them} of yours, or start the workers where it is not on their module "
        "path (another working folder; a PYTHONPATH without its folder), and start them again "
        f"with {_start(address)}",
        files=[file for _, file, _ in rows],
        modules=[name for name, _, _ in rows],
        workers=which,
        address=address,
    )


def close_client(client: Client, timeout: float = 10) -> None:
    """Close ``client`` (of a joined scheduler) to its end, off the main thread; its errors
    dropped (the scheduler may be gone). Raises ``KeyboardInterrupt`` once it is closed when a
    Ctrl-C came meanwhile (after a finished run, as a local cluster's close does)."""
    with contextlib.suppress(Exception):
        waiting.call(lambda: client.close(timeout=timeout), "pipeline-close", to_the_end=True)


def _stop_local(client: Client | None, cluster: Any, process_ends: bool = False) -> bool:
    """Close a local cluster in order; whether a Ctrl-C came meanwhile.

    1. The client, with nothing of its own left running: it never sees a worker or the
       scheduler go (distributed would log the lost connections).
    2. The workers, while the scheduler is up: each nanny has its worker finish its tasks,
       unregister and exit (its preload lets a heartbeat in flight end first, see
       :class:`HeartbeatGuard`), and waits for the process, up to ``WORKER_STOP_TIMEOUT``.
       Closing the cluster alone would also do this, but with Dask's 5 s per worker, which a
       busy machine exceeds.
    3. The cluster: its scheduler, which has no worker left.

    Where this process ends right after (``process_ends``, the command line's run), step 2
    ends once every worker process is exiting (:func:`_exiting`: its Python is done, its
    teardown ran), and step 3 is left to the process's end: a GPU worker's process then
    still spends about 0.1 s in the kernel while the driver tears its CUDA context down, and
    the driver does one process at a time (H200 host, 2026-11-30, .scratch/probe31.py: a
    process holding only a context ended 0.10-0.13 s after its ``os._exit``, three at once
    0.25-0.29 s, with page-locked staging and 2.7 GB of device memory no later). The
    command's exit does not wait for that (distributed's own exit hook, which closes every
    cluster still open, is told this one is not to be closed; the program's end forgets the
    exiting children, ``cli._forget_exiting``); the processes end on their own.
    """
    steps: list[Callable[[], Any]] = []
    if client is not None:
        steps.append(lambda: client.close(timeout=10))
    left: list[bool] = []
    steps.append(
        lambda: left.append(
            cluster.sync(
                _stop_workers,
                cluster,
                WORKER_STOP_TIMEOUT,
                process_ends,
                callback_timeout=WORKER_STOP_TIMEOUT + 10,
            )
        )
    )
    steps.append(lambda: None if any(left) else cluster.close(timeout=30))
    interrupted = False
    for step in steps:
        interrupted = _to_the_end(step) or interrupted
    if any(left):  # nor may distributed's exit hook (``close_clusters``) close it, and wait
        cluster.shutdown_on_close = False
    return interrupted


async def _stop_workers(cluster: Any, timeout: float, process_ends: bool = False) -> bool:
    """Close every worker of a local cluster (nannies, or in-process workers) at once. Where
    ``process_ends`` and each worker is a process this machine's ``/proc`` shows, return
    once every one is exiting, its nanny's close left running: whether it did so."""
    workers = list(getattr(cluster, "workers", {}).values())
    closing = asyncio.ensure_future(
        asyncio.gather(*(w.close(timeout=timeout) for w in workers), return_exceptions=True)
    )
    pids = [getattr(w, "pid", None) for w in workers]
    if not (process_ends and workers and all(pids) and os.path.exists("/proc/self/stat")):
        await closing
        return False
    exiting = asyncio.ensure_future(_exiting([int(p) for p in pids if p]))
    await asyncio.wait({closing, exiting}, return_when=asyncio.FIRST_COMPLETED)
    if closing.done():
        exiting.cancel()
        return False
    _LEFT_CLOSING.add(closing)  # asyncio holds its tasks weakly: keep it until it ends
    closing.add_done_callback(_LEFT_CLOSING.discard)
    log.debug("the workers' processes are exiting: this process does not wait for their end")
    return True


#: The nannies' closes :func:`_stop_workers` left running (the process ends before they do).
_LEFT_CLOSING: set[asyncio.Future[Any]] = set()


#: The kernel's flag of a task that has begun to exit (``PF_EXITING``, include/linux/sched.h),
#: field 9 of ``/proc/PID/stat``.
PF_EXITING = 0x4


async def _exiting(pids: list[int], interval: float = 0.005) -> None:
    """Return once every process of ``pids`` is exiting or gone (:func:`is_exiting`)."""
    while not all(is_exiting(pid) for pid in pids):
        await asyncio.sleep(interval)


def is_exiting(pid: int) -> bool:
    """Whether the process ``pid`` has begun to exit (the kernel's ``PF_EXITING``: nothing of
    its own runs any more), is a zombie, or is gone; from ``/proc/PID/stat`` (Linux). False
    where ``/proc`` cannot be read at all (another system): nothing is known to be exiting."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # after the command's name
    except (FileNotFoundError, ProcessLookupError):
        return os.path.exists("/proc/self/stat")  # gone, where /proc shows this process
    state, flags = fields[0], int(fields[6])
    return state in (b"Z", b"X") or bool(flags & PF_EXITING)


def join(address: str, timeout: float) -> Client:
    """A client of the scheduler at ``address`` that has at least one worker; or ClusterError
    (one line naming the address and the fix; fields ``address`` and ``reason``: 'malformed',
    'protocol' (:func:`_protocol_problem`), 'unreachable', 'http', 'not-dask',
    'not-scheduler', 'no-workers', 'not-running' (:func:`_no_running_worker`: workers, none
    of them running, paused say)), all within ``timeout`` seconds.

    Dask's client waits without end for the handshake of a server that accepts connections
    but does not speak its protocol (the dashboard's HTTP port), and reads an HTTP answer as
    a frame count (``MemoryError``); so the port is first seen to listen, and the server's
    identity is asked on a connection of our own, bounded in time, before the client
    connects.

    What is known at once is said at once, whatever ``timeout``: a port where nothing listens
    (the connection refused), a host name not known, a host with no route to it
    (:func:`_nothing_there`, 'unreachable' with ``cause``), a ``tls://`` address where this
    process has no usable TLS settings ('tls', :func:`_tls_problem`), and a ``tcp://`` port
    whose server says nothing of its own within :data:`GREETING` seconds (a Dask server sends
    its handshake as it accepts a connection) and answers HTTP ('http': the dashboard's port,
    ``python -m http.server``, which had waited for the whole timeout). ``timeout`` is what
    is waited for a server that accepts the connection to answer as a scheduler, and for its
    first running worker; a scheduler that is not listening yet is not waited for (a script
    that starts one waits for its port, or its ``--scheduler-file``, before the run)."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    where = _scheduler_address(address)
    problem = _tls_problem(address, where)
    if problem is not None:
        raise problem
    host_port = _host_port(where)
    reserve = min(1.0, timeout / 4)  # to tell an HTTP server from a silent one
    listening = host_port or _websocket_host_port(where)
    if listening is not None:
        tcp = where.startswith("tcp://")  # a TLS or websocket client speaks first
        greeting = min(GREETING, left() / 4) if tcp else 0.0
        greeted = _wait_listening(address, listening, timeout, deadline, greeting)
        if tcp and not greeted and _speaks_http(listening, min(reserve, left())):
            raise _answers_http(address)
    try:
        kind = _identity(where, left() - 1.5 * reserve)  # and half as much for a gone one
    except Exception as e:
        raise _not_a_scheduler(address, timeout, e, host_port, reserve) from None
    if kind != "Scheduler":
        raise ClusterError(
            f"{address} is a Dask {kind}, not the scheduler: use the address `dask scheduler` "
            "prints (its default port is 8786)",
            address=address,
            reason="not-scheduler",
        )
    try:
        client = waiting.call(
            lambda: _client(where, timeout=f"{max(left(), 0.1)}s"), "pipeline-connect"
        )
    except (OSError, TimeoutError) as e:
        raise _unreachable(address, timeout, e) from None
    try:
        wait_running(client, address, left(), timeout)
    except ClusterError:
        close_client(client)
        raise
    return client


def wait_running(client: Client, address: str, seconds: float, timeout: float) -> None:
    """Return once the cluster of ``client`` (of the scheduler ``address``) has a running
    worker, waiting up to ``seconds``; else the ClusterError that says why there is none
    (:func:`_no_running_worker`, ``timeout`` the seconds it names: cluster.timeout). Asked of
    a caller's client too, whose cluster without one had kept a run waiting without end."""
    try:
        ask(
            client,
            lambda: client.wait_for_workers(1, timeout=max(seconds, 0.1)),
            "pipeline-connect",
            address,
            "connect",
        )
    except TimeoutError:
        raise _no_running_worker(client, address, timeout) from None


_START = "`dask worker {address}` or `dask cuda worker {address}`"

#: How workers of a scheduler at an ``inproc://`` address start: only this process reaches
#: it (a ``LocalCluster(processes=False)``'s, a caller's client's), so no `dask worker` joins.
_START_HERE = (
    "its cluster's `scale(n)` (`dask worker` cannot join an inproc:// scheduler: only this "
    "process, whose threads its workers are, reaches it)"
)


def _start(address: str) -> str:
    """How to start workers of the scheduler ``address``, in the words of a line: `dask
    worker ADDRESS` (or dask-cuda's), but for an ``inproc://`` scheduler, this process's own,
    which they cannot join (h70a: the line had told to run `dask worker inproc://...`)."""
    if str(address).startswith("inproc://"):
        return _START_HERE
    return _START.format(address=address)


def no_workers(address: str) -> ClusterError:
    """The one-line ClusterError (``reason`` 'no-workers') for the scheduler ``address`` that
    has no worker: the same line whether it had none at the join or they all left between the
    join and a later look at them (``runner.plan_joined``)."""
    return ClusterError(
        f"the scheduler at {address} has no workers; start some with {_start(address)}",
        address=address,
        reason="no-workers",
    )


def _no_running_worker(client: Client, address: str, timeout: float) -> ClusterError:
    """The one-line error for the scheduler ``address`` that got no running worker within
    ``timeout`` seconds (``wait_for_workers`` counts only those whose status is 'running'):
    'no-workers' where it has none; where it has some that are not running (a worker Dask
    paused for memory, one closing or still starting), 'not-running', saying which, why and
    what to do, with ``states`` ({status: workers}); the line had said "has no workers" of a
    paused one. A scheduler lost as it is asked is the ClusterError 'lost'."""
    try:
        workers = ask(
            client,
            lambda: client.scheduler_info()["workers"],
            "pipeline-connect",
            address,
            "connect",
        )
    except ClusterError as e:
        return e
    if not workers:
        return no_workers(address)
    start = _start(address)
    states: dict[str, int] = {}
    for w in workers.values():
        states[str(w.get("status"))] = states.get(str(w.get("status")), 0) + 1
    n = len(workers)
    said = " and ".join(f"{k} {_STATUS_WORDS.get(s, s)}" for s, k in sorted(states.items()))
    whys = []
    if "paused" in states:
        whys.append(_paused_why([w for w in workers.values() if w.get("status") == "paused"]))
    if states.keys() & _CLOSING:
        whys.append("a retiring or closing worker takes no more tasks")
    if states.keys() - _CLOSING - {"paused"}:
        whys.append("a starting worker may be running soon: raise cluster.timeout to wait")
    more = "or start other workers" if len(whys) > 1 or "paused" in states else "start others"
    return ClusterError(
        f"the scheduler at {address} has {n} worker{'s' if n != 1 else ''} but none running "
        f"within {timeout:g} s ({said}): {'; '.join(whys)}; {more} with {start}",
        address=address,
        reason="not-running",
        states=states,
        timeout=timeout,
    )


#: A worker's status (distributed.core.Status) as the line says it, where not its own name.
_STATUS_WORDS = {"closing_gracefully": "retiring"}

#: Statuses of a worker that is closing or gone (distributed.core.Status).
_CLOSING = frozenset(("closing", "closing_gracefully", "stopping", "stopped", "closed", "failed"))


def _paused_why(paused: list[dict[str, Any]]) -> str:
    """Why Dask paused the ``paused`` workers (their entries in ``scheduler_info``), and what
    to do: a worker stops taking tasks while its process's memory is over its pause threshold
    (``distributed.worker.memory.pause``, 0.8 of its ``--memory-limit`` by default), and
    takes them again once it is under."""
    from pipeline.planning.memory import bytes_text

    most = max(paused, key=lambda w: (w.get("metrics") or {}).get("memory") or 0)
    used, limit = (most.get("metrics") or {}).get("memory"), most.get("memory_limit")
    holds = ""
    if isinstance(used, (int, float)) and used > 0:
        of = f" of its {bytes_text(int(limit))} limit" if limit else ""
        holds = f"; {'the fullest' if len(paused) > 1 else 'it'} holds {bytes_text(int(used))}{of}"
    return (
        "Dask pauses a worker whose process's memory is over its pause threshold "
        f"(distributed.worker.memory.pause, 0.8 of its --memory-limit by default{holds}), "
        "until it is under again: free what the cluster holds (another client's results), "
        "or restart the workers with a larger --memory-limit"
    )


def _scheduler_address(address: str) -> str:
    """``address`` in full (``tcp://`` added where it has no scheme), or ClusterError when
    Dask could not connect to it: an unknown scheme, no port, a port that is not a number."""
    from distributed.comm.addressing import parse_address, unparse_address
    from distributed.comm.registry import get_backend

    scheme_part, sep, rest = address.rpartition("://")
    authority = rest.split("/", 1)[0]
    if "@" in authority:  # brk82: Dask's error quoted 'user:PASS@host' whole
        shown = f"{scheme_part}{sep}***@{authority.rpartition('@')[2]}"
        raise ClusterError(
            f"{shown!r} names a user or password before its '@', which a Dask scheduler "
            "address does not take (Dask's comms carry none): write tcp://HOST:8786 (8786 is "
            "the scheduler's default port), and secure a scheduler with TLS (tls://, "
            "distributed's security settings)",
            address=shown,
            reason="malformed",
        )
    problem = _protocol_problem(address)
    if problem is not None:
        raise problem
    try:
        scheme, loc = parse_address(address)
        get_backend(scheme)
        full = unparse_address(scheme, loc)
        _host_port(full)
    except (ValueError, TypeError) as e:
        local = " or local, in lower case, to start a cluster here" if _is_local(address) else ""
        raise ClusterError(
            f"{address!r} is not a Dask scheduler address ({e}): write tcp://HOST:8786 (8786 "
            f"is the scheduler's default port; 8787 its dashboard){local}",
            address=address,
            reason="malformed",
        ) from None
    return full


def _is_local(address: str) -> bool:
    """Whether ``address`` is cluster.scheduler's ``local`` in other letters (``Local``),
    which is read as a host's name."""
    return address.strip().lower() == "local" and address != "local"


#: Schemes said first, in this order, among those this installation connects over.
_PROTOCOL_ORDER = ("tcp", "tls", "ws", "wss")


def usable_protocols() -> list[str]:
    """The schemes Dask in this process can connect to a scheduler in another process over:
    its registered comm backends (``distributed.comm.registry.backends`` and those its
    ``distributed.comm.backends`` entry points add) whose connector can be made; not
    ``inproc`` (this process's own). distributed's ``ucx`` backend is registered without
    UCX-Py, its connector abstract: not usable."""
    from importlib.metadata import entry_points

    from distributed.comm import registry

    names = set(registry.backends) | {
        ep.name for ep in entry_points(group="distributed.comm.backends")
    }
    usable = []
    for name in names - {"inproc"}:
        try:
            registry.get_backend(name).get_connector()
        except Exception:  # not installed, or abstract: UCXConnector without UCX-Py
            continue
        usable.append(name)
    order = {name: i for i, name in enumerate(_PROTOCOL_ORDER)}
    return sorted(usable, key=lambda n: (order.get(n, len(order)), n))


def _protocol_problem(address: str) -> ClusterError | None:
    """The ClusterError (reason 'protocol') for a scheduler address whose scheme Dask here
    cannot connect over, told before connecting: a backend that is registered but not
    usable (``ucx://`` without UCX-Py: its connector is abstract, which had read as a
    scheduler not answering within cluster.timeout), one that is not installed (``ucxx://``
    without distributed-ucxx), ``inproc://`` where no listener of this process has that
    address (``inproc://`` reaches only this process; 'not enough values to unpack' had
    come out of it), or one written in capitals (``TCP://``: Dask's protocol names are lower
    case, and it refuses any other; the line had said that TCP:// was not available, then
    offered tcp://; :func:`_unusable`). None for a usable scheme, an address without one
    (read as tcp), or http(s) (the dashboard's: the malformed-address line says where the
    scheduler is)."""
    scheme, sep, loc = address.partition("://")
    if not sep or scheme in ("http", "https"):
        return None
    usable = usable_protocols()
    why = _unusable(scheme, loc, usable)
    if why is None:
        return None
    lowered = f"{scheme.lower()}://{loc}"
    if lowered != address and _unusable(scheme.lower(), loc, usable) is None:
        fix = f"write {lowered}"  # TCP://HOST:PORT
    else:
        fix = (
            f"Dask here connects over {', '.join(p + '://' for p in usable)}: use the "
            "scheduler's address in one of them (`dask scheduler` prints it)"
        )
    return ClusterError(
        f"cannot join the Dask scheduler at {address}: {why}; {fix}",
        address=address,
        reason="protocol",
        protocol=scheme,
        available=usable,
    )


def _unusable(scheme: str, loc: str, usable: list[str]) -> str | None:
    """Why Dask here cannot connect to the scheduler at ``scheme://loc`` over ``scheme``, in
    words; None where it can (``usable``: :func:`usable_protocols`). A scheme in capitals is
    none of Dask's (its comm registry is case-sensitive); the words then say what the
    lower-case one would meet too (the dashboard's http://, ucx:// without UCX-Py)."""
    if scheme in usable:
        return None
    low = scheme.lower()
    if low != scheme:
        why = f"Dask's protocol names are lower case, and {scheme}:// is none of them"
        if low in ("http", "https"):
            return f"{why}; {low}:// is the dashboard's (port 8787), not the scheduler's"
        then = _unusable(low, loc, usable)
        return why if then is None else f"{why}; and {then}"
    if scheme == "inproc":
        from distributed.comm.inproc import global_manager

        with contextlib.suppress(ValueError):  # not ip/pid/n: no listener's address
            if global_manager.get_listener_for(loc) is not None:
                return None
        return (
            "inproc:// reaches only a scheduler of this same process, and none here has that "
            "address (pass the Client of an in-process cluster as pipeline.run's client)"
        )
    why = f"the {scheme}:// protocol is not available in this installation"
    if scheme.startswith("ucx"):
        why += " (UCX needs distributed-ucxx-cu13 or -cu12 installed, and ucxx:// addresses)"
    return why


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a tcp:// or tls:// address; None for other schemes (inproc, ucx)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, loc = parse_address(address)
    return parse_host_port(loc) if scheme in ("tcp", "tls") else None


#: Seconds a joined scheduler's port gets to send the first bytes of its own on a connection
#: (a Dask server sends its handshake as soon as it accepts one; an HTTP server, such as the
#: dashboard's, waits for the request) before the port is asked whether it answers HTTP.
GREETING = 2.0

#: ``errno`` of a connection's failure that says at once that no scheduler is at the address:
#: nothing listens on the port, no route to the network or host.
_NOTHING_THERE = {
    errno.ECONNREFUSED: "connection refused",
    errno.ENETUNREACH: "no route to its network",
    errno.EHOSTUNREACH: "no route to its host",
}


def _websocket_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a ws:// or wss:// address (a TCP port too, where distributed's client
    had tried again for the whole cluster.timeout when nothing listened); None for others."""
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, loc = parse_address(address)
    if scheme not in ("ws", "wss"):
        return None
    return parse_host_port(loc.split("/", 1)[0])


def _wait_listening(
    address: str, host_port: tuple[str, int], timeout: float, deadline: float, greeting: float
) -> bool:
    """Return once something accepts connections at ``host_port``: whether it sent bytes of
    its own within ``greeting`` seconds (False at once where ``greeting`` is 0). A connection
    not answered at all (a firewall dropping it) is tried again until the ``deadline``, then
    ClusterError ('unreachable'); one refused, a host name not known or a host with no route
    is ClusterError at once (:func:`_nothing_there`)."""
    import socket

    while True:
        try:
            sock = socket.create_connection(
                host_port, timeout=max(deadline - time.monotonic(), 0.05)
            )
        except OSError as e:
            if isinstance(e, socket.gaierror) or e.errno in _NOTHING_THERE:
                raise _nothing_there(address, host_port, e) from None
            if time.monotonic() + 0.1 >= deadline:
                raise _unreachable(address, timeout, e) from None
            time.sleep(0.1)
            continue
        with sock:
            if greeting <= 0:
                return False
            try:
                sock.settimeout(greeting)
                return bool(sock.recv(1))
            except OSError:  # nothing within greeting, or the connection reset
                return False


def _nothing_there(address: str, host_port: tuple[str, int], e: OSError) -> ClusterError:
    """The one-line error for the scheduler ``address`` (at ``host_port``) whose connection
    failed in a way that is known at once (``e``): nothing listens on the port (refused), the
    host's name is not known, no route to it. The line had come after the whole
    cluster.timeout, and advised raising it. Fields: ``reason`` 'unreachable', ``address``,
    ``cause`` ('refused', 'unknown-host', 'no-route')."""
    import socket

    host, port = host_port
    if isinstance(e, socket.gaierror):
        return ClusterError(
            f"cannot join the Dask scheduler at {address}: its host {host!r} is not known "
            f"({e.strerror or e}): check the address (the host `dask scheduler` runs on)",
            address=address,
            reason="unreachable",
            cause="unknown-host",
        )
    said = _NOTHING_THERE.get(e.errno or 0, e.strerror or str(e))
    if e.errno != errno.ECONNREFUSED:
        return ClusterError(
            f"cannot join the Dask scheduler at {address}: {said} ({e.strerror or e}): check "
            "the address, and that this machine reaches that host",
            address=address,
            reason="unreachable",
            cause="no-route",
        )
    return ClusterError(
        f"nothing listens at {address} ({said}): start the scheduler there (`dask scheduler "
        f"--port {port}` on {host}), or fix the address (the one `dask scheduler` prints; its "
        "default port is 8786)",
        address=address,
        reason="unreachable",
        cause="refused",
    )


#: The settings of Dask's config that a client connecting over TLS reads, and their variables.
_TLS_SETTINGS = (
    "distributed.comm.tls.ca-file, distributed.comm.tls.client.cert and "
    "distributed.comm.tls.client.key (DASK_DISTRIBUTED__COMM__TLS__CA_FILE, "
    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT, DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY)"
)


def _tls_problem(address: str, where: str) -> ClusterError | None:
    """The ClusterError (``reason`` 'tls') for a ``tls://`` scheduler address (``where``, in
    full) that this process cannot connect to for its TLS settings, told before any
    connection: Dask's config here names no CA file and client certificate (the connection
    had failed in distributed's ``TypeError: TLS expects a `ssl_context` argument``, said as
    a server that does not answer as a scheduler within cluster.timeout), or names ones that
    make no TLS context (a file not there, a key that is not the certificate's). None for
    other schemes, and for usable settings."""
    if not where.startswith("tls://"):
        return None
    from distributed.security import Security

    settings = _TLS_SETTINGS
    try:
        context = Security().get_connection_args("client")["ssl_context"]
    except Exception as e:  # a file not there or unreadable, a key not the certificate's
        why = errors.one_line(f"{type(e).__name__}: {e}")
        return ClusterError(
            f"cannot join the Dask scheduler at {address}: this process's TLS settings make "
            f"no TLS context ({why}): check {settings}",
            address=address,
            reason="tls",
        )
    if context is not None:
        return None
    return ClusterError(
        f"cannot join the Dask scheduler at {address}: tls:// needs this process's TLS "
        f"certificates, and Dask's config here names none: set {settings} to the cluster's CA "
        "and this client's certificate and key",
        address=address,
        reason="tls",
    )


def _unreachable(address: str, timeout: float, e: BaseException) -> ClusterError:
    """The one-line error for a scheduler that cannot be reached (or was gone before the
    client connected) within ``timeout`` seconds, ``e`` the error that said so."""
    return ClusterError(
        f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
        f"({type(e).__name__}: {e}); start it with `dask scheduler`, check the address, or "
        "raise cluster.timeout",
        address=address,
        reason="unreachable",
        timeout=timeout,
    )


def _identity(address: str, seconds: float) -> str:
    """The type of the Dask server at ``address`` ('Scheduler', 'Worker', 'Nanny'), asked on
    a connection of its own within ``seconds``, the handshake included; raises what the
    connection raised, TimeoutError when it took longer."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    async def ask() -> str:
        args = Security().get_connection_args("client")
        comm = await connect(address, timeout=max(seconds, 0.01), **args)
        try:
            await comm.write({"op": "identity", "reply": True})
            reply = await comm.read()
        finally:
            comm.abort()
        return str(reply.get("type", "?")) if isinstance(reply, dict) else "?"

    async def bounded() -> str:
        return await asyncio.wait_for(ask(), max(seconds, 0.01))

    return asyncio.run(bounded())


def _not_a_scheduler(
    address: str, timeout: float, e: Exception, host_port: tuple[str, int] | None, seconds: float
) -> ClusterError:
    """The one-line error for a server that did not answer the identity question in Dask's
    protocol: an HTTP server (the dashboard), something else, or nothing any more (a
    scheduler that died as it was asked: its port refuses connections now, seen within
    ``seconds`` / 2), each told within ``seconds``; a TLS scheduler whose handshake failed
    (distributed's ``FatalCommClosedError``: the certificates do not match) is 'tls'. Only a
    server that gave no answer within ``timeout`` is told to be given a longer one: one that
    answered otherwise than Dask did at once, and waiting longer changes nothing."""
    from distributed.comm.core import FatalCommClosedError

    half = seconds / 2
    if host_port is not None and _seen_within(lambda: not _accepts(host_port, half), half):
        return _unreachable(address, timeout, e)
    if host_port is not None and _speaks_http(host_port, seconds):
        return _answers_http(address)
    if isinstance(e, FatalCommClosedError) and address.startswith("tls://"):
        return ClusterError(
            f"cannot join the Dask scheduler at {address}: the TLS handshake failed "
            f"({errors.one_line(str(e) or type(e).__name__)}): set {_TLS_SETTINGS} to the "
            "cluster's CA and a certificate and key it signed",
            address=address,
            reason="tls",
        )
    if isinstance(e, TimeoutError) or _connect_timed_out(e):
        return ClusterError(
            f"{address} does not answer as a Dask scheduler within {timeout:g} s (no answer): "
            "check the address (the scheduler's default port is 8786), or raise cluster.timeout",
            address=address,
            reason="not-dask",
            timeout=timeout,
        )
    tls = "; one started with --protocol tls is at tls://HOST:PORT"
    return ClusterError(
        f"{address} does not answer as a Dask scheduler ({type(e).__name__}: "
        f"{errors.one_line(str(e))}): check the address (the scheduler's default port is "
        f"8786{tls if address.startswith('tcp://') else ''})",
        address=address,
        reason="not-dask",
        timeout=timeout,
    )


def _connect_timed_out(e: BaseException) -> bool:
    """Whether ``e`` is distributed's ``OSError`` for a connection not made in time ("Timed
    out trying to connect to ..."), which is no ``TimeoutError``."""
    return type(e) is OSError and str(e).startswith("Timed out trying to connect")


def _answers_http(address: str) -> ClusterError:
    """The one-line error (``reason`` 'http') for an address whose server answers HTTP."""
    return ClusterError(
        f"{address} answers HTTP, not the Dask protocol: is it the dashboard (8787)? the "
        "scheduler listens on 8786 (tcp://HOST:8786)",
        address=address,
        reason="http",
    )


def _speaks_http(host_port: tuple[str, int], seconds: float) -> bool:
    """Whether the server at ``host_port`` answers an HTTP request within ``seconds``."""
    import socket

    try:
        with socket.create_connection(host_port, timeout=seconds) as sock:
            sock.sendall(f"HEAD / HTTP/1.0\r\nHost: {host_port[0]}\r\n\r\n".encode())
            return sock.recv(5) == b"HTTP/"
    except OSError:
        return False


def held_device_memory(
    client: Client, address: str | None = None, timeout: float = 30.0
) -> dict[str, int]:
    """Device bytes the cluster's workers hold, per GPU PCI bus id, after their CuPy pools
    gave back cached blocks: a warm cluster's own memory, which a plan counts as free. None
    known where the workers cannot tell; a lost scheduler (``address``, as the config names
    it; the client's own by default) raised as ClusterError (``during`` 'plan'), and workers
    that do not answer within ``timeout`` seconds as :func:`silent_workers`'s."""
    from pipeline.devices.hardware import held_device_bytes

    where = address or str(getattr(client.scheduler, "address", "?"))
    held: dict[str, int] = {}
    try:
        answers = ask_workers(
            client, held_device_bytes, (), "pipeline-held", where, "plan", timeout, "its GPU memory"
        )
    except ClusterError:
        raise
    except Exception as e:
        log.debug("held device memory: %s: %s", type(e).__name__, e)
        return held
    for got in answers.values():
        if got is not None:
            held[got[0]] = held.get(got[0], 0) + got[1]
    return held


class CopiesPerDevice:
    """A SpecCluster mixin: each worker spec the cluster makes (:meth:`new_worker_spec`) comes
    with ``copies - 1`` copies of it (the same environment and plugins) under the names
    ``NAME-1``, ``NAME-2``, ...; so the cluster's first scale to ``devices x copies`` workers
    starts them all at once.

    dask-cuda's ``LocalCUDACluster`` makes one worker per GPU (its spec gives the worker that
    GPU's ``CUDA_VISIBLE_DEVICES`` and memory plugins) and refuses a GPU listed twice; workers
    added after it started (a second scale) started only once the first ones were up, and
    were set up after them."""

    copies = 1
    #: environment variables every worker gets besides the device's (the MPS daemon's)
    extra_env: dict[str, str] = {}  # noqa: RUF012 (a class's setting, never changed in place)

    def new_worker_spec(self) -> dict[Any, Any]:
        import copy

        (name, spec), *more = super().new_worker_spec().items()  # type: ignore[misc]
        assert not more, "one spec at a time"
        if self.extra_env:  # a nanny's option (a worker that is a thread takes no env)
            options = spec.setdefault("options", {})
            options["env"] = {**(options.get("env") or {}), **self.extra_env}
        return {name: spec, **{f"{name}-{k}": copy.deepcopy(spec) for k in range(1, self.copies)}}


def _cuda_cluster(p: Any, env: dict[str, str], **options: Any) -> Any:
    """A LocalCUDACluster of ``p.workers_per_gpu`` workers on each of ``p.gpus``, all started
    at once (:class:`CopiesPerDevice`), each with ``env`` in its environment."""
    from dask_cuda import LocalCUDACluster

    class PerGpu(CopiesPerDevice, LocalCUDACluster):
        copies = p.workers_per_gpu
        extra_env = env

    return PerGpu(
        CUDA_VISIBLE_DEVICES=",".join(str(g) for g in p.gpus) or None,
        n_workers=p.workers,  # the plan's: GPUs x workers_per_gpu
        **options,
    )


def _start_local(p: Any, level: int, env: dict[str, str]) -> Any:
    """The local cluster of plan ``p``, started, its dashboard made on first use; GPU workers
    get ``env`` (an MPS daemon's: :mod:`pipeline.running.mps`). GPU workers are forked from
    the fork server where the command line started one (:mod:`pipeline.running.fork_server`,
    before its plan), with their modules loaded."""
    local_dir = os.path.join(tempfile.gettempdir(), "pipeline-dask")
    asked = p.dashboard
    if asked and _port_taken(asked):  # distributed would warn, in 4 lines, and take another
        p = dataclasses.replace(p, dashboard=asked.rpartition(":")[0] + ":0")
    if p.backend == "gpu":
        with fork_server.forked_workers():
            cluster = _local_cluster(p, level, local_dir, env)
    else:
        cluster = _local_cluster(p, level, local_dir, env)
    if p.dashboard != asked:
        got = re.search(r":(\d+)(/|$)", str(getattr(cluster, "dashboard_link", "") or ""))
        log.warning(
            "note: the dashboard's port %s is in use (another cluster's, or a server's): the "
            "dashboard is on port %s; set cluster.dashboard to another address, or ':0' for "
            "any free port",
            asked.rpartition(":")[2],
            got[1] if got else "another",
        )
    if p.dashboard:
        dashboard.install(cluster)
    return cluster


def _port_taken(address: str) -> bool:
    """Whether the TCP port of ``address`` (``':8787'``, ``'host:8787'``; a dashboard's) is
    one another program listens on, found by binding it as the dashboard's server would
    (address reuse on, so a port a closed cluster left in TIME_WAIT is free). distributed
    puts its dashboard on another port then, with a UserWarning of 3 lines and its source
    line on stderr: the run asks for a free port instead and says so in one note. False
    where the address names no port, port 0, or a host this machine cannot bind (the
    dashboard's own start says that)."""
    import socket

    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return False
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), int(port)))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def _local_cluster(p: Any, level: int, local_dir: str, env: dict[str, str]) -> Any:
    web = dashboard.scheduler_options(p.dashboard or None)
    if p.backend == "gpu":
        return _cuda_cluster(
            p,
            env,
            threads_per_worker=p.threads_per_worker,
            # a block never rests in worker memory (one task per block), so nothing to spill
            device_memory_limit=0,
            memory_limit=p.host_budget or "auto",
            protocol=None if p.protocol == "tcp" else p.protocol,
            silence_logs=level,  # its workers' own; here connect's silenced_logs set it first
            local_directory=local_dir,
            **_worker_preloads(),
            **web,
        )
    from distributed import LocalCluster

    threads = p.protocol == "inproc"
    return LocalCluster(
        n_workers=p.workers,
        threads_per_worker=p.threads_per_worker,
        processes=not threads,
        memory_limit=_memory_limit(p, threads),
        silence_logs=level,  # its workers' own; here connect's silenced_logs set it first
        local_directory=local_dir,
        **({} if threads else _worker_preloads()),  # threads: this process's logs are its own
        **web,
    )


def _memory_limit(p: Any, threads: bool) -> int | str:
    """Each worker's memory limit for Dask: the plan's host budget per worker ('auto' without
    one). Workers that are threads of this process each compare the whole process's memory
    with their limit (pausing past 80% of it), so theirs is the budget of them all."""
    if not p.host_budget:
        return "auto"
    return p.host_budget * p.workers if threads else p.host_budget
