"""A small local CPU run on Dask's threaded scheduler, in its own process, without distributed.

Which runs go there is :meth:`pipeline.planning.plan.ClusterPlan.on_threads`'s to say: local,
the CPU backend, workers that are threads of this process (protocol inproc), no dashboard, no
performance report. Checks that are about what a command loaded run it in a fresh interpreter
(``python -c`` calling the command line's ``main``, then printing ``sys.modules``); failures
are real (a damaged chunk, an address space too small for a block), and so are the signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline.config import load_config
from pipeline.errors import ChunkError
from pipeline.planning import ClusterPlan, plan_here
from pipeline.running import threads
from tests.conftest import STAGES, generated_config, read_array, reference, write_config
from tests.faultkit import (
    end_process,
    env,
    expected,
    many_blocks_input,
    markers,
    refused,
    run_and_signal,
    status,
)
from tests.terminal import spawn, wait_until

INTERRUPTED = "interrupted: the workers are stopped; `run --resume` finishes the output"

#: Runs the command line's ``main`` on the arguments in ``sys.argv[1:]`` in a fresh
#: interpreter, then prints (last line) its exit status and whether distributed was loaded.
WRAPPER = """
import json, sys
from pipeline.cli import main

rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "distributed": "distributed" in sys.modules}))
"""


def _command(*args: str | Path, cwd: Path, code: str = WRAPPER) -> tuple[dict[str, Any], str]:
    """``code`` run with ``args`` in a fresh interpreter: (its last stdout line as JSON,
    stderr)."""
    r = subprocess.run(
        [sys.executable, "-c", code, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=cwd,
        timeout=300,
    )
    assert r.stdout.strip(), r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(f"u{a.dtype.itemsize}")


def _rows_config(d: Path, rows: int, **cluster: Any) -> Path:
    """A config of a run of ``rows`` one-row blocks of ``d/in.zarr`` (written by Zarr, with
    NaN and +-inf in it) into ``d/out.zarr``, on 2 threads of the run's process unless
    ``cluster`` says otherwise."""
    many_blocks_input(d / "in.zarr", rows)
    cfg = {
        "input": {"store": str(d / "in.zarr")},
        "output": {"store": str(d / "out.zarr"), "chunks": [1, 1024]},
        "stages": STAGES,
        "backend": "cpu",
        "chunking": {"block": [1, 4096]},
        "cluster": {"workers": 2, "threads_per_worker": 1, "dashboard": "", **cluster},
    }
    (d / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return d / "run.yaml"


# --------------------------------------------------------------------------------------------
# Which runs are threads of this process.


def _cluster(**changes: Any) -> ClusterPlan:
    fields: dict[str, Any] = {
        "scheduler": "local",
        "backend": "cpu",
        "gpus": (),
        "workers": 2,
        "threads_per_worker": 1,
        "workers_per_gpu": 1,
        "device_budget": None,
        "host_budget": None,
        "protocol": "inproc",
        "timeout": 10.0,
        "dashboard": "",
    }
    return ClusterPlan(**{**fields, **changes})


def test_only_a_local_cpu_run_of_threads_without_dashboard_or_report_is_on_threads() -> None:
    assert _cluster().on_threads()
    assert not _cluster().on_threads(report=True)
    assert not _cluster(dashboard=":0").on_threads()
    assert not _cluster(protocol="tcp").on_threads()
    assert not _cluster(scheduler="tcp://127.0.0.1:8786", protocol="auto").on_threads()
    assert not _cluster(backend="gpu", gpus=(0,)).on_threads()


# --------------------------------------------------------------------------------------------
# A run, and a generated input, on threads: distributed never loaded.


def test_a_threads_run_loads_no_distributed_and_writes_what_numpy_computes(
    tmp_path: Path,
) -> None:
    """The run's output is, bit for bit, NumPy's chain over zarr-python's read of the input;
    the summary has its phases, one worker (this process) and this process's peak memory."""
    cfg = _rows_config(tmp_path, 24)
    assert plan_here(load_config(cfg)).cluster.on_threads()
    got, err = _command("run", cfg, "--summary-json", tmp_path / "s.json", cwd=tmp_path)
    assert got == {"rc": 0, "distributed": False}, err
    want = expected(read_array(tmp_path / "in.zarr"))
    out = read_array(tmp_path / "out.zarr")
    assert out.dtype == want.dtype and np.array_equal(_bits(out), _bits(want))
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["status"] == "complete" and s["dashboard"] is None
    assert s["blocks_per_worker"] == {threads.WORKER: 24}
    assert s["workers_in_process"] is True and s["peak_host_bytes"] > 0
    assert {"plan", "cluster", "compute", "finish", "total"} <= set(s["seconds"])
    assert (s["nan"], s["posinf"]) == (
        int(np.isnan(want).sum()),
        int(np.isposinf(want).sum()),
    )


