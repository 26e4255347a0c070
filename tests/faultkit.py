"""Helpers of the fault tests: real processes, real signals, and byte-for-byte store comparisons.

Nothing here fakes a failure: the CLI runs as ``python -m pipeline`` in its own process group,
is stopped with real signals once the output's run record shows some (not all) blocks written,
and external Dask schedulers and workers are real ``dask`` processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil
import zarr
from zarr.codecs import ZstdCodec

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def env() -> dict[str, str]:
    """The environment of a child process: this checkout importable, same interpreter setup."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH", "")) if p)
    e.setdefault("DASK_DISTRIBUTED__WORKER__DAEMON", "False")
    return e


#: The returncode of ``python -m pipeline`` (the program, not a caller's ``main``) stopped by a
#: Ctrl-C (SIGINT): after its line and its orderly stop it dies of SIGINT, as Python does on an
#: uncaught ``KeyboardInterrupt``, so that a shell's ``$?`` is 130 and a script running it stops.
DIED_OF_SIGINT = -signal.SIGINT


def stopped_status(sig: int) -> int:
    """The returncode of ``python -m pipeline`` stopped by the signal ``sig``: death by SIGINT
    (:data:`DIED_OF_SIGINT`), or exit status 130 after a SIGTERM."""
    return DIED_OF_SIGINT if sig == signal.SIGINT else 130


