"""Repairs of text extracted from a PDF: ligatures, line-break hyphens, lost spaces.

Typesetters draw "fi" as one ligature glyph, break long words with a hyphen at the
end of a line, and position words without space characters between them; text
taken from the drawing shows all three. :func:`repair_page` undoes them on one
page's text, using the words of the whole document (:class:`Vocabulary`) to tell
a line-break hyphen ("hyphen-\\nation") from a real one ("well-\\nknown").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# Presentation forms (U+FB00..U+FB06) and what they stand for; U+2212 (minus) as the
# ASCII hyphen-minus people type ("set -e").
_CHARS = (
    ("\ufb00", "ff"),
    ("\ufb01", "fi"),
    ("\ufb02", "fl"),
    ("\ufb03", "ffi"),
    ("\ufb04", "ffl"),
    ("\ufb05", "st"),
    ("\ufb06", "st"),
    ("\u2212", "-"),
)
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
# A line ending in a letter run and a hyphen; the next line's first word, what sticks to
# it ("ation," "ation)"), and the spaces after it or the end of its line.
_BROKEN = re.compile(r"(?<![^\W\d_])([^\W\d_]+)-[ \t]*\n[ \t]*([^\W\d_]+)(\S*)[ \t]*(\n?)")
_TRAILING = re.compile(r"[ \t]+\n")
# A hyphen that a line break made, as PDFium marks it (U+FFFE, the line break already
# taken out) or as a soft hyphen (U+00AD), between two parts of a word.
_MARKED = re.compile(r"(?<![^\W\d_])([^\W\d_]+)[\ufffe\u00ad]\s*([^\W\d_]+)")
#: PDFium's mark of a hyphen at a line break it took out.
HYPHEN_MARK = "\ufffe"
_MARKS = (HYPHEN_MARK, "\u00ad")


def fix_chars(text: str) -> str:
    """Ligatures spelled out, minus signs as hyphens."""
    for char, letters in _CHARS:
        if char in text:
            text = text.replace(char, letters)
    return text


class Vocabulary:
    """How often each lower-case word, and each hyphenated compound, occurs in a document
    (outside line breaks): what decides whether a hyphen at a line's end is kept."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.words: Counter[str] = Counter()
        for text in texts:
            # Words split by a line break are not evidence either way.
            for line in text.split("\n"):
                inner = line.rstrip()
                if any(mark in inner for mark in _MARKS):
                    inner = " ".join(word for word in inner.split() if not any(m in word for m in _MARKS))
                if inner.endswith("-"):
                    inner = inner[:-1]
                self.words.update(word.lower() for word in _WORD.findall(inner))

    def keeps_hyphen(self, head: str, tail: str) -> bool:
        """Whether ``head-`` at a line's end and ``tail`` on the next line are one
        hyphenated word: the compound is written so elsewhere and the joined word is not,
        or the tail starts with a capital ("Jean-\\nPaul", "X-\\nWindows")."""
        if tail[:1].isupper():
            return True
        joined = (head + tail).lower()
        compound = f"{head}-{tail}".lower()
        return self.words[compound] > self.words[joined]


def join_hyphenated(text: str, vocabulary: Vocabulary) -> str:
    """ "hyphen-\\nation of" as "hyphenation\\nof": the continuation moves up a line, so
    the word is whole and lines stay lines; real hyphens ("well-\\nknown") stay."""

    def glue(match: re.Match[str]) -> str:
        head, tail = match.groups()
        return f"{head}-{tail}" if vocabulary.keeps_hyphen(head, tail) else head + tail

    text = _MARKED.sub(glue, text).replace("\ufffe", "-").replace("\u00ad", "")

    def join(match: re.Match[str]) -> str:
        head, tail, stuck, end = match.groups()
        glue = "-" if vocabulary.keeps_hyphen(head, tail) else ""
        # The rest of the continuation line stays on a line of its own.
        newline = "\n" if end or match.end() < len(text) else ""
        return f"{head}{glue}{tail}{stuck}{newline}"

    return _BROKEN.sub(join, text)


def repair_page(text: str, vocabulary: Vocabulary) -> str:
    """One page's text with its line-break hyphens joined and spaces before line ends dropped."""
    return _TRAILING.sub("\n", join_hyphenated(text, vocabulary))
