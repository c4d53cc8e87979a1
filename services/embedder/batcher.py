"""Dynamic batching for the embedding model: questions in calls of their own.

Every handler call of the embedder (both lanes, every concurrent batch) hands
its texts to one :class:`EmbeddingBatcher`. Texts go to the model in calls of
at most ``max_texts``, through two loops, one per :class:`Priority`:

* the bulk loop feeds chunk texts, one call at a time: texts of different jobs
  share a call; a call that is not full waits up to ``max_wait_s`` for more;
* the question loop feeds question texts, one call at a time, at once (someone
  is waiting on them), in a worker thread of its own: a question's call runs
  while a bulk call is running, so a question never waits for a tenant's bulk
  ingest, queued or running.

So at most two model calls run at once, one of each priority. The model must
take calls from two threads: the ONNX backend runs them concurrently (a short
call no longer waits for a long one); a backend that serialises its calls
behind a lock (the torch one) makes a question wait for the running bulk call,
as when there was a single loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from libs.common import metrics


class Priority(IntEnum):
    QUERY = 0  # someone waits on it: a question of a chat or a search
    BULK = 1  # document chunks


@dataclass(eq=False)
class _Request:
    texts: Sequence[str]
    future: asyncio.Future[np.ndarray]
    vectors: list[np.ndarray | None] = field(default_factory=list)
    taken: int = 0  # texts handed to model calls so far
    filled: int = 0  # texts whose vectors came back

    @property
    def remaining(self) -> int:
        return len(self.texts) - self.taken


class _Lane:
    """One priority's queue, its loop task, the event that wakes the loop, and the
    thread its model calls run in (its own: never behind the default pool's other work)."""

    def __init__(self, priority: Priority) -> None:
        self.queue: deque[_Request] = deque()
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=f"embed-{priority.name.lower()}")

    def queued(self) -> int:
        return sum(r.remaining for r in self.queue if not r.future.done())

    def drop_abandoned(self) -> None:
        while self.queue and (self.queue[0].future.done() or self.queue[0].remaining == 0):
            self.queue.popleft()

    def take(self, room: int) -> list[tuple[_Request, int, int]]:
        """The next call's texts, at most ``room``: (request, start, end) slices in arrival order."""
        slices: list[tuple[_Request, int, int]] = []
        for request in self.queue:
            if room == 0:
                break
            if request.future.done() or request.remaining == 0:
                continue
            n = min(room, request.remaining)
            slices.append((request, request.taken, request.taken + n))
            request.taken += n
            room -= n
        return slices


class EmbeddingBatcher:
    """Coalesces texts from concurrent callers into model calls of at most ``max_texts``.

    ``embed`` is the model (blocking; run in one worker thread per priority, one call
    at a time in each, so at most two at once).
    """

    def __init__(
        self,
        embed: Callable[[Sequence[str]], np.ndarray],
        dim: int,
        *,
        max_texts: int = 64,
        max_wait_s: float = 0.002,
    ) -> None:
        self._embed = embed
        self.dim = dim
        self.max_texts = max(1, max_texts)
        self.max_wait_s = max(0.0, max_wait_s)
        self._lanes: dict[Priority, _Lane] = {p: _Lane(p) for p in Priority}

    async def embed(self, texts: Sequence[str], priority: Priority = Priority.BULK) -> np.ndarray:
        """Vectors of ``texts`` in order, shape (len(texts), dim)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        request = _Request(texts, asyncio.get_running_loop().create_future(), [None] * len(texts))
        lane = self._lanes[priority]
        lane.queue.append(request)
        lane.arrived.set()
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._run(priority))
        return await request.future

    async def aclose(self) -> None:
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
        for lane in self._lanes.values():
            for request in lane.queue:
                if not request.future.done():
                    request.future.set_exception(RuntimeError("the embedder is shutting down"))
            lane.queue.clear()
            lane.thread.shutdown(wait=False)  # its threads end once a running call returns

    # --- the loops --------------------------------------------------------------

    async def _run(self, priority: Priority) -> None:
        lane = self._lanes[priority]
        while True:
            lane.drop_abandoned()
            if not lane.queued():
                lane.arrived.clear()
                await lane.arrived.wait()
                continue
            if priority is Priority.BULK and lane.queued() < self.max_texts and self.max_wait_s:
                await self._wait_for_more(lane)
            slices = lane.take(self.max_texts)
            if slices:
                await self._call(lane, slices)

    async def _wait_for_more(self, lane: _Lane) -> None:
        """Up to ``max_wait_s`` for the bulk call to fill."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while lane.queued() < self.max_texts:
            left = deadline - loop.time()
            if left <= 0:
                return
            lane.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.arrived.wait(), timeout=left)

    async def _call(self, lane: _Lane, slices: list[tuple[_Request, int, int]]) -> None:
        texts = [t for request, start, end in slices for t in request.texts[start:end]]
        metrics.EMBEDDED_TEXTS.inc(len(texts))
        metrics.EMBEDDING_BATCH.observe(len(texts))
        try:
            loop = asyncio.get_running_loop()
            vectors = await loop.run_in_executor(lane.thread, self._embed, texts)
            if vectors.shape != (len(texts), self.dim):
                raise RuntimeError(
                    f"the model returned vectors of shape {vectors.shape} for {len(texts)} texts "
                    f"(expected dimension {self.dim})"
                )
        except Exception as exc:
            # Every request in this call fails whole; its other slices are dropped.
            for request, _start, _end in slices:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        pos = 0
        for request, start, end in slices:
            n = end - start
            if not request.future.done():
                request.vectors[start:end] = list(vectors[pos : pos + n])
                request.filled += n
                if request.filled == len(request.texts):
                    request.future.set_result(np.stack(request.vectors).astype(np.float32, copy=False))  # type: ignore[arg-type]
            pos += n
