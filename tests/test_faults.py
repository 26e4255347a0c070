"""Faults while a run works, and what it must never do: lose a worker and still finish right,
let two runs write one output, overwrite without being asked, touch its input, or leave a
full disk's output looking complete.

Everything is real: worker processes killed with SIGKILL, concurrent CLI processes, read-only
and size-limited file systems mounted for the test (skipped, saying why, where mounting is not
permitted).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml
import zarr

import pipeline
from pipeline.errors import ConfigError, InputError, OutputError, StoreError
from tests.conftest import (
    STAGES,
    generated_config,
    make_array,
    read_array,
    record_of,
    reference,
    write_config,
)
from tests.faultkit import (
    DIED_OF_SIGINT,
    STOPPED_GENERATIONS,
    cli_process,
    copy_store,
    env,
    error_of,
    expected,
    external_cluster,
    file_states,
    go_on,
    held_unit_write,
    holding_input_lock,
    holding_output_lock,
    kill_group,
    killed_generation,
    killed_midway,
    many_blocks_input,
    markers,
    one_line_error,
    paused_at_lock,
    refused,
    run_python,
    set_aside,
    status,
    stored_files,
    undeletable_within,
    wait_for_chunk_files,
    wait_for_markers,
)
from tests.terminal import is_worker

COLS = 4096


def _blocks_config(tmp: Path, name: str = "run.yaml", workers: int = 2, **sections) -> Path:
    return write_config(
        tmp,
        tmp / "in.zarr",
        tmp / "out.zarr",
        name=name,
        chunking={"block": [1, COLS]},
        cluster={"workers": workers, "threads_per_worker": 1, "dashboard": ""},
        **sections,
    )


# --------------------------------------------------------------------------------------------
# 2. Lost workers.


def _worker_pids(address: str) -> dict[str, int]:
    from distributed import Client

    with Client(address, timeout="30s") as c:
        return c.run(os.getpid)


def test_a_killed_worker_is_replaced_and_the_output_is_right(tmp_path: Path) -> None:
    """SIGKILL each of the two workers of an external cluster mid-run: Dask reruns their tasks
    elsewhere (the nannies restart them), and the output equals NumPy's."""
    rows = 400
    for _ in range(3):
        x = many_blocks_input(tmp_path / "in.zarr", rows, cols=COLS)
        cfg = _blocks_config(tmp_path)
        shutil.rmtree(tmp_path / "out.zarr", ignore_errors=True)
        with external_cluster(tmp_path, nworkers=2) as ext:
            pids = _worker_pids(ext.address)
            assert len(pids) == 2
            proc = cli_process(cfg, "--scheduler", ext.address, cwd=tmp_path)
            try:
                killed_at = []
                for i, pid in enumerate(sorted(pids.values())):
                    n = wait_for_markers(proc, tmp_path / "out.zarr", 3 + i * rows // 4)
                    if n < 0:
                        break
                    os.kill(pid, signal.SIGKILL)
                    killed_at.append(n)
                _, err = proc.communicate(timeout=120)
            finally:
                kill_group(proc)
            after = _worker_pids(ext.address)
        if len(killed_at) == 2 and max(killed_at) < rows:
            break
        rows *= 4  # the run outpaced the kills: a longer one
    else:
        pytest.fail("every run finished before its workers could be killed")
    assert proc.returncode == 0, err
    # both workers were replaced by new processes, and the run did not notice but finished
    assert not set(after.values()) & set(pids.values())
    assert status(tmp_path / "out.zarr") == "complete"
    y = read_array(tmp_path / "out.zarr")
    assert np.array_equal(y, expected(x), equal_nan=True)


@pytest.mark.parametrize("nanny", [True, False])
def test_the_blocks_per_worker_row_counts_a_killed_worker_s_blocks_naming_it_gone(
    tmp_path: Path, nanny: bool
) -> None:
    """One of two workers of a joined cluster SIGKILLed once blocks are written: its nanny
    starts another under a new address, or (no nanny) it is gone. The summary's "blocks per
    worker" had been read from where the results were held at the end: the killed worker's
    were gone with it (Dask ran them again elsewhere), the row missing where one worker held
    them all. Each worker's blocks are counted where they ran, the killed one named as gone,
    and the counts add up to the blocks written."""
    x = many_blocks_input(tmp_path / "in.zarr", 12, cols=64)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        chunking={"block": [1, 64]},
        cluster={"dashboard": ""},
    )
    out, summary = tmp_path / "out.zarr", tmp_path / "summary.json"
    slow = {"SLOW_BLOCK_SECONDS": "0.5"}
    with (
        external_cluster(
            tmp_path,
            nworkers=2 if nanny else 1,
            worker_args=("--preload", "tests.slow_blocks"),
            worker_env=slow,
        ) as ext,
        contextlib.ExitStack() as stack,
    ):
        if not nanny:  # a worker of its own process, which nothing starts again
            alone = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", ext.address]
                + ["--no-nanny", "--nthreads", "1", "--no-dashboard"]
                + ["--preload", "tests.slow_blocks"],
                env={**env(), **slow},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            stack.callback(kill_group, alone)
            deadline = time.monotonic() + 60
            while alone.pid not in _worker_pids(ext.address).values():
                assert time.monotonic() < deadline and alone.poll() is None
                time.sleep(0.2)
        pids = _worker_pids(ext.address)
        killed, pid = (
            sorted(pids.items())[0]
            if nanny
            else next((w, p) for w, p in pids.items() if p == alone.pid)
        )
        proc = cli_process(
            cfg, "--scheduler", ext.address, "--summary-json", str(summary), cwd=tmp_path
        )
        try:
            assert wait_for_markers(proc, out, 4) >= 0, "the run ended before the kill"
            os.kill(pid, signal.SIGKILL)
            said, err = proc.communicate(timeout=120)
        finally:
            kill_group(proc)
    assert proc.returncode == 0, err
    assert np.array_equal(read_array(out), expected(x), equal_nan=True)
    s = json.loads(summary.read_text())
    per_worker = s["blocks_per_worker"]
    assert sum(per_worker.values()) == 12 and per_worker.get(killed, 0) >= 1, per_worker
    assert s["workers_gone"] == [killed], s
    rows = [ln.split(None, 3)[3] for ln in said.splitlines() if "blocks per worker" in ln]
    assert rows == [
        ", ".join(f"{n} ({w}, gone)" if w == killed else str(n) for w, n in per_worker.items())
    ], said


def test_a_joined_worker_s_own_memory_is_measured_not_assumed(tmp_path: Path) -> None:
    """A joined worker started with `--memory-limit 250MB` had been refused: the plan assumed
    400 MiB for any worker process, where this one holds about 80 MiB, and its blocks of 65
    KiB fit it with room. The plan counts the bytes each worker's process holds, as it says
    them (its tasks' modules imported): the run completes. A worker whose limit truly cannot
    hold its process and a block is refused naming the `--memory-limit` that does, and a
    worker started with that limit runs."""
    x, argv = _eight_blocks(tmp_path, dashboard="")
    out = tmp_path / "out.zarr"
    plan = [sys.executable, "-m", "pipeline", "plan", argv[4]]

    def run_on(limit: str, command: list[str]) -> subprocess.CompletedProcess:
        folder = tmp_path / limit
        folder.mkdir()
        with external_cluster(folder, nworkers=1, worker_args=("--memory-limit", limit)) as ext:
            return subprocess.run(
                [*command, "--scheduler", ext.address], capture_output=True, text=True, env=env()
            )

    done = run_on("250MB", argv)
    assert done.returncode == 0, done.stderr
    assert status(out) == "complete"
    assert np.array_equal(read_array(out), expected(x), equal_nan=True)
    refused_ = run_on("100MB", plan)
    assert refused_.returncode == 1, refused_.stdout + refused_.stderr
    line = one_line_error(refused_.stderr)
    assert "the budget does not even hold a worker process" in line, line
    asked = re.search(r"start the workers with `--memory-limit (\S+)` or more", line)
    assert asked, line
    from dask.utils import parse_bytes

    assert 100 * 2**20 < parse_bytes(asked.group(1)) < 400 * 2**20, line
    planned = run_on(asked.group(1), plan)
    assert planned.returncode == 0, planned.stderr
    assert "(fits)" in planned.stdout, planned.stdout


def test_a_stopped_worker_is_named_within_cluster_timeout(tmp_path: Path) -> None:
    """A worker of a joined cluster that is stopped (SIGSTOP: a frozen machine) answers no
    question: the run's `Client.run` of its workers (their facts, packages, GPU memory, the
    tasks of earlier runs still writing) waited for it forever, without a word. Each answer
    is waited for at most cluster.timeout, and the line names the worker that did not
    answer and what to do; the run asked of the workers after the plan (the wait for
    earlier writers) is bounded alike."""
    from distributed import Client

    from pipeline.errors import ClusterError
    from pipeline.running import cluster
    from pipeline.store.location import Location

    _, argv = _eight_blocks(tmp_path, dashboard="", timeout=3)
    with external_cluster(tmp_path, nworkers=2) as ext:
        stopped, pid = sorted(_worker_pids(ext.address).items())[0]
        os.kill(pid, signal.SIGSTOP)
        try:
            done = subprocess.run(
                [*argv, "--scheduler", ext.address],
                capture_output=True,
                text=True,
                env=env(),
                timeout=60,
            )
            with Client(ext.address, timeout=30, set_as_default=False) as client:
                workers = cluster.DaskWorkers(client, ext.address, None, 2.0)
                with pytest.raises(ClusterError) as e:
                    workers.wait_for_writers(Location(str(tmp_path)), "out.zarr")
        finally:
            os.kill(pid, signal.SIGCONT)
    assert done.returncode == 1, done.stderr
    said = [ln for ln in done.stderr.splitlines() if not ln.startswith("dashboard: ")]
    line = one_line_error("\n".join(said))
    assert (
        f"worker {stopped} of the cluster at {ext.address} did not answer within 3 s "
        "(cluster.timeout)"
    ) in line, line
    assert "restart it" in line and "raise cluster.timeout" in line, line
    assert not (tmp_path / "out.zarr").exists()
    assert (e.value.reason, e.value.workers) == ("no-answer", (stopped,)), e.value


#: The environment of processes whose Dask workers die as a task starts (tests/dying_worker.py,
#: loaded as a preload by Dask's config), two deaths allowed for a task, not four.
DIES = {
    "DASK_DISTRIBUTED__WORKER__PRELOAD": '["tests.dying_worker"]',
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
}


def _eight_blocks(tmp: Path, **cluster: Any) -> tuple[np.ndarray, list[str]]:
    """An input of 8 rows of 64 (:func:`many_blocks_input`) in ``tmp``, and the argv of a
    run, without progress, of a config there that computes it a row a block into out.zarr
    (``cluster``: its cluster section's keys)."""
    x = many_blocks_input(tmp / "in.zarr", 8, cols=64)
    cfg = write_config(
        tmp, tmp / "in.zarr", tmp / "out.zarr", chunking={"block": [1, 64]}, cluster=cluster
    )
    return x, [sys.executable, "-m", "pipeline", "run", str(cfg), "--progress", "none"]


@pytest.mark.parametrize("cluster", ["joined", "local"])
def test_workers_that_keep_dying_say_what_likely_killed_them_and_the_output_resumes(
    tmp_path: Path, cluster: str
) -> None:
    """Workers that die, one after another, running a block (Dask's KilledWorker): a joined
    cluster's, each ended by its nanny past its memory limit, had been told to "check worker
    memory (cluster.host_memory_limit)", a setting that cannot give them more than their own
    `--memory-limit`. The line says how many died running which block, that memory most
    likely killed them (the nanny's distributed.worker.memory.terminate, the OOM killer), and
    the setting that gives a block more on that cluster: a joined one's workers'
    `--memory-limit` (and `--nthreads`), a local one's cluster.threads_per_worker and
    cluster.host_memory_limit; the output stays incomplete (its local workers here killed by
    SIGKILL, as by the OOM killer), and `run --resume` finishes it."""
    x, argv = _eight_blocks(tmp_path, workers=1, threads_per_worker=2, protocol="tcp", dashboard="")
    if cluster == "joined":
        with external_cluster(
            tmp_path,
            nworkers=1,
            scheduler_env={k: v for k, v in DIES.items() if "SCHEDULER" in k},
            worker_args=("--memory-limit", "600MB", "--preload", "tests.dying_worker"),
            worker_env={"WORKER_DIES_BY": "memory"},
        ) as ext:
            done = subprocess.run(
                [*argv, "--scheduler", ext.address], capture_output=True, text=True, env=env()
            )
        log = (tmp_path / "workers.log").read_text()
        assert "exceeded 95% memory budget" in log, log[-3000:]  # its nanny ended it
    else:
        dying = {**env(), **DIES, "WORKER_DIES_BY": "kill"}
        done = subprocess.run(argv, capture_output=True, text=True, env=dying, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    said = [ln for ln in done.stderr.splitlines() if not ln.startswith("dashboard: ")]
    line = one_line_error("\n".join(said))  # a joined cluster's dashboard is said first
    assert re.search(r"2 workers died one after another running block \(\d+, 0\)", line), line
    assert "most likely out of memory" in line, line
    assert "distributed.worker.memory.terminate" in line and "OOM killer" in line, line
    if cluster == "joined":
        assert "larger memory limit (572.20 MiB now)" in line and "--memory-limit" in line, line
        assert "cluster.host_memory_limit" not in line, line
    else:
        assert "lower cluster.threads_per_worker (2 now" in line, line
        assert "raise cluster.host_memory_limit" in line, line
    assert line.endswith("then `run --resume` finishes the output"), line
    assert "KilledWorker" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert status(tmp_path / "out.zarr") == "incomplete"
    assert markers(tmp_path / "out.zarr") < 8
    resumed = subprocess.run([*argv, "--resume"], capture_output=True, text=True, env=env())
    assert resumed.returncode == 0, resumed.stderr
    assert status(tmp_path / "out.zarr") == "complete"
    assert np.array_equal(read_array(tmp_path / "out.zarr"), expected(x), equal_nan=True)


def test_a_run_stopped_on_a_cluster_that_stays_up_leaves_no_task_writing(tmp_path: Path) -> None:
    """Ctrl-C during a run on a joined cluster: the tasks its workers were executing, though
    cancelled, ran on and wrote their blocks after the run had given up the output's lock
    and exited (helper-89), where the next run (an --overwrite with other stages) could get
    a stale block in an output it marks complete. The run waits for them before it gives
    up the lock: nothing is written after it exits, and `run --resume` finishes the output.
    Its line had said "interrupted: the workers are stopped; ...", where the workers are the
    user's and keep running (h60j): it says that the run's tasks are cancelled, and they
    are: the scheduler holds none of them afterwards, and its workers are all still there."""
    from distributed import Client

    x, argv = _eight_blocks(tmp_path, dashboard="")
    out = tmp_path / "out.zarr"
    with external_cluster(
        tmp_path,
        nworkers=2,
        worker_args=("--preload", "tests.slow_blocks"),
        worker_env={"SLOW_BLOCK_SECONDS": "3"},
    ) as ext:
        proc = subprocess.Popen(
            [*argv, "--scheduler", ext.address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        try:
            deadline = time.monotonic() + 120
            while (not out.exists() or markers(out) == 0) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)  # the workers have begun their next blocks
            _, err = proc.communicate(timeout=120)
        finally:
            kill_group(proc)
        assert proc.returncode == DIED_OF_SIGINT, err
        lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
        assert lines == [
            "interrupted: the run's tasks are cancelled; `run --resume` finishes the output"
        ], err
        written = (markers(out), sorted(p.name for p in out.rglob("*") if p.is_file()))
        time.sleep(6)  # twice a block's write: a task still running would have written
        assert (markers(out), sorted(p.name for p in out.rglob("*") if p.is_file())) == written
        assert written[0] < 8 and status(out) == "incomplete"
        with Client(ext.address, timeout=60, set_as_default=False) as client:
            tasks = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            workers = len(client.scheduler_info()["workers"])
        assert (tasks, workers) == (0, 2)
        resumed = subprocess.run(
            [*argv, "--resume", "--scheduler", ext.address],
            capture_output=True,
            text=True,
            env={**env()},
        )
    assert resumed.returncode == 0, resumed.stderr
    assert status(out) == "complete"
    assert np.array_equal(read_array(out), expected(x), equal_nan=True)


def _held_until_waited_for(
    tmp_path: Path, first: list[str], then: list[str], hold: Path, address: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``first`` (a command's argv, on the cluster at ``address``) started and SIGKILLed once
    its task holds its write (``tests/slow_blocks.py``: ``hold`` made first), then ``then``
    run while that task still runs, its write released once ``then`` says it waits for it or
    has ended; ``then``'s result and what its stderr said by then."""
    killed = subprocess.Popen(
        [*first, "--scheduler", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
    )
    held = Path(f"{hold}.held")
    try:
        deadline = time.monotonic() + 120
        while not held.exists() and time.monotonic() < deadline:
            assert killed.poll() is None, "the first command ended before its task held"
            time.sleep(0.05)
        assert held.exists()
    finally:
        killed.kill()  # SIGKILL: no clean-up, its lock gone with it, its task still running
        killed.wait(30)
    err = tmp_path / "then.err"
    with err.open("w") as f:
        proc = subprocess.Popen(
            [*then, "--scheduler", address], stdout=subprocess.PIPE, stderr=f, text=True, env=env()
        )
    deadline = time.monotonic() + 120
    while proc.poll() is None and "still write" not in err.read_text():
        assert time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    said = err.read_text().splitlines()
    Path(f"{hold}.release").touch()  # the killed command's task writes now
    done = Path(f"{hold}.done")
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err.read_text()), said


def test_a_run_killed_on_a_cluster_that_stays_up_leaves_no_task_writing_into_the_next(
    tmp_path: Path,
) -> None:
    """A run killed (SIGKILL: no clean-up) on a joined cluster: the task its worker was
    executing ran on, though its client was gone, and wrote its block and marker into what
    was at the output then: the next run's, an ``--overwrite`` with other stages, which had
    written and marked that block and called the output complete (``verify`` then found the
    block of the killed run's stages). The next run waits for such tasks before it writes,
    saying so in one warning: its output is its own stages' of the input, and verifies."""
    x = many_blocks_input(tmp_path / "in.zarr", 1, cols=64)
    killed = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", name="a.yaml")
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        name="b.yaml",
        stages=[{"op": "multiply", "factor": 3}],
    )
    run = [sys.executable, "-m", "pipeline", "run", "--progress", "none"]
    with _held_cluster(tmp_path) as (ext, hold):
        done, said = _held_until_waited_for(
            tmp_path, [*run, str(killed)], [*run, str(cfg), "--overwrite"], hold, ext.address
        )
        assert done.returncode == 0, done.stderr
        assert status(tmp_path / "out.zarr") == "complete"
        assert np.array_equal(read_array(tmp_path / "out.zarr"), x * np.float32(3), equal_nan=True)
        _waited_for_and_verifies(said, tmp_path / "out.zarr", ext.address, cfg)


def test_a_generation_killed_on_a_cluster_that_stays_up_leaves_no_task_writing_into_the_next(
    tmp_path: Path,
) -> None:
    """The same of ``generate``: a generation killed on a joined cluster left its worker's task
    running, which wrote its unit (the killed config's seed) into the input that the next
    generation, of another seed, had made and marked generated: an input of neither seed.
    The next generation waits for it: its input is its seed's, as one made alone is."""
    generate = {"shape": [1, 64], "dtype": "float32", "seed": 3, "chunks": [1, 64]}
    killed = generated_config(tmp_path, generate, name="a.yaml")
    cfg = generated_config(tmp_path, {**generate, "seed": 4}, name="b.yaml")
    said, alone = _generated_after_a_killed_generation(tmp_path, killed, cfg)
    assert np.array_equal(read_array(tmp_path / "in.zarr"), read_array(alone / "in.zarr"))
    assert any("task(s) of an earlier run" in ln for ln in said), said


def test_a_unit_in_flight_as_its_generated_input_moves_lands_in_the_moved_input(
    tmp_path: Path,
) -> None:
    """An input moved away (``mv in.zarr moved.zarr``) while one unit of its generation is
    being written, past that unit's check of the generation's lock (a joined cluster's worker
    holds the task there, ``tests/slow_blocks.py``), then a generation of another seed at
    ``in.zarr`` that ends before the held unit's write goes on: that unit had been written by
    the path, into the new input after it was marked generated, an input of neither seed.
    It lands in the moved input, its generation's own; the first generation stops at its
    next unit in one line, and the new input is its seed's, as one made alone is."""
    generate = {"shape": [4, 64], "dtype": "float32", "seed": 3, "chunks": [1, 64]}
    first = generated_config(tmp_path, generate, name="a.yaml")
    second = generated_config(tmp_path, {**generate, "seed": 4}, name="b.yaml")
    alone = tmp_path / "alone"
    alone.mkdir()
    made = run_python(
        ["-m", "pipeline", "generate", generated_config(alone, _generate_of(second))], alone
    )
    assert made.returncode == 0, made.stderr

    def move_and_generate_again() -> None:
        (tmp_path / "in.zarr").rename(tmp_path / "moved.zarr")
        later = run_python(["-m", "pipeline", "generate", second], cwd=tmp_path)
        assert later.returncode == 0, later.stderr

    code, err = held_unit_write(tmp_path, ["generate", str(first)], move_and_generate_again)
    assert code == 1, err
    assert (tmp_path / "hold.done").exists()
    assert np.array_equal(read_array(tmp_path / "in.zarr"), read_array(alone / "in.zarr"))
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("dashboard: ")]
    assert len(lines) == 1 and "was moved" in lines[0] and "generate it again" in lines[0], err
    assert (tmp_path / "moved.zarr" / ".pipeline" / "generate.lock").exists()


def test_a_generation_killed_on_a_cluster_that_stays_up_is_waited_for_through_a_link(
    tmp_path: Path,
) -> None:
    """The same of ``generate``, the next generation naming the input through a link to it:
    the killed generation's task, counted by the path it was given, had not been seen, and
    wrote its unit into the input the next one had marked generated. It is waited for: the
    input is the next generation's seed's, as one made alone is."""
    generate = {"shape": [1, 64], "dtype": "float32", "seed": 3, "chunks": [1, 64]}
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "in.zarr"
    killed = generated_config(tmp_path, generate, name="a.yaml", input={"store": str(real)})
    (tmp_path / "in.zarr").symlink_to(real)
    cfg = generated_config(tmp_path, {**generate, "seed": 4}, name="b.yaml")
    said, alone = _generated_after_a_killed_generation(tmp_path, killed, cfg)
    assert np.array_equal(read_array(real), read_array(alone / "in.zarr"))
    assert any(f"still write {tmp_path / 'in.zarr'} on worker" in ln for ln in said), said


def test_a_generation_killed_on_a_cluster_that_stays_up_is_waited_for_before_the_input_is_made(
    tmp_path: Path,
) -> None:
    """The next generation replaced the input (its metadata, its folder emptied) before it
    waited for the killed one's task, which then wrote its unit into the new input: a chunk
    file of the killed generation's layout (Zarr 2's ``0.0``) left in the Zarr 3 input marked
    generated, where the next ``generate`` refused it as a file put there. The wait comes
    first: the input holds its own chunks alone, its seed's values."""
    generate = {"shape": [1, 64], "dtype": "float32", "seed": 3, "chunks": [1, 64]}
    killed = generated_config(tmp_path, {**generate, "zarr_format": 2}, name="a.yaml")
    cfg = generated_config(tmp_path, {**generate, "seed": 4}, name="b.yaml")
    said, alone = _generated_after_a_killed_generation(tmp_path, killed, cfg)
    assert any("task(s) of an earlier run" in ln for ln in said), said
    assert np.array_equal(read_array(tmp_path / "in.zarr"), read_array(alone / "in.zarr"))
    files = sorted(
        str(p.relative_to(tmp_path / "in.zarr"))
        for p in (tmp_path / "in.zarr").rglob("*")
        if p.is_file() and ".pipeline" not in p.parts
    )
    assert files == sorted(
        str(p.relative_to(alone / "in.zarr"))
        for p in (alone / "in.zarr").rglob("*")
        if p.is_file() and ".pipeline" not in p.parts
    )
    again = run_python(["-m", "pipeline", "generate", cfg], tmp_path)
    assert again.returncode == 0, again.stderr


def _generated_after_a_killed_generation(
    tmp_path: Path, killed: Path, cfg: Path
) -> tuple[list[str], Path]:
    """Make ``cfg``'s input alone (in ``tmp_path/alone``), then, on a joined cluster, kill a
    ``generate`` of ``killed`` while its task is held and run ``generate`` of ``cfg``, which
    must succeed: the second's stderr lines (:func:`_held_until_waited_for`) and the folder of
    the input made alone."""
    alone = tmp_path / "alone"
    alone.mkdir()
    made = run_python(
        ["-m", "pipeline", "generate", generated_config(alone, _generate_of(cfg))], alone
    )
    assert made.returncode == 0, made.stderr
    command = [sys.executable, "-m", "pipeline", "generate", "--progress", "none"]
    with _held_cluster(tmp_path) as (ext, hold):
        done, said = _held_until_waited_for(
            tmp_path, [*command, str(killed)], [*command, str(cfg)], hold, ext.address
        )
    assert done.returncode == 0, done.stderr
    return said, alone


@contextlib.contextmanager
def _held_cluster(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A joined cluster of one 2-thread worker whose block tasks wait while the file ``hold``
    is there (``tests.slow_blocks``): the cluster and that file's path."""
    hold = tmp_path / "hold"
    hold.touch()
    with external_cluster(
        tmp_path,
        nworkers=1,
        worker_args=("--nthreads", "2", "--preload", "tests.slow_blocks"),
        worker_env={"HOLD_BLOCK_FILE": str(hold)},
    ) as ext:
        yield ext, hold


def _generate_of(path: Path) -> dict[str, Any]:
    """The ``input.generate`` section of the config file ``path``."""
    return dict(yaml.safe_load(path.read_text())["input"]["generate"])


def test_a_run_whose_workers_all_died_says_so_and_finishes_once_one_joins(tmp_path: Path) -> None:
    """Every worker of a joined cluster killed during the run (their nanny too: none comes
    back): the run had waited without a word, its progress stopped, until it was killed. Once
    the cluster has had no worker for cluster.timeout, one warning says so and what to do;
    a worker started then finishes the run, whose output is NumPy's."""
    x, argv = _eight_blocks(tmp_path, timeout=2, dashboard="")
    err = tmp_path / "run.err"
    with external_cluster(
        tmp_path,
        nworkers=1,
        worker_args=("--preload", "tests.slow_blocks"),
        worker_env={"SLOW_BLOCK_SECONDS": "0.5"},
    ) as ext:
        with err.open("w") as f:
            proc = subprocess.Popen(
                [*argv, "--scheduler", ext.address], stdout=subprocess.PIPE, stderr=f, env=env()
            )
        later = None
        try:
            assert wait_for_markers(proc, tmp_path / "out.zarr", 1) >= 1, err.read_text()
            kill_group(ext.workers)  # the nanny and its worker: SIGKILL, none started again
            deadline = time.monotonic() + 120
            while "has had no worker" not in err.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.1)
            later = subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", ext.address, "--nthreads", "1"]
                + ["--no-dashboard"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env(),
                start_new_session=True,
            )
            proc.communicate(timeout=120)
        finally:
            kill_group(proc)
            if later is not None:
                kill_group(later)
    assert proc.returncode == 0, err.read_text()
    assert [ln for ln in err.read_text().splitlines() if ln.startswith("warning:")] == [
        f"warning: the cluster at {ext.address} has had no worker for 2 s (they died or left "
        f"during the work): it waits for one; start workers (`dask worker {ext.address}` or "
        f"`dask cuda worker {ext.address}`), or stop it (Ctrl-C)"
    ]
    assert status(tmp_path / "out.zarr") == "complete"
    assert np.array_equal(read_array(tmp_path / "out.zarr"), expected(x), equal_nan=True)


@pytest.mark.parametrize("through", ["a link to the output", "a link to its folder"])
def test_a_run_killed_on_a_cluster_that_stays_up_is_waited_for_through_a_link(
    tmp_path: Path, through: str
) -> None:
    """The same output named by another path that leads to it (a symbolic link to the store,
    or to a folder above it): the killed run's task still writing it had not been seen (the
    tasks were counted by the path as written), and the next run, an ``--overwrite`` with
    other stages, had marked the output complete before that task wrote the killed run's
    block into it. It waits for that task, naming the output where the links lead; its output
    is its own stages' of the input, and verifies."""
    x = many_blocks_input(tmp_path / "in.zarr", 1, cols=64)
    (tmp_path / "real").mkdir()
    killed = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "real" / "out.zarr", name="a.yaml"
    )
    if through == "a link to the output":
        (tmp_path / "out.zarr").symlink_to(tmp_path / "real" / "out.zarr")
        linked = tmp_path / "out.zarr"
    else:
        (tmp_path / "there").symlink_to(tmp_path / "real")
        linked = tmp_path / "there" / "out.zarr"
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        linked,
        name="b.yaml",
        stages=[{"op": "multiply", "factor": 3}],
    )
    hold = tmp_path / "hold"
    hold.touch()
    run = [sys.executable, "-m", "pipeline", "run", "--progress", "none"]
    with external_cluster(
        tmp_path,
        nworkers=1,
        worker_args=("--nthreads", "2", "--preload", "tests.slow_blocks"),
        # held once its lock is asked for: its unit is written into whatever is there then
        worker_env={"HOLD_BLOCK_FILE": str(hold), "HOLD_BLOCK_AT": "unit"},
    ) as ext:
        done, said = _held_until_waited_for(
            tmp_path, [*run, str(killed)], [*run, str(cfg), "--overwrite"], hold, ext.address
        )
        assert done.returncode == 0, done.stderr
        assert status(tmp_path / "real" / "out.zarr") == "complete"
        expected = x * np.float32(3)
        assert np.array_equal(read_array(linked), expected, equal_nan=True)
        _waited_for_and_verifies(said, linked, ext.address, cfg)


