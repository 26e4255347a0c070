"""Who runs a run's tasks: threads of this process, or a Dask cluster; the one place that
decides which (:meth:`ClusterPlan.on_threads`, in :func:`local_workers`), for ``run`` and
``generate`` alike.

Threads of this process (:mod:`pipeline.running.threads`, Dask's threaded scheduler) need no
scheduler, no worker process, no connection and no import of ``distributed`` (0.7-0.85 s on
the 2-core machine, and 0.1 s more to start an in-process ``LocalCluster``): what a small
local CPU run spends besides its compute. Everything that is distributed's own takes a Dask
cluster (:mod:`pipeline.running.cluster`): a dashboard, a performance report, worker
processes (protocol tcp or ucx), a scheduler joined by address, and the GPU backend, whose
workers are set up (memory pool, staging buffers, kernels) before their first task.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.running import threads, waiting

if TYPE_CHECKING:
    from pipeline.planning.plan import ClusterPlan
    from pipeline.store.location import Location

log = logging.getLogger("pipeline")


class Bound:
    """A task's function ``fn`` bound to its leading arguments (a run's plan objects), which
    Dask tokenizes by the graph's ``name`` alone (``__dask_tokenize__``): ``bound(*more)`` is
    ``fn(*args, *more)``. ``Client.get`` names a graph by a deterministic token of every task
    in it; with ``functools.partial`` that walked the bound plan objects field by field, and
    took 50-170 ms of each run's compute phase before the first task was sent (the H200 host,
    2026-12-02: 63 blocks of 8 GB of v2 Blosc, 3 x 4 GPU workers; 7 ms for 0.2 GB on the
    2-core machine, 1-3 ms with this). A graph's name is unique to it (a uuid), so its token
    is too."""

    __slots__ = ("args", "fn", "name")

    def __init__(self, name: str, fn: Callable[..., Any], *args: Any) -> None:
        self.name, self.fn, self.args = name, fn, args

    def __call__(self, *more: Any) -> Any:
        return self.fn(*self.args, *more)

    def __dask_tokenize__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[Any, ...]:
        return (Bound, (self.name, self.fn, *self.args))

    def __repr__(self) -> str:
        return f"Bound({self.name!r}, {getattr(self.fn, '__qualname__', self.fn)})"


class Workers(Protocol):
    """What a run asks of whatever runs its tasks."""

    #: What the tasks do, for the words of a stop (:data:`pipeline.running.threads.STOPPING`):
    #: 'run' (a run's blocks, by default), or 'generate' (the input's units).
    work: str

    #: The workers that ran tasks of the last :meth:`compute` and were gone at its end (a
    #: Dask cluster's worker killed, or left), by the names :meth:`compute` counts them by.
    gone: tuple[str, ...]

    @property
    def dashboard(self) -> str | None:
        """The link to Dask's dashboard; None where there is none."""

    def compute(self, dsk: dict, keys: list, each: Callable[[Any, Any], None]) -> dict[str, int]:
        """Run the graph ``dsk`` up to its ``keys``, calling ``each(key, result)`` as each
        task ends (one call at a time); ``{worker: tasks it ran}``. A task's error is raised
        as the task raised it (or as the :class:`~pipeline.errors.ClusterError` that says
        what the cluster did to it); Ctrl-C as ``KeyboardInterrupt``."""
        ...

    def wait_for_writers(self, location: Location, path: str) -> None:
        """Wait until no task of an earlier run writes the array at ``path`` in ``location``
        (by its
        :func:`pipeline.running.tasks.target`, links resolved) on these workers
        (:func:`pipeline.running.tasks.wait_for_writers`)."""

    def reset_peaks(self) -> None:
        """Start the peak memory of every worker again from now."""

    def peaks(self) -> dict[str, dict[str, int]]:
        """``{worker: {"rss": bytes, "device": bytes}}``: peaks since :meth:`reset_peaks`."""
        ...


@contextlib.contextmanager
def local_workers(
    p: ClusterPlan,
    report: str | None = None,
    plugin: Callable[[], Any] | None = None,
    process_ends: bool = False,
    started: Any = None,
) -> Iterator[Workers]:
    """The workers of a local run on ``p``, started, and closed on every exit: threads of this
    process where :meth:`ClusterPlan.on_threads` says so, else a local Dask cluster
    (:func:`pipeline.running.cluster.connect`, whose workers get the plugin ``plugin()``
    makes) that saves Dask's performance report to ``report``; ``process_ends``: this process
    ends right after (:func:`pipeline.running.cluster.connect`). ``started``: the cluster's
    start, begun already for ``p`` (:func:`begun_early`). Raises what starting them raises
    (:class:`~pipeline.errors.ClusterError`), ``KeyboardInterrupt`` on Ctrl-C."""
    if p.on_threads(report=bool(report)):
        with threads.start(p.workers * p.threads_per_worker, p.backend) as here:
            yield here
        return
    from pipeline.running import cluster

    with cluster.connect(
        p, plugin=plugin() if plugin else None, process_ends=process_ends, started=started
    ) as client:
        yield cluster.DaskWorkers(client, p.scheduler, report, p.timeout)


def begins_early(p: ClusterPlan, process_ends: bool) -> bool:
    """Whether a run begins starting its local cluster ``p`` before its plan reads the input
    (:func:`begun_early`): the command line's run (``process_ends``) of a local GPU cluster
    whose workers are forked from the command's fork server
    (:mod:`pipeline.running.fork_server`), so that its own start is short and what remains
    of it, the workers' start in their processes, overlaps the plan. An API caller's run, a
    CPU run and a joined cluster start as before: after every check."""
    from pipeline.running import fork_server

    return (
        process_ends
        and p.scheduler == "local"
        and p.backend == "gpu"
        and not p.on_threads()
        and fork_server.started()
    )


@contextlib.contextmanager
def begun_early(p: ClusterPlan | None, process_ends: bool) -> Iterator[Any]:
    """The start of the local cluster ``p`` begun now (:func:`pipeline.running.cluster.begin`)
    where :func:`begins_early` says so, to pass to :func:`local_workers` (``started``), which
    closes the cluster; else None. A start that :func:`local_workers` did not take (the plan
    refused the run, or found the output complete) is stopped on leaving: after the start
    has ended (the workers up, about a second after :func:`begun_early`), so a refusal's line
    comes that much later. Raises ``KeyboardInterrupt`` for a Ctrl-C while it stops."""
    if p is None or not begins_early(p, process_ends):
        yield None
        return
    from pipeline.running import cluster

    started = cluster.begin(p)
    try:
        log.debug("the local cluster's workers start while the plan reads the input")
        yield started
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            waiting.take()  # the cluster is closed in order, whatever comes
            started.stop()
        else:  # a refusal: the workers did no work, and the command ends right after
            started.stop(process_ends)
        raise
    if started.stop(process_ends):  # nothing when local_workers has closed it
        raise KeyboardInterrupt  # pressed while the workers begun stopped
