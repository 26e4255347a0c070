"""What the user sees: progress while a run works, its summary when it ends, ``pipeline info``
and ``pipeline verify``.

* :mod:`~pipeline.reporting.tables`: two-column tables (rich on a terminal, plain elsewhere).
* :mod:`~pipeline.reporting.progress`: the progress bar, or plain lines.
* :mod:`~pipeline.reporting.summary`: :class:`Summary` of a run (table, JSON), task time.
* :mod:`~pipeline.reporting.info`: the machine and the libraries' versions.
* :mod:`~pipeline.reporting.verify`: blocks of the output recomputed with NumPy and compared.
"""

from pipeline.reporting.progress import Progress
from pipeline.reporting.summary import Summary
from pipeline.reporting.tables import print_rows

__all__ = ["Progress", "Summary", "print_rows"]
