"""The answer cache's key normalisation, and its lookup against a real Valkey."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from starlette.datastructures import Headers

from libs.common import constants, events, keys
from libs.common.access import Access
from libs.common.jobs import JobStore
from libs.common.keys import KeySpace
from libs.common.settings import GatewaySettings
from services.gateway.answer_cache import (
    PAYLOAD_FIELD,
    AnswerCache,
    bypass_requested,
    normalise_question,
    request_digest,
)

SPACE = KeySpace()
ACCESS = Access()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("How do I reset the device?", "how do i reset the device"),
        ("  How   do I\treset\nthe DEVICE ?!  ", "how do i reset the device"),
        ("Straße...", "strasse"),
        ("¿Dónde está?", "¿dónde está"),
        ("v1.2", "v1.2"),
        ("???", ""),
    ],
)
def test_questions_are_casefolded_collapsed_and_lose_trailing_punctuation(text: str, expected: str) -> None:
    assert normalise_question(text) == expected


def payload(question: str, **extra: Any) -> dict[str, Any]:
    return {"question": question, "query": question, "top_k": 5, **extra}


def test_the_digest_covers_the_normalised_question_and_every_parameter() -> None:
    base = request_digest(payload("How do I reset the device?"))
    assert request_digest(payload("how do i  reset the device")) == base
    assert request_digest(payload("How do I reset the router?")) != base
    assert request_digest(payload("How do I reset the device?", top_k=6)) != base
    history = [{"role": "user", "content": "Tell me about the device"}]
    with_history = request_digest(payload("How do I reset it?", history=history))
    assert with_history != request_digest(payload("How do I reset it?"))
    assert with_history == request_digest(payload("how do I reset it", history=history))
    other = [{"role": "user", "content": "Tell me about the router"}]
    assert with_history != request_digest(payload("How do I reset it?", history=other))
    # The entry a job carries is not part of what it asks.
    assert request_digest(payload("How do I reset the device?", **{PAYLOAD_FIELD: {"key": "k"}})) == base


@pytest.mark.parametrize(
    ("headers", "bypass"),
    [
        ({}, False),
        ({"Cache-Control": "no-cache"}, True),
        ({"Cache-Control": "max-age=0, No-Cache"}, True),
        ({"Cache-Control": "max-age=60"}, False),
        ({"X-DocuMind-Cache": "bypass"}, True),
        ({"X-DocuMind-Cache": "use"}, False),
    ],
)
def test_the_bypass_headers(headers: dict[str, str], bypass: bool) -> None:
    assert bypass_requested(Headers(headers)) is bypass


def test_a_miss_names_the_entry_and_a_hit_is_a_finished_job(valkey_url: str) -> None:
    settings = GatewaySettings(_env_file=None, answer_cache_ttl_s=60)  # type: ignore[call-arg]

    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            cache, jobs = AnswerCache(r, settings), JobStore(r)
            assert await cache.lookup(ACCESS, "docs", payload("Where?")) is None  # no such collection
            await r.hset(SPACE.collection("docs").meta, mapping={"name": "docs", "created_at": "123.5"})

            asked = payload("Where is the reset button?")
            assert await cache.lookup(ACCESS, "docs", asked) is None
            entry = asked[PAYLOAD_FIELD]
            assert entry["ttl_s"] == 60
            assert entry["key"].startswith(SPACE.collection("docs").answer("123.5", "0", ""))
            # As the generator's commit writes it.
            result = {"answer": "Behind the cover [1].", "citations": [], "mode": "extractive"}
            await r.set(entry["key"], json.dumps({**result, "cached": True}), ex=60)

            env = await cache.lookup(ACCESS, "docs", payload("where is the  reset button"))
            assert env is not None
            job = await jobs.wait(env.job_id, 1)
            assert job is not None
            assert job["status"] == "done" and job["result"] == {**result, "cached": True}
            assert set(job["timings"]) == {"cache"} and job["kind"] == "chat"
            assert await r.ttl(keys.job(env.job_id).hash) > 0
            finished: Any = await r.xrange(keys.job(env.job_id).done)
            assert len(finished) == 1 and finished[0][1][b"status"] == b"done"
            kinds = [(e.type, e.data) for e in await events.history(r, env.job_id)]
            assert kinds == [("queued", {"status": "queued"}), ("done", {**result, "cached": True})]

            # Bypassed: a miss that still names the entry, so the fresh answer refreshes it.
            fresh = payload("Where is the reset button?")
            assert await cache.lookup(ACCESS, "docs", fresh, bypass=True) is None
            assert fresh[PAYLOAD_FIELD]["key"] == entry["key"]

            # The collection changed: the same question misses, under a new key.
            await r.hincrby(SPACE.collection("docs").meta, constants.COLLECTION_VERSION_FIELD, 1)
            again = payload("Where is the reset button?")
            assert await cache.lookup(ACCESS, "docs", again) is None
            assert again[PAYLOAD_FIELD]["key"] != entry["key"]
            assert again[PAYLOAD_FIELD]["key"].startswith(SPACE.collection("docs").answer("123.5", "1", ""))
        finally:
            await r.aclose()

    asyncio.run(main())


def test_with_the_cache_off_nothing_is_looked_up(valkey_url: str) -> None:
    settings = GatewaySettings(_env_file=None, answer_cache_ttl_s=0)  # type: ignore[call-arg]

    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            await r.hset(SPACE.collection("docs").meta, mapping={"name": "docs", "created_at": "1.0"})
            asked = payload("Where?")
            assert await AnswerCache(r, settings).lookup(ACCESS, "docs", asked) is None
            assert PAYLOAD_FIELD not in asked
        finally:
            await r.aclose()

    asyncio.run(main())
