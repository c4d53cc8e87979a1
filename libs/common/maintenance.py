"""A worker's maintenance loop: due retries, heartbeats, reclaiming, backlog gauges.

Runs beside the read loop of one (stage, lane, partition) until the worker has
drained. Every ``maintenance_interval_s`` it moves retries whose backoff has
elapsed back onto the stream; every third of the visibility timeout it resets the
idle time of the messages still being worked on (so nobody reclaims them); and
when a slot is free it takes over messages idle past the visibility timeout,
whichever consumer held them (a crashed replica's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common import metrics
from libs.common.constants import BULK
from libs.common.decode import as_text
from libs.common.jobflow import Message, StageContext
from libs.common.keys import DEFAULT_TENANT
from libs.common.outage import Outage
from libs.common.scripts import IdleTenant, MoveDue, PruneTenant
from libs.common.settings import WorkerSettings

logger = logging.getLogger(__name__)

# Seconds between refreshes of the backlog gauges.
GAUGE_REFRESH_S = 5.0
# Due retries moved back per maintenance round, at most.
MOVE_DUE_LIMIT = 1000


class Reader(Protocol):
    """What maintenance needs of its worker."""

    ctx: StageContext
    group: str
    consumer: str
    slots: asyncio.Semaphore
    stopping: asyncio.Event
    inflight: dict[str, str]
    outage: Outage

    @property
    def read_count(self) -> int: ...

    def queues(self) -> list[tuple[str, str]]: ...

    def decode(
        self, mid: bytes | str, fields: dict[Any, Any], now: float, delivered: int = 1, *, stream: str
    ) -> Message: ...

    def spawn(self, messages: list[Message]) -> None: ...


class Maintenance:
    def __init__(self, client: aioredis.Redis, worker: Reader, settings: WorkerSettings) -> None:
        self.r = client
        self.w = worker
        self.s = settings
        self.closed = asyncio.Event()
        self._move_due = MoveDue(client)
        self._prune = PruneTenant(client)
        ctx = worker.ctx
        self._heartbeat_gauge = metrics.HEARTBEAT.labels(ctx.stage, ctx.lane, str(ctx.partition.index))
        self._heartbeat_gauge.set(time.time())

    def beat(self) -> None:
        """Show that this worker's loops are alive (the healthcheck reads it)."""
        self._heartbeat_gauge.set(time.time())

    async def run(self) -> None:
        last_heartbeat = time.monotonic()
        last_gauges = 0.0
        while not self.closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), timeout=self.s.maintenance_interval_s)
            if self.closed.is_set():
                return
            self.beat()
            try:
                if time.monotonic() - last_gauges >= GAUGE_REFRESH_S:
                    await self.refresh_gauges()
                    last_gauges = time.monotonic()
                for stream, delayed in self.w.queues():
                    await self._move_due(
                        delayed=delayed, stream=stream, now=time.time(), limit=MOVE_DUE_LIMIT
                    )
                if time.monotonic() - last_heartbeat >= self.s.visibility_timeout_s / 3:
                    await self.heartbeat()
                    last_heartbeat = time.monotonic()
                if not self.w.stopping.is_set() and not self.w.slots.locked():
                    await self.reclaim()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Skipped this round; the next comes an interval later (logged once per outage).
                await self.w.outage.failed(exc)
            else:
                self.w.outage.answered()

    async def refresh_gauges(self) -> None:
        """Set the backlog gauges of this worker's stage, lane and partition, and the
        partition's dead-letter gauge.

        On the bulk lane each figure is the sum over the partition's tenants: the streams
        the worker reads and those of every tenant in the set of bulk tenants (one that
        joined since the worker's last read too, whose stream may have no group yet).
        """
        ctx = self.w.ctx
        queues = dict(self.w.queues())
        # The bulk lane's streams by tenant, the default tenant's left out (never pruned).
        tenants: dict[str, str] = {}
        if ctx.lane == BULK:
            members = await self.r.smembers(ctx.partition.bulk_tenants(ctx.stage))
            for tenant in sorted(as_text(m) for m in members):
                stream = ctx.partition.stream(ctx.stage, BULK, tenant)
                queues.setdefault(stream, ctx.partition.delayed(ctx.stage, BULK, tenant))
                if tenant != DEFAULT_TENANT:
                    tenants[stream] = tenant
        async with self.r.pipeline(transaction=False) as pipe:
            for stream, delayed in queues.items():
                pipe.xlen(stream)
                pipe.xinfo_groups(stream)
                pipe.zcard(delayed)
            pipe.xlen(ctx.partition.dead_letters())
            *replies, dead = await pipe.execute(raise_on_error=False)
        length = pending = lag = delayed_n = 0
        idle: list[IdleTenant] = []
        replies_by_stream = zip(queues.items(), replies[::3], replies[1::3], replies[2::3], strict=True)
        for (stream, delayed_key), xlen, groups, delayed in replies_by_stream:
            n = xlen if isinstance(xlen, int) else 0
            group_pending, group_lag = backlog(n, groups if isinstance(groups, list) else [], self.w.group)
            waiting = delayed if isinstance(delayed, int) else 0
            length += n
            pending += group_pending
            lag += group_lag
            delayed_n += waiting
            if stream in tenants and isinstance(xlen, int) and n == group_pending == waiting == 0:
                idle.append(IdleTenant(tenants[stream], stream, delayed_key))
        labels = (ctx.stage, ctx.lane, str(ctx.partition.index))
        metrics.STREAM_LENGTH.labels(*labels).set(length)
        metrics.PENDING.labels(*labels).set(pending)
        metrics.GROUP_LAG.labels(*labels).set(lag)
        metrics.DELAYED.labels(*labels).set(delayed_n)
        if isinstance(dead, int):
            metrics.DEAD_LETTER_SIZE.labels(labels[2]).set(dead)
        await self.prune(idle)

    async def prune(self, idle: list[IdleTenant]) -> None:
        """Drop the bulk tenants idle for ``bulk_tenant_idle_s`` from the stage's set, and
        their streams, in one call (the script checks again, atomically, that nothing of
        each waits): the workers' reads, gauges and reclaims walk only the tenants that
        queue work."""
        ctx = self.w.ctx
        dropped = await self._prune.many(
            idle,
            tenants=ctx.partition.bulk_tenants(ctx.stage),
            group=self.w.group,
            idle_s=self.s.bulk_tenant_idle_s,
        )
        for tenant in dropped:
            logger.info(
                "stage=%s tenant=%s idle: dropped from the bulk lane until its next job", ctx.stage, tenant
            )

    async def heartbeat(self) -> None:
        """Reset the idle time of messages still being worked on, so they are not reclaimed."""
        by_stream: dict[str, list[Any]] = {}
        for mid, stream in list(self.w.inflight.items()):
            by_stream.setdefault(stream, []).append(mid)
        for stream, ids in by_stream.items():
            try:
                await self.r.xclaim(stream, self.w.group, self.w.consumer, 0, ids, justid=True)
            except ResponseError as exc:
                # Only an idle tenant's dropped stream has no group: its messages are done.
                if "NOGROUP" not in str(exc):
                    raise

    async def reclaim(self) -> int:
        """Take over messages idle longer than the visibility timeout, whoever held them
        (from the first of the worker's streams that has some)."""
        for stream, _delayed in self.w.queues():
            if self.w.stopping.is_set():
                return 0
            taken = await self._reclaim_from(stream)
            if taken:
                return taken
        return 0

    async def _reclaim_from(self, stream: str) -> int:
        await self.w.slots.acquire()
        try:
            _next, claimed, _deleted = await self.r.xautoclaim(
                stream,
                self.w.group,
                self.w.consumer,
                min_idle_time=int(self.s.visibility_timeout_s * 1000),
                start_id="0-0",
                count=self.w.read_count,
            )
        except ResponseError as exc:
            self.w.slots.release()
            if "NOGROUP" in str(exc):
                return 0  # an idle tenant's stream, just dropped by another worker
            raise
        except BaseException:
            self.w.slots.release()
            raise
        if not claimed:
            self.w.slots.release()
            return 0
        async with self.r.pipeline(transaction=False) as pipe:
            for mid, _fields in claimed:
                pipe.xpending_range(stream, self.w.group, min=mid, max=mid, count=1)
            pending = await pipe.execute()
        now = time.time()
        messages = [
            self.w.decode(mid, fields, now, delivered=int(p[0]["times_delivered"]) if p else 1, stream=stream)
            for (mid, fields), p in zip(claimed, pending, strict=True)
        ]
        metrics.RECLAIMED.labels(self.w.ctx.stage).inc(len(messages))
        logger.info("stage=%s reclaimed %d idle messages", self.w.ctx.stage, len(messages))
        self.w.spawn(messages)
        return len(messages)


def backlog(length: int, groups: list[Any], group: str) -> tuple[int, int]:
    """(pending, lag) of ``group`` on a stream of ``length`` entries, from XINFO GROUPS.

    Valkey reports the lag as NULL when it cannot count it: while the stream has a hole,
    an entry deleted with an older one still there. That is routine here: an entry is
    deleted as it is acknowledged (``lua.py``) and batches finish out of order, so a
    later batch's entries go while an earlier batch's are still pending. The stream
    then holds just the group's pending entries and those it has not read, so the lag
    is its length minus the pending count (exact with one group per stream, which is
    DocuMind's). A stream the group does not exist on yet (it will be created from id
    0) has every entry still to read.
    """
    for g in groups:
        if as_text(g.get("name")) == group:
            pending = int(g.get("pending") or 0)
            lag = g.get("lag")
            return pending, int(lag) if lag is not None else max(length - pending, 0)
    return 0, length