def run_python(
    argv: list[str | Path], cwd: Path, environ: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python ARGV`` in a process of its own (``environ``, by default :func:`env`), run in
    ``cwd`` to its end; its output captured as text."""
    return subprocess.run(
        [sys.executable, *map(str, argv)],
        capture_output=True,
        text=True,
        env=env() if environ is None else environ,
        cwd=cwd,
        timeout=timeout,
    )


def many_blocks_config(inp: Path, out: Path, **sections: Any) -> dict[str, Any]:
    """The config that runs :func:`many_blocks_input`'s ``inp`` to ``out`` on the CPU, one
    block per stored row (multiply by 2, output chunks of 1024), ``sections`` added or
    replacing its own."""
    return {
        "input": {"store": str(inp)},
        "output": {"store": str(out), "chunks": [1, 1024]},
        "stages": [{"op": "multiply", "factor": 2}],
        "backend": "cpu",
        "chunking": {"block": [1, 4096]},
        **sections,
    }


def many_blocks_input(path: Path, rows: int, cols: int = 4096, seed: int = 0) -> np.ndarray:
    """A float32 input of ``rows`` stored chunks of one row each (one block per row when
    ``chunking.block`` is ``[1, cols]``), written by Zarr itself. Some values are NaN, +-inf,
    or large enough that the stages overflow them to inf, so counts are worth checking."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    flat = x.reshape(-1)
    special = rng.choice(flat.size, size=4 * rows, replace=False).reshape(4, rows)
    flat[special[0]] = np.nan
    flat[special[1]] = np.inf
    flat[special[2]] = -np.inf
    flat[special[3]] = 1e30  # (5e30)**2 overflows float32
    arr = zarr.create_array(
        store=str(path),
        shape=x.shape,
        dtype=x.dtype,
        chunks=(1, cols),
        compressors=ZstdCodec(level=1),
        overwrite=True,
    )
    arr[...] = x
    return x


def cli_process(
    config: Path, *args: str, cwd: Path | None = None, command: str = "run"
) -> subprocess.Popen:
    """``python -m pipeline COMMAND CONFIG ARGS`` (``run`` by default) in a new process group
    (killed with it later)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", command, str(config), "--progress", "none", *args],
        env=env(),
        cwd=str(cwd or ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def marker_names(output: Path) -> list[str]:
    """The names of the blocks the run record of ``output`` marks as written ('0.3'): its
    markers, not the hidden file of a marker whose write a kill cut short (``.NAME.tmp-...``,
    which the run never reads)."""
    try:
        return sorted(n for n in os.listdir(output / ".pipeline" / "done") if not n.startswith("."))
    except FileNotFoundError:
        return []


def markers(output: Path) -> int:
    """How many blocks the run record of ``output`` marks as written (:func:`marker_names`)."""
    return len(marker_names(output))


def wait_for_markers(
    proc: subprocess.Popen | None, output: Path, at_least: int, timeout: float = 180.0
) -> int:
    """Poll until ``output`` has ``at_least`` block markers; the count, or -1 when ``proc``
    ended first (the run was too quick to interrupt)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = markers(output)
        if n >= at_least:
            return n
        if proc is not None and proc.poll() is not None:
            return -1
        time.sleep(0.002)
    raise AssertionError(f"no {at_least} block markers in {output} after {timeout} s")


def chunk_files(store: Path) -> int:
    """Chunk (or shard) files under ``store``: every file but the metadata documents."""
    meta = {"zarr.json", ".zarray", ".zattrs", ".zgroup"}
    return sum(
        1 for _, _, files in os.walk(store) for f in files if f not in meta and ".tmp" not in f
    )


def wait_for_chunk_files(
    proc: subprocess.Popen, store: Path, at_least: int, timeout: float = 60.0
) -> int:
    """Poll until ``store`` holds ``at_least`` chunk files (units a ``generate`` wrote); the
    count, or -1 when ``proc`` ended first (too quick to interrupt)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = chunk_files(store)
        if n >= at_least:
            return n
        if proc.poll() is not None:
            return -1
        time.sleep(0.002)
    raise AssertionError(f"no {at_least} chunk files in {store} after {timeout} s")


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_gone(procs: list[psutil.Process], timeout: float = 20.0) -> list[psutil.Process]:
    """The processes of ``procs`` still running after ``timeout`` seconds (zombies count as
    gone)."""
    deadline = time.monotonic() + timeout
    alive = procs
    while time.monotonic() < deadline:
        alive = [p for p in procs if _running(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def pid_gone(pid: int, timeout: float = 20.0) -> bool:
    """Whether the process ``pid`` has ended (or is a zombie) within ``timeout`` seconds."""
    try:
        return not wait_gone([psutil.Process(pid)], timeout)
    except psutil.NoSuchProcess:
        return True


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of a process group this test started (cleanup)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.communicate(timeout=10)


def end_process(proc: subprocess.Popen) -> None:
    """Cleanup of a process a test started, in whatever state the test left it: its process
    group SIGKILLed if it still runs (not when it has ended: what it left running is for the
    test to see), then its pipes closed. A pipe left open (a test failing after ``poll()``
    saw the end, before ``communicate()``) warns as an unclosed file in whichever later test
    the garbage collector happens to run in, and fails that test. A process started in the
    test's own group is SIGKILLed alone."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
        kill_group(proc)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


@dataclass
class Stopped:
    """A run stopped by a signal: exit status, output, and the processes it had started."""

    returncode: int
    stdout: str
    stderr: str
    markers_at_signal: int
    children: list[psutil.Process]


def run_and_signal(
    config: Path,
    output: Path,
    sig: int,
    *,
    at_least: int = 3,
    group: bool = False,
    cwd: Path | None = None,
    args: tuple[str, ...] = (),
) -> Stopped | None:
    """Start the CLI, send ``sig`` (to its process group when ``group``: what Ctrl-C at a
    terminal does) once ``at_least`` blocks are marked, and wait for it to end. None when the
    run finished before it could be signalled (make the input larger)."""
    proc = cli_process(config, *args, cwd=cwd)
    try:
        n = wait_for_markers(proc, output, at_least)
        if n < 0:
            proc.communicate(timeout=60)
            return None
        children = descendants(proc.pid)
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        # generous: a busy machine stops workers slowly (each may take WORKER_STOP_TIMEOUT)
        out, err = proc.communicate(timeout=300)
        return Stopped(proc.returncode, out, err, n, children)
    finally:
        end_process(proc)


def kill_procs(procs: list[psutil.Process]) -> None:
    """SIGKILL those of ``procs`` still running (cleanup of processes a test started)."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if _running(p):
                p.kill()


def killed_midway(
    config: Path,
    marked: Path,
    prepare: Callable[[int], T],
    rows: int,
    *,
    cwd: Path,
    tries: int = 3,
    check: Callable[[Stopped, list[psutil.Process]], None] | None = None,
    args: tuple[str, ...] = (),
) -> tuple[int, T]:
    """Run ``config`` in the CLI and kill it (SIGKILL) once some blocks are marked at
    ``marked`` (the output, or its array), over an input of ``rows`` one-row blocks that
    ``prepare(rows)`` makes first (with whatever else the caller needs before the run: an
    uninterrupted run's output set aside); where the run finished before the kill, or its
    output has every block or none marked, again with an input four times larger, ``tries``
    times at most (a machine fast enough to finish first). The processes the killed run had
    started are waited for and killed where left; ``check`` is given the stopped run and
    those that outlived it; ``args``: the CLI's own (``--overwrite``). Returns the rows of
    the input the run was killed over and what ``prepare`` returned for it; the test fails
    where every run finished before the kill."""
    import pytest

    for _ in range(tries):
        made = prepare(rows)
        stopped = run_and_signal(config, marked, signal.SIGKILL, cwd=cwd, args=args)
        if stopped is not None:
            left = wait_gone(stopped.children, timeout=30)
            kill_procs(left)
            if check is not None:
                check(stopped, left)
            if 0 < markers(marked) < rows:
                return rows, made
        rows *= 4
    pytest.fail("could not stop a run midway: every run finished before the kill")


# --------------------------------------------------------------------------------------------
# Comparing stores.


def expected(x: np.ndarray) -> np.ndarray:
    """The NumPy reference ``((x*5)**2)*2``, overflowing to inf silently as IEEE says."""
    from tests.conftest import reference

    with np.errstate(over="ignore", invalid="ignore"):
        return reference(x)


TIMING_ATTRS = ("started", "finished")


def stored_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def file_states(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``root``: (mtime in ns, inode, bytes)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[str((Path(dirpath) / d).relative_to(root)) + "/"] = (0, 0, b"")
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_mtime_ns, st.st_ino, p.read_bytes())
    return out


def _metadata_without_timing(raw: bytes) -> Any:
    doc = json.loads(raw)
    attrs = doc.get("attributes", {})
    meta = json.loads(attrs["pipeline"]) if "pipeline" in attrs else {}  # JSON text
    attrs["pipeline"] = meta
    for k in TIMING_ATTRS:
        meta.pop(k, None)
    meta.pop("check", None)  # a digest of the fields above too, timing among them
    summary = meta.get("summary")
    if isinstance(summary, dict):
        summary.pop("seconds", None)
    return doc


def assert_same_stores(a: Path, b: Path) -> None:
    """The same files with the same bytes; the array metadata may differ only in the run's
    timing attributes (when it started and finished, how long it computed)."""
    fa, fb = stored_files(a), stored_files(b)
    assert sorted(fa) == sorted(fb), (sorted(set(fa) ^ set(fb)))[:10]
    differ = []
    for name, data in fa.items():
        if name.endswith("zarr.json"):
            if _metadata_without_timing(data) != _metadata_without_timing(fb[name]):
                differ.append(name)
        elif data != fb[name]:
            differ.append(name)
    assert not differ, f"{len(differ)} stored files differ, e.g. {differ[:5]}"
    ya = zarr.open_array(str(a), mode="r")[...]
    yb = zarr.open_array(str(b), mode="r")[...]
    assert ya.dtype == yb.dtype
    assert np.array_equal(ya.view(np.uint8), yb.view(np.uint8))


def status(output: Path, array: str = "") -> str | None:
    arr = zarr.open_array(str(output), path=array, mode="r")
    text = dict(arr.attrs).get("pipeline")  # the run's record, JSON text
    return None if text is None else json.loads(text).get("status")


def copy_store(src: Path, dst: Path) -> None:
    """Replace ``dst`` with a copy of ``src`` that keeps modification times (copy2)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=shutil.copy2)


def ctrl_c_script(
    module: str, name: str, overwrite: bool | None, command: str | None = None
) -> str:
    """A script that runs ``pipeline.run(sys.argv[1], overwrite=...)`` with a real SIGINT
    sent to itself where ``module``'s ``name`` (a function, or ``Class.method``) is called,
    then that call made (a watcher of the files could miss such a moment on a busy machine:
    CI did, twice); it prints ``{"state": ..., "what": ..., "str": ...}`` of the interrupt
    (``state`` None when the run ended). With ``command`` (``"generate"``, ``"run"``) it runs
    that command of the command line on the config instead, and prints ``{"rc": ...}``."""
    owner, _, attr = name.rpartition(".")
    of_class = f"owner = getattr(owner, {owner!r})" if owner else ""
    return f"""
import importlib, json, os, signal, sys, time
import pipeline

owner = importlib.import_module({module!r})
{of_class}
original = getattr(owner, {attr!r})


def ctrl_c_then(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # the KeyboardInterrupt comes here
    return original(*args, **kwargs)


if __name__ == "__main__":
    # Ctrl-C raises KeyboardInterrupt however this process was started (a shell's background
    # job inherits SIGINT ignored, as a fresh-clone test run in the background did)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    setattr(owner, {attr!r}, ctrl_c_then)
    command = {command!r}
    if command is not None:
        from pipeline.cli import main

        rc = main([command, sys.argv[1], "--progress", "none"])
        print(json.dumps({{"rc": rc}}), flush=True)
        sys.exit(0)
    try:
        pipeline.run(sys.argv[1], overwrite={overwrite})
        doc = {{"state": None}}
    except KeyboardInterrupt as e:
        doc = {{"state": getattr(e, "state", None), "what": getattr(e, "what", None)}}
        doc["str"] = str(e)
    print(json.dumps(doc), flush=True)
"""


@contextlib.contextmanager
def set_aside(store: Path, *names: str) -> Iterator[None]:
    """Within this block ``store`` (or only its entries ``names``) may be rewritten: it is
    moved aside whole, a copy put in its place, and moved back afterwards with its files as
    they were (a copy would make new files, which the input's identity tells from the old
    ones)."""
    entries = [store / n for n in names] if names else [store]
    for p in entries:
        aside = p.with_name(p.name + ".aside")
        p.rename(aside)
        (shutil.copytree if aside.is_dir() else shutil.copy2)(aside, p)
    try:
        yield
    finally:
        for p in entries:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            p.with_name(p.name + ".aside").rename(p)


@contextlib.contextmanager
def undeletable(path: Path) -> Iterator[None]:
    """Within this block the file ``path`` cannot be deleted: for root, whom permissions do
    not stop, it is made immutable (``chattr +i``; the test is skipped where that cannot be
    done), for anyone else its folder is made read-only. Deletable again afterwards."""
    if os.geteuid() != 0:
        mode = path.parent.stat().st_mode
        path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(mode)
        return
    import pytest

    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode:
        pytest.skip(f"cannot make {path} immutable here (chattr +i)")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@contextlib.contextmanager
def undeletable_within(store: Path, file: Path) -> Iterator[None]:
    """Within this block the file ``file`` inside ``store`` cannot be deleted (root, whom
    permissions do not stop: immutable, ``chattr +i``, the test skipped where that cannot be
    done; anyone else: its folder read-only), wherever under ``store`` it is moved
    meanwhile; every file and folder of ``store`` deletable again afterwards."""
    import pytest

    chattr = shutil.which("chattr")
    if os.geteuid() == 0:
        if (
            chattr is None
            or subprocess.run([chattr, "+i", str(file)], capture_output=True).returncode
        ):
            pytest.skip(f"cannot make {file} immutable here (chattr +i)")
    else:
        file.parent.chmod(0o555)
    try:
        yield
    finally:
        for p in [store, *store.rglob("*")]:
            if p.is_symlink():
                continue
            if os.geteuid() == 0 and p.is_file():
                subprocess.run([chattr, "-i", str(p)], capture_output=True)  # type: ignore[list-item]
            elif p.is_dir():
                p.chmod(0o755)


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """Within this block nothing can be created in the folder ``folder`` (what a resume meets
    in an output another user's run began): for root, whom permissions do not stop, it is
    made immutable (``chattr +i``; the test is skipped where that cannot be done), for anyone
    else read-only. Writable again afterwards."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    import pytest

    chattr = shutil.which("chattr")
    made = (
        chattr is not None
        and not subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode
    )
    if not made:
        pytest.skip(f"cannot make {folder} immutable here (chattr +i)")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


# --------------------------------------------------------------------------------------------
# An external Dask cluster: `dask scheduler` and `dask worker` processes.


@dataclass
class External:
    address: str
    scheduler: subprocess.Popen
    workers: subprocess.Popen


@contextlib.contextmanager
def external_cluster(
    tmp: Path,
    nworkers: int = 2,
    scheduler_env: dict[str, str] | None = None,
    worker_args: tuple[str, ...] = (),
    worker_env: dict[str, str] | None = None,
) -> Iterator[External]:
    """A scheduler and ``nworkers`` single-thread workers (nanny processes), each a real
    process started with Dask's own command line; all killed at the end. ``scheduler_env``
    and ``worker_env`` are added to their environments (Dask's config, a preload's), and
    ``worker_args`` to the workers' command line."""
    sched_file = tmp / "scheduler.json"
    log_s = open(tmp / "scheduler.log", "w")  # noqa: SIM115
    log_w = open(tmp / "workers.log", "w")  # noqa: SIM115
    common: dict[str, Any] = dict(env=env(), start_new_session=True, stdin=subprocess.DEVNULL)
    sched = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--scheduler-file",
            str(sched_file),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            ":0",
        ],
        stdout=log_s,
        stderr=subprocess.STDOUT,
        **{**common, "env": {**env(), **(scheduler_env or {})}},
    )
    workers = None
    try:
        deadline = time.monotonic() + 60
        address = None
        while time.monotonic() < deadline and address is None:
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                address = json.loads(sched_file.read_text())["address"]
            time.sleep(0.05)
        assert address, (tmp / "scheduler.log").read_text()
        workers = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                "--scheduler-file",
                str(sched_file),
                "--nworkers",
                str(nworkers),
                "--nthreads",
                "1",
                "--no-dashboard",
                *worker_args,
            ],
            stdout=log_w,
            stderr=subprocess.STDOUT,
            **{**common, "env": {**env(), **(worker_env or {})}},
        )
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(nworkers, timeout=60)
        yield External(address, sched, workers)
    finally:
        for p in (workers, sched):
            if p is not None:
                kill_group(p)
        log_s.close()
        log_w.close()


