"""The fixed cost of ``pipeline run CONFIG`` as a user counts it: cold processes, start to exit.

Each run is a new ``python -m pipeline run CONFIG --progress none`` process, timed from
outside (``/usr/bin/time`` where there is one). Its summary (``--summary-json``) gives the
phases, which follow each other from the process's start (see
``pipeline.reporting.summary.PHASES``; a phase the run did not have is 0). So each run splits
into::

    start     process start to the run's clock (interpreter, imports, config)
    generate  the input made first (input.generate.when_missing)
    plan      the plan, the checks and the output's lock
    cluster   the workers started or joined
    prepare   the output made ready (a replaced one deleted, the new one created)
    compute   the summary's compute phase
    finish    every block checked, the output marked complete
    close     the workers the run started, stopped
    exit      the rest of the wall time: the summary printed, the process gone
    fixed     wall minus compute (issue 17's fixed cost)

Usage (medians and ranges of N runs; ``--set`` changes the config, as dotted keys)::

    python scripts/fixed_cost.py configs/default.yaml --runs 5
    python scripts/fixed_cost.py configs/default.yaml --runs 5 --set cluster.protocol=tcp

Python's bytecode cache counts: where ``PYTHONDONTWRITEBYTECODE`` is set, every module of the
pipeline is compiled again in every run (0.1-0.3 s); a user's Python caches it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

#: The summary's phases: a copy of ``pipeline.reporting.summary.PHASES`` (the package is not
#: on this script's path; tests/test_ux.py checks that the two agree).
PHASES = ("start", "generate", "plan", "cluster", "prepare", "compute", "finish", "close")
FIGURES = ("wall", "fixed", *PHASES, "exit", "cpu")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--python", default=sys.executable)
    a = p.parse_args()
    config = _config(Path(a.config), a.set)
    runs = []
    for i in range(a.runs):
        r = one_run(a.python, config)
        runs.append(r)
        print(f"run {i + 1}: " + " ".join(f"{k} {r[k]:.2f}" for k in FIGURES), flush=True)
    print(f"median (range) of {len(runs)} runs, seconds")
    for k in FIGURES:
        v = [r[k] for r in runs]
        print(f"  {k:8s} {statistics.median(v):6.2f} ({min(v):.2f}-{max(v):.2f})")
    return 0


def changed(doc: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """The config document ``doc`` with the ``KEY=VALUE`` changes made in place (a dotted
    KEY, sections made where missing; values read as YAML); ``doc`` returned."""
    for change in changes:
        key, _, value = change.partition("=")
        *parents, last = key.split(".")
        node = doc
        for k in parents:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[last] = yaml.safe_load(value)
    return doc


def _config(path: Path, changes: list[str]) -> Path:
    """``path``, or a copy of it with the ``KEY=VALUE`` changes (values read as YAML), in a
    temporary folder (the config's relative paths are the working directory's)."""
    if not changes:
        return path
    doc = changed(yaml.safe_load(path.read_text()), changes)
    out = Path(tempfile.mkdtemp(prefix="fixed-cost-")) / path.name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def one_run(
    python: str, config: Path, env: dict[str, str] | None = None, cwd: str | None = None
) -> dict[str, float]:
    """One cold run of the command (in ``env`` and ``cwd``, where given); its figures in
    seconds (see the module's docstring)."""
    with tempfile.TemporaryDirectory() as d:
        summary, times = Path(d) / "summary.json", Path(d) / "time"
        cmd = [python, "-m", "pipeline", "run", str(config), "--progress", "none"]
        cmd += ["--summary-json", str(summary)]
        timer = shutil.which("time")  # GNU time: the process's wall and CPU time
        if timer:
            cmd = [timer, "-f", "%e %U %S", "-o", str(times), *cmd]
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
        )
        wall = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(proc.stdout + f"\nthe run failed (exit status {proc.returncode})")
        s: dict[str, Any] = json.loads(summary.read_text())["seconds"]
        cpu = float("nan")
        if timer:
            elapsed, user, system = map(float, times.read_text().split()[-3:])
            wall, cpu = elapsed, user + system
    phases = {k: s.get(k, 0.0) for k in PHASES}
    return {
        "wall": wall,
        "fixed": wall - s["compute"],
        **phases,
        "exit": wall - s["total"],
        "cpu": cpu,
    }


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
