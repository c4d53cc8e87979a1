"""Spaces that a PDF's text lost, put back from where its characters are drawn.

Some typesetters (groff, for one) move to the next word without drawing a space,
and PDFium then runs the words together: "Of the twoforms", "word.Ifany part".
Where a word is that rare in the document (or has a full stop or comma inside it),
the gaps between its characters on the page are measured: a gap of
:data:`WORD_GAP` of the font size between two letters is a word space (kerning and
letter spacing stay well below it), and :data:`PUNCT_GAP` after a comma, or after a
full stop, colon or semicolon before a capital (their narrow glyphs leave a wider
gap); and only where the gap stands out from the word's usual one (a diagram's
letter-spaced labels have wide gaps everywhere). Characters in a
fixed-pitch font (code, file names, URLs: the font says so, or its name is that of
a typewriter face) are left alone: their cells leave gaps around narrow letters.
A character whose place in the text does not map back to the same character on
the page is never measured.
"""

from __future__ import annotations

import ctypes
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

# Gaps, in units of the font size, that stand for a lost space.
WORD_GAP = 0.22
PUNCT_GAP = 0.3
# A word occurring at most this often in the document is looked at.
RARE = 1
MIN_RARE_LETTERS = 5
# A smaller font size is not the size the text is drawn at (a diagram's text scaled by
# its transformation): its gaps cannot be measured in it.
MIN_FONT_SIZE = 4.0
# Baselines further apart than this share of the font size are not on one line.
_BASELINE = 0.2
_FIXED_PITCH = 1  # PDF font descriptor flag bit 1
# Font names of typewriter faces that do not set the flag (Courier, the TeX "tt" fonts).
_MONO_NAME = re.compile(rb"courier|cursor|mono|typewriter|consol|code|tt\d*$", re.IGNORECASE)

_LETTERS = re.compile(r"[^\W\d_]+")
_TOKEN = re.compile(r"\S+")
# "word.If", "word,the": a sentence or clause run into the next.
_STUCK = re.compile(r"[^\W\d_](?:[.:;][^\W\d_]*[A-Z]|,[^\W\d_])")
_NAME = re.compile(r"[\d_/@\\]")


def vocabulary(texts: Sequence[str]) -> Counter[str]:
    """How often each lower-case letter run occurs in the document."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word.lower() for word in _LETTERS.findall(text))
    return counts


def suspect(token: str, counts: Counter[str]) -> bool:
    """Whether ``token`` (no spaces in it) may be words run together: prose, not a name
    with digits or an underscore, a path or an address in it."""
    if _NAME.search(token):
        return False
    if _STUCK.search(token):
        return True
    return any(
        len(run) >= MIN_RARE_LETTERS and counts[run.lower()] <= RARE for run in _LETTERS.findall(token)
    )


def respace(text: str, textpage: Any, counts: Counter[str]) -> str:
    """``text`` (PDFium's text of ``textpage``, its indices the page's characters) with
    a space wherever a suspect word has a gap of a lost space."""
    import pypdfium2.raw as pdfium_c

    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    flags = ctypes.c_int()
    name = ctypes.create_string_buffer(128)

    def char(text_index: int) -> int | None:
        """The page's character at ``text_index`` of the text, if it is the same one."""
        index = int(pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, text_index))
        if index < 0 or pdfium_c.FPDFText_GetUnicode(textpage, index) != ord(text[text_index]):
            return None
        return index

    def proportional(index: int) -> bool:
        pdfium_c.FPDFText_GetFontInfo(textpage, index, name, len(name), flags)
        return not flags.value & _FIXED_PITCH and not _MONO_NAME.search(name.value)

    def gap(first: int, second: int) -> float | None:
        """The gap from ``first`` to ``second`` in font sizes, None when not on one line."""
        size = float(pdfium_c.FPDFText_GetFontSize(textpage, second))
        if size < MIN_FONT_SIZE or not (proportional(first) and proportional(second)):
            return None
        pdfium_c.FPDFText_GetCharBox(textpage, first, left, right, bottom, top)
        end, base = right.value, bottom.value
        pdfium_c.FPDFText_GetCharBox(textpage, second, left, right, bottom, top)
        if abs(bottom.value - base) > _BASELINE * size:
            return None
        return (left.value - end) / size

    cuts: list[int] = []
    for match in _TOKEN.finditer(text):
        if not suspect(match.group(), counts):
            continue
        gaps: list[tuple[int, float]] = []
        for at in range(match.start() + 1, match.end()):
            before, after = text[at - 1], text[at]
            if not after.isalpha() or not (
                before.isalpha() or before == "," or (before in ".:;" and after.isupper())
            ):
                continue
            first, second = char(at - 1), char(at)
            found = None if first is None or second is None else gap(first, second)
            if found is not None:
                gaps.append((at, found))
        # Letter-spaced text (a diagram's labels) has wide gaps everywhere: a lost
        # space stands out from the word's usual gap.
        usual = statistics.median(found for _, found in gaps) if gaps else 0.0
        for at, found in gaps:
            least = WORD_GAP if text[at - 1].isalpha() else PUNCT_GAP
            if found >= least and found - usual >= WORD_GAP / 2:
                cuts.append(at)
    if not cuts:
        return text
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return " ".join(parts)