def error_of(*args: Any) -> Any:
    """The error ``python -m pipeline ARGS`` raises, or None when it succeeds: the command line
    run in this process with ``--debug``, which lets the error through instead of printing its
    line (that the line is what the command prints without ``--debug``: tests/test_errors.py).
    An error's message is asserted to be one line."""
    from pipeline.cli import main
    from pipeline.errors import PipelineError

    try:
        rc = main(["--debug", *(str(a) for a in args)])
    except PipelineError as e:
        assert str(e) and "\n" not in str(e), f"not one line: {e!r}"
        # without its traceback and the error it replaced, whose frames would keep what the
        # command made (a cluster's sockets) alive past the test
        e.__context__ = e.__cause__ = None
        return e.with_traceback(None)
    assert rc == 0, f"exit status {rc} without a PipelineError"
    return None


def refused(*args: Any) -> Any:
    """The :class:`~pipeline.errors.PipelineError` that ``python -m pipeline ARGS`` is refused
    with (see :func:`error_of`); fails the test when the command succeeds."""
    e = error_of(*args)
    assert e is not None, f"not refused: pipeline {' '.join(str(a) for a in args)}"
    return e


def one_line_error(err: str) -> str:
    """The single stderr line of a refused run (asserted to be exactly one, no traceback)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def cpu_cluster_plan(
    workers: int = 1, protocol: str = "tcp", dashboard: str = "", timeout: float = 10.0
) -> Any:
    """A local CPU cluster's plan of ``workers`` workers of one thread each (``tcp``: worker
    processes started by distributed's nanny; ``inproc``: threads of this process), for the
    tests that start one with ``pipeline.running.cluster.connect``."""
    from pipeline.planning import ClusterPlan

    return ClusterPlan(
        scheduler="local",
        backend="cpu",
        gpus=(),
        workers=workers,
        threads_per_worker=1,
        workers_per_gpu=1,
        device_budget=None,
        host_budget=None,
        protocol=protocol,
        timeout=timeout,
        dashboard=dashboard,
    )


#: Where :func:`killed_generation` kills a ``pipeline generate``, each a state a generation
#: stopped before it finished leaves: its lock taken, nothing else done (``lock``); the array's
#: folder cleared, no metadata written (``cleared``); one of the two entries of an earlier
#: input deleted (its ``zarr.json`` or its chunks' folder ``c``: ``half-cleared``); the
#: metadata written without its attributes (a Zarr v2 ``.zarray`` without its ``.zattrs``:
#: ``no-attributes``); the metadata, marked unfinished, and no chunk (``metadata``); some of
#: its units written (``units``); every unit written, not yet marked complete (``unmarked``).
STOPPED_GENERATIONS = (
    "lock",
    "cleared",
    "half-cleared",
    "no-attributes",
    "metadata",
    "units",
    "unmarked",
)

_KILLED_GENERATE = """
import os, signal, sys
from pipeline.cli import main
from pipeline.running import generate
from pipeline.store import arrays
from pipeline.store.location import Location

