"""The output's lock on a local file system (``store/ledger.py``, ``Ledger``: an OS lock,
``flock``, on ``.pipeline/lock``), between real processes: a second one is refused in one
line naming the holder; a lock given up, even where its file cannot be removed, is taken
by the next; a Ctrl-C (a real SIGINT) landing while a lock is taken leaves none held; a
lock is never taken through a symbolic link; a ``cp -al`` copy's lock (one file under
two names) is the copy's own, while the other store's is held or taken at the same moment; a
run whose output is moved away while it writes it stops, and never gives up or clears what
another run then put at its path."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr

from pipeline.errors import OutputError, PipelineError
from pipeline.store.ledger import InputLock, Ledger
from pipeline.store.location import Location, folders_made
from tests.faultkit import (
    end_process,
    env,
    go_on,
    held_at_complete_mark,
    held_unit_write,
    many_blocks_config,
    many_blocks_input,
    paused_at_lock,
    paused_process,
    run_python,
    status,
    undeletable,
    wait_for_markers,
)

#: A process that takes and gives up the lock of the store argv[1] as its stdin says, one
#: line each ('acquire', 'give_up', 'clear' (the whole record, as a complete run's end),
#: 'churn N END': N times acquire, mark a block and END ('clear' or 'give_up'), answering
#: 'ok' and how many tries met what, as JSON ('taken', 'busy', or the error); 'ctrl-c AT':
#: acquire with a real SIGINT sent to itself at AT, 'locked' (the OS lock just taken) or
#: 'writing' (the holder being written);
#: 'stalled PATH': acquire, stopping 2 s once the lock file's OS lock is taken, PATH made
#: then), answering 'ok', 'refused <the line as JSON>' or 'interrupted' (a KeyboardInterrupt).
_HOLDER = """
import json, os, signal, stat, sys, time
from pipeline.errors import PipelineError
from pipeline.store import ledger
from pipeline.store.location import Location

# a SIGINT raises KeyboardInterrupt however this process was started: a shell's background job
# (a test run started with `&`) inherits SIGINT ignored, which Python then keeps, and every
# 'ctrl-c' had answered 'ok'
signal.signal(signal.SIGINT, signal.default_int_handler)
lock = ledger.Ledger(Location.of(sys.argv[1]), "")
real_fcntl, real_write = ledger.fcntl, ledger._write_all

def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)

