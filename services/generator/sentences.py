"""Sentences of a text with where each is in it, and quotes cleaned for reading.

Text extracted from PDFs breaks lines inside sentences, splits words at line ends with
a hyphen ("confi-\\nguration"), uses ligature characters ("ﬁ") and lacks punctuation.
:func:`sentence_spans` cuts a text into sentences and gives each one's span in the
text, so a citation can mark exactly the quoted passage on the page; :func:`clean_quote`
makes the passage readable (words joined again, ligatures spelt out, whitespace
collapsed) for the answer and the snippet, which therefore may differ from the page's
characters while their span does not.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass

# A command-line option starting a line of an option list ("-nocpp Do not ...").
_OPTION = r"--?[^\W\d_]"
# A term alone on its line, its description starting on the next ("SRANDOM\nThis variable").
_TERM_LINE = r"[^\W\d_][\w.+-]{1,38}[ \t]*\n[ \t]*[A-Z]"
# Paragraph boundaries: a blank line, a line break before a list item, before an option,
# or before a term line after a line ending a sentence (else it is a word wrapped onto a
# line of its own).
_PARAGRAPH = re.compile(
    rf"\n[ \t]*\n\s*|\n(?=[ \t]*(?:[-\u2022*]|\d{{1,3}}[.)])[ \t])|\n(?=[ \t]*{_OPTION})"
    rf"|(?<=[.!?:])[ \t]*\n(?=[ \t]*{_TERM_LINE})"
)
# A paragraph starting so is an entry of a definition or option list: its first sentence
# names what the rest of it describes.
_ENTRY = re.compile(rf"[ \t]*(?:{_TERM_LINE}|{_OPTION})")
# Sentence boundaries: end punctuation (optionally closed by a quote or bracket) followed by
# whitespace and something that can start a sentence.
_SENTENCE = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"')\]\u201d\u2019]))\s+(?=[\"'(\[\u201c\u2018]?[^\W_a-z]|--?[^\W\d_])"
)
# A piece ending like this was cut after an abbreviation or an initial, not a sentence.
_ABBREVIATION = re.compile(
    r"(?:\b(?i:e\.g|i\.e|etc|vs|cf|approx|fig|figs|no|nos|vol|pp|mr|mrs|ms|dr|prof|inc|ltd|corp|jr|sr)"
    r"|(?:^|[\s(])[A-Z](?:\.[A-Z])*)\.[\"')\]]*$"
)
# Characters at the end of a piece that _ABBREVIATION looks at ("U.S.A.)" and "approx." fit).
_ABBREVIATION_TAIL = 40
# A numbered heading on a line of its own ("3.1.9 Arithmetic operators", "1 Introduction"):
# a sentence of its own, never the start of the text after it.
_HEADING = re.compile(r"^[ \t]*\d{1,2}(?:\.\d{1,2})*\.?[ \t]+[A-Z][^\n]{0,60}(?<![.!?;:,])$", re.MULTILINE)
_SOFT_BOUNDARY = re.compile(r"(?<=[;:])\s+")
_NON_SPACE = re.compile(r"\S+")
# A word cut at a line end with a hyphen, its second part in lower case: "confi-\nguration".
_LINE_HYPHEN = re.compile(r"([^\W\d_]+)[-\u2010][ \t]*\n\s*([a-z]+)")
# A hyphen at a line end before a capital or a digit belongs to the word: "GNU-\nLinux".
_LINE_HYPHEN_KEPT = re.compile(r"(?<=\w)-[ \t]*\n\s*(?=[A-Z0-9])")
_HYPHEN_AT_LINE_END = re.compile(r"[-\u2010][ \t]*\n")
_SOFT_HYPHEN = "\u00ad"
_LIGATURES = str.maketrans(
    {
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
    }
)


@dataclass(frozen=True)
class Sentence:
    """A sentence of a text: ``text[start:end]`` is it as written; ``quote`` is it cleaned."""

    start: int
    end: int
    quote: str
    # The sentence goes on in the next one: it was cut for length, not at its end.
    cut: bool = False
    # Where the entry of a definition or option list that holds the sentence starts (its
    # first sentence's ``start``, naming the term); None outside such lists.
    entry: int | None = None


def normalize_space(text: str) -> str:
    """Runs of whitespace as one space, none at either end."""
    return " ".join(text.split())


def clean_quote(raw: str, vocabulary: Container[str] = frozenset()) -> str:
    """``raw`` as a reader should see it quoted: ligatures and soft hyphens spelt out,
    whitespace collapsed, and a word hyphenated across a line break ("confi-\nguration")
    joined again when ``vocabulary`` (lower-case words of the text around) has it whole;
    otherwise the hyphen stays ("command-line"): without a dictionary, a compound split
    at its hyphen and a word hyphenated for the line look alike."""
    text = raw
    if _SOFT_HYPHEN in text:
        text = text.replace(_SOFT_HYPHEN + "\n", "").replace(_SOFT_HYPHEN, "")
    text = text.translate(_LIGATURES)
    # Both substitutions below need a hyphen at a line's end (a cheap search first).
    if "\n" not in text or not _HYPHEN_AT_LINE_END.search(text):
        return normalize_space(text)

    def join(match: re.Match[str]) -> str:
        whole = match.group(1) + match.group(2)
        return whole if whole.lower() in vocabulary else f"{match.group(1)}-{match.group(2)}"

    text = _LINE_HYPHEN.sub(join, text)
    text = _LINE_HYPHEN_KEPT.sub("-", text)
    return normalize_space(text)


def _pieces(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    """The spans of ``text[start:end]`` between matches of ``pattern``, whitespace trimmed."""
    out: list[tuple[int, int]] = []
    cut = start
    for match in pattern.finditer(text, start, end):
        out.append((cut, match.start()))
        cut = match.end()
    out.append((cut, end))
    trimmed = []
    for s, e in out:
        piece = text[s:e]
        lead = len(piece) - len(piece.lstrip())
        size = len(piece.strip())
        if size:
            trimmed.append((s + lead, s + lead + size))
    return trimmed


def _cut_long(text: str, start: int, end: int, max_chars: int) -> Iterable[tuple[int, int]]:
    """An over-long span cut at ``;``/``:`` first, then into runs of whole words."""
    # Collapsing whitespace never lengthens a span: the raw length decides most spans.
    if end - start <= max_chars or len(normalize_space(text[start:end])) <= max_chars:
        yield start, end
        return
    for s, e in _pieces(text, _SOFT_BOUNDARY, start, end):
        if len(normalize_space(text[s:e])) <= max_chars:
            yield s, e
            continue
        run_start, run_end, size = -1, -1, 0
        for word in _NON_SPACE.finditer(text, s, e):
            length = word.end() - word.start()
            if run_start >= 0 and size + 1 + length > max_chars:
                yield run_start, run_end
                run_start, size = -1, 0
            if run_start < 0:
                run_start, size = word.start(), length
            else:
                size += 1 + length
            run_end = word.end()
        if run_start >= 0:
            yield run_start, run_end


def _abbreviated(text: str, start: int, end: int) -> bool:
    r"""Whether the piece ``text[start:end]`` ends with an abbreviation or an initial.

    Only its last characters are searched. The search may start one character before the
    piece (whitespace, or nothing at the text's start), where the pattern's ``[\\s(]``
    stands for the piece's start; ``^`` matches only at the text's start, and ``\b``
    sees the characters before the search's start.
    """
    return _ABBREVIATION.search(text, max(start - 1, end - _ABBREVIATION_TAIL, 0), end) is not None


def _blocks(text: str) -> list[tuple[int, int]]:
    """Paragraphs, with each numbered heading line a block of its own."""
    blocks: list[tuple[int, int]] = []
    for p_start, p_end in _pieces(text, _PARAGRAPH, 0, len(text)):
        cut = p_start
        for heading in _HEADING.finditer(text, p_start, p_end):
            blocks.extend(((cut, heading.start()), (heading.start(), heading.end())))
            cut = heading.end()
        blocks.append((cut, p_end))
    return [(s, e) for s, e in blocks if text[s:e].strip()]


def sentence_spans(
    text: str, max_chars: int = 300, vocabulary: Container[str] = frozenset()
) -> list[Sentence]:
    """The sentences of ``text`` in order, each with its span and its clean quote.

    Pieces longer than ``max_chars`` (PDF text often lacks punctuation) are cut further;
    no quote is much longer than ``max_chars`` unless it is a single word.
    """
    spans: list[tuple[int, int, int | None]] = []
    whole: list[tuple[int, int]] = []
    for p_start, p_end in _blocks(text):
        merged: list[tuple[int, int]] = []
        for s, e in _pieces(text, _SENTENCE, p_start, p_end):
            if merged and _abbreviated(text, *merged[-1]):
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        entry = merged[0][0] if merged and _ENTRY.match(text, p_start) else None
        for s, e in merged:
            whole.append((s, e))
            spans.extend((cs, ce, entry) for cs, ce in _cut_long(text, s, e, max_chars))
    ends = {e for _, e in whole}
    sentences = [
        Sentence(s, e, clean_quote(text[s:e], vocabulary), cut=e not in ends, entry=entry)
        for s, e, entry in spans
    ]
    return [s for s in sentences if s.quote]
