"""An upload's progress events: parsing and parsed as they happen, embedded per part, indexing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis

from libs.common import keys
from libs.common.constants import PROGRESS_EVENTS_MAX
from libs.common.envelope import Envelope
from libs.common.settings import EmbedderSettings
from libs.common.stage import Output
from services.embedder import progress
from services.embedder.backends import HashEmbedder
from services.embedder.handler import EmbedHandler

PARAGRAPHS = [f"Paragraph {n} tells of harbour number {n} and its granite lighthouse." for n in range(30)]


def ingest(doc_id: str, filename: str) -> Envelope:
    return Envelope.new("ingest", "docs", {"document_id": doc_id, "filename": filename}, 60)


async def queued(r: aioredis.Redis, env: Envelope, doc_id: str, text: bytes, status: str = "queued") -> None:
    """What an upload's SUBMIT leaves: the job, its events stream, the document, the upload."""
    job = env.job_keys
    await r.hset(job.hash, mapping={"status": status})
    await r.xadd(job.events, {"type": "queued", "data": "{}"})
    await r.hset(keys.document(doc_id).hash, mapping={"document_id": doc_id})
    await r.set(keys.document(doc_id).blob, text)


async def events_of(r: aioredis.Redis, env: Envelope) -> list[tuple[str, dict[str, Any]]]:
    entries = await r.xrange(env.job_keys.events)
    return [(f[b"type"].decode(), json.loads(f[b"data"])) for _, f in entries]


def test_parsing_and_parsed_are_written_as_they_happen_with_the_counts(valkey_url: str) -> None:
    async def main() -> tuple[list[Any], list[object], dict[bytes, bytes]]:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            env = ingest("d1", "tides.txt")
            await queued(r, env, "d1", b"First paragraph about tides.\n\nSecond paragraph about cliffs.")
            handler = EmbedHandler(r, HashEmbedder(dim=16), EmbedderSettings(_env_file=None))
            out = list(await handler([env]))
            return await events_of(r, env), out, await r.hgetall(keys.document("d1").hash)
        finally:
            await r.aclose()

    events, (out,), doc = asyncio.run(main())
    chunks = int(doc[b"chunks"])
    assert events == [
        ("queued", {}),
        ("parsing", {"document_id": "d1", "filename": "tides.txt"}),
        ("parsed", {"document_id": "d1", "pages": 1, "chunks_total": chunks, "parts": 1}),
    ]
    # The rest rides on the message's commit: the part's progress, then (joined) indexing.
    assert isinstance(out, Output)
    embedded = {"document_id": "d1", "part": 0, "parts": 1, "chunks_embedded": chunks, "chunks_total": chunks}
    assert out.part_events == [("embedded", embedded)]
    done = {"document_id": "d1", "chunks_embedded": chunks, "chunks_total": chunks}
    assert out.events == [("indexing", done)]


def test_each_part_reports_the_documents_chunks_embedded_so_far(valkey_url: str) -> None:
    async def main() -> tuple[Output, list[object], list[Any]]:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            env = ingest("big", "big.txt")
            await queued(r, env, "big", "\n\n".join(PARAGRAPHS).encode())
            settings = EmbedderSettings(_env_file=None, chunk_size_words=10, ingest_part_chunks=4)
            handler = EmbedHandler(r, HashEmbedder(dim=16), settings)
            (split,) = await handler([env])
            assert isinstance(split, Output)
            parts = [env.model_copy(update={"payload": p}) for p in split.split]
            # Two reads: the second's parts count the first's.
            embedded = list(await handler(parts[:2])) + list(await handler(parts[2:]))
            return split, embedded, await events_of(r, env)
        finally:
            await r.aclose()

    split, embedded, events = asyncio.run(main())
    total = split.split[0]["chunks_total"]
    n = len(split.split)
    assert [t for t, _ in events] == ["queued", "parsing", "parsed"]
    assert events[2][1] == {"document_id": "big", "pages": 1, "chunks_total": total, "parts": n}
    reported = []
    for out in embedded:
        assert isinstance(out, Output)
        [(kind, data)] = out.part_events
        assert kind == "embedded" and data["chunks_total"] == total and data["parts"] == n
        reported.append(data["chunks_embedded"])
    sizes = [len(p["chunks"]) for p in split.split]
    assert reported == [sum(sizes[: k + 1]) for k in range(n)]
    assert reported[-1] == total


def test_nothing_is_written_for_a_job_that_ended(valkey_url: str) -> None:
    async def main() -> list[Any]:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            env = ingest("d2", "gone.txt")
            await queued(r, env, "d2", b"Some text about a cancelled upload.", status="cancelled")
            handler = EmbedHandler(r, HashEmbedder(dim=16), EmbedderSettings(_env_file=None))
            await handler([env])
            return await events_of(r, env)
        finally:
            await r.aclose()

    assert asyncio.run(main()) == [("queued", {})]


def test_a_document_of_very_many_parts_reports_every_kth_and_its_last() -> None:
    assert all(progress.reports(p, 10) for p in range(10))
    parts = 5 * PROGRESS_EVENTS_MAX + 3
    reported = [p for p in range(parts) if progress.reports(p, parts)]
    assert len(reported) <= PROGRESS_EVENTS_MAX + 1
    assert reported[-1] == parts - 1 and reported[0] == 5