class Locking:
    def __init__(self, then):
        self.then = then

    def __getattr__(self, name):
        return getattr(real_fcntl, name)

    def flock(self, fd, op):
        real_fcntl.flock(fd, op)
        if stat.S_ISREG(os.fstat(fd).st_mode) and op & real_fcntl.LOCK_EX:  # the lock file's
            self.then()

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
        elif what[0] == "clear":
            lock.clear()
        elif what[0] == "churn":
            seen = {}
            for _ in range(int(what[1])):
                try:
                    lock.acquire()
                except Exception as e:
                    line = str(e)
                    busy = line.startswith("another run is writing") and "pid ? " not in line
                    met = "busy" if busy else repr(e)
                else:
                    met = "taken"
                    try:
                        lock.mark((0,), {})
                        lock.clear() if what[2] == "clear" else lock.give_up()
                    except Exception as e:
                        met = repr(e)
                seen[met] = seen.get(met, 0) + 1
            print("ok", json.dumps(seen), flush=True)
            continue
        elif what[0] == "ctrl-c":
            if what[1] == "locked":
                ledger.fcntl = Locking(ctrl_c)
            else:
                ledger._write_all = writing
            try:
                lock.acquire()
            finally:
                ledger.fcntl, ledger._write_all = real_fcntl, real_write
        elif what[0] == "stalled":
            def stall(made=what[1]):
                if not os.path.exists(made):
                    open(made, "w").close()
                    time.sleep(2)
            ledger.fcntl = Locking(stall)
            try:
                lock.acquire()
            finally:
                ledger.fcntl = real_fcntl
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

    def tell(self, *what: str) -> None:
        """Send it the line ``what``, its answer left for :meth:`answer`."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(what) + "\n")
        self.proc.stdin.flush()

    def ask(self, *what: str) -> str:
        """Its answer to the line ``what``: 'ok', 'refused ...' or 'interrupted'."""
        self.tell(*what)
        return self.answer()

    def answer(self) -> str:
        """Its answer to the last line it was told."""
        assert self.proc.stdout is not None
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


def _killed_holding(store: Path) -> None:
    """A process that takes ``store``'s lock and is killed holding it (SIGKILL): its lock file
    stays, with its record, held by no one."""
    h = Holder(store)
    try:
        assert h.ask("acquire") == "ok"
        h.proc.kill()
        h.proc.wait(timeout=30)
    finally:
        assert h.proc.stdout is not None and h.proc.stdin is not None
        h.proc.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            h.proc.stdin.close()


def _pid_in(lock_file: Path) -> Any:
    return json.loads(lock_file.read_bytes())["pid"]


def test_a_hard_linked_copys_lock_is_its_own_while_the_others_is_held(
    tmp_path: Path, holder: Holder
) -> None:
    """An output copied with ``cp -al`` while a run holds its lock (the lock file, one file
    under both stores' names): the copy's lock is free, and a run of the copy takes it, a
    file of its own; the first store's stays held by its run, which a third process is
    refused for, naming that run. The copy's run had been refused as "another run is writing
    copy.zarr", naming the first store's run, which ``holder()`` (verify's) said too (h76b)."""
    out, copy = tmp_path / "out.zarr", tmp_path / "copy.zarr"
    assert holder.ask("acquire") == "ok"
    shutil.copytree(out, copy, copy_function=os.link)
    theirs, ours = out / ".pipeline" / "lock", copy / ".pipeline" / "lock"
    assert ours.stat().st_ino == theirs.stat().st_ino and theirs.stat().st_nlink == 2
    mine = Ledger(Location.of(str(copy)), "")
    assert mine.holder() is None
    second = Holder(copy)
    try:
        assert second.ask("acquire") == "ok"
        assert ours.stat().st_ino != theirs.stat().st_ino and theirs.stat().st_nlink == 1
        assert (_pid_in(theirs), _pid_in(ours)) == (holder.proc.pid, second.proc.pid)
        for store, pid in ((out, holder.proc.pid), (copy, second.proc.pid)):
            lock = Ledger(Location.of(str(store)), "")
            found = lock.holder()
            assert found is not None and found["pid"] == pid, (store, found)
            with pytest.raises(OutputError) as info:
                lock.acquire()
            assert f"pid {pid} on" in str(info.value), (store, info.value)
        assert second.ask("give_up") == "ok"
        assert not ours.exists() and _pid_in(theirs) == holder.proc.pid
        assert Ledger(Location.of(str(out)), "").holder() is not None
    finally:
        second.end()


@pytest.mark.parametrize("stalled", ["original", "copy"])
def test_two_hard_linked_copies_locked_at_the_same_moment_each_take_their_own(
    tmp_path: Path, stalled: str
) -> None:
    """Two stores sharing a lock file that a killed run left (``cp -al`` of an output whose
    run was killed), a run of each taking its lock at the same moment, one of them stopped
    for 2 s once its OS lock is taken (a busy machine): each takes a lock of its own. The
    other had been refused, the shared file held by the first's try (h76b)."""
    out, copy = tmp_path / "out.zarr", tmp_path / "copy.zarr"
    _killed_holding(out)
    shutil.copytree(out, copy, copy_function=os.link)
    assert (out / ".pipeline" / "lock").stat().st_nlink == 2
    first, second = (out, copy) if stalled == "original" else (copy, out)
    made = tmp_path / "stalled"
    slow, quick = Holder(first), Holder(second)
    try:
        slow.tell("stalled", str(made))
        for _ in range(3000):  # its OS lock taken, and stopped
            if made.exists():
                break
            time.sleep(0.01)
        assert made.exists(), "the stalled process never took its lock"
        assert quick.ask("acquire") == "ok"
        assert slow.answer() == "ok"
        locks = [s / ".pipeline" / "lock" for s in (first, second)]
        assert locks[0].stat().st_ino != locks[1].stat().st_ino
        assert [_pid_in(f) for f in locks] == [slow.proc.pid, quick.proc.pid]
        assert slow.ask("give_up") == "ok" and quick.ask("give_up") == "ok"
    finally:
        slow.end()
        quick.end()


def test_a_copy_put_where_a_held_store_was_moved_from_is_still_its_runs(
    tmp_path: Path, holder: Holder
) -> None:
    """A store moved away while its run holds the lock (``mv out.zarr old.zarr``), and a
    ``cp -al`` copy of it put at its path: that run writes by the path, so the copy's lock is
    still its run's (its record names that path): a run there is refused, naming it, and
    ``holder()`` names it; only a copy at another path and folder is a store of its own."""
    out, moved = tmp_path / "out.zarr", tmp_path / "old.zarr"
    assert holder.ask("acquire") == "ok"
    out.rename(moved)
    shutil.copytree(moved, out, copy_function=os.link)
    lock = _lock(tmp_path)
    found = lock.holder()
    assert found is not None and found["pid"] == holder.proc.pid, found
    with pytest.raises(OutputError) as info:
        lock.acquire()
    assert f"pid {holder.proc.pid} on" in str(info.value), info.value
    assert (out / ".pipeline" / "lock").stat().st_nlink == 2


@pytest.mark.parametrize("end", ["give_up", "clear"])
def test_a_holder_whose_store_was_moved_away_leaves_the_lock_at_its_path(
    tmp_path: Path, holder: Holder, end: str
) -> None:
    """A store moved away while a process holds its lock (``mv out.zarr moved.zarr``), and
    another process taking the lock of a new store at the old path: the first, giving its
    lock up (or clearing its record, as a complete run's end), removes nothing at that path,
    which is the other's; a third process there is refused, naming the second. Its release
    had removed the file at its path, the other's, and the third took a lock of its own: two
    writers of one output (h76d)."""
    out, moved = tmp_path / "out.zarr", tmp_path / "moved.zarr"
    assert holder.ask("acquire") == "ok"
    out.rename(moved)
    second = Holder(out)
    try:
        assert second.ask("acquire") == "ok"
        record = Ledger(Location.of(str(out)), "")
        record.write_manifest({"the": "second's"})
        answer = holder.ask(end)
        if end == "clear":  # refused: the record at its path is another's
            assert answer.startswith("refused ") and "was moved" in answer, answer
        else:
            assert answer == "ok", answer
        assert _pid_in(out / ".pipeline" / "lock") == second.proc.pid
        assert record.read_manifest() == {"the": "second's"}
        with pytest.raises(OutputError) as info:
            record.acquire()
        assert f"pid {second.proc.pid} on" in str(info.value), info.value
        assert second.ask("give_up") == "ok"
    finally:
        second.end()


#: ``python -m pipeline`` with each block's write (and each generated unit) 0.05 s late (a
#: slower disk), so that a run or generation is still writing when its array is moved: the
#: CLI's own ``main`` on argv[1:].
_SLOW_CLI = """
import sys, time
from pipeline.running import generate, tasks

def late(plain):
    def call(*args, **kwargs):
        time.sleep(0.05)
        return plain(*args, **kwargs)
    return call

tasks.write_block = late(tasks.write_block)
generate.generate_unit = late(generate.generate_unit)
from pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_whose_output_is_moved_away_stops_writing_there(tmp_path: Path) -> None:
    """An output moved away while its run writes it (``mv out.zarr moved.zarr``, real
    processes): the run stops, in one line naming the move and the fix, before writing more
    by the old path; a run of another config begun there with ``--overwrite`` writes its own
    output alone (its bytes NumPy's of what zarr-python reads of the input, bit for bit, and
    ``verify --all`` agreeing), and the moved output resumes there to NumPy's. The first run
    had gone on writing its blocks and markers by the path, into the new run's output, both
    exiting 0, the new one said complete with the other's blocks in it (h76d)."""
    inp, out, moved = tmp_path / "in.zarr", tmp_path / "out.zarr", tmp_path / "moved.zarr"
    x = many_blocks_input(inp, 120)
    files = {p: p.read_bytes() for p in inp.rglob("*") if p.is_file()}

    def config(name: str, store: Path, factor: int) -> Path:
        cfg = many_blocks_config(inp, store, cluster={"dashboard": ""})
        cfg["stages"] = [{"op": "multiply", "factor": factor}]
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg))
        return path

    first, second = config("a.yaml", out, 2), config("b.yaml", out, 3)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CLI, "run", str(first), "--progress", "none"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for_markers(proc, out, 10) > 0, "the run ended before it was moved"
        out.rename(moved)
        later = run_python(["-m", "pipeline", "run", second, "--overwrite"], cwd=tmp_path)
        assert later.returncode == 0, later.stderr
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "was moved" in lines[0] and "--resume" in lines[0], err
        there = config("c.yaml", moved, 2)  # the moved output, resumed where it is now
        done = run_python(["-m", "pipeline", "run", there, "--resume"], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        _the_input_times(tmp_path, inp, (out, second, 3), (moved, there, 2))
        assert np.array_equal(zarr.open_array(str(inp), mode="r")[...], x, equal_nan=True)
        assert {p: p.read_bytes() for p in inp.rglob("*") if p.is_file()} == files
    finally:
        end_process(proc)


#: :func:`held_at_complete_mark` of a local output: ``zarr.json`` written through the
#: output's folder.
_HELD_AT_COMPLETE_MARK = held_at_complete_mark("""
import time
from pipeline.store import location

plain_write = location.Folder.write


def write(self, name, *args, **kwargs):
    if hold(name == "zarr.json"):
        while not released():
            time.sleep(0.02)
    return plain_write(self, name, *args, **kwargs)


location.Folder.write = write
""")


def _waits_on_folder_lock(pid: int, folder: Path) -> bool:
    """Whether the process ``pid`` waits for an OS lock (``flock``) on ``folder``
    (``/proc/locks`` lists each waiter with ``->``)."""
    ino = folder.stat().st_ino
    with open("/proc/locks") as f:
        return any(
            "->" in line and f" {pid} " in line and line.split()[-3].endswith(f":{ino}")
            for line in f
        )


def test_a_displaced_run_s_complete_mark_never_lands_in_the_new_holder_s_output(
    tmp_path: Path,
) -> None:
    """h84c: a run (``a.yaml``, x2) held at its end just before it writes its "complete"
    mark through its output's folder, after its checks of its lock; its record removed
    (``rm -rf out.zarr/.pipeline``) and a run of another config begun there with
    ``--overwrite`` (``b.yaml``, x3), to be held before its own mark (real processes, no
    timing). The second's take of the lock waits for the first's mark, which is written
    under an OS lock on the output's folder with its check, so it lands, if at all, before
    the second run takes the lock, never in that run's output: once the second is held
    before its mark, the output says "incomplete" with its record; the first stops in one
    line saying its record was removed; the second ends complete, NumPy's x3 bit for bit.
    The first run's whole document, marked complete, had been written over the second's
    output while that run wrote it."""
    inp, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    x = many_blocks_input(inp, 6)
    first = _factor_config(tmp_path, inp, "a.yaml", out, 2)
    second = _factor_config(tmp_path, inp, "b.yaml", out, 3)
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HELD_AT_COMPLETE_MARK, str(gate), "run", str(first)]
        + ["--progress", "none"],
        env=env(),
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    later = None
    try:
        deadline = time.monotonic() + 300
        while not Path(f"{gate}.held").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached its mark"
            time.sleep(0.05)
        shutil.rmtree(out / ".pipeline")  # its record removed while it runs
        later = paused_process("run", second, "--overwrite", cwd=tmp_path, at=_AT_MARK)
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.append(later.stdout.readline()))
        reader.start()
        # held before its mark (it took the lock and wrote its blocks), or waiting for the
        # first run's mark to be written (the take waits for it)
        while not said and not _waits_on_folder_lock(later.pid, out):
            assert later.poll() is None, later.communicate()
            assert time.monotonic() < deadline, "the second run neither waits nor is held"
            time.sleep(0.05)
        Path(f"{gate}.release").touch()
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "was moved, or its record removed or replaced" in lines[0]
        reader.join(300)
        assert said == ["locked\n"], said  # the second, held before its mark
        doc = json.loads((out / "zarr.json").read_text())
        record = json.loads(doc["attributes"]["pipeline"])
        assert record["status"] == "incomplete", record  # the first run's mark: not there
        assert [s.split(" ")[0] for s in record["stages"]] == ["multiply(factor=3)"], record
        out_b, err_b = go_on(later)
        assert later.returncode == 0, out_b + err_b
        y = zarr.open_array(str(out), mode="r")
        assert np.array_equal(y[...].view(np.uint32), (x * np.float32(3)).view(np.uint32))
        assert json.loads(y.attrs["pipeline"])["status"] == "complete"
    finally:
        end_process(proc)
        if later is not None:
            end_process(later)


