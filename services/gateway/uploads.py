"""Uploads: one or many ``file`` fields, a job and a document per file.

Each file's original is put in the blob store before the SUBMIT that registers its
document, and removed again when SUBMIT refuses it (see ``_submit_one``). The embedder
parses it from there: an upload's bytes never sit in Valkey, whose memory a backlog of
large uploads would otherwise fill for every tenant.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
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
    # Every file is checked before any is queued: a bad one rejects the request whole.
    checked: list[tuple[str, str, bytes]] = []
    for upload in file:
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
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"{name}: the file is larger than {settings.max_upload_bytes:,} bytes "
                "(DOCUMIND_MAX_UPLOAD_BYTES)"
            )
        checked.append((name, ext, data))
    accepted: list[UploadedDocument] = []
    for name, ext, data in checked:
        try:
            accepted.append(
                await _submit_one(
                    sub,
                    access,
                    collection,
                    name,
                    ext,
                    blobs=blob_store(request),
                    data=data,
                    timeout_s=settings.ingest_timeout_s,
                    replace=replace,
                )
            )
        except (QueueFull, TooManyJobs) as exc:
            if not accepted:
                raise
            # Those already accepted stay accepted: say which, so a client retries only the rest.
            done = ", ".join(f"{d.filename} ({d.document_id})" for d in accepted)
            exc.message = f"{exc.message}; already accepted: {done}"
            raise
    first = accepted[0]
    return UploadAccepted(
        job_id=first.job_id, document_id=first.document_id, duplicate=first.duplicate, documents=accepted
    )


async def _submit_one(
    sub: Submitter,
    access: Access,
    collection: str,
    filename: str,
    ext: str,
    *,
    blobs: BlobStore,
    data: bytes,
    timeout_s: float,
    replace: bool,
) -> UploadedDocument:
    document_id = sub.new_document_id(access, collection)
    sha256 = hashlib.sha256(data).hexdigest()
    document = {
        "document_id": document_id,
        "collection": collection,
        "filename": filename,
        "type": ext.lstrip("."),
        "size": str(len(data)),
        "sha256": sha256,
        "created_at": repr(time.time()),
    }
    payload: dict[str, object] = {"document_id": document_id, "filename": filename, "size": len(data)}
    replaces: list[str] = []
    if replace:
        payload["replace"] = True
        replaces = await sub.docs.under_filename(access, collection, filename)
    # The original first: its id is new, so nothing deletes it before SUBMIT registers
    # the document. A store that is down refuses the upload (503) with nothing queued.
    await put_original(blobs, access.tenant, document_id, data, await media_type(ext, data))
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
            sha256=sha256,
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
    """Remove the original of an upload SUBMIT refused; a store that fails now leaves an
    orphan for the sweep (the refusal is what the client must hear)."""
    try:
        await blobs.delete(original_key(tenant, document_id))
    except BlobStoreError as exc:
        logger.warning("could not remove the original of refused upload %s: %s", document_id, exc.message)
