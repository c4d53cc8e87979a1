"""Tables and lists in a page's text, found line by line: where each one's rows or
items are, and the line they continue (a table's header row, a list's lead-in).

Tables are found two ways:

* aligned cells: at least two lines that split into the same number (two or more)
  of cells at runs of two or more spaces, tabs, or " | " (DOCX and HTML cells);
  the first is the header;
* keyed rows, for text whose cells are joined by single spaces (as PDF text
  extraction gives them): a short header line of a few plain words, its first two
  or at least half of them capitalised, no punctuation at its end ("Option Long
  option Meaning", not "The widget height"), then at least three rows
  that each start with a key (a lower-case word, a symbol, a number, a word in
  capitals or with digits, dots or underscores in it) and most of which are
  shorter than the document's full lines (wrapped prose fills them).

A few lines that are neither (a cell's wrapped text) do not end a table. A page
that starts (page numbers aside) with rows of the shape of the table the
previous page ended in continues that table, under its header.

Lists: items (a bullet, or a number or letter followed by "." or ")") after a
sentence ending in ":" (the lead-in); the lines after an item continue it until a
blank line before a line that is not an item, or more lines than an item is
likely to wrap to. A page that starts while a list is open continues it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: The longest header row or lead-in, in characters.
MAX_LEAD_CHARS = 200
# Lines without cells that may sit between two rows of one table (wrapped cells).
_TABLE_GAP_LINES = 3
# Rows under an aligned header that make a table (one alone may be a coincidence).
_MIN_ALIGNED_ROWS = 2
# Keyed rows: at least this many, at most this share of them full lines, and a full
# line is at least this share of the document's line width.
_MIN_KEYED_ROWS = 3
_MAX_FULL_SHARE = 0.5
_FULL_LINE = 0.85
# A keyed table's header: at most this many words and characters.
_HEADER_WORDS = (2, 8)
_HEADER_CHARS = 60
# Lines after an item that still continue it (an item's wrapped text).
_ITEM_LINES = 8
# Leading lines of a page that are skipped before a carried table's rows (page numbers).
_PAGE_NUMBER = re.compile(r"\s*(?:\d{1,4}|[ivxlcdm]{1,7})\s*", re.IGNORECASE)

_CELL_GAP = re.compile(r" {2,}|\t+| \| ")
_ITEM = re.compile(r"\s*(?:[•·▪◦‣∙●○■□*\-–—]|\(?(?:\d{1,3}|[A-Za-z])[.)])\s+\S")
_HEADER_WORD = re.compile(r"[A-Za-z][A-Za-z/()'-]*")
# Characters of code, not of a header row.
_CODE = re.compile(r"[=#{}\[\];<>\"'`]")
_KEY = re.compile(r"[^A-Z\s]|[A-Z][A-Z0-9_]+\b|[A-Za-z]+[._\d]")
_SECTION_NUMBER = re.compile(r"\s*\d+(?:\.\d+)+\.?\s+[A-Z]")
_NUMBERED = re.compile(r"\s*\d+(?:\.\d+)+\.?\s+[^\W\d_]")
_SPACES = re.compile(r"\s+")
_LETTERS = re.compile(r"[^\W\d_]{2}")
# Where a sentence ends inside a line: terminal punctuation, then a space.
_SENTENCE_END = re.compile(r"[.!?;][\"'”’)\]]*\s")
# A line that ends a sentence.
_FULL_STOP = re.compile(r"[.!?][\"'”’)\]]*\s*$")


@dataclass(frozen=True, slots=True)
class Lead:
    """A chunk starting in ``[start, end)`` of its page continues ``line`` (a table's
    header row or a list's lead-in) that sits at ``anchor`` (-1: on an earlier page)."""

    start: int
    end: int
    line: str
    anchor: int


@dataclass(frozen=True, slots=True)
class Open:
    """A table or list still open at the end of a page: its header or lead-in, and its
    shape (cells per row; 0 for keyed rows or a list)."""

    line: str
    cells: int = 0


@dataclass(slots=True)
class Line:
    start: int
    end: int
    text: str
    cells: int = field(init=False)
    item: bool = field(init=False)

    def __post_init__(self) -> None:
        stripped = self.text.strip()
        self.cells = len([c for c in _CELL_GAP.split(stripped) if c.strip()]) if stripped else 0
        self.item = bool(_ITEM.match(self.text))

    @property
    def blank(self) -> bool:
        return not self.text.strip()

    def keyed(self) -> bool:
        """Whether this line can be a row of a keyed table."""
        text = self.text.strip()
        if not text or self.item or text.endswith(":") or _SECTION_NUMBER.match(text):
            return False
        return bool(_KEY.match(text))

    def header(self) -> bool:
        """Whether this line can head a keyed table: a few plain words."""
        text = self.text.strip()
        words = text.split()
        low, high = _HEADER_WORDS
        return (
            low <= len(words) <= high
            and len(text) <= _HEADER_CHARS
            and text[0].isupper()
            and not self.item
            and all(_HEADER_WORD.fullmatch(w) for w in words)
            and (words[1][0].isupper() or 2 * sum(1 for w in words if w[0].isupper()) >= len(words))
        )

    def aligned_header(self) -> bool:
        """Whether this line of aligned cells can head a table: words, not code."""
        return self.cells >= 2 and not _CODE.search(self.text) and bool(_LETTERS.search(self.text))


def lines_of(text: str) -> list[Line]:
    lines: list[Line] = []
    offset = 0
    for raw in text.split("\n"):
        lines.append(Line(offset, offset + len(raw), raw))
        offset += len(raw) + 1
    return lines


def one_line(text: str) -> str:
    return _SPACES.sub(" ", text).strip()[:MAX_LEAD_CHARS]


def _body(lines: list[Line]) -> int:
    """Index of the first line that is neither blank nor a page number."""
    for i, line in enumerate(lines):
        if not line.blank and not _PAGE_NUMBER.fullmatch(line.text):
            return i
    return len(lines)


def aligned_tables(lines: list[Line], carried: Open | None) -> tuple[list[Lead], Open | None]:
    """Leads of the page's tables of aligned cells, and the one still open at its end."""
    leads: list[Lead] = []
    # The open table: header, cells, the lead's start and anchor, rows after the header,
    # the end of its last row, and non-row lines since.
    header, cells, start, anchor, rows, end, gap = "", 0, 0, 0, 0, 0, 0
    first = _body(lines)
    if carried is not None and carried.cells and first < len(lines) and lines[first].cells == carried.cells:
        header, cells, start, anchor, rows = carried.line, carried.cells, 0, -1, _MIN_ALIGNED_ROWS - 1

    def close() -> None:
        if cells and rows >= _MIN_ALIGNED_ROWS:
            leads.append(Lead(start, end, header, anchor))

    for line in lines[first:]:
        if line.blank:
            continue
        if cells and line.cells == cells:
            rows, end, gap = rows + 1, line.end, 0
            continue
        if cells and line.cells < 2 and gap < _TABLE_GAP_LINES:
            gap += 1
            continue
        close()
        header, cells, rows, gap = "", 0, 0, 0
        if line.aligned_header():
            header, cells, start, anchor, end = (
                one_line(line.text),
                line.cells,
                line.start + 1,
                line.start,
                line.end,
            )
    close()
    still_open = cells and rows >= _MIN_ALIGNED_ROWS and gap == 0
    return leads, Open(header, cells) if still_open else None


def keyed_tables(lines: list[Line], width: float, carried: Open | None) -> tuple[list[Lead], Open | None]:
    """Leads of the page's tables of keyed rows, and the one still open at its end."""
    leads: list[Lead] = []
    full = _FULL_LINE * width
    still_open: Open | None = None
    i = 0
    first = _body(lines)
    if carried is not None and not carried.cells:
        rows = _keyed_rows(lines, first, full)
        if rows:
            leads.append(Lead(0, lines[rows[-1]].end, carried.line, -1))
            still_open = carried if rows[-1] >= _last(lines) else None
            i = rows[-1] + 1
    while i < len(lines):
        line = lines[i]
        if line.blank or line.cells >= 2 or not line.header():
            i += 1
            continue
        rows = _keyed_rows(lines, i + 1, full)
        if not rows:
            i += 1
            continue
        header = one_line(line.text)
        leads.append(Lead(line.start + 1, lines[rows[-1]].end, header, line.start))
        still_open = Open(header) if rows[-1] >= _last(lines) else None
        i = rows[-1] + 1
    return leads, still_open


def _last(lines: list[Line]) -> int:
    """Index of the last line that is neither blank nor a page number."""
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].blank and not _PAGE_NUMBER.fullmatch(lines[i].text):
            return i
    return -1