config, at, units = sys.argv[1], sys.argv[2], int(sys.argv[3])


def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


if at == "lock":
    generate._generate_locked = kill
elif at == "cleared":
    arrays.create_generated = kill
elif at == "half-cleared":
    delete = Location.delete
    deleted = []

    def delete_then_kill(self, key, *args, **kwargs):
        if key.rstrip("/").rpartition("/")[2] in ("zarr.json", "c"):  # not a write probe
            if deleted:  # one entry of the earlier array deleted (zarr.json or its chunks)
                kill()
            deleted.append(key)
        return delete(self, key, *args, **kwargs)

    Location.delete = delete_then_kill
elif at == "no-attributes":
    create = arrays.create_generated

    def create_then_kill(store, path, *args, **kwargs):
        create(store, path, *args, **kwargs)
        os.remove(os.path.join(str(store.root), path, ".zattrs"))
        kill()

    arrays.create_generated = create_then_kill
elif at == "metadata":
    generate._generate_units = kill
elif at == "units":
    write = generate.generate_unit
    written = []

    def write_then_kill(spec, unit):
        n = write(spec, unit)
        written.append(unit)
        if len(written) == units:
            kill()
        return n

    generate.generate_unit = write_then_kill
elif at == "unmarked":
    generate.mark_generated = kill
