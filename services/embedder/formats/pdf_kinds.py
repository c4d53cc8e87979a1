"""Tables of contents and back-of-book indexes: pages that point to other pages.

Both are lists of short entries that end in page numbers. A contents page's entries
end in one number each, often after dot leaders, and the numbers grow down the
page; an index page is short lines, many of them entries that end in a comma and
one or more numbers ("quoting, 12, 40-42"), the rest headwords of sub-entries, in
alphabetical order. Either number is a page of the document, so never
far past its page count. :func:`page_kind` asks all of that of a page's lines
and says "body" unless most of them fit: a table that happens to end its rows in
numbers is not a contents page unless those numbers are page numbers in order.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from services.embedder.formats.common import PageKind

# At least this many entries, and this share of the page's lines, make a list page.
MIN_ENTRIES = 6
MIN_SHARE = 0.6
# Entries enough on a page that continues a contents or index page.
MIN_TAIL_ENTRIES = 2
# Share of consecutive entries in order (numbers not falling; initials not going
# back): columns, sub-lists and the odd misread line break a run now and then.
MIN_ORDERED = 0.8
# Entries longer than this are sentences, not entries.
MAX_ENTRY_CHARS = 120
# An index page: this share of its lines are entries with page numbers, and this
# share are short (headwords and entries; the rest wrap).
MIN_INDEX_SHARE = 0.4
MIN_SHORT_SHARE = 0.8
SHORT_CHARS = 60
# Printed page numbers run a little past the physical count only in odd front matter.
_PAGE_SLACK = 1.1

_NUMBER = r"(?:\d{1,4}|[ivxlc]{1,7})"
_RANGE = rf"{_NUMBER}(?:\s*[-\u2013]\s*{_NUMBER})?"
# "3.2 Quoting ........ 12", "Quoting . . . 12", "Chapter 3 Quoting 12".
_LEADER = re.compile(rf"^(?P<title>\D.*?|\d+(?:\.\d+)*\.?\s+\D.*?)\s*(?:\.\s*){{2,}}(?P<page>{_NUMBER})$")
_NUMBERED = re.compile(
    rf"^(?:\d+(?:\.\d+)*\.?|[A-Z]\.(?:\d+\.?)*|(?:chapter|appendix|part|section)\s+\w+\.?)\s+"
    rf"(?P<title>\S.*?)\s+(?P<page>{_NUMBER})$",
    re.IGNORECASE,
)
# "quoting, 12, 40-42", ", 58" (a wrapped list), "SIGTERM, see signals".
_INDEX = re.compile(rf"^(?P<title>[^\d\s].*?)?,\s*(?P<pages>{_RANGE}(?:\s*,\s*{_RANGE})*)$")
_SEE = re.compile(r"^[^\d\s].*?[,.]?\s+see(?: also)?\s+\S", re.IGNORECASE)


def page_kinds(texts: Sequence[str]) -> list[PageKind]:
    """Each page's kind. The last page of a table of contents or an index often holds
    only a few entries: a page right after one of them needs only
    :data:`MIN_TAIL_ENTRIES` entries (in the same share of its lines) to continue it."""
    kinds: list[PageKind] = []
    for text in texts:
        previous = kinds[-1] if kinds else "body"
        least = MIN_TAIL_ENTRIES if previous != "body" else MIN_ENTRIES
        kind = page_kind(text, len(texts), least)
        kinds.append(kind if previous == "body" or kind in ("body", previous) else "body")
    return kinds


def page_kind(text: str, page_count: int, least: int = MIN_ENTRIES) -> PageKind:
    """ "contents", "index" or "body" for one page's text, in a document of ``page_count``
    pages, when at least ``least`` of its lines are entries."""
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if len(line) > 1]
    if len(lines) < least:
        return "body"
    most = page_count * _PAGE_SLACK + 10
    contents = _contents_pages(lines, most)
    if len(contents) >= max(least, MIN_SHARE * len(lines)) and _ordered(contents) >= MIN_ORDERED:
        return "contents"
    index = _index_titles(lines, most)
    short = sum(len(line) <= SHORT_CHARS for line in lines)
    if (
        len(index) >= max(least, MIN_INDEX_SHARE * len(lines))
        and short >= MIN_SHORT_SHARE * len(lines)
        and _ordered([key for key in index if key]) >= MIN_ORDERED
    ):
        return "index"
    return "body"


def _page_number(text: str, most: float) -> int | None:
    if text.isdigit():
        number = int(text)
        return number if number <= most else None
    return 0  # a roman numeral: front matter, before every arabic page number


def _contents_pages(lines: Sequence[str], most: float) -> list[int]:
    """The page number of each line that reads as a contents entry."""
    pages: list[int] = []
    for line in lines:
        if len(line) > MAX_ENTRY_CHARS:
            continue
        match = _LEADER.match(line) or _NUMBERED.match(line)
        if match:
            number = _page_number(match.group("page"), most)
            if number is not None:
                pages.append(number)
    return pages


def _index_titles(lines: Sequence[str], most: float) -> list[str]:
    """The lower-case heading word of each line that reads as an index entry."""
    titles: list[str] = []
    for line in lines:
        if len(line) > MAX_ENTRY_CHARS:
            continue
        match = _INDEX.match(line)
        if match:
            numbers = re.findall(r"\d+", match.group("pages"))
            if any(int(n) > most for n in numbers):
                continue
            titles.append(match.group("title") or "")
        elif _SEE.match(line):
            titles.append(line)
    return [_sort_key(title) if title else "" for title in titles]


def _sort_key(title: str) -> str:
    letters = "".join(ch for ch in title.lower() if ch.isalnum())
    return letters[:1]


def _ordered(values: Sequence[int] | Sequence[str]) -> float:
    """Share of neighbours in non-decreasing order (page numbers; initials, where
    sub-entries share one)."""
    if len(values) < 2:
        return 0.0
    pairs = itertools.pairwise(values)
    return sum(b >= a for a, b in pairs) / (len(values) - 1)  # type: ignore[operator]