def _keyed_rows(lines: list[Line], i: int, full: float) -> list[int]:
    """Indexes of the keyed rows from line ``i`` on (blank lines skipped, one line that is
    not a row let through between two rows), or [] unless they make a table."""
    rows: list[int] = []
    gap = 0
    while i < len(lines):
        line = lines[i]
        if line.blank:
            i += 1
            continue
        if line.keyed():
            rows.append(i)
            gap = 0
        elif rows and gap == 0 and not line.header():
            gap = 1
        else:
            break
        i += 1
    keyed = len(rows)
    long = sum(1 for r in rows if len(lines[r].text.strip()) >= full)
    if keyed < _MIN_KEYED_ROWS or long > _MAX_FULL_SHARE * keyed:
        return []
    return rows


def lists(text: str, lines: list[Line], carried: Open | None) -> tuple[list[Lead], Open | None]:
    """Leads of the page's lists, and the list still open at its end."""
    leads: list[Lead] = []
    lead, start, anchor, end, since, blank = "", 0, 0, 0, 0, False
    if carried is not None:
        lead, start, anchor = carried.line, 0, -1
    for i, line in enumerate(lines):
        if line.blank:
            blank = blank or bool(lead)
            continue
        if line.item:
            if not lead:
                lead, anchor = _lead_in(text, lines, i)
                start = line.start
            if lead:
                end, since, blank = line.end, 0, False
            continue
        if lead and not blank and since < _ITEM_LINES and not _ends_list(lines, i):
            end, since = line.end, since + 1
            continue
        if lead and end > start:
            leads.append(Lead(start, end, lead, anchor))
        lead, blank = "", False
    if lead and end > start:
        leads.append(Lead(start, end, lead, anchor))
    return leads, Open(lead) if lead and not blank else None


