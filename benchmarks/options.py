"""Command-line option types the benchmarks share: each refuses, under the command's usage
(status 2), a value no run could measure, before anything runs, naming the option and what it
takes (a size of NaN GB had reached ``round()`` on the GPU host, a negative one had run the
smallest input silently, ``--also foo`` had failed after every other section ran)."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def count(text: str) -> int:
    """A number of repetitions, workers or threads: a whole number, at least 1 (a median of
    none is no figure, a cluster of none runs nothing)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: at least 1")
    return n


def counts(text: str) -> list[int]:
    """A comma list of :func:`count` values (``64,32,16``)."""
    items = [v for v in text.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of whole numbers of at least 1")
    return [count(v.strip()) for v in items]


def gigabytes(text: str) -> float:
    """A size in GB: a finite number above 0."""
    try:
        gb = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a number of GB") from None
    if not (math.isfinite(gb) and gb > 0):
        raise argparse.ArgumentTypeError(f"{text}: a number of GB above 0")
    return gb


def names(allowed: tuple[str, ...], *, empty: bool = False) -> Callable[[str], list[str]]:
    """The type of a comma list of some of ``allowed`` (a workload, a section), in the order
    given; a name not among them is refused, the choices named. ``empty``: whether a list of
    no names means something (``--skip ''``: nothing skipped); where not (``--workloads ''``,
    which had measured nothing and written its tables and chart, exit 0), it is refused."""

    def parse(text: str) -> list[str]:
        items = [v.strip() for v in text.split(",") if v.strip()]
        if not items and not empty:
            raise argparse.ArgumentTypeError(
                f"{text!r} names none: choose from {','.join(allowed)} (a comma list)"
            )
        bad = [v for v in items if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"{','.join(bad)}: choose from {','.join(allowed)} (a comma list)"
            )
        return items

    return parse


def out_dir(text: str) -> Path:
    """The directory results are written to, made where missing; a file there is refused
    (it had been a FileExistsError traceback at the first figure)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: a file, not a directory: name a directory")
    return path


_SETTING = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


def settings(text: str) -> list[str]:
    """A comma list of ``WxT`` (W workers per GPU of T threads each, both at least 1), each
    written ``WxT``; '' for none."""
    out = []
    for item in (v for v in text.split(",") if v.strip()):
        m = _SETTING.fullmatch(item)
        if not m or min(int(m[1]), int(m[2])) < 1:
            raise argparse.ArgumentTypeError(
                f"{item!r}: each a WxT of whole numbers of at least 1, such as 1x8,2x4"
            )
        out.append(f"{int(m[1])}x{int(m[2])}")
    return out


#: Set by the Makefile to the target that runs a benchmark (``bench``, ``bench-sweep``, ...).
MAKE_TARGET_VARIABLE = "PIPELINE_MAKE_BENCH"


def quick_fix() -> str:
    """How to ask for the CPU mode: ``--quick``, or as make takes it where make ran the
    benchmark (``make bench BENCH_ARGS=--quick``: ``make bench --quick`` is make's option)."""
    target = os.environ.get(MAKE_TARGET_VARIABLE)
    return f"`make {target} BENCH_ARGS=--quick`" if target else "--quick"


def needs_gpu(prog: str, why: str) -> int:
    """Say, in one line on stderr, that ``prog``'s full mode needs a GPU (``why`` not) and how
    to run its CPU mode; the exit status 2."""
    print(f"{prog}: the full benchmark needs a GPU ({why}); use {quick_fix()}", file=sys.stderr)
    return 2


def settle(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    defaults: dict[str, tuple[Any, Any]],
    sizes: tuple[str, ...] = (),
) -> None:
    """Fill in each option of ``defaults`` left out (``None``) with its value, ``(full,
    quick)`` by the mode; one given is kept as given, ``--quick`` or not. An option of
    ``sizes`` (an input's size) given with ``--quick``, whose toy inputs have sizes of their
    own, is refused under the usage (``--quick --size-gb 1e30`` had run 0.002 GB silently)."""
    for dest in sizes:
        if args.quick and getattr(args, dest) is not None:
            flag = "--" + dest.replace("_", "-")
            parser.error(
                f"argument {flag}: --quick runs toy inputs of its own sizes: leave {flag} out, "
                "or drop --quick to measure that size"
            )
    for dest, (full, quick) in defaults.items():
        if getattr(args, dest) is None:
            setattr(args, dest, quick if args.quick else full)
