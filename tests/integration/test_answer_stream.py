"""The generator's answer stream on a real Valkey: round trips only for answers that take time."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis

from libs.common import constants, keys
from libs.common.envelope import Envelope
from services.generator.events import ValkeyAnswerStream


def chat() -> Envelope:
    return Envelope.new("chat", "c1", {"question": "q"}, 60)


async def written(r: aioredis.Redis, env: Envelope) -> list[tuple[str, dict[str, Any]]]:
    entries: Any = await r.xrange(keys.job(env.job_id).events)
    return [(f[b"type"].decode(), json.loads(f[b"data"])) for _id, f in entries]


def test_an_answer_complete_within_the_flush_interval_writes_nothing_before_its_commit(
    valkey_url: str,
) -> None:
    async def body() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            stream = ValkeyAnswerStream(r, ttl_s=60, flush_interval_s=30)
            env = chat()
            await stream.started(env)
            for piece in ("The ", "ferry ", "leaves ", "at ", "nine."):
                await stream.token(env, piece)
            pending = await stream.finished(env)
            assert await written(r, env) == []  # no round trip of its own
            assert pending == [
                ("generating", {"stage": constants.GENERATOR}),
                ("token", {"text": "The ferry leaves at nine."}),
            ]
        finally:
            await r.aclose()

    asyncio.run(body())


def test_a_streaming_answer_announces_generation_with_its_first_flush(valkey_url: str) -> None:
    async def body() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            stream = ValkeyAnswerStream(r, ttl_s=60, flush_interval_s=0)  # every piece is due
            env = chat()
            await stream.started(env)
            assert await written(r, env) == []
            await stream.token(env, "The ")
            assert await written(r, env) == [
                ("generating", {"stage": constants.GENERATOR}),
                ("token", {"text": "The "}),
            ]
            await stream.token(env, "end.")
            assert (await written(r, env))[-1] == ("token", {"text": "end."})
            assert await stream.finished(env) == []  # nothing left for the commit
            assert await r.ttl(keys.job(env.job_id).events) > 0
        finally:
            await r.aclose()

    asyncio.run(body())
