"""Spare files: nameless, pre-allocated files on the output's file system, that writes fill.

On a memory-backed file system (tmpfs), most of the cost of writing a new file is the kernel
finding and clearing its pages: writing 256 MiB files on the H100 host's /dev/shm ran at about
half the speed of writing into files whose pages were already there. A write's thread is on the
path of its block, and the GPU waits for the blocks; so background threads in each worker
process makes the next files ahead, on cores the task threads leave idle: an ``O_TMPFILE``
file (it has no name, so nothing is ever left in the store, and the kernel frees it when it is
closed or the process ends), given its pages with ``posix_fallocate``. A write takes one, fills
it, trims it to its size, and links it into place (under a hidden name, then renamed over the
key, so a unit file appears whole or not at all).

Spares are only a way to go faster: a write that finds none ready writes a new file as usual,
and a file system that has no ``O_TMPFILE`` (or runs out of space for spares) simply gets none.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import threading
from collections.abc import Sequence
from typing import Any

#: Spares are made this much larger than the last write asked for (and rounded to MiB), so
#: that units of slightly varying compressed size still fit; a larger write still works.
_SLACK = 1 / 64
_MIB = 1 << 20

_MEMORY_FS = {"tmpfs"}

#: Threads that make spares, per process: one per two spares kept ready, at most this many
#: (one thread allocating pages may not keep up with a GPU's output).
_MAX_MAKERS = 4


def memory_backed(path: str) -> bool:
    """Whether the local ``path`` (or the nearest existing folder above it) is on tmpfs."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    path = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1].replace("\\040", " ")
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, kind = mount, fields[2]
    except OSError:
        return False
    return kind in _MEMORY_FS


class SparePool:
    """Ready spare files per file system, refilled by one background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[str, collections.deque[tuple[int, int]]] = {}
        self._pending: collections.Counter[str] = collections.Counter()
        self._dead: set[str] = set()
        self._jobs: queue.SimpleQueue[tuple[str, int, int]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._generation = 0  # a release() makes every spare still being made stale
        self.made = 0
        self.used = 0

    def take(self, root: str, size: int, depth: int) -> tuple[int, int] | None:
        """A ready spare ``(fd, allocated bytes)`` on ``root``'s file system, or None; either
        way, asks for the next one so that up to ``depth`` are ready or being made."""
        want = int(size * (1 + _SLACK) + _MIB - 1) // _MIB * _MIB
        with self._lock:
            if root in self._dead:
                return None
            ready = self._ready.setdefault(root, collections.deque())
            got = ready.popleft() if ready else None
            self.used += got is not None
            if len(ready) + self._pending[root] < depth:
                self._pending[root] += 1
                self._jobs.put((root, want, self._generation))
                self._threads = [t for t in self._threads if t.is_alive()]
                if len(self._threads) < min(_MAX_MAKERS, max(1, depth // 2)):
                    t = threading.Thread(target=self._run, name="pipeline-spares", daemon=True)
                    t.start()
                    self._threads.append(t)
        return got

    def _run(self) -> None:
        while True:
            root, size, generation = self._jobs.get()
            fd = -1
            try:
                fd = os.open(root, os.O_TMPFILE | os.O_RDWR, 0o666)
                os.posix_fallocate(fd, 0, size)
            except OSError:
                # no O_TMPFILE here, or no room for spares: writes go on without them
                if fd >= 0:
                    os.close(fd)
                with self._lock:
                    self._pending[root] -= 1
                    if generation == self._generation:
                        self._dead.add(root)
                continue
            with self._lock:
                self._pending[root] -= 1
                stale = generation != self._generation or root in self._dead
                if stale:
                    os.close(fd)
                else:
                    self.made += 1
                    self._ready.setdefault(root, collections.deque()).append((fd, size))

    def release(self) -> dict[str, int]:
        """Close every ready spare (their pages are freed); the counts since the last release
        (made, used by writes, left unused). Spares being made meanwhile are closed as they
        finish."""
        with self._lock:
            fds = [fd for ready in self._ready.values() for fd, _ in ready]
            self._ready.clear()
            self._dead.clear()  # the next run may have room again
            self._generation += 1
            counts = {"made": self.made, "used": self.used, "unused": len(fds)}
            self.made = self.used = 0
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        return counts

    def ready(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._ready.values())


_POOL = SparePool()


def write(root: str, path: str, parts: Sequence[Any], total: int, depth: int) -> bool:
    """Write ``parts`` (``total`` bytes) to ``path`` through a spare file made on ``root``'s
    file system; False (nothing written) when no spare was ready, so the caller writes as
    usual. On error no file is left at ``path``'s hidden name; ``path`` is untouched."""
    got = _POOL.take(root, total, depth)
    if got is None:
        return False
    fd, allocated = got
    tmp = ""
    try:
        at = 0
        for p in parts:
            mv = memoryview(p).cast("B")
            done = 0
            while done < mv.nbytes:
                done += os.pwrite(fd, mv[done:], at + done)
            at += mv.nbytes
        if allocated > total:
            os.ftruncate(fd, total)
        head, tail = os.path.split(path)
        tmp = os.path.join(head, f".{tail}.tmp-{os.getpid()}-{threading.get_ident()}")
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        _link(fd, tmp)
        os.replace(tmp, path)
        tmp = ""
    finally:
        os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.remove(tmp)
    return True


def _link(fd: int, path: str) -> None:
    """Give the nameless file ``fd`` the name ``path`` (linkat through /proc, following the
    descriptor's link: what needs no privilege, unlike AT_EMPTY_PATH)."""
    fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(str(fd), path, src_dir_fd=fds, follow_symlinks=True)
    finally:
        os.close(fds)


def counts() -> dict[str, int]:
    """This process's spares: made so far, used by writes so far, ready now."""
    return {"made": _POOL.made, "used": _POOL.used, "ready": _POOL.ready()}


def release() -> dict[str, int]:
    """Free this process's ready spares, and reset its counts: what they were (made, used
    by writes, left unused). The runner calls it on every worker at the end of a run."""
    return _POOL.release()
