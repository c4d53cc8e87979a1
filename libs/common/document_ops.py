"""What changes a document, as commit ops: one implementation each.

- :func:`delete_document`: ``DELETE /v1/documents/{id}``, a dropped collection's
  documents, and the older documents a ``replace`` upload retires all go through it;
- :func:`ingest_failed`: the rule of the ingest stages (embedder and retriever)
  for a job that ends in failure: the document keeps the failure and its reason;
- :func:`ingest_ready`: the last index part's completion makes the document searchable.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.common import keys
from libs.common.commit import (
    AddMember,
    Delete,
    DeleteFieldIf,
    Expire,
    IfExists,
    Increment,
    Op,
    RemoveMember,
    SetFields,
    SetIfExists,
)
from libs.common.constants import COLLECTION_VERSION_FIELD
from libs.common.envelope import Envelope, enqueue
from libs.common.keys import CollectionKeys
from libs.common.status import DocumentStatus


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """A document as its deletion needs it: its id, content hash and filename."""

    document_id: str
    sha256: str
    filename: str


def delete_document(
    collection: CollectionKeys,
    doc: DocumentRef,
    delete_job: Envelope,
    job_fields: dict[str, str],
    job_ttl_s: int,
    *,
    bump_version: bool = True,
) -> list[Op]:
    """Hide a document from searches at once, unregister it, drop its hash and upload,
    and queue ``delete_job`` to remove its vectors.

    The id stays a tombstone (searches filter it until, and after, the vectors go).
    With ``bump_version`` the collection's version moves on (unless the collection
    itself is gone), so its cached answers are no longer served; a replace moves it
    once for the whole swap. Every op is idempotent but the delete job's.
    """
    doc_keys = keys.document(doc.document_id)
    job = delete_job.job_keys
    return [
        AddMember(collection.deleted, doc.document_id),
        RemoveMember(collection.documents, doc.document_id),
        RemoveMember(collection.pending, doc.document_id),
        RemoveMember(collection.filename(doc.filename), doc.document_id),
        DeleteFieldIf(collection.hashes, doc.sha256, doc.document_id),
        Delete(doc_keys.hash),
        Delete(doc_keys.blob),
        *([Increment(collection.meta, COLLECTION_VERSION_FIELD, if_exists=True)] if bump_version else []),
        SetFields(job.hash, job_fields),
        Expire(job.hash, job_ttl_s),
        *enqueue(delete_job),
    ]


def ingest_failed(env: Envelope, error: str, now: float) -> list[Op]:
    """An ingest job ended without success: its document (which outlives the job)
    keeps the failure and its reason, and its upload goes (nothing will parse it again)."""
    document_id = env.payload.get("document_id")
    if env.kind != "ingest" or not document_id:
        return []
    doc = keys.document(str(document_id))
    failed = {"status": DocumentStatus.FAILED.value, "error": error, "updated_at": repr(now)}
    return [SetIfExists(doc.hash, failed), Delete(doc.blob)]


def ingest_ready(env: Envelope, retired: list[Op]) -> list[Op]:
    """The ingest's completion: unhide the document, apply ``retired`` (the deletes of
    the documents a replace retires) unless the new document was deleted meanwhile,
    and move the collection's version on (its cached answers are no longer served)."""
    collection = env.collection_keys
    document_id = str(env.payload["document_id"])
    ops: list[Op] = [RemoveMember(collection.pending, document_id)]
    if retired:
        # Unless the new document was deleted meanwhile, the old ones go in this same step.
        ops += [IfExists(keys.document(document_id).hash), *retired]
    # Last: IfExists skips what follows it, and a dropped collection's hash must not
    # come back as a bare version counter.
    ops.append(Increment(collection.meta, COLLECTION_VERSION_FIELD, if_exists=True))
    return ops
