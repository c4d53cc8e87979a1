"""The stream runtime every worker service shares.

One :class:`Worker` reads its stage's stream through the stage's consumer group
and hands each read, as one batch, to the stage's handler. The outcome of a
batch is committed in one atomic round trip (see ``scripts.COMMIT``): outputs
go to the next stage's stream (or become the job's result at the last stage)
and only then is the input acknowledged. Failures are retried with backoff or
dead-lettered; messages of crashed consumers are reclaimed with XAUTOCLAIM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from opentelemetry import trace
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common import constants as C
from libs.common import metrics as M
from libs.common.constants import ROUTES
from libs.common.decode import as_text
from libs.common.envelope import Envelope, stage_status
from libs.common.errors import DocuMindError, JobEnded, RetryableError, is_retryable
from libs.common.events import event_ops
from libs.common.logs import job_log
from libs.common.scripts import COMMIT, MARK_RUNNING, MOVE_DUE
from libs.common.settings import WorkerSettings
from libs.common.telemetry import context_from, current_traceparent, tracer, tracing_enabled

logger = logging.getLogger(__name__)


@dataclass
class Output:
    """A handler's successful output for one message.

    ``delete_keys`` and ``updates`` are applied with the commit that forwards
    the output; at the last stage, with the job's completion.
    """

    payload: dict[str, Any]
    # Keys to delete once the output is committed (e.g. a parsed upload blob).
    delete_keys: Sequence[str] = ()
    # Fields to set, with the commit, on hashes that exist (e.g. a document's).
    updates: dict[str, dict[str, str]] = field(default_factory=dict)
    # Continue the job at this same stage as these payloads, one bounded message
    # each (a large document's parts), instead of forwarding ``payload``.
    split: Sequence[dict[str, Any]] = ()
    # This message is one of ``parts`` messages of its job: the job's status moves
    # on when the last part is forwarded, and the job completes when the last part
    # finishes the last stage.
    parts: int = 1
    # Raw commit ops applied only with the job's completion, after its final status
    # (see ``scripts.COMMIT`` for the commands and pseudo-commands allowed).
    on_complete: Sequence[list[Any]] = ()
    # Data for the event that says this stage finished its part of the job (e.g. hits).
    event: dict[str, Any] = field(default_factory=dict)
    # More events for the job's stream, (type, data), appended with the commit ahead
    # of the stage's own event (e.g. the last answer tokens, with the final "done").
    events: Sequence[tuple[str, dict[str, Any]]] = ()


Outcome = Output | dict[str, Any] | BaseException


class Handler(Protocol):
    """A stage's work: one outcome per envelope, in order."""

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]: ...


@dataclass
class Message:
    id: str
    raw: bytes
    env: Envelope | None
    delivered: int = 1
    read_at: float = 0.0


@dataclass
class _Ops:
    """Writes to apply, atomically with the ack, for the messages of one batch."""

    keys: list[str]
    batch: list[dict[str, Any]] = field(default_factory=list)

    def key(self, name: str) -> int:
        try:
            return self.keys.index(name) + 1
        except ValueError:
            self.keys.append(name)
            return len(self.keys)

    def add(self, msg_id: str, ops: list[list[Any]]) -> None:
        self.batch.append({"id": msg_id, "ops": [[op[0], self.key(op[1]), *op[2:]] for op in ops]})


def _updates(out: Output) -> list[list[Any]]:
    """The output's deletes and hash updates, as commit ops."""
    return [
        *[["DEL", k] for k in out.delete_keys],
        *[["HSETXX", key, *[x for kv in fields.items() for x in kv]] for key, fields in out.updates.items()],
    ]


def _events(job_id: str, out: Output) -> list[list[Any]]:
    """The output's extra events, as commit ops."""
    return [op for kind, data in out.events for op in event_ops(job_id, kind, data)]


