"""Waiting on the main thread, where a Ctrl-C may land at any moment.

The command line turns SIGINT into a ``KeyboardInterrupt`` where the main thread is (see
``cli._interrupt``), between any two bytecodes. ``threading.Event.wait`` and ``Thread.join`` run
Python code around their locks: an interrupt that lands between a lock's release and its
re-acquisition inside them leaves the ``with`` that holds it releasing a lock no one holds, and
``RuntimeError: release unlocked lock`` replaces the Ctrl-C (seen once, in a fresh-clone test
run, while a local cluster started). Here the main thread only reads a flag and sleeps; an
interrupt in ``time.sleep`` leaves no lock behind.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds between two looks at the flag.
STEP = 0.02


def wait(event: threading.Event, timeout: float | None = None) -> bool:
    """Wait until ``event`` is set, at most ``timeout`` seconds (None: no limit); whether it
    is set. Raises ``KeyboardInterrupt`` (a Ctrl-C) with no lock left held or released."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not event.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(STEP)
    return True


def run_in_thread(target: Callable[[], Any], name: str) -> threading.Event:
    """Start ``target()`` on a daemon thread named ``name``; the event set once it has
    returned or raised (what the main thread waits for, with :func:`wait`, instead of
    ``Thread.join``)."""
    done = threading.Event()

    def body() -> None:
        try:
            target()
        finally:
            done.set()

    threading.Thread(target=body, name=name, daemon=True).start()
    return done


def call(fn: Callable[[], T], name: str, to_the_end: bool = False) -> T:
    """``fn()`` run on a thread of its own (in a copy of this thread's context) while this
    thread waits (:func:`wait`); its result, or its exception raised here. For distributed's
    blocking ``Client`` calls (``run``, ``who_has``, ``register_plugin``, ``scheduler_info``,
    ``close``, a performance report, a connection), which wait with ``Event.wait`` in the
    caller's thread: from the main thread, a Ctrl-C landing inside that wait could turn into
    ``RuntimeError: release unlocked lock``. An interrupted caller leaves ``fn`` to end on its
    own thread (a daemon), its result unused; with ``to_the_end`` it waits on for ``fn``'s
    end (a close must not be cut short), then raises the ``KeyboardInterrupt``. The context's
    copy keeps what the caller made current (e.g. a client's ``as_current()``, which
    ``get_client()`` reads)."""
    out: list[Any] = []
    error: list[BaseException] = []
    context = contextvars.copy_context()

    def body() -> None:
        try:
            out.append(context.run(fn))
        except BaseException as e:
            error.append(e)

    done = run_in_thread(body, name)
    interrupted = False
    while True:
        try:
            wait(done)
            break
        except KeyboardInterrupt:
            if not to_the_end:
                raise
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
    if error:
        raise error[0]
    return out[0]  # type: ignore[no-any-return]