def _waited_for_and_verifies(said: list[str], output: Path, scheduler: str, cfg: Path) -> None:
    """Assert that a run's stderr lines ``said`` hold one warning alone, that it waited for a
    killed run's task writing ``output`` on the one worker of ``scheduler``, and that
    ``pipeline verify --all`` of ``cfg`` passes."""
    assert [ln for ln in said if ln.startswith("warning:")] == [
        f"warning: 1 task(s) of an earlier run, whose process is gone, still write "
        f"{output} on worker {_worker(scheduler)}: waiting for them to end "
        "before this run writes there"
    ], said
    verified = subprocess.run(
        [sys.executable, "-m", "pipeline", "verify", str(cfg), "--all"],
        capture_output=True,
        text=True,
        env=env(),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _worker(address: str) -> str:
    """The address of the one worker of the scheduler at ``address``."""
    from distributed import Client

    with Client(address, timeout=60, set_as_default=False) as client:
        (worker,) = client.scheduler_info()["workers"]
    return str(worker)


def test_a_stop_waits_no_longer_than_its_bound_for_a_worker_that_does_not_answer(
    monkeypatch, caplog
) -> None:
    """A run stopped on a cluster that stays up looks, again and again, at what its workers
    still execute (``DaskWorkers._settle``). A worker whose event loop does not answer (here
    held by a function run on it, ``time.sleep``, as a task holding the loop would) had held
    each look for a fixed 10 s, past the line "stopping:" (due after 2 s) and past the
    overall bound (``SETTLE_TIMEOUT``, 4 s here): each look is now bounded by what is left
    of both, so the line comes on time and the stop ends at the bound, said."""
    import logging

    from distributed import Client, LocalCluster

    from pipeline.running import cluster

    monkeypatch.setattr(cluster, "SETTLE_TIMEOUT", 4.0)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as lc,
        Client(lc) as client,
    ):
        workers = cluster.DaskWorkers(client, lc.scheduler_address, None)
        assert list(client.run(cluster._executing, ["x"]).values()) == [0]  # it answers

        async def hold(seconds: float) -> None:
            time.sleep(seconds)  # on the worker's event loop: it answers nothing meanwhile

        client.run(hold, 15, wait=False)
        time.sleep(0.5)
        caplog.set_level(logging.WARNING, logger="pipeline")
        started = time.monotonic()
        workers._settle([("block-x", 0, 0)])
        took = time.monotonic() - started
        said = [(r.created, r.getMessage()) for r in caplog.records]
        lines = [m for _, m in said]
        assert took < 12, (took, lines)  # its 4 s, not the 15 s hold (a busy machine adds seconds)
        assert any(m.startswith("stopping: waiting for the blocks") for m in lines), lines
        told = next(t for t, m in said if m.startswith("stopping:"))
        assert told - (time.time() - took) < 3.0, (told, lines)
        assert any("may still be running" in m for m in lines), lines


def test_workers_that_keep_dying_while_generating_say_to_generate_again(tmp_path: Path) -> None:
    """Workers that die generating the input had been told that "`run --resume` finishes the
    output": the line says that the input stays unfinished, what gives a task more memory,
    and to generate it again, which then makes it whole."""
    generate = {"shape": [8, 64], "dtype": "float32", "seed": 3, "chunks": [1, 64]}
    cluster = {"workers": 1, "threads_per_worker": 1, "protocol": "tcp", "dashboard": ""}
    cfg = generated_config(tmp_path, generate, cluster=cluster)
    argv = [sys.executable, "-m", "pipeline", "generate", str(cfg), "--progress", "none"]
    dying = {**env(), **DIES, "WORKER_DIES_BY": "kill"}
    done = subprocess.run(argv, capture_output=True, text=True, env=dying, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    line = one_line_error(done.stderr)
    assert "2 workers died one after another running the input's unit (" in line, line
    assert "stays unfinished" in line and line.endswith("then generate it again"), line
    assert "raise cluster.host_memory_limit" in line and "--resume" not in line, line
    again = subprocess.run(argv, capture_output=True, text=True, env=env(), cwd=tmp_path)
    assert again.returncode == 0, again.stderr


# --------------------------------------------------------------------------------------------
# 5. One writer at a time, and no silent overwrite.


@dataclass
class Midway:
    """What :func:`_while_a_run_writes` leaves: the input ``x``, the run's ``cfg`` and
    ``out``, its finished process ``proc`` and ``stderr``, and what ``act`` returned."""

    x: np.ndarray
    cfg: Path
    out: Path
    proc: subprocess.Popen
    stderr: str
    acted: Any


def _while_a_run_writes(tmp_path: Path, act: Callable[[Path], Any]) -> Midway:
    """Start a command-line run of many one-row blocks; once it has marked a block written,
    ``act(cfg)`` while it goes on; then let it end. A run that ended before ``act`` was done
    is tried again on a longer input."""
    rows = 800
    for _ in range(3):
        x = many_blocks_input(tmp_path / "in.zarr", rows, cols=COLS)
        cfg = _blocks_config(tmp_path, workers=1)
        out = tmp_path / "out.zarr"
        shutil.rmtree(out, ignore_errors=True)
        proc = cli_process(cfg, cwd=tmp_path)
        try:
            if wait_for_markers(proc, out, 1) < 0:
                rows *= 4
                continue
            acted = act(cfg)
            still_running = proc.poll() is None
            _, err = proc.communicate(timeout=300)
        finally:
            kill_group(proc)
        if still_running:
            return Midway(x, cfg, out, proc, err, acted)
        rows *= 4  # the run ended before act was done: a longer one
    pytest.fail("every run ended before anything could be done while it wrote")


def test_an_input_rewritten_during_a_run_leaves_the_output_incomplete(tmp_path: Path, cli) -> None:
    """Another program rewrote an input chunk (the same bytes, anew) while a run read the
    input (helper-40: a `pipeline generate` of another seed left blocks of both, marked
    complete): the run ends in one line saying so, the output incomplete, and a resume
    refuses it; --overwrite computes it from the input as it is."""

    def rewrite(cfg: Path) -> None:
        chunk = tmp_path / "in.zarr" / "c" / "0" / "0"
        chunk.write_bytes(chunk.read_bytes())  # rewritten: same bytes, a new file time

    m = _while_a_run_writes(tmp_path, rewrite)
    assert m.proc.returncode == 1, m.stderr
    line = one_line_error(m.stderr)
    assert "changed while this run read it" in line and "`run --overwrite`" in line, m.stderr
    assert "file c/0/0 (" in line and "modification time" in line, line  # what changed, named
    assert status(m.out) == "incomplete"
    e = refused("run", m.cfg, "--resume")
    assert isinstance(e, OutputError) and e.changed == ["input.data"], e
    rc, _, err = cli("run", m.cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert np.array_equal(read_array(m.out), expected(m.x), equal_nan=True)


def _inodes(store: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``store``: (inode, bytes)."""
    return {k: (ino, data) for k, (_, ino, data) in file_states(store).items()}


def test_an_overwrite_of_a_hard_linked_copy_of_the_input_completes(tmp_path: Path, cli) -> None:
    """The output is ``cp -al in.zarr out.zarr``: its files share the input's inodes. Its
    deletion by ``--overwrite`` changed their status-change times, and the run ended "the
    input changed while this run read it" (a second run passed). It completes now, the
    input's files, inodes and bytes, as they were; the output's record is the input's as it
    is, so a plain run says it is complete, and a resume has nothing to do (h72c)."""
    x = np.arange(40 * 40, dtype=np.float32).reshape(40, 40)
    make_array(tmp_path / "in.zarr", x, (10, 10))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    subprocess.run(["cp", "-al", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr")], check=True)
    before = _inodes(tmp_path / "in.zarr")
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert _inodes(tmp_path / "in.zarr") == before
    assert status(tmp_path / "out.zarr") == "complete"
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    e = refused("run", cfg)
    assert isinstance(e, OutputError) and e.status == "complete", e
    rc, out, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 0 and "nothing to do" in out + err, err
    rc, out, err = cli("verify", cfg)
    assert rc == 0, out + err


def test_an_input_rewritten_in_place_during_a_run_is_found_among_hard_links(
    tmp_path: Path,
) -> None:
    """A chunk rewritten in place with its modification time put back (as ``cp -p`` onto it
    does: helper-40) after a backup hard-linked the input: its link count changed with its
    status-change time, as the overwrite of a ``cp -al`` copy changes them, but no link of
    it was this run's to delete, so the change is still found (h72c)."""

    def backup_and_rewrite(cfg: Path) -> None:
        subprocess.run(
            ["cp", "-al", str(tmp_path / "in.zarr"), str(tmp_path / "backup.zarr")], check=True
        )
        chunk = tmp_path / "in.zarr" / "c" / "0" / "0"
        st = chunk.stat()
        with open(chunk, "r+b") as f:  # the same inode, the same bytes, the time put back
            f.write(chunk.read_bytes())
        os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns))

    m = _while_a_run_writes(tmp_path, backup_and_rewrite)
    assert m.proc.returncode == 1, m.stderr
    line = one_line_error(m.stderr)
    assert "changed while this run read it" in line, m.stderr
    assert "files c/0/0 (status-change time)" in line, line  # cp -al: every ctime
    assert status(m.out) == "incomplete"


def test_an_input_rewritten_behind_a_symlinked_folder_is_a_changed_input(
    tmp_path: Path, cli
) -> None:
    """The input's chunk folder ``c`` is a link to a folder elsewhere (data kept on another
    disk): a rewrite there was not in the input's identity, whose walk did not follow links,
    and a resume of the complete output said "nothing to do" (helper-43; an interrupted one
    mixed both inputs). Refused as the input's data changed."""
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(tmp_path / "in.zarr", x, (5, 20))
    (tmp_path / "in.zarr" / "c").rename(tmp_path / "elsewhere")
    (tmp_path / "in.zarr" / "c").symlink_to(tmp_path / "elsewhere")
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    z = zarr.open_array(str(tmp_path / "in.zarr"), mode="r+")
    z[0:5] = z[0:5] + 1
    e = refused("run", cfg, "--resume")
    assert isinstance(e, OutputError) and e.changed == ["input.data"], e


def test_a_link_to_a_folder_above_the_input_is_not_followed(tmp_path: Path, cli) -> None:
    """A link inside the input to a folder above it (``up -> ..``): the identity's walk
    followed it into the output being written beside the input, and every run ended "the
    input changed while this run read it" (helper-44). Such a link is not followed."""
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(tmp_path / "in.zarr", x, (5, 20))
    (tmp_path / "in.zarr" / "up").symlink_to(tmp_path)
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), expected(x))
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out


def test_a_second_run_on_the_same_output_is_refused_naming_the_first(tmp_path: Path, cli) -> None:
    """Each command that refuses an output another run is writing says its one line and
    nothing before it: verify had printed its table ("checked 0 of 800") and notes first
    (new-user trial)."""

    def second_runs(cfg: Path) -> tuple[dict, tuple[int, str, str], dict]:
        refusals = {
            flag: error_of("run", cfg, *flag) for flag in [(), ("--overwrite",), ("--resume",)]
        }
        said = {
            flags: cli(*flags, cfg)
            for flags in [("run", "--resume"), ("-q", "verify"), ("verify", "--all")]
        }
        return refusals, cli("verify", cfg), said  # verify had said "`run --resume` finishes it"

    m = _while_a_run_writes(tmp_path, second_runs)
    results, (rc, out_said, err), said = m.acted
    first, out = m.proc, m.out
    host = socket.gethostname()
    assert rc == 1 and f"a run is writing it now (pid {first.pid} on {host}, since " in err, err
    for flags, (code, text, lines) in [(("verify",), (rc, out_said, err)), *said.items()]:
        assert code == 1 and text == "", (flags, text)  # no table, no count
        assert len(lines.splitlines()) == 1 and lines.startswith("error: "), (flags, lines)
        assert f"pid {first.pid} on {host}" in lines, (flags, lines)
    # its start said as the run's refusal says it, not as the lock's seconds since 1970 (h65d)
    since = re.search(r"a run is writing it now \(pid \d+ on \S+, since ([^)]*)\)", err)
    assert since and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", since[1]), err
    assert since[1] in str(results[()]), (err, results[()])
    for flag, e in results.items():
        assert isinstance(e, OutputError), (flag, e)
        assert e.output == str(out), flag
        assert (e.holder["pid"], e.holder["host"]) == (first.pid, host), (flag, e.holder)
    # the first run was not disturbed
    assert first.returncode == 0, m.stderr
    assert status(out) == "complete"
    assert not (out / ".pipeline").exists()
    assert np.array_equal(read_array(out), expected(m.x), equal_nan=True)


def _ramp(rows: int) -> np.ndarray:
    """The values ``generate`` gives a float32 ``ramp`` input of ``rows`` x :data:`COLS`."""
    return ((np.arange(rows * COLS) % 1024) * 0.5).astype(np.float32).reshape(rows, COLS)


def _generated_rows_config(tmp_path: Path, rows: int, **input_: Any) -> Path:
    """A config whose input ``tmp_path/in.zarr`` array ``x`` is a generated ramp of ``rows``
    one-row units (one task each: a generation that lasts), made on one thread."""
    generate = {
        "shape": [rows, COLS],
        "chunks": [1, COLS],
        "shards": [1, COLS],
        "distribution": "ramp",
        **input_.pop("generate", {}),
    }
    one = {"workers": 1, "threads_per_worker": 1, "dashboard": ""}
    return generated_config(tmp_path, generate, input={"array": "x", **input_}, cluster=one)


