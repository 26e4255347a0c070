"""The fork server's quick end (:mod:`pipeline.running.fork_server`).

The server ends when the command that started it does: multiprocessing closes the server's
"alive" pipe, and the server raises ``SystemExit``. Python would then tear down every module the
server preloaded (distributed, dask-cuda, CuPy, ...), module by module, while the server still
holds the command's standard output and error open, so a reader of the command's output (a
pipe such as ``| tee``, a CI log, ``subprocess.run(capture_output=True)``) waited for that after
the command itself had exited. Imported after the server's other modules
(``fork_server.PRELOAD``), this module registers the ``atexit`` hook that ends it with
``os._exit``: hooks run last registered first, so theirs, which belong to the teardown, never
run; the server then has no child left (each worker has stopped) and nothing to flush.
Workers forked from the server inherit the hook, which ends only the server itself; a process
that is not a fork server the command line started (a test, a tool listing modules, a fork
server of another program) registers nothing: the variable that marks the server is in its
environment alone, and the server takes it out of its own once read, so what it forks and
what they start never see it."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

#: Set by the command line's process before it starts the fork server (the server inherits it).
STARTED = "PIPELINE_FORK_SERVER"


def _end_now(server: int) -> None:
    if os.getpid() == server:  # not a worker forked from the server
        for stream in (sys.stdout, sys.stderr):  # what a preloaded module printed
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def _is_the_server() -> bool:
    """Whether this process is a fork server that the command line started: multiprocessing
    runs one as ``python -c 'from multiprocessing.forkserver import main; main(...)'``. (Not
    its parent's pid: a command that ends while the server still imports leaves it to init.)"""
    return bool(os.environ.get(STARTED)) and any(
        "multiprocessing.forkserver" in arg for arg in sys.orig_argv
    )


if _is_the_server():
    del os.environ[STARTED]
    atexit.register(_end_now, os.getpid())
