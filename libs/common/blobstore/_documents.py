"""A document's blobs: its original, its extracted text, their removal, and the sweep.

Who writes and who deletes (so nothing is lost, and nothing is left behind):

- The gateway puts the original *before* the SUBMIT that registers the document
  (the id is new: nothing can delete it meanwhile), and deletes it again when SUBMIT
  refuses for sure (a full queue, a duplicate, ...). When SUBMIT's answer is lost (Valkey
  went away mid-call) it keeps the blob: losing an original is worse than an orphan.
- The embedder puts the text once it has parsed the upload, then checks that the
  document is still registered; if it is not, it deletes the text itself (a delete
  that ran meanwhile could not have seen it).
- The retriever's delete job (queued by ``DELETE /v1/documents/{id}``, by dropping
  a collection, and by a ``replace`` retiring the old documents) removes the
  document's prefix after its vectors: a job in Valkey's streams, retried until it
  succeeds, so a process that dies midway leaves the work to the next one.
- What is still left (a gateway killed between its put and SUBMIT, a delete job that
  exhausted its attempts while the store was down) is what :func:`sweep_orphans`
  removes: blobs older than a grace period whose document is not registered.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from libs.common.blobstore._base import BlobStore, document_of, document_prefix, original_key, text_key

logger = logging.getLogger(__name__)

# Page texts longer than this (characters in all) are encoded to JSON off the event loop.
_INLINE_JSON_CHARS = 256 * 1024
TEXT_CONTENT_TYPE = "application/json"


async def put_original(
    store: BlobStore, tenant: str, document_id: str, data: bytes, content_type: str
) -> None:
    await store.put(original_key(tenant, document_id), data, content_type)


async def put_text(store: BlobStore, tenant: str, document_id: str, pages: Sequence[str]) -> None:
    """The document's extracted text, ``[{"page": 1, "text": ...}, ...]`` (pages from 1)."""
    rows = [{"page": n, "text": text} for n, text in enumerate(pages, start=1)]
    if sum(len(t) for t in pages) > _INLINE_JSON_CHARS:
        data = await asyncio.to_thread(_encode, rows)
    else:
        data = _encode(rows)
    await store.put(text_key(tenant, document_id), data, TEXT_CONTENT_TYPE)


def _encode(rows: list[dict[str, object]]) -> bytes:
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()


async def delete_document_blobs(store: BlobStore, tenant: str, document_id: str) -> int:
    """Remove everything kept of the document; how many blobs there were."""
    return await store.delete_prefix(document_prefix(tenant, document_id))


async def sweep_orphans(
    store: BlobStore,
    registered: Callable[[str], Awaitable[bool]],
    *,
    older_than_s: float,
    now: float,
) -> list[str]:
    """Remove the blobs of every document not ``registered`` whose newest blob is older
    than ``older_than_s`` (an upload between its put and its SUBMIT is younger); the ids
    removed. A listing gives one document's blobs one after another (keys are listed
    in order, a directory at a time), so only one document is held at a time."""
    removed: list[str] = []
    current: tuple[str, str] | None = None
    newest = 0.0

    async def settle() -> None:
        if current is None or newest > now - older_than_s or await registered(current[1]):
            return
        count = await delete_document_blobs(store, *current)
        logger.info("swept %d blobs of unregistered document %s", count, current[1])
        removed.append(current[1])

    async for info in store.list(""):
        found = document_of(info.key)
        if found is None:
            continue
        if found != current:
            await settle()
            current, newest = found, info.modified
        else:
            newest = max(newest, info.modified)
    await settle()
    return removed
