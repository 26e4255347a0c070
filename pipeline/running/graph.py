"""The Dask graph of a run: one task per block, from the input's files to the output's.

A run's graph (:func:`block_tasks`) has one task per block, which reads, runs the stages and
writes that block on one worker thread (:func:`pipeline.running.tasks.run_block`), so a block
never rests in worker memory. It is written as Dask's task graph directly: building it needs
neither ``dask.array`` (whose import loads xarray and pandas where they are installed) nor
CuPy in the client.

The Dask array views (:func:`read_array`, :func:`process`, ...) are for work on arrays held
in memory (the benchmarks): their chunk type is declared at every step with ``meta=``, NumPy
where blocks are on the host, CuPy where they are on a GPU; a block moves between the two only
through an explicit ``to_device``/``to_host`` step.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
from dask.base import tokenize

from pipeline.planning.specs import Sink, Source
from pipeline.running import tasks
from pipeline.running.workers import Bound
from pipeline.store import grid
from pipeline.store.grid import Shape

if TYPE_CHECKING:
    import dask.array as da


def block_tasks(
    source: Source, sink: Sink, chain: tuple, backend: str, indices: list[Shape]
) -> tuple[dict, list]:
    """The graph that writes the blocks at ``indices`` (one task each, with no dependencies),
    and its keys in the order of ``indices``. Each task returns the block's statistics
    (:data:`~pipeline.running.tasks.STATS`)."""
    # a name of this run's own: the keys of a run interrupted on the same client (a notebook)
    # may still be cancelled on the scheduler when the resume submits them, which then gets
    # them cancelled too
    name = "pipeline-block-" + uuid.uuid4().hex
    run = Bound(name, tasks.run_block, source, sink, chain, backend)
    keys = [(name, *i) for i in indices]
    return {k: (run, tuple(i)) for k, i in zip(keys, indices, strict=True)}, keys


def dask_chunks(shape: Shape, block: Shape) -> tuple[tuple[int, ...], ...]:
    """Dask's chunks for an array cut into ``block``-shaped pieces (the last ones partial)."""
    return tuple(
        tuple(min(b, s - i) for i in range(0, s, b)) for s, b in zip(shape, block, strict=True)
    )


def meta(backend: str, dtype: np.dtype, ndim: int) -> Any:
    """An empty chunk of the backend's type. A client that cannot make a CuPy array (no CuPy
    or no GPU here, submitting to GPU workers) declares NumPy instead."""
    if backend == "gpu":
        try:
            import cupy

            return cupy.empty((0,) * ndim, dtype=dtype)
        except Exception:
            pass
    return np.empty((0,) * ndim, dtype=dtype)


def read_array(source: Source) -> da.Array:
    """The input as a Dask array with NumPy or CuPy chunks (``source.backend``)."""
    import dask.array as da

    info = source.info
    name = "read-" + tokenize(source)
    block_grid = grid.grid_shape(info.shape, source.block)
    dsk = {(name, *i): (tasks.read_block, source, i) for i in grid.iter_indices(block_grid)}
    return da.Array(
        dsk,
        name,
        dask_chunks(info.shape, source.block),
        meta=meta(source.backend, source.dtype, len(info.shape)),
    )


def to_device(x: da.Array) -> da.Array:
    import dask.array as da

    return da.map_blocks(tasks.to_device, x, meta=meta("gpu", x.dtype, x.ndim))


def to_host(x: da.Array) -> da.Array:
    import dask.array as da

    return da.map_blocks(tasks.to_host, x, meta=np.empty((0,) * x.ndim, dtype=x.dtype))


def pin(x: da.Array) -> da.Array:
    """Host chunks copied into page-locked memory (persist it: then GPUs read it directly)."""
    import dask.array as da

    return da.map_blocks(tasks.to_pinned, x, meta=np.empty((0,) * x.ndim, dtype=x.dtype))


def process(x: da.Array, chain: tuple, backend: str) -> da.Array:
    """The stage chain over an array already in memory; the result in host memory.

    NumPy chunks in, NumPy chunks out. On the GPU backend each block crosses to the device,
    runs the fused kernel, and returns into page-locked memory (so persisted results can go
    back to a GPU without a staging copy).
    """
    import dask.array as da

    if backend == "cpu":
        return apply_stages(x, chain, "cpu")
    y = apply_stages(to_device(x), chain, "gpu")
    return da.map_blocks(
        tasks.to_host_pinned, y, meta=np.empty((0,) * y.ndim, dtype=chain[-1].out_dtype)
    )


def apply_stages(x: da.Array, chain: tuple, backend: str) -> da.Array:
    """The stage chain, fused into one kernel per block, on ``backend``."""
    import dask.array as da

    out = chain[-1].out_dtype
    return da.map_blocks(
        tasks.apply_stages, x, chain, backend, dtype=out, meta=meta(backend, out, x.ndim)
    )
