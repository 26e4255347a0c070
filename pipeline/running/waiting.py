"""Waiting on the main thread, where a Ctrl-C may land at any moment; and the interrupt itself.

The command line turns SIGINT and SIGTERM into a ``KeyboardInterrupt`` where the main thread is
(:func:`on_signal`), between any two bytecodes. ``threading.Event.wait`` and ``Thread.join`` run
Python code around their locks: an interrupt that lands between a lock's release and its
re-acquisition inside them leaves the ``with`` that holds it releasing a lock no one holds, and
``RuntimeError: release unlocked lock`` replaces the Ctrl-C (seen once, in a fresh-clone test
run, while a local cluster started). Here the main thread only reads a flag and waits in
``poll`` on a pipe that a :class:`Done` flag writes to as it is set (so the wait ends at
once, not at the next look); an interrupt in ``poll``, as in ``time.sleep``, leaves no lock
behind.

An interrupt can also land where Python drops every exception (a garbage collector callback,
such as distributed's ``GCDiagnosis._gc_callback``, a ``__del__``, a weakref callback: "Exception
ignored in ..."): the run went on to its end (2 of 25 Ctrl-Cs of a local tcp run). So a signal's
interrupt stays *pending* until it is *taken* (:func:`take`): as it leaves :func:`wait` (where
nearly all of them land), or where the pipeline catches it and begins the clean-up; the main
thread's next wait step raises a pending one again (:func:`raise_pending`). Later signals raise
again while it is pending, and are ignored once it is taken, so that the clean-up (blocks
finished and marked, workers stopped, cluster closed) is not cut short.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds between two looks at the flag (and at a pending interrupt). A :class:`Done` flag
#: ends the wait as it is set: on the H200 host (2026-12-02, 8 GB of v2 Blosc, 3 x 4 GPU
#: workers, warm), a run's compute phase went on 35-46 ms after its last task had ended while
#: its waits only looked every 20 ms, and 8-10 ms once they woke as their flag was set.
STEP = 0.02


class Done(threading.Event):
    """A flag that the main thread's :func:`wait` sees as it is set: setting it also writes a
    byte to this process's wake-up pipe, which :func:`wait` watches with ``poll``."""

    def set(self) -> None:
        super().set()
        _wake()


#: This process's wake-up pipe: (pid that made it, read end, write end, the pipe's inode); a
#: forked child makes its own, and so does a process whose descriptors someone closed (the
#: numbers may name other files by then: each use checks the inode first). No lock (a child
#: forked while another thread held it would wait forever): two threads that make one at
#: once leave one pipe unused, and a wait on it ends at its :data:`STEP`.
_pipe: tuple[int, int, int, int] | None = None


def _ours(pipe: tuple[int, int, int, int]) -> bool:
    """Whether ``pipe`` is this process's, both its descriptors still open on it."""
    if pipe[0] != os.getpid():
        return False
    try:
        return os.fstat(pipe[1]).st_ino == pipe[3] == os.fstat(pipe[2]).st_ino
    except OSError:
        return False


def _wake_pipe() -> tuple[int, int] | None:
    """(read end, write end) of this process's wake-up pipe, both non-blocking; None where a
    pipe cannot be made (then :func:`wait` only looks every :data:`STEP`)."""
    global _pipe
    pipe = _pipe
    if pipe is None or not _ours(pipe):
        try:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            pipe = _pipe = (os.getpid(), r, w, os.fstat(r).st_ino)
        except OSError:
            return None
    return pipe[1], pipe[2]


def _wake() -> None:
    """A byte to the wake-up pipe (none where it is full: a waiter is woken already)."""
    pipe = _wake_pipe()
    if pipe is not None:
        with contextlib.suppress(OSError):  # full (BlockingIOError), or closed at exit
            os.write(pipe[1], b"\0")


def _pause(seconds: float) -> None:
    """Sleep up to ``seconds``, ended early by a :class:`Done` flag being set; the pipe's
    bytes read, so that the next pause sleeps again."""
    pipe = _wake_pipe()
    if pipe is None or not hasattr(select, "poll"):  # poll: no limit on the descriptor's number
        time.sleep(seconds)
        return
    poller = select.poll()
    poller.register(pipe[0], select.POLLIN)
    if poller.poll(seconds * 1000):
        with contextlib.suppress(OSError):
            os.read(pipe[0], 4096)


