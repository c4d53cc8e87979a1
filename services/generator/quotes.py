"""Quotable sentences of the retrieved text: running headers and footers left out.

A PDF's running header or footer ("BASH(1) General Commands Manual BASH(1)", a title
and a page number) is a line that recurs on page after page. Among the retrieved hits,
a line found on two or more pages of one document (compared with whitespace collapsed
and digits ignored, so "Page 12" and "Page 13" are one line) is such a line: it is never
part of a quoted sentence, which therefore never runs across it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Container, Sequence
from functools import lru_cache

from libs.common.line_key import line_key
from libs.common.models import Hit
from services.generator.sentences import Sentence, sentence_spans

# A line shorter than this is not taken for a running header (a lone "}" or "fi").
MIN_HEADER_CHARS = 8
# A line longer than this is text, not a header.
MAX_HEADER_CHARS = 120

_LINE = re.compile(r"[^\n]+")
_DIGITS = re.compile(r"\d+")
_LETTER = re.compile(r"[^\W\d_]")
_WORD = re.compile(r"[^\W\d_]+")
_END = re.compile(r"^(.*?)([.!?]+)$", re.DOTALL)


# Running headers recur on page after page: each distinct line is keyed once.
@lru_cache(maxsize=1 << 12)
def _header_like(key: str) -> bool:
    return MIN_HEADER_CHARS <= len(key) <= MAX_HEADER_CHARS and bool(_LETTER.search(key))


class Vocabulary:
    """The lower-case words of the hits' texts, gathered at the first look-up: only a word
    hyphenated across a line break needs them."""

    def __init__(self, hits: Sequence[Hit]) -> None:
        self._texts = [hit.text for hit in hits]
        self._words: frozenset[str] | None = None

    def __contains__(self, word: object) -> bool:
        if self._words is None:
            self._words = frozenset(w.lower() for text in self._texts for w in _WORD.findall(text))
        return word in self._words


def vocabulary(hits: Sequence[Hit]) -> Vocabulary:
    """The lower-case words of the hits' texts (``Vocabulary``)."""
    return Vocabulary(hits)


def repeated_lines(hits: Sequence[Hit]) -> frozenset[str]:
    """Keys of the lines found on at least two pages of one document among ``hits``."""
    pages: dict[tuple[str, str], set[int]] = defaultdict(set)
    for hit in hits:
        for match in _LINE.finditer(hit.text):
            key = line_key(match.group())
            if _header_like(key):
                pages[(hit.document_id, key)].add(hit.page)
    return frozenset(key for (_, key), seen in pages.items() if len(seen) >= 2)


def sentences_of(
    text: str, skip: frozenset[str], max_chars: int, vocabulary: Container[str] = frozenset()
) -> list[Sentence]:
    """The sentences of ``text`` (spans into it), none running across a line in ``skip``;
    ``vocabulary`` as for ``sentences.clean_quote``."""
    segments: list[tuple[int, int]] = []
    start = 0
    if skip:
        for match in _LINE.finditer(text):
            if line_key(match.group()) in skip:
                segments.append((start, match.start()))
                start = match.end()
    segments.append((start, len(text)))
    out: list[Sentence] = []
    for i, (seg_start, seg_end) in enumerate(segments):
        found = sentence_spans(text[seg_start:seg_end], max_chars, vocabulary)
        for j, s in enumerate(found):
            # A sentence that a running header or footer interrupts goes on after it.
            cut = s.cut or (j == len(found) - 1 and i < len(segments) - 1 and not _END.match(s.quote))
            entry = None if s.entry is None else s.entry + seg_start
            out.append(Sentence(s.start + seg_start, s.end + seg_start, s.quote, cut, entry))
    return out


def with_citation(sentence: str, n: int) -> str:
    """``"Text." -> "Text [n]."``; without end punctuation ``"Text [n]"``."""
    match = _END.match(sentence)
    if match:
        return f"{match.group(1).rstrip()} [{n}]{match.group(2)}"
    return f"{sentence} [{n}]"
