"""The cluster a run uses: one it starts (and always closes), or one it joins by address.

``local`` with the GPU backend starts dask-cuda's ``LocalCUDACluster`` with
``workers_per_gpu`` workers per GPU; with the CPU backend a ``LocalCluster`` of processes. An
address joins an existing scheduler whose workers were started with ``dask worker`` or
``dask cuda worker``. Each worker gets the :class:`PipelineSetup` plugin: the device budget as
the GPU memory pool's limit, and a sampler of peak memory that the run summary reads back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from distributed import Client, WorkerPlugin

from pipeline.errors import ClusterError, PipelineError

log = logging.getLogger("pipeline")

#: Level of Dask's own log lines (scheduler, nanny, workers) in clusters this process starts:
#: errors only, so a run's output is the pipeline's; the command line lowers it with ``-vv``.
DASK_LOG_LEVEL = logging.ERROR


class PipelineSetup(WorkerPlugin):
    """Per-worker set-up: GPU pool limit, nvCOMP allocator, and the memory sampler."""

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
    ):
        self.backend = backend
        self.device_budget = device_budget
        self.interval = interval
        self.chain = chain
        self.staging_bytes = staging_bytes
        self.ignore_sigint = ignore_sigint

    def setup(self, worker: Any) -> None:
        if self.ignore_sigint and threading.current_thread() is threading.main_thread():
            # a worker the nanny restarted (after a crash) did not inherit the ignored SIGINT
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.backend == "gpu":
            from pipeline import gpu

            gpu.setup(self.device_budget)
            if self.staging_bytes:
                # read and encoded staging for every thread, and the chain's kernel
                gpu.warm(self.chain, 2 * worker.state.nthreads, self.staging_bytes)
        sampler = MemorySampler(self.backend, self.interval)
        sampler.start()
        worker._pipeline_sampler = sampler

    def teardown(self, worker: Any) -> None:
        sampler = getattr(worker, "_pipeline_sampler", None)
        if sampler is not None:
            sampler.stop()


class MemorySampler:
    """Samples the worker's RSS and its GPU pool's reserved bytes; keeps the peaks."""

    def __init__(self, backend: str, interval: float) -> None:
        import psutil

        self.backend = backend
        self.interval = interval
        self.proc = psutil.Process()
        self.peak_rss = 0
        self.peak_device = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline-memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
        if self.backend == "gpu":
            from pipeline import gpu

            self.peak_device = max(self.peak_device, gpu.memory_in_use()[1])

    def reset(self) -> None:
        self.peak_rss = 0
        self.peak_device = 0
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.sample()


def _reset_peaks(dask_worker: Any) -> None:
    s = getattr(dask_worker, "_pipeline_sampler", None)
    if s is not None:
        s.reset()


def _read_peaks(dask_worker: Any) -> dict[str, int]:
    s = getattr(dask_worker, "_pipeline_sampler", None)
    if s is None:
        return {}
    s.sample()
    return {"rss": s.peak_rss, "device": s.peak_device}


def reset_peaks(client: Client) -> None:
    client.run(_reset_peaks)


def read_peaks(client: Client) -> dict[str, dict[str, int]]:
    """{worker address: {"rss": bytes, "device": bytes}} since the last reset."""
    return client.run(_read_peaks)


@contextlib.contextmanager
def connect(
    plan_cluster: Any, quiet: bool | None = None, plugin: WorkerPlugin | None = None
) -> Iterator[Client]:
    """Start or join the cluster the plan describes; always close what was started.

    ``quiet``: Dask's own logs at errors only (True), warnings (False), or ``DASK_LOG_LEVEL``.
    """
    level = DASK_LOG_LEVEL if quiet is None else (logging.ERROR if quiet else logging.WARNING)
    cluster = None
    client = None
    try:
        local = plan_cluster.scheduler == "local"
        if local:
            with _children_ignore_sigint():
                try:
                    cluster = _start_local(plan_cluster, level)
                except (ImportError, OSError, RuntimeError, ValueError, TimeoutError) as e:
                    raise PipelineError(
                        f"the local Dask cluster did not start ({e}); check the config's "
                        "cluster section (dashboard address, workers, memory limits)"
                    ) from None
            client = Client(cluster)
            want = plan_cluster.workers
            client.wait_for_workers(want, timeout=120)
        else:
            client = join(plan_cluster.scheduler, plan_cluster.timeout)
        client.register_plugin(
            _with_sigint(plugin, local)
            or PipelineSetup(plan_cluster.backend, plan_cluster.device_budget, ignore_sigint=local)
        )
        yield client
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=20)


def _with_sigint(plugin: WorkerPlugin | None, ignore: bool) -> WorkerPlugin | None:
    """``plugin``, set to ignore SIGINT in restarted workers of a cluster this process owns."""
    if isinstance(plugin, PipelineSetup):
        plugin.ignore_sigint = ignore
    return plugin


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Start the local workers with SIGINT ignored, which they inherit (Python leaves an
    inherited ignored SIGINT alone). Ctrl-C at a terminal signals the whole process group;
    this way it reaches only the run, which cancels the work and closes the cluster, instead of
    also killing every worker with a traceback. A Ctrl-C while the workers start is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        # None: a handler not set from Python; Python's own is the best stand-in
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def join(address: str, timeout: float) -> Client:
    """A client of the scheduler at ``address`` that has at least one worker; or ClusterError
    (one line naming the address and the fix; fields ``address`` and ``reason``: 'malformed',
    'unreachable', 'http', 'not-dask', 'not-scheduler', 'no-workers'), all within ``timeout``
    seconds.

    Dask's client waits without end for the handshake of a server that accepts connections
    but does not speak its protocol (the dashboard's HTTP port), and reads an HTTP answer as
    a frame count (``MemoryError``); so the port is first seen to listen, and the server's
    identity is asked on a connection of our own, bounded in time, before the client
    connects."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    where = _scheduler_address(address)
    host_port = _host_port(where)
    if host_port is not None:
        _wait_listening(address, host_port, timeout, deadline)
    reserve = min(1.0, timeout / 4)  # to tell an HTTP server from a silent one
    try:
        kind = _identity(where, left() - reserve)
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
        client = Client(where, timeout=f"{max(left(), 0.1)}s")
    except (OSError, TimeoutError) as e:
        raise ClusterError(
            f"cannot connect to the Dask scheduler at {address} within {timeout:g} s ({e}); "
            "raise cluster.timeout",
            address=address,
            reason="unreachable",
        ) from None
    try:
        client.wait_for_workers(1, timeout=max(left(), 0.1))
    except TimeoutError:
        client.close()
        raise ClusterError(
            f"the scheduler at {address} has no workers; start some with "
            f"`dask worker {address}` or `dask cuda worker {address}`",
            address=address,
            reason="no-workers",
        ) from None
    return client


def _scheduler_address(address: str) -> str:
    """``address`` in full (``tcp://`` added where it has no scheme), or ClusterError when
    Dask could not connect to it: an unknown scheme, no port, a port that is not a number."""
    from distributed.comm.addressing import parse_address, unparse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, loc = parse_address(address)
        get_backend(scheme)
        full = unparse_address(scheme, loc)
        _host_port(full)
    except (ValueError, TypeError) as e:
        raise ClusterError(
            f"{address!r} is not a Dask scheduler address ({e}): write tcp://HOST:8786 (8786 "
            "is the scheduler's default port; 8787 its dashboard)",
            address=address,
            reason="malformed",
        ) from None
    return full


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a tcp:// or tls:// address; None for other schemes (inproc, ucx)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, loc = parse_address(address)
    return parse_host_port(loc) if scheme in ("tcp", "tls") else None


def _wait_listening(
    address: str, host_port: tuple[str, int], timeout: float, deadline: float
) -> None:
    """Return once something accepts connections at ``host_port``, trying again until the
    ``deadline`` (a scheduler may be starting); else ClusterError ('unreachable')."""
    import socket

    while True:
        try:
            socket.create_connection(
                host_port, timeout=max(deadline - time.monotonic(), 0.05)
            ).close()
            return
        except OSError as e:
            if isinstance(e, socket.gaierror) or time.monotonic() + 0.1 >= deadline:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                    f"({type(e).__name__}: {e}); start it with `dask scheduler`, check the "
                    "address, or raise cluster.timeout",
                    address=address,
                    reason="unreachable",
                ) from None
            time.sleep(0.1)


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
    protocol: an HTTP server (the dashboard), or something else."""
    if host_port is not None and _speaks_http(host_port, seconds):
        return ClusterError(
            f"{address} answers HTTP, not the Dask protocol: is it the dashboard (8787)? the "
            "scheduler listens on 8786 (tcp://HOST:8786)",
            address=address,
            reason="http",
        )
    what = "no answer" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
    return ClusterError(
        f"{address} does not answer as a Dask scheduler within {timeout:g} s ({what}): check "
        "the address (the scheduler's default port is 8786), or raise cluster.timeout",
        address=address,
        reason="not-dask",
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


def held_device_memory(client: Client) -> dict[str, int]:
    """Device bytes the cluster's workers hold, per GPU PCI bus id, after their CuPy pools
    gave back cached blocks: a warm cluster's own memory, which a plan counts as free."""
    from pipeline.hardware import held_device_bytes

    held: dict[str, int] = {}
    with contextlib.suppress(Exception):
        for got in client.run(held_device_bytes).values():
            if got is not None:
                held[got[0]] = held.get(got[0], 0) + got[1]
    return held


