"""Outputs checked against NumPy, every element, bit for bit: a benchmark must be computing the
truth. Both stores are read from their files with numcodecs (:mod:`benchmarks.rawzarr`),
independently of the pipeline that wrote one of them and of zarr-python."""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.rawzarr import StoredArray, open_array


def reference(x: np.ndarray) -> np.ndarray:
    """The benchmarks' stage chain (:data:`benchmarks.pipelines.STAGES`: multiply by 5, square,
    add to itself) as NumPy computes it, each operation rounded on its own; a new array."""
    with np.errstate(all="ignore"):
        y = x * x.dtype.type(5)
        np.multiply(y, y, out=y)
        np.add(y, y, out=y)
    return y


@dataclass
class Check:
    """One output compared with NumPy's chain over its input."""

    output: str
    input: str
    elements: int
    differ: int
    """elements whose bits differ from NumPy's (NaN payloads and subnormals included)"""
    seconds: float
    problem: str = ""
    """why the output could not be compared at all (shape, dtype)"""

    @property
    def ok(self) -> bool:
        return self.elements > 0 and self.differ == 0 and not self.problem

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


Box = tuple[tuple[int, ...], tuple[int, ...]]


def _regions(inp: StoredArray, out: StoredArray) -> list[Box]:
    """Boxes ``(lo, hi)`` covering ``out``, each a whole number of both arrays' stored units
    (so that no file is decoded twice), in C order."""
    step = [math.lcm(a, b) for a, b in zip(inp.chunk, out.chunk, strict=True)]
    grids = [range(0, s, c) for s, c in zip(out.shape, step, strict=True)]
    boxes: list[Box] = []
    for lo in np.ndindex(*[len(g) for g in grids]):
        start = tuple(g[i] for g, i in zip(grids, lo, strict=True))
        stop = tuple(min(a + c, s) for a, c, s in zip(start, step, out.shape, strict=True))
        boxes.append((start, stop))
    return boxes


def _threads(boxes: list[Box], itemsize: int) -> int:
    """Threads for the comparison: the cores, at most 16, and no more than a quarter of the
    available memory holds (each box is held about four times: input, reference, output and
    a decoded file)."""
    import psutil

    largest = max((math.prod(b - a for a, b in zip(*box, strict=True)) for box in boxes), default=1)
    fit = psutil.virtual_memory().available // 4 // max(1, 4 * largest * itemsize)
    return int(max(1, min(os.cpu_count() or 1, 16, fit)))


def check_output(
    input_store: Path, output_store: Path, input_array: str = "", output_array: str = ""
) -> Check:
    """Compare every element of the output with :func:`reference` over the input.

    The output may cover the first rows of the input only (a peer run on a part of it): its
    shape must equal the input's on every axis but the first, and not exceed it on the first.
    The result says how many elements differ (:attr:`Check.ok`: none), or what kept the two
    from being compared."""
    t0 = time.perf_counter()
    inp = open_array(input_store, input_array)
    out = open_array(output_store, output_array)
    name = str(Path(output_store) / output_array)
    where = str(Path(input_store) / input_array)
    problem = ""
    if out.shape[1:] != inp.shape[1:] or out.shape[0] > inp.shape[0]:
        problem = f"shape {out.shape} does not fit the input's {inp.shape}"
    elif out.dtype != inp.dtype:
        problem = f"dtype {out.dtype}, not the input's {inp.dtype}"
    if problem:
        return Check(name, where, math.prod(out.shape), 0, time.perf_counter() - t0, problem)
    from benchmarks.pipelines import bits_unequal  # as `pipeline verify` compares

    def one(box: Box) -> int:
        lo, hi = box
        want = reference(inp.read(lo, hi))
        got = out.read(lo, hi)
        return int(np.count_nonzero(bits_unequal(want, got)))

    boxes = _regions(inp, out)
    with ThreadPoolExecutor(_threads(boxes, out.dtype.itemsize)) as ex:
        differ = sum(ex.map(one, boxes))
    return Check(name, where, math.prod(out.shape), differ, time.perf_counter() - t0)


def require(check: Check) -> Check:
    """``check``, or AssertionError (naming the output) when it did not pass."""
    if not check.ok:
        raise AssertionError(
            f"{check.output}: {check.differ} of {check.elements} elements differ from NumPy's"
            + (f" ({check.problem})" if check.problem else "")
        )
    return check
