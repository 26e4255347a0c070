"""The pipeline as the benchmarks run it: in this process on a warm cluster (its compute phase),
as the ``python -m pipeline run`` command (start to exit, as a user counts it), and its parts
(the stage chain, the fused kernel, the graph over data already in memory).

With :mod:`benchmarks.machine` and :mod:`benchmarks.clusters`, the only module that imports
the ``pipeline`` package: when its modules move, only these imports change.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, parse_config
from pipeline.errors import PipelineError
from pipeline.running import graph, runner
from pipeline.running.generate import generate_input
from pipeline.running.runner import RunOptions

ROOT = Path(__file__).resolve().parents[1]

#: The stage chain of every benchmark (the seed article's): ``x * 5``, squared, added to itself.
#: :func:`benchmarks.checks.reference` is the same chain in NumPy.
STAGES = [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}]

#: The pipeline's refusals (a plan that does not fit, bad input): a sweep records them.
Refused = PipelineError

#: Dask chunks of the in-memory workloads: whole shards, about this size (on the H100, 256 MiB
#: chunks moved 39.5 GB/s in and out of host memory, 128 MiB ones 29.6-36.1, 64 MiB ones 19.6:
#: `make bench-sweep`).
MEMORY_BLOCK_BYTES = 256 << 20


def env() -> dict[str, str]:
    """The environment of processes started here: this checkout's packages importable."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def config_doc(
    store: Path, array: str, output: Path, backend: str, **sections: Any
) -> dict[str, Any]:
    """A run's config as a plain document: the input at ``store``/``array``, the benchmarks'
    stages, the output (an array at the root of ``output``, even for a Dataset variable, so
    every workload writes the same thing) replaced on every run; ``sections`` merged in
    (``cluster={...}``)."""
    doc: dict[str, Any] = {
        "input": {"store": str(store), "array": array},
        "output": {"store": str(output), "array": "", "overwrite": True},
        "stages": STAGES,
        "backend": backend,
    }
    for k, v in sections.items():
        doc[k] = {**doc.get(k, {}), **v} if isinstance(v, dict) else v
    return doc


def config(doc: dict[str, Any]) -> Config:
    """The validated config of a document from :func:`config_doc`."""
    return parse_config(doc)


def plan(cfg: Config) -> Any:
    """The pipeline's plan of a run on a local cluster (nothing is started or written)."""
    return runner.plan_run(cfg)


def codec_path(cfg: Config) -> dict[str, Any]:
    """Where the plan decodes and encodes chunks ('cpu' or 'gpu'), and its block shape."""
    p = plan(cfg)
    return {"decode_on": p.decode_on, "encode_on": p.encode_on, "block": list(p.block)}


def warm_runs(
    client: Any,
    cfg: Config,
    reps: int,
    warmup: int = 1,
    before: Callable[[], Any] | None = None,
    busy: Any = None,
) -> tuple[list[float], Any]:
    """GB/s of input in each of ``reps`` runs on a warm cluster after ``warmup`` runs: the
    compute phase of the run summary; with ``before`` (run before each, e.g. dropping the page
    cache), the wall time beyond the summary's total counts too (the final sync to disk).
    ``busy`` (a context manager) is entered around the timed runs. Returns (GB/s, the last
    run's summary)."""
    out = []
    last = None
    for i in range(warmup + reps):
        if before is not None:
            before()
        t = time.perf_counter()
        sampling = busy if busy is not None and i >= warmup else contextlib.nullcontext()
        with sampling:
            last = runner.run(cfg, RunOptions(progress="none", overwrite=True), client=client)
        if before is not None:  # disk: the output must be on the disk, not in its cache
            os.sync()
        wall = time.perf_counter() - t
        if i >= warmup:
            sec = last.seconds["compute"] + (wall - last.seconds["total"] if before else 0.0)
            out.append(last.bytes_in / max(sec, 1e-9) / 1e9)
    return out, last


@dataclass
class Command:
    """One ``python -m pipeline run`` process, timed from its start to its exit."""

    wall_s: float
    summary: dict[str, Any]
    """the run summary it wrote (``--summary-json``)"""

    @property
    def compute_s(self) -> float:
        return float(self.summary["seconds"]["compute"])

    @property
    def fixed_s(self) -> float:
        """What the user waits for besides computing: imports, plan, cluster start, finish,
        shutdown."""
        return self.wall_s - self.compute_s


@functools.cache
def checkout_bytecode() -> bool:
    """Write the bytecode of this checkout's ``pipeline`` package (the one :func:`command_run`'s
    processes import), as ``pip install`` writes an installed package's; False where it could
    not be written (a read-only checkout: its cold runs then compile every module, and
    :func:`benchmarks.machine.without_bytecode` names it). Once a process: later calls only
    answer. Where Python writes no bytecode itself (``PYTHONDONTWRITEBYTECODE``, as the GPU
    host sets it), every cold ``pipeline run`` had compiled the package's modules again, unless
    the bench was started through ``make bench``: on the 2-core machine (2026-12-07, 10
    alternating pairs) 0.41 s of each command's wall and 0.34 s of its CPU time, in its start
    phase; the fork server's worker processes compiled them too."""
    import compileall

    return bool(compileall.compile_dir(str(ROOT / "pipeline"), quiet=2))


