"""A ``dask worker --preload`` of the tests: a real worker whose process dies as its first task
starts executing, every time it is started again, so that a run's task kills every worker that
runs it (Dask's ``KilledWorker``, after ``distributed.scheduler.allowed-failures``).

``WORKER_DIES_BY`` in its environment says how: ``memory``, the process takes as much memory
as its ``--memory-limit`` (touched, so resident), which its nanny sees past
``distributed.worker.memory.terminate`` and terminates it for, as it does a worker whose task
outgrew its memory; ``kill``, the process sends itself SIGKILL, as the kernel's OOM killer
would. Nothing happens where it is empty.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

#: The environment variable that says how the worker dies: 'memory' or 'kill'.
VARIABLE = "WORKER_DIES_BY"

_held: list[bytes] = []


class _Dying(WorkerPlugin):
    """Kills its worker's process as a task starts executing."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.worker: Any = None

    def setup(self, worker: Any) -> None:
        self.worker = worker

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing":
            return
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        limit = self.worker.memory_manager.memory_limit
        _held.append(b"\x01" * int(limit))  # resident: the nanny terminates the process
        time.sleep(60)  # the nanny's monitor looks every 100 ms


def dask_setup(worker: Any) -> None:
    """Make the worker die by the way ``WORKER_DIES_BY`` names (none where it is empty)."""
    how = os.environ.get(VARIABLE)
    if how:
        worker.plugins["dying-worker"] = _Dying(how)
        worker.plugins["dying-worker"].setup(worker)
