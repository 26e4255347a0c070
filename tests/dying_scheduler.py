"""A ``dask scheduler --preload`` of the tests: a real scheduler that kills itself with SIGKILL
(as a crash or the kernel's OOM killer would) when it receives the N-th request of one kind,
so that a test loses it at one chosen moment of a run, every time.

``DIES_ON`` in its environment names the moment, ``OP:N``: the scheduler's handler ``OP`` (a
request, such as ``broadcast`` for ``Client.run`` or ``who_has``, or a message on a client's
stream, such as ``update-graph``) on its ``N``-th call. The scheduler dies before it handles
that call: the client waiting for the answer sees its connection closed, and every later
connection is refused. The count is the scheduler's whole: nothing but the run under test may
talk to it, so the scheduler says when its first worker has joined by creating the file that
``JOINED`` names (a test that waited for the worker with a client of its own would add that
client's requests to the count).
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
from collections.abc import Callable
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

#: The environment variable that names the moment: ``OP:N``.
VARIABLE = "DIES_ON"
#: The environment variable that names the file created once a worker has joined.
JOINED = "WORKER_JOINED_FILE"


def _dying(handler: Callable[..., Any], nth: int) -> Callable[..., Any]:
    """``handler``, but the process dies by SIGKILL on its ``nth`` call."""
    calls = 0

    def count() -> None:
        nonlocal calls
        calls += 1
        if calls == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    # the same kind of callable and signature as the handler: the scheduler awaits a
    # coroutine function's stream handler and passes ``comm`` to a handler that takes one
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def dying_async(*args: Any, **kwargs: Any) -> Any:
            count()
            return await handler(*args, **kwargs)

        return dying_async

    @functools.wraps(handler)
    def dying(*args: Any, **kwargs: Any) -> Any:
        count()
        return handler(*args, **kwargs)

    return dying


class _Joined(SchedulerPlugin):
    """Creates the file ``path`` when a worker joins the scheduler."""

    def __init__(self, path: str) -> None:
        self.path = path

    def add_worker(self, scheduler: Any, worker: str) -> None:
        open(self.path, "a").close()


def dask_setup(scheduler: Any) -> None:
    """Make the scheduler die on the moment ``DIES_ON`` names (no moment when it is empty),
    and say when a worker has joined where ``WORKER_JOINED_FILE`` names a file."""
    if os.environ.get(JOINED):
        scheduler.add_plugin(_Joined(os.environ[JOINED]))
    moment = os.environ.get(VARIABLE)
    if not moment:
        return
    op, nth = moment.rsplit(":", 1)
    table = scheduler.handlers if op in scheduler.handlers else scheduler.stream_handlers
    table[op] = _dying(table[op], int(nth))
