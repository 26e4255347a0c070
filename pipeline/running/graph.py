"""The Dask graph of a run: read -> stages -> write, one task per block after fusion.

The arrays are ordinary Dask arrays whose chunk type is declared at every step with ``meta=``:
NumPy where blocks are on the host, CuPy where they are on a GPU. A block moves between the two
only through an explicit ``to_device``/``to_host`` step, placed by the plan (for example when the
input's chunks are too large for GPU decoding and are decoded on the CPU first).
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from pipeline.planning.plan import Sink, Source
from pipeline.running import tasks
from pipeline.running.tasks import STATS
from pipeline.store import grid
from pipeline.store.grid import Shape


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
    return da.map_blocks(tasks.to_device, x, meta=meta("gpu", x.dtype, x.ndim))


def to_host(x: da.Array) -> da.Array:
    return da.map_blocks(tasks.to_host, x, meta=np.empty((0,) * x.ndim, dtype=x.dtype))


def pin(x: da.Array) -> da.Array:
    """Host chunks copied into page-locked memory (persist it: then GPUs read it directly)."""
    return da.map_blocks(tasks.to_pinned, x, meta=np.empty((0,) * x.ndim, dtype=x.dtype))


def process(x: da.Array, chain: tuple, backend: str) -> da.Array:
    """The stage chain over an array already in memory; the result in host memory.

    NumPy chunks in, NumPy chunks out. On the GPU backend each block crosses to the device,
    runs the fused kernel, and returns into page-locked memory (so persisted results can go
    back to a GPU without a staging copy).
    """
    if backend == "cpu":
        return apply_stages(x, chain, "cpu")
    y = apply_stages(to_device(x), chain, "gpu")
    return da.map_blocks(
        tasks.to_host_pinned, y, meta=np.empty((0,) * y.ndim, dtype=chain[-1].out_dtype)
    )


def on(x: da.Array, backend: str) -> da.Array:
    """``x`` with chunks on ``backend``'s device, moving them only when they are elsewhere."""
    is_gpu = type(x._meta).__module__.startswith("cupy")
    if backend == "gpu" and not is_gpu:
        return to_device(x)
    if backend == "cpu" and is_gpu:
        return to_host(x)
    return x


def apply_stages(x: da.Array, chain: tuple, backend: str) -> da.Array:
    """The stage chain, fused into one kernel per block, on ``backend``."""
    out = chain[-1].out_dtype
    return da.map_blocks(
        tasks.apply_stages, x, chain, backend, dtype=out, meta=meta(backend, out, x.ndim)
    )


def write_array(y: da.Array, sink: Sink) -> da.Array:
    """Write every block; a small int64 array of per-block statistics (fields ``STATS``)."""
    chunks = tuple((1,) * len(c) for c in y.chunks) + ((len(STATS),),)
    return da.map_blocks(
        tasks.write_block,
        y,
        sink,
        chunks=chunks,
        new_axis=y.ndim,
        dtype=np.int64,
        meta=np.empty((0,) * (y.ndim + 1), np.int64),
    )


def build(source: Source, sink: Sink, chain: tuple, backend: str) -> da.Array:
    """read -> [to device] -> stages -> [to host] -> write, as the plan places them."""
    x = on(read_array(source), backend)
    y = on(apply_stages(x, chain, backend), sink.backend)
    return write_array(y, sink)


def block_keys(stats: da.Array, indices: list[Shape]) -> tuple[dict, list]:
    """The optimised graph of ``stats`` and the keys that write the given blocks."""
    (opt,) = dask.optimize(stats)
    keys = [(opt.name, *i, 0) for i in indices]
    return opt.__dask_graph__(), keys
