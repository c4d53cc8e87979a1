"""The stream runtime's read loop and lifecycle: one :class:`Worker` per stage, lane and partition.

A worker reads its stream through the stage's consumer group and hands each
read, as one batch, to the stage's handler. The job state machine
(``jobflow.py``) turns each outcome into commit ops, and the whole batch is
committed in one atomic round trip (``COMMIT``): outputs go to the next stage's
stream (or become the job's result at the last stage) and only then is the input
acknowledged. Retries, dead letters and expiry are decided there too;
``maintenance.py`` moves due retries back and reclaims crashed consumers'
messages. On ``stop()`` the loop stops reading and in-flight batches get
``shutdown_grace_s`` to finish; anything unacknowledged stays pending for another
consumer. A Valkey that stops answering is waited out with capped backoff and
logged once per outage (``outage.py``); the process carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common import jobflow, metrics
from libs.common.commit import SKIPPED, STALE, CommitBatch
from libs.common.constants import BULK, ENVELOPE_FIELD, INTERACTIVE
from libs.common.durability import Durability
from libs.common.envelope import Envelope, stage_status
from libs.common.errors import JobEnded
from libs.common.fair_read import TenantStreams, create_group, field_map, per_stream
from libs.common.jobflow import Decision, Message, Settled, StageContext
from libs.common.keys import Lane, Partition, Stage, group_name
from libs.common.logs import job_log
from libs.common.maintenance import Maintenance
from libs.common.outage import Backoff, Outage, ride_out
from libs.common.scripts import Commit, MarkRunning, Running
from libs.common.settings import WorkerSettings
from libs.common.stage import FailureRule, Handler, Outcome
from libs.common.telemetry import context_from, current_traceparent, tracer, tracing_enabled

logger = logging.getLogger(__name__)


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(
        self,
        client: aioredis.Redis,
        stage: Stage,
        handler: Handler,
        settings: WorkerSettings,
        lane: Lane = INTERACTIVE,
        *,
        partition: Partition | None = None,
    ) -> None:
        self.r = client
        self.handler = handler
        self.s = settings
        self.ctx = StageContext(
            stage=stage,
            lane=lane,
            partition=partition or Partition(0),
            max_attempts=settings.max_attempts,
            retry_backoff_s=settings.retry_backoff_s,
            retry_backoff_max_s=settings.retry_backoff_max_s,
            job_ttl_s=settings.job_ttl_s,
            events_ttl_s=settings.events_ttl_s,
            rule=handler if isinstance(handler, FailureRule) else None,
        )
        self.group = group_name(stage)
        self.consumer = settings.consumer or default_consumer_name()
        # Hand-ons and final statuses wait for a replica (DOCUMIND_VALKEY_WAIT_REPLICAS).
        self._commit = Commit(
            client, Durability.of(client, settings.valkey_wait_replicas, settings.valkey_wait_timeout_ms)
        )
        self._mark = MarkRunning(client)
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.stopping = asyncio.Event()
        # Entry ids being worked on, and the stream each was read from.
        self.inflight: dict[str, str] = {}
        # The bulk lane reads a stream per tenant, in turns (fair_read.py).
        self.tenants = TenantStreams(client, self.ctx.partition, stage, self.group) if lane == BULK else None
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()
        # Shared by the workers on this client (a process's): one log line per Valkey outage.
        self.outage = Outage.of(client, f"stage={stage}")
        self.maintenance = Maintenance(client, self, settings)
        self._tracing = tracing_enabled()
        # Label children resolved once per kind and outcome, not per message.
        self._counters: dict[tuple[str, str], Any] = {}
        self._batch_size = metrics.BATCH_SIZE.labels(stage)
        self._stage_seconds = metrics.STAGE_SECONDS.labels(stage)
        self._queue_wait = metrics.QUEUE_WAIT_SECONDS.labels(stage)

    @property
    def stage(self) -> Stage:
        return self.ctx.stage

    @property
    def stream(self) -> str:
        """The lane's stream (on the bulk lane, the default tenant's)."""
        return self.ctx.stream

    @property
    def read_count(self) -> int:
        """Messages read as one batch (the bulk lane has its own count)."""
        return self.s.bulk_read_count if self.tenants is not None else self.s.read_count

    def queues(self) -> list[tuple[str, str]]:
        """Every stream this worker reads, with the delayed set of its retries (on the
        bulk lane, every tenant's it knows)."""
        ctx = self.ctx
        if self.tenants is None:
            return [(ctx.stream, ctx.partition.delayed(ctx.stage, ctx.lane))]
        return [
            (stream, ctx.partition.delayed(ctx.stage, ctx.lane, tenant))
            for tenant, stream in self.tenants.streams.items()
        ]

    # --- lifecycle -----------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the consumer group (and stream); an existing group is fine."""
        if self.tenants is not None:
            self.tenants.forget()
            await self.tenants.refresh()
        else:
            await create_group(self.r, self.stream, self.group)

    def stop(self) -> None:
        """Stop reading; in-flight batches finish within the grace period."""
        if not self.stopping.is_set():
            logger.info("stage=%s consumer=%s stopping", self.stage, self.consumer)
            self.stopping.set()

    async def run(self) -> None:
        await self.ensure_group()
        maintenance = asyncio.create_task(self.maintenance.run())
        self.ready.set()
        logger.info(
            "stage=%s lane=%s consumer=%s reading %s", self.stage, self.ctx.lane, self.consumer, self.stream
        )
        try:
            await self._read_loop()
        finally:
            # Maintenance keeps heartbeating in-flight messages while they drain,
            # then stops on an event: cancelling it could be swallowed when the
            # client turns the cancellation into its own timeout error.
            await self._drain()
            self.maintenance.closed.set()
            try:
                await asyncio.wait_for(maintenance, timeout=self.s.maintenance_interval_s + 10)
            except TimeoutError:
                logger.warning("stage=%s maintenance did not stop in time", self.stage)

    async def _read_loop(self) -> None:
        backoff = Backoff()
        while not self.stopping.is_set():
            await self.slots.acquire()
            if self.stopping.is_set():
                self.slots.release()
                break
            try:
                messages = await self.read()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self.slots.release()
                await self._wait_out(exc, backoff)
                continue
            except ResponseError as exc:
                self.slots.release()
                if "NOGROUP" not in str(exc):
                    raise
                # The stream or group is gone (a Valkey that came back without them).
                try:
                    await self.ensure_group()
                except (RedisConnectionError, RedisTimeoutError) as down:
                    await self._wait_out(down, backoff)
                continue
            self.outage.answered()
            backoff.reset()
            if messages:
                self.spawn(messages)
            else:
                self.slots.release()

    async def _wait_out(self, exc: Exception, backoff: Backoff) -> None:
        """Valkey did not answer: note it (logged once per outage), wait, unless stopping."""
        await self.outage.failed(exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=backoff.next_delay())

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

    def spawn(self, messages: list[Message]) -> None:
        """Handle a batch in a task of its own; it holds one of the slots taken for it."""
        task = asyncio.create_task(self._run_batch(messages))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, messages: list[Message]) -> None:
        inflight = self.inflight
        for m in messages:
            inflight[m.id] = m.stream
        try:
            if self.tenants is None:
                await self._process_logged(messages)
            else:
                # One sub-batch per tenant, the smallest first (its texts reach the model
                # first), each committed on its own: a tenant's few messages read beside
                # another tenant's many are done when they are, not with the rest.
                subs = sorted(per_stream(messages), key=len)
                await asyncio.gather(*(self._process_logged(sub) for sub in subs))
        finally:
            for m in messages:
                inflight.pop(m.id, None)
            self.slots.release()

    async def _process_logged(self, messages: list[Message]) -> None:
        try:
            await self.process(messages)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            logger.error("stage=%s could not commit a batch of %d: %s", self.stage, len(messages), exc)

    # --- reading -------------------------------------------------------------

    async def read(self) -> list[Message]:
        if self.tenants is not None:
            entries = await self.tenants.read(self.consumer, self.read_count, self.s.read_block_ms)
            now = time.time()
            return [self.decode(mid, field_map(fields), now, stream=s) for s, mid, fields in entries]
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
        stream = self.stream
        return [self.decode(mid, fields, now, stream=stream) for mid, fields in reply[0][1]]

    def decode(
        self, mid: bytes | str, fields: dict[Any, Any], now: float, delivered: int = 1, *, stream: str
    ) -> Message:
        mid_s = mid.decode() if isinstance(mid, bytes) else mid
        raw = fields.get(ENVELOPE_FIELD.encode()) or fields.get(ENVELOPE_FIELD) or b""
        raw_b = raw if isinstance(raw, bytes) else raw.encode()
        try:
            env: Envelope | None = Envelope.loads(raw_b)
        except ValidationError:
            env = None
        return Message(mid_s, raw_b, env, delivered, now, stream)

    # --- processing ----------------------------------------------------------

    async def process(self, messages: list[Message]) -> None:
        """Handle one batch and commit every message's outcome in one round trip."""
        # Acknowledged on the stream each was read from (a message made by hand: this lane's).
        batch = CommitBatch(messages[0].stream or self.stream)
        now = time.time()
        live: list[Message] = []
        for m in messages:
            decision = jobflow.admit(self.ctx, m, now)
            if decision is None:
                live.append(m)
            else:
                self._decided(batch, m, decision)
        if live:
            envs = [m.env for m in live if m.env is not None]
            self._batch_size.observe(len(envs))
            spans = [self._start_span(m) for m in live]
            outcomes, elapsed = await self._handle_and_mark(envs)
            self._stage_seconds.observe(elapsed)
            now = time.time()
            for m, outcome, span in zip(live, outcomes, spans, strict=True):
                self._settle(batch, m, outcome, span, elapsed=elapsed, now=now)
        applied = await self._commit(batch, group=self.group, subject=lambda: jobflow.job_ids(messages))
        by_id = {m.id: m for m in messages}
        for message_id, result in zip(batch.ids, applied, strict=True):
            m = by_id[message_id]
            if result == SKIPPED:
                self._count(m.env, "skipped")
                logger.info("message %s: its job had already ended", m.id, extra=job_log(m.env, self.stage))
            elif result == STALE:
                self._count(m.env, "stale")
                logger.info(
                    "message %s was already handled elsewhere", m.id, extra=job_log(m.env, self.stage)
                )

    def _settle(
        self,
        batch: CommitBatch,
        m: Message,
        outcome: Outcome,
        span: trace.Span | None,
        *,
        elapsed: float,
        now: float,
    ) -> None:
        assert m.env is not None
        self._queue_wait.observe(max(0.0, m.read_at - m.env.enqueued_at))
        if span is None:
            self._decided(batch, m, jobflow.settle(self.ctx, m, outcome, Settled(elapsed, now)))
            return
        with trace.use_span(span, end_on_exit=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, JobEnded):
                span.record_exception(outcome)
            at = Settled(elapsed, now, current_traceparent())
            self._decided(batch, m, jobflow.settle(self.ctx, m, outcome, at))

    def _decided(self, batch: CommitBatch, m: Message, decision: Decision) -> None:
        batch.add(m.id, decision.ops, m.stream)
        if decision.outcome != "skipped":
            self._count(m.env, decision.outcome)
        if decision.dead_lettered:
            metrics.DEAD_LETTERS.labels(self.stage).inc()
        if decision.log is not None:
            level, text = decision.log
            logger.log(level, "%s", text, extra=job_log(m.env, self.stage))

    def _count(self, env: Envelope | None, outcome: str) -> None:
        kind = env.kind if env is not None else "unknown"
        counter = self._counters.get((kind, outcome))
        if counter is None:
            counter = self._counters[(kind, outcome)] = metrics.MESSAGES.labels(kind, self.stage, outcome)
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
            first = [e for e in envs if e.step == 0]
            if first:
                await asyncio.gather(self.mark_running(first), asyncio.shield(work))
        outcomes = await work
        return outcomes, time.perf_counter() - t0

    async def _call_handler(self, envs: list[Envelope]) -> Sequence[Outcome]:
        try:
            # A failover or a slot migration under the batch does not cost its jobs an attempt.
            outcomes = await ride_out(
                lambda: self.handler(envs), self.stopping, f"stage={self.stage} handler"
            )
        except Exception as exc:
            logger.exception("stage=%s handler failed on a batch of %d", self.stage, len(envs))
            return [exc] * len(envs)
        if len(outcomes) != len(envs):
            err = RuntimeError(f"{self.stage} handler returned {len(outcomes)} outcomes for {len(envs)} jobs")
            return [err] * len(envs)
        return outcomes

    async def mark_running(self, envs: list[Envelope]) -> None:
        """Show the stage's status on jobs it has started (unless they are already final)."""
        running = [
            Running(e.job_keys, stage_status(e.kind, self.stage, last=len(e.route) == 1)) for e in envs
        ]
        await self._mark(running, stage=self.stage, ttl_s=self.s.job_ttl_s, now=time.time())

    def _start_span(self, m: Message) -> trace.Span | None:
        if not self._tracing:
            return None
        assert m.env is not None
        return tracer.start_span(
            f"{self.stage} {m.env.kind}",
            context=context_from(m.env.traceparent),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "documind.job_id": m.env.job_id,
                "documind.stage": self.stage,
                "documind.queue_wait_s": max(0.0, m.read_at - m.env.enqueued_at),
            },
        )
