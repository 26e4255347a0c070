"""Clusters: the pipeline's own (started by its cluster code from a plan's cluster section, as
``pipeline run`` starts one), the naive peer's (dask-cuda's defaults), and a scheduler with
workers started by hand as separate processes (as on a shared cluster)."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def pipeline_cluster(cluster_plan: Any) -> Iterator[Any]:
    """The local cluster a plan's ``cluster`` section describes, started and closed by the
    pipeline's cluster code (Dask's own logs at errors only); its client, the current one in
    this thread while the cluster is up: the pipeline's own clients are no default
    (``running/cluster.py``'s ``_client``), and the benchmarks' ``wait`` and ``compute``
    calls ask distributed for the current client."""
    from pipeline.running.cluster import connect

    with connect(cluster_plan, quiet=True) as client, client.as_current():
        yield client


@contextlib.contextmanager
def naive_cuda() -> Iterator[Any]:
    """A ``LocalCUDACluster`` with dask-cuda's defaults (one worker per GPU), as the dask-cuda
    docs start one, its dashboard on any free port (None would be distributed's 8787, which
    another process may hold); Dask's logs at errors only."""
    from dask_cuda import LocalCUDACluster
    from distributed import Client

    cluster = LocalCUDACluster(dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        client.wait_for_workers(len(cluster.worker_spec), timeout=300)
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=60)
        with contextlib.suppress(Exception):
            cluster.close(timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def hand_started(
    backend: str, n: int, threads: int, protocol: str, env: dict[str, str]
) -> Iterator[str]:
    """``dask scheduler`` and ``dask cuda worker`` (one worker per GPU of the first ``n``; CPU:
    ``dask worker --nworkers n``) started as separate processes, with ``env``; the scheduler's
    address once every worker has joined."""
    port = _free_port()
    addr = f"{protocol}://127.0.0.1:{port}"
    py = sys.executable
    env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(n)))}
    log = open(Path(tempfile.gettempdir()) / "pipeline-bench-cluster.log", "w")  # noqa: SIM115
    sched = [py, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port)]
    sched += ["--no-dashboard", "--protocol", protocol]
    if backend == "gpu":
        worker = [py, "-m", "dask_cuda.cli", addr, "--nthreads", str(threads), "--no-dashboard"]
        if protocol != "tcp":
            worker += ["--protocol", protocol]
    else:
        worker = [py, "-m", "distributed.cli.dask_worker", addr, "--nworkers", str(n)]
        worker += ["--nthreads", str(threads), "--no-dashboard"]
    procs = [subprocess.Popen(sched, env=env, stdout=log, stderr=log)]
    try:
        from distributed import Client

        _wait_listening(port, 60)
        procs.append(subprocess.Popen(worker, env=env, stdout=log, stderr=log))
        t0 = time.monotonic()
        while True:
            try:
                with Client(addr, timeout=10) as c:
                    c.wait_for_workers(n, timeout=120)
                break
            except OSError:
                if time.monotonic() - t0 > 60:
                    raise
                time.sleep(0.5)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=60)
        log.close()


def _wait_listening(port: int, timeout: float) -> None:
    """Return once something accepts connections on ``port`` of this host (the scheduler)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def ucx_available() -> bool:
    """Whether distributed can speak UCX here (distributed-ucxx installed)."""
    try:
        import distributed_ucxx  # noqa: F401
    except Exception:
        return False
    return True
