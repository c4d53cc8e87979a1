"""Uploaded bytes to page texts: plain text, Markdown and PDF.

Every failure the uploader can do something about raises :class:`PermanentError`
with a message meant for them.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import PurePath

from libs.common import constants as C
from libs.common.errors import PermanentError

logger = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset({".txt"})
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown"})
PDF_EXTENSIONS = frozenset({".pdf"})
#: Lower-case extensions, dot included, that :func:`parse_document` accepts
#: (one list, shared with the gateway, which answers 415 for the rest).
SUPPORTED_EXTENSIONS = C.SUPPORTED_EXTENSIONS


@dataclass(frozen=True, slots=True)
class Page:
    """The text of one physical page; ``number`` is 1-based."""

    number: int
    text: str


def file_extension(filename: str) -> str:
    """Lower-case extension with its dot (``"Report.PDF"`` -> ``".pdf"``), or ``""``."""
    return PurePath(filename).suffix.lower()


def is_supported(filename: str) -> bool:
    return file_extension(filename) in SUPPORTED_EXTENSIONS


def is_markdown(filename: str) -> bool:
    return file_extension(filename) in MARKDOWN_EXTENSIONS


def parse_document(filename: str, data: bytes, max_pages: int) -> list[Page]:
    """Pages of text of an uploaded file, in order, numbered from 1.

    Every physical page of a PDF is returned, empty ones as ``""``, so numbers stay
    right. Text and Markdown files are a single page. Raises :class:`PermanentError`
    for an unsupported type, an empty or unreadable file, too many pages, or a
    document without any text.
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
        pages = _parse_pdf(data, max_pages)
        if not any(page.text.strip() for page in pages):
            raise PermanentError("no extractable text (a scanned or image-only PDF needs OCR first)")
        return pages
    text = decode_text(data)
    if not text.strip():
        raise PermanentError("no extractable text")
    return [Page(number=1, text=text)]


def _normalise(text: str) -> str:
    """Unix newlines, no NUL characters, no byte-order mark."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.removeprefix("\ufeff")


# ---------------------------------------------------------------------------- text


_WESTERN = "cp1252"
_WESTERN_CHAOS_MARGIN = 0.1


def decode_text(data: bytes) -> str:
    """Bytes of a text file as a string, whatever the encoding.

    UTF-8 (with or without BOM) is tried first; otherwise charset-normalizer
    guesses. Raises :class:`PermanentError` when the bytes do not look like text.
    """
    try:
        return _normalise(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise PermanentError("could not read the file as text (unknown encoding or binary content)")
    if best.encoding != _WESTERN and not best.encoding.startswith("utf"):
        # Short single-byte texts are ambiguous and the detector often picks a rarer
        # code page (French as cp1250: "crème" -> "crčme"). Windows-1252, the most
        # common legacy encoding, wins when it reads the bytes (almost) as cleanly.
        western = from_bytes(data, cp_isolation=[_WESTERN]).best()
        if western is not None and western.chaos <= best.chaos + _WESTERN_CHAOS_MARGIN:
            best = western
    logger.debug("decoded text file as %s", best.encoding)
    return _normalise(str(best))


# ----------------------------------------------------------------------------- pdf


def _parse_pdf(data: bytes, max_pages: int) -> list[Page]:
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
                raise PermanentError("encrypted PDF: it needs a password; upload an unprotected copy")
        count = len(reader.pages)
    except PermanentError:
        raise
    except PyPdfError as exc:
        raise PermanentError(f"could not read PDF: {exc}") from exc
    except Exception as exc:  # malformed input can break the parser in many ways
        logger.debug("pypdf failed to open a document", exc_info=True)
        raise PermanentError(f"could not read PDF: {type(exc).__name__}: {exc}") from exc

    if count > max_pages:
        raise PermanentError(f"PDF has {count} pages; at most {max_pages} are accepted")
    if count == 0:
        raise PermanentError("could not read PDF: it has no pages")

    pages: list[Page] = []
    failures: list[str] = []
    for index in range(count):
        try:
            text = reader.pages[index].extract_text() or ""
        except Exception as exc:  # one damaged page should not lose the others
            logger.warning("could not extract text of PDF page %d: %s", index + 1, exc)
            failures.append(f"page {index + 1}: {type(exc).__name__}: {exc}")
            text = ""
        pages.append(Page(number=index + 1, text=_normalise(text)))
    if len(failures) == count:
        raise PermanentError(f"could not read PDF: {failures[0]}")
    return pages
