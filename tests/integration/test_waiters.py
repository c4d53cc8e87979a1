"""Waiters that scale (issue 13.3): event streams and ``?wait=`` share a few connections.

Against a real Valkey (one server, and a Valkey Cluster with 3 partitions: the
``backend`` fixture) and a real gateway process. The full figure (2,000 streams and
2,000 waiters) is ``bench.waiters``'s; here ``DOCUMIND_TEST_WAITERS`` of each (300 by
default: together twelve times the gateway's pool of 50) run the same code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from bench.waiters import follow_events, following, gateway_connections, hold
from libs.common.admin_key import API_KEY_ENV
from tests.auth import ADMIN_KEY
from tests.integration.backends import Backend
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(600)

WAITERS = int(os.environ.get("DOCUMIND_TEST_WAITERS", "300"))
POOL = 50
READERS = 2
COLLECTION = "waits"


@pytest.fixture
def stack(backend: Backend, tmp_path: Path) -> Iterator[Stack]:
    """A gateway alone (no worker yet: every job it queues stays queued)."""
    s = Stack(
        backend.url,
        tmp_path,
        **backend.env,
        DOCUMIND_VALKEY_POOL_SIZE=str(POOL),
        DOCUMIND_WAITER_CONNECTIONS=str(READERS),
        DOCUMIND_TENANT_MAX_INFLIGHT=str(max(1000, 2 * WAITERS)),
        DOCUMIND_TENANT_MAX_INTERACTIVE=str(max(1000, 2 * WAITERS)),
    )
    try:
        s.start("gateway")
        s.wait_healthy()
        yield s
    finally:
        s.stop()


def queue_chats(stack: Stack, n: int) -> list[str]:
    with stack.client(timeout=30) as client:
        assert client.post("/v1/collections", json={"name": COLLECTION}).status_code == 201
        ids = []
        for i in range(n):
            resp = client.post("/v1/chat", json={"question": f"Question {i}?", "collection": COLLECTION})
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["job_id"])
    return ids


async def gateway_follows(stack: Stack, streams: int, timeout_s: float = 120) -> None:
    """Until the gateway's waiters follow ``streams`` streams (its ``documind_waiters``)."""
    async with httpx.AsyncClient(timeout=5) as client, asyncio.timeout(timeout_s):
        while True:
            if following((await client.get(stack.gateway_metrics_url)).text) >= streams:
                return
            await asyncio.sleep(0.05)  # polling the gauge: it has no event to block on


def test_hundreds_of_streams_and_waiters_share_a_few_connections_and_get_every_final_status(
    stack: Stack, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_ENV, ADMIN_KEY)  # bench.client.Http's key
    job_ids = queue_chats(stack, WAITERS)
    seen: dict[str, int] = {}

    async def while_held() -> None:
        # Each job's events stream and done stream.
        await gateway_follows(stack, 2 * WAITERS)
        for url in backend.node_urls:  # a cluster's: on every node
            seen.update(await gateway_connections(url))

    async def release() -> None:
        for name in ("embedder", "retriever", "generator"):
            stack.start(name)

    held = asyncio.run(hold(stack.port, stack.headers, job_ids, release, ordinary=100, while_held=while_held))

    # Its readers (every job is in one partition) and the connection that wakes them; on
    # a cluster the waiters' client also keeps one to the node it read the slot map from.
    assert seen["documind-gateway-waiters"] <= READERS + 1 + backend.cluster, seen
    assert seen["documind-gateway"] <= POOL * len(backend.node_urls), seen
    # Ordinary requests answered while every stream and waiter was held.
    assert held.ordinary_status == {200: 100}
    assert max(held.ordinary_s) < 5, sorted(held.ordinary_s)[-5:]
    # Every stream got the whole job, tokens included, and ended with its final event.
    unfinished = [s for s in held.streams if not s or s[0] != "queued" or s[-1] != "done"]
    assert not unfinished, (len(unfinished), unfinished[:3], stack.logs())
    assert all("generating" in s and "token" in s for s in held.streams)
    assert held.waits == ["done"] * WAITERS


def test_a_full_pool_is_a_503_with_retry_after_and_cuts_no_stream(backend: Backend, tmp_path: Path) -> None:
    # One pooled connection (per node on a cluster), given up on after 50 ms (at once
    # on a cluster); keep-alives every 0.2 s.
    s = Stack(
        backend.url,
        tmp_path,
        **backend.env,
        DOCUMIND_VALKEY_POOL_SIZE="1",
        DOCUMIND_VALKEY_POOL_WAIT_S="0.05",
        DOCUMIND_SSE_KEEPALIVE_S="0.2",
    )
    try:
        s.start("gateway")
        s.wait_healthy()
        (job_id,) = queue_chats(s, 1)

        async def main() -> list[str]:
            started = asyncio.Event()
            stream = asyncio.create_task(follow_events(s.port, job_id, s.headers, started.set))
            await started.wait()  # its first event, `queued`, came
            # Every command waits a second (on every node): the pooled connections stay busy.
            for url in backend.node_urls:
                admin = aioredis.Redis.from_url(url)
                try:
                    await admin.client_pause(1000, all=True)
                finally:
                    await admin.aclose()
            async with httpx.AsyncClient(base_url=s.url, headers=s.headers, timeout=30) as client:
                answers = await asyncio.gather(*(client.get("/v1/collections") for _ in range(10)))
                refused = [a for a in answers if a.status_code == 503]
                assert refused, [a.status_code for a in answers]
                assert {a.status_code for a in answers} <= {200, 503}
                assert all(int(a.headers["Retry-After"]) > 0 for a in refused)
                assert not stream.done()  # keep-alives went on while the pool was full
                assert (await client.delete(f"/v1/jobs/{job_id}")).status_code == 200
            return await stream

        assert asyncio.run(main()) == ["queued", "cancelled"]
    finally:
        s.stop()