#: Where :func:`paused_process` holds a run: at its "complete" mark.
_AT_MARK = "pipeline.running.output:mark_complete"


def _the_input_times(tmp_path: Path, inp: Path, *outputs: tuple[Path, Path, int]) -> None:
    """Assert of each (output, its config, factor) of ``outputs``: the output reads as the
    input ``inp`` times the factor, bit for bit, and ``verify --all`` finds no block
    mismatched."""
    for store, cfg, factor in outputs:
        y = zarr.open_array(str(store), mode="r")[...]
        expected = zarr.open_array(str(inp), mode="r")[...] * np.float32(factor)
        assert np.array_equal(y.view(np.uint32), expected.view(np.uint32)), store
        checked = run_python(["-m", "pipeline", "verify", cfg, "--all"], cwd=tmp_path)
        assert checked.returncode == 0 and "mismatched     0" in checked.stdout, checked


def _factor_config(tmp_path: Path, inp: Path, name: str, store: Path, factor: int) -> Path:
    """:func:`many_blocks_config` of ``inp`` to ``store``, multiplied by ``factor``, written
    to ``tmp_path/name``."""
    cfg = many_blocks_config(inp, store, cluster={"dashboard": ""})
    cfg["stages"] = [{"op": "multiply", "factor": factor}]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_block_in_flight_as_its_output_moves_lands_in_the_moved_output(tmp_path: Path) -> None:
    """An output moved away (``mv out.zarr moved.zarr``) while one of its run's blocks is
    being written, past that block's check of the lock (real processes: a joined cluster's
    worker holds the task there), then a run of another config at ``out.zarr`` that
    finishes before the held block's write goes on: the held block had been written by the
    path, into the new run's output after that run wrote the same block and said it
    complete, one block of the first run's stages in it. It lands in the moved output, its
    run's own (the task writes relative to the folder it checked); the first run stops at
    its next block in one line that says to resume the moved output (it had said, of the new
    output at the path, "complete, but the stages changed: `run --overwrite` recomputes
    it"), the new output is NumPy's of the input, bit for bit, and ``verify --all`` agrees,
    and the moved output resumes to NumPy's."""
    inp, out, moved = tmp_path / "in.zarr", tmp_path / "out.zarr", tmp_path / "moved.zarr"
    many_blocks_input(inp, 8)
    first = _factor_config(tmp_path, inp, "a.yaml", out, 2)
    second = _factor_config(tmp_path, inp, "b.yaml", out, 3)

    def move_and_run_again() -> None:
        out.rename(moved)
        later = run_python(["-m", "pipeline", "run", second, "--overwrite"], cwd=tmp_path)
        assert later.returncode == 0, later.stderr

    code, err = held_unit_write(tmp_path, ["run", str(first)], move_and_run_again)
    assert code == 1, err
    assert (tmp_path / "hold.done").exists()  # the held block was written
    y = zarr.open_array(str(out), mode="r")[...]
    expected = zarr.open_array(str(inp), mode="r")[...] * np.float32(3)
    assert np.array_equal(y.view(np.uint32), expected.view(np.uint32))  # the new run's alone
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("dashboard: ")]
    assert len(lines) == 1 and "was moved" in lines[0], err
    assert lines[0].endswith(
        "finish the output where it is now with `run --resume` (output.store naming it)"
    ), err
    there = _factor_config(tmp_path, inp, "c.yaml", moved, 2)  # resumed where it is now
    done = run_python(["-m", "pipeline", "run", there, "--resume"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert status(out) == status(moved) == "complete"
    _the_input_times(tmp_path, inp, (out, second, 3), (moved, there, 2))


def test_a_block_in_flight_as_its_output_is_removed_writes_nothing_at_its_path(
    tmp_path: Path,
) -> None:
    """An output removed (``rm -rf out.zarr``) while one of its run's blocks is being
    written, past that block's check of the lock: the block's write had made the output's
    folders again at the path and left its unit there (a folder of chunks with no metadata,
    in the way of the next run there). Nothing is made at the path; the run stops in the
    one line a move gets, not as a store refusing a chunk."""
    inp, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    many_blocks_input(inp, 8)
    cfg = _factor_config(tmp_path, inp, "a.yaml", out, 2)
    code, err = held_unit_write(tmp_path, ["run", str(cfg)], lambda: shutil.rmtree(out))
    assert code == 1, err
    assert not out.exists(), sorted(out.rglob("*"))
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("dashboard: ")]
    assert len(lines) == 1 and "was moved, or its record removed" in lines[0], err
    assert "is now gone" in lines[0] and "cannot write" not in lines[0], err


def _moved_and_copied_short(out: Path, moved: Path) -> None:
    """``mv out moved``, then a copy of it put at ``out`` (its record, its lock file's bytes
    too) with one chunk file fewer: a folder at the output's path whose bytes are not all
    the run's."""
    out.rename(moved)
    shutil.copytree(moved, out)
    next(p for p in sorted((out / "c").rglob("*")) if p.is_file()).unlink()


@pytest.mark.parametrize(
    "at",
    ["pipeline.running.output:mark_complete", "pipeline.store.arrays:update_attributes"],
    ids=["before-the-mark", "at-the-mark"],
)
def test_an_output_replaced_as_its_run_marks_it_complete_is_not_marked(
    tmp_path: Path, at: str
) -> None:
    """An output moved away once every block is written, as its run marks it complete
    (real processes: the run held at its mark, before its check of the lock or past it, as
    zarr-python would write the attributes), and a copy of it a chunk short put at its path,
    its lock file's bytes with it: the mark had been written by the path, the copy said
    complete with a chunk missing, exit 0. The run stops in one line naming the move and the
    fix; the folder at the path is not marked; the mark lands in the run's own (moved)
    output or nowhere, which then reads as NumPy's of the input, and ``verify --all``
    agrees, once resumed where it is now."""
    inp, out, moved = tmp_path / "in.zarr", tmp_path / "out.zarr", tmp_path / "moved.zarr"
    many_blocks_input(inp, 4)
    cfg = _factor_config(tmp_path, inp, "a.yaml", out, 2)
    with paused_at_lock("run", cfg, cwd=tmp_path, at=at) as held:
        _moved_and_copied_short(out, moved)
        _, err = go_on(held)
    assert held.returncode == 1, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("dashboard: ")]
    assert len(lines) == 1 and "was moved" in lines[0] and "--resume" in lines[0], err
    assert status(out) == "incomplete"  # the copy at the path: never said complete
    there = _factor_config(tmp_path, inp, "b.yaml", moved, 2)  # resumed where it is now
    done = run_python(["-m", "pipeline", "run", there, "--resume"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert status(moved) == "complete"
    _the_input_times(tmp_path, inp, (moved, there, 2))


def _generate_config(
    tmp_path: Path, store: Path, rows: int, name: str = "a.yaml", seed: int | None = None
) -> Path:
    """A CPU run's config written to ``tmp_path/name`` whose input ``store`` ``pipeline
    generate`` makes: ``rows`` rows of 4096 float32, a shard a row (``seed``: its values'),
    multiplied by 2 into ``tmp_path/out.zarr``."""
    generated: dict[str, Any] = {"shape": [rows, 4096], "shards": [1, 4096], "dtype": "float32"}
    if seed is not None:
        generated["seed"] = seed
    cfg = {
        "input": {"store": str(store), "generate": generated},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": 2}],
        "backend": "cpu",
        "cluster": {"dashboard": ""},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_an_input_replaced_as_its_generation_marks_it_generated_is_not_marked(
    tmp_path: Path,
) -> None:
    """An input moved away once ``pipeline generate`` wrote every unit, as it marks it
    generated (held at that mark, past its check of the lock), and a copy of it a chunk short
    put at its path: the mark had been written by the path, the copy said generated with a
    chunk missing, exit 0. The generation stops in one line naming the move and the fix, and
    the copy at the path is not marked."""
    made, moved = tmp_path / "in.zarr", tmp_path / "moved.zarr"
    path = _generate_config(tmp_path, made, 4)
    at = "pipeline.running.generate:mark_generated"
    with paused_at_lock("generate", path, cwd=tmp_path, at=at) as held:
        _moved_and_copied_short(made, moved)
        _, err = go_on(held)
    assert held.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "was moved" in lines[0] and "generate it again" in lines[0], err
    generated = dict(zarr.open_array(str(made), mode="r").attrs)["pipeline_generated"]
    assert generated.get("status") != "complete", generated


def test_a_run_taking_the_lock_as_another_clears_its_record_takes_it_or_is_refused(
    tmp_path: Path,
) -> None:
    """Two processes at one store, one taking the lock and clearing the whole record (a
    complete run's end), the other taking and giving it up, 300 times each at once: every
    try takes the lock or is refused as busy, naming its holder, and every clear removes
    the record. A take between the record's removal and its folder's had raised a bare
    FileNotFoundError (the folder gone under its open), and the clear "Directory not empty"
    (the other's new lock in it), which a complete run said as its record staying (h76d)."""
    out = tmp_path / "out.zarr"
    finishing, taking = Holder(out), Holder(out)
    try:
        finishing.tell("churn", "300", "clear")
        taking.tell("churn", "300", "give_up")
        for h in (finishing, taking):
            word, _, seen = h.answer().partition(" ")
            assert word == "ok" and set(json.loads(seen)) <= {"taken", "busy"}, seen
            assert json.loads(seen).get("taken"), seen
    finally:
        finishing.end()
        taking.end()
    assert not (out / ".pipeline" / "lock").exists()


#: A process that removes and makes again the folder argv[1] until its stdin closes, as runs
#: ending and taking a lock at once remove and make their record's folder.
_REMAKING = """
import os, sys, threading
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("remaking", flush=True)
while not stop.is_set():
    for step in (os.rmdir, os.mkdir):
        try:
            step(sys.argv[1])
        except OSError:
            pass
"""


def test_folders_are_made_while_another_process_removes_and_makes_them(tmp_path: Path) -> None:
    """The folders on a write's way (a marker's, a lock's record folder) made while another
    process removes and makes one again (a run ending as the next takes the lock): never a
    FileExistsError. ``os.makedirs(..., exist_ok=True)`` raises it where its ``mkdir`` finds
    the folder and its look after finds none, which had failed a lock's take, one in some
    thousands (test_a_run_taking_the_lock_as_another_clears_its_record_takes_it_or_is_refused,
    once in 300 runs)."""
    record = tmp_path / "out.zarr" / ".pipeline"
    record.mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _REMAKING, str(record)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "remaking\n"
        for _ in range(4000):
            folders_made(str(record))  # FileExistsError had come here, some 100 times in 20000
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]


def test_a_generation_whose_input_is_moved_away_stops_writing_there(tmp_path: Path) -> None:
    """An input moved away while ``pipeline generate`` writes it (real processes): the
    generation stops in one line naming the move and the fix, writes nothing at the old
    path (what was in flight goes into the moved input), and leaves its lock in the moved
    input (an unfinished generation's, which the next generation there takes over and makes
    whole). It had gone
    on writing its units by the path, a folder of chunks there with no metadata, and ended
    in a bare "ArrayNotFoundError: No array found" line (h76d)."""
    made, moved = tmp_path / "in.zarr", tmp_path / "moved.zarr"

    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CLI, "generate", str(_generate_config(tmp_path, made, 150))],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(3000):
            if len(list((made / "c").glob("*/*"))) >= 10 or proc.poll() is not None:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the generation ended before it was moved"
        made.rename(moved)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "was moved" in lines[0] and "generate it again" in lines[0]
        # nothing there: the units in flight as it moved went with it (one a worker thread
        # had been written there, h77e)
        assert not made.exists(), sorted(made.rglob("*"))
        assert (moved / ".pipeline" / "generate.lock").exists()
        again = run_python(
            ["-m", "pipeline", "generate", _generate_config(tmp_path, moved, 150, "b.yaml")],
            tmp_path,
        )
        assert again.returncode == 0, again.stderr
        assert not (moved / ".pipeline").exists()
        values = zarr.open_array(str(moved), mode="r")[...]
        assert values.shape == (150, 4096) and np.isfinite(values).all()
    finally:
        end_process(proc)


def _files(store: Path) -> dict[str, bytes]:
    """Every file under ``store``, by its path below it, with its bytes."""
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}


