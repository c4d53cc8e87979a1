"""What a chunk is read under: the context embedded before its text.

A chunk's text is an exact slice of its page, so on its own a table row loses its
header, a list item its lead-in, and every chunk the document and section it is
in. Its context gives them back without touching the text: the document's title
(the filename without its extension, when that has words) and heading path on
the first line ("bash > Shell Builtin Commands"), then, when the chunk starts
inside a table or a list, the table's header row or the list's lead-in on a line
of its own. The embedding model reads ``context + "\\n" + text``
(:func:`embedded_text`).

Tables and lists are found by :mod:`.blocks`; a table or list that the previous
page ended in carries on to the next.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from services.embedder import blocks
from services.embedder.blocks import Lead, Open

#: The longest context, in characters (each part is capped first; see :func:`context`).
MAX_CONTEXT_CHARS = 400
# Longest title plus heading path.
_MAX_HEAD_CHARS = 200
# Lines at least this long make a document's line width (its wrapped prose).
_WIDTH_QUANTILE = 0.9

_WORDS = re.compile(r"[^\W\d_]{3,}")


def title(filename: str) -> str:
    """The document's title: the filename's stem, when it has a word (three letters
    in a row); "" for names such as ``4983.txt``, which say nothing about the text."""
    stem = PurePath(filename).stem.strip()
    return stem if _WORDS.search(stem) else ""


def context(title: str, heading: str, lead: str = "", *, drop: int = 0) -> str:
    """``"title > heading"`` then, on its own line, ``lead``; each part capped.

    The first ``drop`` headings of the path are left out (shown as "…"), and more
    while the path is too long: the last headings are the most specific.
    """
    parts = [p for p in heading.split(" > ") if p] if heading else []
    dropped = min(drop, len(parts))
    while True:
        shown = ["…", *parts[dropped:]] if dropped else parts
        head = " > ".join([title, *shown] if title else shown)
        if len(head) <= _MAX_HEAD_CHARS or dropped >= len(parts):
            break
        dropped += 1
    head = head[:_MAX_HEAD_CHARS]
    lead = lead[: blocks.MAX_LEAD_CHARS]
    return "\n".join(p for p in (head, lead) if p)[:MAX_CONTEXT_CHARS]


def headings(heading: str) -> int:
    """How many headings a heading path has."""
    return len([p for p in heading.split(" > ") if p]) if heading else 0


def embedded_text(text: str, context: str) -> str:
    """What the embedding model reads of a chunk: its context, a newline, its text."""
    return f"{context}\n{text}" if context else text


@dataclass(frozen=True, slots=True)
class PageLeads:
    """The leads of one page, ordered by start, and what stays open at its end."""

    leads: tuple[Lead, ...] = ()
    table: Open | None = None
    items: Open | None = None
    _starts: tuple[int, ...] = ()

    def at(self, offset: int, section_start: int = 0) -> str:
        """The line a chunk starting at ``offset`` continues, in a section starting at
        ``section_start`` (a lead from before the section does not apply); else ""."""
        found, anchor = "", -2
        for i in range(bisect.bisect_right(self._starts, offset) - 1, -1, -1):
            lead = self.leads[i]
            if lead.start <= offset < lead.end and lead.anchor > anchor:
                in_section = lead.anchor >= section_start or (lead.anchor < 0 and section_start == 0)
                if in_section:
                    found, anchor = lead.line, lead.anchor
        return found


def page_leads(text: str, previous: PageLeads | None = None, width: float | None = None) -> PageLeads:
    """The tables and lists of a page's ``text``; ``previous`` is the page before it and
    ``width`` the length of the document's full lines (default: this page's)."""
    lines = blocks.lines_of(text)
    if width is None:
        width = line_width([text])
    aligned, aligned_open = blocks.aligned_tables(lines, previous.table if previous else None)
    keyed, keyed_open = blocks.keyed_tables(lines, width, previous.table if previous else None)
    found, items = blocks.lists(text, lines, previous.items if previous else None)
    leads = tuple(sorted(aligned + keyed + found, key=lambda lead: lead.start))
    return PageLeads(leads, aligned_open or keyed_open, items, tuple(lead.start for lead in leads))


def document_leads(texts: Sequence[str | None]) -> list[PageLeads]:
    """Each page's leads, tables and lists carried from page to page; a ``None`` page
    (one left out) ends whatever was open."""
    width = line_width([t for t in texts if t is not None])
    found: list[PageLeads] = []
    previous: PageLeads | None = None
    for text in texts:
        if text is None:
            found.append(PageLeads())
            previous = None
            continue
        previous = page_leads(text, previous, width)
        found.append(previous)
    return found


def line_width(texts: Sequence[str]) -> float:
    """The length of the documents' full lines: a high quantile of its line lengths."""
    lengths = sorted(len(line.strip()) for text in texts for line in text.split("\n") if line.strip())
    if not lengths:
        return 0.0
    return float(lengths[min(len(lengths) - 1, int(_WIDTH_QUANTILE * len(lengths)))])
