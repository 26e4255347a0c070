"""The fork server a local GPU cluster's worker processes are forked from, modules loaded.

A GPU worker imports distributed, dask-cuda, CuPy, nvCOMP and the pipeline's task code before
it can take a task: 2.7 s in a fresh process on the H200 host (2026-11-30, ``import
distributed, dask_cuda, cupy, zarr, numcodecs, pipeline.devices.gpu``), with every worker of
the cluster doing it at once, on the run's critical path. multiprocessing's fork server is a
process that imports them once; distributed forks each worker from it
(``distributed.worker.multiprocessing-method: forkserver``). A run starts the server as soon
as it knows it will start a local GPU cluster (:func:`start`, before the plan), so the imports
overlap the client's own imports and the plan, and the workers start with them done. Only the
command line does this (``cli._start_dask``): the fork server is one per process, and an API
caller's own multiprocessing use must not find its children with SIGINT blocked, the nanny's
environment and distributed loaded; there the workers are spawned, as before.

The server initialises no CUDA (importing CuPy and nvCOMP does not), so each worker still
makes its own CUDA context after the fork, under the ``CUDA_VISIBLE_DEVICES`` its nanny gives
it. The environment distributed's nanny sets before it spawns a worker
(``distributed.nanny.pre-spawn-environ``: allocator and thread-count variables, and a fixed
``PYTHONHASHSEED``) is set before the server starts, since a forked worker inherits the
server's: distributed's own defaults, read without importing Dask (0.18-0.21 s); where the
user's Dask config sets other values (read when the cluster starts), the workers are spawned
instead. The server holds SIGINT blocked and so do the workers it forks (see
``running/cluster.py``: only the run's own process stops a run). It ends when the process that
started it does. Only the cluster's start forks from it (:func:`forked_workers`): a worker its
nanny restarts later is spawned, as distributed does by default.

Measured on the H200 host (2026-11-30, 8 GB float32 of 16 MB chunks on /dev/shm, cold
``pipeline run`` processes, 3 each, alternating with the code before; the server then also
imported zarr): the cluster phase went
from 4.1-5.1 s to 1.9-3.9 s; the command, v2 Blosc 10.7-12.3 s to 10.1-10.6 s, zarr-python 3's
zstd 11.2-13.5 s to 10.5-11.2 s. The server starts 1.1-1.4 s into the command and imports for
2.8-4.3 s of CPU time, so it, not the plan, now decides when the workers start.

The command line therefore starts it before the config is parsed (:func:`start_early`, from a
plain read of the YAML). Same host, 2026-11-30, 8 GB, cold, 3 each alternating with the start
after the config: the server appeared 0.49-0.67 s into the command (0.89-1.22 s before) and the
cluster phase took 2.95-3.41 s (3.23-3.93 s), but the plan phase grew (0.69-0.95 s against
0.59-0.77 s: the server's imports run beside it), so the command gained less: v2 Blosc 7.99,
8.30, 8.61 s (8.10, 8.15, 8.45 s before), v3 zstd 8.76, 8.55, 8.62 s (8.91, 9.38, 9.12 s).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from multiprocessing import forkserver, resource_tracker
from typing import Any

from pipeline.running import server_exit, waiting

#: What a GPU worker imports before its first task (each import runs once, in the server).
#: Not zarr: a worker reads and writes chunks without it (a worker of a CPU run of a v2 Blosc
#: input had imported numcodecs, not zarr), and the server's imports bound the workers' start.
#: Nor the plan's modules, the config's models or the input's Dataset: the pipeline's modules
#: here are those a worker runs or unpickles (the tasks, the plan's :mod:`Source and Sink
#: <pipeline.planning.specs>`, :class:`~pipeline.running.workers.Bound`, the plugin, the
#: facts and checks the run asks the workers for), and import no others
#: (``tests/test_fork_server.py``).
PRELOAD = (
    "distributed",
    "dask_cuda",
    "cupy",
    "nvidia.nvcomp",
    "numcodecs",
    "pipeline.devices.gpu",
    "pipeline.running.tasks",
    "pipeline.planning.specs",
    "pipeline.running.workers",
    "pipeline.running.cluster",
    "pipeline.running.allocator",
    "pipeline.devices.hardware",
    "pipeline.shadowing",
    "pipeline.running.server_exit",  # last: the server ends without the interpreter's teardown
)

_LOCK = threading.Lock()
_STARTED = False  # by this module, in this process
#: (this process's environment before the server started, what the server was given); None
#: where no server was started or its environment was found not to be the nanny's
_GIVEN: tuple[dict[str, str], dict[str, str]] | None = None
log = logging.getLogger("pipeline")


def start_for(config: Any) -> None:
    """:func:`start`, where a run of ``config`` (a :class:`~pipeline.config.models.Config`)
    will start a local GPU cluster: a local scheduler, a backend other than ``cpu``, and a
    usable GPU (the plan's own test, :func:`~pipeline.devices.hardware.gpu_status`)."""
    from pipeline.devices.hardware import gpu_status

    if _STARTED:  # by start_early, before the config was loaded
        return
    local = config.cluster.scheduler == "local"
    if local and config.backend != "cpu" and gpu_status()[0]:
        start()


def start_early(path: str, scheduler: str | None = None) -> dict[str, Any] | None:
    """:func:`start`, before the config file at ``path`` is parsed and checked (pydantic's and
    NumPy's imports and the models' validation: 0.55-0.98 s on the 2-core machine), where a
    plain read of its YAML says the run is local (``cluster.scheduler``, or the command line's
    ``scheduler``) with a backend other than ``cpu``, and a GPU is usable. A file that does not
    read so is left to :func:`start_for`, once the config is loaded; a config that is then
    refused leaves an idle server, which ends with this process. Only a regular file is read
    here: a pipe (``pipeline run <(envsubst < cfg.yaml)``, ``/dev/stdin``) reads once, and
    this read would leave the config's load an empty file. Returns the file's ``cluster``
    section as read (a mapping) where it so reads, else None: the run's MPS daemon may start
    early too (:func:`pipeline.running.mps.start_early`)."""
    import stat

    import yaml

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path) as f:
            doc = yaml.load(f, Loader=_safe_loader(yaml))
        cluster = doc.get("cluster") or {}
        if not isinstance(cluster, dict):
            return None
        backend = doc.get("backend", "auto")
        local = (scheduler or cluster.get("scheduler", "local")) == "local"
    except Exception:  # unreadable, not YAML, not a mapping: the config's load says why
        return None
    if local and backend != "cpu":
        from pipeline.devices.hardware import gpu_status

        if gpu_status()[0]:
            start()
            return cluster
    return None


