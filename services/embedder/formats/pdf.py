"""PDF: one :class:`Page` per physical page, numbers kept.

A PDF that cannot be opened fails with what is wrong with it, as far as the bytes
tell: not a PDF at all, cut short (no ``%%EOF`` at its end: an interrupted upload
or download, whose first pages are not indexed on their own, so that no answer
silently misses the rest), damaged, or encrypted with a password.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

from libs.common.errors import PermanentError
from services.embedder.formats.common import Page, check_chars, normalise
from services.embedder.formats.pdf_kinds import page_kinds
from services.embedder.formats.pdf_outline import Bookmark, outline_sections
from services.embedder.formats.pdf_pdfium import PdfiumUnusable, pdfium_read
from services.embedder.formats.pdf_repair import HYPHEN_MARK, Vocabulary, fix_chars, repair_page
from services.embedder.formats.pdf_running import drop_running

logger = logging.getLogger(__name__)

#: The setting a PDF's page count must stay within.
MAX_PAGES_SETTING = "DOCUMIND_MAX_PAGES"
# Where readers look for the header and the end-of-file marker (the PDF standard
# allows junk before one and after the other; readers accept about this much).
_HEADER_WINDOW = 1024
_TRAILER_WINDOW = 1024


def parse_pdf(data: bytes, max_pages: int, max_chars: int | None = None) -> list[Page]:
    """Every page's text; stops once the text passes ``max_chars`` characters.

    pypdf opens the file (its errors tell what is wrong with a file that does not
    open) and unpacks every page's content; PDFium reads the text and the outline
    (pypdf reads the text of a file PDFium cannot use). The text is then cleaned
    (:func:`pages_from_texts`).
    """
    reader, count = _open(data)
    if count > max_pages:
        raise PermanentError(f"the PDF has {count:,} pages; at most {max_pages:,} ({MAX_PAGES_SETTING})")
    if count == 0:
        raise PermanentError("could not read PDF: it has no pages")
    _unpack_contents(reader)
    try:
        texts, failures, outline = pdfium_read(data, count, max_chars)
    except PdfiumUnusable as exc:
        logger.warning("PDFium cannot read this PDF (%s); reading its text with pypdf", exc)
        texts, failures = _pypdf_texts(reader, count, max_chars)
        outline = []
    if len(failures) == count:
        raise PermanentError(f"could not read PDF: {failures[0]}")
    return pages_from_texts(texts, outline)


def pages_from_texts(texts: Sequence[str], outline: Sequence[Bookmark] = ()) -> list[Page]:
    """Pages from each page's extracted text: ligatures and minus signs spelled out,
    running headers and footers dropped, line-break hyphens joined; each page marked
    as body, contents or index, and cut into sections at the outline's titles."""
    lines = drop_running([_line_breaks(fix_chars(text)).split("\n") for text in texts])
    joined = ["\n".join(page).strip("\n") for page in lines]
    vocabulary = Vocabulary(joined)
    cleaned = [repair_page(text, vocabulary) for text in joined]
    sections = outline_sections(cleaned, outline)
    kinds = page_kinds(cleaned)
    return [
        Page(number=n, text=text, sections=parts, kind=kind)
        for n, (text, parts, kind) in enumerate(zip(cleaned, sections, kinds, strict=True), 1)
    ]


def _line_breaks(text: str) -> str:
    """``text`` with the line break back after each hyphen PDFium marks (U+FFFE): PDFium
    takes the break out, so a page whose last word is hyphenated ran into its footer
    ("... or a non\ufffeGNU Bash 5.2 2022 September 19 71") and the footer was no line
    of its own. :func:`repair_page` joins the word's halves again."""
    return text.replace(HYPHEN_MARK, HYPHEN_MARK + "\n") if HYPHEN_MARK in text else text


def _open(data: bytes) -> tuple[Any, int]:
    """pypdf's reader of ``data`` (decrypted with the empty password) and its page count."""
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many "protected" PDFs only restrict printing or copying: the empty user
            # password opens them for reading.
            try:
                opened = reader.decrypt("")
            except DependencyError as exc:
                raise PermanentError(f"encrypted PDF: cannot decrypt it here ({exc})") from exc
            if opened == PasswordType.NOT_DECRYPTED:
                raise PermanentError(
                    "encrypted PDF: it is password-protected (it needs a password to open); "
                    "upload an unprotected copy"
                )
        return reader, len(reader.pages)
    except (PermanentError, MemoryError):
        raise
    except PyPdfError as exc:
        raise unreadable(data, str(exc)) from exc
    except Exception as exc:  # malformed input can break the parser in many ways
        logger.debug("pypdf failed to open a document", exc_info=True)
        raise unreadable(data, f"{type(exc).__name__}: {exc}") from exc


def _unpack_contents(reader: Any) -> None:
    """Unpack every page's content streams, which pypdf keeps: a PDF whose drawing
    unpacks to more than the parse's memory (a zlib bomb) fails on memory here, before
    PDFium, which unpacks a page at a time, spends the parse's time on it. Real
    documents' content is small (about 1 MB for the 184 pages of a manual)."""
    from pypdf.generic import ArrayObject

    for index in range(len(reader.pages)):
        try:
            contents = reader.pages[index].get("/Contents")
            contents = contents.get_object() if contents is not None else None
            streams = list(contents) if isinstance(contents, ArrayObject) else [contents]
            for stream in streams:
                if stream is not None:
                    stream.get_object().get_data()
        except MemoryError:
            raise
        except Exception:  # a damaged stream is the text extractor's to report
            logger.debug("could not unpack the content of PDF page %d", index + 1, exc_info=True)


def _pypdf_texts(reader: Any, count: int, max_chars: int | None) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    failures: list[str] = []
    chars = 0
    for index in range(count):
        try:
            text = reader.pages[index].extract_text() or ""
        except MemoryError:
            raise
        except Exception as exc:  # one damaged page should not lose the others
            logger.warning("could not extract text of PDF page %d: %s", index + 1, exc)
            failures.append(f"page {index + 1}: {type(exc).__name__}: {exc}")
            text = ""
        texts.append(normalise(text))
        chars += len(texts[-1])
        check_chars(chars, max_chars)
    return texts, failures


def unreadable(data: bytes, detail: str) -> PermanentError:
    """Why a PDF that pypdf could not open is unreadable, in the uploader's terms."""
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        return PermanentError("could not read PDF: the file is not a PDF (it has no %PDF- header)")
    if b"%%EOF" not in data[-_TRAILER_WINDOW:]:
        return PermanentError(
            "could not read PDF: the file is truncated (it does not end with the %%EOF marker: "
            "the upload or an earlier download was cut short); upload the complete file"
        )
    return PermanentError(f"could not read PDF: the file is damaged ({detail})")