def _theirs_put_at(store: Path) -> dict[str, bytes]:
    """A user's array put at ``store`` (3 x 5 int16, 0 to 14, chunks of a row), and its files
    (:func:`_files`)."""
    theirs = zarr.create_array(store=str(store), shape=(3, 5), dtype="int16", chunks=(1, 5))
    theirs[...] = np.arange(15, dtype=np.int16).reshape(3, 5)
    return _files(store)


def _dataset_into_group(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A Dataset written by xarray as ``in.zarr`` (Zarr v3, consolidated), and the config
    that runs its ``v`` into the group ``out.zarr`` (which its run consolidates): the input,
    the output and the config file."""
    xr = pytest.importorskip("xarray")
    inp, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    ds = xr.Dataset(
        {"v": (("t", "x"), np.arange(4 * 8, dtype=np.float32).reshape(4, 8))},
        coords={"t": np.arange(4)},
    )
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        ds.to_zarr(inp, zarr_format=3, consolidated=True)
    cfg = {
        "input": {"store": str(inp), "array": "v"},
        "output": {"store": str(out)},
        "stages": [{"op": "multiply", "factor": 2}],
        "backend": "cpu",
        "cluster": {"dashboard": ""},
    }
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return inp, out, path


def _consolidated_status(group: Path, array: str) -> str | None:
    """The run record's status of ``array`` as the consolidated metadata of the group at
    ``group`` (Zarr v3) says it."""
    doc = json.loads((group / "zarr.json").read_text())
    attrs = doc["consolidated_metadata"]["metadata"][array]["attributes"]
    return json.loads(attrs["pipeline"]).get("status")


def test_an_output_group_replaced_as_its_run_consolidates_it_keeps_what_is_there(
    tmp_path: Path,
) -> None:
    """An output written into a group with consolidated metadata, moved away as its run
    marks it complete (held at the mark, past its check of the lock), and a user's Dataset
    (written by xarray, without consolidated metadata) put at its path: zarr-python's
    consolidation had written by the path, after the mark, into the user's group metadata
    (found out by the check after, exit 1). The run stops in one line naming the move; the
    folder at the path keeps every byte it had; the consolidated copy is written into the
    run's own (moved) output, which it says complete (h79c)."""
    xr = pytest.importorskip("xarray")
    _, out, cfg = _dataset_into_group(tmp_path)
    moved = tmp_path / "moved.zarr"
    theirs = xr.Dataset({"w": (("y",), np.arange(3, dtype=np.int16))})  # a user's
    with paused_at_lock(
        "run", cfg, cwd=tmp_path, at="pipeline.store.arrays:update_attributes"
    ) as held:
        out.rename(moved)
        theirs.to_zarr(out, zarr_format=3, consolidated=False)
        there = _files(out)
        _, err = go_on(held)
    assert held.returncode == 1, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("dashboard: ")]
    assert len(lines) == 1 and "was moved" in lines[0], err
    assert _files(out) == there  # the user's group at the path: nothing written into it
    assert "consolidated_metadata" not in json.loads((out / "zarr.json").read_text())
    assert status(moved, "v") == _consolidated_status(moved, "v") == "complete"


