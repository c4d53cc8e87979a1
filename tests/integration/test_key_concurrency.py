"""One key's flood, or a flood of made-up keys, leaves the other tenants the gateway's pool.

A real Valkey and a real gateway process with a pool of 4 connections. Valkey is paused
(CLIENT PAUSE) while a flood of concurrent requests comes, so that whatever the flood
admits holds its pooled connection for the whole pause: before the per-key bound the
flood took all 4 and another tenant's request was refused with 503; now the flooder
holds one place (``DOCUMIND_KEY_MAX_CONCURRENT=1``), the made-up keys share one
(``DOCUMIND_UNVERIFIED_KEY_MAX_CONCURRENT=1``), the rest of the flood is refused with
429 after ``DOCUMIND_KEY_QUEUE_WAIT_S``, and the other tenant's requests are answered
once the pause ends. The test waits on responses, never on time.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from libs.common.admin_key import auth_headers
from libs.common.valkey_server import ValkeyServer
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(300)

FLOOD = 100
# Longer than anything the test waits for meanwhile (the flood's first refusals come
# after the queue wait, 0.2 s; a request of the old code waited 0.2 s for the pool).
PAUSE_MS = 3000
VICTIM_REQUESTS = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("key-concurrency")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(
            server.url,
            tmp,
            DOCUMIND_VALKEY_POOL_SIZE="4",
            DOCUMIND_VALKEY_POOL_WAIT_S="0.2",
            DOCUMIND_KEY_MAX_CONCURRENT="1",
            DOCUMIND_UNVERIFIED_KEY_MAX_CONCURRENT="1",
            DOCUMIND_KEY_QUEUE_WAIT_S="0.2",
        )
        try:
            s.start("gateway")
            s.wait_healthy()
            yield s
        finally:
            s.stop()


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, str]:
    """A flooding tenant's key and a victim's, each seen to work once (so known)."""
    made = {}
    with stack.client(timeout=30) as operator:
        for tenant in ("evil", "victim"):
            resp = operator.post("/v1/keys", json={"name": tenant, "tenant": tenant, "role": "writer"})
            assert resp.status_code == 201, resp.text
            made[tenant] = resp.json()["key"]
    for key in made.values():
        assert httpx.get(f"{stack.url}/v1/collections", headers=auth_headers(key)).status_code == 200
    return made


def bogus(i: int) -> str:
    """A well-formed key no gateway made (each a distinct credential)."""
    return f"dm_{i:016x}_" + "A" * 43


async def pause_valkey(stack: Stack) -> None:
    admin = aioredis.Redis.from_url(stack.valkey_url)
    try:
        await admin.client_pause(PAUSE_MS, all=True)
    finally:
        await admin.aclose()


async def flood_and_ask(
    stack: Stack, flooder_keys: list[str], victim: str, paths: tuple[str, ...] = ("/v1/collections",)
) -> tuple[Counter[int], list[httpx.Response], list[int]]:
    """While Valkey is paused, ``flooder_keys`` (one request each, in waves until the victim is
    done) flood; once the flood's first refusal came, the victim asks one request after another.
    Returns the flood's statuses, its refusals, and the victim's statuses."""
    statuses: Counter[int] = Counter()
    refused: list[httpx.Response] = []
    first_refusal = asyncio.Event()
    victim_done = asyncio.Event()
    limits = httpx.Limits(max_connections=len(flooder_keys) + 10, max_keepalive_connections=len(flooder_keys))
    async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits) as client:

        async def one(i: int, key: str) -> None:
            resp = await client.get(paths[i % len(paths)], headers=auth_headers(key))
            statuses[resp.status_code] += 1
            if resp.status_code >= 400:
                refused.append(resp)
                first_refusal.set()

        async def flood() -> None:
            while not victim_done.is_set():
                await asyncio.gather(*(one(i, key) for i, key in enumerate(flooder_keys)))

        async def ask() -> list[int]:
            try:
                await first_refusal.wait()
                got = []
                for _ in range(VICTIM_REQUESTS):
                    resp = await client.get("/v1/collections", headers=auth_headers(victim))
                    got.append(resp.status_code)
                return got
            finally:
                victim_done.set()

        await pause_valkey(stack)
        async with asyncio.timeout(120):
            _, victim_statuses = await asyncio.gather(flood(), ask())
    return statuses, refused, victim_statuses


def refusals(stack: Stack, reason: str) -> float:
    text = httpx.get(stack.gateway_metrics_url, timeout=10).text
    found = re.search(rf'^documind_key_concurrency_refusals_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_one_key_flooding_gets_429s_and_another_tenant_is_answered(
    stack: Stack, keys: dict[str, str]
) -> None:
    flooder = [keys["evil"]] * FLOOD
    statuses, refused, victim = asyncio.run(
        flood_and_ask(stack, flooder, keys["victim"], paths=("/v1/collections", "/v1/models"))
    )

    assert victim == [200] * VICTIM_REQUESTS, (victim, stack.logs()[-3000:])
    assert 503 not in statuses, statuses
    assert statuses[429] > 0 and set(statuses) <= {200, 429}, statuses
    for resp in refused:
        assert int(resp.headers["Retry-After"]) > 0
        body = resp.json()
        if resp.request.url.path == "/v1/models":  # the OpenAI facade's shape
            assert body["error"]["code"] == "rate_limit_exceeded", body
            message = body["error"]["message"]
        else:
            message = body["detail"]
        assert message.startswith("too many requests of this API key in progress at once (limit 1)")
    assert refusals(stack, "key") >= statuses[429]


def test_a_flood_of_made_up_keys_does_not_make_a_known_key_fail(stack: Stack, keys: dict[str, str]) -> None:
    statuses, refused, victim = asyncio.run(
        flood_and_ask(stack, [bogus(i) for i in range(FLOOD)], keys["victim"])
    )

    assert victim == [200] * VICTIM_REQUESTS, (victim, stack.logs()[-3000:])
    # Each made-up key is refused: as unknown once looked up, or as one of too many
    # unverified keys in line for a lookup (never a 503 for a full pool).
    assert statuses[429] > 0 and set(statuses) <= {401, 429}, statuses
    assert all(int(r.headers["Retry-After"]) > 0 for r in refused if r.status_code == 429)
    assert refusals(stack, "unverified") >= statuses[429]


def test_a_keys_waits_and_streams_hold_none_of_its_places(stack: Stack) -> None:
    with stack.client(timeout=30) as operator:
        resp = operator.post("/v1/keys", json={"name": "waiter", "tenant": "waiter", "role": "writer"})
        assert resp.status_code == 201, resp.text
        key = resp.json()["key"]
    headers = auth_headers(key)

    async def main() -> tuple[list[int], str, list[str]]:
        async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=60) as client:
            assert (await client.post("/v1/collections", json={"name": "w"})).status_code == 201
            # No worker runs: the job stays queued, its stream and its waiter stay open.
            chat = await client.post("/v1/chat", json={"question": "Anyone?", "collection": "w"})
            assert chat.status_code == 202, chat.text
            job_id = chat.json()["job_id"]
            streamed: list[str] = []
            first_event = asyncio.Event()

            async def stream() -> None:
                async with client.stream("GET", f"/v1/jobs/{job_id}/events") as events:
                    assert events.status_code == 200
                    async for line in events.aiter_lines():
                        if line.startswith("event: "):
                            streamed.append(line.removeprefix("event: "))
                            first_event.set()

            streaming = asyncio.create_task(stream())
            waiting = asyncio.create_task(client.get(f"/v1/jobs/{job_id}", params={"wait": 30}))
            await first_event.wait()
            await waiters_follow(stack, 2)  # the stream's and the wait's
            # The key's one place is free: of two requests, one is answered (once the
            # pause ends) and the other, in line behind it, is refused.
            await pause_valkey(stack)
            both = await asyncio.gather(client.get("/v1/collections"), client.get("/v1/collections"))
            assert (await client.delete(f"/v1/jobs/{job_id}")).status_code == 200
            waited = await waiting
            await streaming
            return sorted(r.status_code for r in both), waited.json()["status"], streamed

    statuses, waited, streamed = asyncio.run(main())
    assert statuses == [200, 429]
    assert waited == "cancelled" and streamed == ["queued", "cancelled"]


async def waiters_follow(stack: Stack, streams: int) -> None:
    """Until the gateway's fan-out follows ``streams`` streams (its ``documind_waiters``)."""
    async with httpx.AsyncClient(timeout=5) as client, asyncio.timeout(60):
        while True:
            text = (await client.get(stack.gateway_metrics_url)).text
            found = re.search(r"^documind_waiters (\S+)$", text, re.M)
            if found and float(found.group(1)) >= streams:
                return
            await asyncio.sleep(0.05)  # polling the gauge: it has no event to block on
