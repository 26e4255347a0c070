"""Results: figures as they are measured (saved after each, so a run cut short keeps what it
measured), output checks, what was skipped and why, what failed; and their tables (Markdown)
and chart (PNG)."""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import median, num, rate, rate_spread, ratio, spread


@dataclass
class Figure:
    """One measurement, with its repetitions."""

    key: str
    """what is measured, stable across runs (``pipeline-compute``, ``cpu-decode-all``)"""
    name: str
    group: str
    """ceiling | pipeline | peer"""
    values: list[float]
    unit: str = "GB/s"
    """GB/s (1e9 bytes per second) or s"""
    workload: str = ""
    """the workload's key; '' for a figure of the host"""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        return median(self.values)

    def text(self) -> str:
        """The median with its unit, and the range: rates in the unit they read best in
        (:func:`~benchmarks.stats.rate_spread`), as the values (GB/s) are kept."""
        return rate_spread(self.values) if self.unit == "GB/s" else spread(self.values, self.unit)

    def median_text(self) -> str:
        """The median with its unit (a rate in the unit it reads best in); '-' for none."""
        return rate(self.median) if self.unit == "GB/s" else fmt(self.median, unit=f" {self.unit}")


class Results:
    """Everything one benchmark run measured; written to ``out/NAME.json`` after every change."""

    def __init__(self, out: Path, name: str) -> None:
        self.out = out
        self.name = name
        self.meta: dict[str, Any] = {}
        self.figures: list[Figure] = []
        self.checks: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []
        self.failures: list[dict[str, str]] = []
        self.targets: list[dict[str, Any]] = []

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        where = f"[{fig.workload}] " if fig.workload else ""
        print(
            f"  {fig.group:8s} {where}{fig.name:56s} {fig.text():>27s}  {fig.note}",
            flush=True,
        )
        self.save()
        return fig

    def get(self, key: str, workload: str = "") -> Figure | None:
        """The last figure ``key`` of ``workload``; else of the host (workload '')."""
        for w in (workload, ""):
            for f in reversed(self.figures):
                if f.key == key and f.workload == w:
                    return f
        return None

    def value(self, key: str, workload: str = "") -> float | None:
        f = self.get(key, workload)
        return None if f is None else f.median

    def skip(self, what: str, why: str) -> None:
        """Record (and say) that ``what`` was not measured, and why."""
        self.skipped.append({"what": what, "why": why})
        print(f"  skipped: {what} ({why})", flush=True)
        self.save()

    def check(self, check: Any) -> None:
        """Record an output check (:class:`benchmarks.checks.Check`)."""
        doc = check.as_dict()
        self.checks.append(doc)
        state = "bit for bit" if doc["ok"] else f"FAILED: {doc['differ']} differ {doc['problem']}"
        print(f"  check    {doc['output']}: {doc['elements']} elements {state}", flush=True)
        self.save()

    @contextlib.contextmanager
    def attempt(self, what: str) -> Iterator[None]:
        """Run a section; an exception in it is recorded (and printed) and the run goes on."""
        try:
            yield
        except Exception as e:
            traceback.print_exc()
            self.failures.append({"what": what, "error": f"{type(e).__name__}: {e}"[-2000:]})
            print(f"  FAILED: {what}: {type(e).__name__}: {e}", flush=True)
            self.save()

    @property
    def ok(self) -> bool:
        """No failure, and every output check passed."""
        return not self.failures and all(c["ok"] for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "figures": [asdict(f) | {"median": f.median} for f in self.figures],
            "checks": self.checks,
            "skipped": self.skipped,
            "failures": self.failures,
            "targets": self.targets,
        }

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.as_dict(), indent=1, default=str)
        (self.out / f"{self.name}.json").write_text(text + "\n")

    @classmethod
    def load(cls, path: Path, out: Path) -> Results:
        """Results read back from a JSON file this class wrote (to render them again)."""
        doc = json.loads(path.read_text())
        res = cls(out, path.stem)
        res.meta = doc["meta"]
        keys = Figure.__dataclass_fields__
        res.figures = [Figure(**{k: v for k, v in f.items() if k in keys}) for f in doc["figures"]]
        res.checks, res.skipped = doc["checks"], doc["skipped"]
        res.failures, res.targets = doc["failures"], doc["targets"]
        return res


# --------------------------------------------------------------------------------------------
# Tables.