def test_an_output_replaced_as_its_run_overwrites_it_loses_nothing_at_its_path(
    tmp_path: Path,
) -> None:
    """A complete output that a run with ``--overwrite`` replaces, moved away as that run
    clears its old chunks (held there, past its check of the lock), and another array (a
    user's, made with zarr-python) put at its path: the old chunks had been deleted by the
    path, the user's array losing its metadata and chunks, before the check after found the
    move (exit 1). The run stops in one line naming the move; the array at the path keeps
    every byte it had; what the run deleted and made is in the moved output, its own
    (h79c)."""
    inp, out, moved = tmp_path / "in.zarr", tmp_path / "out.zarr", tmp_path / "moved.zarr"
    many_blocks_input(inp, 4)
    first = _factor_config(tmp_path, inp, "a.yaml", out, 2)
    done = run_python(["-m", "pipeline", "run", first], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    second = _factor_config(tmp_path, inp, "b.yaml", out, 3)
    at = "pipeline.store.arrays:clear_array"
    with paused_at_lock("run", second, "--overwrite", cwd=tmp_path, at=at) as held:
        out.rename(moved)
        there = _theirs_put_at(out)
        _, err = go_on(held)
    assert held.returncode == 1, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("dashboard: ")]
    assert len(lines) == 1 and "was moved" in lines[0], err
    assert _files(out) == there  # the user's array at the path: as it was
    assert np.array_equal(zarr.open_array(str(out), mode="r")[...], np.arange(15).reshape(3, 5))
    assert status(moved) == "incomplete"  # the run's own, made anew where it is now


