"""How the command line says the pipeline's log records on stderr: a warning begins
``warning: ``, as an error begins ``error: `` and a note ``note: ``; a line of what the
command is doing (the resume's blocks already written, an output already complete, a stop
waiting for the blocks being written) is said as it is.

The records are the ``pipeline`` logger's; :func:`pipeline.run`'s caller gets them as
Python's logging gives them (its warnings on stderr where nothing is configured), the
prefix being the command line's way of saying them (:class:`Prefixed`, set by
:func:`pipeline.cli.main`). Imports only :mod:`logging`: ``pipeline info`` loads it too.
"""

from __future__ import annotations

import logging

#: ``extra`` of a record logged at WARNING that is a line of what the command is doing, no
#: warning: at WARNING so that a caller of :func:`pipeline.run` who asked for progress sees it
#: (Python's logging shows a caller's warnings only, where nothing is configured), and said
#: without the ``warning:`` prefix.
PROGRESS_LINE = {"progress_line": True}

#: The words a record's message may begin with that already say what it is.
_SAID = ("note: ", "warning: ", "error: ")


class Prefixed(logging.Formatter):
    """The message alone (``%(message)s``), and ``warning: `` before a record at WARNING
    that says nothing of what it is (h74b: the pipeline's warnings, a folder at an input
    chunk's key among them, had come as bare lines, unlike its errors and notes), but not
    before a line of what the command is doing (:data:`PROGRESS_LINE`)."""

    def __init__(self) -> None:
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record's line, prefixed where it is a warning."""
        text = super().format(record)
        if (
            record.levelno != logging.WARNING
            or getattr(record, "progress_line", False)
            or text.startswith(_SAID)
        ):
            return text
        return f"warning: {text}"
