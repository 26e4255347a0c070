"""What the user sees: progress while a run works, its summary when it ends, ``pipeline info``
and ``pipeline verify``.

* :mod:`~pipeline.reporting.tables`: two-column tables (rich on a terminal, plain elsewhere).
* :mod:`~pipeline.reporting.progress`: the progress bar, or plain lines.
* :mod:`~pipeline.reporting.lines`: how the command line says log records (``warning: ``).
* :mod:`~pipeline.reporting.summary`: :class:`Summary` of a run (table, JSON), task time.
* :mod:`~pipeline.reporting.info`: the machine and the libraries' versions.
* :mod:`~pipeline.reporting.verify`: blocks of the output recomputed with NumPy and compared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline._lazy import reexports

if TYPE_CHECKING:
    from pipeline.reporting.progress import Progress
    from pipeline.reporting.summary import Summary
    from pipeline.reporting.tables import print_rows

__all__ = ["Progress", "Summary", "print_rows"]


# The re-exports, each imported on first use: the command line prints its tables through
# :mod:`~pipeline.reporting.tables` without loading the summary's imports (the plan, Dask).
__getattr__, __dir__ = reexports(
    __name__,
    {
        "Progress": "progress",
        "Summary": "summary",
        "print_rows": "tables",
    },
)
