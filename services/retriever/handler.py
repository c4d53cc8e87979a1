"""The retriever stage: index ingested chunks, search for questions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from libs.common import constants as C
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError
from libs.common.models import Chunk
from libs.common.vectors import decode_vector
from libs.common.worker import Outcome, Output
from services.retriever.store import VectorStore

logger = logging.getLogger(__name__)


class RetrieveHandler:
    def __init__(self, store: VectorStore, dim: int) -> None:
        self.store = store
        self.dim = dim

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        # The store's calls block; the whole batch runs in one worker thread.
        return await asyncio.to_thread(self._run, batch)

    def _run(self, batch: Sequence[Envelope]) -> list[Outcome]:
        out: list[Outcome] = []
        for env in batch:
            try:
                out.append(self._index(env) if env.kind == "ingest" else self._search(env))
            except PermanentError as exc:
                out.append(exc)
        return out

    def _index(self, env: Envelope) -> Output:
        p = env.payload
        items = p["chunks"]
        chunks = [Chunk.model_validate({k: v for k, v in c.items() if k != "vector"}) for c in items]
        vectors = [decode_vector(c["vector"]) for c in items]
        self.store.ensure_collection(env.collection, self.dim)
        self.store.upsert(env.collection, chunks, vectors)
        logger.info(
            "job_id=%s stage=retriever indexed %d chunks of %s", env.job_id, len(chunks), p["filename"]
        )
        n, pages = len(chunks), p.get("pages", 0)
        result = {"document_id": p["document_id"], "filename": p["filename"], "pages": pages, "chunks": n}
        # The document is ready with this commit (its vectors are already searchable).
        ready = {
            "status": "ready",
            "pages": str(pages),
            "chunks": str(n),
            "chunks_embedded": str(n),
            "error": "",
        }
        return Output(result, updates={C.document_key(p["document_id"]): ready})

    def _search(self, env: Envelope) -> dict[str, object]:
        p = env.payload
        hits = self.store.search(env.collection, decode_vector(p["vector"]), int(p["top_k"]))
        if env.kind == "search":
            return {
                "hits": [
                    h.model_dump(include={"document_id", "filename", "page", "score", "text"}) for h in hits
                ]
            }
        return {"question": p["question"], "top_k": p["top_k"], "hits": [h.model_dump() for h in hits]}
