"""Running headers and footers: lines at the top or bottom of pages that are no part
of what the pages say.

"BASH(1) General Commands Manual BASH(1)" on every page of a manual, "5.4. Layout
of the source package 31" at the foot of a section's pages: such lines win keyword
matches and read as noise in answers. Only the first and last :data:`ZONE`
non-blank lines of a page are candidates, and one of them is running when

- it repeats: with its numbers ignored (page numbers change), it is at the same
  edge of at least :data:`MIN_PAGES` pages; or
- it carries the page's printed number: it starts or ends with a number that is
  the page's physical number less an offset that holds for many pages
  (:data:`MIN_OFFSET_SHARE` of them, and at least :data:`MIN_PAGES`), the
  way page numbers run through a book after its front matter.

Either way the line is at most :data:`MAX_LINE` characters long. Body text rarely
repeats at the same edge of three pages, and a line repeated on two pages, or
anywhere but the edges, is kept; so is a page's only text (a document of identical
pages keeps them whole), and a document of :data:`MIN_PAGES` pages or fewer with
text keeps everything (three pages that start alike may as well be three slides
under one title).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from libs.common.line_key import line_key

# Lines looked at from each edge of a page (a header or footer is often two lines:
# a title and a page number).
ZONE = 2
# Pages a line must start or end to be running.
MIN_PAGES = 3
# Share of the pages with text whose edge numbers must agree on one offset from the
# physical page number for that offset to be the document's page numbering.
MIN_OFFSET_SHARE = 0.5
# A line longer than this is a sentence, not a running title or page number.
MAX_LINE = 100

# A number alone at either end of a line ("47 Chapter 5", "Page 12"), not a section
# number ("5.4 Layout") or a version ("Release 1.2").
_EDGE_NUMBER = re.compile(r"^(\d{1,4})(?:\s|$)|\s(\d{1,4})$")


def _edges(lines: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indices of the first and the last :data:`ZONE` non-blank lines (they may overlap)."""
    filled = [n for n, line in enumerate(lines) if line.strip()]
    return filled[:ZONE], filled[-ZONE:]


def _edge_numbers(line: str) -> set[int]:
    line = line.strip()
    if len(line) > MAX_LINE:
        return set()
    return {int(a or b) for a, b in _EDGE_NUMBER.findall(line)}


def _offsets(pages: Sequence[Sequence[str]]) -> set[int]:
    """Offsets (physical less printed page number) that hold for many pages' edge lines."""
    counts: Counter[int] = Counter()
    with_text = 0
    for number, lines in enumerate(pages, 1):
        head, foot = _edges(lines)
        with_text += bool(head)
        counts.update({number - n for i in {*head, *foot} for n in _edge_numbers(lines[i])})
    least = max(MIN_PAGES, MIN_OFFSET_SHARE * with_text)
    return {offset for offset, count in counts.items() if count >= least}


def running_lines(pages: Sequence[Sequence[str]]) -> list[set[int]]:
    """For each page, the indices of its lines that are running headers or footers."""
    top: Counter[str] = Counter()
    bottom: Counter[str] = Counter()
    for lines in pages:
        head, foot = _edges(lines)
        top.update({line_key(lines[n]) for n in head})
        bottom.update({line_key(lines[n]) for n in foot})
    if sum(any(line.strip() for line in lines) for lines in pages) <= MIN_PAGES:
        return [set() for _ in pages]
    offsets = _offsets(pages)
    out: list[set[int]] = []
    for number, lines in enumerate(pages, 1):
        head, foot = _edges(lines)
        short = {n for n in {*head, *foot} if len(lines[n].strip()) <= MAX_LINE}
        drop = {n for n in head if n in short and top[line_key(lines[n])] >= MIN_PAGES}
        drop |= {n for n in foot if n in short and bottom[line_key(lines[n])] >= MIN_PAGES}
        drop |= {n for n in short if any(number - k in offsets for k in _edge_numbers(lines[n]))}
        left = any(line.strip() for n, line in enumerate(lines) if n not in drop)
        out.append(drop if left else set())
    return out


def drop_running(pages: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each page's lines without its running headers and footers."""
    return [
        [line for n, line in enumerate(lines) if n not in drop]
        for lines, drop in zip(pages, running_lines(pages), strict=True)
    ]
