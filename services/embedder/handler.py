"""The embedder stage: parse and chunk uploads, embed every text of a read at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common import constants as C
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError
from libs.common.models import Chunk
from libs.common.scripts import HSET_IF_EXISTS
from libs.common.settings import EmbedderSettings
from libs.common.vectors import encode_vector
from libs.common.worker import Outcome, Output
from services.embedder.backends import Embedder
from services.embedder.chunking import chunk_pages
from services.embedder.parsing import Page, parse_document

logger = logging.getLogger(__name__)


class EmbedHandler:
    def __init__(self, client: aioredis.Redis, embedder: Embedder, settings: EmbedderSettings) -> None:
        self.r = client
        self.embedder = embedder
        self.s = settings
        self._hset_if_exists = client.register_script(HSET_IF_EXISTS)

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        chunks_of: dict[int, list[Chunk]] = {}
        pages_of: dict[int, int] = {}
        ingest = [i for i, e in enumerate(batch) if e.kind == "ingest"]
        if ingest:
            blobs: list[Any] = await self.r.mget(
                [C.blob_key(batch[i].payload["document_id"]) for i in ingest]
            )
            parsed = await asyncio.to_thread(self._parse_all, [batch[i] for i in ingest], blobs)
            for i, result in zip(ingest, parsed, strict=True):
                if isinstance(result, BaseException):
                    outcomes[i] = result
                else:
                    pages_of[i], chunks_of[i] = result
            await self._record_parsed(
                {batch[i].payload["document_id"]: (pages_of[i], len(chunks_of[i])) for i in chunks_of}
            )
        # One model call for every text of this read: questions and chunks alike.
        texts: list[str] = []
        for i, env in enumerate(batch):
            if env.kind == "ingest":
                texts.extend(c.text for c in chunks_of.get(i, []))
            else:
                texts.append(env.payload["query"])
        try:
            vectors = await asyncio.to_thread(self.embedder.embed, texts)
        except Exception as exc:  # the backend's typed errors decide retry vs. fail
            return [o if o is not None else exc for o in outcomes]
        pos = 0
        for i, env in enumerate(batch):
            if outcomes[i] is not None:
                continue
            if env.kind == "ingest":
                chunks = chunks_of[i]
                items: list[dict[str, Any]] = []
                for chunk in chunks:
                    items.append({**chunk.model_dump(), "vector": encode_vector(vectors[pos])})
                    pos += 1
                outcomes[i] = Output(
                    {
                        "document_id": env.payload["document_id"],
                        "filename": env.payload["filename"],
                        "pages": pages_of[i],
                        "chunks": items,
                    },
                    delete_keys=[C.blob_key(env.payload["document_id"])],
                    updates={
                        C.document_key(env.payload["document_id"]): {"chunks_embedded": str(len(chunks))}
                    },
                )
            else:
                outcomes[i] = {**env.payload, "vector": encode_vector(vectors[pos])}
                pos += 1
        return [o for o in outcomes if o is not None]

    async def _record_parsed(self, counts: dict[str, tuple[int, int]]) -> None:
        """Pages and chunk totals on the documents: they now show "embedding" and progress."""
        if not counts:
            return
        async with self.r.pipeline(transaction=False) as pipe:
            for document_id, (pages, chunks) in counts.items():
                await self._hset_if_exists(
                    keys=[C.document_key(document_id)],
                    args=["pages", pages, "chunks", chunks, "chunks_embedded", 0],
                    client=pipe,
                )
            await pipe.execute()

    def _parse_all(
        self, envs: list[Envelope], blobs: list[bytes | None]
    ) -> list[tuple[int, list[Chunk]] | BaseException]:
        out: list[tuple[int, list[Chunk]] | BaseException] = []
        for env, blob in zip(envs, blobs, strict=True):
            try:
                out.append(self._parse(env, blob))
            except PermanentError as exc:
                out.append(exc)
        return out

    def _chunk(self, pages: list[Page], doc_id: str, filename: str) -> list[Chunk]:
        """Chunks sized in the model's own tokens when the backend has a tokenizer, else in words."""
        count_tokens = getattr(self.embedder, "count_tokens", None)
        max_tokens = getattr(self.embedder, "max_text_tokens", None)
        if callable(count_tokens) and isinstance(max_tokens, int) and max_tokens > 0:
            size = min(self.s.chunk_size_tokens, max_tokens)
            return chunk_pages(
                pages,
                doc_id,
                filename,
                # Every word is at least one token: the word limit never binds first.
                size_words=size,
                overlap_words=0,
                count_tokens=count_tokens,
                max_tokens=max_tokens,
                size_tokens=size,
                overlap_tokens=self.s.chunk_overlap_tokens,
            )
        return chunk_pages(pages, doc_id, filename, self.s.chunk_size_words, self.s.chunk_overlap_words)

    def _parse(self, env: Envelope, blob: bytes | None) -> tuple[int, list[Chunk]]:
        """(page count, chunks) of one upload."""
        doc_id, filename = env.payload["document_id"], env.payload["filename"]
        if blob is None:
            raise PermanentError(
                "the uploaded file is gone: the document was deleted, "
                "or its upload expired before it could be parsed"
            )
        pages = parse_document(filename, blob, self.s.max_pages, max_unpacked_bytes=self.s.max_unpacked_bytes)
        chunks = self._chunk(pages, doc_id, filename)
        if not chunks:
            raise PermanentError("no extractable text")
        logger.info(
            "job_id=%s stage=embedder parsed %s: %d pages, %d chunks",
            env.job_id,
            filename,
            len(pages),
            len(chunks),
        )
        return len(pages), chunks
