"""The peers: the programs a user writes from the Dask, Zarr and dask-cuda docs for the same job.

* CPU Dask: ``da.from_zarr -> x * 5, x * x, x + x -> to_zarr`` on a ``LocalCluster`` with its
  defaults, in a process of its own (``python -m benchmarks.peers``), timed from the process's
  start to its exit (imports, cluster start, compute, close) and over its compute phase.
* Naive dask-cuda: the same with ``map_blocks(cupy.asarray)`` before the stages and
  ``map_blocks(cupy.asnumpy)`` after them, on a ``LocalCUDACluster`` with its defaults.

Both write zstd level 1 (the pipeline's output codec), in the Dask array's chunks. An input
with shards is read in whole shards (``chunks=`` its shard shape), as one would to avoid a task
per 128 KiB chunk. Nothing here imports the pipeline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Where the child process prints its phases: the last line of its stdout starts with this.
_MARK = "peer-phases: "


def _source(store: str, array: str) -> Any:
    """The input as a Dask array, in its stored units (whole shards where it has them)."""
    import dask.array as da
    import zarr

    z = zarr.open_array(store, path=array, mode="r")
    chunks = getattr(z, "shards", None) or z.chunks
    return da.from_zarr(store, component=array or None, chunks=chunks)


def _stages(x: Any) -> Any:
    x = x * 5
    x = x * x
    return x + x


def _write(y: Any, output: str, level: int) -> None:
    from zarr.codecs import ZstdCodec

    shutil.rmtree(output, ignore_errors=True)
    y.to_zarr(output, compressors=ZstdCodec(level=level))


def cpu_main(argv: list[str] | None = None) -> int:
    """The CPU Dask peer, as its own process: prints its phases (seconds) as JSON last."""
    t0 = time.perf_counter()
    p = argparse.ArgumentParser(description="the CPU Dask peer, timed")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--array", default="")
    p.add_argument("--level", type=int, default=1)
    p.add_argument("--workers", type=int)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    import dask.array  # noqa: F401  (what the peer needs, imported as its script would)
    import zarr.codecs  # noqa: F401
    from distributed import Client, LocalCluster

    t_import = time.perf_counter()
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=args.threads, dashboard_address=":0"
    )
    client = Client(cluster)
    workers = len(cluster.workers)
    threads = sum(client.nthreads().values())
    t_cluster = time.perf_counter()
    y = _stages(_source(args.input, args.array))
    _write(y, args.output, args.level)
    t_compute = time.perf_counter()
    client.close()
    cluster.close()
    t_close = time.perf_counter()
    phases = {
        "import_s": t_import - t0,
        "cluster_s": t_cluster - t_import,
        "compute_s": t_compute - t_cluster,
        "close_s": t_close - t_compute,
        "nbytes": int(y.nbytes),
        "workers": workers,
        "threads": threads,
    }
    print(_MARK + json.dumps(phases), flush=True)
    return 0


def cpu_peer(
    store: Path,
    array: str,
    output: Path,
    env: dict[str, str],
    workers: int | None = None,
    threads: int | None = None,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Run the CPU Dask peer in a new process; its phases, with ``wall_s`` (the process from
    start to exit) and ``gbps`` (its compute phase). RuntimeError when it fails."""
    cmd = [sys.executable, "-m", "benchmarks.peers", str(store), str(output)]
    cmd += ["--array", array]
    if workers:
        cmd += ["--workers", str(workers)]
    if threads:
        cmd += ["--threads", str(threads)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the CPU Dask peer failed ({proc.returncode}): {proc.stderr[-2000:]}")
    phases = json.loads(lines[-1][len(_MARK) :])
    return phases | {"wall_s": wall, "gbps": phases["nbytes"] / phases["compute_s"] / 1e9}


def naive_cuda(client: Any, store: Path, array: str, output: Path, rows: int) -> float:
    """The naive dask-cuda peer on the first ``rows`` of the input: GB/s of its compute phase
    (``client`` is its cluster's)."""
    import cupy as cp

    x = _source(str(store), array)[:rows]
    y = _stages(x.map_blocks(cp.asarray)).map_blocks(cp.asnumpy)
    t = time.perf_counter()
    _write(y, str(output), 1)
    return float(y.nbytes / (time.perf_counter() - t) / 1e9)


def naive_memory(client: Any, store: Path, reps: int) -> list[float]:
    """The naive dask-cuda peer from and to host memory: the input persisted as NumPy chunks,
    ``cupy.asarray -> stages -> cupy.asnumpy`` persisted, GB/s of ``reps`` runs after one."""
    import cupy as cp
    from distributed import wait

    x = client.persist(_source(str(store), ""))
    wait(x)
    out = []
    for i in range(reps + 1):
        y = _stages(x.map_blocks(cp.asarray)).map_blocks(cp.asnumpy)
        t = time.perf_counter()
        y = client.persist(y)
        wait(y)
        sec = time.perf_counter() - t
        del y
        if i:
            out.append(x.nbytes / sec / 1e9)
    del x
    return out


if __name__ == "__main__":
    sys.exit(cpu_main())
