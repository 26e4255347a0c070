"""Two-column tables of (label, text) rows: rich on a terminal, aligned plain text elsewhere;
every cell printed as the text it is, never as rich markup."""

from __future__ import annotations

import io
import sys
from typing import TextIO


def print_rows(rows: list[tuple[str, str]], title: str, stream: TextIO | None = None) -> None:
    """A two-column table: rich on a terminal, aligned plain text elsewhere.

    Every cell and the title are printed as the text they are: paths, URLs and messages hold
    brackets (``out[v0].zarr``, ``pip install '.[cu12]'``) that rich would read as markup."""
    stream = stream or sys.stdout
    if stream.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        t = Table(title=Text(title), show_header=False, title_justify="left")
        t.add_column(style="bold")
        t.add_column()
        for k, v in rows:
            t.add_row(Text(k), Text(v))
        Console(file=stream).print(t)
        return
    width = max(len(k) for k, _ in rows)
    print(title, file=stream)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=stream)
    stream.flush()


def table_text(rows: list[tuple[str, str]], title: str) -> str:
    """``rows`` as :func:`print_rows` prints them to a file (aligned plain text, no markup),
    as a string: the ``str()`` of a plan, a run's summary and verify's result, which print the
    command line's tables."""
    out = io.StringIO()
    print_rows(rows, title, out)
    return out.getvalue().rstrip("\n")