# Seconds between refreshes of the backlog gauges.
GAUGE_REFRESH_S = 5.0


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(
        self,
        client: aioredis.Redis,
        stage: str,
        handler: Handler,
        settings: WorkerSettings,
        lane: str = C.INTERACTIVE,
    ) -> None:
        self.r = client
        self.stage = stage
        self.lane = lane
        self.handler = handler
        self.s = settings
        self.stream = C.stream_key(stage, lane)
        self.delayed = C.delayed_key(stage, lane)
        self.group = C.group_name(stage)
        self.consumer = settings.consumer or default_consumer_name()
        self._commit = client.register_script(COMMIT)
        self._mark = client.register_script(MARK_RUNNING)
        self._move_due = client.register_script(MOVE_DUE)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._stopping = asyncio.Event()
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[str] = set()
        self.ready = asyncio.Event()
        self._tracing = tracing_enabled()
        # Label children resolved once per kind and outcome, not per message.
        self._counters: dict[tuple[str, str], Any] = {}
        self._batch_size = M.BATCH_SIZE.labels(stage)
        self._stage_seconds = M.STAGE_SECONDS.labels(stage)
        self._queue_wait = M.QUEUE_WAIT_SECONDS.labels(stage)
        self._heartbeat_gauge = M.HEARTBEAT.labels(stage, lane)
        self._heartbeat_gauge.set(time.time())

    # --- lifecycle -----------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the consumer group (and stream); an existing group is fine."""
        try:
            # From id 0: jobs queued before the first worker started are kept.
            await self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        """Stop reading; in-flight batches finish within the grace period."""
        if not self._stopping.is_set():
            logger.info("stage=%s consumer=%s stopping", self.stage, self.consumer)
            self._stopping.set()

    async def run(self) -> None:
        await self.ensure_group()
        maintenance = asyncio.create_task(self._maintenance_loop())
        self.ready.set()
        logger.info(
            "stage=%s lane=%s consumer=%s reading %s", self.stage, self.lane, self.consumer, self.stream
        )
        try:
            await self._read_loop()
        finally:
            # Maintenance keeps heartbeating in-flight messages while they drain,
            # then stops on an event: cancelling it could be swallowed when the
            # client turns the cancellation into its own timeout error.
            await self._drain()
            self._closed.set()
            try:
                await asyncio.wait_for(maintenance, timeout=self.s.maintenance_interval_s + 10)
            except TimeoutError:
                logger.warning("stage=%s maintenance did not stop in time", self.stage)

    async def _read_loop(self) -> None:
        while not self._stopping.is_set():
            await self._slots.acquire()
            if self._stopping.is_set():
                self._slots.release()
                break
            try:
                messages = await self._read()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._slots.release()
                logger.warning("stage=%s valkey unavailable: %s", self.stage, exc)
                await self._pause(1.0)
                continue
            except ResponseError as exc:
                self._slots.release()
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_group()
                continue
            if messages:
                self._spawn(messages)
            else:
                self._slots.release()

    async def _pause(self, seconds: float, until: asyncio.Event | None = None) -> None:
        """Wait, but wake at once when ``until`` (by default: asked to stop) is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for((until or self._stopping).wait(), timeout=seconds)

    async def _drain(self) -> None:
        if not self._tasks:
            return
        logger.info("stage=%s finishing %d in-flight batches", self.stage, len(self._tasks))
        _done, pending = await asyncio.wait(set(self._tasks), timeout=self.s.shutdown_grace_s)
        for task in pending:
            # Unacknowledged messages stay pending and are reclaimed by another consumer.
            task.cancel()
        if pending:
            logger.warning("stage=%s abandoned %d batches after the grace period", self.stage, len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, messages: list[Message]) -> None:
        task = asyncio.create_task(self._run_batch(messages))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, messages: list[Message]) -> None:
        ids = [m.id for m in messages]
        self._inflight.update(ids)
        try:
            await self.process(messages)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            logger.error("stage=%s could not commit a batch of %d: %s", self.stage, len(messages), exc)
        finally:
            self._inflight.difference_update(ids)
            self._slots.release()

    # --- reading -------------------------------------------------------------

    async def _read(self) -> list[Message]:
        reply: Any = await self.r.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self.s.read_count,
            block=self.s.read_block_ms,
        )
        if not reply:
            return []
        now = time.time()
        return [self._decode(mid, fields, now) for mid, fields in reply[0][1]]

    def _decode(self, mid: bytes | str, fields: dict[Any, Any], now: float, delivered: int = 1) -> Message:
        mid_s = mid.decode() if isinstance(mid, bytes) else mid
        raw = fields.get(C.ENVELOPE_FIELD.encode()) or fields.get(C.ENVELOPE_FIELD) or b""
        raw_b = raw if isinstance(raw, bytes) else raw.encode()
        try:
            env: Envelope | None = Envelope.loads(raw_b)
        except ValidationError:
            env = None
        return Message(mid_s, raw_b, env, delivered, now)

    # --- maintenance: retries due, reclaim, heartbeat --------------------------

    async def _maintenance_loop(self) -> None:
        last_heartbeat = time.monotonic()
        last_gauges = 0.0
        while not self._closed.is_set():
            await self._pause(self.s.maintenance_interval_s, until=self._closed)
            if self._closed.is_set():
                return
            self._heartbeat_gauge.set(time.time())
            try:
                if time.monotonic() - last_gauges >= GAUGE_REFRESH_S:
                    await self._refresh_gauges()
                    last_gauges = time.monotonic()
                await self._move_due(keys=[self.delayed, self.stream], args=[time.time(), 1000])
                if time.monotonic() - last_heartbeat >= self.s.visibility_timeout_s / 3:
                    await self._heartbeat()
                    last_heartbeat = time.monotonic()
                if not self._stopping.is_set() and not self._slots.locked():
                    await self.reclaim()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                logger.warning("stage=%s maintenance skipped, valkey unavailable: %s", self.stage, exc)

    async def _refresh_gauges(self) -> None:
        """Backlog gauges of this stage (and the dead letters), read in one round trip."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.xinfo_groups(self.stream)
            pipe.zcard(self.delayed)
            pipe.xlen(C.DEAD_LETTER_STREAM)
            length, groups, delayed, dead = await pipe.execute(raise_on_error=False)
        mine = [
            g for g in (groups if isinstance(groups, list) else []) if as_text(g.get("name")) == self.group
        ]
        if isinstance(length, int):
            M.STREAM_LENGTH.labels(self.stage, self.lane).set(length)
        if mine:
            M.PENDING.labels(self.stage, self.lane).set(int(mine[0].get("pending") or 0))
            M.GROUP_LAG.labels(self.stage, self.lane).set(int(mine[0].get("lag") or 0))
        if isinstance(delayed, int):
            M.DELAYED.labels(self.stage, self.lane).set(delayed)
        if isinstance(dead, int):
            M.DEAD_LETTER_SIZE.set(dead)

    async def _heartbeat(self) -> None:
        """Reset the idle time of messages still being worked on, so they are not reclaimed."""
        if self._inflight:
            await self.r.xclaim(self.stream, self.group, self.consumer, 0, list(self._inflight), justid=True)

    async def reclaim(self) -> int:
        """Take over messages idle longer than the visibility timeout, whoever held them."""
        await self._slots.acquire()
        try:
            _next, claimed, _deleted = await self.r.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(self.s.visibility_timeout_s * 1000),
                start_id="0-0",
                count=self.s.read_count,
            )
        except BaseException:
            self._slots.release()
            raise
        if not claimed:
            self._slots.release()
            return 0
        async with self.r.pipeline(transaction=False) as pipe:
            for mid, _fields in claimed:
                pipe.xpending_range(self.stream, self.group, min=mid, max=mid, count=1)
            pending = await pipe.execute()
        now = time.time()
        messages = [
            self._decode(mid, fields, now, delivered=int(p[0]["times_delivered"]) if p else 1)
            for (mid, fields), p in zip(claimed, pending, strict=True)
        ]
        M.RECLAIMED.labels(self.stage).inc(len(messages))
        logger.info("stage=%s reclaimed %d idle messages", self.stage, len(messages))
        self._spawn(messages)
        return len(messages)

    # --- processing ----------------------------------------------------------

    async def process(self, messages: list[Message]) -> None:
        """Handle one batch and commit every message's outcome in one round trip."""
        ops = _Ops(keys=[self.stream])
        now = time.time()
        live: list[Message] = []
        for m in messages:
            if m.env is None:
                self._dead_letter(ops, m, "malformed job envelope", final_status="failed")
            elif m.env.deadline < now:
                self._expire(ops, m)
            elif m.delivered > self.s.max_attempts:
                self._dead_letter(
                    ops,
                    m,
                    f"{self.stage}: delivered {m.delivered - 1} times without completing "
                    "(the worker crashed or timed out)",
                )
            else:
                live.append(m)

        outcomes: Sequence[Outcome] = []
        elapsed = 0.0
        if live:
            envs = [m.env for m in live if m.env is not None]
            self._batch_size.observe(len(envs))
            spans = [self._start_span(m) for m in live]
            outcomes, elapsed = await self._handle_and_mark(envs)
            self._stage_seconds.observe(elapsed)
            for m, outcome, span in zip(live, outcomes, spans, strict=True):
                self._settle(ops, m, outcome, elapsed=elapsed, span=span)
        applied = await self._commit(keys=ops.keys, args=[self.group, json.dumps(ops.batch)])
        by_id = {m.id: m for m in messages}
        for entry, ok in zip(ops.batch, applied, strict=True):
            m = by_id[entry["id"]]
            if ok == 2:
                self._count(m.env, "skipped")
                logger.info("message %s: its job had already ended", m.id, extra=job_log(m.env, self.stage))
            elif not ok:
                self._count(m.env, "stale")
                logger.info(
                    "message %s was already handled elsewhere", m.id, extra=job_log(m.env, self.stage)
                )

    def _count(self, env: Envelope | None, outcome: str) -> None:
        kind = env.kind if env is not None else "unknown"
        counter = self._counters.get((kind, outcome))
        if counter is None:
            counter = self._counters[(kind, outcome)] = M.MESSAGES.labels(kind, self.stage, outcome)
        counter.inc()

    async def _handle_and_mark(self, envs: list[Envelope]) -> tuple[Sequence[Outcome], float]:
        """Run the handler; show the stage's status on jobs whose batch takes a while.

        Jobs at a later stage already carry its status (the previous stage's
        commit set it). Jobs at their first stage still say "queued": when the
        batch outlasts ``status_delay_s`` they are marked as being worked on,
        while the handler runs. A quick batch skips that round trip; its commit
        moves the jobs straight on.
        """
        t0 = time.perf_counter()
        work = asyncio.ensure_future(self._call_handler(envs))
        done, _ = await asyncio.wait({work}, timeout=self.s.status_delay_s)
        if not done:
            # (A chat with history starts with one stage more than its kind's route.)
            first = [e for e in envs if len(e.route) >= len(ROUTES[e.kind])]
            if first:
                await asyncio.gather(self._mark_running(first), asyncio.shield(work))
        outcomes = await work
        return outcomes, time.perf_counter() - t0

    async def _call_handler(self, envs: list[Envelope]) -> Sequence[Outcome]:
        try:
            outcomes = await self.handler(envs)
        except Exception as exc:
            logger.exception("stage=%s handler failed on a batch of %d", self.stage, len(envs))
            return [exc] * len(envs)
        if len(outcomes) != len(envs):
            err = RuntimeError(f"{self.stage} handler returned {len(outcomes)} outcomes for {len(envs)} jobs")
            return [err] * len(envs)
        return outcomes

    async def _mark_running(self, envs: list[Envelope]) -> None:
        await self._mark(
            keys=[C.job_key(e.job_id) for e in envs],
            args=[
                self.s.job_ttl_s,
                time.time(),
                self.stage,
                *[stage_status(e.kind, self.stage, last=len(e.route) == 1) for e in envs],
            ],
        )

    def _start_span(self, m: Message) -> trace.Span | None:
        if not self._tracing:
            return None
        assert m.env is not None
        span = tracer.start_span(
            f"{self.stage} {m.env.kind}",
            context=context_from(m.env.traceparent),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "documind.job_id": m.env.job_id,
                "documind.stage": self.stage,
                "documind.queue_wait_s": max(0.0, m.read_at - m.env.enqueued_at),
            },
        )
        return span

    def _settle(
        self, ops: _Ops, m: Message, outcome: Outcome, *, elapsed: float, span: trace.Span | None
    ) -> None:
        env = m.env
        assert env is not None
        timings = dict(env.timings)
        timings[self.stage] = round(timings.get(self.stage, 0.0) + elapsed, 6)
        timings[f"{self.stage}.wait"] = round(max(0.0, m.read_at - env.enqueued_at), 6)
        self._queue_wait.observe(timings[f"{self.stage}.wait"])
        with trace.use_span(span, end_on_exit=True) if span else contextlib.nullcontext():
            if isinstance(outcome, JobEnded):
                # Cancelled or expired meanwhile: acknowledge; the guard reports it as skipped.
                ops.add(m.id, [["GUARD", C.job_key(env.job_id)]])
                return
            if isinstance(outcome, BaseException):
                if span:
                    span.record_exception(outcome)
                self._fail_or_retry(ops, m, outcome, timings)
                return
            out = outcome if isinstance(outcome, Output) else Output(outcome)
            if out.split:
                self._split(ops, m, out, timings)
            elif env.route[1:]:
                self._forward(ops, m, out, timings, span)
            else:
                self._finish(
                    ops,
                    m,
                    "done",
                    timings,
                    fields=["result", json.dumps(out.payload), "attempts", env.failures],
                    parts=out.parts,
                    extra=_updates(out),
                    after=list(out.on_complete),
                    result=out.payload,
                    events=_events(env.job_id, out),
                )
                self._count(env, "done")

    def _forward(
        self, ops: _Ops, m: Message, out: Output, timings: dict[str, float], span: trace.Span | None
    ) -> None:
        """Hand the output on to the next stage of the route."""
        env = m.env
        assert env is not None
        nxt = env.route[1:]
        forwarded = env.model_copy(
            update={
                "route": nxt,
                "attempt": 0,
                "timings": timings,
                "payload": out.payload,
                "enqueued_at": time.time(),
                "traceparent": (span and current_traceparent()) or env.traceparent,
            }
        )
        job = C.job_key(env.job_id)
        # Of a job split into parts, the last part forwarded moves the job's status on.
        join = [["JOIN", job, f"parts:{self.stage}", out.parts]] if out.parts > 1 else []
        status = [
            "HSET",
            job,
            "status",
            stage_status(env.kind, nxt[0], last=len(nxt) == 1),
            "stage",
            nxt[0],
            "timings",
            json.dumps(timings),
            "updated_at",
            repr(time.time()),
        ]
        finished = stage_status(env.kind, self.stage, last=False)
        ops.add(
            m.id,
            [
                ["GUARD", job],
                ["XADD", C.job_stream(nxt[0], env.kind), "*", C.ENVELOPE_FIELD, forwarded.dumps()],
                ["EXPIRE", job, self.s.job_ttl_s],
                *_updates(out),
                *join,
                status,
                *_events(env.job_id, out),
                *event_ops(env.job_id, finished, {"stage": self.stage, **out.event}),
            ],
        )
        self._count(env, "forwarded")

    def _split(self, ops: _Ops, m: Message, out: Output, timings: dict[str, float]) -> None:
        """Continue the job at this stage as several bounded messages."""
        env = m.env
        assert env is not None
        now = time.time()
        job = C.job_key(env.job_id)
        parts = [
            env.model_copy(update={"attempt": 0, "timings": timings, "payload": p, "enqueued_at": now})
            for p in out.split
        ]
        ops.add(
            m.id,
            [
                ["GUARD", job],
                *[
                    ["XADD", C.job_stream(env.stage, env.kind), "*", C.ENVELOPE_FIELD, p.dumps()]
                    for p in parts
                ],
                [
                    "HSET",
                    job,
                    "status",
                    stage_status(env.kind, self.stage, last=len(env.route) == 1),
                    "stage",
                    self.stage,
                    "timings",
                    json.dumps(timings),
                    "updated_at",
                    repr(now),
                ],
                ["EXPIRE", job, self.s.job_ttl_s],
                *_updates(out),
            ],
        )
        self._count(env, "split")

    def _fail_or_retry(self, ops: _Ops, m: Message, exc: BaseException, timings: dict[str, float]) -> None:
        env = m.env
        assert env is not None
        reason = exc.message if isinstance(exc, DocuMindError) else f"{type(exc).__name__}: {exc}"
        attempts = env.attempt + 1
        job = C.job_key(env.job_id)
        if is_retryable(exc) and attempts < self.s.max_attempts:
            delay = exc.delay_s if isinstance(exc, RetryableError) and exc.delay_s is not None else None
            if delay is None:
                base = min(self.s.retry_backoff_s * 2**env.attempt, self.s.retry_backoff_max_s)
                delay = base * random.uniform(0.8, 1.2)
            retry = env.model_copy(
                update={
                    "attempt": attempts,
                    "failures": env.failures + 1,
                    "timings": timings,
                    "enqueued_at": time.time(),
                }
            )
            ops.add(
                m.id,
                [
                    ["GUARD", job],
                    ["ZADD", self.delayed, time.time() + delay, retry.dumps()],
                    ["HINCRBY", job, "attempts", 1],
                    ["HSET", job, "last_error", reason, "updated_at", repr(time.time())],
                    ["EXPIRE", job, self.s.job_ttl_s],
                    *event_ops(
                        env.job_id,
                        "retrying",
                        {
                            "stage": self.stage,
                            "attempt": attempts,
                            "error": reason,
                            "delay_s": round(delay, 3),
                        },
                    ),
                ],
            )
            self._count(env, "retried")
            logger.warning(
                "attempt %d failed, retrying in %.2fs: %s",
                attempts,
                delay,
                reason,
                extra=job_log(env, self.stage),
            )
            return
        if is_retryable(exc):
            reason = f"{self.stage} failed after {attempts} attempts: {reason}"
        else:
            reason = f"{self.stage}: {reason}"
        self._dead_letter(ops, m, reason, attempts=attempts, timings=timings)

    def _dead_letter(
        self,
        ops: _Ops,
        m: Message,
        reason: str,
        *,
        final_status: str = "failed",
        attempts: int | None = None,
        timings: dict[str, float] | None = None,
    ) -> None:
        job_id = m.env.job_id if m.env else ""
        dead = [
            "XADD",
            C.DEAD_LETTER_STREAM,
            "MAXLEN",
            "~",
            C.DEAD_LETTER_MAXLEN,
            "*",
            "job_id",
            job_id,
            "stage",
            self.stage,
            "reason",
            reason,
            "attempts",
            attempts if attempts is not None else m.delivered,
            "data",
            m.raw.decode(errors="replace"),
        ]
        M.DEAD_LETTERS.labels(self.stage).inc()
        self._count(m.env, "failed")
        logger.error("dead-lettered: %s", reason, extra=job_log(m.env, self.stage))
        if m.env is None:
            ops.add(m.id, [dead])
            return
        self._finish(
            ops,
            m,
            final_status,
            timings or m.env.timings,
            fields=["error", reason, "attempts", m.env.failures + 1],
            extra=[dead],
        )

    def _expire(self, ops: _Ops, m: Message) -> None:
        assert m.env is not None
        late = time.time() - m.env.deadline
        reason = f"deadline passed {late:.1f}s before {self.stage} could start"
        self._count(m.env, "expired")
        logger.warning("expired: %s", reason, extra=job_log(m.env, self.stage))
        self._finish(ops, m, "expired", m.env.timings, fields=["error", reason, "attempts", m.env.failures])

    def _finish(
        self,
        ops: _Ops,
        m: Message,
        status: str,
        timings: dict[str, float],
        *,
        fields: list[Any],
        extra: list[list[Any]] | None = None,
        parts: int = 1,
        after: list[list[Any]] | None = None,
        result: dict[str, Any] | None = None,
        events: list[list[Any]] | None = None,
    ) -> None:
        """Write a final status and notify waiters on the job's done stream.

        Of a job in ``parts`` parts only the last part's commit goes on to
        ``extra``, the final status and ``after``; the others are only counted.
        """
        assert m.env is not None
        job, done = C.job_key(m.env.job_id), C.done_key(m.env.job_id)
        now = repr(time.time())
        if status != "done" and m.env.kind == "ingest" and m.env.payload.get("document_id"):
            # The document outlives its job: it keeps the failure and its reason. Its
            # upload is of no more use: nothing will parse it again.
            error = fields[fields.index("error") + 1] if "error" in fields else status
            doc_id = m.env.payload["document_id"]
            extra = [
                *(extra or []),
                ["HSETXX", C.document_key(doc_id), "status", "failed", "error", error, "updated_at", now],
                ["DEL", C.blob_key(doc_id)],
            ]
        final = ["status", status, "stage", "", "timings", json.dumps(timings), "updated_at", now, *fields]
        if result is not None:
            event = event_ops(m.env.job_id, "done", result, self.s.events_ttl_s)
        else:
            error = fields[fields.index("error") + 1] if "error" in fields else status
            event = event_ops(m.env.job_id, "error", {"status": status, "error": error}, self.s.events_ttl_s)
        ops.add(
            m.id,
            [
                ["GUARD", job],
                *([["JOIN", job, "parts:done", parts]] if parts > 1 else []),
                *(extra or []),
                ["HSET", job, *final],
                ["EXPIRE", job, self.s.job_ttl_s],
                # Waiters get the final fields with the notification: no extra read.
                ["XADD", done, "*", *final],
                ["EXPIRE", done, C.DONE_TTL_S],
                *(events or []),
                *event,
                *(after or []),
            ],
        )
