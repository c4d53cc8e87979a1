"""A job queued at a stage joins its tenant to that lane's set of tenants, on both lanes,
and a tenant new to the set is announced once (``JoinLane``, ``COMMIT``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from libs.common.commit import CommitBatch, Enqueue, JoinLane
from libs.common.constants import BULK, INTERACTIVE, JOINED_MAXLEN
from libs.common.envelope import Envelope, JobKind, enqueue
from libs.common.keys import Lane, Partition
from libs.common.scripts import Commit

P0 = Partition(0)


@pytest.mark.parametrize(("kind", "lane"), [("chat", INTERACTIVE), ("ingest", BULK)])
def test_queueing_a_job_joins_its_tenant_to_its_lane_at_the_stage(kind: JobKind, lane: Lane) -> None:
    env = Envelope.new(kind, "docs", {}, 60, tenant="acme", route=["retriever"])
    queued, joining = enqueue(env)
    assert queued == Enqueue(P0.stream("retriever", lane, "acme"), env.dumps())
    assert joining == JoinLane(P0.tenants("retriever", lane), "acme", P0.joined("retriever", lane))


def test_a_commit_names_both_keys_of_a_join_by_their_index() -> None:
    batch = CommitBatch("in")
    batch.add("1-0", [JoinLane("tenants", "acme", "joined"), JoinLane("tenants", "globex", "joined")])
    assert batch.keys == ["in", "tenants", "joined"]
    ops = json.loads(batch.payload())[0]["ops"]
    assert ops == [["JOINLANE", 2, "acme", 3, JOINED_MAXLEN], ["JOINLANE", 2, "globex", 3, JOINED_MAXLEN]]


def test_a_tenant_is_announced_only_as_it_joins(valkey: redis.Redis, valkey_url: str) -> None:
    async def commit_joins(tenants: list[str]) -> None:
        r = aioredis.Redis.from_url(valkey_url)
        batch = CommitBatch("tenants")
        for tenant in tenants:
            batch.add("", [JoinLane("tenants", tenant, "joined")])
        await Commit(r)(batch, group="g")
        await r.aclose()

    asyncio.run(commit_joins(["acme", "acme"]))
    asyncio.run(commit_joins(["acme", "globex"]))
    assert valkey.smembers("tenants") == {b"acme", b"globex"}
    entries: Any = valkey.xrange("joined")
    assert [fields[b"tenant"] for _id, fields in entries] == [b"acme", b"globex"]
