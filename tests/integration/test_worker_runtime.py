"""The stream runtime against a real Valkey server, with in-process workers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TryAgainError

from libs.common import constants, keys
from libs.common.commit import AddMember
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError, RetryableError
from libs.common.jobflow import Message
from libs.common.jobs import JobStore
from libs.common.keys import Partition
from libs.common.outage import TRANSIENT_REPEATS
from libs.common.settings import WorkerSettings
from libs.common.stage import Outcome, Output
from libs.common.worker import Worker

P0 = Partition(0)
SEEN = P0.key("seen")


def settings(**kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {
        "read_block_ms": 50,
        "maintenance_interval_s": 0.05,
        "retry_backoff_s": 0.01,
        "max_attempts": 3,
        "visibility_timeout_s": 5,
    }
    return WorkerSettings(**(base | kw))


class Recorder:
    """A handler that records what it saw and answers with ``reply``."""

    def __init__(self, reply: Callable[[Envelope], Outcome]) -> None:
        self.reply = reply
        self.seen: list[Envelope] = []

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        self.seen.extend(batch)
        return [self.reply(e) for e in batch]


class Held:
    """A handler that holds its batch until released, then answers ``reply`` for each job."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        self.started.set()
        await self.release.wait()
        return [dict(self.reply) for _ in batch]


async def submit(r: aioredis.Redis, kind: str = "search", timeout_s: float = 60, **payload: Any) -> Envelope:
    env = Envelope.new(kind, "c1", payload or {"query": "q"}, timeout_s)  # type: ignore[arg-type]
    assert await JobStore(r).submit(env, max_backlog=1000) == "ok"
    return env


async def with_workers(workers: list[Worker], body: Callable[[], Awaitable[Any]]) -> Any:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await asyncio.gather(*(w.ready.wait() for w in workers))
        return await asyncio.wait_for(body(), timeout=30)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)


def run(coro_fn: Callable[[aioredis.Redis], Awaitable[Any]], url: str) -> Any:
    async def main() -> Any:
        r = aioredis.Redis.from_url(url)
        try:
            return await coro_fn(r)
        finally:
            await r.aclose()

    return asyncio.run(main())