else:
    raise SystemExit(f"no such point: {at}")
main(["generate", config, "--progress", "none"])
print("not killed", flush=True)
"""


def killed_generation(config: Path, at: str, cwd: Path, units: int = 3) -> int:
    """Run ``pipeline generate CONFIG`` in a process of its own and SIGKILL it (it kills
    itself) at the point ``at`` of :data:`STOPPED_GENERATIONS` (``units``: how many units it
    writes first, for ``units``), deterministically, whatever the machine's load; the pid
    of the killed process. ``no-attributes`` wants a Zarr v2 input on a local store,
    ``half-cleared`` a Zarr v3 input generated before."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_GENERATE, str(config), at, str(units)],
        env=env(),
        cwd=str(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        end_process(proc)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, out, err)
    return proc.pid


#: A process that holds the generation lock of the array ``argv[2]`` of the store ``argv[1]``
#: (storage options ``argv[3]``, JSON) as ``generate`` takes it, says 'held', and sleeps.
_HOLD_INPUT_LOCK = """
import json, sys, time
from pipeline.store.ledger import InputLock
from pipeline.store.location import Location
InputLock(Location.of(sys.argv[1], json.loads(sys.argv[3])), sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def holding_input_lock(
    store: str, array: str, options: dict[str, Any] | None = None
) -> Iterator[subprocess.Popen]:
    """A process of its own holding the generation lock of the array ``array`` of ``store``
    (``InputLock.acquire``, as ``generate`` takes it) while the block runs; killed (SIGKILL)
    after it, so that its lock is one a stopped process left."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_INPUT_LOCK, store, array, json.dumps(options or {})],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.communicate(timeout=30)  # (its pipe closed too)


