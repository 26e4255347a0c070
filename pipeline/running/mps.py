"""A CUDA MPS control daemon of the run's own, for a local GPU cluster's workers.

Several worker processes share each GPU (``cluster.workers_per_gpu``, 3 by default: Python's
GIL makes one process of many threads slower). Without MPS (NVIDIA's Multi-Process Service),
the GPU runs one process's CUDA context at a time, in time slices, so one worker's kernels and
copies wait while another's zstd encode runs. Under an MPS server, the workers' work runs side
by side. On the H200 host (2026-12-01, 8 GB, warm 3 x 4 clusters, medians of 3 runs; the
probe's raw outputs are kept with issue 17's notes): v2 Blosc 5.89 GB/s (5.67-5.95) without,
6.64 (6.18-6.67) with; the synthetic input 4.81 (4.01-4.83) and 5.43 (4.97-5.68).

The daemon is this run's alone: its pipe and log folders are a new temporary folder
(``CUDA_MPS_PIPE_DIRECTORY``, ``CUDA_MPS_LOG_DIRECTORY``), given only to the workers, so no
other process of the machine runs under it, and a user's own MPS daemon is neither used nor
disturbed (a user who runs the pipeline under MPS of their own sets
``CUDA_MPS_PIPE_DIRECTORY``; then no daemon is started: :func:`pipeline.devices.hardware.
mps_control`). Where the daemon cannot start, the workers run without it (the CUDA driver
falls back to no MPS where it finds no daemon, too). :func:`stop` asks the daemon to quit once
the workers are gone; a run killed before that leaves it, and the next run's :func:`start`
stops it (its folder records the process that started it: :data:`OWNER`).

The command line starts the daemon before the config is parsed, where a plain read of it says
the run will start a local GPU cluster under MPS (:func:`start_early`), and has the daemon
start its MPS server at once, through a client of its own that only initialises CUDA and
exits (:data:`WARM_CLIENT`): the server, which the first client's ``cuInit`` starts, is then up
before the workers connect. The cluster's start takes that daemon (:func:`take`); one that no
cluster took is stopped when the command ends (:func:`stop_early`). On the H200 host
(2026-12-03, driver 580, clients of the driver API in new processes): three clients at once
took 0.55 s to initialise CUDA and make their contexts under a daemon whose server was not
yet up (``cuInit`` 0.31-0.32 s), 0.29 s under one whose server was (``cuInit`` 0.02-0.03 s).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: The name of each daemon's temporary folder starts so.
PREFIX = "pipeline-mps-"
#: The file in a daemon's folder that holds the process id of the run that started it.
OWNER = "owner"
#: Seconds after which a daemon's folder with no owner written is taken as a killed start's.
NO_OWNER_AGE = 60.0
#: Seconds to wait for the control program to start the daemon, or to take a command.
CONTROL_TIMEOUT = 10.0


#: The MPS server's starter: a client that loads the CUDA driver, initialises it (which has the
#: daemon start its server) and exits; the driver API through ctypes, in a Python that loads
#: nothing else (``-S -I``: no site packages, no user environment; its start was not timed).
WARM_CLIENT = "import ctypes; ctypes.CDLL('libcuda.so.1').cuInit(0)"


@dataclass(frozen=True)
class Daemon:
    """A running MPS control daemon of this process's: its control program and folder."""

    control: str
    folder: str

    @property
    def env(self) -> dict[str, str]:
        """The environment a worker needs to run under this daemon."""
        return {
            "CUDA_MPS_PIPE_DIRECTORY": os.path.join(self.folder, "pipe"),
            "CUDA_MPS_LOG_DIRECTORY": os.path.join(self.folder, "log"),
        }