def _generate_lock_holder(lock: Path) -> int | None:
    """The pid a generation's lock file names, once written (None before)."""
    try:
        return int(json.loads(lock.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _while_generating(
    tmp_path: Path, act: Callable[[Path, subprocess.Popen], Any]
) -> tuple[Path, int, subprocess.Popen, str, Any]:
    """Start ``python -m pipeline generate`` of :func:`_generated_rows_config`; once its lock
    names it and it has written a unit, ``act(cfg, proc)`` while it goes on; then let it end.
    (cfg, rows, its process, its stderr, what ``act`` returned); a generation that ended
    before ``act`` was done is tried again on a longer input."""
    rows = 12000
    for _ in range(3):
        cfg = _generated_rows_config(tmp_path, rows)
        for store in ("in.zarr", "out.zarr"):  # an act's run may have gone on after the end
            shutil.rmtree(tmp_path / store, ignore_errors=True)
        proc = cli_process(cfg, cwd=tmp_path, command="generate")
        lock = tmp_path / "in.zarr" / "x" / ".pipeline" / "generate.lock"
        try:
            while _generate_lock_holder(lock) != proc.pid and proc.poll() is None:
                time.sleep(0.002)
            if proc.poll() is not None or wait_for_chunk_files(proc, tmp_path / "in.zarr", 2) < 0:
                assert proc.wait() == 0, proc.stderr.read() if proc.stderr else ""
                rows *= 4
                continue
            acted = act(cfg, proc)
            still_running = proc.poll() is None
            _, err = proc.communicate(timeout=300)
        finally:
            kill_group(proc)
        if still_running:
            return cfg, rows, proc, err, acted
        rows *= 4
    pytest.fail("every generation ended before anything could be done while it wrote")


def test_a_second_generate_of_one_input_is_refused_naming_the_first(tmp_path: Path) -> None:
    """Two ``pipeline generate`` of one input at once had taken no lock: both wrote it, and
    exited 0 with the last one's data or failed with misleading lines, while a run read what
    the other rewrote. The second (a real process) is refused in one line naming the first
    and what to do; a ``run`` (plain, or one whose ``when_missing`` would generate the
    unfinished input) and ``verify`` are refused as reading an input being generated. The
    first is not disturbed: its input is whole and its lock gone after, and the lock (in the
    array's folder) is no member of the group zarr-python lists meanwhile."""
    host = socket.gethostname()

    def meanwhile(cfg: Path, first: subprocess.Popen) -> dict[str, Any]:
        second = run_python(["-m", "pipeline", "generate", cfg, "--progress", "none"], tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a lock seen as a node would warn
            members = sorted(zarr.open_group(str(tmp_path / "in.zarr"), mode="r").keys())
        doc = yaml.safe_load(cfg.read_text())
        doc["input"]["generate"]["when_missing"] = True
        (tmp_path / "wm.yaml").write_text(yaml.safe_dump(doc))
        return {
            "second": second,
            "members": members,
            "run": error_of("run", cfg),
            "when_missing": error_of("run", tmp_path / "wm.yaml"),
            "verify": error_of("verify", cfg),
        }

    cfg, rows, first, err, acted = _while_generating(tmp_path, meanwhile)
    second = acted["second"]
    assert second.returncode == 1, second.stderr
    line = one_line_error(second.stderr)
    where = tmp_path / "in.zarr" / "x"
    assert f"another process is generating the input {where} (pid {first.pid} on {host}, " in line
    assert line.endswith(
        "wait for it to end, or stop it (Ctrl-C: its last line names the "
        "command that generates it again)"
    ), line
    for what in ("run", "when_missing", "verify"):
        e = acted[what]
        assert isinstance(e, InputError) and e.status == "generating", (what, e)
        assert (e.holder["pid"], e.holder["host"]) == (first.pid, host), (what, e.holder)
    assert "is being generated now (pid" in str(acted["run"]), acted["run"]
    assert acted["members"] == ["x"], acted["members"]
    assert first.returncode == 0, err
    assert np.array_equal(read_array(tmp_path / "in.zarr", "x"), _ramp(rows))
    assert not (where / ".pipeline").exists()
    made = zarr.open_array(str(where), mode="r").attrs["pipeline_generated"]
    assert made["status"] == "complete", made
    rc = run_python(["-m", "pipeline", "run", cfg, "--progress", "none"], tmp_path)
    assert rc.returncode == 0, rc.stderr


def _stopped_generation(tmp_path: Path, at: str, **input_: Any) -> tuple[Path, int, int]:
    """The config of an input of :func:`_generated_rows_config` whose ``pipeline generate`` a
    SIGKILL stopped at the point ``at`` (:data:`~tests.faultkit.STOPPED_GENERATIONS`,
    reached deterministically: no timing), its lock left naming the killed process; (config,
    rows, the killed process's pid). ``half-cleared`` generates the input whole first."""
    rows = 8
    generate = {**input_.pop("generate", {})}
    if at == "no-attributes":  # Zarr v2: its attributes are a document of their own
        generate.update(zarr_format=2, shards="none")
    cfg = _generated_rows_config(tmp_path, rows, generate=generate, **input_)
    if at == "half-cleared":
        assert error_of("generate", cfg) is None
    pid = killed_generation(cfg, at, tmp_path)
    lock = tmp_path / "in.zarr" / "x" / ".pipeline" / "generate.lock"
    assert _generate_lock_holder(lock) == pid  # left by the killed generation
    return cfg, rows, pid


@pytest.mark.parametrize("at", STOPPED_GENERATIONS)
def test_a_killed_generate_s_lock_is_taken_over(tmp_path: Path, at: str) -> None:
    """A generation killed (SIGKILL) at each point it may be stopped leaves its lock file,
    naming a process that has ended (the OS lock on it is gone with it), and whatever it had
    written (nothing, a folder half cleared, metadata without attributes or marked
    unfinished, some chunks): ``plan``, ``run``, ``run --resume`` and ``verify`` each say in
    one line that the input's generation was stopped and the command that makes it again
    (one stopped before it wrote the metadata had been "no Zarr array at in.zarr/x: it is a
    folder of no Zarr metadata; check input.array", or "it holds chunks but no metadata";
    a Zarr v2 ``.zarray`` without its ``.zattrs`` had been read as a complete array); and
    generating again takes the lock and what it left over (it had refused a folder of
    chunks as data generate did not create), makes the input whole and leaves no lock."""
    cfg, rows, pid = _stopped_generation(tmp_path, at)
    where = tmp_path / "in.zarr" / "x"
    for command in (["plan"], ["run"], ["run", "--resume"], ["verify"]):
        e = refused(*command, cfg)
        assert isinstance(e, InputError), (command, e)
        assert (e.status, e.made_by, e.holder["pid"]) == ("incomplete", "generate", pid), e
        said = f"the input {where} is unfinished: its generation (pid {pid}) was stopped "
        assert str(e).startswith(said + "before it finished, so "), (command, e)
        assert str(e).endswith(
            f"never written; `pipeline generate {cfg}` generates it again (or set "
            "input.generate.when_missing: true and `run` does)"
        ), (command, e)
    assert error_of("generate", cfg) is None
    assert not (where / ".pipeline").exists()
    assert np.array_equal(read_array(tmp_path / "in.zarr", "x"), _ramp(rows))
    assert error_of("run", cfg) is None


@pytest.mark.parametrize("at", STOPPED_GENERATIONS)
def test_when_missing_takes_a_killed_generation_over(tmp_path: Path, at: str) -> None:
    """``input.generate.when_missing``: ``plan`` notes that ``run`` generates the input again,
    ``verify`` names that command, and ``pipeline.run`` (``resume=True`` too) generates it
    again, whatever a killed generation left (nothing but its lock had been taken for a
    missing input, a Zarr v2 ``.zarray`` without its ``.zattrs`` for a complete one, read as
    such), then runs."""
    cfg, rows, pid = _stopped_generation(tmp_path, at, generate={"when_missing": True})
    e = refused("verify", cfg)
    assert isinstance(e, InputError) and e.status == "incomplete", e
    assert f"its generation (pid {pid}) was stopped before it finished" in str(e), e
    assert str(e).endswith(  # the config's file, as for `pipeline generate` (it had said CONFIG)
        f"`pipeline run {cfg}` generates it again first (input.generate.when_missing)"
    ), e
    plan = pipeline.plan(cfg)
    said = "the input is unfinished (a stopped generate): `pipeline.run(config)` generates it again"
    assert said in plan.notes, plan.notes
    # a resume too (its output does not exist yet): the input made whole first
    assert pipeline.run(cfg, resume=at in ("cleared", "units")).status == "complete"
    assert not (tmp_path / "in.zarr" / "x" / ".pipeline").exists()
    assert np.array_equal(read_array(tmp_path / "in.zarr", "x"), _ramp(rows))


def test_generate_input_takes_a_killed_generation_over(tmp_path: Path) -> None:
    """``generate_input`` (the Python API, :mod:`pipeline.running.generate`) takes over what
    a generation killed before it wrote the metadata left, and makes the input whole;
    ``pipeline.run`` had refused it naming the stopped generation."""
    from pipeline.running.generate import generate_input

    cfg, rows, pid = _stopped_generation(tmp_path, "cleared")
    with pytest.raises(InputError, match=rf"its generation \(pid {pid}\) was stopped"):
        pipeline.run(cfg)
    info = generate_input(pipeline.load_config(cfg), progress="none")
    assert tuple(info.shape) == (rows, COLS)
    assert np.array_equal(read_array(tmp_path / "in.zarr", "x"), _ramp(rows))
    assert not (tmp_path / "in.zarr" / "x" / ".pipeline").exists()


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_held_generation_lock_hides_nothing_from_zarr_and_xarray(
    tmp_path: Path, zarr_format: int
) -> None:
    """The generation's lock lies in its array's own folder (``v/.pipeline/generate.lock``),
    which readers of the group never list as a member: held by a real process in a variable
    of a Dataset xarray wrote (Zarr v2 and v3), ``zarr.open_group`` lists the same members
    and ``xr.open_zarr`` (consolidated or not) opens the same Dataset, without a warning."""
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset(
        {"v": (("t", "y"), np.arange(12, dtype=np.float32).reshape(4, 3), {"units": "K"})},
        coords={"t": np.arange(4)},
    )
    store = tmp_path / "ds.zarr"
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        ds.to_zarr(store, zarr_format=zarr_format, consolidated=True)

    def read() -> tuple[list[str], list[str]]:
        """The group's members as zarr-python lists them, and the warnings of the reads."""
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            members = sorted(zarr.open_group(str(store), mode="r").keys())
            for consolidated in (True, False):
                with xr.open_zarr(store, consolidated=consolidated) as seen:
                    xr.testing.assert_identical(seen.load(), ds)
        return members, sorted({str(w.message) for w in said})

    plain = read()
    with holding_input_lock(str(store), "v"):
        assert (store / "v" / ".pipeline" / "generate.lock").is_file()
        assert read() == plain
    assert plain[0] == ["t", "v"], plain


def test_a_chained_run_s_input_being_written_by_a_run_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    """A run whose input is the output another run is writing now (a chained run) is refused
    as reading an input being written, naming that run (it had been told the input was "the
    output of an interrupted run", or, where ``run --overwrite`` was replacing a complete
    output, had read what it deleted)."""

    def chained(cfg: Path) -> Any:
        second = write_config(
            tmp_path, tmp_path / "out.zarr", tmp_path / "out2.zarr", name="chained.yaml"
        )
        return error_of("run", second)

    m = _while_a_run_writes(tmp_path, chained)
    e = m.acted
    assert isinstance(e, InputError) and e.status == "writing", e
    assert e.holder["pid"] == m.proc.pid, e.holder
    assert f"the input {m.out} is being written by a run, as its output, now (pid " in str(e), e
    assert m.proc.returncode == 0, m.stderr


#: A cluster of one worker thread in the run's own process: the nested writers' tests start
#: several runs at once.
_INPROC = {"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"}


def _nested_line(err: str, mine: str, rel: str, other: Path, doing: str) -> None:
    """Assert ``err`` is the one-line refusal of a writer at ``mine`` nested (``rel``) with
    ``other``, which another writer (``doing``) writes now."""
    line = one_line_error(err)
    assert line.startswith(f"error: {mine} {rel} {other}, which {doing} now (pid "), line
    assert "apart from it (neither inside it nor holding it), or wait for that " in line, line


def test_a_run_around_several_writers_names_each_of_them(tmp_path: Path) -> None:
    """h85b: a run of ``out.zarr`` while three other writers of the pipeline hold their
    locks inside it (``a`` and ``b``, runs; ``c``, a generation), here in this process: its
    refusal named the first alone, and once that one ended the next refusal came. Each is
    named, before anything is written; with the locks given up and their folders removed,
    the run passes."""
    from pipeline.store.ledger import InputLock, Ledger
    from pipeline.store.location import Location

    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(tmp_path / "in.zarr", x, (5, 20))
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out, cluster=_INPROC)
    loc = Location.of(str(out))
    held = [Ledger(loc, "a"), Ledger(loc, "b"), InputLock(loc, "c")]
    for lock in held:
        lock.acquire()
    try:
        before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
        e = refused("run", cfg, "--overwrite", "--progress", "none")
        assert isinstance(e, OutputError), e
        for name in ("a", "b", "c"):
            assert str(out / name) in str(e), e
        assert sorted(e.others) == [str(out / n) for n in "abc"], e.others
        assert "wait for those writers to end" in str(e), e
        assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    finally:
        for lock in held:
            lock.clear()
    shutil.rmtree(out)  # the folders the locks were taken in
    assert error_of("run", cfg, "--progress", "none") is None
    assert np.array_equal(read_array(out), reference(x))


@pytest.mark.parametrize("paused", ["outer", "inner", "inner-linked"])
def test_runs_whose_outputs_nest_are_refused_before_writing(tmp_path: Path, paused: str) -> None:
    """Two runs at once, one writing ``out.zarr``, the other ``out.zarr/sub`` (real processes;
    the first held once it has taken its lock, before it writes: ``paused_at_lock``): each
    had taken its own lock, and the outer run's clearing of its folder deleted the inner
    one's output and lock, both exiting 0. The one that comes second is refused before it
    writes anything, in one line naming both outputs; the first then finishes, its output
    whole. ``inner-linked``: the inner run's output.store lies in a link to the outer one's
    folder (``link/sub``), found by its resolved path."""
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(tmp_path / "in.zarr", x, (5, 20))
    out = tmp_path / "out.zarr"
    inner = out / "sub"
    if paused == "inner-linked":
        (tmp_path / "link").symlink_to(out, target_is_directory=True)
        out.mkdir()
        inner = tmp_path / "link" / "sub"
    outer_cfg = write_config(
        tmp_path, tmp_path / "in.zarr", out, name="outer.yaml", cluster=_INPROC
    )
    inner_cfg = write_config(
        tmp_path, tmp_path / "in.zarr", inner, name="inner.yaml", cluster=_INPROC
    )
    first, second = (outer_cfg, inner_cfg) if paused == "outer" else (inner_cfg, outer_cfg)
    with paused_at_lock("run", first, cwd=tmp_path) as held:
        before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
        r = run_python(
            ["-m", "pipeline", "run", second, "--progress", "none", "--overwrite"], tmp_path
        )
        assert r.returncode == 1, r.stdout + r.stderr
        if paused == "outer":
            _nested_line(
                r.stderr,
                f"the output {inner}",
                "lies inside",
                out,
                "another run is writing as its output",
            )
        else:
            _nested_line(
                r.stderr,
                f"the output {out}",
                "holds",
                out / "sub",
                "another run is writing as its output",
            )
        assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
        _, err = go_on(held)
        assert held.returncode == 0, err
    y = read_array(out if paused == "outer" else inner)
    assert np.array_equal(y, reference(x))


@pytest.mark.parametrize("outer", ["run", "generate"])
def test_writers_nested_both_past_their_checks_one_is_refused(tmp_path: Path, outer: str) -> None:
    """A writer of ``out.zarr`` (a run, or a generation of an input there) and a run writing
    ``out.zarr/sub`` have each made their checks before either took its lock (the outer one
    held just before it takes it, the inner one once it holds its own): the outer one,
    looking again once its lock is held, finds the inner one's and is refused in one line
    before it writes (it had cleared its folder, the inner run's lock and data in it); the
    inner run then finishes."""
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(tmp_path / "in.zarr", x, (5, 20))
    out = tmp_path / "out.zarr"
    outer_cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        name="outer.yaml",
        cluster=_INPROC,
        **(
            {"input": {"store": str(out), "generate": {"shape": [8, 6], "chunks": [4, 6]}}}
            if outer == "generate"
            else {}
        ),
    )
    if outer == "generate":  # its config's output apart from its input
        cfg = yaml.safe_load(outer_cfg.read_text())
        cfg["output"]["store"] = str(tmp_path / "res.zarr")
        outer_cfg.write_text(yaml.safe_dump(cfg))
    inner = write_config(
        tmp_path, tmp_path / "in.zarr", out / "sub", name="inner.yaml", cluster=_INPROC
    )
    with (
        paused_at_lock(outer, outer_cfg, cwd=tmp_path, before=True) as first,
        paused_at_lock("run", inner, cwd=tmp_path) as second,
    ):
        _, err = go_on(first)
        assert first.returncode == 1, err
        _nested_line(
            err,
            f"the {'output' if outer == 'run' else 'input'} {out}",
            "holds",
            out / "sub",
            "another run is writing as its output",
        )
        assert (out / "sub" / ".pipeline" / "lock").is_file()
        assert not (out / ".pipeline").exists()  # its lock and folder gone with it
        _, err = go_on(second)
        assert second.returncode == 0, err
    assert np.array_equal(read_array(out / "sub"), reference(x))


def test_a_run_decides_again_once_it_holds_its_lock(tmp_path: Path) -> None:
    """A run that has decided how to start (``out.zarr`` absent: a fresh one), held just
    before it takes its lock while another run writes ``out.zarr/sub`` from start to end:
    its decision was stale, and its making of the output deleted the other run's, both
    exiting 0. Deciding again once its lock is held, it is refused as if it had begun after
    that run, in one line, and the other's output stays whole."""
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(tmp_path / "in.zarr", x, (5, 20))
    out = tmp_path / "out.zarr"
    outer = write_config(tmp_path, tmp_path / "in.zarr", out, name="outer.yaml", cluster=_INPROC)
    inner = write_config(
        tmp_path, tmp_path / "in.zarr", out / "sub", name="inner.yaml", cluster=_INPROC
    )
    with paused_at_lock("run", outer, cwd=tmp_path, before=True) as first:
        r = run_python(["-m", "pipeline", "run", inner, "--progress", "none"], tmp_path)
        assert r.returncode == 0, r.stderr
        _, err = go_on(first)
    assert first.returncode == 1, err
    assert one_line_error(err) == (
        f"error: {out} is a directory that holds other files (sub), not a Zarr array or "
        "group; the pipeline never deletes it, even with --overwrite: choose another "
        "output.store or remove it yourself"
    )
    assert sorted(os.listdir(out)) == ["sub"]
    assert np.array_equal(read_array(out / "sub"), reference(x))


def test_an_input_generated_inside_an_output_being_written_is_refused(tmp_path: Path) -> None:
    """A generation (``pipeline generate``, and a run's ``input.generate.when_missing``) of an
    input inside the output another run writes now (held after its lock, before it writes),
    and a run whose output lies inside an input being generated now: the generation's lock
    and the run's are each their own, and one's clearing deleted the other's data. Refused
    before anything is written, naming both; the held writer then finishes as it would."""
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(tmp_path / "in.zarr", x, (5, 20))
    out = tmp_path / "out.zarr"
    run_cfg = write_config(tmp_path, tmp_path / "in.zarr", out, name="run.yaml", cluster=_INPROC)
    gen = {"shape": [8, 6], "chunks": [4, 6]}
    inside = write_config(
        tmp_path,
        out / "gen",
        tmp_path / "elsewhere.zarr",
        name="inside.yaml",
        input={"store": str(out / "gen"), "generate": {**gen, "when_missing": True}},
        cluster=_INPROC,
    )
    with paused_at_lock("run", run_cfg, cwd=tmp_path) as held:
        for command in ("generate", "run"):
            r = run_python(["-m", "pipeline", command, inside, "--progress", "none"], tmp_path)
            assert r.returncode == 1, r.stdout + r.stderr
            _nested_line(
                r.stderr,
                f"the input {out / 'gen'}",
                "lies inside",
                out,
                "another run is writing as its output",
            )
            assert not (out / "gen").exists()
        _, err = go_on(held)
        assert held.returncode == 0, err
    assert np.array_equal(read_array(out), reference(x))

    # the other way round: a generation held at its lock, a run writing inside its input
    gen_cfg = write_config(
        tmp_path,
        tmp_path / "gen.zarr",
        tmp_path / "res.zarr",
        name="gen.yaml",
        input={"store": str(tmp_path / "gen.zarr"), "generate": gen},
        cluster=_INPROC,
    )
    into = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "gen.zarr" / "sub",
        name="into.yaml",
        cluster=_INPROC,
    )
    with paused_at_lock("generate", gen_cfg, cwd=tmp_path) as held:
        r = run_python(["-m", "pipeline", "run", into, "--progress", "none"], tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        _nested_line(
            r.stderr,
            f"the output {tmp_path / 'gen.zarr' / 'sub'}",
            "lies inside",
            tmp_path / "gen.zarr",
            "another process is generating as an input",
        )
        assert not (tmp_path / "gen.zarr" / "sub").exists()
        _, err = go_on(held)
        assert held.returncode == 0, err
    assert read_array(tmp_path / "gen.zarr").shape == (8, 6)


def test_an_input_inside_an_output_being_written_is_refused(tmp_path: Path) -> None:
    """A run reading an input that lies inside the output another run writes now (its folder,
    which that run clears as it begins: the input deleted as it is read) is refused, naming
    both; a reader holds no lock, so the writer cannot see it, and the reader looks."""
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(tmp_path / "in.zarr", x, (5, 20))
    out = tmp_path / "out.zarr"
    run_cfg = write_config(tmp_path, tmp_path / "in.zarr", out, name="run.yaml", cluster=_INPROC)
    reader = write_config(
        tmp_path, out / "x", tmp_path / "res.zarr", name="reader.yaml", cluster=_INPROC
    )
    with paused_at_lock("run", run_cfg, cwd=tmp_path) as held:
        make_array(out / "x", x, (5, 20))  # there before the run clears its folder
        for command in ("run", "plan"):
            more = ["--progress", "none"] if command == "run" else []
            r = run_python(["-m", "pipeline", command, reader, *more], tmp_path)
            assert r.returncode == 1, r.stdout + r.stderr
            _nested_line(
                r.stderr,
                f"the input {out / 'x'}",
                "lies inside",
                out,
                "another run is writing as its output",
            )
        assert not (tmp_path / "res.zarr").exists()
        _, err = go_on(held)
        assert held.returncode == 0, err


def test_verify_of_a_complete_output_a_run_began_to_replace_says_so(tmp_path: Path, cli) -> None:
    """`verify` of a complete output while another process takes its lock and deletes its
    files, as `run --overwrite` does at its start: verify had said "the output was damaged
    since the run (N of its shard files gone ...)". It says a run is writing it, naming the
    run, and to verify once that run is done; the same output verifies once the lock is
    given up (here: the files put back)."""
    x = np.arange(600, dtype=np.float32).reshape(20, 30)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    chunk = out / "c" / "1" / "0"
    kept = chunk.read_bytes()
    with holding_output_lock(out) as holder:
        chunk.unlink()  # the replacing run's deletions
        rc, table, err = cli("verify", cfg)
        assert rc == 1, table + err
        line = one_line_error(err)
        assert "damaged" not in line, line
        assert line == (
            "error: a run began writing the output while it was verified, so what differs may "
            f"be that run's doing: a run is writing it now (pid {holder.pid} on "
            f"{socket.gethostname()}, since "
            + line.split(", since ", 1)[1].split(")", 1)[0]
            + "): verify it once that run is done"
        ), line
        result = pipeline.verify(str(cfg))
        assert not result.ok and result.writer is not None and result.writer["pid"] == holder.pid
        assert result.advice == "verify it once that run is done", result
    chunk.write_bytes(kept)
    rc, table, err = cli("verify", cfg)
    assert rc == 0, table + err


@pytest.mark.parametrize(
    "other",
    [
        # other stages: the blocks read after the replacement differ from this config's
        pytest.param({"stages": [{"op": "multiply", "factor": 3}]}, id="values-differ"),
        # another codec: the output as verify opened it cannot read the new files
        pytest.param({"output": {"codec": {"name": "none"}}}, id="units-unreadable"),
    ],
)
def test_verify_of_an_output_a_run_replaced_and_ended_meanwhile_says_so(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, other: dict[str, Any]
) -> None:
    """`verify` of a complete output that a real `run --overwrite` replaces, from its start to
    its end, while verify compares the blocks: the run's lock is given up by the time verify
    asks for it, so verify had said the blocks were "written otherwise since the run, or
    damaged" (or a chunk damaged), naming `run --overwrite` (h72u: `verify --all` begun before
    a `run --overwrite`, by hand). It says a run replaced the output while it was verified,
    and to verify it again; the API's result and error say the same."""
    import pipeline.reporting.verify as verifying

    x = np.arange(600, dtype=np.float32).reshape(20, 30)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    replacing = write_config(tmp_path, tmp_path / "in.zarr", out, name="other.yaml", **other)
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    plain = verifying._read
    gate = threading.Lock()
    replaced: list[bool] = []

    def read(arr: Any, sl: Any, location: Any, path: str, output: bool = False) -> Any:
        with gate:  # every block of the output is read after the replacing run has ended
            if output and not replaced:
                replaced.append(pipeline.run(str(replacing), overwrite=True).status == "complete")
        return plain(arr, sl, location, path, output=output)

    monkeypatch.setattr(verifying, "_read", read)
    rc, table, err = cli("verify", cfg, "--all")
    assert replaced == [True]
    assert rc == 1, table + err
    line = one_line_error(err)
    assert "damaged" not in line and "--overwrite" not in line, line
    assert "replaced" in line and line.endswith("verify it again"), line
    replaced.clear()
    cli("run", cfg, "--overwrite", "--progress", "none")
    if "stages" in other:
        result = pipeline.verify(str(cfg), samples=None)
        assert not result.ok and result.replaced and result.writer is None, result
        assert result.advice == "verify it again", result
    else:
        with pytest.raises(OutputError) as caught:
            pipeline.verify(str(cfg), samples=None)
        assert caught.value.status == "replaced" and caught.value.writer is None
        assert str(caught.value).endswith("verify it again"), caught.value
    assert replaced == [True]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX's")
def test_plan_of_an_incomplete_output_a_run_is_writing_says_no_interrupted_run(
    tmp_path: Path, cli
) -> None:
    """`plan` of an incomplete output whose lock a run holds (it is writing it now) had said
    "incomplete (an interrupted run); another run is writing ..." (h72u: `plan` beside a
    running `run`): no run was interrupted there. It says a run is writing it; once the lock
    is given up, an interrupted run's output again."""
    x = np.random.default_rng(5).random((8, COLS), dtype=np.float32)
    make_array(tmp_path / "in.zarr", x, (1, COLS))
    out = tmp_path / "out.zarr"
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        output={"store": str(out), "chunks": [1, COLS]},
        chunking={"block": [1, COLS]},
        cluster={"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"},
    )
    _limited_run(cfg, 8192)  # its metadata written, its first block's file refused
    assert status(out) == "incomplete"
    with holding_output_lock(out):
        rc, table, err = cli("plan", cfg)
        assert rc == 1, table + err
        row = next(line for line in table.splitlines() if "output now" in line)
        assert "interrupted" not in row, row
        assert "incomplete (a run is writing it); another run is writing" in row, row
    rc, table, err = cli("plan", cfg)
    assert rc == 0, table + err
    # the run stopped on a full file system's refusal, which its record keeps (h85f)
    assert 'incomplete (the last run stopped on "file too large' in table, table
    assert "mend that, then `run --resume` finishes it" in table, table


def test_an_existing_output_is_replaced_only_with_overwrite(tmp_path: Path, cli) -> None:
    x = np.random.default_rng(3).standard_normal((40, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (10, 30))
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    before = file_states(out)
    e = refused("run", cfg)
    assert isinstance(e, OutputError) and (e.output, e.status) == (str(out), "complete")
    assert file_states(out) == before
    # another chain over the same output, replacing it as asked
    stages = [{"op": "multiply", "factor": 3}, {"op": "add", "value": 1}]
    cfg2 = write_config(tmp_path, tmp_path / "in.zarr", out, name="b.yaml", stages=stages)
    rc, _, err = cli("run", cfg2, "--overwrite")
    assert rc == 0, err
    assert np.array_equal(read_array(out), x * 3 + 1)
    # `output.overwrite: true` in the config asks for the same
    cfg3 = write_config(
        tmp_path, tmp_path / "in.zarr", out, name="c.yaml", output={"overwrite": True}
    )
    rc, _, err = cli("run", cfg3)
    assert rc == 0, err
    assert np.array_equal(read_array(out), expected(x))


def _an_output_to_replace(tmp_path: Path, cli, ours: bool) -> tuple[np.ndarray, Path, Path]:
    """An input of 10 x 10 float64, and a config writing ``out.zarr``, which a run of it has
    written when ``ours``: (the input's values, the output, the config)."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    if ours:
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
    return x, out, cfg


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("owner", ["foreign", "ours"])
def test_overwrite_replaces_an_array_but_never_other_files_in_its_folder(
    tmp_path: Path, cli, zarr_format: int, owner: str
) -> None:
    """An output array whose folder also holds a user's notes and another array put inside
    it (helper-39): --overwrite had deleted them with the array. Refused in one line naming
    them, everything kept; once they are moved out, the array is replaced."""
    x, out, cfg = _an_output_to_replace(tmp_path, cli, owner == "ours")
    if owner != "ours":
        make_array(out, np.zeros((4, 4)), (2, 2), zarr_format=zarr_format)
    (out / "NOTES.txt").write_text("mine")
    zarr.create_array(str(out / "other"), shape=(3,), dtype="f8", zarr_format=zarr_format)
    before = file_states(out)
    e = refused("run", cfg, "--overwrite")
    assert isinstance(e, OutputError) and e.stray == ["NOTES.txt", "other"], e
    assert len(str(e).splitlines()) == 1
    assert file_states(out) == before
    (out / "NOTES.txt").unlink()
    shutil.rmtree(out / "other")
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    assert np.array_equal(read_array(out), expected(x))


@pytest.mark.parametrize("owner", ["ours", "foreign-v2-slash", "foreign-v2-dot"])
def test_overwrite_never_deletes_files_deep_in_an_arrays_chunk_folders(
    tmp_path: Path, cli, owner: str
) -> None:
    """Files of a user's inside the chunk folders of an output array (``c/notes.txt``,
    ``c/0/README``, a group put at ``c/keep``; ``0/notes/n.txt`` of a v2 array with '/'
    keys): only the names directly under the array were looked at, and --overwrite deleted
    these with it (helper-41); then names shaped like chunk keys, but none of the array's own
    (its key encoding, its dimensions, its grid: ``c/0/7/1``, ``2024/12/01``; helper-43).
    Refused in one line naming them, everything kept. Files left by a stopped write (the
    pipeline's and zarr-python's temporaries, whose name for chunk ``1.1`` is
    ``1.HEX.partial``, and tensorstore's ``KEY.__lock``: refused before, helper-44) are the
    array's: once the user's are moved out the array is replaced, and they go with it."""
    x, out, cfg = _an_output_to_replace(tmp_path, cli, owner == "ours")
    if owner == "ours":
        mine = {"c/notes.txt": out / "c" / "notes.txt", "c/0/README": out / "c" / "0" / "README"}
        zarr.open_group(str(out / "c" / "keep"), mode="w").create_array("a", shape=(3,), dtype="i4")
        mine["c/keep/zarr.json"] = out / "c" / "keep"
        # names shaped like chunk keys, but none of this 2-D array's (helper-43)
        for key in ("c/0/7/1", "c.5", "2024/12/01", "c/99/0", ".zattrs"):  # v2's name, v3 array
            mine[key] = out.joinpath(*key.split("/"))
        temporaries = [out / "c" / "0" / ".0.tmp-12-34", out / f"zarr.{'ab' * 16}.partial"]
    else:
        sep = "/" if owner.endswith("slash") else "."
        arr = zarr.create_array(
            str(out),
            shape=(4, 4),
            chunks=(2, 2),
            dtype="f8",
            zarr_format=2,
            chunk_key_encoding={"name": "v2", "separator": sep},
        )
        arr[...] = 1
        mine = {"0/notes/n.txt": out / "0" / "notes" / "n.txt"}
        temporaries = [out / f".zarray.{'ef' * 16}.partial"]
        if sep == "/":
            temporaries += [out / "0" / f"1.{'cd' * 16}.partial", out / "1" / "1.__lock"]
        else:  # zarr-python drops the last index of a '.'-separated key
            temporaries += [out / f"1.{'cd' * 16}.partial", out / "1.1.__lock"]
    for p in mine.values():
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("mine")
    for p in temporaries:
        p.write_bytes(b"half")
    before = file_states(out)
    e = refused("run", cfg, "--overwrite")
    assert isinstance(e, OutputError), e
    temp = (".partial", ".tmp-", ".__lock")
    assert set(mine) <= set(e.stray) and not any(t in k for k in e.stray for t in temp), e.stray
    assert len(str(e).splitlines()) == 1
    assert file_states(out) == before
    for p in mine.values():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    assert np.array_equal(read_array(out), expected(x))
    assert not any(p.exists() for p in temporaries)


def test_a_directory_that_is_not_zarr_is_never_deleted(tmp_path: Path, cli) -> None:
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    results = tmp_path / "results"
    results.mkdir()
    (results / "thesis.tex").write_text("years of work")
    cfg = write_config(tmp_path, tmp_path / "in.zarr", results)
    before = file_states(results)
    e = refused("run", cfg, "--overwrite")
    assert isinstance(e, OutputError) and (e.output, e.status) == (str(results), "not-zarr")
    assert file_states(results) == before


DAMAGED_METADATA = {
    "lone-zattrs": (".zattrs", b'{"title": "mine"}'),
    "truncated-zarr-json": ("zarr.json", b'{"zarr_format": 3, "node_type": "arr'),
    "zarr-json-of-another-kind": ("zarr.json", b'{"zarr_format": 3, "node_type": "table"}'),
    "zarray-not-json": (".zarray", b"\x00\x01"),
    "zgroup-of-v3": (".zgroup", b'{"zarr_format": 3}'),
    # what zarr-python cannot open either (KeyError: 'dtype'), found by helper-37
    "zarray-without-dtype": (".zarray", b'{"zarr_format": 2}'),
    "zarr-json-array-without-shape": ("zarr.json", b'{"zarr_format": 3, "node_type": "array"}'),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_METADATA))
def test_a_directory_without_readable_zarr_metadata_is_never_deleted(
    tmp_path: Path, cli, case: str
) -> None:
    """A folder whose only Zarr-looking file says nothing readable about what it holds (a lone
    ``.zattrs``, a truncated ``zarr.json``) is not taken for a Zarr array that --overwrite may
    replace: it is refused as a directory of other files, its metadata named, and kept."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    results = tmp_path / "results"
    results.mkdir()
    name, doc = DAMAGED_METADATA[case]
    (results / name).write_bytes(doc)
    (results / "thesis.tex").write_text("years of work")
    cfg = write_config(tmp_path, tmp_path / "in.zarr", results)
    before = file_states(results)
    for flags in ((), ("--overwrite",)):
        e = refused("run", cfg, *flags)
        assert isinstance(e, OutputError) and e.status == "not-zarr", e
        assert len(str(e).splitlines()) == 1
        if name != ".zattrs":
            assert f"its {name} is not readable Zarr metadata" in str(e)
    assert file_states(results) == before


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("array", ["", "sub"])
def test_a_zarr_group_of_other_arrays_is_never_replaced(
    tmp_path: Path, cli, zarr_format: int, array: str
) -> None:
    """An output path that is a Zarr group holding arrays (a results store, a subgroup) is
    refused, even with --overwrite, and left as it was; an empty group is replaced."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    out = tmp_path / "results.zarr"
    root = zarr.open_group(str(out), mode="w", zarr_format=zarr_format)
    group = root.create_group("sub") if array else root
    group.create_array("run1", shape=(3,), dtype="f8")[...] = 1
    group.create_group("exp").create_array("run2", shape=(3,), dtype="f8")[...] = 2
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out, output={"array": array})
    before = file_states(out)
    e = refused("run", cfg, "--overwrite")
    assert isinstance(e, OutputError) and e.status == "group", e
    assert "run1" in str(e) and "even with --overwrite" in str(e)
    assert file_states(out) == before
    if zarr_format == 3:  # an empty group holds nothing to lose
        shutil.rmtree(out)
        zarr.open_group(str(out), mode="w", zarr_format=3)
        if array:
            zarr.open_group(str(out), mode="r+").create_group("sub")
        rc, _, err = cli("run", cfg, "--overwrite")
        assert rc == 0, err


def test_a_v3_output_is_refused_inside_a_zarr_v2_group(tmp_path: Path, cli) -> None:
    """A v3 output written into a store whose root is a v2 group would put a zarr.json beside
    its .zgroup, and readers that try v3 first (xarray) would no longer see its v2 arrays."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    out = tmp_path / "o.zarr"
    zarr.open_group(str(out), mode="w", zarr_format=2).create_array("other", shape=(3,), dtype="f8")
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out, output={"array": "results/v"})
    before = file_states(out)
    for flags in ((), ("--overwrite",)):
        e = refused("run", cfg, *flags)
        assert isinstance(e, OutputError) and "Zarr v2 metadata (.zgroup)" in str(e), e
    assert file_states(out) == before


@pytest.mark.parametrize("where", ["root", "between"])
@pytest.mark.parametrize("doc", [".zattrs", ".zmetadata"])
def test_a_folder_of_lone_v2_documents_above_the_output_is_refused(
    tmp_path: Path, cli, doc: str, where: str
) -> None:
    """A folder above the output array with no Zarr metadata but a lone v2 document (a
    ``.zattrs`` or ``.zmetadata`` without its ``.zgroup``): the store's root (``output.array:
    v``), or a plain folder between the store's v3 root group and the array
    (``plain/v``). zarr-python makes each missing group above the array, so the run put a
    v3 ``zarr.json`` beside that document, exit 0, and every later run (plain, --overwrite,
    --resume) refused the group it had made ("holds both Zarr v3 metadata ... and Zarr v2
    metadata"). Refused before anything is written, in one line naming the folder and the
    document; without the document the run writes the group, which zarr-python lists."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    out = tmp_path / "o.zarr"
    if where == "root":
        folder, array = out, "v"
        out.mkdir()
    else:
        folder, array = out / "plain", "plain/v"
        zarr.open_group(str(out), mode="w", zarr_format=3)
        folder.mkdir()
    (folder / doc).write_text('{"zarr_consolidated_format": 1, "metadata": {}}')
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out, output={"array": array})
    before = file_states(out)
    for flags in ((), ("--overwrite",)):
        e = refused("run", cfg, *flags)
        assert isinstance(e, OutputError) and e.group == str(folder), e
        assert f"{folder} holds Zarr v2 metadata ({doc}) and no zarr.json" in str(e), e
    assert file_states(out) == before and not (folder / "zarr.json").exists()
    (folder / doc).unlink()
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    assert array in dict(zarr.open_group(str(out), mode="r").members(max_depth=None))


def _blocker(out: Path, kind: str) -> str:
    """Put in ``out`` (an output store) what nothing can be written under: a Zarr array
    ``keep`` (v3 or v2, written by zarr-python, with data), the store's root an array, or a
    file ``keep``; the blocking node's path in the store."""
    data = np.arange(6, dtype=np.float64)
    if kind == "file":
        out.mkdir()
        (out / "keep").write_text("mine")
        return "keep"
    if kind == "root-array":
        make_array(out, data, (3,))
        return ""
    make_array(out, data, (3,), zarr_format=2 if kind == "v2-array" else 3, name="keep")
    if kind == "damaged":  # its zarr.json cut short (helper-38: written under, left so)
        meta = out / "keep" / "zarr.json"
        meta.write_bytes(meta.read_bytes()[:40])
    return "keep"


