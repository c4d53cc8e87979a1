"""The stream runtime against a real Valkey server: handlers that fail (retryable,
permanent, crashing), Valkey failing under a handler, and what is dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TryAgainError

from libs.common import constants
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError, RetryableError
from libs.common.jobs import JobStore
from libs.common.outage import TRANSIENT_REPEATS
from libs.common.stage import Outcome
from libs.common.worker import Worker
from tests.integration.worker_runtime import P0, Recorder, run, settings, submit, with_workers


def test_always_failing_handler_dead_letters_after_max_attempts(valkey_url: str) -> None:
    def boom(e: Envelope) -> Outcome:
        return RetryableError("backend unavailable")

    async def body(r: aioredis.Redis) -> None:
        handler = Recorder(boom)
        env = await submit(r)
        job = await with_workers(
            [Worker(r, constants.EMBEDDER, handler, settings(max_attempts=3))],
            lambda: JobStore(r).wait(env.job_id, 10),
        )
        assert job["status"] == "failed"
        assert job["error"] == "embedder failed after 3 attempts: backend unavailable"
        assert job["attempts"] == 3
        assert [e.attempt for e in handler.seen] == [0, 1, 2]
        dead = await r.xrange(P0.dead_letters())
        assert len(dead) == 1
        fields = {k.decode(): v.decode() for k, v in dead[0][1].items()}
        assert fields["job_id"] == env.job_id
        assert fields["stage"] == constants.EMBEDDER
        assert fields["reason"] == job["error"]
        assert Envelope.loads(fields["data"]).job_id == env.job_id

    run(body, valkey_url)


def test_permanent_error_fails_at_once(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        handler = Recorder(lambda e: PermanentError("unsupported file type '.exe'"))
        env = await submit(r)
        job = await with_workers(
            [Worker(r, constants.EMBEDDER, handler, settings())], lambda: JobStore(r).wait(env.job_id, 10)
        )
        assert job["status"] == "failed"
        assert job["error"] == "embedder: unsupported file type '.exe'"
        assert len(handler.seen) == 1
        assert await r.xlen(P0.dead_letters()) == 1

    run(body, valkey_url)


def test_handler_exception_of_unknown_type_is_retried_then_dead_lettered(valkey_url: str) -> None:
    class Crashy:
        calls = 0

        async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
            self.calls += 1
            raise ZeroDivisionError("division by zero")

    async def body(r: aioredis.Redis) -> None:
        handler = Crashy()
        env = await submit(r)
        job = await with_workers(
            [Worker(r, constants.EMBEDDER, handler, settings(max_attempts=2))],
            lambda: JobStore(r).wait(env.job_id, 10),
        )
        assert job["status"] == "failed"
        assert "ZeroDivisionError: division by zero" in job["error"]
        assert handler.calls == 2

    run(body, valkey_url)


def test_malformed_envelope_goes_to_dead_letters(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        handler = Recorder(lambda e: {})
        w = Worker(r, constants.EMBEDDER, handler, settings())
        await w.ensure_group()
        await r.xadd(
            P0.stream(constants.EMBEDDER, constants.INTERACTIVE),
            {constants.ENVELOPE_FIELD: json.dumps({"v": 99})},
        )

        async def wait_dead() -> list[Any]:
            res = await r.xread({P0.dead_letters(): "0-0"}, block=10_000)
            return list(res[0][1])

        dead = await with_workers([w], wait_dead)
        assert dead[0][1][b"reason"] == b"malformed job envelope"
        assert await r.xlen(P0.stream(constants.EMBEDDER, constants.INTERACTIVE)) == 0

    run(body, valkey_url)


def test_transient_failure_is_retried_and_counted(valkey_url: str) -> None:
    def flaky(e: Envelope) -> Outcome:
        return RetryableError("busy", delay_s=0.01) if e.attempt == 0 else {"hits": []}

    async def body(r: aioredis.Redis) -> None:
        handler = Recorder(flaky)
        env = Envelope.new("search", "c1", {"query": "q"}, 60).model_copy(
            update={"route": [constants.EMBEDDER]}
        )
        assert await JobStore(r).submit(env, max_backlog=10) == "ok"
        job = await with_workers(
            [Worker(r, constants.EMBEDDER, handler, settings())], lambda: JobStore(r).wait(env.job_id, 10)
        )
        assert job["status"] == "done"
        assert job["attempts"] == 1
        assert job["result"] == {"hits": []}
        assert await r.zcard(P0.delayed(constants.EMBEDDER, constants.INTERACTIVE)) == 0

    run(body, valkey_url)


def test_valkey_passing_states_under_a_handler_cost_its_jobs_no_attempt(valkey_url: str) -> None:
    """A slot in migration (TRYAGAIN) or a failover's lost connection while the handler
    reads Valkey: the call is repeated, and the job is done at its first attempt."""
    calls = 0

    async def migrating(batch: Sequence[Envelope]) -> Sequence[Outcome]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot")
        if calls == 2:
            raise RedisConnectionError("Connection closed by server.")
        return [{"hits": []} for _ in batch]

    async def body(r: aioredis.Redis) -> None:
        env = Envelope.new("search", "c1", {"query": "q"}, 60).model_copy(
            update={"route": [constants.EMBEDDER]}
        )
        assert await JobStore(r).submit(env, max_backlog=10) == "ok"
        job = await with_workers(
            [Worker(r, constants.EMBEDDER, migrating, settings())], lambda: JobStore(r).wait(env.job_id, 10)
        )
        assert job["status"] == "done"
        assert job["attempts"] == 0
        assert calls == 3

    run(body, valkey_url)


def test_valkey_that_stays_unavailable_under_a_handler_is_a_failed_attempt(valkey_url: str) -> None:
    def down(e: Envelope) -> Outcome:
        raise RedisConnectionError("Connection refused.")

    async def body(r: aioredis.Redis) -> None:
        handler = Recorder(down)
        env = Envelope.new("search", "c1", {"query": "q"}, 60).model_copy(
            update={"route": [constants.EMBEDDER]}
        )
        assert await JobStore(r).submit(env, max_backlog=10) == "ok"
        job = await with_workers(
            [Worker(r, constants.EMBEDDER, handler, settings(max_attempts=1))],
            lambda: JobStore(r).wait(env.job_id, 10),
        )
        assert job["status"] == "failed"
        assert "Connection refused" in job["error"]
        # The first call and the repeats of ride_out, then no more: attempts are spent.
        assert len(handler.seen) == 1 + TRANSIENT_REPEATS

    run(body, valkey_url)
