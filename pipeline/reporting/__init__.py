"""What the user sees: progress while a run works, its summary when it ends, ``pipeline info``
and ``pipeline verify``.

* :mod:`~pipeline.reporting.tables`: two-column tables (rich on a terminal, plain elsewhere).
* :mod:`~pipeline.reporting.progress`: the progress bar, or plain lines.
* :mod:`~pipeline.reporting.summary`: :class:`Summary` of a run (table, JSON), task time.
* :mod:`~pipeline.reporting.info`: the machine and the libraries' versions.
* :mod:`~pipeline.reporting.verify`: blocks of the output recomputed with NumPy and compared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.reporting.progress import Progress
    from pipeline.reporting.summary import Summary
    from pipeline.reporting.tables import print_rows

__all__ = ["Progress", "Summary", "print_rows"]


def __getattr__(name: str) -> Any:
    """The re-exports, each imported on first use: the command line prints its tables through
    :mod:`~pipeline.reporting.tables` without loading the summary's imports (the plan, Dask)."""
    if name == "Progress":
        from pipeline.reporting.progress import Progress

        return Progress
    if name == "Summary":
        from pipeline.reporting.summary import Summary

        return Summary
    if name == "print_rows":
        from pipeline.reporting.tables import print_rows

        return print_rows
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and its re-exports, loaded or not: ``dir()``, a notebook's
    completion and ``help()`` (pydoc lists what ``dir`` gives) name them all; without it
    they had named ``__getattr__`` alone until a re-export was first used."""
    return sorted({*globals(), *__all__})
