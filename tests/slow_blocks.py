"""A ``dask worker --preload`` of the tests: a real worker whose tasks write each block
``SLOW_BLOCK_SECONDS`` (its environment) late, so that a run stopped meanwhile has tasks still
executing on a cluster that stays up. Nothing changes where it is unset."""

from __future__ import annotations

import os
import time
from typing import Any

#: The environment variable that says how many seconds each block's write waits first.
VARIABLE = "SLOW_BLOCK_SECONDS"


def dask_setup(worker: Any) -> None:
    """Make every block's write wait ``SLOW_BLOCK_SECONDS`` first (none where it is unset)."""
    seconds = float(os.environ.get(VARIABLE) or 0)
    if not seconds:
        return
    from pipeline.running import tasks

    plain = tasks.write_block

    def write_block(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return plain(*args, **kwargs)

    tasks.write_block = write_block
