"""Uploaded bytes to page texts: plain text, Markdown, PDF, DOCX and HTML.

Every failure the uploader can do something about raises :class:`PermanentError`
with a message meant for them. The parsers themselves live in
:mod:`services.embedder.formats`.
"""

from __future__ import annotations

import logging
from pathlib import PurePath

from libs.common import constants
from libs.common.errors import PermanentError
from services.embedder.formats.common import Page, Section, check_chars
from services.embedder.formats.docx_format import DEFAULT_MAX_UNPACKED_BYTES, parse_docx
from services.embedder.formats.html_format import parse_html
from services.embedder.formats.pdf import parse_pdf
from services.embedder.formats.text import decode_text

__all__ = [
    "DEFAULT_MAX_UNPACKED_BYTES",
    "SUPPORTED_EXTENSIONS",
    "Page",
    "Section",
    "decode_text",
    "file_extension",
    "is_markdown",
    "is_supported",
    "parse_document",
]

logger = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset({".txt"})
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown"})
PDF_EXTENSIONS = frozenset({".pdf"})
DOCX_EXTENSIONS = frozenset({".docx"})
HTML_EXTENSIONS = frozenset({".html", ".htm"})
#: Lower-case extensions, dot included, that :func:`parse_document` accepts
#: (one list, shared with the gateway, which answers 415 for the rest).
SUPPORTED_EXTENSIONS = constants.SUPPORTED_EXTENSIONS


def file_extension(filename: str) -> str:
    """Lower-case extension with its dot (``"Report.PDF"`` -> ``".pdf"``), or ``""``."""
    return PurePath(filename).suffix.lower()


def is_supported(filename: str) -> bool:
    return file_extension(filename) in SUPPORTED_EXTENSIONS


def is_markdown(filename: str) -> bool:
    return file_extension(filename) in MARKDOWN_EXTENSIONS


def parse_document(
    filename: str,
    data: bytes,
    max_pages: int,
    *,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    max_chars: int | None = None,
) -> list[Page]:
    """Pages of text of an uploaded file, in order, numbered from 1.

    Every physical page of a PDF is returned, empty ones as ``""``, so numbers stay
    right. Text, Markdown, DOCX and HTML files are a single page; DOCX and HTML
    pages carry their heading sections. A DOCX claiming to unpack to more than
    ``max_unpacked_bytes`` is refused before it is unpacked; reading stops once the
    text passes ``max_chars`` characters. Raises :class:`PermanentError` for an
    unsupported type, an empty or unreadable file, too many pages or characters, a
    likely zip bomb, or a document without any text.
    """
    ext = file_extension(filename)
    if ext not in SUPPORTED_EXTENSIONS:
        shown = f"'{ext}'" if ext else "(no extension)"
        raise PermanentError(
            f"unsupported file type {shown}; supported: {', '.join(sorted(SUPPORTED_EXTENSIONS))}"
        )
    if not data:
        raise PermanentError("empty file")
    if ext in PDF_EXTENSIONS:
        pages = parse_pdf(data, max_pages, max_chars)
        if not any(page.text.strip() for page in pages):
            where = "its one page" if len(pages) == 1 else f"any of its {len(pages):,} pages"
            raise PermanentError(
                f"no extractable text on {where} (a scanned or image-only PDF needs OCR first)"
            )
        return pages
    if ext in DOCX_EXTENSIONS:
        pages = parse_docx(data, max_unpacked_bytes, max_chars)
    elif ext in HTML_EXTENSIONS:
        pages = parse_html(data, max_chars)
    else:
        pages = [Page(number=1, text=decode_text(data))]
        check_chars(len(pages[0].text), max_chars)
    if not any(page.text.strip() for page in pages):
        raise PermanentError("no extractable text")
    return pages
