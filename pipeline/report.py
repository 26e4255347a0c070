"""What the user sees while a run works and when it ends: progress, and the run summary.

On a terminal the progress is a live bar (blocks done of total, GB/s, ETA); otherwise (CI, a log
file) one plain line every ``interval`` seconds. The summary is a table on the terminal and the
same facts as JSON for scripts (``--summary-json``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from dask.utils import format_bytes, format_time


def gbps(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9 if seconds > 0 else 0.0


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
        self._bar: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

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
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif self.mode == "plain" and exc[0] is None:
            self.line()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=self.rate_text())

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.line()

    def rate_text(self) -> str:
        elapsed = time.perf_counter() - self.t0
        return f"{gbps(self.done * self.bytes_per_block, elapsed):.2f} GB/s"

    def line(self) -> None:
        """Print the plain progress line now."""
        done, elapsed = self.done, time.perf_counter() - self.t0
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


@dataclass
class Summary:
    """The run's facts, as printed at the end and saved by ``--summary-json``."""

    status: str
    backend: str
    backend_reason: str
    input: str
    output: str
    workers: int
    threads_per_worker: int
    gpus: list[int]
    blocks_total: int
    blocks_done: int
    blocks_skipped: int
    bytes_in: int
    bytes_out: int
    stored_bytes_read: int
    stored_bytes_written: int
    seconds: dict[str, float]
    gbps_in: float
    peak_device_bytes: int | None
    device_budget: int | None
    peak_host_bytes: int
    host_budget: int | None
    nan: int
    posinf: int
    neginf: int
    task_time: dict[str, float]
    bound_by: str
    dashboard: str | None
    stages: list[str]
    versions: dict[str, str] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    blocks_per_worker: dict[str, int] = field(default_factory=dict)
    """{worker address: blocks it computed in this run}"""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)

    def rows(self) -> list[tuple[str, str]]:
        s = self.seconds
        peak_dev = (
            "—"
            if self.peak_device_bytes is None
            else (
                f"{format_bytes(self.peak_device_bytes)} per GPU worker (budget "
                f"{format_bytes(self.device_budget) if self.device_budget else 'none'})"
            )
        )
        rows = [
            ("status", self.status),
            ("backend", f"{self.backend} ({self.backend_reason})"),
            (
                "workers",
                f"{self.workers} x {self.threads_per_worker} threads"
                + (f" on GPUs {self.gpus}" if self.gpus else ""),
            ),
            (
                "blocks",
                f"{self.blocks_done} written"
                + (f", {self.blocks_skipped} already done (skipped)" if self.blocks_skipped else "")
                + f", of {self.blocks_total}",
            ),
            *(
                [("blocks per worker", ", ".join(map(str, self.blocks_per_worker.values())))]
                if len(self.blocks_per_worker) > 1
                else []
            ),
            (
                "bytes",
                f"in {format_bytes(self.bytes_in)} ({format_bytes(self.stored_bytes_read)}"
                f" stored), out {format_bytes(self.bytes_out)} "
                f"({format_bytes(self.stored_bytes_written)} stored)",
            ),
            (
                "time",
                f"{s.get('total', 0):.2f} s total: plan {s.get('plan', 0):.2f}, cluster "
                f"{s.get('cluster', 0):.2f}, compute {s.get('compute', 0):.2f}, finish "
                f"{s.get('finish', 0):.2f}",
            ),
            ("throughput", f"{self.gbps_in:.2f} GB/s of input (compute phase)"),
            (
                "task time",
                ", ".join(f"{k} {v:.0%}" for k, v in self.task_time.items())
                + (f" — {self.bound_by}" if self.bound_by else ""),
            ),
            ("peak device memory", peak_dev),
            (
                "peak host memory",
                f"{format_bytes(self.peak_host_bytes)} per worker (budget "
                f"{format_bytes(self.host_budget) if self.host_budget else 'none'})",
            ),
            ("non-finite values", f"NaN {self.nan}, +inf {self.posinf}, -inf {self.neginf}"),
            ("output", self.output),
        ]
        if self.dashboard:
            rows.append(("dashboard", self.dashboard))
        rows += [("note", n) for n in self.notes]
        return rows


def print_rows(rows: list[tuple[str, str]], title: str, stream: TextIO | None = None) -> None:
    """A two-column table: rich on a terminal, aligned plain text elsewhere.

    Every cell and the title are printed as the text they are: paths, URLs and messages hold
    brackets (``out[v0].zarr``, ``pip install '.[cu12]'``) that rich would read as markup."""
    stream = stream or sys.stdout
    if stream.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        t = Table(title=Text(title), show_header=False, title_justify="left")
        t.add_column(style="bold")
        t.add_column()
        for k, v in rows:
            t.add_row(Text(k), Text(v))
        Console(file=stream).print(t)
        return
    width = max(len(k) for k, _ in rows)
    print(title, file=stream)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=stream)
    stream.flush()


def task_breakdown(us: dict[str, int]) -> tuple[dict[str, float], str]:
    """Fractions of task time per phase, and which resource bounds the run."""
    total = sum(us.values())
    if total <= 0:
        return {}, ""
    frac = {k: v / total for k, v in us.items()}
    io = frac.get("read", 0) + frac.get("write", 0)
    codec = frac.get("decode", 0) + frac.get("encode", 0)
    if io >= 0.6:
        bound = "storage-bound: most task time is reading and writing the stores"
    elif codec >= 0.6:
        bound = "codec-bound: most task time is decoding and encoding chunks"
    else:
        bound = ""
    return frac, bound