def test_job_flows_through_stages_and_streams_stay_empty(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        emb = Recorder(lambda e: {**e.payload, "vector": "v"})
        ret = Recorder(lambda e: {"hits": [e.payload["vector"]]})
        workers = [
            Worker(r, constants.EMBEDDER, emb, settings()),
            Worker(r, constants.RETRIEVER, ret, settings()),
        ]
        env = await submit(r)

        async def wait() -> dict[str, Any] | None:
            return await JobStore(r).wait(env.job_id, 10)

        job = await with_workers(workers, wait)
        assert job is not None
        assert job["status"] == "done"
        assert job["result"] == {"hits": ["v"]}
        assert set(job["timings"]) >= {"embedder", "embedder.wait", "retriever", "retriever.wait"}
        # acknowledged entries are deleted: streams hold only the live backlog
        assert await r.xlen(P0.stream(constants.EMBEDDER, constants.INTERACTIVE)) == 0
        assert await r.xlen(P0.stream(constants.RETRIEVER, constants.INTERACTIVE)) == 0
        assert await r.xlen(keys.job(env.job_id).done) == 1

    run(body, valkey_url)


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


def test_deadline_passed_while_queued_expires_without_processing(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        handler = Recorder(lambda e: {"hits": []})
        # Queued a second ago with a half-second deadline and no worker running since.
        env = Envelope.new("search", "c1", {"query": "q"}, timeout_s=0.5, now=time.time() - 1)
        assert await JobStore(r).submit(env, max_backlog=10) == "ok"
        job = await with_workers(
            [Worker(r, constants.EMBEDDER, handler, settings())], lambda: JobStore(r).wait(env.job_id, 10)
        )
        assert job["status"] == "expired"
        assert "deadline passed" in job["error"]
        assert handler.seen == []

    run(body, valkey_url)


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


def test_a_slow_first_stage_shows_its_status_while_working(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        handler = Held({"vector": "v"})
        env = await submit(r)

        async def status() -> str:
            job = await JobStore(r).get(env.job_id)
            return job["status"] if job else "?"

        async def watch() -> list[str]:
            await handler.started.wait()
            seen = [await status()]
            while seen[-1] == "queued":  # the status write runs beside the handler
                await asyncio.sleep(0.01)
                seen.append(await status())
            handler.release.set()
            # Handed on: the entry appears on the retriever's stream.
            await r.xread({P0.stream(constants.RETRIEVER, constants.INTERACTIVE): "0-0"}, block=10_000)
            return [*seen, await status()]

        seen = await with_workers(
            [Worker(r, constants.EMBEDDER, handler, settings(status_delay_s=0.001))], watch
        )
        assert seen[-2:] == ["embedding", "retrieving"]

    run(body, valkey_url)


def test_a_job_nobody_picks_up_is_expired_when_read(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        store = JobStore(r, overdue_grace_s=0.5)
        env = Envelope.new("search", "c1", {"query": "q"}, timeout_s=1, now=time.time() - 2)
        assert await store.submit(env, max_backlog=10) == "ok"
        job = await store.wait(env.job_id, 5)
        assert job is not None and job["status"] == "expired"
        assert job["error"] == "deadline passed while queued: no worker finished the job in time"
        # The worker that finally reads it changes nothing and writes no second result.
        handler = Recorder(lambda e: {"vector": "v"})
        w = Worker(r, constants.EMBEDDER, handler, settings())
        await w.ensure_group()
        await w.process(await w.read())
        assert handler.seen == []
        assert await r.xlen(P0.stream(constants.EMBEDDER, constants.INTERACTIVE)) == 0
        assert await r.xlen(keys.job(env.job_id).done) == 1
        assert (await store.get(env.job_id) or {})["status"] == "expired"

    run(body, valkey_url)


def test_a_late_finisher_cannot_overwrite_an_expired_job(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        store = JobStore(r, overdue_grace_s=0)
        handler = Held({"hits": []})
        env = Envelope.new("search", "c1", {"query": "q"}, timeout_s=0.5).model_copy(
            update={"route": [constants.EMBEDDER]}
        )
        assert await store.submit(env, max_backlog=10) == "ok"

        async def expire_meanwhile() -> dict[str, Any] | None:
            await handler.started.wait()
            job = await store.wait(env.job_id, 5)  # wakes at the deadline and expires the job
            handler.release.set()
            return job

        job = await with_workers([Worker(r, constants.EMBEDDER, handler, settings())], expire_meanwhile)
        assert job is not None and job["status"] == "expired"
        # The worker finished after that; its result was dropped, not written over the expiry.
        after = await store.get(env.job_id)
        assert after is not None and after["status"] == "expired" and "result" not in after
        assert await r.xlen(keys.job(env.job_id).done) == 1

    run(body, valkey_url)


def test_a_job_split_into_parts_completes_once_when_its_last_part_does(valkey_url: str) -> None:
    """A stage continues a job as bounded parts; the job moves on and completes only with the last one."""
    statuses: list[str] = []

    async def body(r: aioredis.Redis) -> None:
        def embed(e: Envelope) -> Outcome:
            if "part" not in e.payload:
                return Output({}, split=[{"part": n, "parts": 5} for n in range(5)])
            return Output({"part": e.payload["part"]}, parts=5)

        class Watching(Recorder):
            async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
                statuses.append((await r.hget(keys.job(batch[0].job_id).hash, "status") or b"").decode())
                return await super().__call__(batch)

        # One message per read: every part is its own commit.
        emb = Recorder(embed)
        ret = Watching(
            lambda e: Output(
                {"last": e.payload["part"]}, parts=5, on_complete=[AddMember(P0.key("seen"), "1")]
            )
        )
        workers = [
            Worker(r, constants.EMBEDDER, emb, settings(read_count=1), constants.BULK),
            Worker(r, constants.RETRIEVER, ret, settings(read_count=1), constants.BULK),
        ]
        env = await submit(r, kind="ingest", document_id="d1")

        async def wait() -> dict[str, Any] | None:
            return await JobStore(r).wait(env.job_id, 10)

        job = await with_workers(workers, wait)
        assert job is not None and job["status"] == "done"
        assert len(emb.seen) == 6  # the upload, then its five parts
        assert sorted(e.payload["part"] for e in ret.seen) == list(range(5))
        assert job["result"]["last"] in range(5)
        assert await r.xlen(keys.job(env.job_id).done) == 1  # completed once
        assert await r.smembers(SEEN) == {b"1"}
        assert await r.hget(keys.job(env.job_id).hash, "parts:done") == b"5"
        # Its status moved on to "indexing" only with the last part forwarded.
        assert await r.hget(keys.job(env.job_id).hash, "parts:embedder") == b"5"
        assert set(statuses) <= {"embedding", "indexing"}
        assert await r.xlen(P0.stream(constants.EMBEDDER, constants.BULK)) == 0
        assert await r.xlen(P0.stream(constants.RETRIEVER, constants.BULK)) == 0

    run(body, valkey_url)


def test_a_chat_with_history_is_condensing_at_its_first_generator_step(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        payload = {"question": "when?", "query": "when?", "history": [{"role": "user", "content": "ferry"}]}
        env = Envelope.new("chat", "c1", payload, 60, route=constants.CHAT_WITH_HISTORY_ROUTE)
        store = JobStore(r)
        assert await store.submit(env, max_backlog=10) == "ok"
        condensed = {**payload, "question": "ferry when?", "condensed": True}
        handler = Recorder(lambda e: Output(condensed, event={"standalone_question": "ferry when?"}))
        w = Worker(r, constants.GENERATOR, handler, settings())
        await w.ensure_group()
        # What a slow batch at its first stage shows while it works.
        await w.mark_running([env])
        assert (await store.get(env.job_id) or {})["status"] == "condensing"
        await w.process(await w.read())
        job = await store.get(env.job_id)
        assert job is not None and (job["status"], job["stage"]) == ("embedding", constants.EMBEDDER)
        events: Any = await r.xrange(keys.job(env.job_id).events)
        assert [f[b"type"] for _id, f in events] == [b"queued", b"condensing"]
        data = json.loads(events[1][1][b"data"])
        assert data == {"stage": constants.GENERATOR, "standalone_question": "ferry when?"}
        queued: Any = await r.xrange(P0.stream(constants.EMBEDDER, constants.INTERACTIVE))
        ((_id, fields),) = queued
        forwarded = Envelope.loads(fields[constants.ENVELOPE_FIELD.encode()])
        assert forwarded.route == [constants.EMBEDDER, constants.RETRIEVER, constants.GENERATOR]
        assert forwarded.payload == condensed

    run(body, valkey_url)


def test_a_question_is_read_at_once_while_the_bulk_lane_holds_a_backlog(valkey_url: str) -> None:
    """Ingest work queues on the bulk lane; a search submitted behind 200 queued
    ingest messages is read and answered while they still wait."""

    async def body(r: aioredis.Redis) -> None:
        release = asyncio.Event()
        bulk_seen: list[str] = []

        async def slow_bulk(e: Envelope) -> dict[str, Any]:
            bulk_seen.append(e.job_id)
            await release.wait()  # the bulk lane is stuck until the question is answered
            return {**e.payload, "vector": "v"}

        class Lanes(Recorder):
            async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
                self.seen.extend(batch)
                return [
                    await slow_bulk(e) if e.kind == "ingest" else {**e.payload, "vector": "q"} for e in batch
                ]

        handler = Lanes(lambda e: e.payload)
        backlog = [await submit(r, kind="ingest", document_id=f"d{i}") for i in range(200)]
        assert await r.xlen(P0.stream(constants.EMBEDDER, constants.BULK)) == 200
        assert await r.xlen(P0.stream(constants.EMBEDDER, constants.INTERACTIVE)) == 0
        question = await submit(r, kind="search", query="q")
        workers = [
            Worker(r, constants.EMBEDDER, handler, settings(read_count=4, concurrency=1), lane)
            for lane in constants.STAGE_LANES[constants.EMBEDDER]
        ]

        async def answered() -> None:
            # The question moved on to the retriever's interactive stream with its vector.
            entries = await r.xread(
                {P0.stream(constants.RETRIEVER, constants.INTERACTIVE): "0-0"}, block=10_000
            )
            assert entries, "the question was not forwarded"
            forwarded = Envelope.loads(entries[0][1][0][1][constants.ENVELOPE_FIELD.encode()])
            assert forwarded.job_id == question.job_id and forwarded.payload["vector"] == "q"
            # ... while the bulk lane had read at most one batch of its backlog.
            assert len(bulk_seen) <= 4
            assert await r.xlen(P0.stream(constants.EMBEDDER, constants.BULK)) == 200
            release.set()

        await with_workers(workers, answered)
        assert len(backlog) == 200

    run(body, valkey_url)
