"""Helpers of the interrupt and text tests: the CLI as a real process, watched from outside,
and a real pseudo-terminal to run it at.

``Watched`` follows every process the CLI starts (worker processes outlive their parent's
``children()`` list once they are orphaned, so they are collected while the run is alive).
``at_terminal`` gives the CLI a pseudo-terminal as its controlling terminal: a ``^C`` written to
it is turned into SIGINT for the terminal's foreground process group by the kernel, as a user's
Ctrl-C is, and rich draws its tables there as it would for a user.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from tests.faultkit import ROOT, end_process, env

#: Makes its stdin (a pseudo-terminal) the controlling terminal of the new session it leads,
#: then becomes the command (same pid).
_ACQUIRE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

#: Terminal width for rich: wide enough that no table cell is wrapped.
COLUMNS = 400


def pipeline_args(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", *map(str, args)]


def wait_until(what: Callable[[], object], timeout: float, step: float = 0.01) -> object:
    """Poll ``what`` until it returns something true; that value, or AssertionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"not so after {timeout} s: {what}")


class Watched:
    """A running CLI process (its own process group) and every process it has started."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.started: dict[int, psutil.Process] = {}
        self._workers: set[int] = set()
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                kids = psutil.Process(self.proc.pid).children(recursive=True)
                with self._lock:
                    for k in kids:
                        self.started.setdefault(k.pid, k)
                        if k.pid not in self._workers and is_worker(k):
                            self._workers.add(k.pid)
            time.sleep(0.01)

    def workers(self) -> list[psutil.Process]:
        """The Dask worker processes seen so far (:func:`is_worker`)."""
        with self._lock:
            return [self.started[pid] for pid in self._workers]

    def left_running(self, timeout: float = 60.0) -> list[psutil.Process]:
        """The processes it started that still run ``timeout`` seconds after it ended; they
        are killed (cleanup) before returning."""
        self._watcher.join()
        with self._lock:
            procs = list(self.started.values())
        deadline = time.monotonic() + timeout
        alive = procs
        while alive and time.monotonic() < deadline:
            alive = [p for p in procs if _running(p)]
            time.sleep(0.05)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        return alive

    def interrupt(self) -> None:
        """Ctrl-C as a terminal sends it: SIGINT to the whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float = 300.0) -> tuple[int, str]:
        """Wait for the end; (exit status, stderr)."""
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def kill(self) -> None:
        """Cleanup after a failed test: SIGKILL the group and whatever it started."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with self._lock:
            procs = list(self.started.values())
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(Exception):
            self.proc.communicate(timeout=30)

    def close(self) -> None:
        """Cleanup when the test is done with it, passed or failed: :meth:`kill` if it still
        runs, its pipes closed either way (:func:`tests.faultkit.end_process`)."""
        if self.proc.poll() is None:
            self.kill()
        end_process(self.proc)


def is_worker(p: psutil.Process) -> bool:
    """Whether ``p`` is a Dask worker process: one multiprocessing spawned (``spawn_main``), or
    one forked by its fork server (GPU workers, ``pipeline/running/fork_server.py``): a child of
    the server, with the server's command line."""
    server = "multiprocessing.forkserver"
    try:
        cmd = " ".join(p.cmdline())
        if "spawn_main" in cmd:
            return True
        parent = p.parent()
        return server in cmd and parent is not None and server in " ".join(parent.cmdline())
    except psutil.Error:
        return False


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start(*args: str | Path, cwd: Path | None = None) -> Watched:
    """``python -m pipeline ARGS`` in a new process group, stdout and stderr captured."""
    return spawn(pipeline_args(*args), cwd)


def spawn(argv: list[str], cwd: Path | None = None) -> Watched:
    """The command ``argv`` in a new process group, stdout and stderr captured, watched."""
    proc = subprocess.Popen(
        argv,
        env=env(),
        cwd=str(cwd or ROOT),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return Watched(proc)


class Terminal:
    """A pseudo-terminal: what a program writes to it (``text()``) and a keyboard (``type``)."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        size = struct.pack("HHHH", 50, COLUMNS, 0, 0)
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, size)
        attrs = termios.tcgetattr(self.slave)
        attrs[3] &= ~termios.ECHO  # what is typed is not shown back in the output
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self._out = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                return
            if not data:
                return
            self._out += data

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def text(self, timeout: float = 60.0) -> str:
        """Everything written to the terminal, once the programs at it have closed it (or after
        ``timeout`` seconds), without colours and cursor movements."""
        self._reader.join(timeout)
        raw = self._out.decode(errors="replace").replace("\r\n", "\n")
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)


@contextlib.contextmanager
def at_terminal(*args: str | Path, cwd: Path | None = None) -> Iterator[tuple[Watched, Terminal]]:
    """``python -m pipeline ARGS`` with a pseudo-terminal as its controlling terminal, stdin
    and stdout; stderr is captured apart, to be read exactly."""
    term = Terminal()
    proc = subprocess.Popen(
        [sys.executable, "-c", _ACQUIRE_TERMINAL, *pipeline_args(*args)],
        env={**env(), "COLUMNS": str(COLUMNS), "TERM": "xterm-256color"},
        cwd=str(cwd or ROOT),
        stdin=term.slave,
        stdout=term.slave,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    os.close(term.slave)  # the program's copies remain; when they close, reading ends
    watched = Watched(proc)
    try:
        yield watched, term
    finally:
        watched.close()
        with contextlib.suppress(OSError):
            os.close(term.master)
