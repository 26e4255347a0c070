"""The MPS daemon of a local GPU cluster (``cluster.mps``): when a plan asks for one, and the
daemon's life (what a killed run leaves is cleared, a daemon that cannot start means none).
The daemon running the workers on a GPU is tested in tests/test_gpu.py."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config.loading import load_config
from pipeline.devices import hardware
from pipeline.planning.plan import make_plan
from pipeline.planning.rows import describe
from pipeline.running import mps
from tests.conftest import make_array, write_config
from tests.test_plan import MACHINES

CONTROL = "/usr/bin/nvidia-cuda-mps-control"


@pytest.mark.parametrize(
    ("cluster", "has_control", "expected"),
    [
        ({}, True, CONTROL),  # 3 workers per GPU by default
        ({"workers_per_gpu": 2}, True, CONTROL),
        ({"workers_per_gpu": 1}, True, ""),  # one process per GPU: no turns to take
        ({"mps": "off"}, True, ""),
        ({}, False, ""),  # no control program on the machine
    ],
)
def test_a_local_gpu_cluster_of_several_workers_per_gpu_runs_under_mps(
    tmp_path: Path, cluster: dict, has_control: bool, expected: str
) -> None:
    x = np.arange(64 * 256, dtype=np.float32).reshape(64, 256)
    make_array(tmp_path / "in.zarr", x, (8, 256))
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend="gpu", cluster=cluster
    )
    facts = dataclasses.replace(MACHINES["h200"], mps_control=CONTROL if has_control else "")
    plan = make_plan(load_config(cfg), facts)
    assert plan.cluster.mps == expected
    workers = dict(describe(plan))["workers"]
    assert ("MPS daemon" in workers) == bool(expected), workers


def test_a_cpu_run_never_runs_under_mps(tmp_path: Path) -> None:
    x = np.arange(64 * 256, dtype=np.float32).reshape(64, 256)
    make_array(tmp_path / "in.zarr", x, (8, 256))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend="cpu")
    facts = dataclasses.replace(MACHINES["h200"], mps_control=CONTROL)
    assert make_plan(load_config(cfg), facts).cluster.mps == ""


@pytest.mark.usefixtures("fresh_control")
def test_a_users_own_mps_pipe_folder_means_no_daemon_of_the_runs(monkeypatch) -> None:
    """Where the environment names an MPS pipe folder, the user runs MPS their own way: the
    workers inherit it, and the run starts none. (The answer is cached per process: looked up
    afresh here and after, so later tests of the process see the machine's own.)"""
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", "/tmp/their-mps")
    assert hardware.mps_control() == ""


def test_a_daemon_that_cannot_start_means_none_and_leaves_nothing() -> None:
    """A control program that fails (here `false`, as a driver without MPS support would)
    gives no daemon, and its temporary folder is gone."""
    before = _folders()
    assert mps.start("false") is None
    assert _folders() == before


def test_what_a_killed_run_left_is_cleared_and_a_running_ones_is_kept() -> None:
    """A daemon's folder whose run has ended (killed: it never stopped its daemon) is cleared
    by the next start; one whose run still runs (another run's) is left alone."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    left = tempfile.mkdtemp(prefix=mps.PREFIX)
    running = tempfile.mkdtemp(prefix=mps.PREFIX)
    starting = tempfile.mkdtemp(prefix=mps.PREFIX)  # another run's, its owner not yet written
    killed_starting = tempfile.mkdtemp(prefix=mps.PREFIX)  # one killed before writing it
    try:
        for folder, pid in ((left, dead.stdout.strip()), (running, str(os.getpid()))):
            os.mkdir(os.path.join(folder, "pipe"))
            Path(folder, mps.OWNER).write_text(pid + "\n")
        old = time.time() - 2 * mps.NO_OWNER_AGE
        os.utime(killed_starting, (old, old))
        mps.clear_left("false")
        assert not os.path.exists(left)
        assert os.path.isdir(running)
        assert os.path.isdir(starting)
        assert not os.path.exists(killed_starting)
    finally:
        for folder in (left, running, starting, killed_starting):
            subprocess.run(["rm", "-rf", folder], check=False)


def _folders() -> set[str]:
    root = tempfile.gettempdir()
    return {n for n in os.listdir(root) if n.startswith(mps.PREFIX)}


def _fake_control(tmp_path: Path, start_delay: float = 0.0) -> tuple[Path, Path]:
    """A stand-in for nvidia-cuda-mps-control in ``tmp_path/bin`` (for PATH) and the log of its
    calls: ``-d`` (after ``start_delay`` seconds) leaves a background process named as MPS's
    are (``nvidia-cuda-mps``, what :func:`mps.processes` looks for; it ends by itself within
    30 s), with the daemon's environment; ``quit`` on its stdin ends it."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    calls = tmp_path / "calls.log"
    server = tmp_path / "nvidia-cuda-mps-server"
    server.write_text("#!/bin/sh\ni=0\nwhile [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n")
    control = bin_ / "nvidia-cuda-mps-control"
    control.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'if [ "$1" = "-d" ]; then\n'
        f"  sleep {start_delay}\n"
        f"  {server} >/dev/null 2>&1 </dev/null &\n"
        '  echo $! > "$CUDA_MPS_PIPE_DIRECTORY/fake.pid"\n'
        "  exit 0\n"
        "fi\n"
        "read cmd\n"
        f'echo "$cmd" >> {calls}\n'
        '[ "$cmd" = quit ] && kill $(cat "$CUDA_MPS_PIPE_DIRECTORY/fake.pid")\n'
        "exit 0\n"
    )
    for f in (server, control):
        f.chmod(0o755)
    return bin_, calls


