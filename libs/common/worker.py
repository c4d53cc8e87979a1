"""The stream runtime's read loop and lifecycle: one :class:`Worker` per stage, lane and partition.

A worker reads its stream through the stage's consumer group and hands each
read, as one batch, to the stage's handler (``batch_processor.py``). The job state
machine (``jobflow.py``) turns each outcome into commit ops, and the whole batch is
committed in one atomic round trip (``COMMIT``): outputs go to the next stage's
stream (or become the job's result at the last stage) and only then is the input
acknowledged. Retries, dead letters and expiry are decided there too;
``maintenance.py`` moves due retries back and reclaims crashed consumers'
messages. On ``stop()`` the loop stops reading and in-flight batches get
``shutdown_grace_s`` to finish; anything unacknowledged stays pending for another
consumer. A Valkey that stops answering is waited out with capped backoff and
logged once per outage (``outage.py``); the process carries on. A batch holds one of
``concurrency`` read slots until it ends, or until it waits on its tenant's own cap
(:func:`yield_read_slot`; that tenant is then left out of the reads, ``fair_read.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import time
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common.batch_processor import BatchProcessor
from libs.common.constants import BULK, ENVELOPE_FIELD, INTERACTIVE
from libs.common.envelope import Envelope
from libs.common.fair_read import TenantGate, TenantStreams, create_group, field_map, per_stream
from libs.common.jobflow import Message, StageContext
from libs.common.keys import Lane, Partition, Stage, group_name
from libs.common.maintenance import Maintenance
from libs.common.outage import Backoff, Outage
from libs.common.settings import WorkerSettings
from libs.common.stage import FailureRule, Handler

logger = logging.getLogger(__name__)


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _ReadSlot:
    """A batch's place among its worker's ``concurrency``: given back once, when the batch
    ends or when it waits on its tenant's own cap (:func:`yield_read_slot`)."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = True

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


# The read slot of the batch that the running task works for (set by Worker._run_batch).
_read_slot: contextvars.ContextVar[_ReadSlot | None] = contextvars.ContextVar("read_slot", default=None)


def yield_read_slot() -> None:
    """Let the worker read its next batch while the current one waits on its tenant's own
    cap (the embedder's parse processes, ``fair_slots.py``): the batch goes on, in flight
    as before (heartbeated, committed, drained on shutdown), but no longer counts against
    ``concurrency``, so other tenants' work is read meanwhile. Such a tenant is left out
    of the reads while it waits (``TenantGate``), which bounds the batches let go this
    way by the tenants holding a capped resource. Outside a batch: nothing."""
    slot = _read_slot.get()
    if slot is not None:
        slot.give_back()


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
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.stopping = asyncio.Event()
        # Entry ids being worked on, and the stream each was read from.
        self.inflight: dict[str, str] = {}
        # The bulk lane reads a stream per tenant, in turns (fair_read.py).
        self.tenants = TenantStreams(client, self.ctx.partition, stage, self.group) if lane == BULK else None
        # A handler may name tenants whose bulk work would only wait now: left out of reads.
        self.gate = handler if lane == BULK and isinstance(handler, TenantGate) else None
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()
        # Shared by the workers on this client (a process's): one log line per Valkey outage.
        self.outage = Outage.of(client, f"stage={stage}")
        self.maintenance = Maintenance(client, self, settings)
        self.batches = BatchProcessor(
            client, self.ctx, handler, settings, group=self.group, stopping=self.stopping
        )

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
        slot = _ReadSlot(self.slots)
        _read_slot.set(slot)  # this task's context, and its children's
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
            slot.give_back()

    async def _process_logged(self, messages: list[Message]) -> None:
        try:
            await self.process(messages)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            logger.error("stage=%s could not commit a batch of %d: %s", self.stage, len(messages), exc)

    # --- reading -------------------------------------------------------------

    async def read(self) -> list[Message]:
        if self.tenants is not None:
            skip = self.gate.saturated() if self.gate is not None else ()
            entries = await self.tenants.read(self.consumer, self.read_count, self.s.read_block_ms, skip)
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

    # --- processing (batch_processor.py) -------------------------------------

    async def process(self, messages: list[Message]) -> None:
        """Handle one batch and commit every message's outcome in one round trip."""
        await self.batches.process(messages)

    async def mark_running(self, envs: list[Envelope]) -> None:
        """Show the stage's status on jobs it has started (unless they are already final)."""
        await self.batches.mark_running(envs)
