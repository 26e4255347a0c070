"""What the user sees while a run works: blocks done of total, throughput and an ETA.

On a terminal a live bar (rich); otherwise (CI, a log file) one plain line every ``interval``
seconds, from a timer thread so that lines keep coming while slow blocks run.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, TextIO

from dask.utils import format_time

#: The shortest interval between plain progress lines, in seconds, that a run takes (the
#: command line's ``--progress-interval``, :func:`pipeline.run`'s ``interval``). The timer
#: thread (:meth:`Progress._tick`) prints a line each time its wait for the run's end times
#: out, so a shorter interval is a loop that hardly waits: 1e-300 printed 8,800 lines a
#: second into a StringIO, a quarter of a core (and the GIL) taken from the threads that run
#: the blocks, and a log no one can read. 0.01 printed 92 a second for about 1% of a core; a
#: person reads far fewer, so nothing that helps is refused.
MIN_INTERVAL = 0.01

#: What an interval must be, as the refusals of both say it.
INTERVAL_RULE = (
    f"a number of seconds of at least {MIN_INTERVAL:g} "
    f"(at most {1 / MIN_INTERVAL:g} progress lines a second)"
)


def is_interval(seconds: float) -> bool:
    """Whether ``seconds`` is an interval a run takes: at least :data:`MIN_INTERVAL`, and
    finite (not NaN, not inf)."""
    # to float32's precision: np.float32(0.01) is 0.0099999998, and means 0.01 (helper-37)
    return MIN_INTERVAL * (1 - 2**-20) <= seconds < float("inf")


def gbps(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9 if seconds > 0 else 0.0


#: The units a rate is said in (:func:`rate_said`), decimal as GB/s has always been here.
_RATE_UNITS = ("B/s", "kB/s", "MB/s", "GB/s", "TB/s")


def rate_said(bytes_per_second: float) -> str:
    """A rate as every line of the pipeline says it (progress lines, the bar, the summary):
    three significant figures in the decimal unit that holds it between 1 and 1000 ('1.23
    GB/s', '45.6 MB/s', '800 kB/s'); '0 B/s' for none. It had been GB/s to two decimals
    everywhere, a slow run's (10,000 chunks of 400 B at 0.8 MB/s) said as '0.00 GB/s' (h77c)."""
    if not bytes_per_second > 0 or not math.isfinite(bytes_per_second):
        return "0 B/s"
    value, unit = float(bytes_per_second), 0
    while unit < len(_RATE_UNITS) - 1 and float(f"{value:.3g}") >= 1000:
        value, unit = value / 1000, unit + 1
    if unit == 0 and value < 1:  # under a byte a second: as little as a rate can be said
        return f"{value:.3g} B/s"
    digits = max(0, 2 - math.floor(math.log10(float(f"{value:.3g}"))))
    return f"{value:.{digits}f} {_RATE_UNITS[unit]}"


class Progress:
    """Blocks done of total, with throughput of input bytes and an ETA.

    ``mode``: ``bar`` (rich, live), ``plain`` (one line every ``interval`` seconds, from a
    timer thread so that lines keep coming while slow blocks run, and a last line at the end),
    ``none``, or ``auto`` (a bar on a terminal, plain lines otherwise).
    """

    def __init__(
        self,
        total: int,
        bytes_per_block: float,
        mode: str = "auto",
        interval: float = 5.0,
        stream: TextIO | None = None,
        label: str = "run",
    ):
        self.total = total
        self.bytes_per_block = bytes_per_block
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "plain"
        self.mode = mode
        self.interval = interval
        self.label = label
        self.done = 0
        self.t0 = time.perf_counter()
        self.t_done: float | None = None  # when the last block came: the clock stops there
        self._bar: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._ticked = threading.Event()  # set once the ticker has printed its last line

    def __enter__(self) -> Progress:
        self.t0 = time.perf_counter()
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            # markup=False: the label and the rate are text, never rich markup
            self._bar = RichProgress(
                TextColumn("{task.description}", style="bold", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("blocks  {task.fields[rate]}", markup=False),
                TimeElapsedColumn(),
                TextColumn("eta", markup=False),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, rate="")
        elif self.mode == "plain" and self.interval > 0:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        while self._ticker is not None and not self._ticked.is_set():
            # not Thread.join: a Ctrl-C landing inside it can leave a lock released twice
            # (pipeline/running/waiting.py)
            time.sleep(0.005)
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif self.mode == "plain" and exc[0] is None:
            self.line()

    def advance(self, n: int = 1) -> None:
        """``n`` more blocks done. The last one stops the clock and the plain lines: what the
        run does after it (a performance report fetched, ``--report``) is not the blocks'
        time, whose rate had kept falling, line after line, at 100%."""
        self.done += n
        if self.done >= self.total and self.t_done is None:
            self.t_done = time.perf_counter()
            self._stop.set()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=self.rate_text())

    def _tick(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.line()
        finally:
            self._ticked.set()

    def elapsed(self) -> float:
        """Seconds since the start, up to the last block where all are done."""
        return (self.t_done or time.perf_counter()) - self.t0

    def rate_text(self) -> str:
        return rate_said(gbps(self.done * self.bytes_per_block, self.elapsed()) * 1e9)

    def line(self) -> None:
        """Print the plain progress line now."""
        done, elapsed = self.done, self.elapsed()
        rate = done / elapsed if elapsed > 0 else 0
        pct = 100.0 * done / self.total if self.total else 100.0
        if done >= self.total:
            eta = ""
        elif rate > 0:
            eta = f", eta {format_time((self.total - done) / rate)}"
        else:
            eta = ", eta ?"
        print(
            f"[{self.label}] {done}/{self.total} blocks ({pct:.0f}%), "
            f"{self.rate_text()}, elapsed {format_time(elapsed)}{eta}",
            file=self.stream,
            flush=True,
        )