#: A process that holds the OS lock of the output store ``argv[1]`` as a run takes it
#: (``Ledger.acquire``), says 'held', and gives it up when its stdin closes.
_HOLD_OUTPUT_LOCK = """
import sys
from pipeline.store.ledger import Ledger
from pipeline.store.location import Location
Ledger(Location.of(sys.argv[1]), "").acquire()
print("held", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def holding_output_lock(output: Path) -> Iterator[subprocess.Popen]:
    """A real process of its own holding the lock of the output store ``output``, as a run
    holds it, while the block runs; after the block its stdin is closed, and it gives the lock
    up and ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_OUTPUT_LOCK, str(output)],
        env=env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.communicate(timeout=60)


#: A ``pipeline COMMAND CONFIG ARGS`` (``argv[2:]``) that stops once it holds its lock, before
#: it writes anything: a run before it creates its output (``output.create``, which replaces
#: what is there), a generation before it clears its array (``generate._generate_locked``);
#: with ``argv[1]`` 'before', once it has made every check and is about to take its lock
#: (``Ledger.acquire``); with ``argv[1]`` 'MODULE:NAME', at its call of that function (its
#: lock taken long before: ``pipeline.running.output:mark_complete``). It says 'locked' and
#: waits for a line on its stdin, then goes on.
_PAUSED = """
import importlib, sys
from pipeline.cli import main
from pipeline.running import generate, output
from pipeline.store import ledger

where = sys.argv.pop(1)
before = where == "before"
command = sys.argv[1]


def paused(plain):
    def wait_then(*args, **kwargs):
        print("locked", flush=True)
        sys.stdin.readline()
        return plain(*args, **kwargs)

    return wait_then


if before:
    ledger.Ledger.acquire = paused(ledger.Ledger.acquire)
elif ":" in where:
    module, _, name = where.partition(":")
    module = importlib.import_module(module)
    setattr(module, name, paused(getattr(module, name)))
elif command == "generate":
    generate._generate_locked = paused(generate._generate_locked)
else:
    output.create = paused(output.create)
sys.exit(main([*sys.argv[1:], "--progress", "none"]))
"""


