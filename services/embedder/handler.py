"""The embedder stage: parse and chunk uploads, embed every text of a read at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common import document_ops, keys
from libs.common.commit import Delete, Op
from libs.common.constants import EMBEDDED_PART_FIELD, EMBEDDER
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError
from libs.common.logs import job_log
from libs.common.models import Chunk
from libs.common.payloads import IngestPart, IngestUpload, SearchQuery, view
from libs.common.scripts import HSetIfExists
from libs.common.settings import EmbedderSettings
from libs.common.stage import Outcome, Output
from libs.common.vectors import encode_vector
from services.embedder.backends import Embedder
from services.embedder.batcher import EmbeddingBatcher, Priority
from services.embedder.cache import EmbeddingCache
from services.embedder.chunking import chunk_pages
from services.embedder.parsing import Page, parse_document

logger = logging.getLogger(__name__)


class EmbedHandler:
    """Embeds questions and document chunks; splits large documents into bounded parts.

    An ingest message first carries just the upload's id: it is parsed and
    chunked here. A document of at most ``ingest_part_chunks`` chunks is
    embedded at once and goes on as one index message. A larger one continues
    as parts of at most that many chunks, queued back on this stage's stream:
    each part is embedded on its own (by whichever replica reads it), adds to
    the document's progress and goes on as its own index message.
    """

    def __init__(self, client: aioredis.Redis, embedder: Embedder, settings: EmbedderSettings) -> None:
        self.r = client
        self.embedder = embedder
        self.s = settings
        # Every text goes through the cache (only texts it lacks reach the model) and
        # the batcher (model calls shared by the texts of concurrent batches, questions first).
        self.batcher = EmbeddingBatcher(
            embedder.embed,
            embedder.dim,
            max_texts=settings.embed_batch_max_texts,
            max_wait_s=settings.embed_batch_wait_ms / 1000,
        )
        self.cache = EmbeddingCache(client, embedder, settings.embedding_cache_ttl_s, self.batcher)
        self._hset_if_exists = HSetIfExists(client)

    def on_failure(self, env: Envelope, error: str, now: float) -> list[Op]:
        """An ingest that fails here leaves its document failed, with the reason."""
        return document_ops.ingest_failed(env, error, now)

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        # The index payloads to embed now, per message: parts, and whole small documents.
        parts_of = {
            i: view(e, IngestPart)
            for i, e in enumerate(batch)
            if e.kind == "ingest" and "chunks" in e.payload
        }
        uploads = [i for i, e in enumerate(batch) if e.kind == "ingest" and "chunks" not in e.payload]
        if uploads:
            blobs: list[Any] = await self._blobs([batch[i] for i in uploads])
            parsed = await asyncio.to_thread(self._parse_all, [batch[i] for i in uploads], blobs)
            counts: dict[str, tuple[int, int]] = {}
            for i, result in zip(uploads, parsed, strict=True):
                if isinstance(result, BaseException):
                    outcomes[i] = result
                    continue
                pages, chunks = result
                upload = view(batch[i], IngestUpload)
                counts[upload["document_id"]] = (pages, len(chunks))
                parts = _parts(upload, pages, chunks, self.s.ingest_part_chunks)
                if len(parts) == 1:
                    parts_of[i] = parts[0]  # embedded now, with the other texts of this read
                else:
                    outcomes[i] = Output(
                        {"document_id": upload["document_id"], "parts": len(parts)},
                        split=[dict(p) for p in parts],
                        ops=[Delete(keys.document(upload["document_id"]).blob)],
                    )
            await self._record_parsed(counts)
        # Questions first, in one model call: they are short and someone waits on each.
        # Then chunks, in model calls of about one part each; after each call the
        # parts it embedded show in their documents' progress.
        queries = [i for i, e in enumerate(batch) if outcomes[i] is None and e.kind != "ingest"]
        pending = [i for i in sorted(parts_of) if outcomes[i] is None]
        try:
            if queries:
                questions = [view(batch[i], SearchQuery)["query"] for i in queries]
                tenants = [batch[i].tenant for i in queries]
                vectors = await self.cache.embed(questions, Priority.QUERY, tenants)
                for i, vector in zip(queries, vectors, strict=True):
                    outcomes[i] = {**batch[i].payload, "vector": encode_vector(vector)}
            for group in _groups(pending, parts_of, self.s.ingest_part_chunks):
                texts = [c["text"] for i in group for c in parts_of[i]["chunks"]]
                owners = [batch[i].tenant for i in group for _ in parts_of[i]["chunks"]]
                vectors = await self.cache.embed(texts, tenants=owners)
                pos = 0
                for i in group:
                    p = parts_of[i]
                    items = []
                    for chunk in p["chunks"]:
                        items.append({**chunk, "vector": encode_vector(vectors[pos])})
                        pos += 1
                    # The upload is parsed: its bytes go (a no-op for parts after the first).
                    blob = keys.document(p["document_id"]).blob
                    embedded = dict(p, chunks=items)
                    outcomes[i] = Output(embedded, parts=p["parts"], ops=[Delete(blob)])
                await self._record_embedded([parts_of[i] for i in group])
        except Exception as exc:  # the backend's typed errors decide retry vs. fail
            return [o if o is not None else exc for o in outcomes]
        return [o for o in outcomes if o is not None]

    async def aclose(self) -> None:
        await self.batcher.aclose()

    async def _blobs(self, envs: list[Envelope]) -> list[bytes | None]:
        """The uploads' bytes, in one round trip (each in its document's partition)."""
        async with self.r.pipeline(transaction=False) as pipe:
            for env in envs:
                pipe.get(keys.document(view(env, IngestUpload)["document_id"]).blob)
            found: list[bytes | None] = await pipe.execute()
        return found

    async def _record_embedded(self, parts: list[IngestPart]) -> None:
        """Each part's chunk count on its document, by part number: a replayed part
        writes the same field again, so progress never counts a part twice."""
        async with self.r.pipeline(transaction=False) as pipe:
            for p in parts:
                await self._hset_if_exists(
                    keys.document(p["document_id"]).hash,
                    {f"{EMBEDDED_PART_FIELD}{p['part']}": len(p["chunks"])},
                    client=pipe,
                )
            await pipe.execute()

    async def _record_parsed(self, counts: dict[str, tuple[int, int]]) -> None:
        """Pages and chunk totals on the documents: they now show "embedding" and progress."""
        if not counts:
            return
        async with self.r.pipeline(transaction=False) as pipe:
            for document_id, (pages, chunks) in counts.items():
                parts = -(-chunks // self.s.ingest_part_chunks)
                await self._hset_if_exists(
                    keys.document(document_id).hash,
                    {"pages": pages, "chunks": chunks, "parts": parts},
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
        upload = view(env, IngestUpload)
        doc_id, filename = upload["document_id"], upload["filename"]
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
            "parsed %s: %d pages, %d chunks",
            filename,
            len(pages),
            len(chunks),
            extra=job_log(env, EMBEDDER),
        )
        return len(pages), chunks


def _parts(upload: IngestUpload, pages: int, chunks: list[Chunk], size: int) -> list[IngestPart]:
    """The document's index payloads: its chunks in order, at most ``size`` per part."""
    groups = [chunks[k : k + size] for k in range(0, len(chunks), size)]
    parts: list[IngestPart] = []
    for n, group in enumerate(groups):
        part = IngestPart(
            document_id=upload["document_id"],
            filename=upload["filename"],
            pages=pages,
            part=n,
            parts=len(groups),
            chunks_total=len(chunks),
            chunks=[c.model_dump() for c in group],
        )
        if "replace" in upload:
            part["replace"] = upload["replace"]
        parts.append(part)
    return parts


def _groups(indexes: list[int], payloads: dict[int, IngestPart], size: int) -> list[list[int]]:
    """Consecutive messages packed into model calls of at most ``size`` chunks (one part
    alone may be that size): many small documents share a call, a part gets its own."""
    groups: list[list[int]] = []
    count = size
    for i in indexes:
        n = len(payloads[i]["chunks"])
        if count + n > size:
            groups.append([])
            count = 0
        groups[-1].append(i)
        count += n
    return groups
