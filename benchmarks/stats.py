"""Statistics of repeated measurements: medians and ranges, rates and ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def median(values: Sequence[float]) -> float | None:
    """The median of ``values``; None when there are none."""
    return float(statistics.median(values)) if values else None


def num(value: float | None) -> str:
    """A measured value with the digits it merits: ``2793``, ``4.71``, ``0.0213``; ``'-'`` for
    None."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def spread(values: Sequence[float], unit: str = "") -> str:
    """``'4.71 (4.67-5.10)'``: the median and the range of several values; ``'4.71 (1 run)'``
    for one; ``'-'`` for none. ``unit`` follows the median: ``'4.71 s (4.67-5.10)'``."""
    if not values:
        return "-"
    mid = num(statistics.median(values)) + (f" {unit}" if unit else "")
    if len(values) == 1:
        return f"{mid} (1 run)"
    return f"{mid} ({num(min(values))}-{num(max(values))})"


#: The units a rate measured in GB/s is shown in, largest first: (GB/s in one unit, unit).
RATE_UNITS = ((1.0, "GB/s"), (1e-3, "MB/s"), (1e-6, "kB/s"))


def rate_unit(gbps: float) -> tuple[float, str]:
    """The unit a rate of ``gbps`` GB/s reads best in: the largest of :data:`RATE_UNITS` of
    which it is at least one (kB/s below that), as (GB/s in one unit, unit)."""
    return next((u for u in RATE_UNITS if abs(gbps) >= u[0]), RATE_UNITS[-1])


def rate(gbps: float | None) -> str:
    """A rate given in GB/s, in the unit it reads best in: ``'4.71 GB/s'``, ``'963 MB/s'``,
    ``'12.5 kB/s'`` (toy inputs of ``--quick`` move MB/s); ``'-'`` for None."""
    if gbps is None:
        return "-"
    scale, unit = rate_unit(gbps)
    return f"{num(gbps / scale)} {unit}"


def rate_spread(values: Sequence[float]) -> str:
    """:func:`spread` of rates given in GB/s, all in the unit their median reads best in:
    ``'963 MB/s (910-1020)'``."""
    if not values:
        return "-"
    scale, unit = rate_unit(statistics.median(values))
    return spread([v / scale for v in values], unit)


def summarize(samples_s: Sequence[float], warmup: int, **extra: Any) -> dict[str, Any]:
    """Median, min and max of timed samples (seconds), with the samples themselves."""
    if not samples_s:
        return {"reps": 0, "warmup": warmup, "samples_s": [], **extra}
    return {
        "median_s": float(statistics.median(samples_s)),
        "min_s": float(min(samples_s)),
        "max_s": float(max(samples_s)),
        "reps": len(samples_s),
        "warmup": warmup,
        "samples_s": [float(s) for s in samples_s],
        **extra,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``; None when either is missing or ``b`` is not positive."""
    return None if a is None or b is None or b <= 0 else a / b


def gbps(nbytes: float, seconds: float | None) -> float | None:
    """``nbytes`` over ``seconds`` in GB/s (1e9 bytes); None without a positive time."""
    return None if seconds is None or seconds <= 0 else nbytes / seconds / 1e9


def rates(nbytes: float, seconds: Sequence[float]) -> list[float]:
    """GB/s of ``nbytes`` for each of several timings (seconds)."""
    return [nbytes / max(s, 1e-12) / 1e9 for s in seconds]