@pytest.fixture
def fresh_control() -> Any:
    """:func:`hardware.mps_control` (cached) looked up afresh in the test, and after it."""
    hardware.mps_control.cache_clear()
    yield
    hardware.mps_control.cache_clear()


@pytest.mark.usefixtures("fresh_control")
def test_a_ctrl_c_while_the_early_daemon_is_stopped_does_not_leave_it(
    tmp_path: Path, monkeypatch
) -> None:
    """`mps.stop_early` (the command line's `finally`, after a Ctrl-C that stopped the plan)
    waits for the start thread, then stops the daemon: a second Ctrl-C landing in that wait had
    raised out of it and left the daemon running and its folder behind. It runs to its end, and
    the interrupt stays pending for the command (`waiting.raise_pending`)."""
    import contextlib
    import signal
    import threading

    from pipeline.running import waiting

    bin_, calls = _fake_control(tmp_path, start_delay=1.0)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    before = _folders()
    handler = signal.signal(signal.SIGINT, waiting.on_signal)
    waiting.reset()
    try:
        mps.start_early({"workers_per_gpu": 2})
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        try:
            mps.stop_early()  # the start takes 1 s: the Ctrl-C lands in the wait for it
        except KeyboardInterrupt:
            raised = True
        else:
            raised = False
        took = time.monotonic() - t0
        time.sleep(1.5)  # an abandoned start thread has ended by now
        assert not raised
        assert took > 0.5
        with pytest.raises(KeyboardInterrupt):
            waiting.raise_pending()  # not lost: the command raises it once done
    finally:
        signal.signal(signal.SIGINT, handler)
        waiting.reset()
        left = _folders() - before
        for name in left:
            folder = os.path.join(tempfile.gettempdir(), name)
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(Path(folder, "pipe", "fake.pid").read_text()), signal.SIGTERM)
            subprocess.run(["rm", "-rf", folder], check=False)
    assert not left
    assert calls.read_text().split("\n")[:3] == ["-d", "", "quit"]


@pytest.mark.usefixtures("fresh_control")
def test_generate_starts_no_early_mps_daemon(tmp_path: Path, monkeypatch) -> None:
    """`generate`'s cluster never runs under MPS (`plan_generation`), so the command line
    starts no early daemon for it, where the plain read of its YAML says a local GPU cluster
    (here made so)."""
    from pipeline import cli
    from pipeline.running import fork_server
    from tests.conftest import generated_config

    bin_, calls = _fake_control(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setattr(fork_server, "start_early", lambda path, scheduler=None: {})
    generate = {"shape": [8, 64], "dtype": "float32", "seed": 3, "chunks": [4, 64]}
    cfg = generated_config(tmp_path, generate)
    assert cli.main(["generate", str(cfg), "-q", "--progress", "none"]) == 0
    assert not calls.exists()


def test_a_warm_client_that_ends_after_its_daemon_was_taken_is_reaped(tmp_path: Path) -> None:
    """The early daemon's warm client is reaped as it ends, also where the cluster's start took
    the daemon before the client ended: an unreaped one was warned about ("ResourceWarning:
    subprocess ... is still running") as the process that had started it exited."""
    bin_, _ = _fake_control(tmp_path)
    script = (
        "import time\n"
        "from pipeline.devices import hardware\n"
        "from pipeline.running import mps\n"
        "mps.start_early({'workers_per_gpu': 2})\n"
        "daemon = mps.take(hardware.mps_control())  # at once: its client is still starting\n"
        "assert daemon is not None\n"
        "mps.stop(daemon)\n"
        "time.sleep(1.0)  # the client has ended by now\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CUDA_MPS_PIPE_DIRECTORY"}
    env["PATH"] = f"{bin_}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr, done.stderr
