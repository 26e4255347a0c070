"""Chunk geometry: storage units (shards or chunks), inner chunks, blocks.

Pure functions on shapes, shared by both backends and by the planner. Terms:

* **chunk** — the array's (inner) chunk: the unit one zstd frame holds;
* **unit** — what one storage key holds: a shard of several chunks, or one chunk when unsharded;
* **block** — one Dask chunk, one task: a whole number of units (the planner makes it so).

Chunks inside a unit are stored in "chunk-major" order: chunk by chunk, each in C order, every
chunk at its full shape (edge chunks padded), which is how Zarr stores them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

Shape = tuple[int, ...]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def grid_shape(shape: Shape, unit: Shape) -> Shape:
    """Number of units along each axis."""
    return tuple(ceil_div(s, u) for s, u in zip(shape, unit, strict=True))


def iter_indices(grid: Shape) -> Iterator[Shape]:
    """Every index of a grid, in C order."""
    return itertools.product(*(range(g) for g in grid))


def unit_slices(index: Shape, unit: Shape, shape: Shape) -> tuple[slice, ...]:
    """The array region a unit (or block) covers, clipped to the array's shape."""
    return tuple(
        slice(i * u, min((i + 1) * u, s)) for i, u, s in zip(index, unit, shape, strict=True)
    )


def within(inner: Sequence[slice], outer: Sequence[slice]) -> tuple[slice, ...]:
    """The region ``inner`` (array slices, inside ``outer``) as slices of ``outer``'s region:
    a unit's place in its block."""
    return tuple(
        slice(a.start - b.start, a.stop - b.start) for a, b in zip(inner, outer, strict=True)
    )


def region_shape(slices: Sequence[slice]) -> Shape:
    return tuple(s.stop - s.start for s in slices)


def chunks_per_unit(unit: Shape, chunk: Shape) -> Shape:
    return tuple(u // c for u, c in zip(unit, chunk, strict=True))


def chunk_coordinates(c: int, grid: Shape, axes: Sequence[int] | None = None) -> list[int]:
    """The coordinates of the chunk ``c`` (its index in C order over the chunk grid ``grid``,
    as a shard's index lists its chunks) in the array's axes: where ``axes`` is given, the
    grid's axis ``k`` is the array's axis ``axes[k]`` (a shard stored transposed, after Zarr
    v3's ``transpose`` codecs: tensorstore writes them so), and the coordinates are put back
    in the array's order, those a user finds the chunk by (zarr-python's reading of the
    array; its inner chunk of the shard in the array's axes); None: the grid is in the
    array's axes already."""
    at = [int(i) for i in np.unravel_index(c, grid)]
    if axes is None:
        return at
    out = [0] * len(at)
    for k, axis in enumerate(axes):
        out[axis] = at[k]
    return out


def is_multiple(big: Shape, small: Shape) -> bool:
    return all(b % s == 0 for b, s in zip(big, small, strict=True))


def nbytes(shape: Shape, dtype: np.dtype) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


# --------------------------------------------------------------------------------------------
# Chunk-major <-> C order. Both take and return arrays of the same module (NumPy or CuPy).


def _interleave(n: int) -> tuple[int, ...]:
    # (n0..n_{k-1}, c0..c_{k-1}) -> (n0, c0, n1, c1, ...)
    return tuple(itertools.chain.from_iterable((i, i + n) for i in range(n)))


def is_slab(unit: Shape, chunk: Shape) -> bool:
    """True when chunk-major order equals C order: every chunk is one contiguous run of the
    unit, i.e. its shape is ``(1, ..., 1, c, u_{k+1}, ..., u_n)``.

    Then a unit's frames, decoded back to back, already form the unit in C order, and the
    conversions below are free (views).
    """
    n = len(unit)
    return any(
        all(chunk[i] == 1 for i in range(k)) and all(chunk[i] == unit[i] for i in range(k + 1, n))
        for k in range(n)
    )


def frames_to_unit(flat: Any, unit: Shape, chunk: Shape) -> Any:
    """A 1-D chunk-major buffer (every chunk of a unit, back to back) as the unit in C order."""
    n = chunks_per_unit(unit, chunk)
    a = flat.reshape(n + tuple(chunk))
    return a.transpose(_interleave(len(unit))).reshape(unit)


def unit_to_frames(block: Any, chunk: Shape) -> Any:
    """A unit in C order as one 1-D chunk-major buffer (the inverse of frames_to_unit)."""
    unit = block.shape
    n = chunks_per_unit(unit, chunk)
    split = tuple(itertools.chain.from_iterable(zip(n, chunk, strict=True)))
    k = len(unit)
    perm = tuple(range(0, 2 * k, 2)) + tuple(range(1, 2 * k, 2))
    return block.reshape(split).transpose(perm).reshape(-1)


def units_in(index: Shape, block: Shape, unit: Shape, shape: Shape) -> list[Shape]:
    """Grid indices of the units inside block ``index`` (the plan aligns blocks to units)."""
    region = unit_slices(index, block, shape)
    ranges = [range(r.start // u, ceil_div(r.stop, u)) for r, u in zip(region, unit, strict=True)]
    return [tuple(u) for u in itertools.product(*ranges)]


def present_mask(unit_index: Shape, unit: Shape, chunk: Shape, shape: Shape) -> np.ndarray:
    """Which inner chunks of a unit hold array elements (C order over the unit's chunks)."""
    per_axis = []
    for ui, u, c, s in zip(unit_index, unit, chunk, shape, strict=True):
        ii = np.arange(u // c)
        per_axis.append(ui * u + ii * c < s)
    mask = per_axis[0]
    for m in per_axis[1:]:
        mask = np.logical_and.outer(mask, m)
    return np.asarray(mask).reshape(-1)
