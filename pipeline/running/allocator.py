"""glibc's allocator, set for a process whose task threads encode frames and evaluate chains.

distributed's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``), so that freed memory goes back to the system. Setting
that variable also turns off glibc's dynamic mmap threshold (mallopt(3)): every allocation of
128 KiB or more is then a fresh mapping, paged in and unmapped again. A zstd frame of 128 KiB
encoded by numcodecs is one (its destination is the compress bound, a little over 128 KiB), and
the heaps of the threads' arenas are trimmed back whenever 64 KiB lie free at their top. On the
2-core machine (2026-12-01, 128 MB blocks of float32 encoded in 128 KiB zstd frames on two
threads, ``/tmp/enc.py`` of issue 17's notes) the encode ran at 0.33-0.52 GB/s with
distributed's setting, 0.69-0.86 without it, and 0.93-1.00 with the values below. On the H200
host (2026-12-02, 8 GB of v2 Blosc on /dev/shm, the CPU backend's 16 workers of one thread,
alternating): warm, 1.80 GB/s (1.57-2.04) with distributed's setting against 2.27 (2.13-2.74)
with these, 4 runs each; cold ``pipeline run`` processes, compute phase 3.84 s (3.59-4.36)
against 3.46 s (3.10-3.85), 4 each. GPU workers, whose frames nvCOMP encodes into page-locked
buffers, moved within their spread (warm v2 Blosc 5.92 against 6.15 GB/s).

:func:`tune` sets the trim threshold to :data:`TRIM_THRESHOLD` and the mmap threshold to
:data:`MMAP_THRESHOLD` through ``mallopt``, in the worker processes of a local cluster a run
starts (from its set-up plugin) and in the command line's own process, where its tasks may run
as threads. The workers of a caller's cluster or of one joined by address, and an API caller's
own process, keep their allocator; so does a process given ``MALLOC_MMAP_THRESHOLD_`` in its
environment (the user's own choice, through Dask's ``distributed.nanny.pre-spawn-environ`` or
the shell), and any C library other than glibc.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

#: Free bytes at the top of a heap that glibc keeps rather than returning them: a block's
#: encoded frames (about a block of output, in frames of about 128 KiB) are made again by the
#: thread's next block.
TRIM_THRESHOLD = 128 << 20
#: Allocations from this size up are mappings of their own: below it, frames and a chain's
#: piece buffers come from the heaps. Blocks (tens of MiB and more) stay mappings.
MMAP_THRESHOLD = 4 << 20

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3


@functools.cache
def tune() -> bool:
    """Set this process's glibc trim and mmap thresholds (see the module's text), once;
    whether they were set (False: not glibc, or ``MALLOC_MMAP_THRESHOLD_`` is set)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )


def _mallopt() -> Any:
    """glibc's ``mallopt``, or None where the C library is another (musl, macOS)."""
    try:
        # the C library this process runs on, already loaded: ctypes.util.find_library("c")
        # had run ldconfig (a process of its own) in the command and in every worker
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  # glibc's alone
        fn = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn
