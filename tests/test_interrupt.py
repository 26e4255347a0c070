"""Ctrl-C at any moment, and nothing but the pipeline's own lines on stderr.

Real runs of ``python -m pipeline`` in their own process group, with a LocalCluster of worker
processes, stopped with real SIGINTs (to the whole group, as a terminal sends Ctrl-C, or typed as
``^C`` at a real pseudo-terminal) while the cluster starts, while blocks are computed, and again
and again while the run stops. Every wait is on a condition, with bounds meant for a busy
2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.running import cluster
from tests.conftest import STAGES, make_array, read_array, reference
from tests.faultkit import (
    DIED_OF_SIGINT,
    assert_same_stores,
    cpu_cluster_plan,
    env,
    many_blocks_input,
    markers,
    paused_process,
    run_python,
    status,
    stopped_status,
    wait_for_markers,
)
from tests.terminal import Watched, at_terminal, pipeline_args, spawn, start, wait_until

INTERRUPTED = "interrupted: the workers are stopped; `run --resume` finishes the output"
#: The line of a run stopped before it wrote anything (its cluster starting).
NOTHING_WRITTEN = "interrupted: nothing was written"
#: What a run stopped at ``moment`` (:func:`_at`) says.
LINE_AT = {"cluster-start": NOTHING_WRITTEN, "compute": INTERRUPTED}
ROWS = 400


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A directory with an input of 400 blocks (one row each) and the config of a run of it on
    two worker processes (``protocol: tcp``: a CPU run that small is threads by default)."""
    d = tmp_path_factory.mktemp("interrupt")
    many_blocks_input(d / "in.zarr", ROWS)
    cfg = {
        "input": {"store": str(d / "in.zarr")},
        "output": {"store": str(d / "out.zarr"), "chunks": [1, 1024]},
        "stages": STAGES,
        "backend": "cpu",
        "chunking": {"block": [1, 4096]},
        "cluster": {"workers": 2, "threads_per_worker": 1, "dashboard": "", "protocol": "tcp"},
    }
    (d / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return d, d / "run.yaml"


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def _at(moment: str, w: Watched, out: Path) -> None:
    """Wait for ``moment`` of the run: ``cluster-start`` (its first worker process exists; the
    output is created only once every worker is up) or ``compute`` (3 blocks written)."""
    if moment == "cluster-start":
        wait_until(w.workers, timeout=180)
    else:
        assert wait_for_markers(w.proc, out, 3, timeout=180) > 0, "ended before 3 blocks"


def _assert_stopped(w: Watched, rc: int, err: str, line: str = INTERRUPTED) -> None:
    """Dead of the SIGINT (a shell's 130), the one line ``line``, and no process of the run
    left."""
    assert rc == DIED_OF_SIGINT, err
    assert _lines(err) == [line], err
    assert w.workers(), "no worker process was seen"
    left = w.left_running()
    assert not left, f"left running after the interrupt: {left}"


@pytest.mark.parametrize("presses", [1, 10], ids=["once", "again-and-again"])
@pytest.mark.parametrize("moment", ["cluster-start", "compute"])
def test_ctrl_c_stops_the_run_at_any_moment(work, moment: str, presses: int) -> None:
    """A Ctrl-C while the workers start is not lost (the run used to ignore it then, and went
    on); pressed again and again while the run stops, it prints nothing more."""
    d, cfg = work
    out = d / "out.zarr"
    shutil.rmtree(out, ignore_errors=True)
    w = start("run", cfg, "--progress", "none", cwd=d)
    try:
        _at(moment, w, out)
        w.interrupt()
        deadline = time.monotonic() + 300
        for _ in range(presses - 1):  # while the run stops
            if w.proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
            w.interrupt()
        rc, err = w.finish()
    finally:
        w.close()
    _assert_stopped(w, rc, err, LINE_AT[moment])
    assert not (out / ".pipeline" / "lock").exists()
    if moment == "cluster-start":
        assert not out.exists(), "stopped before any block: nothing may be left"
    else:
        assert status(out) == "incomplete"
        assert 0 < markers(out) < ROWS


def test_ctrl_c_stops_the_shell_script_that_runs_the_command(work) -> None:
    """Ctrl-C (SIGINT to the process group) while a bash script's ``pipeline run`` computes:
    the run's one line and orderly stop, then the script stops too, its next command not run.
    The command used to exit 130, and bash, which goes on after a child that exits rather
    than dies of the SIGINT, ran the script's next line (h86e); it now dies of the SIGINT,
    as Python does on an uncaught ``KeyboardInterrupt``."""
    d, cfg = work
    out = d / "out.zarr"
    shutil.rmtree(out, ignore_errors=True)
    second = d / "second-started"
    second.unlink(missing_ok=True)
    command = shlex.join(pipeline_args("run", cfg, "--overwrite", "--progress", "none"))
    script = d / "script.sh"
    script.write_text(f"{command}\ntouch {shlex.quote(str(second))}\n")
    w = spawn(["bash", str(script)], cwd=d)
    try:
        _at("compute", w, out)
        w.interrupt()
        rc, err = w.finish()
    finally:
        w.close()
    assert _lines(err) == [INTERRUPTED], err
    assert rc == DIED_OF_SIGINT, err  # bash itself died of it
    assert not second.exists(), "the script's next command ran after the Ctrl-C"
    assert not w.left_running(), "left running after the interrupt"
    assert status(out) == "incomplete"


#: ``python SCRIPT DIR ARGS...``: the command line ``pipeline ARGS...`` whose scheduler holds
#: each worker's first heartbeat unanswered until the worker is closing, and 3 s after (a busy
#: machine's slow scheduler, made sure), and whose cluster's start waits, after its workers have
#: registered, until both workers' heartbeats are held (``DIR/held-N``): a Ctrl-C then comes
#: while the cluster starts, every worker's heartbeat in flight as the run closes it.
_HOLDS_HEARTBEATS = """
import asyncio, sys, time
from pathlib import Path

def main():
    here = Path(sys.argv[1])
    from distributed import Client
    from distributed.core import Status
    from distributed.scheduler import Scheduler

    made, seen = Scheduler.__init__, set()

    def init(self, *args, **kwargs):  # the handler of the workers' heartbeats
        made(self, *args, **kwargs)
        answer = self.handlers["heartbeat_worker"]

        async def held(*args, address, **kwargs):
            ws = self.workers.get(address)
            if ws is not None and address not in seen:
                seen.add(address)
                (here / f"held-{len(seen)}").touch()
                deadline = time.monotonic() + 120
                while ws.status == Status.running and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(3)
            return answer(*args, address=address, **kwargs)

        self.handlers["heartbeat_worker"] = held

    waits = Client.wait_for_workers

    def wait_for_workers(self, *args, **kwargs):
        waits(self, *args, **kwargs)
        while len(list(here.glob("held-*"))) < 2:
            time.sleep(0.01)

    Scheduler.__init__ = init
    Client.wait_for_workers = wait_for_workers
    sys.argv[1:] = sys.argv[2:]
    from pipeline.cli import main

    main()

if __name__ == "__main__":  # not in the worker processes, which import this module again
    main()
"""


@pytest.mark.timeout(600)  # two real runs, each a minute at worst on a loaded 2-core machine
def test_workers_closed_with_a_heartbeat_in_flight_print_nothing(work) -> None:
    """Ctrl-C while the cluster starts, each worker's heartbeat waiting on the scheduler as
    the run closes it: the run's one line, nothing of Dask's. The workers' set-up
    (``PipelineSetup``, which lets a heartbeat in flight end) is never registered on a start
    that a Ctrl-C stopped, so a worker closed its connections under its heartbeat, and its
    ``Failed to communicate with scheduler during heartbeat`` and a 28-line traceback
    (``CommClosedError ... ConnectionPool.heartbeat_worker ... Stream is closed``) came before
    the line (a busy 2-core machine, where the scheduler answers late). With ``-vv`` Dask's
    own lines are still there, the workers' among them."""
    d, cfg = work
    out = d / "out.zarr"
    (d / "holds.py").write_text(_HOLDS_HEARTBEATS)
    for verbose in ((), ("-vv",)):
        shutil.rmtree(out, ignore_errors=True)
        for held in d.glob("held-*"):
            held.unlink()
        w = spawn(
            [sys.executable, str(d / "holds.py"), str(d), "run", str(cfg), "--progress", "none"]
            + list(verbose),
            cwd=d,
        )
        try:
            wait_until(lambda: len(list(d.glob("held-*"))) == 2, timeout=180)
            w.interrupt()
            rc, err = w.finish()
        finally:
            w.close()
        assert rc == DIED_OF_SIGINT, err
        assert not w.left_running(), "left running after the interrupt"
        assert not out.exists(), "stopped before any block: nothing may be left"
        if not verbose:
            assert _lines(err) == [NOTHING_WRITTEN], err
        else:
            assert _lines(err)[-1] == NOTHING_WRITTEN, err
            assert "distributed.worker - INFO - Stopping worker" in err, err
            assert "Failed to communicate" not in err, err  # the heartbeat ended first


#: ``python SCRIPT DIR ARGS...``: the command line ``pipeline ARGS...`` as its program, with a
#: garbage collector callback (a place where Python drops every exception, as it dropped the
#: ``KeyboardInterrupt`` of a Ctrl-C inside distributed's ``GCDiagnosis._gc_callback``). On
#: SIGUSR1 the main thread collects (again, until its own collection has run: one started while
#: a worker thread collects returns at once, calling no callback); the callback then blocks
#: there, says so (``DIR/inside``), and the next Ctrl-C lands in it; what Python drops is
#: written to ``DIR/dropped``.
_DROPS_A_CTRL_C = """
import gc, signal, sys, threading, time
from pathlib import Path

def main():
    here = Path(sys.argv[1])
    armed = []

    def collect(signum, frame):
        armed.append(True)
        while armed:  # gc.collect() does nothing (no callback) while another thread collects
            gc.collect()
            time.sleep(0.001)

    def blocks(phase, info):
        main_thread = threading.current_thread() is threading.main_thread()
        if phase != "start" or not armed or not main_thread:
            return
        armed.clear()
        (here / "inside").touch()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the Ctrl-C's KeyboardInterrupt is raised here
            time.sleep(0.01)

    def dropped(u):  # what Python prints as "Exception ignored in ..."
        (here / "dropped").write_text(f"{u.exc_type.__name__} in {u.object!r}")

    gc.callbacks.append(blocks)
    sys.unraisablehook = dropped
    signal.signal(signal.SIGUSR1, collect)
    sys.argv[1:] = sys.argv[2:]
    from pipeline.cli import main

    main()

if __name__ == "__main__":  # not in the worker processes, which import this module again
    main()
"""


def _dropping_run(d: Path, *args: str | Path) -> Watched:
    """``pipeline ARGS`` as :data:`_DROPS_A_CTRL_C` runs it, in a new process group, watched."""
    (d / "drops.py").write_text(_DROPS_A_CTRL_C)
    for name in ("inside", "dropped"):
        (d / name).unlink(missing_ok=True)
    return spawn([sys.executable, str(d / "drops.py"), str(d), *map(str, args)], cwd=d)


@pytest.fixture(scope="module")
def uninterrupted(work) -> Path:
    """The output of an uninterrupted run of ``work``'s config, written where its runs write
    (its fingerprint names the path), then set aside."""
    d, cfg = work
    out = d / "out.zarr"
    shutil.rmtree(out, ignore_errors=True)
    r = _quiet_run(cfg, d)
    assert r.returncode == 0, r.stderr
    shutil.rmtree(d / "ref.zarr", ignore_errors=True)
    out.rename(d / "ref.zarr")
    return d / "ref.zarr"


@pytest.mark.timeout(900)  # three real runs, each a minute at worst on a loaded 2-core machine
@pytest.mark.parametrize(
    ("protocol", "sig"),
    [("tcp", signal.SIGINT), ("inproc", signal.SIGTERM)],
    ids=["cluster-ctrl-c", "threads-sigterm"],
)
def test_a_ctrl_c_that_python_drops_still_stops_the_run(
    work, uninterrupted: Path, protocol: str, sig: int
) -> None:
    """A Ctrl-C (or SIGTERM) whose ``KeyboardInterrupt`` lands where Python drops exceptions
    (a garbage collector callback on the main thread) still stops the run (dead of the SIGINT;
    130 after SIGTERM), its one line, no process left, the output resumable to the bytes of an
    uninterrupted run. The run used to go on to its end and exit 0, deaf to any later Ctrl-C
    (the first had set them ignored).
    ``inproc``: a run on threads of its own process (``running/threads.py``)."""
    d, cfg = work
    out = d / "out.zarr"
    doc = yaml.safe_load(cfg.read_text())
    doc["cluster"]["protocol"] = protocol
    cfg = d / f"{protocol}.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.rmtree(out, ignore_errors=True)
    w = _dropping_run(d, "run", cfg, "--progress", "none")
    try:
        assert wait_for_markers(w.proc, out, 3, timeout=180) > 0, "ended before 3 blocks"
        os.kill(w.proc.pid, signal.SIGUSR1)  # the main thread into the callback
        wait_until(lambda: (d / "inside").exists() or w.proc.poll() is not None, timeout=120)
        assert (d / "inside").exists(), "the run ended before its main thread collected"
        if sig == signal.SIGINT:
            w.interrupt()  # Ctrl-C at a terminal: the whole process group
        else:
            os.kill(w.proc.pid, sig)
        rc, err = w.finish()
    finally:
        w.close()
    assert (d / "dropped").read_text().startswith("KeyboardInterrupt in <function"), (
        "the interrupt did not land in the callback"
    )
    assert rc == stopped_status(sig), err
    assert _lines(err) == [INTERRUPTED], err
    assert not w.left_running(), "left running after the interrupt"
    assert status(out) == "incomplete"
    assert not (out / ".pipeline" / "lock").exists()
    assert markers(out) > 0
    r = run_python(["-m", "pipeline", "run", cfg, "--resume", "-q"], d)
    assert r.returncode == 0, r.stderr
    assert_same_stores(out, uninterrupted)


def _gpu_config(d: Path) -> Path:
    """The run of ``work``'s input on the GPU: a local GPU cluster, whose worker processes are
    forked from the run's fork server (``running/fork_server.py``)."""
    cfg = yaml.safe_load((d / "run.yaml").read_text())
    cfg["output"]["store"] = str(d / "gpu-out.zarr")
    cfg["backend"] = "gpu"
    cfg["cluster"] = {"gpus": [0], "threads_per_worker": 2, "dashboard": ""}
    (d / "gpu.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return d / "gpu.yaml"


@pytest.mark.gpu
@pytest.mark.parametrize("moment", ["cluster-start", "compute"])
def test_gpu_ctrl_c_stops_the_run_and_its_forked_workers(work, moment: str) -> None:
    """The same on a local GPU cluster: its workers are forked from the fork server (which
    holds SIGINT blocked for them); the run stops with its one line, and no process of it
    (workers, fork server) is left."""
    d, _ = work
    cfg = _gpu_config(d)
    out = d / "gpu-out.zarr"
    shutil.rmtree(out, ignore_errors=True)
    w = start("run", cfg, "--progress", "none", cwd=d)
    try:
        _at(moment, w, out)
        w.interrupt()
        rc, err = w.finish()
    finally:
        w.close()
    _assert_stopped(w, rc, err, LINE_AT[moment])
    if moment == "cluster-start":
        assert not out.exists(), "stopped before any block: nothing may be left"
    else:
        assert status(out) == "incomplete"


@pytest.mark.gpu
def test_gpu_runs_print_only_the_pipelines_lines(work) -> None:
    """A GPU run that succeeds, with ``-q``: nothing on stderr (from the fork server or the
    workers it forked), the output complete."""
    d, _ = work
    cfg = _gpu_config(d)
    shutil.rmtree(d / "gpu-out.zarr", ignore_errors=True)
    r = _quiet_run(cfg, d)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert status(d / "gpu-out.zarr") == "complete"


def _quiet_run(cfg: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``pipeline run CFG -q`` in a process of its own, to its end."""
    return subprocess.run(
        pipeline_args("run", cfg, "-q"),
        capture_output=True,
        text=True,
        env=env(),
        cwd=cwd,
        timeout=300,
    )


def test_ctrl_c_typed_at_a_terminal(work) -> None:
    """``^C`` at a real terminal: the kernel signals the terminal's foreground process group,
    the run and its worker processes alike."""
    d, cfg = work
    out = d / "out.zarr"
    shutil.rmtree(out, ignore_errors=True)
    with at_terminal("run", cfg, "--progress", "none", cwd=d) as (w, term):
        _at("compute", w, out)
        term.type(b"\x03")
        rc, err = w.finish()
        term.text()
    _assert_stopped(w, rc, err)
    assert status(out) == "incomplete"
    assert 0 < markers(out) < ROWS


@pytest.mark.timeout(900)  # real runs, each a minute at worst on a loaded 2-core machine
def test_successful_runs_print_only_the_pipelines_lines(tmp_path: Path) -> None:
    """Runs that succeed leave stderr empty with ``-q``: no Dask traceback from workers closing
    (``CommClosedError ... heartbeat_worker ... Stream is closed`` came in 5 of 32 such runs on
    a busy machine), no ``TimeoutError`` from a slow worker stop. Several real runs, since the
    noise came from races (the interrupt tests above check stderr line by line as well)."""
    x = np.random.default_rng(0).standard_normal((48, 64, 16)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 64, 16))
    cfg = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr"), "overwrite": True},
        "stages": STAGES,
        "backend": "cpu",
        "chunking": {"target_bytes": 16 << 10},
        "cluster": {"workers": 2, "threads_per_worker": 1, "dashboard": "", "protocol": "tcp"},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for i in range(3):
        r = _quiet_run(tmp_path / "run.yaml", tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stderr == "", f"run {i + 1}: stderr is not the pipeline's:\n{r.stderr}"
        assert "complete" in r.stdout


def test_workers_stop_with_no_heartbeat_traceback(capfd) -> None:
    """The race behind the noise, made certain: the scheduler answers heartbeats 3 s late (as
    a starved one does), so every worker has a heartbeat in flight when it is told to stop.
    distributed's worker closed its connections under it and logged ``Failed to communicate
    with scheduler during heartbeat`` with a ``CommClosedError`` traceback, on the stderr the
    worker processes share with the run; the pipeline's plugin lets the heartbeat end first."""
    plan = cpu_cluster_plan(workers=2)
    with cluster.connect(plan) as client:
        scheduler = client.cluster.scheduler
        answer = scheduler.handlers["heartbeat_worker"]
        asked: set[str] = set()

        async def late(**msg):
            asked.add(msg["address"])
            await asyncio.sleep(3)
            return answer(**msg)

        scheduler.handlers["heartbeat_worker"] = late
        wait_until(lambda: len(asked) == 2, timeout=120)  # both wait for their answer now
    _, err = capfd.readouterr()
    assert "heartbeat" not in err and "Traceback" not in err, err


def test_a_client_call_made_for_the_main_thread_runs_on_its_own_and_yields_to_ctrl_c() -> None:
    """``waiting.call``, through which the run makes distributed's blocking client calls (a
    worker's peaks, a plugin, a connection): the call runs on another thread, its result or its
    error comes back as it was, and a Ctrl-C lands in the main thread's wait (a sleep, no lock
    of the call's), not inside the call, which goes on to its end on its own thread."""
    import os
    import signal
    import threading

    from pipeline.running import waiting

    main = threading.current_thread()
    assert waiting.call(lambda: threading.current_thread() is not main, "t-result") is True
    error = ValueError("from the call")

    def fails() -> None:
        raise error

    with pytest.raises(ValueError) as raised:
        waiting.call(fails, "t-error")
    assert raised.value is error

    ended = threading.Event()

    def slow() -> str:
        time.sleep(1.0)
        ended.set()
        return "done"

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            waiting.call(slow, "t-interrupted")
        assert not ended.is_set()  # the wait gave way; the call had not ended
    finally:
        signal.signal(signal.SIGINT, before)
    assert ended.wait(30)  # and it ends on its own thread


def test_a_wait_ends_as_its_flag_is_set_not_at_the_next_look(monkeypatch) -> None:
    """The main thread's waits (a run's graph sent, its results, each client call) end as the
    thread they wait for sets its ``Done`` flag, not at the next look at it: with looks a
    minute apart, each returns in seconds. A plain ``Event`` is still looked at, and a wait
    with a timeout still ends at it."""
    import threading

    from pipeline.running import waiting

    monkeypatch.setattr(waiting, "STEP", 60.0)
    for _ in range(3):  # again: the pipe's earlier bytes were read
        done = waiting.Done()
        threading.Timer(0.05, done.set).start()
        t0 = time.monotonic()
        assert waiting.wait(done, 120) is True
        assert time.monotonic() - t0 < 30
    t0 = time.monotonic()
    assert waiting.call(lambda: "answer", "t-prompt") == "answer"
    assert time.monotonic() - t0 < 30
    monkeypatch.setattr(waiting, "STEP", 0.01)
    plain = threading.Event()
    threading.Timer(0.05, plain.set).start()
    assert waiting.wait(plain, 120) is True
    assert waiting.wait(threading.Event(), 0.05) is False


def test_a_wait_ends_as_its_flag_is_set_in_a_process_with_many_files(monkeypatch) -> None:
    """A process that holds over a thousand open files (a notebook's, say) gets descriptors
    past ``select``'s limit of 1024: the wait's pipe is one of them, and its waits still end
    as their flag is set (``select`` raised ``ValueError`` there)."""
    import resource
    import threading

    from pipeline.running import waiting

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"this machine allows {hard} open files, not 1200")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    held: list[int] = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        monkeypatch.setattr(waiting, "_pipe", None)  # the next wait makes one: past 1024
        monkeypatch.setattr(waiting, "STEP", 60.0)
        done = waiting.Done()
        threading.Timer(0.05, done.set).start()
        t0 = time.monotonic()
        assert waiting.wait(done, 120) is True
        assert time.monotonic() - t0 < 30
        assert waiting._pipe is not None and waiting._pipe[1] > 1024
    finally:
        for fd in held:
            os.close(fd)
        made = waiting._pipe
        monkeypatch.undo()  # the old pipe back before this one's descriptors are closed
        if made is not None and made[1] > 1024:
            os.close(made[1])
            os.close(made[2])
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_wait_whose_pipe_someone_closed_makes_another(tmp_path: Path, monkeypatch) -> None:
    """Code that closes descriptors it does not own (a daemonizing library, say) may close
    the wait's pipe, and a file opened next may take its numbers: setting a flag then writes
    nothing into that file, and waits still end as their flag is set."""
    import threading

    from pipeline.running import waiting

    monkeypatch.setattr(waiting, "_pipe", None)
    monkeypatch.setattr(waiting, "STEP", 60.0)
    waiting._wake_pipe()
    first = waiting._pipe
    assert first is not None
    os.close(first[1])
    os.close(first[2])
    other = [os.open(tmp_path / f"other-{i}", os.O_RDWR | os.O_CREAT) for i in range(2)]
    try:
        done = waiting.Done()
        threading.Timer(0.05, done.set).start()
        t0 = time.monotonic()
        assert waiting.wait(done, 120) is True
        assert time.monotonic() - t0 < 30
        assert [(tmp_path / f"other-{i}").read_bytes() for i in range(2)] == [b"", b""]
        assert waiting._pipe is not None and waiting._pipe != first
    finally:
        made = waiting._pipe
        monkeypatch.undo()
        for fd in other:
            os.close(fd)
        if made is not None and made != first:
            os.close(made[1])
            os.close(made[2])


def test_a_close_made_for_the_main_thread_ends_before_its_ctrl_c() -> None:
    """``waiting.call(..., to_the_end=True)``, through which the run closes its clients and a
    local cluster: a Ctrl-C during it is raised only once the close has ended (a close cut
    short would leave workers running), and a close's error comes second to it."""
    import os
    import signal
    import threading

    from pipeline.running import waiting

    ended = threading.Event()

    def slow_close() -> None:
        time.sleep(1.0)
        ended.set()
        raise OSError("the scheduler is gone")

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            waiting.call(slow_close, "t-close", to_the_end=True)
        assert ended.is_set()  # raised only once the close had ended
    finally:
        signal.signal(signal.SIGINT, before)
    with pytest.raises(OSError):
        waiting.call(slow_close, "t-close-error", to_the_end=True)


def test_a_signal_stays_pending_until_taken_then_later_ones_are_ignored(capsys) -> None:
    """``waiting.on_signal``, the command line's handler, with real signals to this process:
    an interrupt raised where Python drops exceptions (a ``__del__``) stays pending: a second
    signal raises too, and the main thread's next wait (not another thread's) raises it again
    and takes it; once taken, later signals are ignored and waits go on. The next command
    starts with none pending."""
    import threading

    from pipeline.cli import main
    from pipeline.running import waiting

    dropped: list[type] = []

    class Drops:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt is raised here

    before = signal.signal(signal.SIGINT, waiting.on_signal)
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: dropped.append(u.exc_type)
    waiting.reset()
    try:
        Drops()  # freed at once: __del__ runs, and Python drops what it raises
        assert dropped == [KeyboardInterrupt]
        elsewhere: list[bool] = []
        t = threading.Thread(target=lambda: elsewhere.append(waiting.wait(threading.Event(), 0.1)))
        t.start()
        t.join()
        assert elsewhere == [False]  # only the main thread's waits raise it
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C while it is pending
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):  # raised again, and taken
            waiting.wait(threading.Event(), 60)
        signal.raise_signal(signal.SIGINT)  # ignored: the clean-up is not cut short
        assert waiting.wait(threading.Event(), 0.1) is False
        waiting.reset()
        with pytest.raises(KeyboardInterrupt):  # pending again, as a dropped one would be
            signal.raise_signal(signal.SIGINT)
        assert main(["schema"]) == 0  # a later command: not interrupted by what came before
        assert waiting.wait(threading.Event(), 0.1) is False  # and none is left after it
    finally:
        sys.unraisablehook = hook
        signal.signal(signal.SIGINT, before)
        waiting.reset()
    capsys.readouterr()


def test_a_run_begun_with_sigint_ignored_is_not_stopped_by_it(tmp_path: Path) -> None:
    """A shell starts a script's background job (``pipeline run ... &``) with SIGINT ignored,
    so that a Ctrl-C meant for the script leaves the job running, as Python leaves it: the
    command had set its own handler over that, and the run stopped (h85c). A SIGINT sent
    while the run holds its lock (a real signal, at a point the process says it is at) is
    ignored: the run completes, NumPy's values; SIGTERM still stops a run begun so."""
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    make_array(tmp_path / "in.zarr", x, (4, 8))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "input": {"store": str(tmp_path / "in.zarr")},
                "output": {"store": str(tmp_path / "out.zarr"), "overwrite": True},
                "stages": STAGES,
                "backend": "cpu",
            }
        )
    )
    for sent, completes in ((signal.SIGINT, True), (signal.SIGTERM, False)):
        proc = paused_process("run", cfg, cwd=tmp_path, sigint_ignored=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
            proc.send_signal(sent)
            _, err = proc.communicate("\n", timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert (proc.returncode == 0) is completes, (sent, proc.returncode, err)
        if completes:
            assert status(tmp_path / "out.zarr") == "complete"
            assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


#: A program that runs ``python -m pipeline ARGS`` (its ``__main__`` as ``runpy`` runs it for
#: ``-m``) with a Ctrl-C landing while the command's modules load: an import hook sends the
#: process a real SIGINT as the named module's import begins (sent from outside that early, it
#: lands at no point a test can choose), which Python's handler, or the command's once set,
#: turns into a ``KeyboardInterrupt`` there.
_CTRL_C_AT_IMPORT = """
import os, runpy, signal, sys

AT = sys.argv[1]

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == AT:
            os.kill(os.getpid(), signal.SIGINT)

sys.meta_path.insert(0, CtrlC())
sys.argv = ["-m", *sys.argv[2:]]  # as Python's -m has it while the package is found
runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "module", ["pipeline.errors", "pipeline._lazy", "pipeline.running.waiting", "shutil"]
)
def test_a_ctrl_c_while_the_commands_modules_load_says_one_line_and_dies_of_it(
    tmp_path: Path, module: str
) -> None:
    """A Ctrl-C in the first tenth of a second of ``python -m pipeline run`` (its modules still
    loading, before the command's handler is set) printed Python's traceback of the import it
    cut short, not the pipeline's line (h86g; and in the package's own imports, before
    ``__main__`` runs: ``pipeline.errors``, h87a; and as the arguments are read, the command's
    handler set, where argparse imports ``shutil``: h87g). Now: ``interrupted: nothing was
    written`` alone on stderr, nothing written, and the program dies of SIGINT as after any
    Ctrl-C of it (a script running it stops too)."""
    make_array(tmp_path / "in.zarr", np.ones((4, 4), np.float32), (2, 4))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "input": {"store": str(tmp_path / "in.zarr")},
                "output": {"store": str(tmp_path / "out.zarr")},
                "stages": STAGES,
            }
        )
    )
    got = run_python(["-c", _CTRL_C_AT_IMPORT, module, "run", cfg], cwd=tmp_path)
    assert got.stderr.strip() == NOTHING_WRITTEN, got.stderr
    assert got.returncode == DIED_OF_SIGINT, got
    assert not (tmp_path / "out.zarr").exists()
