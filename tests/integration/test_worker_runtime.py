"""The stream runtime against a real Valkey server, with in-process workers: a job's way
through the stages, its status on the way, jobs split into parts, and the lanes.

Failures, retries and dead letters are in ``test_worker_runtime_failures.py``; deadlines
in ``test_worker_runtime_deadlines.py``; reclaimed and redelivered messages in
``test_worker_runtime_reclaim.py``. The helpers are in ``worker_runtime.py``
(``test_fair_read.py`` and ``test_bulk_tenant_pruning.py`` still import them from here)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common import constants, keys
from libs.common.commit import AddMember
from libs.common.envelope import Envelope
from libs.common.jobs import JobStore
from libs.common.stage import Outcome, Output
from libs.common.worker import Worker
from tests.integration.worker_runtime import P0, Held, Recorder, run, settings, submit, with_workers

# Imported from here by test_fair_read.py and test_bulk_tenant_pruning.py.
__all__ = ["Recorder", "run", "settings", "with_workers"]

SEEN = P0.key("seen")


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
