"""A job queued at a stage joins its tenant to that lane's set of tenants, on both lanes,
and is announced on the stage's arrivals stream when its tenant is new to the set or its
stream was empty (``JoinLane`` in ``COMMIT``, and ``SUBMIT``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from libs.common.commit import CommitBatch, Enqueue, JoinLane
from libs.common.constants import ARRIVALS_MAXLEN, BULK, INTERACTIVE
from libs.common.envelope import Envelope, JobKind, enqueue
from libs.common.jobs import JobStore
from libs.common.keys import DEFAULT_TENANT, Lane, Partition
from libs.common.scripts import Commit

P0 = Partition(0)


@pytest.mark.parametrize(("kind", "lane"), [("chat", INTERACTIVE), ("ingest", BULK)])
def test_queueing_a_job_joins_its_tenant_to_its_lane_at_the_stage(kind: JobKind, lane: Lane) -> None:
    env = Envelope.new(kind, "docs", {}, 60, tenant="acme", route=["retriever"])
    queued, joining = enqueue(env)
    stream = P0.stream("retriever", lane, "acme")
    assert queued == Enqueue(stream, env.dumps())
    tenants, arrivals = P0.tenants("retriever", lane), P0.arrivals("retriever", lane)
    assert joining == JoinLane(tenants, "acme", arrivals, stream, True)
    # The default tenant's stream is always read: announced only as it joins.
    default = Envelope.new(kind, "docs", {}, 60, route=["retriever"])
    assert enqueue(default)[1] == JoinLane(tenants, DEFAULT_TENANT, arrivals, default.stream, False)


def test_a_commit_names_every_key_of_a_join_by_its_index() -> None:
    batch = CommitBatch("in")
    batch.add("1-0", [JoinLane("tenants", "acme", "arrivals", "s1", True)])
    batch.add("2-0", [JoinLane("tenants", "globex", "arrivals", "s2", False)])
    assert batch.keys == ["in", "tenants", "arrivals", "s1", "s2"]
    ops = [json.loads(batch.payload())[i]["ops"] for i in (0, 1)]
    assert ops == [
        [["JOINLANE", 2, "acme", 3, 4, ARRIVALS_MAXLEN, 1]],
        [["JOINLANE", 2, "globex", 3, 5, ARRIVALS_MAXLEN, 0]],
    ]


def announced(valkey: redis.Redis, key: str) -> list[bytes]:
    entries: Any = valkey.xrange(key)
    return [fields[b"tenant"] for _id, fields in entries]


def test_work_is_announced_as_its_tenant_joins_or_finds_its_stream_empty(
    valkey: redis.Redis, valkey_url: str
) -> None:
    key = P0.arrivals("retriever", INTERACTIVE)

    async def forward(*envs: Envelope) -> None:
        """Queue ``envs`` at the retriever in one commit, as the embedder hands them on."""
        r = aioredis.Redis.from_url(valkey_url)
        batch = CommitBatch(P0.key("in"))
        for env in envs:
            batch.add("", enqueue(env))
        await Commit(r)(batch, group="g")
        await r.aclose()

    def question(tenant: str) -> Envelope:
        return Envelope.new("chat", "docs", {}, 60, tenant=tenant, route=["retriever"])

    asyncio.run(forward(question("acme"), question("acme"), question(DEFAULT_TENANT)))
    # Each tenant as it joins, once.
    assert announced(valkey, key) == [b"acme", b"default"]
    # acme's stream still holds its two: nothing new to tell; the default tenant's is always read.
    asyncio.run(forward(question("acme"), question(DEFAULT_TENANT)))
    assert announced(valkey, key) == [b"acme", b"default"]
    # acme's stream emptied (its entries handled): its next question is announced again.
    valkey.delete(P0.stream("retriever", INTERACTIVE, "acme"))
    asyncio.run(forward(question("acme")))
    assert announced(valkey, key) == [b"acme", b"default", b"acme"]


def test_a_submitted_question_is_announced_as_a_forwarded_one_is(
    valkey: redis.Redis, valkey_url: str
) -> None:
    async def submit(tenant: str) -> None:
        r = aioredis.Redis.from_url(valkey_url)
        env = Envelope.new("search", "c1", {"query": "q"}, 60, tenant=tenant)
        assert await JobStore(r).submit(env, max_backlog=1000) == "ok"
        await r.aclose()

    for tenant in ("acme", "acme", DEFAULT_TENANT, DEFAULT_TENANT):
        asyncio.run(submit(tenant))
    key = P0.arrivals("embedder", INTERACTIVE)
    assert announced(valkey, key) == [b"acme", b"default"]
    valkey.delete(P0.stream("embedder", INTERACTIVE, "acme"))
    asyncio.run(submit("acme"))
    assert announced(valkey, key) == [b"acme", b"default", b"acme"]