def command_run(doc: dict[str, Any], workdir: Path, timeout: float = 1800) -> Command:
    """Run the pipeline as a user does, ``python -m pipeline run CONFIG``, in a new process,
    its package's bytecode written first (:func:`checkout_bytecode`, not timed); RuntimeError
    (with the end of its stderr) when it fails."""
    checkout_bytecode()
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "run.yaml"
    summary = workdir / "summary.json"
    cfg.write_text(json.dumps(doc))  # JSON is YAML
    summary.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pipeline", "run", str(cfg), "--progress", "none"]
    cmd += ["--summary-json", str(summary)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return Command(wall, json.loads(summary.read_text()))


def generate(
    path: Path, shape: list[int], shards: list[int], chunks: list[int], backend: str
) -> None:
    """The synthetic input (random normal float32, zstd), made by ``pipeline generate``'s code
    on ``backend``."""
    cfg = parse_config(
        {
            "input": {
                "store": str(path),
                "generate": {
                    "shape": shape,
                    "dtype": "float32",
                    "seed": 0,
                    "shards": shards,
                    "chunks": chunks,
                },
            },
            "output": {"store": str(path) + ".unused"},
            "stages": STAGES,
            "backend": backend,
            "cluster": {"dashboard": ""},
        }
    )
    generate_input(cfg, progress="none")


def chain(dtype: Any) -> tuple:
    """The benchmarks' stages as the pipeline plans them for ``dtype``."""
    from pipeline.ops import stages

    cfg = parse_config({"input": {"store": "x"}, "output": {"store": "y"}, "stages": STAGES})
    return stages.plan_chain(cfg.stage_specs(), np.dtype(dtype))


def apply_chain(dtype: Any, x: np.ndarray) -> np.ndarray:
    """The pipeline's own NumPy evaluation of the stages (a reference besides NumPy's)."""
    from pipeline.ops.stages import apply_chain as apply

    return apply(chain(dtype), x)


def tune_allocator() -> bool:
    """This process's glibc allocator set as the pipeline sets its workers' and its command's
    (:func:`pipeline.running.allocator.tune`); whether it was."""
    from pipeline.running import allocator

    return allocator.tune()


def cpu_block_encoder(frame: int, level: int = 1) -> Callable[[np.ndarray], int]:
    """The CPU backend's encode of one block (:func:`pipeline.devices.cpu.encode_on_host`):
    a function of a block's bytes (uint8, a whole number of ``frame``-byte frames) that
    encodes every frame with numcodecs zstd at ``level`` (no checksum: the output codec's
    defaults), packing them into a buffer of the calling thread's own, reused from block to
    block as the backend's 'encoded' buffer is; it returns the bytes the frames took."""
    import threading

    from pipeline.devices.base import Encoding
    from pipeline.devices.cpu import encode_on_host, zstd_bound

    enc = Encoding("zstd", level=level)
    local = threading.local()

    def encode(block: np.ndarray) -> int:
        n = block.nbytes // frame
        into = getattr(local, "into", None)
        if into is None or into.size < n * zstd_bound(frame):
            into = local.into = np.empty(n * zstd_bound(frame), np.uint8)
        _, sizes = encode_on_host(block, frame, np.arange(n), enc, into)
        return int(sizes.sum())

    return encode


def bits_unequal(want: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Where ``got``'s elements differ from ``want``'s in their bits (a boolean array), as the
    pipeline's ``verify`` compares (:func:`pipeline.ops.bits.unequal`: a NaN's payload and a
    zero's sign count); ValueError for another shape or dtype."""
    from pipeline.ops.bits import unequal

    return unequal(want, got)


def bits_difference(want: np.ndarray, got: np.ndarray) -> str | None:
    """What ``got`` holds otherwise than ``want`` to the bit, in a few words (another shape or
    dtype, or the elements that differ and the first); None where none does, as the
    pipeline's ``verify`` compares (:func:`pipeline.ops.bits.difference`)."""
    from pipeline.ops.bits import difference

    return difference(want, got)


def fused_kernel(dtype: Any) -> tuple[Callable[[Any], Any], str]:
    """The pipeline's fused kernel of the stages for ``dtype`` (CuPy arrays in and out), and a
    description of it."""
    from pipeline.devices import gpu

    c = chain(dtype)
    kernel = gpu.chain_kernel(c)
    out = c[-1].out_dtype
    note = "pipeline.devices.gpu.chain_kernel: " + "; ".join(s.describe() for s in c)
    return (lambda x: kernel(x, out)), note + " (one pass, -fmad=false)"


def gpu_setup() -> None:
    """Route nvCOMP's allocations through CuPy's pool, as the pipeline's GPU workers do."""
    from pipeline.devices import gpu

    gpu.setup()


# --------------------------------------------------------------------------------------------
# The graph over data already in memory (host or device): what Dask and the chain cost alone.


def read_input(src: Path, backend: str, target: int = MEMORY_BLOCK_BYTES) -> Any:
    """The input as a Dask array (NumPy or CuPy chunks: ``backend``) read by the pipeline's own
    reader, in blocks of whole stored units, as many along the first axis as make about
    ``target`` bytes."""
    import zarr

    z = zarr.open_array(str(src), mode="r")
    unit = list(z.shards or z.chunks)
    unit_bytes = int(np.prod(unit)) * z.dtype.itemsize
    unit[0] = min(z.shape[0], unit[0] * max(1, target // unit_bytes))
    doc = config_doc(src, "", src.parent / "unused.zarr", backend, chunking={"block": unit})
    return graph.read_array(plan(config(doc)).source)


def _keys_held(client: Any) -> int:
    return sum(client.run(lambda dask_worker: len(dask_worker.data)).values())


def _settle(client: Any, keys: int, timeout: float = 30.0) -> None:
    """Wait until the workers hold no more than ``keys`` results."""
    end = time.monotonic() + timeout
    while _keys_held(client) > keys:
        if time.monotonic() > end:
            print(f"warning: workers still hold results {timeout:g} s after release", flush=True)
            return
        time.sleep(0.01)


def _persisted(
    client: Any,
    build: Callable[[], Any],
    reps: int,
    nbytes: float,
    check: Callable[[Any], None] | None = None,
) -> list[float]:
    """GB/s of ``nbytes`` for persisting ``build()`` on the cluster, ``reps`` times after one
    warm-up; ``check`` sees the last result. Each repetition starts once the workers have let
    go of the previous result (releasing is asynchronous: otherwise a repetition's clock would
    include freeing, or pinning afresh, the last one's memory)."""
    from distributed import wait

    held = _keys_held(client)
    out = []
    for i in range(reps + 1):
        t = time.perf_counter()
        y = client.persist(build())
        wait(y)
        sec = time.perf_counter() - t
        if i == reps and check is not None:
            check(y)
        del y
        _settle(client, held)
        if i:
            out.append(nbytes / sec / 1e9)
    return out


def memory_workload(
    client: Any,
    src: Path,
    reps: int,
    pinned: bool,
    backend: str = "gpu",
    block_bytes: int = MEMORY_BLOCK_BYTES,
) -> list[float]:
    """GB/s with the input already in host memory (page-locked or not) and the result back in
    host memory; one block of the last result is compared with NumPy."""
    from distributed import wait

    from benchmarks.checks import reference

    x = read_input(src, backend, block_bytes)
    c = chain(x.dtype)
    x = graph.to_host(x) if backend == "gpu" else x
    x = client.persist(graph.pin(x) if pinned else x)
    wait(x)

    def check(y: Any) -> None:
        blk = tuple(slice(0, ch[0]) for ch in x.chunks)
        want = reference(np.asarray(x[blk].compute()))
        said = bits_difference(want, np.asarray(y[blk].compute()))
        if said is not None:  # to the bit, as verify compares
            raise AssertionError(f"the in-memory workload's result differs from NumPy's: {said}")

    return _persisted(client, lambda: graph.process(x, c, backend), reps, x.nbytes, check)


def device_workload(client: Any, src: Path, reps: int) -> list[float]:
    """GB/s (bytes read + written) of the fused chain through Dask on data already on the GPU
    (CuPy chunks persisted)."""
    from distributed import wait

    x = read_input(src, "gpu")
    c = chain(x.dtype)
    xd = client.persist(x)
    wait(xd)
    return _persisted(client, lambda: graph.apply_stages(xd, c, "gpu"), reps, 2 * x.nbytes)


def timeline(client: Any, cfg: Config, threads: int) -> dict[str, float]:
    """One more run, with Dask's task stream recorded: where the compute phase's time went.

    ``span``: first task start to last task end; ``outside``: compute phase minus span (graph
    submission, results back); ``occupancy``: task time / (threads x span); ``ramp``: until
    every thread has started a task; ``tail``: from the first thread running out of work to the
    end."""
    from distributed import get_task_stream

    with get_task_stream(client) as ts:
        summary = runner.run(cfg, RunOptions(progress="none", overwrite=True), client=client)
    spans = [
        (d["worker"], ss["start"], ss["stop"])
        for d in ts.data
        for ss in d["startstops"]
        if ss["action"] == "compute" and ss["stop"] - ss["start"] > 1e-3  # not key aliases
    ]
    if not spans:
        return {}
    start = min(a for _, a, _ in spans)
    stop = max(b for _, _, b in spans)
    slots = threads * len({w for w, _, _ in spans})
    firsts = sorted(a for _, a, _ in spans)[:slots]
    lasts = sorted(b for _, _, b in spans)[-slots:]
    return {
        "compute_s": summary.seconds["compute"],
        "span_s": stop - start,
        "outside_s": summary.seconds["compute"] - (stop - start),
        "occupancy": sum(b - a for _, a, b in spans) / (slots * (stop - start)),
        "ramp_s": firsts[-1] - start,
        "tail_s": stop - lasts[0],
        "mean_task_s": sum(b - a for _, a, b in spans) / len(spans),
    }