@contextlib.contextmanager
def paused_at_lock(
    command: str, config: Path, *args: str, cwd: Path, before: bool = False, at: str = ""
) -> Iterator[subprocess.Popen]:
    """``pipeline COMMAND CONFIG ARGS`` (``run`` or ``generate``) in a process of its own,
    held once it has taken its lock (the output's, or the generation's) and before it writes
    anything (``before``: its checks made, just before it takes its lock; ``at``, 'MODULE:NAME':
    at its calls of that function, whatever it wrote before), while the block
    runs: no timing, the process says when it is there. Write a line to its stdin to let it
    go on (:func:`go_on`); it is ended (its pipes closed) after the block."""
    proc = paused_process(command, config, *args, cwd=cwd, before=before, at=at)
    try:
        assert proc.stdout is not None
        said = proc.stdout.readline()
        if said.strip() != "locked":
            out, err = proc.communicate(timeout=300)
            raise AssertionError(f"not paused at its lock ({proc.returncode}): {said}{out}{err}")
        yield proc
    finally:
        end_process(proc)


def paused_process(
    command: str,
    config: Path,
    *args: str,
    cwd: Path,
    before: bool = False,
    at: str = "",
    sigint_ignored: bool = False,
) -> subprocess.Popen:
    """The process :func:`paused_at_lock` starts, started, not waited for: it writes the line
    'locked' to its stdout once it is held there (a test waiting on something else first
    reads it itself); the caller ends it (:func:`end_process`). ``sigint_ignored``: begun
    with SIGINT ignored, as a shell starts a script's background job (``&``)."""
    where = at or ("before" if before else "after")
    ignored = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen(
        [sys.executable, "-c", _PAUSED, where, command, str(config), *args],
        env=env(),
        cwd=str(cwd),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ignored,
    )