def test_generating_an_input_then_running_on_threads_loads_no_distributed(
    tmp_path: Path,
) -> None:
    """``run`` with ``input.generate.when_missing``: the input is generated on threads of the
    process, then computed, with distributed never loaded."""
    cfg = generated_config(
        tmp_path,
        {"shape": [64, 256], "chunks": [8, 256], "shards": [16, 256], "when_missing": True},
    )
    got, err = _command("run", cfg, cwd=tmp_path)
    assert got == {"rc": 0, "distributed": False}, err
    x = read_array(tmp_path / "in.zarr")
    assert np.array_equal(_bits(read_array(tmp_path / "out.zarr")), _bits(reference(x)))


# --------------------------------------------------------------------------------------------
# Failures and interruptions: the same errors, types and fields as on a cluster.


def test_a_damaged_chunk_is_the_chunk_error_naming_it(tmp_path: Path) -> None:
    cfg = _rows_config(tmp_path, 8)
    assert plan_here(load_config(cfg)).cluster.on_threads()
    key = "c/3/0"
    (tmp_path / "in.zarr" / key).write_bytes(b"not a zstd frame")
    e = refused("run", cfg)
    assert isinstance(e, ChunkError)
    assert e.key == key and e.store.endswith("in.zarr")
    assert status(tmp_path / "out.zarr") == "incomplete"
    assert not (tmp_path / "out.zarr" / ".pipeline" / "lock").exists()


