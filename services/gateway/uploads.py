"""Uploads: one or many ``file`` fields, a job and a document per file.

A request is handled in three steps, so that its memory is about one file's whatever
the number of files (Starlette has spooled them to temporary files, on disk past 1 MB):

1. every file is checked without reading it (its name, its type, its size): one that
   is refused refuses the request whole, before a byte of any file is read;
2. the files are read one at a time, and each one's original is put in the blob store
   before the next is read. A store that fails refuses the request (503): the
   originals it already put are removed again, nothing is queued;
3. each file's SUBMIT registers its document and queues its job (see ``_submit_one``);
   an original whose SUBMIT refuses it is removed again, and so are those of the files
   after it, never submitted.

The embedder parses an original from the store: an upload's bytes never sit in Valkey,
whose memory a backlog of large uploads would otherwise fill for every tenant. Each
original is kept under its own new document id, so removing one never touches another
document's (a duplicate's content stays under the existing document's id).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, File, Path, Query, Request, UploadFile
from redis.exceptions import OutOfMemoryError

from libs.common.access import Access
from libs.common.apikeys import Permission
from libs.common.blobstore import BlobStore, original_key, put_original
from libs.common.constants import COLLECTION_NAME_PATTERN, MAX_FILENAME_CHARS, SUPPORTED_EXTENSIONS
from libs.common.errors import (
    BlobStoreError,
    DuplicateDocument,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    QueueFull,
    RequestRefused,
    TooManyJobs,
    UnsupportedMediaType,
)
from services.gateway.auth import access_of
from services.gateway.deps import settings as settings_of
from services.gateway.deps import submitter
from services.gateway.originals import blob_store, media_type
from services.gateway.schemas import UploadAccepted, UploadedDocument
from services.gateway.submit import Submitter

logger = logging.getLogger(__name__)
router = APIRouter()

# C0 and C1 control characters (NUL, newlines, escape) and the bidirectional
# overrides and isolates that make "report\u202etxt.exe" display as "reportexe.txt".
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# How much of a refused long filename its error shows.
_SHOWN_CHARS = 40


@dataclass(frozen=True)
class _Stored:
    """A file whose original is in the blob store, not yet submitted (its bytes are not kept)."""

    filename: str
    ext: str
    document_id: str
    size: int
    sha256: str


def safe_filename(raw: str | None) -> str:
    """The filename is metadata only: its last component, never a path, without
    control characters or spaces at either end ("C:\\x\\a.txt" and "../a.txt" are "a.txt")."""
    name = _UNSAFE_CHARS.sub("", raw or "").replace("\\", "/")
    return PurePath(name).name.strip()


@router.post("/v1/collections/{collection}/documents", status_code=202, response_model=UploadAccepted)
async def upload_documents(
    # The rule is the document's (checked below, with a readable reason).
    collection: Annotated[str, Path(json_schema_extra={"pattern": COLLECTION_NAME_PATTERN})],
    file: Annotated[
        list[UploadFile], File(description="One or more documents: .txt, .md, .pdf, .docx, .html")
    ],
    request: Request,
    replace: Annotated[
        bool,
        Query(
            description="Replace the collection's documents of the same filename: the new one "
            "becomes searchable and the old ones stop being searchable in one step, once it is ready."
        ),
    ] = False,
) -> UploadAccepted:
    access = access_of(request, Permission.WRITE)
    sub, settings = submitter(request), settings_of(request)
    if re.fullmatch(COLLECTION_NAME_PATTERN, collection) is None:
        raise InvalidRequest("collection names are 1-64 letters, digits, '_', '.', '-'")
    if not access.sees(collection):
        # An upload may create the collection: a key scoped elsewhere may not.
        raise Forbidden("collections", f"this API key may not reach collection '{collection}'")
    if len(file) > settings.max_files_per_upload:
        raise PayloadTooLarge(
            f"{len(file):,} files in one upload; at most {settings.max_files_per_upload:,} "
            "(DOCUMIND_MAX_FILES_PER_UPLOAD)"
        )
    # Every file is checked before any is read: a bad one rejects the request whole.
    names = [_checked_name(upload, settings.max_upload_bytes) for upload in file]
    blobs = blob_store(request)
    stored: list[_Stored] = []
    try:
        for upload, (name, ext) in zip(file, names, strict=True):
            # One file's bytes at a time: they are gone once its original is stored.
            stored.append(
                await _store_one(
                    sub,
                    access,
                    collection,
                    upload,
                    name=name,
                    ext=ext,
                    blobs=blobs,
                    max_bytes=settings.max_upload_bytes,
                )
            )
    except Exception:
        # Nothing was submitted: no document refers to these originals.
        for kept in stored:
            await _discard(blobs, access.tenant, kept.document_id)
        raise
    accepted: list[UploadedDocument] = []
    for index, one in enumerate(stored):
        try:
            accepted.append(
                await _submit_one(
                    sub,
                    access,
                    collection,
                    one,
                    blobs=blobs,
                    timeout_s=settings.ingest_timeout_s,
                    replace=replace,
                )
            )
        except Exception as exc:
            # The files after this one were never submitted.
            for rest in stored[index + 1 :]:
                await _discard(blobs, access.tenant, rest.document_id)
            if accepted and isinstance(exc, (QueueFull, TooManyJobs)):
                # Those already accepted stay accepted: say which, so a client retries only the rest.
                done = ", ".join(f"{d.filename} ({d.document_id})" for d in accepted)
                exc.message = f"{exc.message}; already accepted: {done}"
            raise
    first = accepted[0]
    return UploadAccepted(
        job_id=first.job_id, document_id=first.document_id, duplicate=first.duplicate, documents=accepted
    )


def _checked_name(upload: UploadFile, max_bytes: int) -> tuple[str, str]:
    """The file's safe name and its extension, once its name, type and size (known
    without reading it) are allowed."""
    name = safe_filename(upload.filename)
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidRequest(
            f"{name[:_SHOWN_CHARS]}...: the filename has {len(name):,} characters; "
            f"at most {MAX_FILENAME_CHARS}"
        )
    ext = PurePath(name).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise UnsupportedMediaType(
            f"{name or 'file'}: unsupported file type '{ext or name}'; supported: {supported}"
        )
    if _size_of(upload) > max_bytes:
        raise _too_large(name, max_bytes)
    return name, ext


def _size_of(upload: UploadFile) -> int:
    """The file's size as Starlette counted it while spooling it, else its spool's length."""
    if upload.size is not None:
        return upload.size
    spool = upload.file
    position = spool.tell()
    try:
        return spool.seek(0, os.SEEK_END)
    finally:
        spool.seek(position)


def _too_large(name: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{name}: the file is larger than {max_bytes:,} bytes (DOCUMIND_MAX_UPLOAD_BYTES)")


async def _store_one(
    sub: Submitter,
    access: Access,
    collection: str,
    upload: UploadFile,
    *,
    name: str,
    ext: str,
    blobs: BlobStore,
    max_bytes: int,
) -> _Stored:
    """Read the file and put its original under a new document id; its bytes are
    dropped on return. A store that is down refuses the upload (503)."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:  # its size was checked: only if it grew since
        raise _too_large(name, max_bytes)
    # The id is new, so nothing deletes the original before SUBMIT registers the document.
    document_id = sub.new_document_id(access, collection)
    sha256 = hashlib.sha256(data).hexdigest()
    await put_original(blobs, access.tenant, document_id, data, await media_type(ext, data))
    return _Stored(filename=name, ext=ext, document_id=document_id, size=len(data), sha256=sha256)