def test_an_output_replaced_as_its_run_clears_its_record_keeps_the_record_there(
    tmp_path: Path,
) -> None:
    """A complete output moved away as its run removes its run record (held at the record's
    first folder's delete, past its check that the lock is its own), and a copy of it put at
    its path, the record with it: the record had been removed by the path, the copy's markers
    and record deleted by a run that was not its own. The folder at the path keeps every byte
    it had; the record removed is the run's own, in the moved output, which is complete with
    NumPy's values of the input (h79c)."""
    inp, out, moved = tmp_path / "in.zarr", tmp_path / "out.zarr", tmp_path / "moved.zarr"
    many_blocks_input(inp, 4)
    cfg = _factor_config(tmp_path, inp, "a.yaml", out, 2)
    at = "pipeline.store.location:_remove_local_tree"
    with paused_at_lock("run", cfg, cwd=tmp_path, at=at) as held:
        assert (out / ".pipeline" / "done").is_dir()  # held at the record's delete
        out.rename(moved)
        shutil.copytree(moved, out)
        there = _files(out)
        _, err = go_on(held)
    assert _files(out) == there, err  # the copy at the path: its record as it was
    assert not (moved / ".pipeline").exists(), sorted((moved / ".pipeline").rglob("*"))
    assert status(moved) == "complete"
    _the_input_times(tmp_path, inp, (moved, _factor_config(tmp_path, inp, "b.yaml", moved, 2), 2))


