"""A document's original file and its extracted text, for the viewer (and re-indexing).

``GET /v1/documents/{id}/file`` answers the uploaded bytes with the content type
they were stored with; ``GET /v1/documents/{id}/text`` the text the embedder
extracted, ``[{"page": 1, "text": ...}, ...]``. Both follow the document's rules: a
reader's key may fetch them, another tenant's (or another collection's, for a
scoped key) gets 404 as for a document that does not exist.

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
from pydantic import BaseModel

from libs.common.apikeys import Permission
from libs.common.blobstore import BlobStore, original_key, text_key
from libs.common.errors import DocumentNotFound
from services.gateway.auth import access_of
from services.gateway.deps import submitter
from services.gateway.openapi import rest_errors

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


_FILE_200: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The uploaded file as it was, with its content type (text types with "
        "their charset when it is known) and `Content-Disposition` naming it",
        "content": _binary(sorted(set(MEDIA_TYPES.values()) | {OCTET_STREAM})),
    }
}


@router.get(
    "/v1/documents/{document_id}/file",
    response_class=Response,
    responses={**_FILE_200, **rest_errors(404)},
)
async def get_original(document_id: str, request: Request) -> Response:
    """The document's original file, as uploaded."""
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
    headers = {**COMMON_HEADERS, "Content-Disposition": disposition(blob.content_type, doc["filename"])}
    if not blob.content_type.startswith(MEDIA_TYPES["pdf"]):
        headers["Content-Security-Policy"] = SANDBOX
    return Response(blob.data, media_type=blob.content_type, headers=headers)


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