@pytest.mark.parametrize("array", ["keep/v", "keep/g/v"])
@pytest.mark.parametrize("kind", ["array", "v2-array", "root-array", "file", "damaged"])
def test_an_output_under_an_array_or_a_file_is_refused_before_anything_is_written(
    tmp_path: Path, kind: str, array: str
) -> None:
    """``output.array: keep/v`` where ``keep`` is a Zarr array (or the store's root is one, or
    ``keep`` is a file): nothing can be written under it, and the run failed after taking the
    lock, with zarr-python's ValueError (or a NotADirectoryError), leaving its run record
    behind. Refused in one line naming the node in the way, with or without --overwrite."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    out = tmp_path / "out.zarr"
    here = _blocker(out, kind)
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out, output={"array": array})
    before = file_states(out)
    node = {"array": "array", "root-array": "array", "v2-array": "v2 array", "file": "file"}
    node["damaged"] = "damaged"
    for flags in ((), ("--overwrite",)):
        e = refused("run", cfg, *flags)
        assert isinstance(e, OutputError), e
        assert (e.output, e.status) == (str(out / array), "blocked")
        assert (e.blocking, e.node) == (str(out / here) if here else str(out), node[kind])
        assert f"{e.blocking} is a" in str(e)
    assert file_states(out) == before


def test_an_output_that_is_a_file_is_refused_and_kept(tmp_path: Path) -> None:
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    out = tmp_path / "out.zarr"
    _blocker(out, "file")
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out, output={"array": "keep"})
    before = file_states(out)
    for flags in ((), ("--overwrite",)):
        e = refused("run", cfg, *flags)
        assert isinstance(e, OutputError), e
        assert (e.status, e.blocking, e.node) == ("blocked", str(out / "keep"), "file")
        assert "never replaces it" in str(e)
    assert file_states(out) == before


@pytest.mark.parametrize("command", ["run", "generate"])
def test_a_store_that_is_a_link_to_nothing_is_refused_naming_its_target(
    tmp_path: Path, cli, command: str
) -> None:
    """h57f: an output.store (or a generated input.store) that is a symbolic link to a path
    that does not exist had been refused as "a file, not a Zarr array", which `ls` shows it
    is not, with the fix to remove it. The line names the link, its target and the fixes;
    nothing is written; once that folder is made, the same command writes there (generate's
    zarr-python, which replaces an array at the store's root by deleting the root folder,
    had failed on the link: "a store answered OSError: Cannot call rmtree on a symbolic
    link"), and generating again replaces what it made there, the link kept."""
    x = np.arange(100, dtype=np.float32).reshape(10, 10)
    target = tmp_path / "elsewhere" / "store.zarr"
    link = tmp_path / "link.zarr"
    link.symlink_to(target)
    if command == "run":
        make_array(tmp_path / "in.zarr", x, (5, 10))
        cfg = write_config(tmp_path, tmp_path / "in.zarr", link)
    else:
        generate = {"shape": [10, 10], "dtype": "float32", "chunks": [5, 10]}
        cfg = generated_config(tmp_path, generate, input={"store": str(link)})
    setting = "output" if command == "run" else "input"
    for flags in ((), ("--overwrite",)) if command == "run" else ((),):
        e = refused(command, cfg, *flags)
        assert isinstance(e, OutputError if command == "run" else InputError), e
        assert (e.status, e.blocking, e.node) == ("blocked", str(link), "dangling")
        assert f"{link} is a symbolic link to {target}, which does not exist" in str(e), e
        assert "a file" not in str(e) and f"another {setting}.store" in str(e), e
    assert link.is_symlink() and not (tmp_path / "elsewhere").exists()
    target.mkdir(parents=True)
    for _ in range(2 if command == "generate" else 1):
        rc, _, err = cli(command, cfg)
        assert rc == 0, err
        assert link.is_symlink() and (target / "zarr.json").is_file()
    if command == "run":
        assert np.array_equal(read_array(target), expected(x))
    else:
        assert read_array(link).shape == (10, 10)


@pytest.mark.parametrize("generated", [False, True], ids=["input", "generated-input"])
@pytest.mark.parametrize("command", ["run", "plan", "verify"])
def test_an_input_store_that_is_a_link_to_nothing_is_named_as_one(
    tmp_path: Path, command: str, generated: bool
) -> None:
    """An input.store that is a symbolic link to a path that does not exist (a disk not
    mounted, a dataset not installed) had been called a store that does not exist, the line
    naming `pipeline generate` to make it where the config describes it, which refuses the
    link. Refused in one line naming the link, its target and the fixes (h72c); nothing
    is written."""
    target = tmp_path / "disk" / "in.zarr"
    link = tmp_path / "in.zarr"
    link.symlink_to(target)
    if generated:
        cfg = generated_config(tmp_path, {"shape": [10, 10], "chunks": [5, 10]})
    else:
        cfg = write_config(tmp_path, link, tmp_path / "out.zarr")
    e = refused(command, cfg)
    assert isinstance(e, InputError) and e.reason == "dangling link", e
    assert str(e) == (
        f"input store {link} is a symbolic link to {target}, which does not exist (a disk "
        "not mounted, a dataset not installed?): make its target there, mend the link, or "
        "fix input.store"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "run.yaml"]


@pytest.mark.parametrize("kind", ["array", "v2-array", "file", "damaged"])
def test_generate_under_an_array_or_a_file_is_refused(tmp_path: Path, kind: str) -> None:
    """``input.generate`` into ``keep/x`` under a Zarr array or a file: refused in one line
    (it was zarr-python's ValueError, or a NotADirectoryError), the store as it was."""
    store = tmp_path / "gen.zarr"
    _blocker(store, kind)
    cfg = write_config(
        tmp_path,
        store,
        tmp_path / "out.zarr",
        input={"array": "keep/x", "generate": {"shape": [10, 10]}},
    )
    before = file_states(store)
    e = refused("generate", cfg, "--progress", "none")
    assert isinstance(e, InputError), e
    assert (e.input, e.status) == (str(store / "keep" / "x"), "blocked")
    assert e.blocking == str(store / "keep")
    assert file_states(store) == before


@pytest.mark.parametrize("between", ["", "plain", "new"])
@pytest.mark.parametrize("command", ["run", "generate"])
@pytest.mark.parametrize("kind", ["array", "v2-array", "root-array"])
def test_a_store_whose_root_lies_inside_an_arrays_folder_is_refused(
    tmp_path: Path, command: str, kind: str, between: str
) -> None:
    """h54c: ``output.store`` (or a generated ``input.store``) a folder inside a Zarr array's
    folder (``arr.zarr/sub``, or ``grp.zarr/keep/sub`` with ``keep`` an array of the group),
    its ``array`` ''. The same path given as ``store`` and ``array`` was refused ("only a
    group holds arrays"), but this one had been written into the array's folder, exit 0.
    Refused in one line naming the array, before anything is written. h55a: so is one with
    a folder between the array's and the store's (``arr.zarr/plain/sub``): a plain folder
    of no Zarr metadata (``between`` 'plain'), or one not made yet ('new'), which had ended
    the climb: written into the array's folder, exit 0."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    outer = tmp_path / "outer.zarr"
    here = _blocker(outer, kind)
    array = outer / here if here else outer
    store = array / between / "sub" if between else array / "sub"
    if between == "plain":
        (array / between).mkdir()
    node = {"array": "array", "root-array": "array", "v2-array": "v2 array"}[kind]
    before = file_states(outer)
    if command == "run":
        cfg = write_config(tmp_path, tmp_path / "in.zarr", store)
        e = refused("run", cfg, "--progress", "none")
        assert isinstance(e, OutputError), e
        assert (e.output, e.status, e.blocking, e.node) == (str(store), "blocked", str(array), node)
    else:
        gen = {"array": "", "generate": {"shape": [10, 10]}}
        cfg = write_config(tmp_path, store, tmp_path / "out.zarr", input=gen)
        e = refused("generate", cfg, "--progress", "none")
        assert isinstance(e, InputError), e
        assert (e.input, e.status, e.blocking, e.node) == (str(store), "blocked", str(array), node)
    assert f"{array} is a Zarr" in str(e) and "only a group holds arrays" in str(e), e
    assert file_states(outer) == before and not store.exists()


def test_generate_never_replaces_data_it_did_not_create(tmp_path: Path, cli) -> None:
    """`generate` writes an input; pointed at existing data by mistake, it must refuse."""
    x = np.arange(100, dtype=np.float32).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"store": str(tmp_path / "in.zarr"), "generate": {"shape": [10, 10]}},
    )
    before = file_states(tmp_path / "in.zarr")
    e = refused("generate", cfg, "--progress", "none")
    assert isinstance(e, InputError)
    assert (e.input, e.status) == (str(tmp_path / "in.zarr"), "foreign")
    assert file_states(tmp_path / "in.zarr") == before


def test_generate_again_never_deletes_files_put_in_its_input(tmp_path: Path, cli) -> None:
    """`generate` over an input it made replaces the array; files put into the array's folder
    since (a user's notes, a folder of their own) are refused in one line, kept: zarr's
    ``create_array(overwrite=True)`` had deleted them with exit 0. An OS file goes with it."""
    store = tmp_path / "gen.zarr"

    def config(seed: int) -> Path:
        gen = {"shape": [10, 10], "chunks": [5, 10], "seed": seed}
        return write_config(tmp_path, store, tmp_path / "out.zarr", input={"generate": gen})

    rc, _, err = cli("generate", config(0), "--progress", "none")
    assert rc == 0, err
    (store / "notes.txt").write_text("mine")
    (store / "mine").mkdir()
    (store / "mine" / "a.txt").write_text("mine too")
    before = file_states(store)
    e = refused("generate", config(1), "--progress", "none")
    assert isinstance(e, InputError), e
    assert (e.input, e.status, e.stray) == (str(store), "stray", ["mine", "notes.txt"])
    assert "never deletes other files" in str(e)
    assert file_states(store) == before
    (store / "notes.txt").unlink()
    (store / "mine" / "a.txt").unlink()
    (store / "mine").rmdir()
    (store / ".DS_Store").write_bytes(b"finder")
    rc, _, err = cli("generate", config(1), "--progress", "none")
    assert rc == 0, err


# --------------------------------------------------------------------------------------------
# 4. The input is read-only.


def _input_and_config(tmp_path: Path) -> tuple[np.ndarray, Path]:
    x = np.random.default_rng(4).standard_normal((64, 50)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 50), shards=(16, 50))
    return x, write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")


def test_the_input_is_untouched(tmp_path: Path, cli) -> None:
    x, cfg = _input_and_config(tmp_path)
    before = file_states(tmp_path / "in.zarr")
    time.sleep(0.01)  # a write would show in the modification times
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert file_states(tmp_path / "in.zarr") == before  # names, mtimes, inodes, bytes
    assert np.array_equal(read_array(tmp_path / "out.zarr"), expected(x))


@contextlib.contextmanager
def _mounted(args: list[str], target: Path) -> Iterator[None]:
    """``mount ARGS TARGET`` for the test, or a skip that says why it cannot be done here."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    r = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here (needs root): {r.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_the_input_on_a_read_only_file_system_is_enough(tmp_path: Path, cli) -> None:
    """The input is opened read-only: a run succeeds when any write to it would fail
    (a read-only bind mount refuses writes even to root)."""
    x, cfg = _input_and_config(tmp_path)
    src = tmp_path / "in.zarr"
    with _mounted(["--bind", str(src)], src):
        r = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(src)], capture_output=True, text=True
        )
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {r.stderr.strip()}")
        with pytest.raises(OSError):
            (src / "probe").write_text("x")  # it really is read-only
        rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), expected(x))


@pytest.mark.parametrize("where", ["equal", "inside", "containing"])
def test_an_output_overlapping_the_input_is_refused(tmp_path: Path, cli, where: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    x = np.arange(600, dtype=np.float32).reshape(20, 30)
    make_array(data / "in.zarr", x, (5, 30))
    out = {"equal": data / "in.zarr", "inside": data / "in.zarr" / "out", "containing": data}
    cfg = write_config(tmp_path, data / "in.zarr", out[where])
    before = file_states(data)
    e = refused("run", cfg, "--overwrite")
    assert isinstance(e, OutputError)
    assert e.relation == {"equal": "is", "inside": "is inside", "containing": "contains"}[where]
    # the fix fits each relation: an output around the input had been told to be "outside" it
    assert str(e).endswith(
        "choose an output.store apart from the input's store (not it, not inside it, "
        "not a folder that holds it)"
    ), e
    assert (e.output, e.input) == (os.path.realpath(out[where]), os.path.realpath(data / "in.zarr"))
    assert file_states(data) == before  # nothing written, nothing created


@pytest.mark.parametrize("where", ["equal", "inside", "containing", "summary", "generated"])
def test_an_output_overlapping_the_input_through_a_bind_mount_is_refused(
    tmp_path: Path, where: str
) -> None:
    """The input's folder reached under another path that no link explains (a bind mount of
    the folder holding it, as a container mounts one host folder at two places): the output
    there is the input store all the same. Compared by path alone, `run --overwrite` had
    deleted the input's chunks and metadata and written its own there (h65d); a summary
    file written over its zarr.json, and a generated input, likewise."""
    data = tmp_path / "data"
    data.mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    x = np.arange(600, dtype=np.float32).reshape(20, 30)
    if where == "generated":  # not there yet: `run` would make it, then write over it
        cfg = generated_config(
            tmp_path,
            {"shape": [20, 30], "when_missing": True},
            input={"store": str(data / "in.zarr")},
            output={"store": str(mnt / "in.zarr")},
        )
    else:
        make_array(data / "in.zarr", x, (5, 30))
        out = {"equal": mnt / "in.zarr", "inside": mnt / "in.zarr" / "out", "containing": mnt}
        cfg = write_config(tmp_path, data / "in.zarr", out.get(where, tmp_path / "out.zarr"))
    before = file_states(data)
    with _mounted(["--bind", str(data)], mnt):
        if where == "summary":
            e = refused("run", cfg, "--summary-json", str(mnt / "in.zarr" / "zarr.json"))
            assert isinstance(e, ConfigError) and e.option == "--summary-json", e
            assert e.store == os.path.realpath(data / "in.zarr"), e
        else:
            e = refused("run", cfg, "--overwrite")
            assert isinstance(e, OutputError), e
            assert e.relation == {"containing": "contains", "inside": "is inside"}.get(where, "is")
            assert e.input == os.path.realpath(data / "in.zarr"), e
            assert "(reached under another path, which no link explains: a bind mount" in str(e)
    assert file_states(data) == before  # the input untouched, nothing created beside it


def _input_store_with_room(data: Path, case: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An input store in ``data`` and an output written into it (its ``input`` and
    ``output`` sections): 'sibling', an array beside the input's in its consolidated v3
    group; 'store-inside', an output store in a folder of the input store; 'dataset', beside
    an xarray Dataset's group ``a/b`` (a group ``a/c`` of its own); 'array-path', the output
    store above the input's whose ``output.array`` goes into the input store."""
    import warnings

    src = data / "in.zarr"
    if case == "dataset":
        import xarray as xr

        ds = xr.Dataset(
            {"v": (("y", "x"), np.arange(16, dtype="f4").reshape(4, 4))},
            coords={"x": np.arange(4.0)},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr's: v3 consolidated metadata is no spec yet
            ds.to_zarr(str(src), group="a/b", zarr_format=3)
        return {"store": str(src), "array": "a/b/v"}, {"store": str(src), "array": "a/c/w"}
    group = zarr.open_group(str(src), mode="w", zarr_format=3)
    v = group.create_array("v", shape=(4, 4), dtype="f4", chunks=(2, 2))
    v[...] = np.arange(16.0).reshape(4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's: v3 consolidated metadata is no spec yet
        zarr.consolidate_metadata(str(src))
    output = {
        "sibling": {"store": str(src), "array": "w"},
        "store-inside": {"store": str(src / "sub")},
        "array-path": {"store": str(data), "array": "in.zarr/w"},
    }[case]
    return {"store": str(src), "array": "v"}, output


@pytest.mark.parametrize("flag", ["", "--overwrite", "--resume"])
@pytest.mark.parametrize("case", ["sibling", "store-inside", "dataset", "array-path"])
def test_an_output_in_the_input_s_store_is_refused_and_the_input_kept(
    tmp_path: Path, case: str, flag: str
) -> None:
    """An output anywhere in the store ``input.store`` names, beside the input array or its
    Dataset's group (review 41: it ran, writing an array into the input's store and its
    consolidated ``zarr.json`` again to list it), is refused in one line naming the input's
    store and the fix, with every flag, before anything is written: the input's files the
    same bytes, inodes and modification times, and nothing added."""
    data = tmp_path / "data"
    data.mkdir()
    source, out = _input_store_with_room(data, case)
    cfg = write_config(tmp_path, "", "", input=source, output=out)
    before = file_states(data)
    e = refused("run", cfg, *([flag] if flag else []))
    assert isinstance(e, OutputError), e
    assert e.input == os.path.realpath(data / "in.zarr")
    assert e.relation in ("is", "is inside"), e
    assert "input store" in str(e) and "output.store apart from the input's store" in str(e), e
    assert file_states(data) == before
    with pytest.raises(OutputError):  # the Python API: the same check
        pipeline.run(cfg, overwrite=True)
    with pytest.raises(OutputError):
        pipeline.run(cfg, resume=True)
    assert file_states(data) == before


@pytest.mark.parametrize("where", ["equal", "inside", "containing"])
def test_an_output_overlapping_the_input_through_a_symlink_is_refused(
    tmp_path: Path, where: str
) -> None:
    """An output.store that is a link to the input's store (``link.zarr``), lies in a link
    to it (``link.zarr/out``), or is a link to the folder holding it (``up``, which
    ``--overwrite`` would clear): the same overlap as by the input's own paths, compared
    resolved, and refused before anything is written, its relation as for those paths."""
    data = tmp_path / "data"
    data.mkdir()
    x = np.arange(600, dtype=np.float32).reshape(20, 30)
    make_array(data / "in.zarr", x, (5, 30))
    (tmp_path / "link.zarr").symlink_to(data / "in.zarr", target_is_directory=True)
    (tmp_path / "up").symlink_to(data, target_is_directory=True)
    out = {
        "equal": tmp_path / "link.zarr",
        "inside": tmp_path / "link.zarr" / "out",
        "containing": tmp_path / "up",
    }[where]
    cfg = write_config(tmp_path, data / "in.zarr", out)
    before = file_states(data)
    e = refused("run", cfg, "--overwrite")
    assert isinstance(e, OutputError), e
    assert e.relation == {"equal": "is", "inside": "is inside", "containing": "contains"}[where]
    assert e.input == os.path.realpath(data / "in.zarr"), e
    assert file_states(data) == before


@dataclass
class Killed:
    """A run of many one-row blocks killed (SIGKILL) part way, in ``d``: its config, input
    (``d/in.zarr``, never touched after), the output as the kill left it
    (``d/killed.snapshot``; :meth:`restore` puts it back at ``d/out.zarr``), and ``x``."""

    d: Path
    cfg: Path
    x: np.ndarray

    @property
    def out(self) -> Path:
        return self.d / "out.zarr"

    def restore(self) -> None:
        shutil.rmtree(self.d / "elsewhere", ignore_errors=True)
        if self.out.is_symlink():
            self.out.unlink()
        copy_store(self.d / "killed.snapshot", self.out)


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Killed:
    d = tmp_path_factory.mktemp("killed")
    out = d / "out.zarr"
    cfg = _blocks_config(d)

    def prepare(rows: int) -> np.ndarray:
        shutil.rmtree(out, ignore_errors=True)
        return many_blocks_input(d / "in.zarr", rows, cols=COLS)

    _, x = killed_midway(cfg, out, prepare, 400, cwd=d)
    copy_store(out, d / "killed.snapshot")
    return Killed(d, cfg, x)


def _outside_c(files: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if not k.startswith("c" + os.sep)}


def test_a_plain_run_over_another_configs_interrupted_output_says_no_resume_it_did_not_ask(
    killed: Killed, cli
) -> None:
    """h87e: after Ctrl-C, the config edited (``factor: 5`` -> ``6``) and a plain ``run`` of
    it: the line had said "cannot resume ...: the stages changed ...; resume with the same
    config and input", a resume the user had not asked for. It says the output holds an
    interrupted run of another config, what changed, and both fixes; `run --resume`'s own
    line is as it was; nothing written. Each fix then works: the first config's resume
    finishes it, NumPy's values."""
    killed.restore()
    stages = [{**STAGES[0], "factor": 6}, *STAGES[1:]]
    other = _blocks_config(killed.d, name="factor6.yaml", stages=stages)
    before = stored_files(killed.out)
    rc, _, err = cli("run", other, "--progress", "none")
    line = one_line_error(err).removeprefix("error: ")
    assert rc == 1 and line.startswith(
        f"{killed.out} holds an interrupted run of another config: the stages changed (were "
        "multiply(factor=5) "
    ), line
    assert "multiply(factor=6)" in line and "cannot resume" not in line, line
    assert line.endswith(
        "since that run; `run --resume` with that run's config and input resumes it, or "
        "`run --overwrite` starts over"
    ), line
    e = refused("run", other)
    assert isinstance(e, OutputError), e
    assert (e.output, e.status, e.changed) == (str(killed.out), "incomplete", ["stages"]), e
    rc, _, err = cli("run", other, "--resume", "--progress", "none")  # its own line, as it was
    line = one_line_error(err)
    assert rc == 1 and f"cannot resume {killed.out}: the stages changed" in line, line
    assert line.endswith(
        "resume with the same config and input, or `run --overwrite` to start over"
    )
    assert stored_files(killed.out) == before
    rc, _, err = cli("run", killed.cfg, "--resume", "--progress", "none")
    assert rc == 0 and status(killed.out) == "complete", err
    assert np.array_equal(read_array(killed.out), expected(killed.x), equal_nan=True)


def test_an_output_whose_zarr_json_was_removed_is_known_by_its_run_record(
    killed: Killed, cli
) -> None:
    """h87e: ``rm out.zarr/zarr.json``. Of an interrupted output, whose run record is there,
    every command names the remains and `run --overwrite` starts over (NumPy's values); of a
    complete one, whose record a complete run keeps no more, nothing says whose chunks they
    are: every command names the chunks whose metadata is gone, and nothing is deleted (the
    line had said only "other files (c), not a Zarr array or group")."""
    killed.restore()
    (killed.out / "zarr.json").unlink()
    assert (killed.out / ".pipeline" / "run.json").is_file()
    for args in ((), ("--resume",)):
        rc, _, err = cli("run", killed.cfg, *args, "--progress", "none")
        line = one_line_error(err)
        assert rc == 1 and f"{killed.out} holds the remains of an output" in line, line
        assert "`run --overwrite` starts over" in line, line
    rc, _, err = cli("run", killed.cfg, "--overwrite", "--progress", "none")
    assert rc == 0 and status(killed.out) == "complete", err
    assert np.array_equal(read_array(killed.out), expected(killed.x), equal_nan=True)
    assert not (killed.out / ".pipeline").exists()  # a complete run keeps no record
    (killed.out / "zarr.json").unlink()
    before = stored_files(killed.out)
    said = (
        f"{killed.out} is a directory that holds other files (c), chunks of an array whose "
        "metadata (zarr.json) is gone, and no run record there says this pipeline wrote them"
    )
    runs = [("run", killed.cfg, *flags, "--progress", "none") for flags in ((), ("--resume",))]
    for args in (
        *runs,
        ("run", killed.cfg, "--overwrite", "--progress", "none"),
        ("verify", killed.cfg),
    ):
        rc, _, err = cli(*args)
        line = one_line_error(err)
        assert rc == 1 and said in line, line
    assert stored_files(killed.out) == before


def test_a_resume_over_a_chunk_folder_linked_into_the_input_is_refused(killed: Killed, cli) -> None:
    """An interrupted output whose ``c`` is a symbolic link into the input's store (``rm -rf
    out.zarr/c && ln -s in.zarr/c out.zarr/c``): ``run --resume`` wrote the output's chunks
    through it, over 1014 of the input's 1024, then said the input was "rewritten by another
    program" (h73a). Refused before anything is written, in one line naming the link, where
    it leads and the fix; the input's every file byte for byte as it was, and the output's."""
    killed.restore()
    inp = killed.d / "in.zarr"
    shutil.rmtree(killed.out / "c")
    (killed.out / "c").symlink_to(inp / "c", target_is_directory=True)
    before, out_before = stored_files(inp), _outside_c(stored_files(killed.out))
    rc, _, err = cli("run", killed.cfg, "--resume", "--progress", "none")
    line = one_line_error(err)
    assert rc != 0 and stored_files(inp) == before, err
    assert f"{killed.out / 'c'} is a symbolic link to {os.path.realpath(inp / 'c')}" in line
    assert "inside the input store" in line and "remove that link" in line, line
    e = refused("run", killed.cfg, "--resume")
    assert isinstance(e, OutputError) and e.relation == "linked", e
    assert e.link == str(killed.out / "c") and e.target == os.path.realpath(inp / "c"), e
    # --overwrite too says so (it would remove the link, not follow it: refused all the same)
    e = refused("run", killed.cfg, "--overwrite")
    assert isinstance(e, OutputError) and e.relation == "linked", e
    assert stored_files(inp) == before
    assert _outside_c(stored_files(killed.out)) == out_before  # no output file written


def test_a_resume_over_a_chunk_folder_linked_to_another_folder_completes(
    killed: Killed, cli
) -> None:
    """The output's ``c`` moved to another folder (another disk) behind a link, the input
    nowhere near: ``run --resume`` finishes it through the link, NumPy's values."""
    killed.restore()
    (killed.out / "c").rename(killed.d / "elsewhere")
    (killed.out / "c").symlink_to(killed.d / "elsewhere", target_is_directory=True)
    rc, _, err = cli("run", killed.cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    assert status(killed.out) == "complete"
    assert (killed.out / "c").is_symlink()
    assert np.array_equal(read_array(killed.out), expected(killed.x), equal_nan=True)


def test_a_resume_looks_inside_a_chunk_folder_linked_elsewhere(killed: Killed, cli) -> None:
    """The output's ``c`` moved elsewhere behind a link (which a resume writes through), and
    a chunk's file in the folder it leads to a link to a copy of it: a resume is refused as
    for such a link in the output itself, naming it by its path in the output, before
    anything is written (the check had not looked inside the linked folder, h84e); with the
    link removed, it finishes, NumPy's values."""
    killed.restore()
    elsewhere = killed.d / "elsewhere"
    (killed.out / "c").rename(elsewhere)
    (killed.out / "c").symlink_to(elsewhere, target_is_directory=True)
    chunk = next(p for p in sorted(elsewhere.rglob("*")) if p.is_file())
    copy = killed.d / "copy-of-a-chunk"
    shutil.copyfile(chunk, copy)
    chunk.unlink()
    chunk.symlink_to(copy)
    before = stored_files(elsewhere)
    rc, _, err = cli("run", killed.cfg, "--resume", "--progress", "none")
    line = one_line_error(err)
    shown = killed.out / "c" / chunk.relative_to(elsewhere)
    assert rc != 0 and f"{shown} is a symbolic link to {copy}" in line, err
    assert stored_files(elsewhere) == before
    chunk.unlink()
    rc, _, err = cli("run", killed.cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    assert np.array_equal(read_array(killed.out), expected(killed.x), equal_nan=True)


def _refused_through_link(
    cli: Any,
    cfg: Path,
    link: Path,
    kept: Path,
    watched: Path,
    check: Callable[[str], None],
    *,
    moved: bool = False,
) -> None:
    """``link``, a folder of one of ``cfg``'s stores, made a symbolic link to ``kept``, a
    folder of the other (``link``'s own folder moved there first where ``moved``): ``run
    --overwrite`` and ``run --resume`` are each refused, ``check`` given its one-line error,
    and ``watched``'s files are byte for byte as they were before."""
    if moved:
        link.rename(kept)
    link.symlink_to(kept, target_is_directory=True)
    before = stored_files(watched)
    for flag in ("--overwrite", "--resume"):
        rc, _, err = cli("run", cfg, flag, "--progress", "none")
        line = one_line_error(err)
        assert rc != 0, err
        check(line)
        assert stored_files(watched) == before


def test_an_input_folder_linked_into_the_output_is_refused(tmp_path: Path, cli) -> None:
    """The reverse: the input's ``c`` a link to the output's chunk folder (the input's
    chunks kept there, as the output's chunks of the same names): ``--overwrite`` deleted
    them with the output and wrote its own there, and a resume would write the output's
    chunks there too. Refused before anything is written, the input as it was."""
    x = np.arange(40 * 40, dtype=np.float32).reshape(40, 40)
    make_array(tmp_path / "in.zarr", x, (40, 10))
    out = tmp_path / "out.zarr"
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", out, output={"store": str(out), "chunks": [40, 10]}
    )
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    shutil.rmtree(out / "c")

    def check(line: str) -> None:
        assert f"{tmp_path / 'in.zarr' / 'c'} is a symbolic link to {out / 'c'}" in line, line
        assert "a folder of the input linked into the output" in line, line

    _refused_through_link(cli, cfg, tmp_path / "in.zarr" / "c", out / "c", out, check, moved=True)
    assert np.array_equal(read_array(tmp_path / "in.zarr"), x)


def _small_dataset() -> Any:
    """A Dataset of one variable ``v`` (float32, 4 x 3, ``units``) on the coordinate ``t``,
    with a title: the smallest a Dataset output's tests need (skips without xarray)."""
    xr = pytest.importorskip("xarray")
    return xr.Dataset(
        {"v": (("t", "y"), np.arange(12, dtype=np.float32).reshape(4, 3), {"units": "K"})},
        coords={"t": np.arange(4)},
        attrs={"title": "x"},
    )


def _dataset_run(tmp_path: Path, cli: Any, ds: Any) -> tuple[Path, Path, Path]:
    """``ds`` written by xarray as ``in.zarr`` (Zarr v3, consolidated) and its ``v`` run
    into ``out.zarr``: the two stores and the config file."""
    inp, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        ds.to_zarr(inp, zarr_format=3, consolidated=True)
    cfg = write_config(tmp_path, inp, out, input={"store": str(inp), "array": "v"})
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    return inp, out, cfg


def test_a_dataset_output_whose_group_document_is_gone_names_the_fix_that_works(
    tmp_path: Path, cli
) -> None:
    """h84e: a complete Dataset output whose group's ``zarr.json`` was removed: `run`, `plan`
    and `verify` had named its consolidated metadata as gone and `run --resume` as the fix,
    which then failed in zarr's consolidation with a traceback's line (``could not find
    zarr.json``). The group's document gone is an edit of the output's metadata: each names
    it, and `run --overwrite`, which then writes a Dataset xarray opens."""
    xr = pytest.importorskip("xarray")
    _, out, cfg = _dataset_run(tmp_path, cli, _small_dataset())
    (out / "zarr.json").unlink()
    said = f"the group document of {out} is gone"
    for args in (("run",), ("run", "--resume"), ("verify",)):
        rc, _, err = cli(*args, cfg, "--progress", "none") if args[0] == "run" else cli(*args, cfg)
        line = one_line_error(err)
        assert rc == 1 and said in line, (args, line)
        assert line.endswith(
            "`run --overwrite` writes it again (`pipeline verify` says what differs)"
        ), line
    rc, out_text, _ = cli("plan", cfg)
    assert rc == 0 and said in out_text, out_text
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    rc, _, err = cli("verify", cfg, "--all")
    assert rc == 0, err
    got = xr.open_zarr(out)
    assert got.attrs["title"] == "x" and got["v"].shape == (4, 3)


@pytest.mark.parametrize("linked", ["output", "input", "input-chunks"])
def test_a_dataset_s_coordinate_linked_across_the_stores_is_refused(
    tmp_path: Path, cli, linked: str
) -> None:
    """An output Dataset (a group xarray reads, its coordinates written again by every run
    of it) whose coordinate ``t`` is a link into the input's, or an input whose ``t`` (or
    its chunk folder ``t/c``) is a link to the output's: ``--overwrite`` and ``--resume``
    of the group are refused before anything is written, naming the link; the input's
    coordinate, where it is kept, byte for byte as it was."""
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset(
        {"v": (("t", "y"), np.arange(12, dtype=np.float32).reshape(4, 3), {"units": "K"})},
        coords={"t": np.arange(4)},
    )
    inp, out, cfg = _dataset_run(tmp_path, cli, ds)
    assert (out / "t" / "zarr.json").is_file()  # the coordinate, written with the variable
    if linked == "output":  # the output's t is the input's
        link, kept = out / "t", inp / "t"
        shutil.rmtree(link)
    elif linked == "input":  # the input's t kept in the output
        link, kept = inp / "t", out / "t"
        shutil.rmtree(kept)
    else:  # the input's t/c (its chunks) the output's, the same values (h74a: --overwrite
        link, kept = inp / "t" / "c", out / "t" / "c"  # emptied it, then blamed "another
        shutil.rmtree(link)  # program")

    def check(line: str) -> None:
        assert f"{link} is a symbolic link to {kept}" in line, line

    _refused_through_link(cli, cfg, link, kept, kept, check, moved=linked == "input")
    assert link.is_symlink()


def test_of_several_links_into_the_input_the_first_by_name_is_named(tmp_path: Path) -> None:
    """h78b: an output holding seven links, each to a folder of the input, made in no order
    of their names: ``--overwrite`` is refused naming one of them, which had been the first
    the file system listed (``b`` on ext4, ``e`` on tmpfs, for the same folder); it is the
    first by name, ``a``, on any file system."""
    inp, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    made = zarr.create_array(str(inp), shape=(8,), chunks=(4,), dtype="f4")
    made[:] = np.arange(8, dtype=np.float32)
    cfg = {
        "input": {"store": str(inp)},
        "output": {"store": str(out)},
        "stages": [{"op": "multiply", "factor": 2}],
        "cluster": {"workers": 1, "threads_per_worker": 1, "protocol": "inproc", "dashboard": ""},
    }
    assert pipeline.run(cfg).status == "complete"
    for name in "dafghbe":
        (inp / f"x{name}").mkdir()
        (out / name).symlink_to(inp / f"x{name}", target_is_directory=True)
    with pytest.raises(OutputError) as info:
        pipeline.run(cfg, overwrite=True)
    e = info.value
    assert (e.relation, e.link) == ("linked", str(out / "a")), e
    assert f"{out / 'a'} is a symbolic link to {inp / 'xa'}" in str(e), e
    # and the others too, two by name and how many more (h84b: the first alone had been)
    assert f"(and so are {out / 'b'}, {out / 'd'} and 4 more)" in str(e), e


@pytest.mark.parametrize("linked", ["output", "input"])
def test_another_variable_linked_across_the_stores_is_left_alone(
    tmp_path: Path, cli, linked: str
) -> None:
    """An output Dataset that also holds the input's variable ``w`` through a link (or an
    input whose ``w`` is kept in the output group), which no run of ``v`` writes or deletes:
    ``--overwrite`` and ``--resume`` of ``v`` complete, the link kept and ``w`` byte for byte
    as it was (h74a: refused since h73a, "a run would write the output's files into the
    input's", though none goes there)."""
    xr = pytest.importorskip("xarray")
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    ds = xr.Dataset(
        {"v": (("t", "y"), x), "w": (("t", "y"), -x)},
        coords={"t": np.arange(4)},
    )
    inp, out, cfg = _dataset_run(tmp_path, cli, ds)
    if linked == "output":  # the output group shows the input's w
        link, kept = out / "w", inp / "w"
    else:  # the input's w kept in the output group
        link, kept = inp / "w", out / "w"
        link.rename(kept)
    link.symlink_to(kept, target_is_directory=True)
    before = file_states(kept)
    for flag in ("--overwrite", "--resume"):
        rc, _, err = cli("run", cfg, flag, "--progress", "none")
        assert rc == 0, err
        assert link.is_symlink() and file_states(kept) == before
    assert np.array_equal(read_array(out, "v"), expected(x))


@pytest.mark.parametrize("command", ["run", "generate"])
@pytest.mark.parametrize("where", ["inside", "containing", "same"])
def test_a_run_that_generates_its_input_refuses_an_output_over_it_first(
    tmp_path: Path, where: str, command: str
) -> None:
    """``input.generate.when_missing`` with the output in the store the input is to be made
    in, or containing it (``output.array`` omitted: the store's root), or the same store:
    refused before the input is generated (it had been generated, then refused). So is
    ``pipeline generate`` of such a config (h55a: it made the input, exit 0, where the run
    then refused it; the check had been when_missing's alone)."""
    output = {
        "inside": {"store": str(tmp_path / "in.zarr"), "array": "w"},
        "containing": {"store": str(tmp_path)},
        "same": {"store": str(tmp_path / "in.zarr")},
    }[where]
    gen = {
        "shape": [8, 8],
        "chunks": [4, 8],
        **({"when_missing": True} if command == "run" else {}),
    }
    cfg = generated_config(tmp_path, gen, output=output)
    e = refused(command, cfg, "--progress", "none")
    assert isinstance(e, OutputError), e
    assert e.relation == {"inside": "is inside", "containing": "contains", "same": "is"}[where], e
    assert not (tmp_path / "in.zarr").exists()


def test_an_output_folder_linked_to_where_the_input_is_to_be_made_is_refused_first(
    tmp_path: Path, cli
) -> None:
    """An output whose ``c`` is a link to where the input's ``c`` is to be made (the input
    gone, ``input.generate.when_missing`` to make it again): the link led nowhere, so the
    check passed it, ``run --dry-run`` said the run would go (exit 0) and ``run`` generated
    the whole input, then refused the link (h74a). Refused before the input is made, as
    ``--dry-run`` says; the link as it was."""
    cfg = generated_config(tmp_path, {"shape": [8, 8], "chunks": [4, 8], "when_missing": True})
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    inp, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    shutil.rmtree(inp)
    shutil.rmtree(out / "c")
    (out / "c").symlink_to(inp / "c", target_is_directory=True)
    for args in (("--dry-run",), ("--progress", "none")):
        rc, _, err = cli("run", cfg, "--overwrite", *args)
        line = one_line_error(err)
        assert rc == 1, err
        assert f"{out / 'c'} is a symbolic link to {inp / 'c'}, inside the input store" in line
        assert not inp.exists() and (out / "c").is_symlink(), line


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("scalar", "factor 1e+39 does not fit float32"),
        ("overflow", "stage 'square' can overflow int16"),
        ("output there", "already exists (not written by this pipeline); pass --overwrite"),
        ("block", "chunking.block"),
    ],
)
def test_a_run_that_generates_its_input_refuses_first_what_it_would_refuse_after(
    tmp_path: Path, cli, case: str, refusal: str
) -> None:
    """``run`` with ``input.generate.when_missing`` refuses, before it generates the input,
    what it would refuse once the input is there: a stage's scalar the dtype to be made
    cannot hold, an integer chain that overflows under ``integer_overflow: error``, an output
    already there without ``--overwrite``, a block that is no whole number of the input's
    shards (h60h: the whole input had been generated first, 137 GB for configs/big.yaml, then
    the run refused, where ``run --dry-run`` had refused at once). One line, nothing
    written; ``run --dry-run`` says the same."""
    gen: dict[str, Any] = {"shape": [16, 8], "chunks": [2, 8], "shards": [4, 8]}
    sections: dict[str, Any] = {}
    if case == "scalar":
        sections["stages"] = [{"op": "multiply", "factor": 1e39}]
    elif case == "overflow":
        gen["dtype"] = "int16"
        sections.update(stages=[{"op": "square"}], integer_overflow="error")
    elif case == "block":
        sections["chunking"] = {"block": [6, 8]}
    cfg = generated_config(tmp_path, {**gen, "when_missing": True}, **sections)
    if case == "output there":  # an array of the user's, not a run's
        zarr.create_array(str(tmp_path / "out.zarr"), shape=(3,), dtype="f4")[...] = 1
    kept = file_states(tmp_path / "out.zarr") if case == "output there" else None
    for dry in (["--dry-run"], []):
        rc, _, err = cli("run", cfg, "--progress", "plain", *dry)
        assert rc == 1, err
        line = one_line_error(err)
        assert refusal in line, line
        assert not (tmp_path / "in.zarr").exists(), dry
    assert kept is None or file_states(tmp_path / "out.zarr") == kept
    # the API with a cluster of the caller's, whose plan needs its workers: the chain at least
    if case in ("scalar", "overflow"):
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
            pytest.raises(pipeline.PipelineError, match=re.escape(refusal)),
        ):
            pipeline.run(str(cfg), client=client)
        assert not (tmp_path / "in.zarr").exists()
    # nothing else in the way: the same run generates the input and computes
    if case != "output there":
        fixed = generated_config(tmp_path, {**gen, "when_missing": True}, name="fixed.yaml")
        rc, _, err = cli("run", fixed, "--progress", "none")
        assert rc == 0, err
        assert status(tmp_path / "out.zarr") == "complete"


# --------------------------------------------------------------------------------------------
# 7 (end). A full disk, and NaN/inf.


def test_a_full_disk_fails_clearly_and_the_output_resumes(tmp_path: Path, cli) -> None:
    """The output on a 3 MiB file system, for an output of 8 MiB that does not compress."""
    x = np.random.default_rng(5).random((64, 32768), dtype=np.float32)
    make_array(tmp_path / "in.zarr", x, (1, 32768), compressor=None)
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "out.zarr"
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        output={"store": str(out), "codec": "none"},
        chunking={"block": [4, 32768]},
    )
    with _mounted(["-t", "tmpfs", "-o", "size=3m", "tmpfs"], disk):
        e = refused("run", cfg, "--progress", "none")
        assert isinstance(e, StoreError) and e.where.startswith(str(out)), e
        assert status(out) == "incomplete"
        assert 0 <= markers(out) < 16
        # no partial file is left: every marker holds its block's counts, every shard is whole
        for m in (out / ".pipeline" / "done").glob("*"):
            assert json.loads(m.read_text())["elements"] == 4 * 32768, m
        sizes = {p.stat().st_size for p in (out / "c").rglob("*") if p.is_file()}
        assert len(sizes) <= 1, f"partial shard files: sizes {sorted(sizes)}"
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
        e = refused("run", cfg)
        assert isinstance(e, OutputError) and e.status == "incomplete"
        # more room, then the resume finishes it
        r = subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], capture_output=True)
        assert r.returncode == 0, r.stderr
        rc, _, err = cli("run", cfg, "--resume")
        assert rc == 0, err
        assert "resuming:" in err and "no counts" not in err
        assert status(out) == "complete"
        assert np.array_equal(read_array(out), expected(x))
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name or p.name == ".pipeline"]


