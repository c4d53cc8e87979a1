"""Heading paths for PDF pages from the document's outline (its bookmarks).

An outline entry names a title and the page it starts on; the title is looked for
in that page's text (a line that starts with it, else anywhere after the previous
heading found), and the page is cut there, as DOCX and HTML pages are cut at their
headings. The heading path ("Chapter > Section") carries over page breaks, so a
page with no heading of its own sits under the last one before it. A title that is
not found on its page still counts from the next page on; a document without an
outline gets no sections.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.embedder.formats.common import Section, collapse

# Titles longer than this are not looked for (an outline entry holding a paragraph).
MAX_TITLE_CHARS = 200
_NUMBERING = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[A-Z](?:\.\d+)*\.?|[IVXLC]+\.)\s+")


@dataclass(frozen=True, slots=True)
class Bookmark:
    """An outline entry: its depth (0 for the top), title and 0-based page index."""

    level: int
    title: str
    page: int


def outline_sections(texts: Sequence[str], bookmarks: Sequence[Bookmark]) -> list[tuple[Section, ...]]:
    """Each page's sections (``()`` for every page when the outline gives nothing)."""
    by_page: dict[int, list[Bookmark]] = {}
    for mark in bookmarks:
        title = collapse(mark.title)
        if title and 0 <= mark.page < len(texts) and len(title) <= MAX_TITLE_CHARS:
            by_page.setdefault(mark.page, []).append(Bookmark(mark.level, title, mark.page))
    if not by_page:
        return [() for _ in texts]
    path: list[tuple[int, str]] = []
    late: list[Bookmark] = []
    out: list[tuple[Section, ...]] = []
    for number, text in enumerate(texts):
        for mark in late:
            path = _push(path, mark)
        late = []
        sections: list[Section] = []
        start, body_from, cursor = 0, 0, 0
        heading = _joined(path)
        for mark in by_page.get(number, []):
            found = _find(text, mark.title, cursor)
            if found is None:
                late.append(mark)
                continue
            at, end = found
            if text[body_from:at].strip():
                sections.append(Section(start, at, heading))
                start = at
            path = _push(path, mark)
            heading = _joined(path)
            body_from = cursor = end
        sections.append(Section(start, len(text), heading))
        out.append(tuple(sections))
    return out


def _push(path: list[tuple[int, str]], mark: Bookmark) -> list[tuple[int, str]]:
    return [(level, title) for level, title in path if level < mark.level] + [(mark.level, mark.title)]


def _joined(path: Sequence[tuple[int, str]]) -> str:
    return " > ".join(title for _, title in path)


def _find(text: str, title: str, cursor: int) -> tuple[int, int] | None:
    """Where ``title`` (its words, any spacing, any case) is in ``text`` after ``cursor``:
    at the start of a line if it is anywhere there, with or without its numbering."""
    bare = _NUMBERING.sub("", title)
    for candidate in dict.fromkeys((title, bare)):
        words = [re.escape(word) for word in candidate.split()]
        if not words:
            continue
        pattern = r"\s+".join(words)
        line = re.compile(rf"^[ \t]*(?:\S+[ \t]+)?({pattern})", re.IGNORECASE | re.MULTILINE)
        match = line.search(text, cursor)
        if match is None:
            continue
        return match.start(), match.end()
    for candidate in dict.fromkeys((title, bare)):
        words = [re.escape(word) for word in candidate.split()]
        if words:
            match = re.compile(r"\s+".join(words), re.IGNORECASE).search(text, cursor)
            if match:
                return match.start(), match.end()
    return None
