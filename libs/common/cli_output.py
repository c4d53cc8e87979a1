"""Console output shared by the CLI commands: rich on a terminal, plain lines elsewhere.

Whether a stream is a terminal is decided by the stream alone (``isatty()``, and
``TERM`` not ``dumb``), not by rich's environment overrides (``FORCE_COLOR``,
``TTY_COMPATIBLE``, ``TTY_INTERACTIVE``): a pipe or a CI log never gets escape
codes or redraws, and each table row stays one line that ``grep``/``awk`` can read.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

import httpx
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Off a terminal the width is not the terminal's: a row is never wrapped onto a second line.
PLAIN_WIDTH = 100_000


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # no isatty(), or a closed stream
        return False


def console(out: TextIO | None = None) -> Console:
    """A console on ``out`` (stdout by default): rich on a terminal, plain text elsewhere."""
    out = sys.stdout if out is None else out
    tty = _isatty(out)
    live = tty and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")
    return Console(
        file=out,
        force_terminal=tty,
        force_interactive=live,
        width=None if tty else PLAIN_WIDTH,
        highlight=False,
        emoji=False,
    )


def is_live(con: Console) -> bool:
    """Whether ``con`` can redraw in place (progress bars) and show styles."""
    return con.is_interactive


def make_table(header: list[str], rows: list[list[str]], styled: bool = False) -> Table:
    """Columns of text (never read as rich markup), two spaces apart; a ruled, bold header if ``styled``."""
    table = Table(
        box=box.SIMPLE_HEAD if styled else None,
        header_style="bold" if styled else "",
        pad_edge=False,
        show_edge=False,
    )
    for name in header:
        table.add_column(Text(name), overflow="fold")
    for row in rows:
        table.add_row(*(Text(value) for value in row))
    return table


def print_table(con: Console, header: list[str], rows: list[list[str]]) -> None:
    """The table on ``con``: styled on a terminal, else plain lines without trailing blanks."""
    if is_live(con):
        con.print(make_table(header, rows, styled=True))
        return
    with con.capture() as captured:
        con.print(make_table(header, rows))
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    con.file.write(text + "\n")
    con.file.flush()


def error_detail(resp: httpx.Response) -> str:
    """The API's readable ``detail``, else the raw body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text
    return str(body["detail"]) if isinstance(body, dict) and "detail" in body else resp.text