def test_an_input_replaced_as_its_generation_makes_it_loses_nothing_at_its_path(
    tmp_path: Path,
) -> None:
    """An input that ``pipeline generate`` makes again, moved away as the generation clears
    what was there (held there, past its check of the lock), and a user's array put at its
    path: the old chunks had been deleted by the path, the user's array losing its metadata
    and chunks, before the check after found the move. The generation stops in one line
    naming the move; the array at the path keeps every byte it had (h79c)."""
    made, moved = tmp_path / "in.zarr", tmp_path / "moved.zarr"

    first = run_python(
        ["-m", "pipeline", "generate", _generate_config(tmp_path, made, 4, seed=1)], tmp_path
    )
    assert first.returncode == 0, first.stderr  # an earlier input there, which it replaces
    path = _generate_config(tmp_path, made, 4, "b.yaml", seed=2)
    at = "pipeline.store.arrays:clear_array"
    with paused_at_lock("generate", path, cwd=tmp_path, at=at) as held:
        made.rename(moved)
        there = _theirs_put_at(made)
        _, err = go_on(held)
    assert held.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "was moved" in lines[0], err
    assert _files(made) == there  # the user's array at the path: as it was
    assert np.array_equal(zarr.open_array(str(made), mode="r")[...], np.arange(15).reshape(3, 5))


