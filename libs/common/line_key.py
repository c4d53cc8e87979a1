"""One line of a page as compared with the lines of other pages, to find the running
headers and footers that recur on page after page ("BASH(1) General Commands Manual
BASH(1)", "Page 12"): the embedder drops them from chunks, the generator from quotes.
Both must key a line alike, or a line one finds running the other reads as text."""

from __future__ import annotations

import re
from typing import Final

_DIGITS: Final = re.compile(r"\d+")
_ROMAN: Final = re.compile(r"^[ivxlcdm]+$")


def line_key(line: str) -> str:
    """Whitespace collapsed, case folded, each run of digits as ``#``; a line that is
    only a roman numeral (a front-matter page number) is ``#`` too."""
    key = " ".join(line.split()).casefold()
    if _ROMAN.match(key):
        return "#"
    return _DIGITS.sub("#", key)
