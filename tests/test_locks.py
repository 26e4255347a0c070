"""The output's lock on a local file system (``store/ledger.py``, ``Ledger``: an OS lock,
``flock``, on ``.pipeline/lock``), between real processes: a second one is refused in one
line naming the holder; a lock given up, even where its file cannot be removed, is taken
by the next; a Ctrl-C (a real SIGINT) landing while a lock is taken leaves none held; a
lock is never taken through a symbolic link."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import OutputError, PipelineError
from pipeline.store.ledger import InputLock, Ledger
from pipeline.store.location import Location
from tests.faultkit import env, undeletable

#: A process that takes and gives up the lock of the store argv[1] as its stdin says, one
#: line each ('acquire', 'give_up', 'ctrl-c AT': acquire with a real SIGINT sent to itself
#: at AT, 'locked' (the OS lock just taken) or 'writing' (the holder being written)),
#: answering 'ok', 'refused <the line as JSON>' or 'interrupted' (a KeyboardInterrupt).
_HOLDER = """
import json, os, signal, sys
from pipeline.errors import PipelineError
from pipeline.store import ledger
from pipeline.store.location import Location

lock = ledger.Ledger(Location.of(sys.argv[1]), "")
real_fcntl, real_write = ledger.fcntl, ledger._write_all

def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)

class Locking:
    def __getattr__(self, name):
        return getattr(real_fcntl, name)

    def flock(self, fd, op):
        real_fcntl.flock(fd, op)
        ctrl_c()

def writing(fd, data):
    ctrl_c()
    real_write(fd, data)

for line in sys.stdin:
    what = line.split()
    try:
        if what[0] == "acquire":
            lock.acquire()
        elif what[0] == "give_up":
            lock.give_up()
        elif what[0] == "ctrl-c":
            if what[1] == "locked":
                ledger.fcntl = Locking()
            else:
                ledger._write_all = writing
            try:
                lock.acquire()
            finally:
                ledger.fcntl, ledger._write_all = real_fcntl, real_write
        print("ok", flush=True)
    except PipelineError as e:
        print("refused", json.dumps(str(e)), flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


class Holder:
    """A process of its own that takes and gives up the lock as :meth:`ask` tells it."""

    def __init__(self, store: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(store)],
            env=env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, *what: str) -> str:
        """Its answer to the line ``what``: 'ok', 'refused ...' or 'interrupted'."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(what) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer, f"the holder ended ({self.proc.wait(timeout=30)})"
        return answer

    def end(self) -> None:
        """Close its stdin (it ends), wait for it, close its stdout."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self.proc.stdout.close()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    h = Holder(tmp_path / "out.zarr")
    try:
        yield h
    finally:
        h.end()


def _lock(tmp_path: Path) -> Ledger:
    return Ledger(Location.of(str(tmp_path / "out.zarr")), "")


def test_a_second_process_is_refused_in_one_line_naming_the_holder(
    tmp_path: Path, holder: Holder
) -> None:
    """While another process holds the lock, this one is refused (OutputError, one line,
    the holder's pid and host, its ``holder`` field); once it gives the lock up, or ends
    holding it (the OS drops it), this one takes it."""
    assert holder.ask("acquire") == "ok"
    mine = _lock(tmp_path)
    with pytest.raises(OutputError) as info:
        mine.acquire()
    line = str(info.value)
    assert "\n" not in line and f"pid {holder.proc.pid} on {socket.gethostname()}" in line, line
    assert info.value.holder["pid"] == holder.proc.pid
    found = mine.holder()
    assert found is not None and found["pid"] == holder.proc.pid
    assert holder.ask("give_up") == "ok"
    assert mine.holder() is None
    mine.acquire()
    refused = holder.ask("acquire")
    assert refused.startswith("refused ") and f"pid {os.getpid()}" in json.loads(refused[8:])
    mine.give_up()
    assert holder.ask("acquire") == "ok"
    holder.proc.kill()  # ended holding it
    holder.proc.wait(timeout=30)
    mine.acquire()
    mine.give_up()


def test_a_lock_given_up_where_its_file_cannot_be_removed_is_taken_by_the_next(
    tmp_path: Path, holder: Holder
) -> None:
    """A lock whose file its holder could not remove as it gave the lock up (a folder that
    forbids deletions) holds nothing: the OS lock was dropped (h71b), and the next process
    takes it; the file left there does not refuse it."""
    assert holder.ask("acquire") == "ok"
    lock_file = tmp_path / "out.zarr" / ".pipeline" / "lock"
    # root's immutable folder, or anyone else's read-only one: the file is not removed
    with undeletable(lock_file if os.geteuid() else lock_file.parent):
        assert holder.ask("give_up") == "ok"
        assert lock_file.exists()
        mine = _lock(tmp_path)
        assert mine.holder() is None
        mine.acquire()
        assert holder.ask("acquire").startswith("refused ")
        mine.give_up()
        assert lock_file.exists()
    assert holder.ask("acquire") == "ok"


@pytest.mark.parametrize("at", ["locked", "writing"])
def test_a_ctrl_c_while_the_lock_is_taken_leaves_it_held_by_none(
    tmp_path: Path, holder: Holder, at: str
) -> None:
    """A real SIGINT to the process taking the lock, landing once its OS lock is taken but
    before this process's table keeps it (``at``: just after the ``flock``, or as the
    holder's pid is written): the lock is not held, neither by a descriptor left open
    (another process had been refused by it) nor for this process's next take (refused as
    another thread's run), and no lock file is left half written (h72c)."""
    assert holder.ask("ctrl-c", at) == "interrupted"
    mine = _lock(tmp_path)
    assert mine.holder() is None
    mine.acquire()
    mine.give_up()
    assert holder.ask("acquire") == "ok"
    assert mine.holder() is not None
    assert holder.ask("give_up") == "ok"
    assert not (tmp_path / "out.zarr" / ".pipeline" / "lock").exists()


@pytest.mark.parametrize("kind", ["output", "input"])
@pytest.mark.parametrize("link", ["lock to nothing", "lock to a file", "folder to nothing"])
def test_a_lock_is_never_taken_through_a_symbolic_link(
    tmp_path: Path, kind: str, link: str
) -> None:
    """The lock file, or the record's folder, a symbolic link (to nothing, or to a file
    elsewhere): the lock had been taken through it, the link's target created (or
    truncated) outside the store, locked, and left there after the lock's link was
    removed. Refused in one line naming the link, its target and the fix; nothing is
    created or written at the target (h72c)."""
    store = tmp_path / "a.zarr"
    lock = (Ledger if kind == "output" else InputLock)(Location.of(str(store)), "")
    record = store / ".pipeline"
    target = tmp_path / "elsewhere"
    if link == "folder to nothing":
        store.mkdir()
        record.symlink_to(target)
        named = record
    else:
        record.mkdir(parents=True)
        named = record / lock.LOCK
        named.symlink_to(target)
        if link == "lock to a file":
            target.write_bytes(b"someone's file")
    with pytest.raises(PipelineError) as info:
        lock.acquire()
    line = str(info.value)
    assert "\n" not in line and str(named) in line and str(target) in line, line
    assert "remove the link" in line, line
    if link == "lock to a file":
        assert target.read_bytes() == b"someone's file"
    else:
        assert not target.exists()
    assert lock.holder() is None