def test_a_full_disk_while_generating_says_to_generate_again(tmp_path: Path, cli) -> None:
    """`pipeline generate` of an input (4 MiB that does not compress) onto a 1 MiB file
    system, and `run` generating it (input.generate.when_missing): the line had said "then
    `run --resume` finishes the output", which then refused, the input being unfinished; it
    says to free space and generate it again, which then makes it whole."""
    disk = tmp_path / "disk"
    disk.mkdir()
    generate = {
        "shape": [32, 32768],
        "dtype": "float32",
        "distribution": "uniform",
        "chunks": [1, 32768],
        "shards": [1, 32768],
        "codec": {"name": "none"},
    }
    cfg = generated_config(tmp_path, generate, input={"store": str(disk / "in.zarr")})
    when_missing = generated_config(
        tmp_path,
        {**generate, "when_missing": True},
        input={"store": str(disk / "in.zarr")},
        name="when_missing.yaml",
    )
    with _mounted(["-t", "tmpfs", "-o", "size=1m", "tmpfs"], disk):
        for args in (("generate", cfg), ("run", when_missing, "--progress", "none")):
            e = refused(*args)
            assert isinstance(e, StoreError) and e.where.startswith(str(disk / "in.zarr")), e
            assert str(e).endswith("free space; then generate it again"), e
            assert "--resume" not in str(e), e
        r = subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], capture_output=True)
        assert r.returncode == 0, r.stderr
        rc, _, err = cli("run", when_missing, "--progress", "none")
        assert rc == 0, err
        assert status(tmp_path / "out.zarr") == "complete"


def _limited_run(cfg: Path, limit: int, api: bool = False) -> str:
    """``pipeline run CFG`` in a process whose files may not grow past ``limit`` bytes
    (RLIMIT_FSIZE, as ``ulimit -f`` sets it: a write past it fails with EFBIG, as a full disk's
    with ENOSPC; any user may lower it); its one line on stderr, the run refused. ``api``:
    ``pipeline.run(CFG)`` instead, its error's line."""
    import resource

    def lowered() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    call = (
        [
            "-c",
            f"import pipeline, sys\ntry: pipeline.run({str(cfg)!r})\nexcept Exception as e: "
            "sys.exit(f'error: {e}')",
        ]
        if api
        else ["-m", "pipeline", "run", str(cfg), "--progress", "none"]
    )
    r = subprocess.run(
        [sys.executable, *call],
        capture_output=True,
        text=True,
        env=env(),
        cwd=cfg.parent,
        timeout=300,
        preexec_fn=lowered,
    )
    assert r.returncode == 1, r.stderr
    return one_line_error(r.stderr)


#: What a file size limit's line says, from "writing", before what to do then.
_TOO_LARGE = (
    "(File too large): the file system, or this process's file size limit (ulimit -f), takes "
    "no file this large; raise the limit, or write to a file system that takes larger files; "
    "then "
)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX's")
def test_a_write_too_large_says_what_finishes_the_output_as_it_is_left(tmp_path: Path) -> None:
    """A run whose writes the process's file size limit stops (EFBIG, the kin of a full
    disk's ENOSPC, set as any user may), at each step: before anything is written, while the
    output is made, once it holds some blocks, while it is marked complete. Each line names
    the command that then works, and that command, run, makes the output NumPy's: the line
    had said "`run --resume` finishes the output" wherever the write came, while the output
    was made as well (nothing to resume there), and the limit's own error had been "a store
    answered OSError: [Errno 27] File too large: mend what is at that path"."""
    # rows of random values (frames of about 14 KiB) and rows of zeros (tens of bytes)
    x = np.zeros((8, COLS), np.float32)
    x[::2] = np.random.default_rng(3).random((4, COLS), dtype=np.float32)
    small = np.zeros((8, COLS), np.float32)
    out = tmp_path / "out.zarr"
    configs = {}
    for name, data in (("mixed", x), ("small", small)):
        make_array(tmp_path / f"{name}.zarr", data, (1, COLS))
        configs[name] = write_config(
            tmp_path,
            tmp_path / f"{name}.zarr",
            out,
            name=f"{name}.yaml",
            output={"store": str(out), "chunks": [1, COLS]},
            chunking={"block": [1, COLS]},
            cluster={"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"},
        )

    def finishes(name: str, *flags: str) -> None:
        r = run_python(
            ["-m", "pipeline", "run", configs[name], "--progress", "none", *flags], tmp_path
        )
        assert r.returncode == 0, r.stderr
        assert status(out) == "complete"
        assert np.array_equal(read_array(out), expected(x if name == "mixed" else small))

    # a whole run's output: its metadata's size at the end (its record and summary added)
    finishes("small")
    final = (out / "zarr.json").stat().st_size
    shutil.rmtree(out)

    # while it is marked complete: every frame is small, the metadata's last write is not
    # (the mark written through the output's held folder names its file, as a block's does)
    line = _limited_run(configs["small"], final - 100)
    assert line == (
        f"error: file too large writing {out / 'zarr.json'} {_TOO_LARGE}"
        "`run --resume` finishes the output"
    )
    assert status(out) == "incomplete" and markers(out) == 8
    made, record = (
        (out / "zarr.json").stat().st_size,
        (out / ".pipeline" / "run.json").stat().st_size,
    )
    assert record < made < final - 100
    finishes("small", "--resume")
    shutil.rmtree(out)

    # while it is made: its run record is written, its metadata is not
    line = _limited_run(configs["small"], (record + made) // 2)
    assert line == f"error: file too large writing {out} {_TOO_LARGE}`run --overwrite` starts over"
    assert not (out / "zarr.json").exists()
    line = _limited_run(configs["small"], (record + made) // 2, api=True)  # in the API's words
    assert line == (
        f"error: file too large writing {out} {_TOO_LARGE}"
        "`pipeline.run(config, overwrite=True)` starts over"
    )
    finishes("small", "--overwrite")
    shutil.rmtree(out)

    # before anything is written: its lock's first byte, or its holder's 20th (h61e: the lock
    # had been left holding 20 bytes of its holder, the run going on to fail on its record,
    # "`run --overwrite` starts over", nothing there)
    for limit in (0, 20):
        line = _limited_run(configs["small"], limit)
        assert line == (
            f"error: file too large writing {out} {_TOO_LARGE}run again: nothing was written"
        )
        assert not out.exists()  # no lock nor folder left
    finishes("small")
    shutil.rmtree(out)

    # once it holds blocks: the random rows' frames are over the limit, the zeros' are not
    line = _limited_run(configs["mixed"], 8000)
    assert re.fullmatch(
        rf"error: file too large writing {re.escape(str(out))}/c/[0246]/0 "
        + re.escape(f"{_TOO_LARGE}`run --resume` finishes the output"),
        line,
    ), line
    assert status(out) == "incomplete"
    finishes("mixed", "--resume")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX's")
def test_a_lock_that_could_not_be_written_does_not_hold_the_next_run(tmp_path: Path) -> None:
    """``pipeline.run`` twice in one process, the first with no file allowed to grow (its
    lock's write fails, EFBIG), the second once the limit is back: the first had left its lock
    file open and locked, and the second was refused, "another run is writing ... (pid ? on
    ?)"; it runs."""
    x = np.random.default_rng(4).random((4, COLS), dtype=np.float32)
    make_array(tmp_path / "in.zarr", x, (1, COLS))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        cluster={"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"},
    )
    script = (
        "import resource, pipeline\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))\n"
        "try:\n"
        f"    pipeline.run({str(cfg)!r})\n"
        "except pipeline.errors.StoreError as e:\n"
        "    print(e)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))\n"
        f"print(pipeline.run({str(cfg)!r}).status)\n"
    )
    r = run_python(["-c", script], tmp_path)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().splitlines()
    assert first.startswith(f"file too large writing {tmp_path / 'out.zarr'} "), first
    assert first.endswith("; then run again: nothing was written"), first
    assert second == "complete"
    assert np.array_equal(read_array(tmp_path / "out.zarr"), expected(x))


def test_nan_and_infinity_flow_through_and_are_counted(tmp_path: Path, cli) -> None:
    x = np.array([1.0, np.nan, np.inf, -np.inf, 1e30, -1e30, -0.0, 3.0] * 25, np.float32)
    make_array(tmp_path / "in.zarr", x, (40,))
    runs = {
        # the seed's chain: squares make every infinity positive; 1e30 overflows to +inf
        "seed": STAGES,
        # no square: infinities flip sign, and +-1e30 * -1e10 overflows float32 to -+inf
        "negate": [{"op": "multiply", "factor": -1e10}, {"op": "add", "value": 1}],
    }
    for name, stages in runs.items():
        out = tmp_path / f"{name}.zarr"
        cfg = write_config(tmp_path, tmp_path / "in.zarr", out, name=f"{name}.yaml", stages=stages)
        rc, _, err = cli("run", cfg, "--summary-json", tmp_path / f"{name}.json")
        assert rc == 0, err
        y = read_array(out)
        with np.errstate(over="ignore", invalid="ignore"):
            ref = expected(x) if name == "seed" else x * np.float32(-1e10) + np.float32(1)
        assert y.dtype == ref.dtype == np.float32
        assert np.array_equal(y, ref, equal_nan=True)
        s = json.loads((tmp_path / f"{name}.json").read_text())
        assert (s["nan"], s["posinf"], s["neginf"]) == (
            int(np.isnan(ref).sum()),
            int(np.isposinf(ref).sum()),
            int(np.isneginf(ref).sum()),
        )
        attrs = record_of(zarr.open_array(str(out), mode="r").attrs)["summary"]
        assert (attrs["nan"], attrs["posinf"], attrs["neginf"]) == (
            s["nan"],
            s["posinf"],
            s["neginf"],
        )
    seed = json.loads((tmp_path / "seed.json").read_text())
    assert seed["nan"] == 25 and seed["posinf"] == 100 and seed["neginf"] == 0
    negate = json.loads((tmp_path / "negate.json").read_text())
    assert negate["nan"] == 25 and negate["posinf"] == 50 and negate["neginf"] == 50


# --------------------------------------------------------------------------------------------
# 8. On the GPU host (skipped elsewhere).


@pytest.mark.gpu
def test_gpu_a_killed_worker_is_replaced_and_the_output_is_right(tmp_path: Path) -> None:
    """LocalCUDACluster: SIGKILL the GPU worker process mid-run; its nanny restarts it, the
    tasks rerun, the output equals NumPy's."""
    rows, cols = 400, 16384
    x = many_blocks_input(tmp_path / "in.zarr", rows, cols=cols)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        backend="gpu",
        chunking={"block": [1, cols]},
        cluster={"gpus": [0], "threads_per_worker": 2, "dashboard": ""},
    )
    proc = cli_process(cfg, cwd=tmp_path)
    try:
        n = wait_for_markers(proc, tmp_path / "out.zarr", 3)
        assert n > 0, "the run finished before its worker could be killed: enlarge the input"
        workers = [p for p in psutil.Process(proc.pid).children(True) if is_worker(p)]
        assert workers, "no worker process found"
        workers[0].kill()
        _, err = proc.communicate(timeout=300)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, err
    assert status(tmp_path / "out.zarr") == "complete"
    assert np.array_equal(read_array(tmp_path / "out.zarr"), expected(x), equal_nan=True)


def _damaged_input(tmp_path: Path, cut: bool = True) -> Path:
    """A v2 zstd input with its chunk '1.2' cut to half its bytes (``cut``: else whole, for
    :func:`_cut_chunk` later); its config."""
    import numcodecs

    x = np.random.default_rng(0).standard_normal((16, 20)).astype(np.float32)
    z = zarr.create_array(
        str(tmp_path / "in.zarr"),
        shape=x.shape,
        chunks=(4, 5),
        dtype="float32",
        zarr_format=2,
        compressors=numcodecs.Zstd(),
    )
    z[...] = x
    if cut:
        _cut_chunk(tmp_path)
    return write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")


def _cut_chunk(tmp_path: Path) -> None:
    """The input's chunk '1.2' cut to half its bytes."""
    chunk = tmp_path / "in.zarr" / "1.2"
    chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 2])


def test_verify_names_a_damaged_input_in_one_line(tmp_path: Path, cli) -> None:
    """``verify --all`` of a complete output whose input chunk was damaged since: one line
    saying the input cannot be read there and what to do, not the codec's raw error. (After
    a run that the damage stopped, verify says what `run` says: incomplete, F5.)"""
    cfg = _damaged_input(tmp_path, cut=False)
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0 and status(tmp_path / "out.zarr") == "complete", err
    _cut_chunk(tmp_path)
    rc, _, err = cli("verify", "--all", cfg)
    assert rc == 1
    line = one_line_error(err)
    e = refused("verify", "--all", cfg)
    assert line == f"error: {e}"
    assert isinstance(e, InputError) and e.store == str(tmp_path / "in.zarr")
    (r0, r1), (c0, c1) = e.region  # a region that holds chunk '1.2' (rows 4-8, columns 10-15)
    assert r0 <= 4 and r1 >= 8 and c0 <= 10 and c1 >= 15, e.region
    # the chunk zarr-python cannot read alone, by its key, as the run names it
    assert e.key == "1.2" and "input chunk '1.2'" in line, line
    # no command: `pipeline run` of a complete output reads no input, so names no chunk
    assert "restore that chunk from its source" in line and "`pipeline run`" not in line


