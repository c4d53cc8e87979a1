"""Pages to overlapping, page-accurate chunks.

Chunks never cross a page (``page == page_end``), so a citation names the one page
the text came from, and ``page_text[char_start:char_end] == chunk.text`` exactly.
Within a page, a chunk ends at a paragraph or sentence boundary where one lies in
the second half of the window, else after ``size_words`` words; the next chunk
starts about ``overlap_words`` words earlier, at a sentence start when one is near.
Markdown is first cut into sections at headings, each chunk carrying its heading
path ("Intro > Setup"); chunks do not cross sections either.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from libs.common.models import Chunk
from services.embedder.parsing import Page, is_markdown

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\S+")
_PARAGRAPH_GAP = re.compile(r"\n[ \t\f\v]*\n")
# A word ending a sentence: terminal punctuation, then closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’»)\]]*$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")

# Boundary strength before a word.
_NONE, _SENTENCE, _PARAGRAPH = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Section:
    start: int
    end: int
    heading: str


def chunk_pages(
    pages: Sequence[Page],
    document_id: str,
    filename: str,
    size_words: int,
    overlap_words: int,
) -> list[Chunk]:
    """Chunks of at most ``size_words`` words, numbered 0..n-1 across the document.

    An overlap not smaller than the chunk size is cut to half the size (with a
    warning); ``ValueError`` for ``size_words < 1`` or ``overlap_words < 0``.
    """
    if size_words < 1:
        raise ValueError(f"size_words must be at least 1, got {size_words}")
    if overlap_words < 0:
        raise ValueError(f"overlap_words must not be negative, got {overlap_words}")
    if overlap_words >= size_words:
        logger.warning(
            "chunk overlap of %d words is not smaller than the chunk size of %d; using %d",
            overlap_words,
            size_words,
            size_words // 2,
        )
        overlap_words = size_words // 2
    markdown = is_markdown(filename)
    chunks: list[Chunk] = []
    for page in pages:
        sections = _markdown_sections(page.text) if markdown else [_Section(0, len(page.text), "")]
        for section in sections:
            for start, end in _spans(page.text, section.start, section.end, size_words, overlap_words):
                chunks.append(
                    Chunk(
                        document_id=document_id,
                        filename=filename,
                        chunk_index=len(chunks),
                        text=page.text[start:end],
                        page=page.number,
                        page_end=page.number,
                        char_start=start,
                        char_end=end,
                        heading=section.heading,
                    )
                )
    logger.debug("chunked %s: %d pages, %d chunks", filename, len(pages), len(chunks))
    return chunks


def _spans(text: str, start: int, end: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of the chunks of ``text[start:end]``."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    n = len(words)
    if n == 0:
        return []
    strength = _boundaries(text, words)
    spans: list[tuple[int, int]] = []
    first = 0
    while True:
        limit = min(first + size, n)
        last = limit if limit == n else _cut(strength, first + max(1, size // 2), limit)
        spans.append((words[first][0], words[last - 1][1]))
        if last == n:
            return spans
        first = _next_start(strength, first, last, size, overlap)


def _boundaries(text: str, words: list[tuple[int, int]]) -> list[int]:
    """``strength[i]``: how good a place to cut right before word ``i`` is."""
    strength = [_NONE] * (len(words) + 1)
    for i in range(1, len(words)):
        gap = text[words[i - 1][1] : words[i][0]]
        if _PARAGRAPH_GAP.search(gap):
            strength[i] = _PARAGRAPH
        elif _SENTENCE_END.search(text[words[i - 1][0] : words[i - 1][1]]):
            strength[i] = _SENTENCE
    strength[len(words)] = _PARAGRAPH
    return strength


def _cut(strength: list[int], lowest: int, limit: int) -> int:
    """The last paragraph, else sentence, boundary in ``[lowest, limit]``, else ``limit``."""
    for wanted in (_PARAGRAPH, _SENTENCE):
        for i in range(limit, lowest - 1, -1):
            if strength[i] >= wanted:
                return i
    return limit


def _next_start(strength: list[int], first: int, last: int, size: int, overlap: int) -> int:
    """Start of the chunk after ``words[first:last]``: about ``overlap`` words back."""
    if overlap == 0:
        return last
    # Prefer a sentence start whose overlap is within half of the target either way,
    # but always move forward and keep the next chunk reaching past ``last``.
    low = max(first + 1, last - min(overlap + overlap // 2, size - 1))
    high = min(last - 1, last - max(1, overlap - overlap // 2))
    candidates = [i for i in range(low, high + 1) if strength[i] >= _SENTENCE]
    if candidates:
        return min(candidates, key=lambda i: (abs(last - i - overlap), i))
    return max(first + 1, last - overlap)


def _markdown_sections(text: str) -> list[_Section]:
    """``text`` cut before each ATX heading (outside code fences), with heading paths.

    A heading with nothing but other headings under it joins the next section, so
    "# Guide\\n## Setup\\ntext" is one section headed "Guide > Setup".
    """
    sections: list[_Section] = []
    path: list[tuple[int, str]] = []
    start, heading, has_body = 0, "", False
    fence = ""
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        match = None if fence else _HEADING.match(stripped)
        if match:
            if has_body:
                sections.append(_Section(start, offset, heading))
                start, has_body = offset, False
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level]
            path.append((level, match.group(2).strip()))
            heading = " > ".join(title for _, title in path if title)
        else:
            fence_match = _FENCE.match(stripped)
            if fence_match:
                marker = fence_match.group(1)
                if not fence:
                    fence = marker
                elif marker[0] == fence[0] and len(marker) >= len(fence):
                    fence = ""
            has_body = has_body or bool(stripped.strip())
        offset += len(line)
    sections.append(_Section(start, len(text), heading))
    return sections
