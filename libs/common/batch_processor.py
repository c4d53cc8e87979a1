"""One batch of a stage's messages: admitted, handled, settled and committed in one round trip.

A :class:`~libs.common.worker.Worker` reads a batch and hands it to its
:class:`BatchProcessor`. The job state machine (``jobflow.py``) decides what
becomes of each message (admitted or not, then the handler's outcome turned into
commit ops), and the whole batch is committed in one atomic round trip
(``COMMIT``): outputs go to the next stage's stream (or become the job's result at
the last stage) and only then is the input acknowledged. Metrics and the span of
each message are recorded here, around the handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace

from libs.common import jobflow, metrics
from libs.common.commit import SKIPPED, STALE, CommitBatch
from libs.common.durability import Durability
from libs.common.envelope import Envelope, stage_status
from libs.common.errors import JobEnded
from libs.common.jobflow import Decision, Message, Settled, StageContext
from libs.common.keys import Stage
from libs.common.logs import job_log
from libs.common.outage import ride_out
from libs.common.scripts import Commit, MarkRunning, Running
from libs.common.settings import WorkerSettings
from libs.common.stage import Handler, Outcome
from libs.common.telemetry import context_from, current_traceparent, tracer, tracing_enabled

logger = logging.getLogger(__name__)


class BatchProcessor:
    """Handles a worker's batches: the handler's call, each message's outcome, the batch's commit."""

    def __init__(
        self,
        client: aioredis.Redis,
        ctx: StageContext,
        handler: Handler,
        settings: WorkerSettings,
        *,
        group: str,
        stopping: asyncio.Event,
    ) -> None:
        self.ctx = ctx
        self.handler = handler
        self.s = settings
        self.group = group
        # Set when the worker stops: a handler riding out a failover gives up then.
        self.stopping = stopping
        # Hand-ons and final statuses wait for a replica (DOCUMIND_VALKEY_WAIT_REPLICAS).
        self._commit = Commit(
            client, Durability.of(client, settings.valkey_wait_replicas, settings.valkey_wait_timeout_ms)
        )
        self._mark = MarkRunning(client)
        self._tracing = tracing_enabled()
        # Label children resolved once per kind and outcome, not per message.
        self._counters: dict[tuple[str, str], Any] = {}
        stage = ctx.stage
        self._batch_size = metrics.BATCH_SIZE.labels(stage)
        self._stage_seconds = metrics.STAGE_SECONDS.labels(stage)
        self._queue_wait = metrics.QUEUE_WAIT_SECONDS.labels(stage)

    @property
    def stage(self) -> Stage:
        return self.ctx.stage

    async def process(self, messages: list[Message]) -> None:
        """Handle one batch and commit every message's outcome in one round trip."""
        # Acknowledged on the stream each was read from (a message made by hand: this lane's).
        batch = CommitBatch(messages[0].stream or self.ctx.stream)
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
