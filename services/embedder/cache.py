"""The embedding cache: a text embedded once by a model is not embedded again.

Each vector is kept in Valkey under the model's identity and the sha256 of the
text (``keys.embedding_cache``) as float32 little-endian bytes. A
model call looks up all its texts with one MGET, sends only the misses to the
model and stores their vectors with one pipelined ``SET ... EX``. Questions and
document chunks share it: a re-uploaded document, or a question asked again,
skips the model. Each tenant's vectors are its own (the key names the tenant): a
tenant cannot tell from a quick answer that another embedded the same text.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from libs.common import keys, metrics
from services.embedder.backends import Embedder
from services.embedder.batcher import EmbeddingBatcher, Priority

logger = logging.getLogger(__name__)


def model_id(embedder: Embedder) -> str:
    """What a cached vector depends on: the model's name and its vector size."""
    return f"{embedder.name}:{embedder.dim}"


def text_key(model: str, text: str, tenant: str = keys.DEFAULT_TENANT) -> str:
    return keys.embedding_cache(model, hashlib.sha256(text.encode("utf-8")).hexdigest(), tenant)


class EmbeddingCache:
    """Embeds texts through ``embedder``, reusing the vectors Valkey already holds.

    With ``ttl_s`` 0 every text goes to the model and nothing is stored.
    Hits and misses are counted per distinct text of a call.
    """

    def __init__(
        self, client: aioredis.Redis, embedder: Embedder, ttl_s: int, batcher: EmbeddingBatcher | None = None
    ) -> None:
        self.r = client
        self.embedder = embedder
        # Misses go to the model through the batcher: coalesced with other jobs' texts.
        self.batcher = batcher or EmbeddingBatcher(embedder.embed, embedder.dim)
        self.ttl_s = ttl_s
        self.model = model_id(embedder)
        self._hits = metrics.CACHE_REQUESTS.labels("embedding", "hit")
        self._misses = metrics.CACHE_REQUESTS.labels("embedding", "miss")

    async def embed(
        self, texts: Sequence[str], priority: Priority = Priority.BULK, tenants: Sequence[str] | None = None
    ) -> np.ndarray:
        """Vectors of ``texts``, in order, shape (len(texts), dim).

        ``tenants``: whose each text is (default: the default tenant's); a tenant's
        cached vectors serve only that tenant.
        """
        if self.ttl_s <= 0 or not texts:
            return await self.batcher.embed(texts, priority)
        owned = list(zip(tenants or [keys.DEFAULT_TENANT] * len(texts), texts, strict=True))
        distinct = list(dict.fromkeys(owned))
        names = [text_key(self.model, text, tenant) for tenant, text in distinct]
        # GETs in one pipeline, not MGET: each entry has a slot of its own (keys.py), and
        # on a Valkey Cluster a multi-key command must stay in one.
        async with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(name)
            found: list[Any] = await pipe.execute()
        width = self.embedder.dim * 4
        vectors: dict[tuple[str, str], np.ndarray] = {}
        for item, raw in zip(distinct, found, strict=True):
            # A value of another size (written by a differently configured model) is a miss.
            if raw is not None and len(raw) == width:
                vectors[item] = np.frombuffer(raw, dtype="<f4")
        misses = [item for item in distinct if item not in vectors]
        self._hits.inc(len(distinct) - len(misses))
        self._misses.inc(len(misses))
        if misses:
            fresh = await self.batcher.embed([text for _, text in misses], priority)
            async with self.r.pipeline(transaction=False) as pipe:
                for (tenant, text), vector in zip(misses, fresh, strict=True):
                    vectors[tenant, text] = np.asarray(vector, dtype="<f4")
                    key = text_key(self.model, text, tenant)
                    pipe.set(key, vectors[tenant, text].tobytes(), ex=self.ttl_s)
                await pipe.execute()
        return np.stack([vectors[item] for item in owned]).astype(np.float32, copy=False)
