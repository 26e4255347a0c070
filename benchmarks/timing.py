"""Clocks. Device steps are timed with CUDA events (``cupyx.profiler.benchmark``); host work,
and device work spread over several streams or threads, with a wall clock around work that the
callable synchronises itself. Warm-up calls are never timed.

CuPy is imported only inside the functions that time device work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.stats import summarize


def wall_reps(fn: Callable[[], float | None], reps: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn`` after ``warmup`` untimed calls.

    ``fn`` synchronises any device work it starts; it may return its own measured seconds
    (a span inside it), which then count instead of the wall time of the call."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        own = fn()
        out.append(own if own is not None else time.perf_counter() - t)
    return out


def device_reps(
    fn: Callable[[], Any], reps: int, warmup: int = 1, stream: Any = None
) -> list[float]:
    """Seconds of the device work of each of ``reps`` calls of ``fn``, from CUDA events recorded
    before and after each call (``cupyx.profiler.benchmark``), after ``warmup`` calls.

    The events are recorded on ``stream`` (else the current stream): work that ``fn`` issues
    on another stream is not covered, so pass the stream it uses."""
    import contextlib

    from cupyx.profiler import benchmark

    with stream if stream is not None else contextlib.nullcontext():
        result = benchmark(fn, n_repeat=reps, n_warmup=warmup)
    return [float(t) for t in result.gpu_times[0]]


class Clock:
    """Seconds since the benchmark started, printed before each section's name."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.sections: dict[str, float] = {}
        self._open: tuple[str, float] | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def stamp(self, label: str) -> None:
        """Print ``label`` with the time so far; the previous section's seconds are kept in
        :attr:`sections`."""
        now = time.perf_counter()
        if self._open is not None:
            name, start = self._open
            self.sections[name] = self.sections.get(name, 0.0) + now - start
        self._open = (label, now)
        print(f"[{now - self.t0:6.1f} s] {label}", flush=True)


# --------------------------------------------------------------------------------------------
# The seed article's clocks: a wall-time budget, host work, and one device step three ways.


@dataclass
class Budget:
    """A soft limit on a run's wall time: repetitions at big sizes stop early to fit it.

    At least one repetition is always timed; what was cut is recorded with the measurement.
    """

    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def allows(self, cost_s: float, reserve_s: float = 0.0) -> bool:
        return self.remaining() - reserve_s >= cost_s


def time_host(
    step: Callable[[], Any],
    prepare: Callable[[], Any],
    reps: int,
    warmup: int,
    budget: Budget,
    reserve_s: float = 0.0,
) -> tuple[list[float], bool]:
    """Time ``step`` ``reps`` times after ``warmup`` untimed runs; ``prepare`` runs untimed
    before each. Stops early (after at least one timed run) when the next run would overrun
    the budget less ``reserve_s``. Returns (samples in seconds, cut short)."""
    samples: list[float] = []
    last_wall: float | None = None
    for i in range(warmup + reps):
        if samples and last_wall is not None and not budget.allows(last_wall, reserve_s):
            return samples, True
        w0 = time.perf_counter()
        prepare()
        t0 = time.perf_counter()
        step()
        t1 = time.perf_counter()
        last_wall = t1 - w0
        if i >= warmup:
            samples.append(t1 - t0)
    return samples, False


@dataclass
class DeviceTimes:
    """One device step timed three ways: host clock at return (the time to enqueue, what the
    seed article measured), host clock after a device synchronize, and CUDA events."""

    enqueue: list[float] = field(default_factory=list)
    sync: list[float] = field(default_factory=list)
    events: list[float] = field(default_factory=list)

    def add(self, other: tuple[float, float, float]) -> None:
        self.enqueue.append(other[0])
        self.sync.append(other[1])
        self.events.append(other[2])

    def summary(self, warmup: int, **extra: Any) -> dict[str, Any]:
        return {
            "enqueue": summarize(self.enqueue, warmup),
            "sync": summarize(self.sync, warmup),
            "events": summarize(self.events, warmup),
            **extra,
        }


def device_step(cp: Any, step: Callable[[], Any]) -> tuple[tuple[float, float, float], Any]:
    """Run ``step`` once on an idle device: ((enqueue s, synchronised s, events s), result)."""
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    t0 = time.perf_counter()
    result = step()
    t1 = time.perf_counter()
    end.record()
    cp.cuda.Device().synchronize()
    t2 = time.perf_counter()
    return (t1 - t0, t2 - t0, cp.cuda.get_elapsed_time(start, end) / 1e3), result


def cold_step(cp: Any, step: Callable[[], Any]) -> tuple[dict[str, float], Any]:
    """Run ``step`` as a fresh script's first CuPy call would: nothing before it, so the time
    holds what such a call pays (CUDA context, first allocation, kernel compilation or load
    from CuPy's disk cache). Host clock only: events need the context being timed."""
    t0 = time.perf_counter()
    result = step()
    t1 = time.perf_counter()
    cp.cuda.Device().synchronize()
    t2 = time.perf_counter()
    return {"enqueue_s": t1 - t0, "sync_s": t2 - t0}, result


def time_device(
    cp: Any, step: Callable[[], Any], prepare: Callable[[], Any], reps: int, warmup: int
) -> tuple[DeviceTimes, Any]:
    """Time ``step`` on the device ``reps`` times after ``warmup`` runs; (times, last result)."""
    times = DeviceTimes()
    result = None
    for i in range(warmup + reps):
        result = None  # let the previous output go back to the pool before the next run
        prepare()
        t, result = device_step(cp, step)
        if i >= warmup:
            times.add(t)
    return times, result
