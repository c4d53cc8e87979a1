"""A document's original file and its extracted text, for the viewer (and re-indexing).

``GET /v1/documents/{id}/file`` answers the uploaded bytes with the content type
they were stored with; ``GET /v1/documents/{id}/text`` the text the embedder
extracted, ``[{"page": 1, "text": ...}, ...]``. Both follow the document's rules: a
reader's key may fetch them, another tenant's (or another collection's, for a
scoped key) gets 404 as for a document that does not exist. The file route serves a
single byte range (``Range: bytes=...``, 206 or 416; :mod:`services.gateway.ranges`)
for PDF viewers and resumed downloads.

An original is hostile input served from the API's origin, so every answer says
``X-Content-Type-Options: nosniff`` (a browser never guesses a type that runs), and
everything but a PDF comes with ``Content-Security-Policy: sandbox`` and no sources:
opened directly, an HTML original renders in an opaque origin with scripts,
forms, plugins and every network load off, so it can neither run in the app's
origin nor call home. An HTML original is moreover served as a download
(``attachment``). A PDF keeps the browser's viewer, which a sandbox would block,
and runs a PDF's scripts (if at all) in the viewer's own sandbox, not the page's.
The web app fetches these with its key (``fetch``), so it must show an HTML
original only inside an ``<iframe sandbox>`` (never as a same-origin ``blob:``
URL); it shows the extracted text instead.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from libs.common.apikeys import Permission
from libs.common.blobstore import BlobStore, original_key, text_key
from libs.common.errors import DocumentNotFound
from services.gateway.auth import access_of
from services.gateway.deps import submitter
from services.gateway.openapi import rest_errors
from services.gateway.ranges import Unsatisfiable, byte_range, unsatisfiable_content_range
from services.gateway.schemas import ErrorResponse

router = APIRouter()

# A document's type (its extension) and the content type its original is served with.
MEDIA_TYPES: Final[dict[str, str]] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "html": "text/html",
    "htm": "text/html",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "txt": "text/plain",
}
OCTET_STREAM: Final = "application/octet-stream"
# Served with every original and text.
COMMON_HEADERS: Final[dict[str, str]] = {
    "X-Content-Type-Options": "nosniff",
    # Authenticated content: no shared cache keeps it, and no copy outlives a delete.
    "Cache-Control": "private, no-store",
    # Other sites' pages cannot embed it (an <img> or <script> of this URL).
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Everything but a PDF: an opaque origin, no scripts, no network (inline styles and
# data: images still show).
SANDBOX: Final = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
# Above this many bytes the charset is found off the event loop.
_INLINE_CHARSET_BYTES: Final = 1024 * 1024
# Characters a quoted filename= fallback keeps (the rest become "_").
_NOT_TOKEN_SAFE: Final = re.compile(r"[^A-Za-z0-9!#$&+.^_`|~ ()\[\]{}@,;=-]")


class PageText(BaseModel):
    page: int
    text: str


def _binary(types: list[str]) -> dict[str, Any]:
    return {t: {"schema": {"type": "string", "format": "binary"}} for t in types}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": "string"}}


_FILE_TYPES: Final = sorted(set(MEDIA_TYPES.values()) | {OCTET_STREAM})
_FILE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The uploaded file as it was, with its content type (text types with "
        "their charset when it is known) and `Content-Disposition` naming it",
        "content": _binary(_FILE_TYPES),
        "headers": {"Accept-Ranges": _header("`bytes`: a single byte range may be asked for")},
    },
    206: {
        "description": "The bytes a single `Range: bytes=...` asked for, with the same headers",
        "content": _binary(_FILE_TYPES),
        "headers": {"Content-Range": _header("`bytes first-last/size`, e.g. `bytes 0-1023/52431`")},
    },
    416: {
        "model": ErrorResponse,
        "description": "The range selects none of the file's bytes (it starts at or past the end, "
        "or asks for the last 0 bytes)",
        "headers": {"Content-Range": _header("`bytes */size`: the file's size")},
    },
}


@router.get(
    "/v1/documents/{document_id}/file",
    response_class=Response,
    responses={**_FILE_RESPONSES, **rest_errors(404)},
)
async def get_original(document_id: str, request: Request) -> Response:
    """The document's original file, as uploaded.

    A single byte range may be asked for (`Range: bytes=first-last`, `bytes=first-`,
    or the last n bytes, `bytes=-n`): 206 with those bytes and
    `Content-Range: bytes first-last/size`, a last position past the end meaning the
    last byte; 416 with `Content-Range: bytes */size` when the range selects no byte
    (it starts at or past the end, or is `bytes=-0`). A `Range` of another unit, one
    that does not parse (`bytes=5-2` included) or of several ranges
    (`bytes=0-1,5-6`: no multipart/byteranges answer) is ignored, as RFC 9110 allows:
    the whole file, 200. `If-Range` is not looked at: no ETag or Last-Modified is
    sent, and a document's bytes never change (a new upload is a new document id), so
    a range is served as asked.
    """
    access = access_of(request, Permission.READ)
    doc = await submitter(request).docs.get(document_id, access)
    if doc is None:
        raise DocumentNotFound(document_id)
    blob = await blob_store(request).get(original_key(access.tenant, document_id))
    if blob is None:
        raise DocumentNotFound(
            document_id,
            f"document '{document_id}' has no original kept (it was uploaded before originals were)",
        )
    size = len(blob.data)
    wanted = byte_range(request.headers.get("range"), size)
    if isinstance(wanted, Unsatisfiable):
        return JSONResponse(
            {"detail": f"the range selects none of the file's {size} bytes"},
            status_code=416,
            headers={**COMMON_HEADERS, "Content-Range": unsatisfiable_content_range(size)},
        )
    headers = {
        **COMMON_HEADERS,
        # As stored: Starlette would add "charset=utf-8" to a text type without one (a
        # page whose charset is unknown keeps its own <meta charset>).
        "Content-Type": blob.content_type,
        "Content-Disposition": disposition(blob.content_type, doc["filename"]),
        "Accept-Ranges": "bytes",
    }
    if not blob.content_type.startswith(MEDIA_TYPES["pdf"]):
        headers["Content-Security-Policy"] = SANDBOX
    if wanted is None:
        return Response(blob.data, headers=headers)
    headers["Content-Range"] = wanted.content_range
    return Response(blob.data[wanted.start : wanted.stop], status_code=206, headers=headers)


@router.get("/v1/documents/{document_id}/text", response_model=list[PageText], responses=rest_errors(404))
async def get_text(document_id: str, request: Request) -> Response:
    """The document's text as the embedder extracted it, page by page (one page for
    anything but a PDF): what its chunks' positions and citations' pages refer to."""
    access = access_of(request, Permission.READ)
    doc = await submitter(request).docs.get(document_id, access)
    if doc is None:
        raise DocumentNotFound(document_id)
    blob = await blob_store(request).get(text_key(access.tenant, document_id))
    if blob is None:
        why = f"parsing failed: {doc['error']}" if doc["status"] == "failed" else f"it is {doc['status']}"
        raise DocumentNotFound(document_id, f"document '{document_id}' has no extracted text ({why})")
    # Stored as JSON already: passed on as it is, never parsed here.
    return Response(
        blob.data,
        media_type="application/json",
        headers={**COMMON_HEADERS, "Content-Security-Policy": SANDBOX},
    )


def blob_store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.blobs
    return store


def disposition(content_type: str, filename: str) -> str:
    """``inline`` (``attachment`` for HTML), the name as a plain quoted fallback and
    exactly as UTF-8 (RFC 6266, RFC 8187)."""
    kind = "attachment" if content_type.startswith("text/html") else "inline"
    fallback = _NOT_TOKEN_SAFE.sub("_", filename) or "document"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def media_type(extension: str, data: bytes) -> str:
    """The content type an upload of this extension is kept with: text types say their
    charset when the bytes are UTF-8 (or UTF-16 with a BOM), plain text and Markdown
    also when charset-normalizer can tell; an HTML page without it keeps its own
    ``<meta charset>``."""
    base = MEDIA_TYPES.get(extension.lstrip(".").lower(), OCTET_STREAM)
    if not base.startswith("text/"):
        return base
    guess = base != MEDIA_TYPES["html"]
    if len(data) > _INLINE_CHARSET_BYTES:
        charset = await asyncio.to_thread(_charset, data, guess)
    else:
        charset = _charset(data, guess)
    return f"{base}; charset={charset}" if charset else base


def _charset(data: bytes, guess: bool) -> str | None:
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    if not guess:
        return None
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    # Python's codec names as the encodings' labels ("cp1252", "iso8859-1", "euc-jp").
    return best.encoding.replace("_", "-") if best is not None else None
