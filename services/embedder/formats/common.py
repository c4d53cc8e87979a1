"""What every format parser returns: pages of text, optionally cut into headed sections."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from libs.common.errors import PermanentError

#: The setting a document's text must stay within (see :func:`check_chars`).
MAX_CHARS_SETTING = "DOCUMIND_MAX_EXTRACTED_CHARS"


#: What a page is for: ordinary text, a table of contents, or a back-of-book index.
PageKind = Literal["body", "contents", "index"]


@dataclass(frozen=True, slots=True)
class Section:
    """``text[start:end]`` of a page sits under the heading path ``heading`` ("Intro > Setup")."""

    start: int
    end: int
    heading: str


@dataclass(frozen=True, slots=True)
class Page:
    """The text of one physical page; ``number`` is 1-based.

    ``sections``, when not empty, cover the text in order and carry the heading path
    of each part (DOCX and HTML headings); the chunker keeps chunks inside them.
    ``kind`` says what the page is for: "body" (text that answers questions), or a
    table of "contents" or a back-of-book "index", which point to other pages and
    are not evidence themselves.
    """

    number: int
    text: str
    sections: tuple[Section, ...] = ()
    kind: PageKind = "body"


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading found while building a page's text: ``text[start:end]`` is its title."""

    start: int
    end: int
    level: int
    title: str


_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Unix newlines, no NUL characters, no byte-order mark."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.removeprefix("\ufeff")


def check_chars(count: int, limit: int | None) -> None:
    """Raise :class:`PermanentError` once a document's text passes ``limit`` characters.

    Parsers call it as text accumulates, so a document that unpacks to far more text
    than any real one stops early instead of being read to the end.
    """
    if limit is not None and count > limit:
        raise PermanentError(f"the document has more than {limit:,} characters of text ({MAX_CHARS_SETTING})")


def collapse(text: str) -> str:
    """Runs of whitespace as one space, none at either end."""
    return _SPACES.sub(" ", text).strip()


def sections_from_headings(text: str, headings: Sequence[Heading]) -> tuple[Section, ...]:
    """``text`` cut before each heading, each part with its heading path.

    A heading with nothing but other headings under it joins the next section, so
    "Guide", "Setup" (level 2), "text" is one section headed "Guide > Setup"; the
    same rule as the Markdown sections of the chunker.
    """
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    start, heading, body_from = 0, "", 0
    for h in sorted(headings, key=lambda h: h.start):
        if text[body_from : h.start].strip():
            sections.append(Section(start, h.start, heading))
            start = h.start
        path = [(level, title) for level, title in path if level < h.level]
        path.append((h.level, h.title))
        heading = " > ".join(title for _, title in path if title)
        body_from = h.end
    sections.append(Section(start, len(text), heading))
    return tuple(sections)


class TextBuilder:
    """Page text assembled from blocks, with the offsets of headings kept.

    Breaks asked for between pieces of text collapse to the strongest one, and none
    is written before the first text or after the last.
    """

    SPACE, CELL, LINE, PARAGRAPH = " ", " | ", "\n", "\n\n"
    _RANK: ClassVar[dict[str, int]] = {"": 0, SPACE: 1, CELL: 2, LINE: 3, PARAGRAPH: 4}

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._pending = ""
        self.headings: list[Heading] = []

    def brk(self, kind: str) -> None:
        if self._RANK[kind] > self._RANK[self._pending]:
            self._pending = kind

    def add(self, text: str) -> int | None:
        """Append ``text`` (after any pending break); returns where it starts, or None if empty."""
        if not text:
            return None
        if self._length and self._pending:
            self._parts.append(self._pending)
            self._length += len(self._pending)
        self._pending = ""
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        return start

    def add_heading(self, level: int, title: str) -> None:
        """``title`` as a paragraph of its own, remembered as a heading."""
        title = collapse(title)
        if not title:
            return
        self.brk(self.PARAGRAPH)
        start = self.add(title)
        assert start is not None
        self.headings.append(Heading(start, self._length, level, title))
        self.brk(self.PARAGRAPH)

    def record_heading(self, start: int, level: int, title: str) -> None:
        """Everything added since offset ``start`` is a heading of ``level`` named ``title``."""
        title = collapse(title)
        if title and start < self._length:
            self.headings.append(Heading(start, self._length, level, title))

    @property
    def length(self) -> int:
        return self._length

    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def page(self) -> Page:
        text = self.text()
        return Page(number=1, text=text, sections=sections_from_headings(text, self.headings))
