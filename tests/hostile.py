"""Hostile uploads, generated in the test (no network, no fixtures on disk).

Small files that unpack or compute far beyond their size: what issue 13 measured
against the embedder, scaled so each test stays quick under small limits.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterable, Sequence

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
# A page's content operators that move the text position and draw nothing: the PDF
# parser interprets every one of them (PDFium about 0.2 s per 7 MB, pypdf 0.5 s) and
# finds no text.
NO_TEXT_OPS = b"1 0 Td "


def pdf(streams: Sequence[bytes], pages: Sequence[int] | None = None) -> bytes:
    """A PDF whose content streams are ``streams`` (already Flate-compressed); page ``n``
    draws stream ``pages[n]`` (default: one page per stream). Cross-reference table right."""
    pages = list(range(len(streams))) if pages is None else list(pages)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the pages' numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    first_stream = len(objects) + 1
    for data in streams:
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n%b\nendstream" % (len(data), data))
    kids = []
    for n in pages:
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (first_stream + n)
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%b] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%b\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def text_pdf(*page_texts: str) -> bytes:
    """A plain PDF: one page per text, drawn in Helvetica."""
    streams = []
    for text in page_texts:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")
        streams.append(zlib.compress(b"BT /F1 12 Tf 72 700 Td (%b) Tj ET" % escaped))
    return pdf(streams)


def truncated_pdf(*page_texts: str, keep: float = 0.5) -> bytes:
    """A plain PDF cut short: its first ``keep`` of bytes, as an interrupted download."""
    data = text_pdf(*page_texts)
    return data[: int(len(data) * keep)]


def encrypted_pdf(*page_texts: str, user_password: str, owner_password: str = "owner") -> bytes:
    """A plain PDF encrypted with AES-256; an empty ``user_password`` opens it for reading
    (only the owner's rights are protected), as many "protected" PDFs are."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(*page_texts))))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def blank_pdf(pages: int) -> bytes:
    """``pages`` pages that draw nothing (one shared empty content stream)."""
    return pdf([zlib.compress(b"")], pages=[0] * pages)


def zlib_bomb_pdf(pages: int = 20, mb_per_page: int = 70) -> bytes:
    """About 70 KB a page: each page's stream inflates to ``mb_per_page`` MB of spaces."""
    bomb = zlib.compress(b" " * (mb_per_page * 1024 * 1024), 9)
    return pdf([bomb] * pages)


def shared_stream_pdf(pages: int = 40, ops: int = 1_000_000) -> bytes:
    """A few KB: every page draws the same stream of ``ops`` text moves (7 MB at a million)."""
    stream = zlib.compress(b"BT /F1 12 Tf " + NO_TEXT_OPS * ops + b"ET", 9)
    return pdf([stream], pages=[0] * pages)


def docx(body_xml: bytes | Iterable[bytes], *, level: int = 6, prolog: bytes = b"") -> bytes:
    """A minimal DOCX whose ``word/document.xml`` body is ``body_xml`` (or its pieces),
    with ``prolog`` (a DOCTYPE) between the XML declaration and the root element."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        archive.writestr(
            "_rels/.rels",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Target="word/document.xml" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/officeDocument"/></Relationships>',
        )
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(
                b'<?xml version="1.0" encoding="UTF-8"?>%b<w:document xmlns:w="%b"><w:body>'
                % (prolog, _W.encode())
            )
            for piece in [body_xml] if isinstance(body_xml, bytes) else body_xml:
                part.write(piece)
            part.write(b"</w:body></w:document>")
    return out.getvalue()


def paragraph(text: str) -> bytes:
    return b"<w:p><w:r><w:t>%b</w:t></w:r></w:p>" % text.encode()


def docx_zip_bomb(mb: int = 300) -> bytes:
    """A classic bomb: ``mb`` MB of one repeated paragraph (far past 100:1)."""
    block = paragraph("The keeper lit the lamp at dusk.") * 10_000
    return docx((block for _ in range(max(1, mb * 1024 * 1024 // len(block)))), level=9)


def docx_dense(paragraphs: int = 2_000_000) -> bytes:
    """What issue 13 measured: XML of about 70 bytes a paragraph, each paragraph
    different, so it compresses only about 25:1 and passes the zip-bomb checks
    (5.6 MB holding 147 MB at two million paragraphs)."""
    pieces = (
        b"".join(paragraph(f"Keeper log {n}: lamp lit, gulls loud.") for n in range(start, start + 10_000))
        for start in range(0, paragraphs, 10_000)
    )
    return docx(pieces, level=1)


def entity_declarations(root: str, levels: int = 10) -> str:
    """A DOCTYPE declaring "billion laughs" entities: ``&lol{levels-1};`` would expand to
    10**(levels-1) copies of "lol" (3 GB at ten levels) from under a kilobyte."""
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, levels)]
    return f"<!DOCTYPE {root} [\n" + "\n".join(entities) + "\n]>"


def laughs_docx(before: str, after: str) -> bytes:
    """A DOCX whose document.xml declares the entities and uses the largest between two paragraphs."""
    prolog = entity_declarations("w:document").encode()
    body = paragraph(before) + b"<w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>" + paragraph(after)
    return docx(body, prolog=prolog)


def laughs_html(before: str, after: str, *, xhtml: bool = False) -> bytes:
    """An HTML page (or, with ``xhtml``, an XHTML one) that declares the entities and uses
    the largest between two paragraphs."""
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if xhtml else ""
    namespace = ' xmlns="http://www.w3.org/1999/xhtml"' if xhtml else ""
    return (
        f"{head}{entity_declarations('html')}<html{namespace}><body><p>{before}</p>"
        f"<p>&lol9;</p><p>{after}</p></body></html>"
    ).encode()


def deep_html(depth: int, text: str) -> bytes:
    """``text`` inside ``depth`` nested divs, between a paragraph before and after."""
    return (
        "<html><body><p>Before the nesting.</p>"
        + "<div>" * depth
        + f"<p>{text}</p>"
        + "</div>" * depth
        + "<p>After the nesting.</p></body></html>"
    ).encode()