def _ends_list(lines: list[Line], i: int) -> bool:
    """Whether line ``i`` (not an item) starts what follows a list rather than continuing
    its last item: a heading, or a capitalised line after one that ends a sentence."""
    line = lines[i]
    if line.header() or _SECTION_NUMBER.match(line.text):
        return True
    if _NUMBERED.match(line.text) and len(line.text.strip()) <= _HEADER_CHARS:
        return True  # a short numbered line: a heading ("3.3 gplink outputs")
    before = next((lines[j] for j in range(i - 1, -1, -1) if not lines[j].blank), None)
    ended = before is not None and _FULL_STOP.search(before.text) is not None
    return ended and line.text.lstrip()[:1].isupper()


def _lead_in(text: str, lines: list[Line], first_item: int) -> tuple[str, int]:
    """The sentence ending in ":" right before item ``first_item``, and where it starts;
    ("", 0) when the line before the item does not end in ":"."""
    j = next((j for j in range(first_item - 1, -1, -1) if not lines[j].blank), None)
    if j is None or not lines[j].text.rstrip().endswith(":"):
        return "", 0
    end = lines[j].end
    begin = lines[j].start
    if not lines[j].item:  # back over the lines of its paragraph (an item ending in ":" is its own)
        while j > 0 and not lines[j - 1].blank and not lines[j - 1].item and end - begin < 2 * MAX_LEAD_CHARS:
            j -= 1
            begin = lines[j].start
    ends = list(_SENTENCE_END.finditer(text, begin, end))
    if ends:
        begin = ends[-1].end()
    return _SPACES.sub(" ", text[begin:end]).strip()[-MAX_LEAD_CHARS:], begin