#: ``main`` under an address space too small for one block: everything the run imports is
#: loaded first (by planning it), then the limit is set this far above what the process holds.
OUT_OF_MEMORY = """
import json, resource, sys
import psutil
from pipeline.cli import main
from pipeline.errors import PipelineError

assert main(["plan", sys.argv[1]]) == 0
import dask.threaded, dask.callbacks  # what the run adds, loaded before the limit
room = int(sys.argv[2])
_, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (psutil.Process().memory_info().vms + room, hard))
try:
    main(["--debug", "run", sys.argv[1], "--progress", "none"])
    print(json.dumps({"error": None}))
except PipelineError as e:
    print(json.dumps({"error": type(e).__name__, "memory": getattr(e, "memory", None),
                      "distributed": "distributed" in sys.modules, "said": str(e)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS as Linux has it")
def test_a_task_out_of_memory_is_a_plan_error_about_host_memory(tmp_path: Path) -> None:
    """A block that the process cannot allocate (its address space limited to 1 GiB above
    what it holds; the block is 2 GiB, never written, so it reads as the fill value): the
    task's MemoryError is the PlanError that says what to lower (``memory`` 'host'), its
    line beginning with the line of the config file that sets it (``c.yaml:LINE:``, as other
    refusals of a key: it had named no file nor line); the output stays incomplete and
    unlocked."""
    import zarr

    zarr.create_array(
        store=str(tmp_path / "in.zarr"),
        shape=(2, 16384, 32768),
        dtype="float32",
        chunks=(1, 16384, 1024),
    )
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        chunking={"block": [1, 16384, 32768]},
        cluster={"workers": 1},
    )
    got, err = _command(cfg, 1 << 30, cwd=tmp_path, code=OUT_OF_MEMORY)
    said = got.pop("said", "")
    assert got == {"error": "PlanError", "memory": "host", "distributed": False}, err
    line = cfg.read_text().splitlines().index("  threads_per_worker: 1") + 1
    assert said.startswith(f"{cfg}:{line}: out of memory in a task ("), said
    assert status(tmp_path / "out.zarr") == "incomplete"
    assert not (tmp_path / "out.zarr" / ".pipeline" / "lock").exists()


def test_sigterm_stops_a_threads_run_which_resume_finishes(tmp_path: Path, cli) -> None:
    """SIGTERM to the run's process while its threads compute: the one line, exit 130, no
    process started, the output incomplete (each block a thread had begun is finished and
    marked before the lock is given up); ``--resume`` completes it, bit for bit."""
    for rows in (400, 1600, 6400):  # a larger input where the run outpaced the signal
        cfg = _rows_config(tmp_path, rows)
        out = tmp_path / "out.zarr"
        stopped = run_and_signal(cfg, out, signal.SIGTERM, cwd=tmp_path)
        if stopped is not None and stopped.returncode != 0:
            break
    else:
        pytest.fail("every run ended before it could be stopped")
    assert stopped.returncode == 130, stopped.stderr
    assert [ln for ln in stopped.stderr.splitlines() if ln.strip()] == [INTERRUPTED]
    assert stopped.children == []
    assert status(out) == "incomplete" and 0 < markers(out) < rows
    assert not (out / ".pipeline" / "lock").exists()
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    want = expected(read_array(tmp_path / "in.zarr"))
    assert np.array_equal(_bits(read_array(out)), _bits(want))


# --------------------------------------------------------------------------------------------
# What is distributed's stays on distributed.


@pytest.mark.parametrize(
    ("cluster", "scheme"),
    [({"dashboard": ":0"}, "inproc://"), ({"protocol": "tcp"}, "tcp://")],
    ids=["dashboard", "tcp"],
)
def test_a_dashboard_or_worker_processes_still_run_on_distributed(
    tmp_path: Path, cluster: dict, scheme: str
) -> None:
    cfg = _rows_config(tmp_path, 12, **cluster)
    assert not plan_here(load_config(cfg)).cluster.on_threads()
    got, err = _command("run", cfg, "--summary-json", tmp_path / "s.json", cwd=tmp_path)
    assert got == {"rc": 0, "distributed": True}, err
    s = json.loads((tmp_path / "s.json").read_text())
    # both workers computed blocks, and every block is counted once
    per_worker = s["blocks_per_worker"]
    assert len(per_worker) == 2 and all(w.startswith(scheme) for w in per_worker)
    assert sum(per_worker.values()) == 12
    want = expected(read_array(tmp_path / "in.zarr"))
    assert np.array_equal(_bits(read_array(tmp_path / "out.zarr")), _bits(want))


def test_a_performance_report_still_runs_on_distributed(tmp_path: Path) -> None:
    cfg = _rows_config(tmp_path, 6)
    report = tmp_path / "report.html"
    got, err = _command("run", cfg, "--report", report, cwd=tmp_path)
    assert got == {"rc": 0, "distributed": True}, err
    assert report.stat().st_size > 0
    assert os.path.exists(tmp_path / "out.zarr" / "zarr.json")


def _held(module: str, function: str, when: str) -> str:
    """``python -c`` of a ``pipeline`` command whose ``pipeline.running.<module>.<function>``
    (called with two arguments, ``a`` and ``b``) does not return where ``when`` (an expression
    of them) holds (storage that does not answer), until the file ``argv[1]`` exists,
    ``argv[1] + ".started"`` made as it begins; the rest is the command line."""
    return f"""
