from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import redis.asyncio as aioredis

from libs.common import keys
from libs.common.blobstore import Blob, MemoryBlobStore, put_original
from libs.common.commit import Delete
from libs.common.envelope import Envelope
from libs.common.errors import BlobStoreUnavailable, PermanentError, RetryableError
from libs.common.settings import EmbedderSettings
from libs.common.stage import Output
from libs.common.vectors import decode_vector
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
                await r.set(keys.document(doc_id).blob, data)
            handler = EmbedHandler(r, embedder, EmbedderSettings(_env_file=None, chunk_size_words=10))
            return list(await handler(batch))
        finally:
            await r.aclose()

    return asyncio.run(main())


def test_questions_share_one_model_call_and_chunks_another(valkey_url: str) -> None:
    embedder = CountingEmbedder()
    text = (
        b"First paragraph about tides and harbours.\n\nSecond paragraph about lighthouses and granite cliffs."
    )
    out = run_handler(
        valkey_url, embedder, {"d1": text}, [query("tides"), ingest("d1", "a.txt"), query("cliffs")]
    )
    q1, doc, q2 = out
    assert isinstance(q1, dict) and len(decode_vector(q1["vector"])) == 16
    assert isinstance(q2, dict) and q2["query"] == "cliffs"
    assert isinstance(doc, Output)
    assert doc.ops == [Delete(keys.document("d1").blob)]
    chunks = doc.payload["chunks"]
    assert embedder.calls == [2, len(chunks)]
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
            await r.hset(keys.document("d1").hash, mapping={"document_id": "d1"})
            await r.set(
                keys.document("d1").blob, b"First paragraph about tides.\n\nSecond paragraph about cliffs."
            )
            await r.set(keys.document("d2").blob, b"A document whose record was deleted meanwhile.")
            handler = EmbedHandler(r, CountingEmbedder(), EmbedderSettings(_env_file=None))
            out = await handler([ingest("d1", "a.txt"), ingest("d2", "b.txt")])
            assert all(isinstance(o, Output) for o in out)
            return await r.hgetall(keys.document("d1").hash), await r.hgetall(keys.document("d2").hash)
        finally:
            await r.aclose()

    url = valkey_url
    recorded, untouched = asyncio.run(main())
    assert recorded[b"pages"] == b"1" and int(recorded[b"chunks"]) >= 1
    assert recorded[b"parts"] == b"1"
    assert recorded[b"embedded:0"] == recorded[b"chunks"]  # the part is embedded: progress is complete
    assert untouched == {}  # never resurrects a deleted document


def test_a_large_document_continues_as_bounded_parts_each_embedded_alone(valkey_url: str) -> None:
    paragraphs = [f"Paragraph {n} tells of harbour number {n} and its granite lighthouse." for n in range(30)]
    text = "\n\n".join(paragraphs).encode()
    embedder = CountingEmbedder()

    async def main() -> tuple[Output, list[object], list[dict[bytes, bytes]]]:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            await r.hset(keys.document("big").hash, mapping={"document_id": "big"})
            await r.set(keys.document("big").blob, text)
            settings = EmbedderSettings(_env_file=None, chunk_size_words=10, ingest_part_chunks=4)
            handler = EmbedHandler(r, embedder, settings)
            env = ingest("big", "big.txt")
            (split,) = await handler([env])
            assert embedder.calls == []  # parsing only: the parts are embedded when read
            assert isinstance(split, Output)
            parts = [env.model_copy(update={"payload": p}) for p in split.split]
            docs = [await r.hgetall(keys.document("big").hash)]
            embedded = list(await handler(parts[:2]))
            docs.append(await r.hgetall(keys.document("big").hash))
            embedded += await handler(parts[2:])
            docs.append(await r.hgetall(keys.document("big").hash))
            return split, embedded, docs
        finally:
            await r.aclose()

    split, embedded, (parsed, halfway, done) = asyncio.run(main())
    total = int(parsed[b"chunks"])
    n = -(-total // 4)
    assert total > 8
    assert split.ops == [Delete(keys.document("big").blob)]
    assert len(split.split) == int(parsed[b"parts"]) == n
    assert [p["part"] for p in split.split] == list(range(n))
    assert all(len(p["chunks"]) <= 4 and p["parts"] == n for p in split.split)
    assert all("vector" not in c for p in split.split for c in p["chunks"])
    # Every chunk exactly once, in order, across the parts.
    assert [c["chunk_index"] for p in split.split for c in p["chunks"]] == list(range(total))
    # One model call per part; progress per part on the document.
    assert embedder.calls == [len(p["chunks"]) for p in split.split]
    assert not any(k.startswith(b"embedded:") for k in parsed)
    assert {k for k in halfway if k.startswith(b"embedded:")} == {b"embedded:0", b"embedded:1"}
    assert sum(int(v) for k, v in done.items() if k.startswith(b"embedded:")) == total
    # Each part goes on as its own index message.
    for out, part in zip(embedded, split.split, strict=True):
        assert isinstance(out, Output) and out.parts == n
        assert [c["chunk_index"] for c in out.payload["chunks"]] == [c["chunk_index"] for c in part["chunks"]]
        assert all(len(decode_vector(c["vector"])) == 16 for c in out.payload["chunks"])


def test_small_documents_share_one_model_call(valkey_url: str) -> None:
    embedder = CountingEmbedder()
    blobs = {f"d{n}": f"Short note number {n} about tides.".encode() for n in range(5)}
    out = run_handler(valkey_url, embedder, blobs, [ingest(f"d{n}", f"{n}.txt") for n in range(5)])
    assert all(isinstance(o, Output) for o in out)
    assert embedder.calls == [5]


class _DownStore(MemoryBlobStore):
    """A blob store that cannot be reached."""

    async def get(self, key: str) -> Blob | None:
        raise BlobStoreUnavailable(f"connection refused reading {key}")


def test_an_upload_is_parsed_from_its_original_in_the_blob_store(valkey_url: str) -> None:
    text = b"The ferry to Inishmore leaves at nine. Tickets are sold at the pier office."

    async def main() -> list[object]:
        r = aioredis.Redis.from_url(url=valkey_url)
        try:
            store = MemoryBlobStore()
            await put_original(store, "default", "kept", text, "text/plain")
            # Registered documents: one with its original, one whose original is gone.
            for doc_id in ("kept", "lost"):
                await r.hset(keys.document(doc_id).hash, mapping={"status": "queued"})
            # A deleted document (no record) is not parsed, even with its original still there.
            await put_original(store, "default", "deleted", text, "text/plain")
            handler = EmbedHandler(
                r, CountingEmbedder(), EmbedderSettings(_env_file=None, chunk_size_words=10), store
            )
            batch = [ingest("kept", "a.txt"), ingest("lost", "b.txt"), ingest("deleted", "c.txt")]
            out = list(await handler(batch))
            # The blob store down: that upload's error says retry.
            down = EmbedHandler(
                r, CountingEmbedder(), EmbedderSettings(_env_file=None, chunk_size_words=10), _DownStore()
            )
            out += list(await down([ingest("kept", "a.txt")]))
            return out
        finally:
            await r.aclose()

    kept, lost, deleted, down = asyncio.run(main())
    assert isinstance(kept, Output) and "Inishmore" in " ".join(c["text"] for c in kept.payload["chunks"])
    for gone in (lost, deleted):
        assert isinstance(gone, PermanentError) and "the uploaded file is gone" in gone.message
    assert isinstance(down, RetryableError) and "connection refused" in str(down)