def md_table(headers: list[str], rows: list[list[str]], none: str = "") -> str:
    """A Markdown table; one of no rows followed by ``none``, the sentence that says why (an
    empty table had said nothing)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if not rows and none:
        lines += ["", none]
    return "\n".join(lines)


def fmt(value: float | None, spec: str | None = None, unit: str = "") -> str:
    """``value`` as ``spec`` formats it (default: :func:`~benchmarks.stats.num`), then
    ``unit``; ``'-'`` for None."""
    if value is None:
        return "-"
    return (num(value) if spec is None else format(value, spec)) + unit


def figures_table(res: Results, none: str = "") -> str:
    """Every figure: group, workload, name, median, range, note."""
    rows = [
        [
            f.group,
            f.workload or "host",
            f.name,
            f.median_text(),
            f.text() if len(f.values) > 1 else "1 run",
            f.note,
        ]
        for f in res.figures
    ]
    return md_table(["", "workload", "measurement", "median", "runs", "notes"], rows, none)


def checks_line(res: Results) -> str:
    """One sentence on the output checks: all passed (how many elements), or which failed."""
    n = len(res.checks)
    bad = [c for c in res.checks if not c["ok"]]
    elements = sum(c["elements"] for c in res.checks)
    if bad:
        return (
            f"Output checks: **{len(bad)} of {n} FAILED** ({', '.join(c['output'] for c in bad)})."
        )
    return (
        f"Output checks: all {n} outputs equal NumPy's result bit for bit ({elements:.3g} "
        "elements, every one compared)."
        if n
        else "Output checks: none ran."
    )


def skipped_lines(res: Results) -> list[str]:
    """A Markdown list item for each thing skipped (and why) and each failure."""
    out = [f"- skipped: {s['what']} ({s['why']})" for s in res.skipped]
    out += [f"- FAILED: {f['what']}: {f['error']}" for f in res.failures]
    return out


def chart(res: Results, path: Path, title: str) -> None:
    """A bar per GB/s figure (log scale), coloured by group: the host's, then each
    workload's; a run that measured no rate (``--skip`` of every section that measures one)
    says so on the chart, where a log scale of no bars had failed the run after its tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = [
        f for f in res.figures if f.unit == "GB/s" and f.median and "read+write bytes" not in f.name
    ]
    colors = {"ceiling": "#9e9e9e", "pipeline": "#2e7d32", "peer": "#c62828"}
    fig, ax = plt.subplots(figsize=(11, 0.3 * len(figs) + 1.5))
    ys = list(range(len(figs)))
    ax.barh(ys, [f.median or 0 for f in figs], color=[colors[f.group] for f in figs])
    labels = [f"[{f.workload}] {f.name}" if f.workload else f.name for f in figs]
    ax.set_yticks(ys, labels, fontsize=7)
    ax.invert_yaxis()
    if figs:
        ax.set_xscale("log")
        ax.set_xlabel("GB/s (log scale)")
    else:
        ax.text(0.5, 0.5, "no rate measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# `make bench`: one row per workload.


def path_ceilings(backend: str, decode_on: str, encode_on: str) -> list[str]:
    """Keys of the ceilings that bound a run's path: its decoder, its encoder, PCIe (GPU
    backend), and storage (all in GB/s of input bytes)."""
    keys = []
    if decode_on == "gpu":
        keys.append("gpu-zstd-roundtrip" if encode_on == "gpu" else "gpu-zstd-decode")
    else:
        keys.append("cpu-decode-all")
    keys.append("gpu-zstd-encode" if encode_on == "gpu" else "cpu-encode-all")
    if backend == "gpu":
        keys += ["pcie-h2d-pinned", "pcie-d2h-pinned"]
    return [*keys, "storage-read", "storage-write"]


def workload_row(res: Results, w: dict[str, Any]) -> dict[str, Any]:
    """What the results say about one workload (``w``: its entry in ``meta['workloads']``).
    A workload that shares another's input (``shares``) takes that one's ceilings and peers
    where it has none of its own."""
    k = w["key"]
    shared = _shared(res, w)
    ceilings = [
        (f.median, f.key, f.name)
        for f in (
            shared(key) for key in path_ceilings(w["backend"], w["decode_on"], w["encode_on"])
        )
        if f is not None and f.median
    ]
    lowest = min(ceilings, default=None)
    compute = res.get("pipeline-compute", k)
    row: dict[str, Any] = {
        "key": k,
        "title": w["title"],
        "backend": w["backend"],
        "codec_path": f"decode on {w['decode_on']}, encode on {w['encode_on']}",
        "compute_gbps": compute.values if compute else [],
        "compute_median": compute.median if compute else None,
        "lowest_ceiling": None
        if lowest is None
        else {"key": lowest[1], "name": lowest[2], "gbps": lowest[0]},
        "of_ceiling": ratio(compute.median if compute else None, lowest[0] if lowest else None),
        "wall_s": res.value("pipeline-wall", k),
        "fixed_s": res.value("pipeline-fixed", k),
        "peer_wall_s": _median(shared("peer-cpu-wall")),
        "peer_gbps": _median(shared("peer-cpu-compute")),
        "naive_gbps": _median(shared("peer-naive")),
    }
    host = shared("host-decode-path") if w["decode_on"] == "cpu" else None
    row["host_path"] = None if host is None else host.median
    row["of_host_path"] = ratio(row["compute_median"], row["host_path"])
    row["speedup_e2e"] = ratio(row["peer_wall_s"], row["wall_s"])
    row["speedup_compute"] = ratio(row["compute_median"], row["peer_gbps"])
    cpu = res.value("cpu-backend-e2e-compute", k)
    if cpu is not None:
        row["cpu_backend"] = {
            "gbps": cpu,
            "wall_s": res.value("cpu-backend-wall", k),
            "vs_peer_compute": ratio(cpu, row["peer_gbps"]),
            "vs_peer_e2e": ratio(row["peer_wall_s"], res.value("cpu-backend-wall", k)),
        }
    return row


def _shared(res: Results, w: dict[str, Any]) -> Any:
    """A figure of ``w`` by key, else of the workload whose input it shares."""

    def get(key: str) -> Figure | None:
        for owner in (w["key"], w.get("shares") or w["key"]):
            f = next(
                (f for f in reversed(res.figures) if (f.key, f.workload) == (key, owner)), None
            )
            if f is not None:
                return f
        return res.get(key)  # the host's

    return get


def _median(f: Figure | None) -> float | None:
    return f.median if f is not None else None


def workload_table(rows: list[dict[str, Any]], none: str = "") -> str:
    """`make bench`'s main table: one row per workload (:func:`workload_row`)."""
    out = []
    for r in rows:
        low = r["lowest_ceiling"]
        out.append(
            [
                r["title"],
                f"{rate_spread(r['compute_gbps'])} ({r['backend']})",
                "-"
                if r["of_ceiling"] is None
                else f"{r['of_ceiling']:.1%} of {rate(low['gbps'])} ({low['name']})",
                "-"
                if r.get("of_host_path") is None
                else f"{r['of_host_path']:.1%} of {rate(r['host_path'])}",
                f"{fmt(r['wall_s'], '.1f')} ({fmt(r['fixed_s'], '.1f')} fixed)",
                f"{fmt(r['peer_wall_s'], '.1f')} ({rate(r['peer_gbps'])})",
                fmt(r["speedup_e2e"], ".2f", "x"),
                rate(r["naive_gbps"]),
            ]
        )
    return md_table(
        [
            "workload",
            "pipeline compute",
            "of the lowest ceiling of its path",
            "of its host side with the CPU decode",
            "pipeline wall, s",
            "CPU Dask wall, s (compute)",
            "end-to-end speed-up",
            "naive dask-cuda",
        ],
        out,
        none,
    )


def cpu_table(rows: list[dict[str, Any]], none: str = "") -> str:
    """The pipeline's CPU backend against the CPU Dask peer, where it ran."""
    out = []
    for r in rows:
        c = r.get("cpu_backend")
        if c is None:
            continue
        out.append(
            [
                r["title"],
                rate(c["gbps"]),
                fmt(c["wall_s"], ".1f"),
                rate(r["peer_gbps"]),
                fmt(r["peer_wall_s"], ".1f"),
                fmt(c["vs_peer_compute"], ".2f", "x"),
                fmt(c["vs_peer_e2e"], ".2f", "x"),
            ]
        )
    return md_table(
        [
            "workload",
            "CPU backend compute",
            "CPU backend wall, s",
            "CPU Dask compute",
            "CPU Dask wall, s",
            "compute, x peer",
            "end to end, x peer",
        ],
        out,
        none,
    )


#: The per-workload ceilings shown side by side: (key, column header).
CEILING_COLUMNS = [
    ("cpu-decode-all", "CPU decode, all cores"),
    ("cpu-decode-1", "CPU decode, 1 thread"),
    ("cpu-encode-all", "CPU zstd encode, all cores"),
    ("gpu-zstd-encode", "GPU zstd encode"),
    ("gpu-zstd-roundtrip", "GPU zstd decode+encode"),
    ("host-decode-path", "host side with the CPU decode, all cores"),
    ("storage-read", "storage read"),
    ("storage-write", "storage write"),
]


def ceilings_table(res: Results, workloads: list[dict[str, Any]], none: str = "") -> str:
    """The ceilings of :data:`CEILING_COLUMNS` of each workload side by side (rates of input
    bytes, each in the unit it reads best in)."""
    rows = []
    for w in workloads:
        cells = []
        shared = _shared(res, w)
        for key, _ in CEILING_COLUMNS:
            f = shared(key)
            cells.append(rate(f.median if f else None))
        rows.append([w["title"], *cells])
    headers = ["workload (rates of input bytes)", *(h for _, h in CEILING_COLUMNS)]
    return md_table(headers, rows, none)
