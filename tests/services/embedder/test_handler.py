from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import redis.asyncio as aioredis

from libs.common import constants as C
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError, RetryableError
from libs.common.settings import EmbedderSettings
from libs.common.vectors import decode_vector
from libs.common.worker import Output
from services.embedder.backends import HashEmbedder
from services.embedder.handler import EmbedHandler


class CountingEmbedder(HashEmbedder):
    def __init__(self, fail: bool = False) -> None:
        super().__init__(dim=16)
        self.calls: list[int] = []
        self.fail = fail

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        if self.fail:
            raise RetryableError("embedding server overloaded")
        return super().embed(texts)


def ingest(doc_id: str, filename: str) -> Envelope:
    return Envelope.new("ingest", "docs", {"document_id": doc_id, "filename": filename}, 60)


def query(text: str) -> Envelope:
    return Envelope.new("search", "docs", {"query": text, "top_k": 3}, 60)


def run_handler(
    url: str, embedder: CountingEmbedder, blobs: dict[str, bytes], batch: list[Envelope]
) -> list[object]:
    async def main() -> list[object]:
        r = aioredis.Redis.from_url(url)
        try:
            for doc_id, data in blobs.items():
                await r.set(C.blob_key(doc_id), data)
            handler = EmbedHandler(r, embedder, EmbedderSettings(_env_file=None, chunk_size_words=10))
            return list(await handler(batch))
        finally:
            await r.aclose()

    return asyncio.run(main())


def test_one_model_call_for_every_text_of_a_read(valkey_url: str) -> None:
    embedder = CountingEmbedder()
    text = (
        b"First paragraph about tides and harbours.\n\nSecond paragraph about lighthouses and granite cliffs."
    )
    out = run_handler(
        valkey_url, embedder, {"d1": text}, [query("tides"), ingest("d1", "a.txt"), query("cliffs")]
    )
    assert len(embedder.calls) == 1
    q1, doc, q2 = out
    assert isinstance(q1, dict) and len(decode_vector(q1["vector"])) == 16
    assert isinstance(q2, dict) and q2["query"] == "cliffs"
    assert isinstance(doc, Output)
    assert doc.delete_keys == [C.blob_key("d1")]
    chunks = doc.payload["chunks"]
    assert embedder.calls == [2 + len(chunks)]
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert all(c["page"] == 1 and len(decode_vector(c["vector"])) == 16 for c in chunks)


def test_bad_upload_fails_alone(valkey_url: str) -> None:
    out = run_handler(
        valkey_url,
        CountingEmbedder(),
        {"empty": b"", "ok": b"Some words here."},
        [ingest("empty", "e.txt"), ingest("gone", "g.txt"), ingest("ok", "ok.txt")],
    )
    empty, gone, ok = out
    assert isinstance(empty, PermanentError) and "empty file" in empty.message
    assert isinstance(gone, PermanentError) and "expired" in gone.message
    assert isinstance(ok, Output)


def test_model_failure_is_every_job_outcome(valkey_url: str) -> None:
    out = run_handler(valkey_url, CountingEmbedder(fail=True), {}, [query("a"), query("b")])
    assert all(isinstance(o, RetryableError) for o in out)


def test_parsed_documents_record_pages_and_chunk_totals(valkey_url: str) -> None:
    async def main() -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
        r = aioredis.Redis.from_url(url)
        try:
            await r.hset(C.document_key("d1"), mapping={"document_id": "d1"})
            await r.set(C.blob_key("d1"), b"First paragraph about tides.\n\nSecond paragraph about cliffs.")
            await r.set(C.blob_key("d2"), b"A document whose record was deleted meanwhile.")
            handler = EmbedHandler(r, CountingEmbedder(), EmbedderSettings(_env_file=None))
            out = await handler([ingest("d1", "a.txt"), ingest("d2", "b.txt")])
            assert all(isinstance(o, Output) for o in out)
            return await r.hgetall(C.document_key("d1")), await r.hgetall(C.document_key("d2"))
        finally:
            await r.aclose()

    url = valkey_url
    recorded, untouched = asyncio.run(main())
    assert recorded[b"pages"] == b"1" and int(recorded[b"chunks"]) >= 1
    assert recorded[b"chunks_embedded"] == b"0"  # the commit that hands the chunks on sets the rest
    assert untouched == {}  # never resurrects a deleted document