#: ``python -m pipeline`` (argv[2:]) whose output's "complete" mark is held just before it
#: writes the output's ``zarr.json`` (inside ``output.mark_complete``: after every check the
#: mark makes) until the file ``argv[1].release`` exists, writing ``argv[1].held`` as it begins
#: to wait; :func:`held_at_complete_mark` puts in the code that wraps that write.
_HELD_AT_COMPLETE_MARK = """
import os, sys
from pipeline.running import output

gate = sys.argv.pop(1)
marking, held = [], []
plain_mark = output.mark_complete


def mark_complete(*args, **kwargs):
    marking.append(1)
    return plain_mark(*args, **kwargs)


def hold(the_document):
    # whether this write is the one held: the first of the output's zarr.json in the mark
    if marking and not held and the_document:
        held.append(1)
        open(gate + ".held", "w").close()
        return True
    return False


def released():
    return os.path.exists(gate + ".release")


output.mark_complete = mark_complete
# the write, wrapped
from pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def held_at_complete_mark(write: str) -> str:
    """The script :data:`_HELD_AT_COMPLETE_MARK` with ``write``: Python that wraps the write
    of the output's ``zarr.json`` on its store (a local folder's, S3's), asking ``hold(it is
    that write)`` and, where True, waiting until ``released()``."""
    return _HELD_AT_COMPLETE_MARK.replace("# the write, wrapped\n", write.lstrip("\n"))


def go_on(held: subprocess.Popen) -> tuple[str, str]:
    """Let a process :func:`paused_at_lock` holds go on, and wait for its end: its stdout
    and stderr."""
    assert held.stdin is not None
    held.stdin.write("\n")
    held.stdin.flush()
    return held.communicate(timeout=300)


def held_unit_write(
    tmp_path: Path, command: list[str], meanwhile: Callable[[], None]
) -> tuple[int, str]:
    """``pipeline COMMAND`` (``command``: ``["run", config]``, ``["generate", config]``) on a
    joined cluster whose one worker thread holds its first block's (unit's) write at its
    first unit, after the write's check of the lock (``tests/slow_blocks.py``),
    ``meanwhile()`` called then, the write released after it: the command's exit status and
    stderr (``<tmp_path>/hold.done`` is there once the held write is done)."""
    hold = tmp_path / "hold"
    hold.touch()
    with external_cluster(
        tmp_path,
        nworkers=1,
        worker_args=("--preload", "tests.slow_blocks"),
        worker_env={"HOLD_BLOCK_FILE": str(hold), "HOLD_BLOCK_AT": "unit"},
    ) as ext:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *command, "--progress", "none"]
            + ["--scheduler", ext.address],
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not Path(f"{hold}.held").exists():
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
            meanwhile()
            Path(f"{hold}.release").touch()
            _, err = proc.communicate(timeout=120)
        finally:
            end_process(proc)
    return proc.returncode, err
