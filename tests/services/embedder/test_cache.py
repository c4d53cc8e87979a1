"""The embedding cache against a real Valkey: a repeated text skips the model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import redis
import redis.asyncio as aioredis

from libs.common import keys, metrics
from libs.common.envelope import Envelope
from libs.common.settings import EmbedderSettings
from libs.common.stage import Outcome
from libs.common.vectors import decode_vector
from services.embedder.backends import HashEmbedder
from services.embedder.cache import EmbeddingCache, model_id, text_key
from services.embedder.handler import EmbedHandler


class CountingEmbedder(HashEmbedder):
    """The hash embedder, recording the texts of every model call."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__(dim=dim)
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return super().embed(texts)


def count(result: str) -> float:
    return metrics.CACHE_REQUESTS.labels("embedding", result)._value.get()


def run(url: str, embedder: CountingEmbedder, ttl_s: int, *calls: list[str]) -> list[np.ndarray]:
    async def main() -> list[np.ndarray]:
        r = aioredis.Redis.from_url(url)
        try:
            cache = EmbeddingCache(r, embedder, ttl_s)
            return [await cache.embed(texts) for texts in calls]
        finally:
            await r.aclose()

    return asyncio.run(main())


def test_a_repeated_text_skips_the_model_and_gets_the_same_vector(valkey_url: str) -> None:
    embedder = CountingEmbedder()
    hits, misses = count("hit"), count("miss")
    first, second, third = run(
        valkey_url,
        embedder,
        3600,
        ["tides", "cliffs"],
        ["cliffs", "harbours", "tides"],
        ["tides", "cliffs", "harbours"],
    )
    # Only the texts never seen reach the model; a call of known texts makes none.
    assert embedder.calls == [["tides", "cliffs"], ["harbours"]]
    expected = HashEmbedder(dim=16).embed(["tides", "cliffs", "harbours"])
    np.testing.assert_array_equal(first, expected[:2])
    np.testing.assert_array_equal(second, expected[[1, 2, 0]])
    np.testing.assert_array_equal(third, expected)
    assert third.dtype == np.float32 and third.shape == (3, 16)
    assert (count("hit") - hits, count("miss") - misses) == (5, 3)


def test_entries_are_per_model_and_expire(valkey_url: str, valkey: redis.Redis) -> None:
    small, large = CountingEmbedder(dim=16), CountingEmbedder(dim=32)
    run(valkey_url, small, 60, ["tides"])
    run(valkey_url, large, 60, ["tides"])
    assert small.calls == [["tides"]] and large.calls == [["tides"]]
    assert model_id(small) == "hash-16:16"
    key = text_key(model_id(small), "tides")
    assert key.startswith(f"{keys.PREFIX}:cache:embedding:hash-16:16:")
    assert len(valkey.get(key) or b"") == 16 * 4
    assert 0 < valkey.ttl(key) <= 60


def test_a_text_twice_in_one_call_is_embedded_once(valkey_url: str) -> None:
    embedder = CountingEmbedder()
    (vectors,) = run(valkey_url, embedder, 60, ["tides", "tides", "cliffs"])
    assert embedder.calls == [["tides", "cliffs"]]
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_a_value_of_the_wrong_size_is_a_miss(valkey_url: str, valkey: redis.Redis) -> None:
    embedder = CountingEmbedder()
    valkey.set(text_key(model_id(embedder), "tides"), b"\x00" * 7)
    (vectors,) = run(valkey_url, embedder, 60, ["tides"])
    assert embedder.calls == [["tides"]]
    np.testing.assert_array_equal(vectors, HashEmbedder(dim=16).embed(["tides"]))


def test_ttl_zero_turns_the_cache_off(valkey_url: str, valkey: redis.Redis) -> None:
    embedder = CountingEmbedder()
    run(valkey_url, embedder, 0, ["tides"], ["tides"])
    assert embedder.calls == [["tides"], ["tides"]]
    assert valkey.keys(f"{keys.PREFIX}:cache:*") == []


def test_the_handler_embeds_questions_and_chunks_through_the_cache(valkey_url: str) -> None:
    embedder = CountingEmbedder()
    text = b"Tides turn twice a day.\n\nGranite cliffs line the northern shore."

    def ingest(doc_id: str) -> Envelope:
        return Envelope.new("ingest", "docs", {"document_id": doc_id, "filename": f"{doc_id}.txt"}, 60)

    def ask(question: str) -> Envelope:
        return Envelope.new("search", "docs", {"query": question, "top_k": 3}, 60)

    async def main() -> tuple[list[Outcome], list[Outcome]]:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            await r.mset({keys.document("a").blob: text, keys.document("b").blob: text})
            settings = EmbedderSettings(_env_file=None, chunk_size_words=8)  # type: ignore[call-arg]
            handler = EmbedHandler(r, embedder, settings)
            first = list(await handler([ask("When do tides turn?"), ingest("a")]))
            again = list(await handler([ask("When do tides turn?"), ingest("b")]))
            return first, again
        finally:
            await r.aclose()

    first, again = asyncio.run(main())
    # The first read made one call for the question and one for the chunks; the same
    # question and the same text uploaded again made none.
    assert len(embedder.calls) == 2
    assert embedder.calls[0] == ["When do tides turn?"]
    q1, q2 = first[0], again[0]
    assert isinstance(q1, dict) and isinstance(q2, dict)
    assert decode_vector(q1["vector"]) == decode_vector(q2["vector"])


def test_a_tenants_cached_vectors_serve_only_that_tenant(valkey_url: str) -> None:
    embedder = CountingEmbedder()

    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            cache = EmbeddingCache(r, embedder, 3600)
            await cache.embed(["salary of the ceo"], tenants=["acme"])
            await cache.embed(["salary of the ceo"], tenants=["globex"])
            await cache.embed(["salary of the ceo", "salary of the ceo"], tenants=["acme", "globex"])
        finally:
            await r.aclose()

    asyncio.run(main())
    # The second tenant's question went to the model: the first one's vector did not answer it.
    assert embedder.calls == [["salary of the ceo"], ["salary of the ceo"]]