import os, sys, time
from pipeline.running import {module}
plain, release = {module}.{function}, sys.argv[1]
def held(a, b):
    if {when}:
        open(release + ".started", "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)
    return plain(a, b)
{module}.{function} = held
from pipeline.cli import main
sys.exit(main(sys.argv[2:]))
"""


#: The run whose read of the blocks of row 5 is held (a FIFO at the chunk's key had held it;
#: the plan refuses such a key now, h83g).
HELD_READ = _held("tasks", "read_block", "b[0] == 5")


def test_ctrl_c_while_a_block_is_stuck_on_its_read_says_what_it_waits_for(
    tmp_path: Path,
) -> None:
    """Ctrl-C while one block's read does not return (held by :data:`HELD_READ`: storage that
    does not answer). The run waits for the block, since a block is written whole and then
    marked before the output's lock is given up, and says so after ``Threads.TELL_AFTER``
    seconds instead of waiting in silence; once the read returns, it ends with the
    interrupted line, the output incomplete and unlocked."""
    cfg = _rows_config(tmp_path, 40)
    release = tmp_path / "release"
    out = tmp_path / "out.zarr"
    w = spawn(
        [sys.executable, "-c", HELD_READ, str(release), "run", str(cfg), "--progress", "none"],
        tmp_path,
    )
    try:
        # every block but the stuck one is written (two threads: the other did them all)
        wait_until(lambda: markers(out) >= 39 or w.proc.poll() is not None, timeout=180)
        assert w.proc.poll() is None, "the run ended with a block's read stuck"
        assert Path(f"{release}.started").exists()
        w.interrupt()
        waited = time.monotonic() + threads.Threads.TELL_AFTER + 3
        wait_until(lambda: time.monotonic() > waited or w.proc.poll() is not None, timeout=60)
        assert w.proc.poll() is None, "the run ended with a block's read stuck"
        release.touch()  # the read returns
        rc, err = w.finish()
    finally:
        release.touch()
        w.close()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 130, err
    assert lines[-1].startswith("interrupted: the workers are stopped;") and len(lines) == 2, err
    assert lines[0].startswith("stopping: waiting for the blocks being written"), err
    # the held block, once read, is written whole and marked before the lock is given up
    assert status(out) == "incomplete" and markers(out) == 40
    assert not (out / ".pipeline" / "lock").exists()
    assert lines[-1] == INTERRUPTED, lines[-1]


#: ``pipeline generate`` whose first unit's write is held (slow storage).
HELD_UNIT = _held("generate", "generate_unit", "not any(b)")


def test_ctrl_c_while_generate_waits_for_a_unit_says_units_not_blocks(tmp_path: Path) -> None:
    """Ctrl-C while ``pipeline generate`` writes a unit that storage holds: the wait for it is
    said after ``Threads.TELL_AFTER`` seconds in generate's words, the input's units (it had
    said the run's "waiting for the blocks being written to end (each is written whole, then
    marked)": generate has no blocks nor markers), then generate's interrupted line."""
    cfg = generated_config(
        tmp_path,
        {"shape": [8, 64], "dtype": "float32", "shards": [1, 64], "chunks": [1, 64]},
        cluster={"workers": 1, "threads_per_worker": 2, "dashboard": ""},
    )
    release = tmp_path / "release"
    proc = subprocess.Popen(
        [sys.executable, "-c", HELD_UNIT, str(release), "generate", str(cfg), "--progress", "none"],
        env=env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: Path(f"{release}.started").exists() or proc.poll() is not None, timeout=180
        )
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        waited = time.monotonic() + threads.Threads.TELL_AFTER + 3
        wait_until(lambda: time.monotonic() > waited or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, "generate ended with a unit's write held"
        release.touch()
        _, err = proc.communicate(timeout=120)
    finally:
        release.touch()
        end_process(proc)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 130, err
    assert lines[0].startswith("stopping: waiting for the input's units being written"), err
    assert "block" not in lines[0] and "marked" not in lines[0], err
    assert lines[-1].startswith("interrupted: the workers are stopped; the input "), err
    assert lines[-1].endswith("generates it again") and len(lines) == 2, err