@pytest.mark.parametrize(
    "layout", ["v2", "v3", "v3-sharded", "v2-blosc-filter", "v3-blosc-under-gzip"]
)
def test_verify_names_an_input_chunk_whose_blosc_frame_was_cut(
    tmp_path: Path, cli, layout: str
) -> None:
    """h54c: an input chunk whose Blosc frame was cut short after a complete run. c-blosc
    decodes it from whatever memory follows it, without an error, so zarr-python's read gave
    verify those bytes: it said "mismatched 1" and then "the input changed since", with `run
    --overwrite`, which stops on that chunk. verify now checks the frames as the run does and
    names the input store and the chunk's key, in one line. h55c: also a Blosc frame that is
    not the chunk's outermost codec (a v2 filter's; one under gzip, its stream whole), which
    had not been checked."""
    import numcodecs
    from zarr.codecs import BloscCodec, GzipCodec

    x = np.random.default_rng(7).standard_normal((20, 30)).astype(np.float32)
    inp = tmp_path / "in.zarr"
    if layout == "v2":
        kwargs: dict[str, Any] = {"zarr_format": 2, "compressors": numcodecs.Blosc(cname="lz4")}
    elif layout == "v2-blosc-filter":
        kwargs = {"zarr_format": 2, "filters": [numcodecs.Blosc(cname="lz4")], "compressors": None}
    elif layout == "v3-blosc-under-gzip":
        kwargs = {"zarr_format": 3, "compressors": [BloscCodec(cname="lz4"), GzipCodec()]}
    else:
        kwargs = {"zarr_format": 3, "compressors": BloscCodec(cname="lz4")}
    if layout == "v3-sharded":
        kwargs["shards"] = (10, 30)
    z = zarr.create_array(str(inp), shape=x.shape, chunks=(5, 10), dtype="float32", **kwargs)
    z[...] = x
    cfg = write_config(tmp_path, inp, tmp_path / "out.zarr")
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0 and status(tmp_path / "out.zarr") == "complete", err
    key = {"v3": "c/1/1", "v3-sharded": "c/1/0", "v3-blosc-under-gzip": "c/1/1"}.get(layout, "1.1")
    unit = inp / key
    raw = unit.read_bytes()
    if layout == "v3-blosc-under-gzip":  # the frame cut, the gzip stream around it whole
        frame = bytes(numcodecs.GZip().decode(raw))
        unit.write_bytes(bytes(numcodecs.GZip().encode(frame[: len(frame) // 2])))
    elif layout == "v3-sharded":  # the first inner chunk's frame cut, the shard's index kept
        index = np.frombuffer(raw[-(6 * 16 + 4) : -4], dtype="<u8").reshape(6, 2).copy()
        import google_crc32c

        index[0, 1] //= 2
        body = index.tobytes()
        unit.write_bytes(
            raw[: -(6 * 16 + 4)] + body + google_crc32c.value(body).to_bytes(4, "little")
        )
    else:
        unit.write_bytes(raw[: len(raw) // 2])
    line = _verify_refuses_input_chunk(cli, cfg, inp, key)
    assert "Blosc header" in line and "restore that chunk from its source" in line, line
    assert "--overwrite" not in line, line


def _verify_refuses_input_chunk(cli, cfg: Path, inp: Path, key: str) -> str:
    """Check that ``verify --all`` of ``cfg`` is refused (no "mismatched" table) in one line
    that is the InputError it raises, naming the input store ``inp`` and its unit ``key``:
    that line."""
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 1 and "mismatched" not in out, out
    line = one_line_error(err)
    e = refused("verify", "--all", cfg)
    assert line == f"error: {e}"
    assert isinstance(e, InputError) and e.store == str(inp) and e.key == key, line
    return line


def _run_over_shards(
    tmp_path: Path, cli, index_location: str, codecs: list[Any]
) -> tuple[Path, Path, np.ndarray]:
    """A complete run over a zarr-python input of 20 x 30 float32 in shards of (10, 30), six
    inner chunks of (5, 10) each, their chain ``codecs``, the index of bytes alone (no crc32c)
    at ``index_location``: (the config, the input, its values)."""
    from zarr.codecs import BytesCodec, ShardingCodec

    x = np.random.default_rng(7).standard_normal((20, 30)).astype(np.float32)
    inp = tmp_path / "in.zarr"
    with warnings.catch_warnings():  # numcodecs.* codecs are not in the spec
        warnings.simplefilter("ignore")
        zarr.create_array(
            str(inp),
            shape=x.shape,
            chunks=(10, 30),
            dtype="float32",
            serializer=ShardingCodec(
                chunk_shape=(5, 10),
                codecs=codecs,
                index_codecs=[BytesCodec()],
                index_location=index_location,
            ),
            compressors=None,
        )[...] = x
    cfg = write_config(tmp_path, inp, tmp_path / "out.zarr")
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0 and status(tmp_path / "out.zarr") == "complete", err
    return cfg, inp, x


def _edit_index(unit: Path, at_end: bool, edit: Callable[[np.ndarray, bytes], None]) -> bytes:
    """Rewrite the six-entry shard index (no crc32c) of the shard file ``unit`` as ``edit``
    changes its (offset, size) table in place, given the shard's bytes: the bytes written."""
    raw = unit.read_bytes()
    k = 6 * 16
    table = np.frombuffer(raw[-k:] if at_end else raw[:k], "<u8").reshape(6, 2).copy()
    edit(table, raw)
    index = table.tobytes()
    damaged = raw[:-k] + index if at_end else index + raw[k:]
    unit.write_bytes(damaged)
    return damaged


@pytest.mark.parametrize(
    ("index_location", "chain"), [("end", "delta"), ("start", "delta"), ("end", "bytes")]
)
def test_verify_names_an_input_shard_whose_index_points_into_itself(
    tmp_path: Path, cli, index_location: str, chain: str
) -> None:
    """h55f: a sharded input whose chain only Zarr decodes and holds no Blosc (numcodecs'
    Delta filter, uncompressed, an index of bytes alone), or one the pipeline decodes itself
    (bytes alone), one index entry moved after a complete run to point into the shard's own
    index: zarr-python reads that chunk from the index's bytes without an error, so verify
    said "mismatched" and then "the input changed since", with `run --overwrite` (which then
    stopped on that shard, the complete output lost). verify now checks the shard's index as
    the run does and names the input store and the shard's key, in one line."""
    import numcodecs.zarr3
    from zarr.codecs import BytesCodec

    with warnings.catch_warnings():  # numcodecs.* codecs are not in the spec
        warnings.simplefilter("ignore")
        codecs = [numcodecs.zarr3.Delta(dtype="<f4"), BytesCodec()][chain == "bytes" :]
    cfg, inp, _ = _run_over_shards(tmp_path, cli, index_location, codecs)
    key = "c/1/0"

    def into_itself(table: np.ndarray, raw: bytes) -> None:
        k = table.nbytes
        table[0, 0] = len(raw) - k - int(table[0, 1]) + 8 if index_location == "end" else 0

    _edit_index(inp / key, index_location == "end", into_itself)
    line = _verify_refuses_input_chunk(cli, cfg, inp, key)
    assert "shard's own index" in line and "restore that chunk from its source" in line, line
    assert "--overwrite" not in line, line


@pytest.mark.parametrize(
    ("damage", "index_location"), [("all-absent", "start"), ("overlapping", "end")]
)
def test_a_shard_index_no_writer_makes_is_named_by_run_and_verify(
    tmp_path: Path, cli, damage: str, index_location: str
) -> None:
    """h60f: an input of shards (uncompressed, an index of bytes alone: no crc32c) whose
    index, after a complete run, says every chunk is absent while the chunks' bytes are still
    stored (an index never written, or overwritten), or gives two chunks overlapping bytes:
    zarr-python reads the fill value, or the wrong bytes, without an error, and so had the
    run (its output marked complete) and verify ("mismatched 0"). Both now name the input
    store and the shard's key in one line, and the run writes nothing complete."""
    from zarr.codecs import BytesCodec

    cfg, inp, x = _run_over_shards(tmp_path, cli, index_location, [BytesCodec()])
    key = "c/1/0"
    unit = inp / key

    def damage_it(table: np.ndarray, raw: bytes) -> None:
        if damage == "all-absent":
            table[...] = 2**64 - 1
        else:  # the frame stored second starts inside the first one
            first, second = np.argsort(table[:, 0])[:2]
            table[second, 0] = table[first, 0] + 8

    damaged = _edit_index(unit, index_location == "end", damage_it)
    read = zarr.open_array(str(inp), mode="r")[10:]
    assert not np.array_equal(read, x[10:])  # zarr-python: no error, other values
    said = "every chunk is absent" if damage == "all-absent" else "overlapping bytes"
    line = _verify_refuses_input_chunk(cli, cfg, inp, key)
    assert said in line and "restore that chunk from its source" in line, line
    rc, _, err = cli("run", "--progress", "none", "--overwrite", cfg)
    line = one_line_error(err)
    assert rc != 0 and status(tmp_path / "out.zarr") != "complete", line
    assert f"input chunk {key!r} of {inp} is damaged" in line and said in line, line
    assert unit.read_bytes() == damaged  # the input kept as it is


def test_a_run_stopped_on_a_damaged_input_chunk_is_said_so_until_it_is_mended(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """h85f: a run that stopped on a damaged input chunk (its second block's) left the output
    incomplete, and ``plan`` and ``verify`` had called it "an interrupted run", `run --resume`
    finishing it, which met the same chunk again. They name the line it stopped on now, and to
    mend that first; once the chunk is mended, the input is another, and they say what ``run``
    says of it then (a resume refused, `run --overwrite`), which runs. ``verify`` plans the
    output once for its advice (h86c: it had planned it twice where the resume was refused,
    the second time for the same answer). h86f: they had said "mend that, then `run --resume`
    finishes it", which no mend of the input could make true (a resume refuses an input
    changed since): the record says the stop is of the input (``stopped_on_input``), and they
    say `run --overwrite` after the mend; followed (the chunk cut to 100 bytes restored from
    its source), it finishes the output, to NumPy's values over what zarr-python reads."""
    from pipeline import cli as command_line

    plans: list[object] = []
    plan_of = command_line._plan_of

    def planned(*args: object) -> object:  # the real plan, each one counted
        plans.append(args)
        return plan_of(*args)

    monkeypatch.setattr(command_line, "_plan_of", planned)
    inp = tmp_path / "in.zarr"
    z = zarr.create_array(str(inp), shape=(40, 30), chunks=(20, 30), dtype="float32")
    z[...] = np.arange(1200, dtype=np.float32).reshape(40, 30)
    x = z[...]  # as zarr-python reads it
    unit = inp / "c" / "1" / "0"
    source = tmp_path / "source-chunk"  # its source, the chunk as written
    shutil.copy2(unit, source)
    assert unit.stat().st_size > 100
    with open(unit, "r+b") as f:  # cut short
        f.truncate(100)
    cfg = write_config(tmp_path, inp, tmp_path / "out.zarr", chunking={"block": [20, 30]})
    rc, _, err = cli("run", "--progress", "none", cfg)
    stop = one_line_error(err).removeprefix("error: ")
    assert rc == 1 and f"input chunk 'c/1/0' of {inp} is damaged" in stop, err
    advice = (
        "mend that, then `run --overwrite` starts over (a resume refuses an input changed since)"
    )
    rc, out, _ = cli("plan", cfg)
    now = next(ln for ln in out.splitlines() if "output now" in ln)
    assert rc == 0 and now.endswith(f'the last run stopped on "{stop}"): {advice}'), now
    assert "`run --resume`" not in now.replace(stop, ""), now  # the old advice, gone
    rc, _, err = cli("verify", cfg, "-q")
    line = one_line_error(err)
    assert rc == 1 and line.endswith(f'stopped on "{stop}"; {advice}'), line
    assert "`run --resume`" not in line.replace(stop, ""), line
    rc, out, _ = cli("run", "--resume", "--dry-run", cfg)
    now = next(ln for ln in out.splitlines() if "output now" in ln)
    assert rc == 0 and now.endswith(f"stops there again (the input is as it was): {advice}"), now
    record = json.loads((tmp_path / "out.zarr" / ".pipeline" / "run.json").read_text())
    assert "stopped_resumes" not in record, record  # its line names what to mend
    assert record["stopped_on_input"] is True, record  # ... in the input
    shutil.copy2(source, unit)  # mended as its line says (`cp -p` from its source)
    rc, out, _ = cli("plan", cfg)
    now = next(ln for ln in out.splitlines() if "output now" in ln)
    assert "stopped on" not in now and "not resumable" in now and "--overwrite" in now, now
    plans.clear()
    rc, _, err = cli("verify", cfg, "-q")
    line = one_line_error(err)
    assert rc == 1 and "stopped on" not in line and "`run --overwrite` starts over" in line, line
    assert len(plans) == 1, plans  # its advice's plan, made once
    rc, _, err = cli("run", "--progress", "none", "--resume", cfg)
    line = one_line_error(err)
    assert rc == 1 and "cannot resume" in line and "`run --overwrite` starts over" in line, err
    rc, _, err = cli("run", "--progress", "none", "--overwrite", cfg)
    assert rc == 0 and status(tmp_path / "out.zarr") == "complete", err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_verify_names_the_damaged_frame_of_a_nested_shard(tmp_path: Path, cli) -> None:
    """h61e: an input of shards of six nested shards of one zstd chunk each (which only Zarr
    reads), one inner frame's zstd magic number flipped after a complete run: zarr-python's
    error names no inner chunk, and verify (as the run) had named the shard's key alone. Both
    now name the frame at each level, as they name a flat shard's."""
    from zarr.codecs import BytesCodec, ShardingCodec, ZstdCodec

    nested = ShardingCodec(chunk_shape=(5, 10), codecs=[BytesCodec(), ZstdCodec(level=1)])
    cfg, inp, _ = _run_over_shards(tmp_path, cli, "end", [nested])
    key = "c/1/0"
    raw = bytearray((inp / key).read_bytes())
    outer = np.frombuffer(bytes(raw[-6 * 16 :]), "<u8").reshape(6, 2)  # (5, 10) shards: 2 x 3
    start, size = (int(v) for v in outer[4])  # the nested shard [1, 1]
    # its one chunk's index entry, before the index's crc32c
    inner = np.frombuffer(bytes(raw[start + size - 20 : start + size - 4]), "<u8")
    raw[start + int(inner[0])] ^= 0xFF
    (inp / key).write_bytes(bytes(raw))
    said = (
        f"its zstd data does not decode: cut short or altered ({int(inner[1])} bytes) (in the "
        "shard's inner chunk [1, 1], itself a shard: in its inner chunk [0, 0])"
    )
    line = _verify_refuses_input_chunk(cli, cfg, inp, key)
    assert said in line and "restore that chunk from its source" in line, line
    rc, _, err = cli("run", "--progress", "none", "--overwrite", cfg)
    line = one_line_error(err)
    assert rc != 0 and f"input chunk {key!r} of {inp} is damaged" in line and said in line, line


@pytest.mark.parametrize("compressor", ["gzip", "bz2"])
def test_verify_names_an_input_chunk_whose_stream_header_was_zeroed(
    tmp_path: Path, cli, compressor: str
) -> None:
    """h55f: an input chunk of a chain only Zarr decodes (numcodecs' Delta filter) whose gzip
    or bz2 stream's header was zeroed after a complete run: Python's decompressor says so with
    an OSError (gzip's BadGzipFile, bz2's 'Invalid data stream'), which verify (and the run)
    had taken for the store's answer, "the store answered BadGzipFile", with a fix for the
    store. It is the chunk's damage, named by its key in one line."""
    import numcodecs.zarr3
    from zarr.codecs import GzipCodec

    x = np.random.default_rng(7).standard_normal((20, 30)).astype(np.float32)
    inp = tmp_path / "in.zarr"
    with warnings.catch_warnings():  # numcodecs.* codecs are not in the spec
        warnings.simplefilter("ignore")
        z = zarr.create_array(
            str(inp),
            shape=x.shape,
            chunks=(10, 15),
            dtype="float32",
            filters=[numcodecs.zarr3.Delta(dtype="<f4")],
            compressors=GzipCodec() if compressor == "gzip" else numcodecs.zarr3.BZ2(),
        )
        z[...] = x
    cfg = write_config(tmp_path, inp, tmp_path / "out.zarr")
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0 and status(tmp_path / "out.zarr") == "complete", err
    key = "c/1/0"
    raw = (inp / key).read_bytes()
    (inp / key).write_bytes(bytes(10) + raw[10:])
    line = _verify_refuses_input_chunk(cli, cfg, inp, key)
    assert "is damaged" in line and "store answered" not in line, line
    assert "restore that chunk from its source" in line, line


def test_verify_says_what_to_do_with_an_output_that_differs(tmp_path: Path, cli) -> None:
    """h61e: a complete output one of whose chunks was rewritten since the run to other values
    of the same size (a flipped bit zstd decodes, an edit through zarr-python): ``verify``
    had printed its table, "mismatched 1", exit 1, and not a word of which file or what to
    do. One line now names the output's chunk and the command that writes it again."""
    x = np.random.default_rng(5).standard_normal((20, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0 and status(out) == "complete", err
    y = zarr.open_array(str(out), mode="r+")
    y[7, 3] = y[7, 3] + 1
    units = [
        f"'{p.relative_to(out).as_posix()}'" for p in sorted((out / "c").rglob("*")) if p.is_file()
    ]
    for args in (("verify", "--all", cfg), ("verify", cfg)):
        rc, out_text, err = cli(*args)
        assert rc == 1 and re.search(r"mismatched\s+1 \(first", out_text), out_text
        line = one_line_error(err)
        assert line.startswith(
            "error: 1 compared block of the output differs from what this config computes of "
            "the input (the first, block ["
        ), line
        assert re.search(r"in output chunk 'c/[\d/]+' of " + re.escape(str(out)), line), line
        assert line.endswith(
            "written otherwise since the run, or damaged; `run --overwrite` writes it again"
        ), line
        assert any(u in line for u in units), (line, units)
    import pipeline

    res = pipeline.verify(cfg, all=True)  # the API's result carries the line's advice
    assert not res.ok and any(u in res.mismatched_units[0] for u in units), res
    assert res.advice is not None and res.advice.endswith("writes it again"), res.advice
    assert "overwrite=True" in res.advice, res.advice
    rc, _, err = cli("run", "--progress", "none", "--overwrite", cfg)
    assert rc == 0, err
    rc, _, err = cli("verify", "--all", cfg)
    assert rc == 0, err


def test_verify_names_a_damaged_output_in_one_line(tmp_path: Path, cli) -> None:
    """A complete output whose chunk was cut short afterwards (helper-39): ``verify --all``
    said only the codec's ``RuntimeError``; one line now names the output and the region that
    zarr-python cannot read, and the fix."""
    x = np.random.default_rng(5).standard_normal((20, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0, err
    chunk = sorted(p for p in (out / "c").rglob("*") if p.is_file())[1]
    chunk.write_bytes(chunk.read_bytes()[:20])
    rc, _, err = cli("verify", "--all", cfg)
    assert rc == 1
    line = one_line_error(err)
    e = refused("verify", "--all", cfg)
    assert line == f"error: {e}"
    assert isinstance(e, OutputError) and e.output == str(out) and len(e.region) == 2
    assert e.key == chunk.relative_to(out).as_posix(), line  # the shard, by its key
    assert "`run --overwrite`" in line and "RuntimeError" not in line.split("(")[0]


def test_verify_of_an_output_whose_shape_was_edited_says_so_and_what_run_says(
    tmp_path: Path, cli
) -> None:
    """h54c: a complete output whose ``zarr.json`` shape was edited smaller since the run.
    `run --overwrite` refuses it (its chunks past the new grid are not the array's); verify
    said only "nothing to verify at OUT: OUT holds ... c/0/2", though an array is there, and
    not a word of the edit. It says what it found, then run's refusal, in one line."""
    x = np.random.default_rng(5).standard_normal((20, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0, err
    meta = json.loads((out / "zarr.json").read_text())
    meta["shape"] = [20, 20]
    (out / "zarr.json").write_text(json.dumps(meta))
    before = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    rc, _, err = cli("verify", "--all", cfg)
    assert rc == 1
    line = one_line_error(err)
    assert line.startswith("error: the output is [20, 20] float32, but its metadata was edited"), (
        line
    )
    assert "nothing to verify" not in line, line
    run_rc, _, run_err = cli("run", "--progress", "none", "--overwrite", cfg)
    assert run_rc == 1
    assert line.endswith(one_line_error(run_err).removeprefix("error: ")), (line, run_err)
    after = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    assert after == before  # neither verify nor the refused run touched it


@pytest.mark.parametrize("record", ["absent", "a string", "a list"])
def test_verify_of_an_output_without_the_pipelines_record_says_so(
    tmp_path: Path, cli, record: str
) -> None:
    """An output another tool wrote (no ``pipeline`` attribute), or whose attribute is not a
    mapping: verify compares its values, then exits 1 in one line that says nothing vouches
    for it (not "run --resume finishes it", and no traceback)."""
    x = np.random.default_rng(5).standard_normal((20, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    make_array(tmp_path / "out.zarr", reference(x), (5, 30))
    if record != "absent":
        z = zarr.open_array(str(tmp_path / "out.zarr"), mode="r+")
        z.attrs["pipeline"] = "bogus" if record == "a string" else [1, 2]
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 1
    assert re.search(r"mismatched\s+0\b", out), out
    line = one_line_error(err)
    assert "no record of `pipeline run`" in line and "--resume" not in line


def test_verify_of_an_output_whose_input_was_rewritten_since_fails(tmp_path: Path, cli) -> None:
    """One block of the input rewritten after the output was made: a sample that misses that
    block compared equal, and verify passed (helper-42). It knows from the output's record
    that the input changed: exit 1, one line saying so and how to make the output again;
    with the input back as it was (moved back whole), it passes again."""
    x = np.random.default_rng(5).standard_normal((40, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    with set_aside(tmp_path / "in.zarr"):
        z = zarr.open_array(str(tmp_path / "in.zarr"), mode="r+")
        z[0:5] = z[0:5] + 1  # in the first block only, which the sample (block 3) misses
        rc, out, err = cli("verify", "--samples", "1", "--seed", "0", cfg)
        assert rc == 1
        assert re.search(r"mismatched\s+0\b", out), out  # the sample missed the block
        line = one_line_error(err)
        assert "the input changed since the output was made" in line and "--overwrite" in line
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out


def test_verify_of_an_output_made_from_another_input_fails(tmp_path: Path, cli) -> None:
    """The output was made from a copy of the config's input elsewhere (or another run
    replaced it): its values equal this input's stages, but this input did not make them;
    verify said "the input changed" (helper-44). It names the input that made it."""
    x = np.random.default_rng(5).standard_normal((20, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    shutil.copytree(tmp_path / "in.zarr", tmp_path / "copy.zarr")
    made = write_config(tmp_path, tmp_path / "copy.zarr", tmp_path / "out.zarr", name="c.yaml")
    rc, _, err = cli("run", made)
    assert rc == 0, err
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 1 and re.search(r"mismatched\s+0\b", out), out
    line = one_line_error(err)
    assert f"made from {tmp_path / 'copy.zarr'}" in line, line


def _edit_record(out: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """``edit`` the output's ``pipeline`` record in its zarr.json, as a user or a tool would."""
    meta = json.loads((out / "zarr.json").read_text())
    record = json.loads(meta["attributes"]["pipeline"])  # JSON text, as netCDF can hold it
    edit(record)
    meta["attributes"]["pipeline"] = json.dumps(record)
    (out / "zarr.json").write_text(json.dumps(meta))


def _other_stages(record: dict[str, Any]) -> None:  # both its lists of stages, alike
    for doc in (record, record["identity"]):
        doc["stages"][0] = doc["stages"][0].replace("factor=5", "factor=3")


_RECORD_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "stages": _other_stages,
    "identity-stages": lambda r: r["identity"]["stages"].append("add(value=1)"),
    "shown-stages": lambda r: r["stages"].pop(),
    "identity-block": lambda r: r["identity"]["block"].__setitem__(0, 20),
    "identity-input-stamps": lambda r: r["identity"]["input"][1].__setitem__(0, "0" * 16),
}


@pytest.mark.parametrize("edit", list(_RECORD_EDITS))
def test_verify_of_an_output_whose_record_was_edited_says_so(
    tmp_path: Path, cli, edit: str
) -> None:
    """h55b: the output's ``pipeline`` record edited after the run (its stages, the blocks
    verify compares, the input's stamps), its values untouched. verify passed the stages and
    block edits, and called the stamps' edit "the input changed since"; ``run --resume`` called
    the stages' edit "the stages changed", the stamps' "the input's metadata changed", and
    the block's "nothing to do". Every block compares equal; verify and ``run --resume`` fail,
    each in one line saying the record was edited, with `run --overwrite`, after which verify
    passes."""
    x = np.random.default_rng(5).standard_normal((40, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    _edit_record(tmp_path / "out.zarr", _RECORD_EDITS[edit])
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 1 and re.search(r"mismatched\s+0\b", out), out + err
    assert "checked        4 of 4 blocks" in out, out  # its 4 units: no edited block
    line = one_line_error(err)
    assert "(its `pipeline` attribute) was edited since the run (" in line, line
    assert line.endswith("`run --overwrite` writes it again"), line
    assert "input changed" not in line, line
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none")  # as `run` says it
    assert rc == 1, err
    line = one_line_error(err)
    assert "its record of the run that made it was edited since (its " in line, line
    assert line.endswith("`run --overwrite` recomputes it"), line
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, out + err


def test_verify_of_an_output_another_config_made_fails_whatever_blocks_it_compares(
    tmp_path: Path, cli
) -> None:
    """h55b: an output made with ``multiply(factor=5)`` verified with a config of
    ``factor=3``, on an input of zeros but in its first block: a sample missing that block
    compared equal (0 * 5 == 0 * 3), and verify passed, where the output's record says the
    stages that made it, and `run --resume` calls it stale. It fails, naming both."""
    x = np.zeros((40, 30), np.float32)
    x[0:5] = 1.5  # in the first block only, which the sample (block 3) misses
    make_array(tmp_path / "in.zarr", x, (5, 30))
    made = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", name="m.yaml")
    rc, _, err = cli("run", made)
    assert rc == 0, err
    other = [{"op": "multiply", "factor": 3}, *STAGES[1:]]
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", stages=other)
    rc, out, err = cli("verify", "--samples", "1", "--seed", "0", cfg)
    assert rc == 1
    assert re.search(r"mismatched\s+0\b", out), out  # the sample missed the block
    line = one_line_error(err)
    assert "the output was computed with stages multiply(factor=5) float32" in line, line
    assert "(this config's: multiply(factor=3) float32" in line, line
    assert "`run --overwrite`" in line, line
    rc, out, err = cli("verify", "--samples", "1", "--seed", "0", made)
    assert rc == 0, out + err


def test_verify_of_an_output_another_config_of_another_dtype_made_names_the_command(
    tmp_path: Path, cli
) -> None:
    """h57f: the same with a config whose stages make float64 (``factor: {dtype: float64,
    value: 5}``): verify had said "the output is [40, 30] float32, but this config makes [40,
    30] float64: is it the same config?", naming no command, where a config of the same dtype
    is told `run --overwrite`, as `run --resume` names it. It says both configs' stages and
    `run --overwrite`, which then makes the output verify passes, bit for bit NumPy's."""
    x = np.random.default_rng(7).standard_normal((40, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    made = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", name="m.yaml")
    rc, _, err = cli("run", made)
    assert rc == 0, err
    wide = [{"op": "multiply", "factor": {"dtype": "float64", "value": 5}}, *STAGES[1:]]
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", stages=wide)
    rc, _, err = cli("verify", cfg)
    assert rc == 1
    line = one_line_error(err)
    assert "but this config makes [40, 30] float64" in line, line
    assert "the output was computed with stages multiply(factor=5) float32" in line, line
    assert "(this config's: multiply(factor=np.float64(5.0)) float32 -> float64" in line, line
    assert "same config?" not in line and "`run --overwrite`" in line, line
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    got = read_array(tmp_path / "out.zarr")
    assert got.dtype == np.float64
    assert got.tobytes() == (((x * np.float64(5)) ** 2) * 2).tobytes()
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0, out + err


def test_an_input_both_zarr_versions_wrote_is_read_as_zarr_python_reads_it_said_once(
    tmp_path: Path,
) -> None:
    """h55b: an input path where zarr-python 3 wrote a v3 array (zarr.json) and zarr-python 2
    another (.zarray, other dtype and values). zarr-python 3 reads the zarr.json's, and so
    does the run: the output is NumPy's chain over it, bit for bit. Its warning that both are
    there had been printed 3 times in a run and 2 in a verify (its own lines, and Python's
    ``warnings.warn(...)`` line under each); each command says it in one note of its own,
    naming which one it reads."""
    x = np.random.default_rng(5).standard_normal((40, 30)).astype(np.float32)
    src = tmp_path / "in.zarr"
    make_array(src, x, (10, 30))  # zarr-python 3's v3 array
    v2 = zarr.create_array(str(src), shape=(40, 30), chunks=(20, 30), dtype="f8", zarr_format=2)
    v2[:] = -1.0
    assert {p.name for p in src.iterdir()} >= {"zarr.json", ".zarray"}
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr")
    note = f"note: {src} holds both Zarr v3 metadata (zarr.json) and Zarr v2 metadata (.zarray)"
    for command in (["run", "--progress", "none"], ["verify", "--all"]):
        p = run_python(["-m", "pipeline", *command, cfg], tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "Both zarr.json" not in p.stderr and "Warning" not in p.stderr, p.stderr
        said = [ln for ln in p.stderr.splitlines() if "zarr.json" in ln]
        assert len(said) == 1 and said[0].startswith(note), p.stderr
        assert "reads the zarr.json's array ([40, 30] float32)" in said[0], said
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-python's warning of the two
        read = zarr.open_array(str(src), mode="r")[:]
    assert np.array_equal(read, x)
    got = read_array(tmp_path / "out.zarr")
    assert got.dtype == np.float32 and got.tobytes() == reference(x).tobytes()


def test_an_input_reached_through_a_symlink_is_the_same_input(tmp_path: Path, cli) -> None:
    """The config names the input through a link to its folder: the same files, so verify
    passes and a resume has nothing to do (helper-45: "made from another input", and the
    resume refused as "the input moved")."""
    x = np.random.default_rng(5).standard_normal((20, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 30))
    (tmp_path / "link.zarr").symlink_to(tmp_path / "in.zarr")
    made = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", name="c.yaml")
    rc, _, err = cli("run", made)
    assert rc == 0, err
    cfg = write_config(tmp_path, tmp_path / "link.zarr", tmp_path / "out.zarr")
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0 and "nothing to do" in err, err


def test_a_chunk_that_is_a_symbolic_link_loop_is_named_with_its_fix(tmp_path: Path, cli) -> None:
    """A chunk of a local input that is a symbolic link leading back to itself (c/1/1 ->
    loop -> c/1/1): the run ends in one line naming the link and saying to mend or remove
    it. It had said "make the store reachable (the server answering again)", as if a server
    were there. The input is left as it was."""
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    make_array(tmp_path / "in.zarr", x, (4, 4))
    chunk = tmp_path / "in.zarr" / "c" / "1" / "1"
    chunk.unlink()
    chunk.symlink_to("loop")
    (chunk.parent / "loop").symlink_to("1")

    def contents() -> dict[str, Any]:  # each link's target, each file's bytes
        return {
            str(f): os.readlink(f) if f.is_symlink() else f.read_bytes()
            for f in (tmp_path / "in.zarr").rglob("*")
            if f.is_symlink() or f.is_file()
        }

    before = contents()
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("-q", "run", cfg, "--progress", "none")
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Too many levels of symbolic links" in lines[0], err
    assert lines[0].endswith("mend or remove that symbolic link: it leads back to itself"), err
    assert "server" not in lines[0], err
    assert contents() == before


@pytest.mark.parametrize("samples", ["0", "-1", "two"])
def test_verify_refuses_a_sample_of_no_blocks(tmp_path: Path, samples: str) -> None:
    """``--samples`` below 1 checked nothing and passed (0) or crashed (-1): refused by the
    command line's parser, before anything is read."""
    cfg = _damaged_input(tmp_path)
    p = subprocess.run(
        [sys.executable, "-m", "pipeline", "verify", "--samples", samples, str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert "--samples" in p.stderr and "--all checks every block" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_damaged_chunk_on_process_workers_is_one_line_on_stderr(tmp_path: Path) -> None:
    """With the default local cluster (worker processes, whose stderr is the terminal's), a
    damaged chunk ends the run with its one line: Dask's "Compute Failed" record and its
    traceback are not printed for the pipeline's own errors."""
    cfg = _damaged_input(tmp_path)
    p = run_python(["-m", "pipeline", "run", "--progress", "none", cfg], tmp_path)
    assert p.returncode == 1
    line = one_line_error(p.stderr)
    assert "'1.2'" in line and str(tmp_path / "in.zarr") in line
    assert status(tmp_path / "out.zarr") == "incomplete"


@pytest.mark.parametrize(
    "array", ["../victim", "x/../victim", "./out", "g/zarr.json", "g/.zattrs", ".pipeline/x"]
)
def test_an_array_path_with_dot_parts_is_refused_before_anything_is_touched(
    tmp_path: Path, array: str
) -> None:
    """``output.array: ../victim`` reached outside the output store, and the folder there was
    emptied as the output was created (helper-33), without --overwrite."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    victim = tmp_path / "victim" / "docs"
    victim.mkdir(parents=True)
    (victim / "thesis.txt").write_text("precious")
    before = file_states(tmp_path / "victim")
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "fresh.zarr", output={"array": array}
    )
    e = refused("run", cfg)
    assert "'.' or '..'" in str(e) or "the name of a Zarr store's own file" in str(e), e
    assert file_states(tmp_path / "victim") == before
    assert not (tmp_path / "fresh.zarr").exists()


@pytest.mark.parametrize("array", ["/g//v/", "g/v/", "/g/v", "g\\v"])
def test_an_array_path_with_empty_parts_names_the_array_as_zarr_does(
    tmp_path: Path, cli, array: str
) -> None:
    """Empty parts of ``output.array`` are dropped, as zarr-python drops them: the output is
    ``g/v``, its keys and records name it so, and a second run finds it complete."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out, output={"array": array})
    summary = pipeline.run(cfg)
    assert summary.output == str(out / "g" / "v")  # it said out.zarr/g//v
    assert sorted(p.name for p in out.iterdir()) == ["g", "zarr.json"]
    assert sorted(p.name for p in (out / "g").iterdir()) == ["v", "zarr.json"]
    assert np.array_equal(zarr.open_array(str(out), path="g/v", mode="r")[...], expected(x))
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0, err


@pytest.mark.parametrize("scheme", ["local://", "file://"])
def test_an_input_named_by_a_local_url_is_kept_apart_from_outputs_and_reports(
    tmp_path: Path, scheme: str
) -> None:
    """An input store given as a URL of local files (fsspec's ``local://``, ``file://``; a
    caching layer over them is refused: test_http): an output inside it and a summary over
    its metadata are refused as for a plain path (helper-38: ``local://`` passed as remote,
    and both were written into the input)."""
    x = np.arange(100, dtype=np.float64).reshape(10, 10)
    src = tmp_path / "in.zarr"
    make_array(src, x, (5, 10))
    before = file_states(src)
    inside = write_config(tmp_path, f"{scheme}{src}", src / "sub.zarr", name="inside.yaml")
    e = refused("run", inside)
    assert isinstance(e, OutputError) and e.relation == "is inside", e
    apart = write_config(tmp_path, f"{scheme}{src}", tmp_path / "out.zarr")
    with pytest.raises(ConfigError) as info:
        pipeline.run(apart, summary_json=str(src / "zarr.json"))
    assert "inside the input store" in str(info.value)
    assert file_states(src) == before


#: Where a git-annex (DataLad) dataset's unfetched file points: a path that does not exist.
_ANNEXED = "../../.git/annex/objects/Xx/SHA256E-s1--abc/SHA256E-s1--abc"


def _annexed_input(tmp_path: Path, layout: str) -> tuple[Path, str, str]:
    """An input written by zarr-python (``layout``: 'v2', 'v3', 'v3-sharded'; 'v3-c', whose
    whole ``c`` folder is the link; 'v3-document', whose ``zarr.json`` is), whose one stored
    unit (or ``c``, or ``zarr.json``) is a symbolic link to a path that does not exist, as a
    DataLad dataset's content is before ``datalad get``: (the input, the key refused, the
    link's path)."""
    x = np.arange(1, 65, dtype=np.float32).reshape(8, 8)
    store = tmp_path / "in.zarr"
    if layout == "v2":
        make_array(store, x, (4, 4), zarr_format=2)
        key = "1.1"
    elif layout == "v3-sharded":
        make_array(store, x, (2, 2), shards=(4, 4))
        key = "c/1/1"
    else:
        make_array(store, x, (4, 4))
        key = {"v3": "c/1/1", "v3-c": "c", "v3-document": "zarr.json"}[layout]
    link = store / key
    shutil.rmtree(link) if link.is_dir() else link.unlink()
    link.symlink_to(_ANNEXED)
    return store, key, str(link)


def _said_dangling(line: str, store: Path, key: str, link: str) -> None:
    assert f"{key!r} of {store} is a symbolic link" in line, line
    target = os.path.normpath(os.path.join(os.path.dirname(link), _ANNEXED))
    assert f"to {target}, which does not exist" in line, line
    assert f"`git annex get {link}` or `datalad get {link}`" in line, line


@pytest.mark.parametrize("layout", ["v2", "v3", "v3-sharded", "v3-c", "v3-document"])
def test_an_input_key_that_is_a_link_to_nothing_is_refused_before_anything_is_written(
    tmp_path: Path, cli, layout: str
) -> None:
    """h71v: a local input's chunk (or shard, or its whole ``c`` folder, or its metadata
    document) that is a symbolic link whose target is absent, as every file of a DataLad
    (git-annex) dataset is until ``datalad get``: zarr-python reads it as a missing chunk,
    and the run wrote the fill value there and said ``complete``. Now refused by the plan in
    one line naming the key, the link's target and the fix; no output is made, and the input
    is left as it was."""
    store, key, link = _annexed_input(tmp_path, layout)
    cfg = write_config(tmp_path, store, tmp_path / "out.zarr")
    rc, _, err = cli("-q", "run", cfg, "--progress", "none")
    assert rc == 1, err
    line = one_line_error(err)
    _said_dangling(line, store, key, link)
    assert ("fill value" in line) is (layout != "v3-document"), line
    assert not (tmp_path / "out.zarr").exists()
    assert os.readlink(link) == _ANNEXED


@pytest.mark.parametrize("direct", [True, False], ids=["raw", "zarr"])
@pytest.mark.parametrize("layout", ["v2", "v3", "v3-sharded", "v3-c"])
def test_a_unit_that_became_a_link_to_nothing_is_refused_at_its_read(
    tmp_path: Path, layout: str, direct: bool
) -> None:
    """h71v: a stored unit that is a link to nothing by the time a task reads it (its content
    dropped, ``git annex drop``, after the plan walked the input): the task on a Dask worker
    raises the one line naming the key and the fix, whether the pipeline's raw reader reads
    the unit or zarr-python does; it had read as the fill value. 'v3-c': the unit's folder
    ``c`` is the link, named as the way the key is read through."""
    import dataclasses

    from distributed import Client, LocalCluster

    from pipeline.config import load_config
    from pipeline.planning.plan import make_plan
    from pipeline.running import tasks
    from tests.test_plan import MACHINES

    store, key, link = _annexed_input(tmp_path, layout)
    os.unlink(link)  # the plan sees the unit absent: a missing chunk, as it was
    if layout == "v3-c":
        os.mkdir(link)
        key = "c/1/1"
    cfg = write_config(tmp_path, store, tmp_path / "out.zarr", chunking={"block": [4, 4]})
    src = make_plan(load_config(cfg), MACHINES["cpu"]).source
    src = dataclasses.replace(src, direct=direct and src.direct)
    if layout == "v3-c":
        os.rmdir(link)
    os.symlink(_ANNEXED, link)
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
        pytest.raises(StoreError) as e,
    ):
        client.submit(tasks.read_block, src, (1, 1), pure=False).result()
    assert e.value.key == key and e.value.reason == "dangling link"
    line = str(e.value)
    assert (f"(through {link})" in line) is (layout == "v3-c"), line
    _said_dangling(line.replace(f" (through {link})", ""), store, key, link)


def _unit_made_special(tmp_path: Path, layout: str, what: str) -> tuple[Path, str]:
    """An input written by zarr-python (``layout``: 'v2', 'v3', 'v3-sharded'; 'v3-delta',
    a codec chain only zarr-python decodes) whose one stored unit is replaced by ``what``:
    'fifo', a named pipe; 'zero', a symbolic link to ``/dev/zero``: (the input, its key)."""
    x = np.arange(1, 65, dtype=np.float32).reshape(8, 8)
    store = tmp_path / "in.zarr"
    key = "1.1" if layout == "v2" else "c/1/1"
    if layout == "v2":
        make_array(store, x, (4, 4), zarr_format=2)
    elif layout == "v3-sharded":
        make_array(store, x, (2, 2), shards=(4, 4))
    elif layout == "v3-delta":
        import numcodecs.zarr3

        with warnings.catch_warnings():  # numcodecs.* codecs warn that they are not in the spec
            warnings.simplefilter("ignore")
            a = zarr.create_array(
                store=str(store),
                shape=x.shape,
                dtype=x.dtype,
                chunks=(4, 4),
                filters=[numcodecs.zarr3.Delta(dtype="<f4")],
            )
            a[...] = x
    else:
        make_array(store, x, (4, 4))
    (store / key).unlink()
    if what == "fifo":
        os.mkfifo(store / key)
    else:
        (store / key).symlink_to("/dev/zero")
    return store, key


def _run_and_plan_refused(cfg: Path) -> Iterator[str]:
    """``run`` and then ``plan`` of ``cfg``, each a ``python -m pipeline -q`` process of its
    own (a hang ends at the 60 s timeout, failing the test), each asserted to exit 1: the
    one error line of each."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for args in (("run", "--progress", "none"), ("plan",)):
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "-q", *args[:1], str(cfg), *args[1:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 1, (args, done.stdout + done.stderr)
        yield one_line_error(done.stderr)


@pytest.mark.parametrize(
    ("layout", "what"),
    [
        ("v2", "fifo"),
        ("v3", "fifo"),
        ("v3-sharded", "fifo"),
        ("v3-delta", "fifo"),
        ("v2", "zero"),
        ("v3-sharded", "zero"),
    ],
)
def test_an_input_key_that_is_no_file_is_refused_before_anything_is_written(
    tmp_path: Path, layout: str, what: str
) -> None:
    """h83g: a local input's stored unit that is a named pipe (a FIFO left by a script that
    meant to stream a chunk), or a symbolic link to a device (``/dev/zero``): the run's read
    of it waited for a writer without end (the FIFO: no line, no exit, whichever reader read
    it, the pipeline's own or zarr-python's), or took the device's bytes. Now the plan
    refuses it in one line naming the key, what it is and the fix; no output is made. Each
    command in a process of its own (a hang ends at the timeout, failing the test)."""
    store, key = _unit_made_special(tmp_path, layout, what)
    cfg = write_config(tmp_path, store, tmp_path / "out.zarr")
    kind = "a named pipe (FIFO)" if what == "fifo" else "a character device"
    for line in _run_and_plan_refused(cfg):
        assert f"{key!r} of {store} is {kind}" in line, line
        assert ("symbolic link to /dev/zero" in line) is (what == "zero"), line
        assert "remove it if the chunk is meant to be the fill value" in line, line
        assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(("zarr_format", "doc"), [(2, ".zarray"), (2, ".zattrs"), (3, "zarr.json")])
def test_an_input_document_that_is_a_named_pipe_is_refused_in_one_line(
    tmp_path: Path, zarr_format: int, doc: str
) -> None:
    """h83g: a local input's metadata document that is a named pipe: ``run`` waited without
    end in zarr-python's opening of the input (the run's check of its documents comes later,
    in the plan), ``plan`` took the read's error for an absent document and waited there too.
    Now both refuse it in one line naming the document and the fix; no output is made."""
    store = tmp_path / "in.zarr"
    make_array(store, np.ones((8, 8), np.float32), (4, 4), zarr_format=zarr_format)
    (store / doc).unlink(missing_ok=True)
    os.mkfifo(store / doc)
    cfg = write_config(tmp_path, store, tmp_path / "out.zarr")
    for line in _run_and_plan_refused(cfg):
        assert f"{doc!r} of {store} is a named pipe (FIFO), not a file" in line, line
        assert "restore the document" in line and "fill value" not in line, line
        assert not (tmp_path / "out.zarr").exists()


def test_a_unit_that_became_a_named_pipe_is_refused_at_its_read(tmp_path: Path) -> None:
    """h83g: a stored unit that is a named pipe by the time a task reads it (after the plan
    walked the input): the pipeline's raw reader waited for a writer without end; now the
    task raises the one line naming the key. (zarr-python's own read still waits: the plan's
    walk is what refuses a pipe before it, above.)"""
    from pipeline.config import load_config
    from pipeline.planning.plan import make_plan
    from pipeline.running import tasks
    from tests.test_plan import MACHINES

    store, key = _unit_made_special(tmp_path, "v3", "fifo")
    (store / key).unlink()  # the plan sees the unit absent
    cfg = write_config(tmp_path, store, tmp_path / "out.zarr", chunking={"block": [4, 4]})
    src = make_plan(load_config(cfg), MACHINES["cpu"]).source
    assert src.direct
    os.mkfifo(store / key)
    done: list[BaseException] = []

    def read() -> None:
        try:
            tasks.read_block(src, (1, 1))
        except BaseException as e:  # handed to the test's thread
            done.append(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():  # free the blocked reader, so that the test's process can end
        fd = os.open(store / key, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(30)
        pytest.fail("the read of a named pipe waited for a writer")
    assert done and isinstance(done[0], StoreError), done
    assert done[0].key == key and done[0].reason == "not a file", done[0]
    assert f"{key!r} of {store} is a named pipe (FIFO), not a file" in str(done[0])


def test_verify_refuses_an_input_whose_content_was_dropped_since(tmp_path: Path, cli) -> None:
    """h71v: ``verify --all`` of a complete output whose input chunk is a link to nothing now
    (``git annex drop`` since the run): the one line naming the key and the fix, not a
    comparison with the fill value."""
    store, key, link = _annexed_input(tmp_path, "v3")
    os.unlink(link)  # a missing chunk at the run
    cfg = write_config(tmp_path, store, tmp_path / "out.zarr")
    rc, _, err = cli("-q", "run", cfg, "--progress", "none")
    assert rc == 0 and status(tmp_path / "out.zarr") == "complete", err
    os.symlink(_ANNEXED, link)
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 1, out + err
    _said_dangling(one_line_error(err), store, key, link)


@pytest.mark.parametrize("doc", [".zattrs", ".zgroup", ".zmetadata", ".zarray"])
def test_an_output_s_v2_document_that_is_a_link_to_nothing_is_named_by_its_own_key(
    tmp_path: Path, cli, doc: str
) -> None:
    """A v2 metadata document at the output's root that is a symbolic link to nothing (a
    DataLad dataset's file never fetched): the walk that looks for nodes reads it as a
    folder, and the line had named the key ``'.zattrs/zarr.json'`` ("through" the link),
    a key no Zarr store holds. Each command names the document itself, with no chunk's fix;
    the link is left as it was."""
    make_array(tmp_path / "in.zarr", np.ones((4, 4), np.float32), (2, 2))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    (tmp_path / "out.zarr").mkdir()
    link = tmp_path / "out.zarr" / doc
    link.symlink_to(_ANNEXED)
    for args in (("plan",), ("run",), ("run", "--resume"), ("verify",)):
        rc, out, err = cli("-q", *args, cfg)
        assert rc == 1, (args, out + err)
        line = one_line_error(err)
        assert "through" not in line and "fill value" not in line, line
        _said_dangling(line, tmp_path / "out.zarr", doc, str(link))
    assert os.readlink(link) == _ANNEXED


def test_an_output_document_that_is_a_link_to_nothing_is_named_as_one(tmp_path: Path, cli) -> None:
    """h71v: the output's ``zarr.json`` (its run record) a symbolic link to nothing, as in a
    DataLad dataset whose output was saved and never fetched: ``verify`` and ``run --resume``
    name the link, its target and the fix; they had called it "not readable Zarr metadata"
    and said to remove the output."""
    x = np.arange(1, 65, dtype=np.float32).reshape(8, 8)
    make_array(tmp_path / "in.zarr", x, (4, 4))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("-q", "run", cfg, "--progress", "none")
    assert rc == 0, err
    document = tmp_path / "out.zarr" / "zarr.json"
    document.unlink()
    document.symlink_to(_ANNEXED)
    for args in (("verify",), ("run", "--resume")):
        rc, out, err = cli("-q", *args, cfg)
        assert rc == 1, out + err
        line = one_line_error(err)
        _said_dangling(line, tmp_path / "out.zarr", "zarr.json", str(document))
        assert "fill value" not in line, line
    assert os.readlink(document) == _ANNEXED


# --------------------------------------------------------------------------------------------
# A replaced local output's old entries moved into its run record (`.pipeline/aside/<uuid>`)
# and deleted on a thread while the run computes (h83d).


def _aside(out: Path) -> Path:
    return out / ".pipeline" / "aside"


def _old_files(out: Path) -> set[str]:
    """The files under the output ``out`` but those of its run record."""
    return {
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and p.relative_to(out).parts[0] != ".pipeline"
    }


def test_a_replacement_leaves_no_old_chunk_and_no_aside_folder(tmp_path: Path, cli) -> None:
    """The old output is larger (more chunk files, of the same chunk shape: an old one left
    would read as valid), every chunk of it written; the new one's input is all zeros in its
    first rows (chunks of the fill value, which this writer stores all the same: each key of
    the new grid holds a file it wrote). Once the replacing run completes, no file of the old
    output is left, nor the run record with what was set aside, and the output is NumPy's
    bit for bit."""
    old = np.arange(1, 60 * 60 + 1, dtype=np.float32).reshape(60, 60)
    make_array(tmp_path / "out.zarr", old, (10, 10))
    before = _old_files(tmp_path / "out.zarr")
    x = np.arange(40 * 40, dtype=np.float32).reshape(40, 40) + 1
    x[:20] = 0  # two rows of chunks of fill value
    make_array(tmp_path / "in.zarr", x, (10, 10))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        output={"chunks": [10, 10], "shards": "none"},
    )
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    out = tmp_path / "out.zarr"
    assert not (out / ".pipeline").exists(), sorted(map(str, (out / ".pipeline").rglob("*")))
    assert status(out) == "complete"
    got = read_array(out)
    assert got.shape == x.shape and got.tobytes() == reference(x).tobytes()
    now = _old_files(out)
    # the old grid's keys beyond the new one (c/5/5 ...) are all gone; each of the new one's
    # holds this run's chunk (the fill value's too: read as NumPy's above)
    z = zarr.open_array(str(out), mode="r")
    new_keys = {f"c/{i}/{j}" for i in range(z.cdata_shape[0]) for j in range(z.cdata_shape[1])}
    assert now == new_keys | {"zarr.json"}, sorted(now ^ (new_keys | {"zarr.json"}))
    assert before - new_keys - {"zarr.json"}, "the old output should have had more chunks"
    rc, out_text, err = cli("verify", cfg)
    assert rc == 0, out_text + err


def test_a_replaced_output_whose_old_chunk_cannot_be_deleted_is_not_marked_complete(
    tmp_path: Path, cli
) -> None:
    """An old chunk of the output being replaced cannot be deleted (immutable, deep in its
    chunk folders): the run ends non-zero in one line that names what stays and the fix
    (make it deletable, or delete it yourself), the output is not marked complete (its old
    chunk beside the new ones); once it is deletable, `run --overwrite` completes, with
    nothing old left."""
    out = tmp_path / "out.zarr"
    old = np.arange(1, 60 * 60 + 1, dtype=np.float32).reshape(60, 60)
    make_array(out, old, (10, 10))
    x = np.arange(40 * 40, dtype=np.float32).reshape(40, 40)
    make_array(tmp_path / "in.zarr", x, (10, 10))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    with undeletable_within(out, out / "c" / "5" / "5"):
        rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
        assert rc != 0, err
        line = one_line_error(err)
        assert "cannot delete" in line and "immutable attribute" in line, err
        assert "delete it yourself" in line, err
        # the file that stays, wherever the run moved it (the folder it was moved into had
        # been named, whose own attributes are not what keeps it)
        named = re.search(r"cannot delete (\S+) \(", line)
        assert named is not None, line
        assert re.fullmatch(
            re.escape(str(out)) + r"(/\.pipeline/aside/[0-9a-f]{32})?/c/5/5", named.group(1)
        ), line
        assert status(out) == "incomplete"
    # deletable again: a resume finds every block written, and deletes what stayed
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    assert status(out) == "complete" and not (out / ".pipeline").exists()
    assert read_array(out).tobytes() == reference(x).tobytes()
    left = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    z = zarr.open_array(str(out), mode="r")
    shards = z.shards or z.chunks
    grid = {f"c/{i}/{j}" for i in range(40 // shards[0]) for j in range(40 // shards[1])}
    assert left == grid | {"zarr.json"}, sorted(left)


def test_a_replacement_that_fails_after_setting_chunks_aside_deletes_them_first(
    tmp_path: Path, cli
) -> None:
    """A v2 output of many chunk files ('.' keys, all directly under the array), one of them
    immutable: the replacing run moves the others into its record and deletes them on a
    thread, then cannot delete that one, and fails in one line naming it. The deletion
    ends before the run does (and gives up its lock): the thread had gone on deleting after
    the run had ended, in a record another run may take by then (h83d). Once the file is
    deletable, `run --overwrite` replaces the output, nothing old left."""
    out = tmp_path / "out.zarr"
    old = np.arange(1, 120 * 120 + 1, dtype=np.float32).reshape(120, 120)
    make_array(out, old, (2, 2), zarr_format=2, compressor=None)
    x = np.arange(40 * 40, dtype=np.float32).reshape(40, 40)
    make_array(tmp_path / "in.zarr", x, (10, 10))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    with undeletable_within(out, out / "0.0"):
        if os.geteuid() != 0:
            pytest.skip("a read-only folder keeps every chunk in place: no entry is set aside")
        rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
        left = [p for p in (out / ".pipeline" / "aside").rglob("*") if p.is_file()]
        assert rc != 0, err
        assert not left, f"{len(left)} set-aside files still there as the run ended"
        line = one_line_error(err)
        assert f"cannot delete {out / '0.0'} (" in line and "immutable" in line, err
        # no metadata: nothing reads it as an array, complete or not, until it is replaced
        assert not any((out / n).exists() for n in (".zarray", ".zattrs", "zarr.json"))
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert status(out) == "complete" and not (out / ".pipeline").exists()
    assert read_array(out).tobytes() == reference(x).tobytes()
    assert not (out / "0.0").exists() and not (out / ".zarray").exists()


# --------------------------------------------------------------------------------------------
# What `run --overwrite` (and `generate` again) deletes: a symbolic link in the output is a
# link alone, never what it leads to; the run record's folder is the pipeline's (h84b).


def _tree(root: Path) -> dict[str, Any]:
    """Every entry under ``root``, no link followed: a link by where it points, a file by
    its bytes, a folder as such."""
    found: dict[str, Any] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                found[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                found[rel] = ("folder",)
            else:
                found[rel] = ("file", p.read_bytes())
    return found


_LINKED = ["c", "v2 coordinate folder", "chunk file", "input chunk file", "nothing", "outside"]


@pytest.mark.parametrize("linked", _LINKED)
def test_overwrite_refuses_an_output_holding_a_symbolic_link(
    tmp_path: Path, cli, linked: str
) -> None:
    """An output (zarr-python's) holding a symbolic link: its chunk folder ``c`` moved to
    another place, a Zarr v2 coordinate folder ``0`` (``/`` keys), one chunk file, a chunk
    file that is the input's, a link to nothing, a link to a folder of the user's outside
    both stores. `run --overwrite` had deleted the link alone and left what it led to (the
    old chunks, the user's files), exit 0, no word. `plan --dry-run` and the run are refused
    in one line naming the link, where it leads and the fix, before anything is written or
    moved (the output, what the link leads to and the input as they were); once the link
    is removed, `run --overwrite` completes and `verify` passes."""
    inp, out, there = tmp_path / "in.zarr", tmp_path / "out.zarr", tmp_path / "there"
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(inp, x, (10, 10))
    old = np.ones((40, 40), dtype=np.float32)
    if linked == "v2 coordinate folder":
        made = zarr.create_array(
            str(out),
            shape=old.shape,
            chunks=(10, 10),
            dtype="f4",
            zarr_format=2,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        made[:] = old
    else:
        make_array(out, old, (10, 10))
    link = {
        "c": out / "c",
        "v2 coordinate folder": out / "0",
        "chunk file": out / "c" / "0" / "0",
        "input chunk file": out / "c" / "1" / "1",
        "nothing": out / "c" / "3" / "3",
        "outside": out / "c" / "9",
    }[linked]
    if linked in ("c", "v2 coordinate folder", "chunk file"):
        link.rename(there)  # moved, a link left in its place
        target = there
    elif linked == "input chunk file":
        link.unlink()
        target = inp / "c" / "1" / "1"
    elif linked == "nothing":
        link.unlink()
        target = tmp_path / "gone"
    else:
        there.mkdir()
        (there / "mine.txt").write_text("the user's")
        target = there
    link.symlink_to(target)
    output, input_files = _tree(out), stored_files(inp)

    def at_there() -> dict[str, bytes]:  # what the link leads to, the user's, as it is now
        if there.is_dir():
            return stored_files(there)
        return {"": there.read_bytes()} if there.exists() else {}

    theirs = at_there()
    cfg = write_config(tmp_path, inp, out)
    for args in (("--dry-run",), ("--progress", "none")):
        rc, _, err = cli("run", cfg, "--overwrite", *args)
        assert rc == 1, err
        line = one_line_error(err)
        assert (
            f"cannot replace {out}: {link} is a symbolic link to {os.path.realpath(target)}" in line
        )
        assert "remove that link from the output yourself" in line, line
        assert _tree(out) == output and stored_files(inp) == input_files
        assert at_there() == theirs
    e = refused("run", cfg, "--overwrite")
    assert isinstance(e, OutputError), e
    assert (e.link, e.target, e.links) == (str(link), os.path.realpath(target), [str(link)])
    link.unlink()
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert read_array(out).tobytes() == reference(x).tobytes()
    rc, text, err = cli("verify", cfg)
    assert rc == 0, text + err
    assert stored_files(inp) == input_files


def test_overwrite_names_every_link_of_the_output(tmp_path: Path, cli) -> None:
    """Several links in the output: the line names the first (by path) with where it leads,
    two more by their keys, and how many more there are; the error carries them all."""
    inp, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    make_array(inp, np.arange(16, dtype=np.float32).reshape(4, 4), (2, 2))
    make_array(out, np.ones((8, 8), dtype=np.float32), (2, 2))
    names = ["c/0/0", "c/0/1", "c/1/0", "c/1/1", "c/2/2"]
    for name in names:
        (out / name).unlink()
        (out / name).symlink_to(tmp_path / "nowhere")
    cfg = write_config(tmp_path, inp, out)
    e = refused("run", cfg, "--overwrite")
    assert isinstance(e, OutputError), e
    assert e.links == [str(out / n) for n in names], e
    assert (
        f"{out / 'c/0/0'} is a symbolic link to {tmp_path / 'nowhere'}, which is not there "
        "(and so are c/0/1, c/1/0 and 2 more)"
    ) in str(e), e


def test_overwrite_of_an_output_that_is_a_link_to_a_folder_replaces_it_there(
    tmp_path: Path, cli
) -> None:
    """The output's own path a symbolic link to a folder (the store on another disk): the
    link is no link inside the output, and `run --overwrite` replaces the array where it
    leads, the link kept, none of the old chunks left there; `verify` passes."""
    inp, real, out = tmp_path / "in.zarr", tmp_path / "disk" / "out.zarr", tmp_path / "out.zarr"
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(inp, x, (10, 10))
    real.parent.mkdir()
    make_array(real, np.ones((40, 40), dtype=np.float32), (10, 10))
    out.symlink_to(real, target_is_directory=True)
    cfg = write_config(tmp_path, inp, out, output={"chunks": [10, 10], "shards": "none"})
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert out.is_symlink() and os.readlink(out) == str(real)
    left = {str(p.relative_to(real)) for p in real.rglob("*") if p.is_file()}
    assert left == {"zarr.json"} | {f"c/{i}/{j}" for i in range(2) for j in range(2)}, left
    assert read_array(out).tobytes() == reference(x).tobytes()
    rc, text, err = cli("verify", cfg)
    assert rc == 0, text + err


def test_generate_again_refuses_an_input_holding_a_symbolic_link(tmp_path: Path, cli) -> None:
    """`generate` over the input it made, whose ``c`` was moved to another place behind a
    link: it had deleted the link alone, the old chunks left there with no word. Refused in
    one line naming the link, nothing changed; once the link is removed, it generates."""
    cfg = generated_config(tmp_path, {"shape": [40, 40], "chunks": [10, 10]})
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    inp, there = tmp_path / "in.zarr", tmp_path / "there"
    (inp / "c").rename(there)
    (inp / "c").symlink_to(there, target_is_directory=True)
    before, behind = _tree(inp), stored_files(there)
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 1, err
    line = one_line_error(err)
    assert f"cannot generate {inp} again: {inp / 'c'} is a symbolic link to {there}" in line
    assert "remove that link yourself" in line, line
    assert _tree(inp) == before and stored_files(there) == behind
    e = refused("generate", cfg, "--progress", "none")
    assert isinstance(e, InputError) and e.status == "linked", e
    (inp / "c").unlink()
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err


@pytest.mark.parametrize("flag", ["--overwrite", "--resume", ""])
def test_a_users_file_in_the_run_record_folder_is_refused_never_deleted(
    killed: Killed, cli, flag: str
) -> None:
    """A file of the user's put into the interrupted output's ``.pipeline`` folder (the run
    record): `run --overwrite` had deleted it with the record, no word. Every start, and
    `run --dry-run`, refuses in one line naming it (and how many more), the fix (move them
    elsewhere) and what `run` does then, before anything is written; moved out, the resume
    completes the output."""
    killed.restore()
    record = killed.out / ".pipeline"
    (record / "my-notes.txt").write_text("mine")
    for name in ("a", "b", "c"):
        (record / f"more-{name}").mkdir()
    before = _tree(killed.out)
    args = [a for a in (flag,) if a]
    for extra in (("--dry-run",), ("--progress", "none")):
        rc, _, err = cli("run", killed.cfg, *args, *extra)
        assert rc == 1, err
        line = one_line_error(err)
        assert (
            f"the run record folder {record} holds more-a, more-b, more-c and 1 more, which the "
            "pipeline did not write"
        ) in line, line
        assert "move them elsewhere yourself, then `run --resume` finishes it" in line, line
        assert _tree(killed.out) == before
    e = refused("run", killed.cfg, *args)
    assert isinstance(e, OutputError), e
    assert e.strangers == ["more-a", "more-b", "more-c", "my-notes.txt"], e
    for name in ("my-notes.txt", "more-a", "more-b", "more-c"):
        (record / name).rename(killed.d / name)
    rc, _, err = cli("run", killed.cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    assert status(killed.out) == "complete" and not record.exists()
    assert (killed.d / "my-notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "path",
    [
        "aside/notes.txt",
        "done/notes.txt",
        "done/mine/notes.txt",
        "done/8.14.bak",
        "done/1.2x",
        "done/3",
        "done/0.1",
    ],
)
def test_a_users_file_below_the_run_record_s_own_folders_is_refused_never_deleted(
    killed: Killed, cli, path: str
) -> None:
    """h85a: a user's file in a folder of the interrupted output's run record that the
    pipeline makes itself (``.pipeline/aside``, ``.pipeline/done``, or a folder of the user's
    in one): every start had passed it (the check looked at the record's own entries alone)
    and the run's end, or `run --overwrite`, deleted it with that folder. Every start refuses
    in one line naming it by its path in the record, before anything is written; moved out,
    the resume completes the output. h86e: so is a file in ``done`` whose name only begins
    as a marker (``8.14.bak``, ``1.2x``), or is one of another grid (``3`` of this 2-D
    output, ``0.1`` past its one column of blocks): the run's end had deleted it with no
    word, taken for a copy of a marker."""
    killed.restore()
    record = killed.out / ".pipeline"
    (record / path).parent.mkdir(parents=True, exist_ok=True)
    (record / path).write_text("mine")
    named = path.rpartition("/")[0] if path.count("/") > 1 else path
    before = _tree(killed.out)
    for flag in ("--overwrite", "--resume", ""):
        args = [a for a in (flag,) if a]
        rc, _, err = cli("run", killed.cfg, *args, "--progress", "none")
        line = one_line_error(err)
        assert rc == 1 and f"the run record folder {record} holds {named}, which the" in line
        assert "move it elsewhere yourself, then `run --resume` finishes it" in line, line
        assert _tree(killed.out) == before
    e = refused("run", killed.cfg, "--resume")
    assert isinstance(e, OutputError) and e.strangers == [named], e
    kept = killed.d / f"kept-{named.replace('/', '-')}"
    (record / named).rename(kept)
    rc, _, err = cli("run", killed.cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    assert status(killed.out) == "complete" and not record.exists()
    assert kept.exists()


def _other_blocks_config(killed: Killed) -> Path:
    """The config of ``killed`` with blocks of 100 rows: a grid of 4 x 1, where the killed
    run's was 400 x 1 (its markers ``done/4.0`` and on are past it)."""
    doc = yaml.safe_load(killed.cfg.read_text())
    doc["chunking"]["block"] = [100, COLS]
    cfg = killed.d / "blocks-of-100.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def test_an_overwrite_with_other_blocks_takes_the_earlier_layouts_markers_for_its_own(
    killed: Killed, cli
) -> None:
    """The interrupted output's markers (one per row of its one-row blocks, a grid of
    400 x 1 that its run record says) are the pipeline's, though the config now plans
    blocks of 100 rows (a grid of 4 x 1): `run --overwrite` deletes them and starts over,
    where h86e's exact-marker rule, told by the new grid alone, had refused ``done/4.0`` and
    on as files "the pipeline did not write" (h87b). The output is NumPy's, and no record
    stays. A user's file named as a marker past both grids (``done/400.0``, ``done/0.1``)
    is still a user's: refused, never deleted."""
    killed.restore()
    record = killed.out / ".pipeline"
    assert json.loads((record / "run.json").read_text())["block_grid"] == [400, 1]
    assert any(int(n.split(".")[0]) >= 4 for n in os.listdir(record / "done"))  # past 4 x 1
    cfg = _other_blocks_config(killed)
    for name in ("400.0", "0.1"):
        (record / "done" / name).write_text("mine")
    before = _tree(killed.out)
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    line = one_line_error(err)
    assert rc == 1 and f"{record} holds done/0.1, done/400.0, which the" in line, line
    assert _tree(killed.out) == before
    for name in ("400.0", "0.1"):
        (record / "done" / name).rename(killed.d / f"kept-{name}")
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert status(killed.out) == "complete" and not record.exists()
    assert np.array_equal(read_array(killed.out), expected(killed.x), equal_nan=True)
    assert all((killed.d / f"kept-{name}").read_text() == "mine" for name in ("400.0", "0.1"))


def test_an_earlier_versions_record_without_its_grid_keeps_the_planned_grid_alone(
    killed: Killed, cli
) -> None:
    """A run record of an earlier version, which says no grid of blocks (``block_grid``
    dropped, its ``check`` taken again as that version wrote it): a start tells its markers
    by the grid now planned alone, as before h87b, so `run --overwrite` with blocks of 100
    rows refuses the earlier layout's ``done/4.0`` and on, naming them and the fix, before
    anything is written; the resume that the line names finishes it."""
    from pipeline.planning.plan import with_check

    killed.restore()
    record = killed.out / ".pipeline"
    doc = json.loads((record / "run.json").read_text())
    del doc["block_grid"], doc["check"]
    (record / "run.json").write_text(json.dumps(with_check(doc)))
    before = _tree(killed.out)
    rc, _, err = cli("run", _other_blocks_config(killed), "--overwrite", "--progress", "none")
    line = one_line_error(err)
    assert rc == 1 and f"the run record folder {record} holds done/" in line, line
    assert "which the pipeline did not write" in line, line
    assert _tree(killed.out) == before
    rc, _, err = cli("run", killed.cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    assert status(killed.out) == "complete" and not record.exists()


def test_a_grid_said_by_a_record_without_its_check_is_not_taken(killed: Killed, cli) -> None:
    """A run record whose ``check`` was removed and whose ``block_grid`` was made larger
    (1000 x 1 for the run's 400 x 1): its grid is not taken (every record that says one was
    written with its check), so a user's ``done/500.0``, past the grids the run planned, is
    refused at `run --overwrite` with blocks of 100 rows, never deleted (h87g: it was taken
    for a marker of the edited grid and deleted, exit 0)."""
    killed.restore()
    record = killed.out / ".pipeline"
    doc = json.loads((record / "run.json").read_text())
    del doc["check"]
    doc["block_grid"] = [1000, 1]
    (record / "run.json").write_text(json.dumps(doc))
    (record / "done" / "500.0").write_text("mine")
    before = _tree(killed.out)
    rc, _, err = cli("run", _other_blocks_config(killed), "--overwrite", "--progress", "none")
    line = one_line_error(err)
    assert rc == 1 and "which the pipeline did not write" in line, line
    assert _tree(killed.out) == before
    assert (record / "done" / "500.0").read_text() == "mine"


@pytest.mark.parametrize("to", ["input chunk", "nothing"])
def test_a_resume_over_an_output_holding_a_link_to_a_file_is_refused(
    killed: Killed, cli, to: str
) -> None:
    """An interrupted output one of whose chunk files is a symbolic link to the input's
    chunk, or to nothing: the resume had read a block already written through the link (a
    file the pipeline did not write), or replaced the link with no word. Refused before
    anything is written, naming the link and where it leads; the input and output as they
    were."""
    killed.restore()
    inp = killed.d / "in.zarr"
    chunk = sorted(p for p in (killed.out / "c").rglob("*") if p.is_file())[0]
    first = sorted(p for p in (inp / "c").rglob("*") if p.is_file())[0]
    target = {"input chunk": first, "nothing": killed.d / "gone"}[to]
    chunk.unlink()
    chunk.symlink_to(target)
    before, output = stored_files(inp), _tree(killed.out)
    rc, _, err = cli("run", killed.cfg, "--resume", "--progress", "none")
    assert rc == 1, err
    line = one_line_error(err)
    assert f"cannot resume {killed.out}: {chunk} is a symbolic link to {target}" in line, line
    assert "remove that link from the output yourself" in line, line
    assert stored_files(inp) == before and _tree(killed.out) == output


def test_files_beside_several_coordinates_are_all_named(tmp_path: Path, cli) -> None:
    """An output Dataset whose coordinate arrays ``t``, ``x`` and ``y`` (each replaced by
    `run --overwrite`) hold files of the user's, ``x`` six: the line had named ``t``'s alone,
    so each fix met the next refusal. It names every such coordinate with its files (three,
    then how many more); nothing deleted."""
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset(
        {"v": (("t", "y", "x"), np.arange(24, dtype=np.float32).reshape(2, 3, 4))},
        coords={"t": np.arange(2), "y": np.arange(3.0), "x": np.arange(4.0)},
    )
    _, out, cfg = _dataset_run(tmp_path, cli, ds)
    for name in ("t", "y"):
        (out / name / "notes.txt").write_text("mine")
    for i in range(6):
        (out / "x" / f"n{i}.txt").write_text("mine")
    before = _tree(out)
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 1, err
    line = one_line_error(err)
    assert (
        f"the coordinate arrays it replaces hold files beside their metadata and chunks "
        f"({out / 't'} holds notes.txt; {out / 'x'} holds n0.txt, n1.txt, n2.txt and 3 more; "
        f"{out / 'y'} holds notes.txt)"
    ) in line, line
    assert _tree(out) == before
    e = refused("run", cfg, "--overwrite")
    assert isinstance(e, OutputError) and e.arrays == ["t", "x", "y"], e


def test_a_coordinate_holding_a_link_elsewhere_is_not_replaced(tmp_path: Path, cli) -> None:
    """An output Dataset whose coordinate ``t``'s chunk folder was moved elsewhere behind a
    link, the input nowhere near: `run --overwrite`, which replaces the coordinate, had
    deleted the link alone. Refused in one line naming the link and where it leads, before
    anything is written; once the link is removed, it completes."""
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset(
        {"v": (("t", "y"), np.arange(12, dtype=np.float32).reshape(4, 3))},
        coords={"t": np.arange(4)},
    )
    _, out, cfg = _dataset_run(tmp_path, cli, ds)
    there = tmp_path / "there"
    (out / "t" / "c").rename(there)
    (out / "t" / "c").symlink_to(there, target_is_directory=True)
    before, behind = _tree(out), stored_files(there)
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 1, err
    line = one_line_error(err)
    assert f"{out / 't' / 'c'} is a symbolic link to {there}, in a coordinate array" in line
    assert _tree(out) == before and stored_files(there) == behind
    (out / "t" / "c").unlink()
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert xr.open_zarr(out)["t"].values.tolist() == [0, 1, 2, 3]


def _each_command(cfg: Path, commands: list[tuple[str, ...]]) -> Iterator[tuple[int, str, str]]:
    """Each of ``commands`` (a command and its flags) of ``cfg``, in a ``python -m pipeline``
    process of its own (a wait without end ends at the 60 s timeout, failing the test):
    (its exit status, stdout, stderr), an ``error:`` line asserted to come with a non-zero
    exit and with no other."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for command, *flags in commands:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "-q", command, str(cfg), *flags],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        said = "error:" in done.stderr
        assert said is (done.returncode != 0), (command, flags, done.stdout + done.stderr)
        yield done.returncode, done.stdout, done.stderr


#: The commands that read an output that is there: each flag of ``run``, its dry run,
#: ``plan``, and ``verify`` of sampled blocks and of every block.
_READERS: list[tuple[str, ...]] = [
    ("verify",),
    ("verify", "--all"),
    ("run", "--resume", "--progress", "none"),
    ("run", "--no-overwrite", "--progress", "none"),
    ("run", "--progress", "none"),
    ("run", "--dry-run"),
    ("plan",),
]


def _special_path(path: Path, what: str, tmp_path: Path) -> str:
    """``path`` made ``what`` ('fifo', a named pipe; 'link', a symbolic link to a file;
    'socket', a Unix socket, bound and closed): the words a line says it is."""
    if what == "fifo":
        os.mkfifo(path)
        return "a named pipe (FIFO)"
    if what == "link":
        (tmp_path / "notes.txt").write_text("x")
        path.symlink_to(tmp_path / "notes.txt")
        return f"a symbolic link to the file {tmp_path / 'notes.txt'}"
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    return "a socket"


@pytest.mark.parametrize("what", ["fifo", "link", "socket"])
def test_an_output_or_input_path_that_is_no_folder_is_named_for_what_it_is(
    tmp_path: Path, cli, what: str
) -> None:
    """h85a: an output path (output.store) that is a named pipe, a symbolic link to a file or
    a socket had been told "... is a file, not a directory"; an input path (input.store) that
    is a named pipe, "no Zarr array at ...; check input.array". Each command names what it
    is and the fix, in one line, before anything is written; nothing is opened (a named
    pipe's open would wait)."""
    if len(str(tmp_path / "out.zarr")) > 100:  # a Unix socket's path is at most 107 bytes
        pytest.skip("the temporary folder's path is too long for a Unix socket")
    make_array(tmp_path / "in.zarr", np.ones((4, 4), np.float32), (2, 2))
    out = tmp_path / "out.zarr"
    words = _special_path(out, what, tmp_path)
    cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
    for args in (("run", "--progress", "none"), ("plan",), ("verify",)):
        rc, _, err = cli("-q", args[0], cfg, *args[1:])
        line = one_line_error(err)
        assert rc == 1 and f"{out} is {words}, not a directory" in line, (args, line)
        assert line.endswith("remove it yourself, or choose another output.store"), line
    assert os.path.lexists(out) and not os.path.isdir(out)
    # the input path: `generate` (which writes it), then `run`, `plan`, `verify` (which read it)
    inp = tmp_path / "in2.zarr"
    words = _special_path(inp, what, tmp_path).replace("the file ", "")
    gen = {"store": str(inp), "generate": {"shape": [4, 4], "chunks": [2, 2]}}
    cfg = write_config(tmp_path, inp, tmp_path / "out2.zarr", name="gen.yaml", input=gen)
    rc, _, err = cli("-q", "generate", cfg, "--progress", "none")
    line = one_line_error(err)
    assert rc == 1 and f"cannot write the input at {inp}: {inp} is" in line, line
    assert line.endswith("remove it yourself, or choose another input.store"), line
    cfg = write_config(tmp_path, inp, tmp_path / "out2.zarr")
    for args in (("run", "--progress", "none"), ("plan",), ("verify",)):
        rc, _, err = cli("-q", args[0], cfg, *args[1:])
        line = one_line_error(err)
        said = words if what != "link" else f"{words}, a file"
        assert rc == 1 and f"input store {inp} is {said}, not a Zarr store" in line, line
        assert "no Zarr array" not in line, line
    assert not (tmp_path / "out2.zarr").exists()


@pytest.mark.parametrize("part", ["t/zarr.json", "t/.zattrs", "t/c/0", "zarr.json", "v/zarr.json"])
def test_a_dataset_output_key_that_is_a_named_pipe_names_the_output_s_fix(
    tmp_path: Path, cli, part: str
) -> None:
    """h85a: a named pipe at a key of a Dataset output (written by a run of the variable
    ``v`` with its coordinate ``t``): the coordinate's ``zarr.json`` (or a v2 document beside
    it), the group's ``zarr.json``, had been refused by every command, ``run --overwrite``
    too, with an input's fix alone ("restore the document from a good copy"); a coordinate's
    chunk had been refused as "gone or unreadable", its `verify` quoting an input's fix. Each
    reader now names the key and the output's fix, and that fix works."""
    xr = pytest.importorskip("xarray")
    ds = _small_dataset()
    _, out, cfg = _dataset_run(tmp_path, cli, ds)
    (out / part).unlink(missing_ok=True)
    os.mkfifo(out / part)
    readers = [*_READERS, ("run", "--overwrite", "--dry-run")]
    if part != "t/c/0":  # --overwrite deletes a coordinate's chunk: it writes the output
        readers.append(("run", "--overwrite", "--progress", "none"))
    for (command, *flags), (rc, stdout, stderr) in zip(
        readers, _each_command(cfg, readers), strict=True
    ):
        said = f"{part!r} of {out} is a named pipe (FIFO), not a file"
        if part == "t/c/0" and (command == "plan" or "--overwrite" in flags):
            assert rc == 0 and (command != "plan" or said in stdout), (command, stdout)
            continue
        line = one_line_error(stderr)
        assert rc == 1 and said in line, (command, flags, line)
        assert not line.endswith("restore the document from a good copy"), line
        if part.startswith("t/.") or part == "t/zarr.json":
            assert line.endswith(
                f"remove {out / 't'} yourself (the coordinate array 't' that the run writes), "
                "then `run --overwrite` writes it again"
            ), line
        elif part == "t/c/0":
            assert line.endswith(
                "`run --overwrite` writes the output again (it deletes the "
                "coordinate t's files, that one too)"
            ), line
        elif part == "zarr.json":
            assert line.endswith(
                "or remove it yourself: `run --overwrite` then writes the output's group "
                "document again (the input's attributes, not any other it held)"
            ), line
        else:
            assert line.endswith(
                f"or remove {out / 'v'} yourself: `run --overwrite` then writes the output anew"
            ), line
    assert stat.S_ISFIFO(os.lstat(out / part).st_mode)  # untouched
    # the fix the line names
    if part.startswith("t/") and part != "t/c/0":
        shutil.rmtree(out / "t")
    elif part == "v/zarr.json":
        shutil.rmtree(out / "v")
    elif part == "zarr.json":
        (out / part).unlink()
    fixed = [("run", "--overwrite", "--progress", "none"), ("verify", "--all")]
    for rc, _, stderr in _each_command(cfg, fixed):
        assert rc == 0, stderr
    back = xr.open_zarr(out)
    assert back["t"].values.tolist() == [0, 1, 2, 3]
    assert np.array_equal(back["v"].values, reference(ds["v"].values))


@pytest.mark.parametrize(
    "part", ["a shard", "a link", "zarr.json", ".pipeline/lock", ".pipeline/run.json"]
)
def test_an_output_key_that_is_a_named_pipe_is_refused_by_every_reader_without_waiting(
    tmp_path: Path, part: str
) -> None:
    """h84a: a complete output's shard file, its ``zarr.json``, or a part of a run record in
    it (the lock, ``run.json``) that is a named pipe: ``verify`` (sampled and ``--all``) had
    waited on a shard's without end, past Ctrl-C and SIGTERM; ``run`` had refused it for its
    files' sizes, naming that ``verify``, and waited on a ``zarr.json`` or a lock; the run
    record's ``run.json`` had been named as a chunk to put back. Now each command refuses it
    in one line naming it (``plan`` in its row too, exiting 0 where ``run --overwrite`` writes
    the output: a shard's), never waits, and the fix the line names works. A shard that is a
    symbolic link to a named pipe (h84e): its line had named `run --overwrite` alone, which
    refuses an output holding a link; it names removing the link first. A part of the run
    record: ``verify`` says the run's line too, as it does of every record every run refuses
    (h87d: it had passed the output, its data as computed)."""
    x = np.arange(1, 65, dtype=np.float32).reshape(8, 8)
    store, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    make_array(store, x, (4, 4))
    cfg = write_config(tmp_path, store, out, chunking={"block": [4, 8]})
    rc, _, err = next(_each_command(cfg, [("run", "--progress", "none")]))
    assert rc == 0, err
    shards = sorted(p.relative_to(out).as_posix() for p in (out / "c").rglob("*") if p.is_file())
    key = shards[-1] if part in ("a shard", "a link") else part
    (out / key).parent.mkdir(exist_ok=True)
    (out / key).unlink(missing_ok=True)
    pipe = tmp_path / "pipe" if part == "a link" else out / key
    os.mkfifo(pipe)
    if part == "a link":
        (out / key).symlink_to(pipe)
    for (command, *flags), (rc, stdout, stderr) in zip(
        _READERS, _each_command(cfg, _READERS), strict=True
    ):
        if command == "plan" and part == "a shard":  # `run --overwrite` writes it: its row
            assert rc == 0 and f"{key!r} of {out} is a named pipe (FIFO)" in stdout, stdout
            continue  # (a link's: refused, as `run --overwrite` refuses it)
        line = one_line_error(stderr)
        assert rc == 1 and "named pipe (FIFO)" in line, (command, flags, line)
        if part == "a link":
            assert f"{key!r} of {out} is a named pipe (FIFO) (a symbolic link to {pipe})" in line
            assert (
                "; remove the link first (a replacing run refuses an output holding one), " in line
            )
            assert line.endswith(
                "then `run --overwrite` writes the output again (it deletes the "
                "array's files, that one too)"
            ), line
        elif part == "a shard":
            assert f"{key!r} of {out} is a named pipe (FIFO), not a file" in line, line
            assert line.endswith(
                "`run --overwrite` writes the output again (it deletes the "
                "array's files, that one too)"
            ), line
        elif part == "zarr.json":
            assert f"'zarr.json' of {out} is a named pipe (FIFO), not a file" in line, line
            assert f"or remove {out} yourself: a run then writes the output anew" in line, line
        else:
            assert f"is damaged: {key} is a named pipe (FIFO) where the run keeps a file" in line
            assert f"remove {out / key} yourself, then it is complete" in line, line
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)  # untouched
    # the fix the line names
    if part == "a link":
        (out / key).unlink()
        fixed = [("run", "--overwrite", "--progress", "none"), ("verify", "--all")]
    elif part == "a shard":
        fixed = [("run", "--overwrite", "--progress", "none"), ("verify", "--all")]
    elif part == "zarr.json":
        shutil.rmtree(out)
        fixed = [("run", "--progress", "none"), ("verify", "--all")]
    else:
        (out / key).unlink()
        fixed = [("run", "--resume", "--progress", "none"), ("verify", "--all")]
    for rc, _, stderr in _each_command(cfg, fixed):
        assert rc == 0, stderr
    assert np.array_equal(read_array(out), reference(x))
