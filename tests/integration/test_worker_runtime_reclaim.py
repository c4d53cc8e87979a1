"""The stream runtime against a real Valkey server: messages reclaimed from a stalled
consumer, a late duplicate of one, and one delivered too often."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from libs.common import constants, keys
from libs.common.envelope import Envelope
from libs.common.jobflow import Message
from libs.common.jobs import JobStore
from libs.common.worker import Worker
from tests.integration.worker_runtime import P0, Recorder, run, settings, submit, with_workers


def test_late_duplicate_of_a_reclaimed_message_changes_nothing(valkey_url: str) -> None:
    """Two consumers finish the same message: only the first hands it on."""

    async def body(r: aioredis.Redis) -> None:
        handler = Recorder(lambda e: {"hits": ["x"]})
        w1 = Worker(r, constants.RETRIEVER, handler, settings(consumer="one"))
        w2 = Worker(r, constants.RETRIEVER, handler, settings(consumer="two"))
        await w1.ensure_group()
        env = Envelope.new("search", "c1", {"vector": "v"}, 60)
        env = env.model_copy(update={"route": [constants.RETRIEVER]})
        assert await JobStore(r).submit(env, max_backlog=10) == "ok"
        first = await w1.read()
        # w2 reclaims it (as if w1 had stalled) and both process it.
        _, claimed, _ = await r.xautoclaim(
            P0.stream(constants.RETRIEVER, constants.INTERACTIVE), w2.group, "two", 0, "0-0"
        )
        second = [Message(first[0].id, first[0].raw, first[0].env, 2, time.time(), first[0].stream)]
        assert len(claimed) == 1
        await w2.process(second)
        await w1.process(first)
        assert await r.xlen(keys.job(env.job_id).done) == 1
        job = await JobStore(r).get(env.job_id)
        assert job is not None and job["status"] == "done"

    run(body, valkey_url)


def test_message_redelivered_too_often_is_dead_lettered(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        handler = Recorder(lambda e: {"hits": []})
        w = Worker(r, constants.EMBEDDER, handler, settings(max_attempts=2, visibility_timeout_s=0.01))
        await w.ensure_group()
        env = await submit(r)
        # Two consumers read the message and die without acknowledging it.
        await r.xreadgroup(
            w.group, "dead-1", {P0.stream(constants.EMBEDDER, constants.INTERACTIVE): ">"}, count=1
        )
        await r.xautoclaim(P0.stream(constants.EMBEDDER, constants.INTERACTIVE), w.group, "dead-2", 0, "0-0")
        job = await with_workers([w], lambda: JobStore(r).wait(env.job_id, 10))
        assert job["status"] == "failed"
        assert "delivered 2 times without completing" in job["error"]
        assert handler.seen == []

    run(body, valkey_url)
