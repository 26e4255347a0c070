"""Block and chunk shapes: what a block must be aligned to, how it grows, the output's chunks
and shards for a block, and the layout of an input that ``generate`` makes.

A block (one Dask chunk, one task) holds whole stored units of the input and whole chunks and
shards of the output, so no two tasks ever read-modify-write one stored key. Pure functions of
shapes and sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pipeline.config.models import GenerateConfig, OutputConfig
from pipeline.errors import ConfigError
from pipeline.store import grid
from pipeline.store.arrays import ArrayInfo
from pipeline.store.grid import Shape

#: Target size of an automatic output chunk (one zstd frame).
AUTO_CHUNK_BYTES = 128 << 10
#: An automatic input chunk keeps to ``AUTO_CHUNK_BYTES``, unless it is at most this large.
SMALL_INPUT_CHUNK = 1 << 20
#: Target sizes of a generated input's shards, and of its chunks when it is unsharded.
UNIT_TARGET = 128 << 20
UNSHARDED_TARGET = 64 << 20


def aligned(block: Shape, unit: Shape, shape: Shape) -> bool:
    """Every block boundary is a unit boundary: each axis is a whole multiple of the unit,
    or a single block covers the whole axis."""
    return all(b % u == 0 or b >= s for b, u, s in zip(block, unit, shape, strict=True))


def lcm_shape(*shapes: Shape) -> Shape:
    """The smallest shape that is a whole multiple of each of ``shapes`` on every axis."""
    return tuple(math.lcm(*axis) for axis in zip(*shapes, strict=True))


def alignment(info: ArrayInfo, output: OutputConfig) -> Shape:
    """The smallest block: a whole number of the input's stored units and of the output's
    chunks and shards where the config sets them; on an axis where that reaches past the
    array's end, one block across the axis, of the fewest output chunks and shards that cover
    it (input chunks of 250 and output chunks of 256 on 1000 elements: 1024, not 32000, whose
    blocks of 4 GB had been refused as too large). Blocks hold whole stored units, so each
    unit is read and decoded by one task only (Zarr's path too: a block cutting a 1 GiB chunk
    would have every task decode it)."""
    outputs = [s for s in (output.chunks, output.shards) if isinstance(s, tuple)]
    base = lcm_shape(info.unit, *outputs)
    out = lcm_shape(*outputs) if outputs else (1,) * len(base)
    return tuple(
        b if b < s else min(b, grid.ceil_div(max(s, 1), o) * o)
        for b, o, s in zip(base, out, info.shape, strict=True)
    )


def grow(base: Shape, shape: Shape, itemsize: int, target: int) -> Shape:
    """Grow ``base`` by whole factors, last axes first being already whole, until ``target``
    bytes: the first axis grows first (C-contiguous blocks), then the next."""
    block = list(base)
    for a in range(len(block)):
        cap = grid.ceil_div(shape[a], base[a])  # factors beyond the array gain nothing
        per = math.prod(block) * itemsize
        k = max(1, min(cap, target // max(per, 1)))
        block[a] = base[a] * k
        if k < cap:
            break
    return tuple(block)


def largest_fitting(block: Shape, base: Shape, fits: Callable[[Shape], bool]) -> Shape | None:
    """The largest block below ``block`` on the first axis, there a whole multiple of
    ``base``, whose plan ``fits``; None when none does."""
    lo, hi = 0, grid.ceil_div(block[0], base[0]) - 1  # k * base[0] rows, k in [1, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits((mid * base[0], *block[1:])):
            lo = mid
        else:
            hi = mid - 1
    return (lo * base[0], *block[1:]) if lo else None


def auto_chunk(unit: Shape, itemsize: int, target: int = AUTO_CHUNK_BYTES) -> Shape:
    """A chunk that tiles ``unit`` as C-order slabs of about ``target`` bytes: on the first
    axis whose trailing slab fits ``target``, the largest divisor of the axis that fits it;
    where that slab would be under 1/8 of ``target`` (an axis of few divisors, such as a
    prime length), the divisor whose slab is nearest ``target`` by ratio, above it if need be
    (a shard of 131073 int64 values: chunks of 43691, not of 3 values, 24 bytes each)."""
    n = len(unit)
    for k in range(n):
        tail = math.prod(unit[k + 1 :]) * itemsize
        if tail <= target:
            want = max(1, target // tail)
            divisors = _divisors(unit[k])
            c = max(d for d in divisors if d <= want)
            if c * tail * 8 < target:
                c = min(divisors, key=lambda d: abs(math.log(d * tail / target)))
            return (1,) * k + (c,) + tuple(unit[k + 1 :])
    return tuple(unit)  # unreachable: k = n-1 always has tail = itemsize


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def output_layout(
    block: Shape, output: OutputConfig, info: ArrayInfo, dtype: np.dtype
) -> tuple[Shape, Shape]:
    """(unit, chunk) of the output for blocks of ``block``: the config's shards, or one shard
    per block (``auto``; of whole chunks where the block runs across an axis, past its end),
    or unsharded (``none``); the config's chunks, or automatic ones: the
    input's chunks when they tile the shard (or the block) and are small (at most
    :data:`SMALL_INPUT_CHUNK` bytes of the output's dtype), else slabs of about 128 KiB in a
    shard, or one chunk per block unsharded."""
    unit: Shape = output.shards if isinstance(output.shards, tuple) else block
    if isinstance(output.chunks, tuple):
        chunk = tuple(output.chunks)
        if not isinstance(output.shards, tuple):  # a block across an axis: whole chunks
            unit = tuple(
                grid.ceil_div(u, c) * c if u >= s else u
                for u, c, s in zip(unit, chunk, info.shape, strict=True)
            )
    elif _keeps_input_chunks(unit, info, dtype):
        chunk = tuple(info.chunk)
    else:
        chunk = block if output.shards == "none" else auto_chunk(unit, dtype.itemsize)
    if output.shards == "none":  # each chunk is a file of its own
        return chunk, chunk
    return tuple(unit), chunk


def _keeps_input_chunks(unit: Shape, info: ArrayInfo, dtype: np.dtype) -> bool:
    """Whether automatic output chunks are the input's: they tile ``unit`` and hold at most
    :data:`SMALL_INPUT_CHUNK` bytes of ``dtype``."""
    small = info.chunk_nbytes // info.dtype.itemsize * dtype.itemsize
    return grid.is_multiple(unit, info.chunk) and small <= SMALL_INPUT_CHUNK


def generated_layout(g: GenerateConfig) -> tuple[Shape, Shape]:
    """(chunk, unit) of the array ``input.generate`` describes. Raises ConfigError (``key``)
    for chunks or shards of another number of axes than the shape (h60h: zarr-python's
    "`chunk_shape` and `shape` need to have the same number of dimensions", naming no key),
    shards of a Zarr v2 array, or shards that are not whole chunks."""
    dtype = np.dtype(g.dtype)
    shape = tuple(g.shape)
    for key, given in (("input.generate.chunks", g.chunks), ("input.generate.shards", g.shards)):
        if isinstance(given, tuple) and len(given) != len(shape):
            raise ConfigError(
                f"{key} {list(given)} has {_axes(len(given))}, input.generate.shape "
                f"{list(shape)} {_axes(len(shape))}: give one number per axis of the shape",
                key=key,
                shape=given,
                input_shape=shape,
            )
    sharded = g.shards != "none" and g.zarr_format == 3
    if g.shards != "none" and g.zarr_format == 2 and isinstance(g.shards, tuple):
        raise ConfigError(
            "input.generate.shards needs zarr_format: 3 (Zarr v2 has no shards)",
            key="input.generate.shards",
        )
    if not sharded:
        chunk = (
            g.chunks
            if isinstance(g.chunks, tuple)
            else _slab(shape, dtype.itemsize, UNSHARDED_TARGET)
        )
        return tuple(chunk), tuple(chunk)
    if isinstance(g.shards, tuple):
        unit = g.shards
    elif isinstance(g.chunks, tuple):
        unit = grow(g.chunks, shape, dtype.itemsize, UNIT_TARGET)
    else:
        unit = _slab(shape, dtype.itemsize, UNIT_TARGET)
    chunk = g.chunks if isinstance(g.chunks, tuple) else auto_chunk(unit, dtype.itemsize)
    if not grid.is_multiple(unit, chunk):
        raise ConfigError(
            f"input.generate.shards {list(unit)} is not a whole multiple of chunks {list(chunk)}",
            key="input.generate.shards",
            shape=unit,
            multiple_of=chunk,
        )
    return tuple(chunk), tuple(unit)


def _axes(n: int) -> str:
    """``1 axis``, ``2 axes``."""
    return f"{n} axis" if n == 1 else f"{n} axes"


def _slab(shape: Shape, itemsize: int, target: int) -> Shape:
    """About ``target`` bytes of C-order slab (any size; edges may be partial)."""
    for k in range(len(shape)):
        tail = math.prod(shape[k + 1 :]) * itemsize
        if tail <= target:
            return (1,) * k + (max(1, min(shape[k], target // tail)),) + tuple(shape[k + 1 :])
    return tuple(shape)
