"""PDF: one :class:`Page` per physical page, numbers kept.

A PDF that cannot be opened fails with what is wrong with it, as far as the bytes
tell: not a PDF at all, cut short (no ``%%EOF`` at its end: an interrupted upload
or download, whose first pages are not indexed on their own, so that no answer
silently misses the rest), damaged, or encrypted with a password.
"""

from __future__ import annotations

import io
import logging

from libs.common.errors import PermanentError
from services.embedder.formats.common import Page, check_chars, normalise

logger = logging.getLogger(__name__)

#: The setting a PDF's page count must stay within.
MAX_PAGES_SETTING = "DOCUMIND_MAX_PAGES"
# Where readers look for the header and the end-of-file marker (the PDF standard
# allows junk before one and after the other; readers accept about this much).
_HEADER_WINDOW = 1024
_TRAILER_WINDOW = 1024


def parse_pdf(data: bytes, max_pages: int, max_chars: int | None = None) -> list[Page]:
    """Every page's text; stops once the text passes ``max_chars`` characters."""
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
        count = len(reader.pages)
    except (PermanentError, MemoryError):
        raise
    except PyPdfError as exc:
        raise unreadable(data, str(exc)) from exc
    except Exception as exc:  # malformed input can break the parser in many ways
        logger.debug("pypdf failed to open a document", exc_info=True)
        raise unreadable(data, f"{type(exc).__name__}: {exc}") from exc

    if count > max_pages:
        raise PermanentError(f"the PDF has {count:,} pages; at most {max_pages:,} ({MAX_PAGES_SETTING})")
    if count == 0:
        raise PermanentError("could not read PDF: it has no pages")

    pages: list[Page] = []
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
        pages.append(Page(number=index + 1, text=normalise(text)))
        chars += len(pages[-1].text)
        check_chars(chars, max_chars)
    if len(failures) == count:
        raise PermanentError(f"could not read PDF: {failures[0]}")
    return pages


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
