"""The embedder's handler with its parse sandbox: same chunks, stops when unwanted, limits per upload."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from libs.common import keys
from libs.common.envelope import Envelope
from libs.common.errors import JobEnded, PermanentError
from libs.common.settings import EmbedderSettings
from libs.common.stage import Output
from services.embedder.handler import EmbedHandler
from tests import hostile
from tests.services.embedder.test_handler import CountingEmbedder, ingest, query

SLOW_PDF = hostile.shared_stream_pdf(pages=200)  # about 0.5 s a page, no text
TEXT = "\n\n".join(f"Paragraph {n} tells of harbour {n} and its granite lighthouse." for n in range(40))


def settings(**values: Any) -> EmbedderSettings:
    return EmbedderSettings(_env_file=None, chunk_size_words=10, chunk_overlap_words=2, **values)


async def stored(r: aioredis.Redis, envs: list[Envelope], blobs: list[bytes]) -> None:
    for env, blob in zip(envs, blobs, strict=True):
        await r.set(keys.document(env.payload["document_id"]).blob, blob)
        await r.hset(env.job_keys.hash, mapping={"status": "queued"})


def test_an_upload_over_the_inline_size_is_parsed_in_a_child_to_the_same_chunks(valkey_url: str) -> None:
    async def main() -> tuple[list[object], list[object], int]:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            envs = [ingest("d1", "a.txt")]
            await stored(r, envs, [TEXT.encode()])
            here = await EmbedHandler(r, CountingEmbedder(), settings())(envs)
            await stored(r, envs, [TEXT.encode()])
            boxed = EmbedHandler(r, CountingEmbedder(), settings(parse_inline_bytes=0))
            started: list[object] = []
            start = boxed.sandbox._start

            def counting(proc: Any, theirs: Any) -> None:
                started.append(proc)
                start(proc, theirs)

            boxed.sandbox._start = counting  # type: ignore[method-assign]
            there = await boxed(envs)
            return list(here), list(there), len(started)
        finally:
            await r.aclose()

    here, there, children = asyncio.run(main())
    assert children == 1
    (a,), (b,) = here, there
    assert isinstance(a, Output) and isinstance(b, Output)
    assert len(a.split) > 1  # a document of several parts
    assert a.split == b.split


def test_one_hostile_upload_fails_alone_naming_the_limit(valkey_url: str) -> None:
    async def main() -> tuple[list[object], float]:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            envs = [ingest("slow", "slow.pdf"), ingest("ok", "ok.pdf")]
            await stored(r, envs, [SLOW_PDF, hostile.text_pdf("The keeper lit the lamp.")])
            handler = EmbedHandler(r, CountingEmbedder(), settings(parse_timeout_s=1))
            started = time.monotonic()
            out = await handler([*envs, query("lamp")])
            return list(out), time.monotonic() - started
        finally:
            await r.aclose()

    (slow, ok, question), elapsed = asyncio.run(main())
    assert isinstance(slow, PermanentError)
    assert slow.message == "parsing took longer than 1 s (DOCUMIND_PARSE_TIMEOUT_S)"
    assert isinstance(ok, Output) and ok.payload["chunks"][0]["text"] == "The keeper lit the lamp."
    assert isinstance(question, dict) and "vector" in question
    assert elapsed < 5


async def parse_until(r: aioredis.Redis, change: Any) -> tuple[object, float]:
    """Start parsing the slow PDF, make ``change`` once its child runs; the outcome and
    how long after the change the handler answered."""
    env = ingest("slow", "slow.pdf")
    await stored(r, [env], [SLOW_PDF])
    handler = EmbedHandler(r, CountingEmbedder(), settings())
    task = asyncio.ensure_future(handler([env]))
    deadline = time.monotonic() + 10
    while not handler.sandbox.running:
        assert time.monotonic() < deadline, "no parse started"
        await asyncio.sleep(0.01)
    await change(env)
    started = time.monotonic()
    (outcome,) = await task
    assert not handler.sandbox.running
    return outcome, time.monotonic() - started


def test_cancelling_the_job_stops_its_parse(valkey_url: str) -> None:
    async def main() -> tuple[object, float]:
        r = aioredis.Redis.from_url(valkey_url)
        try:

            async def cancel(env: Envelope) -> None:
                await r.hset(env.job_keys.hash, "status", "cancelled")

            return await parse_until(r, cancel)
        finally:
            await r.aclose()

    outcome, elapsed = asyncio.run(main())
    assert isinstance(outcome, JobEnded) and "cancelled" in outcome.message
    assert elapsed < 1


def test_deleting_the_document_stops_its_parse(valkey_url: str) -> None:
    async def main() -> tuple[object, float]:
        r = aioredis.Redis.from_url(valkey_url)
        try:

            async def delete(env: Envelope) -> None:
                await r.delete(keys.document(env.payload["document_id"]).blob)

            return await parse_until(r, delete)
        finally:
            await r.aclose()

    outcome, elapsed = asyncio.run(main())
    assert isinstance(outcome, PermanentError)
    assert outcome.message == "the document was deleted while it was being parsed"
    assert elapsed < 1