def start(control: str) -> Daemon | None:
    """Start an MPS control daemon with ``control`` (the path of ``nvidia-cuda-mps-control``)
    in a new temporary folder; None where it did not start (the reason logged at debug
    level: the workers then run without MPS). Daemons that runs killed earlier left behind
    are stopped first (:func:`clear_left`)."""
    clear_left(control)
    folder = tempfile.mkdtemp(prefix=PREFIX)
    daemon = Daemon(control, folder)
    try:
        for sub in ("pipe", "log"):
            os.mkdir(os.path.join(folder, sub))
        with open(os.path.join(folder, OWNER), "w") as f:
            f.write(f"{os.getpid()}\n")
        done = subprocess.run(
            [control, "-d"],
            env={**os.environ, **daemon.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=CONTROL_TIMEOUT,
            check=False,
        )
        if done.returncode == 0:
            return daemon
        why = (done.stderr or done.stdout or b"").decode(errors="replace").strip()
        log.debug("no MPS: %s -d exited %d: %s", control, done.returncode, why)
    except (OSError, subprocess.SubprocessError) as e:
        log.debug("no MPS: %s -d: %s: %s", control, type(e).__name__, e)
    shutil.rmtree(folder, ignore_errors=True)
    return None


#: The daemon :func:`start_early` started that no cluster has taken yet, and the thread that
#: starts it.
_EARLY: Daemon | None = None
_EARLY_START: threading.Thread | None = None
_EARLY_LOCK = threading.Lock()


def start_early(cluster: Mapping[str, Any]) -> None:
    """Start this command's MPS daemon and its server before the plan (on a thread of its own,
    so the command's own start does not wait for the control program), where the config's
    ``cluster`` section as a plain read of its YAML gives it (``fork_server.start_early``:
    a local run on a usable GPU) asks for one as the plan will (:func:`pipeline.planning.plan.
    plan_mps`: ``mps`` not off, ``workers_per_gpu`` above 1, the control program found); the
    plan's decision still rules: a daemon the cluster's start does not take (:func:`take`) is
    stopped by :func:`stop_early`. Errors are logged at debug level, never raised."""
    from pipeline.devices.hardware import mps_control

    global _EARLY_START
    per_gpu = cluster.get("workers_per_gpu", 3)
    if cluster.get("mps", "auto") in ("off", False) or not isinstance(per_gpu, int):
        return
    control = mps_control()
    if per_gpu <= 1 or not control:
        return
    with _EARLY_LOCK:
        if _EARLY_START is not None:
            return
        _EARLY_START = threading.Thread(
            target=_start_early, args=(control,), name="pipeline-mps-start", daemon=True
        )
        _EARLY_START.start()


def _start_early(control: str) -> None:
    """:func:`start_early`'s thread: the daemon started, its server started by a client of its
    own. SIGINT stays blocked here, as on the cluster's start thread (``running/cluster.py``):
    a Ctrl-C is the command's main thread's."""
    global _EARLY
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    daemon = start(control)
    if daemon is None:
        return
    with _EARLY_LOCK:
        _EARLY = daemon
        try:
            client = subprocess.Popen(
                [sys.executable, "-S", "-I", "-c", WARM_CLIENT],
                env={**os.environ, **daemon.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C at the terminal is the run's alone
            )
            # reaped as it ends, by a thread of its own (an unreaped one was warned about, at
            # the exit of a process that had taken the daemon before the client ended)
            threading.Thread(target=client.wait, name="pipeline-mps-warm", daemon=True).start()
        except OSError as e:  # the server then starts with the first worker
            log.debug("MPS server not started early: %s: %s", type(e).__name__, e)


def take(control: str) -> Daemon | None:
    """The MPS daemon for a cluster's workers, started with ``control``: the one
    :func:`start_early` started, where it did with the same program, else a new one
    (:func:`start`); None where none started. The caller stops it (:func:`stop`)."""
    early = _taken()
    if early is not None and early.control == control:
        return early
    if early is not None:
        stop(early)
    return start(control)


def stop_early(wait: bool = True) -> None:
    """Stop the daemon :func:`start_early` started where no cluster took it (a run refused
    before its workers started, a plan that runs without MPS); ``wait``: as :func:`stop`.

    The wait for the start thread and the stop run to their end on a thread of their own: a
    Ctrl-C landing in them (a second one, after one that stopped the plan) had left the daemon
    and its folder. Its ``KeyboardInterrupt`` is dropped here, not raised over the exception
    that may be on its way out (``cli._dispatch`` calls this in a ``finally``): the command
    line's handler keeps it pending (``running/waiting.py``), and the command raises it once
    done (``waiting.raise_pending``)."""
    with _EARLY_LOCK:
        if _EARLY_START is None and _EARLY is None:
            return  # none started, or a cluster took it
    done = threading.Event()

    def body() -> None:
        try:
            early = _taken()
            if early is not None:
                stop(early, wait)
        finally:
            done.set()

    threading.Thread(target=body, name="pipeline-mps-stop", daemon=True).start()
    while not done.is_set():
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(0.005)


def _taken() -> Daemon | None:
    """The early daemon, now the caller's, once its start has ended."""
    global _EARLY, _EARLY_START
    with _EARLY_LOCK:
        starting, _EARLY_START = _EARLY_START, None
    if starting is not None:
        starting.join()  # the control program's own start: tens of milliseconds
    with _EARLY_LOCK:
        early, _EARLY = _EARLY, None
    return early


def stop(daemon: Daemon, wait: bool = True) -> None:
    """Ask ``daemon`` to quit (it ends once its clients, the workers, have all gone). With
    ``wait``, until it has ended (at most :data:`CONTROL_TIMEOUT` seconds), then delete its
    folder; else return at once (a process about to end), the folder deleted by a shell of its
    own once the daemon has ended (what a killed run leaves, the next run's
    :func:`clear_left` deletes). Errors are logged at debug level, never raised."""
    try:
        _quit(daemon, wait)
    except (OSError, subprocess.SubprocessError) as e:
        log.debug("stopping MPS daemon in %s: %s: %s", daemon.folder, type(e).__name__, e)
        return
    if wait:
        shutil.rmtree(daemon.folder, ignore_errors=True)
    else:
        _delete_after(daemon)


def _delete_after(daemon: Daemon) -> None:
    """Delete ``daemon``'s folder once its processes have ended (at most 30 s), from a shell of
    its own that outlives this process."""
    pids = " ".join(str(p) for p in processes(daemon))
    script = (
        f'for i in $(seq 600); do alive=""; for p in {pids}; do kill -0 $p 2>/dev/null && '
        'alive=1; done; [ -z "$alive" ] && break; sleep 0.05; done; rm -rf "$0"'
    )
    with contextlib.suppress(OSError):
        subprocess.Popen(
            ["sh", "-c", script, daemon.folder],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def clear_left(control: str) -> None:
    """Stop the MPS daemons of earlier runs that ended without stopping theirs (killed), and
    delete their folders: this user's folders of :data:`PREFIX` in the temporary folder whose
    :data:`OWNER` process is gone. A folder whose owner still runs is another run's."""
    root = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(root) if n.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        folder = os.path.join(root, name)
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if st.st_uid != os.getuid():
            continue
        try:
            with open(os.path.join(folder, OWNER)) as f:
                owner = int(f.read().strip() or "0")
        except (OSError, ValueError):
            # no owner written yet: another run's start under way, or one killed at its very
            # beginning, which a minute later it surely is
            if time.time() - st.st_mtime < NO_OWNER_AGE:
                continue
            owner = 0
        if owner and _alive(owner):
            continue
        stop(Daemon(control, folder), wait=True)


def _quit(daemon: Daemon, wait: bool) -> None:
    running = processes(daemon)
    if not running:
        return
    ask = subprocess.Popen(
        [daemon.control],
        env={**os.environ, **daemon.env},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal does not cut the command short
    )
    assert ask.stdin is not None
    ask.stdin.write(b"quit\n")
    ask.stdin.close()
    if not wait:
        return
    deadline = time.monotonic() + CONTROL_TIMEOUT
    with contextlib.suppress(subprocess.TimeoutExpired):
        ask.wait(timeout=CONTROL_TIMEOUT)
    while any(_alive(pid) for pid in running) and time.monotonic() < deadline:
        time.sleep(0.02)


def processes(daemon: Daemon) -> list[int]:
    """The process ids of ``daemon``'s control daemon and MPS servers: this user's
    ``nvidia-cuda-mps-*`` processes whose environment names its pipe folder (read from /proc;
    none elsewhere)."""
    pipe = ("CUDA_MPS_PIPE_DIRECTORY=" + daemon.env["CUDA_MPS_PIPE_DIRECTORY"]).encode()
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/comm", "rb") as f:
                    if not f.read().startswith(b"nvidia-cuda-mps"):
                        continue
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if pipe in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:  # gone meanwhile, or another user's
                continue
    return found


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie child of ours is reaped first)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