#: The command's interrupt: 'none', 'pending' (a signal came; no clean-up has taken its
#: ``KeyboardInterrupt`` yet) or 'taken' (a clean-up has begun; later signals are ignored). Only
#: the main thread changes it (signal handlers run there, and so do the places that catch the
#: interrupt).
_interrupt = "none"

#: The signal that began the command's interrupt (its first: ``signal.SIGINT`` or
#: ``signal.SIGTERM``), None where none came; set and cleared with :data:`_interrupt`.
_signal: int | None = None

#: True while the command line puts its caller's handlers back (:func:`pipeline.cli.main`
#: given its arguments by a caller in Python): :func:`on_signal` then leaves its interrupt
#: pending, for the command line to raise once they are back, and raises nothing (its
#: ``KeyboardInterrupt`` as one was put back had left the rest set, h75a). Set by a plain
#: assignment, where no signal's handler can run, and cleared by :func:`reset`.
handing_back = False


def on_signal(signum: int, frame: Any) -> None:
    """The command line's handler of SIGINT and SIGTERM: ``KeyboardInterrupt`` where the main
    thread is, pending until it is taken (:func:`take`); nothing once one is taken, so that its
    clean-up (work cancelled, blocks finished and marked, workers stopped, cluster closed; each
    step bounded by a timeout) is not cut short: that would leave workers running and print
    tracebacks (``Exception ignored in atexit callback``). While the command line puts its
    caller's handlers back (:data:`handing_back`), only pending."""
    global _interrupt, _signal
    if _interrupt == "taken":
        return
    if _interrupt == "none":
        _signal = signum
    _interrupt = "pending"
    if handing_back:
        return
    raise KeyboardInterrupt


def take() -> None:
    """Where a ``KeyboardInterrupt`` is caught and the clean-up after it begins: a pending
    interrupt is taken (later signals are ignored, :func:`raise_pending` raises it no more).
    Nothing where none is pending (a caller's own handler raised it: :func:`on_signal` is not
    installed)."""
    global _interrupt
    if _interrupt == "pending":
        _interrupt = "taken"


def raise_pending() -> None:
    """On the main thread, ``KeyboardInterrupt`` again for a pending interrupt that nothing
    took: one raised where Python drops exceptions (module docstring), or caught by code that
    went on."""
    if _interrupt == "pending" and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt


def reset() -> None:
    """No interrupt: the state at the start and the end of a command (a later command, or a
    caller's ``pipeline.run``, in the same process starts afresh)."""
    global _interrupt, _signal, handing_back
    _interrupt = "none"
    _signal = None
    handing_back = False


def by_sigint() -> bool:
    """Whether the command's interrupt began with a SIGINT (a Ctrl-C) that :func:`on_signal`
    received: not a SIGTERM, nor a ``KeyboardInterrupt`` raised by other code."""
    return _signal == signal.SIGINT and _interrupt != "none"


def pending() -> bool:
    """Whether an interrupt is pending (a signal came, and nothing took it)."""
    return _interrupt == "pending"


def wait(event: threading.Event, timeout: float | None = None) -> bool:
    """Wait until ``event`` is set, at most ``timeout`` seconds (None: no limit); whether it
    is set. Raises ``KeyboardInterrupt`` (a Ctrl-C) with no lock left held or released, and
    at each step a pending one that nothing took (:func:`raise_pending`); either is taken
    (:func:`take`) as it leaves: raised here, in the pipeline's own code, it goes on to the
    clean-up that its callers begin, and a second signal must not cut that short."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            raise_pending()
            if event.is_set():
                return True
            step = STEP
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                step = min(step, left)
            _pause(step)
    except KeyboardInterrupt:
        take()
        raise


def run_in_thread(target: Callable[[], Any], name: str) -> threading.Event:
    """Start ``target()`` on a daemon thread named ``name``; the event set once it has
    returned or raised (what the main thread waits for, with :func:`wait`, instead of
    ``Thread.join``)."""
    done = Done()

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
    own thread (a daemon), its result unused; with ``to_the_end`` it takes the interrupt
    (:func:`take`) and waits on for ``fn``'s end (a close must not be cut short), then raises
    the ``KeyboardInterrupt``. The context's copy keeps what the caller made current (e.g. a
    client's ``as_current()``, which ``get_client()`` reads)."""
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
            take()
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
    if error:
        raise error[0]
    return out[0]  # type: ignore[no-any-return]


