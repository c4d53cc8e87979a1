"""The generator's side of a job's events: the answer as it is written, and cancellation.

``ValkeyAnswerStream`` appends ``generating`` when an answer starts, then the
answer's text as ``token`` events: pieces that arrive close together are sent
as one event (at most one per ``flush_interval_s``), the rest is flushed when
the answer is complete, before the job's ``done`` event is committed.

``CancelWatch`` listens on the cancel channel and cancels the task answering a
cancelled job, which abandons its LLM call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common import events
from libs.common.constants import GENERATOR
from libs.common.envelope import Envelope
from libs.common.keys import CANCEL_CHANNEL
from libs.common.outage import Backoff, Outage

logger = logging.getLogger(__name__)


class AnswerStream(Protocol):
    """Where a job's answer goes while it is written."""

    async def started(self, env: Envelope) -> None: ...

    async def token(self, env: Envelope, text: str) -> None: ...

    async def finished(self, env: Envelope) -> list[tuple[str, dict[str, Any]]]:
        """The job's events not written yet: they go with the job's final commit."""
        ...


class ValkeyAnswerStream:
    """Answer tokens on the job's events stream, at most one write per ``flush_interval_s``.

    Nothing is written when generation starts: the ``generating`` event goes with
    the first flush of tokens, which happens once ``flush_interval_s`` has passed
    since the start. An answer that is complete sooner (an extractive one, or a very
    fast LLM) costs no round trip of its own: ``finished`` hands its ``generating``
    and ``token`` events to the job's final commit.
    """

    def __init__(self, client: aioredis.Redis, ttl_s: int, flush_interval_s: float = 0.05) -> None:
        self.r = client
        self.ttl_s = ttl_s
        self.flush_interval_s = flush_interval_s
        self._buffers: dict[str, list[str]] = {}
        self._flushed_at: dict[str, float] = {}
        self._unannounced: set[str] = set()

    async def started(self, env: Envelope) -> None:
        self._buffers[env.job_id] = []
        self._flushed_at[env.job_id] = time.monotonic()
        self._unannounced.add(env.job_id)

    async def token(self, env: Envelope, text: str) -> None:
        buffer = self._buffers.setdefault(env.job_id, [])
        buffer.append(text)
        if time.monotonic() - self._flushed_at.get(env.job_id, 0.0) >= self.flush_interval_s:
            await self._flush(env.job_id)

    async def finished(self, env: Envelope) -> list[tuple[str, dict[str, Any]]]:
        pending = self._pending(env.job_id)
        self._buffers.pop(env.job_id, None)
        self._flushed_at.pop(env.job_id, None)
        self._unannounced.discard(env.job_id)
        return pending

    def _pending(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The events owed so far (``generating`` first, if not yet written), buffers emptied."""
        buffer = self._buffers.get(job_id)
        pending: list[tuple[str, dict[str, Any]]] = []
        if job_id in self._unannounced:
            self._unannounced.discard(job_id)
            pending.append(("generating", {"stage": GENERATOR}))
        if buffer:
            pending.append(("token", {"text": "".join(buffer)}))
            buffer.clear()
        return pending

    async def _flush(self, job_id: str) -> None:
        pending = self._pending(job_id)
        self._flushed_at[job_id] = time.monotonic()
        if pending:
            await events.append(self.r, job_id, pending, self.ttl_s)


class CancelWatch:
    """Cancels the registered task of a job when the job is cancelled."""

    def __init__(self, client: aioredis.Redis, *, remember: int = 1000) -> None:
        self.r = client
        self._tasks: dict[str, asyncio.Task[object]] = {}
        # Recently cancelled ids: a job cancelled just before its task registers is caught too.
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._listener: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen())

    def register(self, job_id: str, task: asyncio.Task[object]) -> None:
        if job_id in self._recent:
            task.cancel()
            return
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    def _cancelled(self, job_id: str) -> None:
        self._recent[job_id] = None
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            logger.info("job_id=%s stage=generator cancelled by the client: abandoning its answer", job_id)
            task.cancel()

    async def _listen(self) -> None:
        # The workers' outage too (same client): logged once per outage, backoff per loop.
        outage = Outage.of(self.r, f"stage={GENERATOR}")
        backoff = Backoff()
        while not self._closed.is_set():
            pubsub = self.r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CANCEL_CHANNEL)
                outage.answered()
                backoff.reset()
                self.subscribed.set()
                while not self._closed.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        data = message["data"]
                        self._cancelled(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                await outage.failed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), timeout=backoff.next_delay())
            finally:
                close: Callable[[], Awaitable[None]] = pubsub.aclose  # untyped in redis
                with contextlib.suppress(Exception):
                    await close()

    async def aclose(self) -> None:
        self._closed.set()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener, timeout=5)
