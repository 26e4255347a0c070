"""A/B of two checkouts' fixed cost: ``pipeline run CONFIG`` in cold processes, alternating.

Each run is :func:`fixed_cost.one_run` (a new ``python -m pipeline run CONFIG --progress none``
process, its summary's phases), with ``PYTHONPATH`` set to the checkout's root and a working
directory of no checkout (so that a ``pipeline`` folder there does not shadow it); the
config's relative store paths are made absolute first (against this command's working
directory). Both checkouts' bytecode is written before the first run (as ``pip install`` and
the bench do), and each checkout runs ``--warmup`` times first, not counted (the page cache,
an output to replace). Then ``--pairs`` pairs, the order alternating (AB, BA, AB, ...).

Prints JSON: for each figure of :data:`fixed_cost.FIGURES` each side's median and range, the
paired deltas B - A (seconds, in the order run), their median, and in how many pairs B was
lower. Nothing in it is GPU-specific: the config says the backend and the cluster. With
``--gc``, two figures more: ``gc``, the seconds Python's cyclic garbage collector took in the
command's own process (not its workers'), and ``gc_runs``, its collections (a
``sitecustomize`` of this script's, first on the path of both sides' runs, counts them).

Usage::

    python scripts/ab_fixed_cost.py /work/main /work/wt/x configs/bench-like.yaml --pairs 7
    python scripts/ab_fixed_cost.py A B CONFIG --set cluster.protocol=tcp --out ab.json
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixed_cost import FIGURES, changed, one_run

#: The ``sitecustomize`` of ``--gc``: the collector's seconds and collections in the process
#: of ``python -m pipeline`` (its argv's first word ``.../pipeline/__main__.py``), written at
#: its exit (the program runs its atexit hooks) to ``$AB_GC_OUT``.
GC_HOOK = """
import atexit, gc, json, os, sys, time

_out = os.environ.get("AB_GC_OUT")
_gc = [0.0, 0, 0.0]


def _timed(phase, info):
    if phase == "start":
        _gc[2] = time.perf_counter()
    else:
        _gc[0] += time.perf_counter() - _gc[2]
        _gc[1] += 1


def _write():
    if sys.argv and sys.argv[0].endswith(os.path.join("pipeline", "__main__.py")):
        with open(_out, "w") as f:
            json.dump(_gc[:2], f)


if _out:
    gc.callbacks.append(_timed)
    atexit.register(_write)
"""


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="ab-fixed-cost-"))
    try:
        return _ab(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ab(work: Path) -> int:
    """:func:`main` with its working directory ``work`` (the config, the hooks)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", help="checkout A (its root, holding pipeline/)")
    p.add_argument("b", help="checkout B")
    p.add_argument("config")
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--gc", action="store_true", help="count the garbage collector's time too")
    a = p.parse_args()
    config = absolute_config(Path(a.config), a.set, work)
    sides = {"A": Path(a.a).resolve(), "B": Path(a.b).resolve()}
    envs = {k: checkout_env(a.python, root, work) for k, root in sides.items()}
    figures = FIGURES
    if a.gc:
        figures = (*FIGURES, "gc", "gc_runs")
        hooks = work / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(GC_HOOK)
        for e in envs.values():
            e["PYTHONPATH"] = str(hooks) + os.pathsep + e["PYTHONPATH"]

    def run(k: str) -> dict[str, float]:
        e = envs[k]
        if a.gc:
            e = {**e, "AB_GC_OUT": str(work / "gc.json")}
        r = one_run(a.python, config, e, str(work))
        if a.gc:
            seconds, count = json.loads((work / "gc.json").read_text())
            r.update(gc=seconds, gc_runs=count)
        return r

    for k in sides:
        for i in range(a.warmup):
            r = run(k)
            _say(f"warm-up {k}{i + 1}: wall {r['wall']:.2f} fixed {r['fixed']:.2f}")
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for i in range(a.pairs):
        for k in "AB" if i % 2 == 0 else "BA":
            r = run(k)
            runs[k].append(r)
            _say(f"pair {i + 1} {k}: " + " ".join(f"{f} {r[f]:.3f}" for f in figures))
    out = {
        "a": str(sides["A"]),
        "b": str(sides["B"]),
        "config": str(config),
        "pairs": a.pairs,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "figures": {
            f: compare([r[f] for r in runs["A"]], [r[f] for r in runs["B"]]) for f in figures
        },
        "runs": runs,
    }
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


def compare(a: list[float], b: list[float]) -> dict[str, Any]:
    """Each side's median and range, and the paired deltas ``b - a`` (seconds)."""
    deltas = [y - x for x, y in zip(a, b, strict=True)]
    return {
        "a_median": round(statistics.median(a), 4),
        "a_range": [round(min(a), 4), round(max(a), 4)],
        "b_median": round(statistics.median(b), 4),
        "b_range": [round(min(b), 4), round(max(b), 4)],
        "deltas": [round(d, 4) for d in deltas],
        "median_delta": round(statistics.median(deltas), 4),
        "b_lower": sum(d < 0 for d in deltas),
    }


def absolute_config(path: Path, changes: list[str], work: Path) -> Path:
    """``path`` with the ``KEY=VALUE`` changes (values read as YAML) and its local stores'
    relative paths made absolute against this working directory, written into ``work``."""
    doc = changed(yaml.safe_load(path.read_text()), changes)
    for section in ("input", "output"):
        store = (doc.get(section) or {}).get("store")
        if isinstance(store, str) and "://" not in store and "::" not in store:
            doc[section]["store"] = str(Path(store).expanduser().resolve())
    out = work / path.name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def checkout_env(python: str, root: Path, cwd: Path) -> dict[str, str]:
    """The environment of runs of the checkout at ``root``: its package first on the path,
    its bytecode written; SystemExit where another ``pipeline`` is imported instead."""
    if not (root / "pipeline" / "__init__.py").is_file():
        sys.exit(f"{root}: no pipeline/ package there")
    compileall.compile_dir(str(root / "pipeline"), quiet=2)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(root) + (os.pathsep + path if path else "")}
    got = subprocess.run(
        [python, "-c", "import pipeline; print(pipeline.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(got).resolve().is_relative_to(root):
        sys.exit(f"{root}: the runs would import {got} instead")
    return env


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