def add_workers_per_gpu(cluster: Any, per_gpu: int) -> None:
    """Give each GPU of a LocalCUDACluster ``per_gpu`` workers: dask-cuda starts one per GPU
    (and refuses a GPU listed twice), so each GPU worker's spec (its CUDA_VISIBLE_DEVICES,
    CPU affinity and memory plugins) is copied under new names, and the cluster scaled to
    the lot (SpecCluster starts the workers its ``worker_spec`` names)."""
    import copy

    specs = dict(cluster.worker_spec)
    for name, spec in specs.items():
        for k in range(1, per_gpu):
            cluster.worker_spec[f"{name}-{k}"] = copy.deepcopy(spec)
    cluster.scale(len(cluster.worker_spec))


def _start_local(p: Any, level: int) -> Any:
    local_dir = os.path.join(tempfile.gettempdir(), "pipeline-dask")
    dashboard = p.dashboard or None
    # No dashboard still starts the scheduler's HTTP server (health, metrics), on 8787 unless
    # told otherwise: a free port, so two runs on one host do not collide (or warn).
    no_dashboard = {} if dashboard else {"scheduler_kwargs": {"dashboard_address": ":0"}}
    if p.backend == "gpu":
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(
            CUDA_VISIBLE_DEVICES=",".join(str(g) for g in p.gpus) or None,
            n_workers=len(p.gpus) or None,
            threads_per_worker=p.threads_per_worker,
            # blocks never rest in worker memory (tasks are fused), so nothing to spill
            device_memory_limit=0,
            memory_limit=p.host_budget or "auto",
            protocol=None if p.protocol == "tcp" else p.protocol,
            dashboard_address=dashboard,
            silence_logs=level,
            local_directory=local_dir,
            **no_dashboard,
        )
        if p.workers_per_gpu > 1:
            add_workers_per_gpu(cluster, p.workers_per_gpu)
        return cluster
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=p.workers,
        threads_per_worker=p.threads_per_worker,
        processes=p.protocol != "inproc",
        memory_limit=p.host_budget or "auto",
        dashboard_address=dashboard,
        silence_logs=level,
        local_directory=local_dir,
        **no_dashboard,
    )
