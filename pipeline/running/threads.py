"""A run's tasks on threads of this process, under Dask's local threaded scheduler: no cluster,
and no ``distributed``.

A small local CPU run (which ones: :meth:`pipeline.planning.plan.ClusterPlan.on_threads`)
needs no scheduler, no worker and no connection: a pool of threads of the run's own process
writes its blocks. ``dask.threaded.get``, on a thread of its own, runs the graph of
:mod:`pipeline.running.graph` on that pool, at most one task per thread at a time, and its
``posttask`` callback hands each block's result to the run as the block ends; the run's main
thread only waits. A task's error comes out of the wait as the task raised it; so does Ctrl-C
(a ``KeyboardInterrupt`` where the main thread waits), after which no task starts. Tasks
already running then finish their block (each writes whole files, then its marker): closing
the pool waits for them, so that the output's lock is given up only once nothing writes any
more.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pipeline.reporting.lines import PROGRESS_LINE
from pipeline.running import waiting
from pipeline.running.sampler import MemorySampler

if TYPE_CHECKING:
    from pipeline.store.location import Location

log = logging.getLogger("pipeline")

#: The one worker of such a run, as the summary names it (blocks per worker, peak memory).
WORKER = "this process"


#: The line said while a stopped command waits for the tasks still running (:meth:`Threads.close`;
#: a cluster that stays up: :meth:`pipeline.running.cluster.DaskWorkers._settle`), by the work
#: they do: a run's blocks (written whole, then marked), or ``generate``'s units of the input,
#: which no marker records (the input stays unfinished: generate makes it again). A generate
#: had said the run's words, of blocks and markers it has not.
STOPPING = {
    "run": "stopping: waiting for the blocks being written to end (each is written whole, then "
    "marked)",
    "generate": "stopping: waiting for the input's units being written to end (the input stays "
    "unfinished, and `pipeline generate` makes it again)",
}


class Threads:
    """``threads`` task threads of this process, and the sampler of its peak memory; made by
    :func:`start`. Has what a run asks of its workers (:class:`pipeline.running.workers.
    Workers`)."""

    #: Dask's dashboard is distributed's; a run on threads has none.
    dashboard: str | None = None

    #: What the tasks do, for the words of a stop (:data:`STOPPING`): 'run' (a run's blocks),
    #: or 'generate' (the input's units, which ``pipeline generate`` sets).
    work: str = "run"
    #: Threads of this process are never gone (:attr:`pipeline.running.workers.Workers.gone`).
    gone: tuple[str, ...] = ()

    #: Seconds :meth:`close` waits in silence for the blocks still running; then it says so
    #: (a block on slow storage can take long, and the run ignores further Ctrl-Cs then).
    TELL_AFTER = 2.0

    def __init__(self, threads: int, backend: str, interval: float = 0.05) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="pipeline-task")
        self.graph: threading.Event | None = None
        """set once the graph's thread has ended"""
        self.stopped = threading.Event()
        """set once no task may start any more (an interrupt, the close)"""
        self.sampler = MemorySampler(backend, interval)
        self.sampler.start()

    def compute(self, dsk: dict, keys: list, each: Callable[[Any, Any], None]) -> dict[str, int]:
        """Run the graph ``dsk`` up to its ``keys`` on the threads, calling ``each(key, result)``
        as each task ends (on the graph's own thread, one call at a time); ``{WORKER: tasks
        done}``. Raises the first task's error as the task raised it, or ``each``'s, or the
        ``KeyboardInterrupt`` of a Ctrl-C while waiting: no task starts after it, and those
        already running go on (:meth:`close` waits for them).

        Dask's scheduler runs on a thread of its own, and this thread only waits for it, so a
        Ctrl-C (raised where the main thread is) never lands inside the scheduler's or the
        pool's locks: one that landed there left a lock held, and the run hung after SIGTERM
        (seen once, in a fresh-clone run of the tests on the busy 2-core machine)."""
        from dask.threaded import get

        done = 0
        outcome: list[BaseException] = []

        def pretask(key: Any, dsk: Any, state: Any) -> None:
            if self.stopped.is_set():
                raise _Stopped

        def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            nonlocal done
            each(key, result)
            done += 1

        def run() -> None:
            try:
                # given to this computation alone (start, start_state, pretask, posttask,
                # finish): not Dask's process-wide callbacks, which a caller's
                # ProgressBar().register() fills
                get(dsk, keys, pool=self.pool, callbacks=[(None, None, pretask, posttask, None)])
            except BaseException as e:
                outcome.append(e)

        self.graph = waiting.run_in_thread(run, "pipeline-graph")
        try:
            waiting.wait(self.graph)
        except KeyboardInterrupt:
            self.stopped.set()
            waiting.take()  # the close that follows waits for the blocks running, whatever comes
            raise
        if outcome:
            raise outcome[0]
        return {WORKER: done}

    def wait_for_writers(self, location: Location, path: str) -> None:
        """Wait for this process's tasks of an earlier run writing the array at ``path`` in
        ``location`` (one that a Ctrl-C stopped, whose threads outlived its bounded stop)."""
        from pipeline.running import tasks

        def count() -> dict[str, int]:
            return {"this process": tasks.writing(location, path)}

        tasks.wait_for_writers(count, location.said(path))

    def reset_peaks(self) -> None:
        self.sampler.reset()

    def peaks(self) -> dict[str, dict[str, int]]:
        """``{WORKER: {"rss": bytes, "device": 0}}``: this process's peak since the reset."""
        return {WORKER: self.sampler.peaks()}

    def close(self) -> bool:
        """Let no task start any more, wait for those still running to end, then stop
        sampling; whether a Ctrl-C came meanwhile (it does not cut the wait short: their writes
        and markers must be over before the run gives up the output's lock)."""
        self.stopped.set()  # also where the interrupt left compute before it could set it
        interrupted = False
        graph = self.graph

        def close() -> None:  # not on the main thread: its waits need not fear a Ctrl-C
            if graph is not None:
                graph.wait()  # Dask's scheduler ends once the blocks running have ended
            self.pool.shutdown(wait=True, cancel_futures=True)

        closed = waiting.run_in_thread(close, "pipeline-close")
        told = time.monotonic() + self.TELL_AFTER
        while not closed.is_set():
            try:
                waiting.wait(closed, 0.1)
            except KeyboardInterrupt:
                waiting.take()
                interrupted = True
            if told and time.monotonic() > told:
                told = 0.0
                log.warning(STOPPING[self.work], extra=PROGRESS_LINE)
        self.sampler.stop()
        return interrupted


class _Stopped(Exception):
    """Raised before a task would start, once the run was interrupted."""


@contextlib.contextmanager
def start(threads: int, backend: str) -> Iterator[Threads]:
    """``threads`` task threads of this process, closed (:meth:`Threads.close`) on every exit;
    a Ctrl-C that came while they closed after the work was done is raised then, as
    ``KeyboardInterrupt``."""
    workers = Threads(threads, backend)
    try:
        yield workers
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            waiting.take()
        workers.close()
        raise
    if workers.close():
        raise KeyboardInterrupt