def test_a_failed_write_through_the_held_folder_never_names_its_proc_name(
    tmp_path: Path,
) -> None:
    """A write that the run makes through its held output folder and the system refuses
    (the consolidated copy's rename onto a root ``zarr.json`` that cannot be replaced, on
    ``--overwrite`` of a Dataset's output) is said by the output's own path: the line had
    named ``/proc/self/fd/22/zarr.json``, a name of that process alone (h80a)."""
    import xarray as xr

    ds = xr.Dataset({"v": (("x",), np.arange(4.0))}, coords={"x": np.arange(4)})
    with warnings.catch_warnings():  # zarr-python's on a v3 consolidated copy
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp_path / "ds.zarr", mode="w", consolidated=True, zarr_format=3)
    out = tmp_path / "out.zarr"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "input": {"store": str(tmp_path / "ds.zarr"), "array": "v"},
                "output": {"store": str(out)},
                "stages": [{"op": "square"}],
                "cluster": {"protocol": "inproc", "dashboard": ""},
            }
        )
    )
    first = run_python(["-m", "pipeline", "run", str(cfg), "-q"], tmp_path)
    assert first.returncode == 0, first.stderr
    with undeletable(out / "zarr.json"):
        again = run_python(["-m", "pipeline", "run", str(cfg), "-q", "--overwrite"], tmp_path)
    err = again.stderr
    assert again.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "/proc/self" not in err and f"'{out}/zarr.json'" in err, err
