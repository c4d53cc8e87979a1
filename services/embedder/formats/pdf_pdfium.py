"""Page text and outline of a PDF through PDFium (pypdfium2).

PDFium lays out a page's characters into lines and words from their positions, so
its text keeps the spaces between words that pypdf often loses, and it is about
ten times faster. It marks a hyphen that it found at the end of a line, and took
out with the line break, as U+FFFE. A PDF that PDFium cannot open, or whose page
count it sees differently from pypdf, raises :class:`PdfiumUnusable`, and the
caller reads it with pypdf instead.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from services.embedder.formats.common import check_chars, normalise
from services.embedder.formats.pdf_outline import Bookmark
from services.embedder.formats.pdf_spacing import respace, suspect, vocabulary

logger = logging.getLogger(__name__)

# Deeper outline entries than this are not read (a loop guard, as pypdfium2's own).
MAX_OUTLINE_DEPTH = 15


class PdfiumUnusable(Exception):
    """PDFium cannot read this PDF as pypdf did."""


def pdfium_read(
    data: bytes, count: int, max_chars: int | None
) -> tuple[list[str], list[str], list[Bookmark]]:
    """Each page's text (``""`` for a page that failed), one line per failed page, and
    the outline's entries that point to a page of the document, in order.

    Stops with :class:`PermanentError` once the text passes ``max_chars`` characters.
    """
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise PdfiumUnusable(str(exc)) from exc
    try:
        if len(document) != count:
            raise PdfiumUnusable(f"PDFium counts {len(document)} pages, pypdf {count}")
        texts, failures = _texts(document, count, max_chars)
        return texts, failures, _outline(document, count)
    finally:
        document.close()


def _texts(document: Any, count: int, max_chars: int | None) -> tuple[list[str], list[str]]:
    import pypdfium2 as pdfium

    texts: list[str] = []
    failures: list[str] = []
    chars = 0
    for index in range(count):
        try:
            text = _page_text(document, index, None)
        except pdfium.PdfiumError as exc:
            logger.warning("could not extract text of PDF page %d: %s", index + 1, exc)
            failures.append(f"page {index + 1}: {exc}")
            text = ""
        texts.append(text)
        chars += len(text)
        check_chars(chars, max_chars)
    # Lost spaces, now that the document's words are known (a page read again is cheap).
    counts = vocabulary(texts)
    for index, text in enumerate(texts):
        if text and any(suspect(token, counts) for token in text.split()):
            texts[index] = _page_text(document, index, counts)
    return [normalise(text) for text in texts], failures


def _page_text(document: Any, index: int, counts: Counter[str] | None) -> str:
    """Page ``index``'s text; with ``counts``, its lost spaces put back."""
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            text = str(textpage.get_text_range())
            return text if counts is None else respace(text, textpage, counts)
        finally:
            textpage.close()
    finally:
        page.close()


def _outline(document: Any, count: int) -> list[Bookmark]:
    import pypdfium2 as pdfium

    marks: list[Bookmark] = []
    try:
        for entry in document.get_toc(max_depth=MAX_OUTLINE_DEPTH):
            dest = entry.get_dest()
            index = dest.get_index() if dest is not None else None
            if isinstance(index, int) and 0 <= index < count:
                marks.append(Bookmark(int(entry.level), str(entry.get_title()), index))
    except pdfium.PdfiumError as exc:
        logger.info("could not read the PDF's outline: %s", exc)
    return marks