def started() -> bool:
    """Whether this process started the fork server (:func:`start`)."""
    return _STARTED


def start() -> None:
    """Start the fork server (once per process; later calls return at once), loading
    :data:`PRELOAD` in the background: this returns as soon as the server's process exists.
    For the command line's process only: multiprocessing has one fork server per process, and
    a caller of the Python API keeps its own (its workers are spawned, see
    :func:`forked_workers`). A module that fails to import is left for the worker to import
    (and fail on) itself; a server that cannot start is logged (debug) and the workers are
    spawned."""
    global _STARTED
    with _LOCK:
        if _STARTED:
            return
        # The tracker's start unblocks SIGINT in the thread that starts it: start it first,
        # here, so that the server's starting thread keeps SIGINT blocked.
        resource_tracker.ensure_running()
        error: list[BaseException] = []
        started = waiting.run_in_thread(lambda: _start_blocked(error), "pipeline-fork-server")
        waiting.wait(started)
        if error:
            log.debug(
                "no fork server (%s: %s): workers are spawned", type(error[0]).__name__, error[0]
            )
            return
        _STARTED = True
        log.debug("fork server started: GPU workers will be forked from it")


def _start_blocked(error: list[BaseException]) -> None:
    """On a thread of its own with SIGINT blocked, which the server's process inherits. The
    server gets the environment distributed's own defaults give a worker
    (:func:`_distributed_defaults`): the user's Dask config, which may change it, needs Dask's
    import (0.18-0.21 s on the H200 host), so it is read later, by :func:`forked_workers`."""
    global _GIVEN
    before = dict(os.environ)
    given: dict[str, str] = {}
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        given = _as_the_nanny_reads(_distributed_defaults(), before)
        os.environ.update(given)
        _spawn_server()
        _GIVEN = (before, given)
    except Exception as e:  # a speed-up only: the workers are spawned instead
        _put_back(before, given)  # as the nanny must find it
        error.append(e)


