"""The embedder keeps each parsed upload's text in the blob store, and none of a
document deleted meanwhile."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from libs.common import keys
from libs.common.blobstore import MemoryBlobStore, text_key
from libs.common.envelope import Envelope
from libs.common.errors import BlobStoreUnavailable
from libs.common.settings import EmbedderSettings
from services.embedder.backends import HashEmbedder
from services.embedder.handler import EmbedHandler

TEXT = b"The ferry to Inishmore leaves at nine.\n\nTickets are sold at the pier office."


def parse(url: str, blobs: MemoryBlobStore, *, registered: bool) -> object:
    """One upload through the handler; its document registered or (deleted) not."""
    env = Envelope.new("ingest", "docs", {"document_id": "p0-doc", "filename": "ferry.txt"}, 60)

    async def main() -> object:
        r = aioredis.Redis.from_url(url)
        try:
            await r.set(keys.document("p0-doc").blob, TEXT)
            if registered:
                await r.hset(keys.document("p0-doc").hash, mapping={"status": "queued"})
            handler = EmbedHandler(r, HashEmbedder(dim=8), EmbedderSettings(_env_file=None), blobs)  # type: ignore[call-arg]
            (outcome,) = await handler([env])
            return outcome
        finally:
            await r.aclose()

    return asyncio.run(main())


def test_the_text_of_a_parsed_upload_is_kept_page_by_page(valkey_url: str) -> None:
    blobs = MemoryBlobStore()
    outcome = parse(valkey_url, blobs, registered=True)
    assert not isinstance(outcome, BaseException)
    blob = blobs.blobs[text_key("default", "p0-doc")][0]
    assert blob.content_type == "application/json"
    assert json.loads(blob.data) == [
        {"page": 1, "text": "The ferry to Inishmore leaves at nine.\n\nTickets are sold at the pier office."}
    ]


def test_no_text_is_left_of_a_document_deleted_while_it_was_parsed(valkey_url: str) -> None:
    blobs = MemoryBlobStore()
    parse(valkey_url, blobs, registered=False)
    assert blobs.blobs == {}


def test_a_store_that_is_down_retries_the_upload(valkey_url: str) -> None:
    blobs = MemoryBlobStore()
    blobs.down = True
    outcome = parse(valkey_url, blobs, registered=True)
    assert isinstance(outcome, BlobStoreUnavailable) and outcome.retryable
