"""A ``dask worker --preload`` of the tests: a real worker whose tasks write each block
``SLOW_BLOCK_SECONDS`` (its environment) late, so that a run stopped meanwhile has tasks still
executing on a cluster that stays up; or, where ``HOLD_BLOCK_FILE`` names a file, whose first
task to begin a block's write while that file exists takes the file (removes it) and holds
its write until ``HOLD_BLOCK_FILE.release`` exists, writing ``HOLD_BLOCK_FILE.held`` as it
begins to wait and ``HOLD_BLOCK_FILE.done`` once its block is written (what a test waits for);
the tasks after it write at once (a generation's unit's write too). Where ``HOLD_BLOCK_AT``
is ``unit``, a block's write is held at its first unit's, after the task has asked that its
run's lock is still at the output (a task's write of its block's units that began before
another run took the output). Nothing changes where both are unset."""

from __future__ import annotations

import os
import time
from typing import Any

#: The environment variable that says how many seconds each block's write waits first.
VARIABLE = "SLOW_BLOCK_SECONDS"
#: The environment variable naming the file whose existence holds a block's write.
HOLD = "HOLD_BLOCK_FILE"
#: The environment variable saying where a block's write is held: 'unit' (at its first unit's
#: write) or '' (before the block's write).
AT = "HOLD_BLOCK_AT"


def _took(hold: str) -> bool:
    """Whether this task took the file ``hold`` (removed it first)."""
    try:
        os.remove(hold)
    except FileNotFoundError:
        return False
    return True


def _note(path: str) -> None:
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def dask_setup(worker: Any) -> None:
    """Make every block's write wait ``SLOW_BLOCK_SECONDS`` first, and the first one while
    ``HOLD_BLOCK_FILE`` exists until it is released (none where both are unset); a
    generation's unit's write is held alike (not slowed)."""
    seconds = float(os.environ.get(VARIABLE) or 0)
    hold = os.environ.get(HOLD) or ""
    if not seconds and not hold:
        return
    from pipeline.running import generate, tasks

    def held(plain: Any, wait: float) -> Any:
        def write(*args: Any, **kwargs: Any) -> Any:
            time.sleep(wait)
            if not hold or not _took(hold):
                return plain(*args, **kwargs)
            _note(hold + ".held")
            while not os.path.exists(hold + ".release"):
                time.sleep(0.05)
            out = plain(*args, **kwargs)
            _note(hold + ".done")
            return out

        return write

    if os.environ.get(AT) == "unit":
        tasks.write_unit = held(tasks.write_unit, 0)
    else:
        tasks.write_block = held(tasks.write_block, seconds)
    generate.write_unit = held(generate.write_unit, 0)
