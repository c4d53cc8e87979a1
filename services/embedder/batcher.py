"""Dynamic batching for the embedding model, questions first.

Every handler call of the embedder (both lanes, every concurrent batch) hands
its texts to one :class:`EmbeddingBatcher`. A single loop feeds the model:
each call takes up to ``max_texts`` queued texts, question texts before chunk
texts, so texts of different jobs share a model call and a question waits for
at most the one model call already running, never for a queued bulk ingest.

While a model call runs, new texts queue up and form the next call; a call of
chunk texts only that is not full waits up to ``max_wait_s`` for more. A call
that carries a question never waits: someone is waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
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


class EmbeddingBatcher:
    """Coalesces texts from concurrent callers into model calls of at most ``max_texts``.

    ``embed`` is the model (blocking; run in a worker thread, one call at a time).
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
        self._queues: dict[Priority, deque[_Request]] = {p: deque() for p in Priority}
        self._arrived = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def embed(self, texts: Sequence[str], priority: Priority = Priority.BULK) -> np.ndarray:
        """Vectors of ``texts`` in order, shape (len(texts), dim)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        request = _Request(texts, asyncio.get_running_loop().create_future(), [None] * len(texts))
        self._queues[priority].append(request)
        self._arrived.set()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run())
        return await request.future

    async def aclose(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for queue in self._queues.values():
            for request in queue:
                if not request.future.done():
                    request.future.set_exception(RuntimeError("the embedder is shutting down"))
            queue.clear()

    # --- the loop ---------------------------------------------------------------

    def _queued(self) -> int:
        return sum(r.remaining for q in self._queues.values() for r in q if not r.future.done())

    async def _run(self) -> None:
        while True:
            self._drop_abandoned()
            if not self._queued():
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if not self._queues[Priority.QUERY] and self._queued() < self.max_texts and self.max_wait_s:
                await self._wait_for_more()
            slices = self._take()
            if slices:
                await self._call(slices)

    async def _wait_for_more(self) -> None:
        """Up to ``max_wait_s`` for the call to fill, or for a question to arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while self._queued() < self.max_texts and not self._queues[Priority.QUERY]:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=left)

    def _drop_abandoned(self) -> None:
        for queue in self._queues.values():
            while queue and (queue[0].future.done() or queue[0].remaining == 0):
                queue.popleft()

    def _take(self) -> list[tuple[_Request, int, int]]:
        """The next call's texts: (request, start, end) slices, questions first."""
        slices: list[tuple[_Request, int, int]] = []
        room = self.max_texts
        for priority in Priority:
            queue = self._queues[priority]
            for request in queue:
                if room == 0:
                    break
                if request.future.done() or request.remaining == 0:
                    continue
                n = min(room, request.remaining)
                slices.append((request, request.taken, request.taken + n))
                request.taken += n
                room -= n
        return slices

    async def _call(self, slices: list[tuple[_Request, int, int]]) -> None:
        texts = [t for request, start, end in slices for t in request.texts[start:end]]
        metrics.EMBEDDED_TEXTS.inc(len(texts))
        metrics.EMBEDDING_BATCH.observe(len(texts))
        try:
            vectors = await asyncio.to_thread(self._embed, texts)
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
