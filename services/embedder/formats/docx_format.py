"""DOCX: paragraphs and tables in document order as one page; headings give the heading path.

A DOCX is a ZIP archive; :func:`check_zip` looks at what it claims to unpack to
before anything is unpacked, so a zip bomb is refused instead of filling memory.
Python's :mod:`zipfile` never inflates a member past the size it declares (it
fails the CRC check instead), so the declared sizes are a safe bound. The XML is
read by python-docx's parser, which resolves no entities, behind libxml2's cap on
entity amplification: a "billion laughs" part fails with a reason that says so.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from typing import Any

from libs.common.errors import PermanentError
from services.embedder.formats.common import Page, TextBuilder, check_chars, normalise

logger = logging.getLogger(__name__)

#: Default of :func:`parse_docx`'s limit (the embedder's ``max_unpacked_bytes``).
DEFAULT_MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_UNPACKED_SETTING = "DOCUMIND_MAX_UNPACKED_BYTES"
# Members this big that compress better than this are treated as bombs whatever the total.
LARGE_MEMBER_BYTES = 10 * 1024 * 1024
MAX_COMPRESSION_RATIO = 100
# Real documents have tens of parts, a few thousand with many images.
MAX_MEMBERS = 10_000
# How libxml2 reports XML entities that expand too far (lxml's XMLSyntaxError).
_ENTITY_WORDS = ("entity amplification", "entity reference loop")

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_HEADING_STYLE = re.compile(r"^heading ([1-9])$", re.IGNORECASE)
_TITLE_LEVEL = 0
_STYLE_DEPTH = 5
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def check_zip(data: bytes, max_unpacked_bytes: int) -> None:
    """Raise :class:`PermanentError` unless ``data`` is a ZIP archive safe to unpack."""
    if data.startswith(_OLE_MAGIC):
        raise PermanentError(
            "could not read DOCX: it is password-protected or an old Word (.doc) file; "
            "save it as an unprotected .docx"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise PermanentError(f"could not read DOCX: not a valid ZIP archive ({exc})") from exc
    if len(members) > MAX_MEMBERS:
        raise PermanentError(
            f"refusing a DOCX with {len(members):,} parts; at most {MAX_MEMBERS:,} (zip bomb?)"
        )
    total = 0
    for member in members:
        total += member.file_size
        if total > max_unpacked_bytes:
            raise PermanentError(
                f"refusing a DOCX that unpacks to more than {max_unpacked_bytes:,} bytes "
                f"({MAX_UNPACKED_SETTING}; zip bomb?)"
            )
        if member.file_size > LARGE_MEMBER_BYTES and (
            member.compress_size == 0 or member.file_size / member.compress_size > MAX_COMPRESSION_RATIO
        ):
            raise PermanentError(
                f"refusing a DOCX whose part '{member.filename}' unpacks to {member.file_size:,} bytes "
                f"from {member.compress_size:,} (more than {MAX_COMPRESSION_RATIO}:1; zip bomb?)"
            )
        if member.flag_bits & 0x1:
            raise PermanentError("could not read DOCX: it is encrypted; upload an unprotected copy")


def parse_docx(
    data: bytes, max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES, max_chars: int | None = None
) -> list[Page]:
    """The body's text as one page; stops once it passes ``max_chars`` characters."""
    check_zip(data, max_unpacked_bytes)
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
        builder = TextBuilder()
        # Body blocks in order; content controls (w:sdt) are opened, not skipped.
        stack: list[Any] = list(reversed(list(document.element.body.iterchildren())))
        while stack:
            check_chars(builder.length, max_chars)
            element = stack.pop()
            if element.tag == f"{_W}p":
                _add_paragraph(builder, Paragraph(element, document))
            elif element.tag == f"{_W}tbl":
                _add_table(builder, Table(element, document))
            elif element.tag == f"{_W}sdt":
                content = element.find(f"{_W}sdtContent")
                if content is not None:
                    stack.extend(reversed(list(content.iterchildren())))
    except (PermanentError, MemoryError):
        raise
    except Exception as exc:  # malformed parts break python-docx in many ways
        logger.debug("python-docx failed to read a document", exc_info=True)
        if any(word in str(exc).lower() for word in _ENTITY_WORDS):
            raise PermanentError(
                "could not read DOCX: its XML declares entities that expand far beyond the file "
                "(an XML entity-expansion or 'billion laughs' attack?); Word never writes them"
            ) from exc
        raise PermanentError(f"could not read DOCX: {type(exc).__name__}: {exc}") from exc
    return [builder.page()]


def _add_paragraph(builder: TextBuilder, paragraph: Any) -> None:
    text = normalise(paragraph.text).strip()
    if not text:
        return
    level = _heading_level(paragraph)
    if level is not None:
        builder.add_heading(level, text)
        return
    builder.brk(builder.PARAGRAPH)
    builder.add(text)
    builder.brk(builder.PARAGRAPH)


def _add_table(builder: TextBuilder, table: Any) -> None:
    """One line per row, cells separated by " | "; nested tables flattened into their cell."""
    from docx.text.paragraph import Paragraph

    builder.brk(builder.PARAGRAPH)
    for row in table.rows:
        builder.brk(builder.LINE)
        seen: set[Any] = set()
        for cell in row.cells:
            if cell._tc in seen:  # a merged cell is listed once per grid column
                continue
            seen.add(cell._tc)
            parts = (normalise(Paragraph(p, cell).text).strip() for p in cell._tc.iter(f"{_W}p"))
            text = " ".join(part for part in parts if part)
            if text:
                builder.brk(builder.CELL)
                builder.add(text)
    builder.brk(builder.PARAGRAPH)


def _heading_level(paragraph: Any) -> int | None:
    """0 for a title, 1..9 for headings (by style, inherited styles, or outline level), else None."""
    style = paragraph.style
    for _ in range(_STYLE_DEPTH):
        if style is None:
            break
        name = (style.name or "").strip()
        if name.lower() == "title":
            return _TITLE_LEVEL
        match = _HEADING_STYLE.match(name)
        if match:
            return int(match.group(1))
        style = style.base_style
    outline = paragraph._p.find(f"{_W}pPr/{_W}outlineLvl")
    if outline is not None:
        value = outline.get(f"{_W}val", "")
        if value.isdigit() and int(value) < 9:  # 9 is "body text"
            return int(value) + 1
    return None