async def _submit_one(
    sub: Submitter,
    access: Access,
    collection: str,
    one: _Stored,
    *,
    blobs: BlobStore,
    timeout_s: float,
    replace: bool,
) -> UploadedDocument:
    document_id, filename = one.document_id, one.filename
    document = {
        "document_id": document_id,
        "collection": collection,
        "filename": filename,
        "type": one.ext.lstrip("."),
        "size": str(one.size),
        "sha256": one.sha256,
        "created_at": repr(time.time()),
    }
    payload: dict[str, object] = {"document_id": document_id, "filename": filename, "size": one.size}
    replaces: list[str] = []
    try:
        if replace:
            payload["replace"] = True
            replaces = await sub.docs.under_filename(access, collection, filename)
    except Exception:
        # Not submitted: its original is nobody's.
        await _discard(blobs, access.tenant, document_id)
        raise
    try:
        env = await sub.submit(
            "ingest",
            collection,
            payload,
            access=access,
            extra={"document_id": document_id},
            timeout_s=timeout_s,
            collection_must_exist=False,
            document=document,
            sha256=one.sha256,
        )
    except (RequestRefused, OutOfMemoryError) as refused:
        # SUBMIT said no (a full queue or store, a duplicate, ...): the document does not
        # exist, nor will its original. Any other error (Valkey went away mid-call) may hide
        # a SUBMIT that took: the original stays, and is swept if it is an orphan
        # (libs/common/blobstore/_documents.py).
        await _discard(blobs, access.tenant, document_id)
        if not isinstance(refused, DuplicateDocument):
            raise
        dup = refused
        # Same content, same collection: the existing document, nothing added.
        existing = await sub.docs.get(dup.document_id, access)
        job_id = existing["job_id"] if existing else ""
        return UploadedDocument(filename=filename, job_id=job_id, document_id=dup.document_id, duplicate=True)
    return UploadedDocument(filename=filename, job_id=env.job_id, document_id=document_id, replaces=replaces)


async def _discard(blobs: BlobStore, tenant: str, document_id: str) -> None:
    """Remove the original of an upload that was refused or never submitted; a store that
    fails now leaves an orphan for the sweep (the refusal is what the client must hear)."""
    try:
        await blobs.delete(original_key(tenant, document_id))
    except BlobStoreError as exc:
        logger.warning("could not remove the original of refused upload %s: %s", document_id, exc.message)