def _imports(frame: Any) -> int:
    """How many of importlib's bootstrap frames are on the stack below ``frame``: above zero
    where it runs inside an import (a module's body, run by importlib, whose frames stay)."""
    n = 0
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            n += 1
        frame = frame.f_back
    return n


@contextlib.contextmanager
def imports_uninterrupted() -> Any:
    """For a call of the Python API: a Ctrl-C (SIGINT) that lands while a module is imported
    is held back until the import is done, then raised (``KeyboardInterrupt``) where the main
    thread is then. The run imports Dask, Zarr, xarray and distributed on first use; a
    ``KeyboardInterrupt`` in a module's body left its package half made (a submodule in
    ``sys.modules`` but not set on its parent), and every later call in that process (a
    notebook's kernel) failed on it: ``AttributeError: module 'zarr' has no attribute
    'core'``, ``NameError: name 'functoolz' is not defined``. A Ctrl-C anywhere else raises at
    once, as Python's own handler does (in a call made while a module of the caller's is
    imported too: only the imports the call makes are waited for). Only where the caller is
    the main thread and SIGINT has Python's default handler (a script, a Jupyter kernel
    running a cell): a handler of the caller's own, such as the command line's
    :func:`on_signal`, is left as it is. Held back, the signal is sent again every
    :data:`STEP` until it lands outside an import; one still held back when the call ends is
    raised as it ends. One raised outside an import is *pending* until taken, as
    :func:`on_signal`'s are: where Python dropped it (it landed in a ``__del__``, a weakref or
    garbage-collector callback: "Exception ignored in ...") the next :func:`wait` step raises
    it again, and one that nothing took by the call's end is raised as it ends (a run had
    returned its output complete, the Ctrl-C lost, in a CI run). The handler is put back
    whatever lands while it is set or taken down (h75a: a Ctrl-C just after it was set, or
    as the call ended, the resender's own among them, had left it set and the interrupt
    pending: the caller's next Ctrl-C in an import of its own was dropped, and its next
    ``pipeline.run``, which then found a handler not Python's and started no state afresh,
    stopped as interrupted at its first wait); one landing as it is taken down is raised as
    the call ends."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    # closing: the call is ending, and a signal now is only recorded (held), raised as it ends
    state = {"on": True, "held": False, "closing": False}
    # a caller that is itself run by an import (a module calling pipeline.run as it is
    # imported): only the imports the call makes are held back, not the whole call
    outer = _imports(sys._getframe())
    main = threading.main_thread().ident
    resender: list[threading.Thread] = []

    def resend() -> None:
        while state["on"] and state["held"]:
            time.sleep(STEP)
            if state["on"] and state["held"] and main is not None:
                signal.pthread_kill(main, signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if state["closing"]:  # raised once the handler is put back (below)
            state["held"] = True
            return
        if _imports(frame) > outer:
            if not state["held"]:
                state["held"] = True
                resender[:] = [threading.Thread(target=resend, name="pipeline-sigint", daemon=True)]
                resender[0].start()
            return
        state["held"] = False
        global _interrupt
        _interrupt = "pending"
        raise KeyboardInterrupt

    raised = False
    reset()
    # set inside the try, and taken down in nested finally clauses, the handler's own
    # interrupt first made harmless: a KeyboardInterrupt at any point leaves it put back
    try:
        signal.signal(signal.SIGINT, handler)
        yield
    except BaseException:
        raised = True
        raise
    finally:
        try:
            try:
                state["closing"] = True
                state["on"] = False
                for t in resender:
                    t.join()
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
        finally:
            # held back and not sent again before the call ended, landed as it ended, or
            # raised where Python dropped it and taken by nothing since
            lost = state["held"] or _interrupt == "pending"
            state["held"] = False
            reset()
        if lost and not raised:
            raise KeyboardInterrupt