def _spawn_server() -> None:
    """multiprocessing's fork server, loading :data:`PRELOAD`, told that the command line
    started it (:data:`server_exit.STARTED`, in its environment alone: a process this one
    starts later, a fork server of its own among them, must not take itself for it)."""
    os.environ[server_exit.STARTED] = "1"
    try:
        multiprocessing.get_context("forkserver").set_forkserver_preload(list(PRELOAD))
        forkserver.ensure_running()
    finally:
        del os.environ[server_exit.STARTED]


def pre_spawn_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables distributed's nanny sets before it starts a worker process: its
    configuration's ``distributed.nanny.pre-spawn-environ`` (the user's Dask config over
    distributed's own defaults, read from its ``distributed.yaml`` without importing it;
    ``environ``, by default this process's environment, overrides a value), and
    ``PYTHONHASHSEED`` 6640 where the config sets none (or 0): what ``distributed.nanny.Nanny``
    computes as ``pre_spawn_env``."""
    import dask.config

    # the user's values over distributed's defaults, as Dask's config merges them once
    # distributed is imported
    env: dict[str, Any] = dask.config.merge(
        _distributed_defaults(), dask.config.get("distributed.nanny.pre-spawn-environ", {})
    )
    return _as_the_nanny_reads(env, os.environ if environ is None else environ)


def _distributed_defaults() -> dict[str, Any]:
    """distributed's own ``distributed.nanny.pre-spawn-environ``, from its ``distributed.yaml``
    (found, not imported: 1.5 s)."""
    import yaml

    spec = importlib.util.find_spec("distributed")
    assert spec is not None and spec.submodule_search_locations
    with open(os.path.join(spec.submodule_search_locations[0], "distributed.yaml")) as f:
        doc = yaml.load(f, Loader=_safe_loader(yaml))
    defaults: dict[str, Any] = doc["distributed"]["nanny"]["pre-spawn-environ"]
    return defaults


def _safe_loader(yaml: Any) -> Any:
    """PyYAML's safe loader in C (libyaml) where PyYAML was built with it, else in Python:
    distributed's 1,100-line ``distributed.yaml`` took 44 ms to read in Python on the 2-core
    machine, on the run's way to starting the server."""
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _as_the_nanny_reads(env: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """``env``'s variables as the nanny sets them: the process's own value of a variable
    (``environ``) wins, None unsets one, and ``PYTHONHASHSEED`` is 6640 where none (or 0) is
    set."""
    out = {str(k): environ.get(str(k), str(v)) for k, v in env.items() if v is not None}
    if out.get("PYTHONHASHSEED") in (None, "0"):
        out["PYTHONHASHSEED"] = "6640"
    return out


def _server_usable() -> bool:
    """Whether workers forked from the server get the environment the nanny would give them.
    The server was given distributed's defaults; where the user's Dask config sets other
    values, the environment this process had is put back, so that the nanny's spawned
    workers get theirs, and the server is left unused (it ends with this process)."""
    global _GIVEN
    if _GIVEN is None:
        return False
    before, given = _GIVEN
    if pre_spawn_environ(before) == given:
        return True
    _put_back(before, given)
    _GIVEN = None
    log.debug("the Dask config sets the workers' environment: workers are spawned")
    return False


def _put_back(before: Mapping[str, str], names: Iterable[str]) -> None:
    """This process's variables ``names`` as they were (``before``): set, or unset."""
    for name in names:
        if name in before:
            os.environ[name] = before[name]
        else:
            os.environ.pop(name, None)


@contextlib.contextmanager
def forked_workers() -> Iterator[None]:
    """Within this block, distributed starts worker processes by forking them from the server
    this process started (:func:`start`); where it started none (an API caller's process), as
    distributed's config says (spawned, by default)."""
    if not _STARTED or not _server_usable():
        yield
        return
    import dask.config

    _preload_done()
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        yield


def _preload_done() -> None:
    """Tell distributed that the fork server's preload is set: its first forkserver context
    (``distributed.utils.get_mp_context``) would import here, in this process, every package it
    gives multiprocessing to preload (pandas and lz4 among them), which multiprocessing then
    ignores: the server runs already, with :data:`PRELOAD`. On the H200 host (2026-12-01, cold
    ``pipeline run`` of a GPU cluster of 3 workers) that import took 0.34-0.46 s on the
    cluster's start's path, between the first nanny's start and its worker's fork. The mark is
    distributed's module flag (``_forkserver_preload_set`` in distributed 2026.7);
    where a version has none, nothing changes."""
    import distributed.utils

    if hasattr(distributed.utils, "_forkserver_preload_set"):
        distributed.utils._forkserver_preload_set = True
