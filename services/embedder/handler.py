"""The embedder stage: parse and chunk uploads, embed every text of a read at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common import document_ops, keys
from libs.common.blobstore import BlobStore, original_key, put_text, text_key
from libs.common.commit import Delete, Op
from libs.common.constants import EMBEDDED_PART_FIELD, EMBEDDER
from libs.common.envelope import Envelope
from libs.common.errors import JobEnded, PermanentError
from libs.common.logs import job_log
from libs.common.payloads import IngestPart, IngestUpload, SearchQuery, view
from libs.common.scripts import HSetIfExists
from libs.common.settings import EmbedderSettings
from libs.common.stage import Outcome, Output
from libs.common.vectors import encode_vector
from libs.common.worker import yield_read_slot
from services.embedder import liveness, progress
from services.embedder.backends import Embedder
from services.embedder.batcher import EmbeddingBatcher, Priority
from services.embedder.cache import EmbeddingCache
from services.embedder.parse_job import ChunkSpec, Parsed, ParseJob, ParseLimits, parse_and_chunk
from services.embedder.parsing import MARKDOWN_EXTENSIONS, TEXT_EXTENSIONS, file_extension
from services.embedder.sandbox import ParseSandbox
from services.embedder.structure import embedded_text

logger = logging.getLogger(__name__)


class EmbedHandler:
    """Embeds questions and document chunks; splits large documents into bounded parts.

    An ingest message first carries just the upload's id: it is parsed and
    chunked here. A document of at most ``ingest_part_chunks`` chunks is
    embedded at once and goes on as one index message. A larger one continues
    as parts of at most that many chunks, queued back on this stage's stream:
    each part is embedded on its own (by whichever replica reads it), adds to
    the document's progress and goes on as its own index message.

    Uploads are parsed in a sandbox (``sandbox.py``: a child process per upload,
    with limits on time, memory, characters and chunks), all of a read's at once up
    to ``parse_processes``, of which one tenant holds at most ``parses_per_tenant``:
    while a tenant's uploads wait for more, its batch lets the worker read other
    tenants' work and the tenant is not read (:meth:`saturated`). A tiny text file is
    parsed here, off the event loop.

    Before each model call of chunks the parts' jobs and documents are looked up
    (``liveness.py``): a cancelled job's or a deleted document's parts are not embedded.

    With a ``blobs`` store, each parsed upload's text goes there, page by page, for the
    viewer (``GET /v1/documents/{id}/text``) before its message is handed on.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        embedder: Embedder,
        settings: EmbedderSettings,
        blobs: BlobStore | None = None,
    ) -> None:
        self.r = client
        self.blobs = blobs
        self.embedder = embedder
        self.s = settings
        # Every text goes through the cache (only texts it lacks reach the model) and
        # the batcher (model calls shared by the texts of concurrent batches; questions' calls
        # run at once, beside a running call of chunks).
        self.batcher = EmbeddingBatcher(
            embedder.embed,
            embedder.dim,
            max_texts=settings.embed_batch_max_texts,
            max_wait_s=settings.embed_batch_wait_ms / 1000,
        )
        self.cache = EmbeddingCache(client, embedder, settings.embedding_cache_ttl_s, self.batcher)
        self._hset_if_exists = HSetIfExists(client)
        self.progress = progress.ProgressWriter(client)
        self.chunking = ChunkSpec.for_backend(settings, embedder)
        self.limits = ParseLimits.from_settings(settings)
        self.sandbox = ParseSandbox(
            settings.parse_processes,
            settings.log_level,
            settings.log_format,
            per_tenant=settings.parses_per_tenant,
        )

    def saturated(self) -> frozenset[str]:
        """Tenants whose uploads wait for a parse process: the bulk reads leave them out
        (``fair_read.TenantGate``) until the wait ends, so their queued uploads do not
        take the worker's batches from other tenants."""
        return self.sandbox.waiting_tenants()

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
            await self.progress.write([(batch[i], progress.parsing_ops(batch[i])) for i in uploads])
            blobs: list[Any] = await self._blobs([batch[i] for i in uploads])
            parsed = await asyncio.gather(
                *(self._parse(batch[i], blob) for i, blob in zip(uploads, blobs, strict=True)),
                return_exceptions=True,
            )
            counts: list[tuple[Envelope, list[Op]]] = []
            for i, result in zip(uploads, parsed, strict=True):
                if isinstance(result, BaseException):
                    outcomes[i] = result
                    continue
                pages, chunks = result
                upload = view(batch[i], IngestUpload)
                # Pages and chunk totals on the document: it now shows "embedding" and progress.
                counts.append(
                    (batch[i], progress.parsed_ops(batch[i], pages, len(chunks), self.s.ingest_part_chunks))
                )
                parts = _parts(upload, pages, chunks, self.s.ingest_part_chunks)
                if len(parts) == 1:
                    parts_of[i] = parts[0]  # embedded now, with the other texts of this read
                else:
                    outcomes[i] = Output(
                        {"document_id": upload["document_id"], "parts": len(parts)},
                        split=[dict(p) for p in parts],
                        ops=[Delete(keys.document(upload["document_id"]).blob)],
                    )
            await self.progress.write(counts)
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
            for planned in _groups(pending, parts_of, self.s.ingest_part_chunks):
                # Before each model call: parts whose job ended or whose document was
                # deleted meanwhile are not embedded (one round trip).
                group = await self._still_wanted(planned, batch, parts_of, outcomes)
                if not group:
                    continue
                texts = [
                    embedded_text(c["text"], c.get("context", ""))
                    for i in group
                    for c in parts_of[i]["chunks"]
                ]
                owners = [batch[i].tenant for i in group for _ in parts_of[i]["chunks"]]
                vectors = await self.cache.embed(texts, tenants=owners)
                done = await self._record_embedded([parts_of[i] for i in group])
                pos = 0
                for i, chunks_embedded in zip(group, done, strict=True):
                    p = parts_of[i]
                    items = []
                    for chunk in p["chunks"]:
                        items.append({**chunk, "vector": encode_vector(vectors[pos])})
                        pos += 1
                    # The upload is parsed: its bytes go (a no-op for parts after the first).
                    blob = keys.document(p["document_id"]).blob
                    outcomes[i] = Output(
                        dict(p, chunks=items),
                        parts=p["parts"],
                        ops=[Delete(blob)],
                        part_events=progress.embedded(p, chunks_embedded),
                        events=progress.indexing(p),
                    )
        except Exception as exc:  # the backend's typed errors decide retry vs. fail
            return [o if o is not None else exc for o in outcomes]
        return [o for o in outcomes if o is not None]

    async def aclose(self) -> None:
        await self.batcher.aclose()
        await self.sandbox.aclose()

    async def _blobs(self, envs: list[Envelope]) -> list[bytes | BaseException | None]:
        """The uploads' bytes: from Valkey, where a job queued with its bytes has them (one
        round trip), else the original in the blob store, which the gateway puts there
        before it queues the job (read at once for all of them). A blob store that
        fails is that upload's error (retried when it is passing)."""
        async with self.r.pipeline(transaction=False) as pipe:
            for env in envs:
                document = keys.document(view(env, IngestUpload)["document_id"])
                pipe.get(document.blob)
                pipe.exists(document.hash)
            replies = await pipe.execute()
        found: list[bytes | BaseException | None] = list(replies[::2])
        store = self.blobs
        # A deleted document's original may still be in the store (its delete job is
        # queued): not parsed, as if gone.
        missing = [i for i, data in enumerate(found) if data is None and replies[2 * i + 1]]
        if store is None or not missing:
            return found

        async def original(env: Envelope) -> bytes | None:
            blob = await store.get(original_key(env.tenant, view(env, IngestUpload)["document_id"]))
            return None if blob is None else blob.data

        read = await asyncio.gather(*(original(envs[i]) for i in missing), return_exceptions=True)
        for i, data in zip(missing, read, strict=True):
            found[i] = data
        return found

    async def _still_wanted(
        self,
        group: list[int],
        batch: Sequence[Envelope],
        parts_of: dict[int, IngestPart],
        outcomes: list[Outcome | None],
    ) -> list[int]:
        """The messages of ``group`` still worth embedding. The others get their outcome
        here: a job that ended is acknowledged (``JobEnded``); a deleted document's part
        goes on without its chunks, so the retriever settles the job as it does any
        deleted document's ({"deleted": true, "chunks": 0})."""
        found = await liveness.of_parts(self.r, [(batch[i], parts_of[i]["document_id"]) for i in group])
        wanted = []
        for i, state in zip(group, found, strict=True):
            p = parts_of[i]
            if state.wanted:
                wanted.append(i)
            elif state.ended is not None:
                outcomes[i] = JobEnded(f"the job is {state.ended}: its chunks were not embedded")
            else:
                logger.info(
                    "document %s was deleted: part %d of %d not embedded",
                    p["document_id"],
                    p["part"] + 1,
                    p["parts"],
                    extra=job_log(batch[i], EMBEDDER),
                )
                outcomes[i] = Output(dict(p, chunks=[]), parts=p["parts"])
        return wanted

    async def _record_embedded(self, parts: list[IngestPart]) -> list[int]:
        """Each part's chunk count on its document, by part number: a replayed part
        writes the same field again, so progress never counts a part twice. Returns,
        per part, its document's chunks embedded so far (read right after its write)."""
        async with self.r.pipeline(transaction=False) as pipe:
            for p in parts:
                document = keys.document(p["document_id"]).hash
                await self._hset_if_exists(
                    document, {f"{EMBEDDED_PART_FIELD}{p['part']}": len(p["chunks"])}, client=pipe
                )
                pipe.hgetall(document)
            found = await pipe.execute()
        return [progress.embedded_count(fields) for fields in found[1::2]]

    async def _parse(
        self, env: Envelope, blob: bytes | BaseException | None
    ) -> tuple[int, list[dict[str, Any]]]:
        """(page count, chunks) of one upload."""
        upload = view(env, IngestUpload)
        doc_id, filename = upload["document_id"], upload["filename"]
        if isinstance(blob, BaseException):
            raise blob
        if blob is None:
            raise PermanentError(
                "the uploaded file is gone: the document was deleted, "
                "or its upload expired before it could be parsed"
            )
        job = ParseJob(filename, self.chunking, self.limits)
        parsed: Parsed
        if self._inline(filename, blob):
            parsed = await asyncio.to_thread(parse_and_chunk, job, blob)
        else:
            fields = job_log(env, EMBEDDER)
            # Waiting on its tenant's share of the processes, the batch lets the worker read
            # other tenants' work meanwhile (and the tenant is not read: ``saturated``).
            parsed = await self.sandbox.parse(
                job, blob, lambda: self._unwanted(env), fields, tenant=env.tenant, on_capped=yield_read_slot
            )
        logger.info(
            "parsed %s: %d pages, %d chunks",
            filename,
            parsed.pages,
            len(parsed.chunks),
            extra=job_log(env, EMBEDDER),
        )
        if self.blobs is not None:
            await self._keep_text(self.blobs, env.tenant, doc_id, parsed.texts)
        return parsed.pages, parsed.chunk_dicts(doc_id, filename)

    async def _keep_text(self, blobs: BlobStore, tenant: str, document_id: str, texts: list[str]) -> None:
        """The document's text in the blob store (a failure is retried like the parse).
        A delete of the document that ran meanwhile removed its blobs before this one was
        there: so look after writing, and remove it if the document is gone."""
        await put_text(blobs, tenant, document_id, texts)
        if not await self.r.exists(keys.document(document_id).hash):
            await blobs.delete(text_key(tenant, document_id))

    def _inline(self, filename: str, blob: bytes) -> bool:
        """A text file small enough to parse here: bounded work, cheaper than a process."""
        ext = file_extension(filename)
        small = len(blob) <= self.s.parse_inline_bytes
        return small and (ext in TEXT_EXTENSIONS or ext in MARKDOWN_EXTENSIONS)

    async def _unwanted(self, env: Envelope) -> BaseException | None:
        """Why an upload being parsed need not be any more: its job ended (cancelled,
        expired) or its document was deleted. None while wanted."""
        (state,) = await liveness.of_uploads(self.r, [env])
        if state.ended is not None:
            return JobEnded(f"the job is {state.ended}: its parse was stopped")
        if state.deleted:
            return PermanentError("the document was deleted while it was being parsed")
        return None


def _parts(upload: IngestUpload, pages: int, chunks: list[dict[str, Any]], size: int) -> list[IngestPart]:
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
            chunks=group,
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
