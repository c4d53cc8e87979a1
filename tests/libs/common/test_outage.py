"""A worker's loops ride out a Valkey outage: capped backoff with jitter, one log line each way."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from libs.common.outage import RECONNECT_BASE_S, RECONNECT_MAX_S, Backoff, Outage


def test_backoff_doubles_with_jitter_up_to_its_cap_and_starts_over_after_a_success() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    for n, delay in enumerate(delays):
        ceiling = min(RECONNECT_MAX_S, RECONNECT_BASE_S * 2**n)
        # Never 0 (no busy loop), never past the ceiling, never past the cap.
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] > RECONNECT_MAX_S / 2
    assert len({round(d, 6) for d in delays[-4:]}) == 4  # capped, yet not in lockstep
    backoff.reset()
    assert backoff.next_delay() <= RECONNECT_BASE_S


def test_many_failures_stay_finite() -> None:
    backoff = Backoff()
    backoff.failures = 10_000
    assert backoff.next_delay() <= RECONNECT_MAX_S


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="libs.common.outage")
    outage = Outage("stage=embedder")
    outage.answered()  # no outage: nothing to say
    assert caplog.records == []
    refused = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    for _ in range(50):  # every loop of the process, every try
        asyncio.run(outage.failed(refused))
    assert outage.down
    outage.answered()
    outage.answered()
    assert not outage.down
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("stage=embedder: valkey unavailable (ConnectionError: Error 111")
    assert lines[1].startswith("stage=embedder: valkey answers again after ")
    asyncio.run(outage.failed(TimeoutError("timed out")))  # the next outage is logged again
    assert len(caplog.records) == 3


def test_the_loops_sharing_a_client_share_its_outage() -> None:
    one, other = aioredis.Redis(), aioredis.Redis()
    assert Outage.of(one, "stage=embedder") is Outage.of(one, "stage=embedder")
    assert Outage.of(other, "stage=embedder") is not Outage.of(one, "stage=embedder")


def test_the_first_failure_drops_the_idle_connections_of_the_client(valkey_url: str) -> None:
    """One to the server that went away could pass the pool's check and fail once more later."""

    async def scenario() -> None:
        client = aioredis.Redis.from_url(valkey_url)
        try:
            await client.ping()
            pool = client.connection_pool
            get_connection: Callable[[], Awaitable[AbstractConnection]] = pool.get_connection  # untyped
            idle = await get_connection()
            await pool.release(idle)
            assert idle.is_connected
            outage = Outage.of(client, "stage=retriever")
            await outage.failed(RedisConnectionError("Connection closed by server."))
            assert not idle.is_connected
            assert await client.ping()  # a fresh connection
            outage.answered()
        finally:
            await client.aclose()

    asyncio.run(scenario())
