"""The generator stage: a cited answer from the retrieved hits, streamed as it is written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common import constants as C
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError
from libs.common.models import Hit
from libs.common.worker import Outcome
from services.generator.backends import JOB_ID, Answerer, OnToken
from services.generator.events import AnswerStream, CancelWatch


class GenerateHandler:
    """Answers the jobs of a batch side by side.

    With a Valkey client, jobs cancelled while queued are skipped, and a job
    cancelled while it is being answered has its answer abandoned (the LLM
    call is cancelled). With an answer stream, every answer goes out piece by
    piece as it is written.
    """

    def __init__(
        self,
        answerer: Answerer,
        stream: AnswerStream | None = None,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.answerer = answerer
        self.stream = stream
        self.r = client
        self.cancels = CancelWatch(client) if client is not None else None

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        ended = await self._ended(batch)
        tasks: list[asyncio.Task[Any]] = []
        for env in batch:
            task = asyncio.ensure_future(self._answer(env, ended.get(env.job_id)))
            if self.cancels is not None:
                self.cancels.register(env.job_id, task)
            tasks.append(task)
        # Answers are independent (LLM calls are I/O): run them side by side.
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return [
            PermanentError("cancelled by the client") if isinstance(r, asyncio.CancelledError) else r
            for r in results
        ]

    async def _ended(self, batch: Sequence[Envelope]) -> dict[str, str]:
        """Jobs of the batch that already reached a final status (cancelled while queued)."""
        if self.r is None or self.cancels is None:
            return {}
        self.cancels.start()
        async with self.r.pipeline(transaction=False) as pipe:
            for env in batch:
                pipe.hget(C.job_key(env.job_id), "status")
            statuses = await pipe.execute()
        found = {
            env.job_id: (s.decode() if isinstance(s, bytes) else s)
            for env, s in zip(batch, statuses, strict=True)
        }
        return {job: status for job, status in found.items() if status in C.FINAL_STATUSES}

    async def aclose(self) -> None:
        """Release the answerer's HTTP client, if it has one, and the cancel listener."""
        if self.cancels is not None:
            await self.cancels.aclose()
        close = getattr(self.answerer, "aclose", None)
        if close is not None:
            await close()

    async def _answer(self, env: Envelope, ended: str | None) -> dict[str, object]:
        JOB_ID.set(env.job_id)  # this task's own context: log lines below name the job
        if ended is not None:
            raise PermanentError(f"the job was {ended} before its answer started")
        hits = [Hit.model_validate(h) for h in env.payload["hits"]]
        stream = self.stream
        on_token: OnToken | None = None
        if stream is not None:
            await stream.started(env)

            async def on_token(text: str) -> None:
                await stream.token(env, text)

        try:
            answer = await self.answerer.answer(
                env.payload["question"], hits, on_token=on_token, deadline=env.deadline
            )
        finally:
            if stream is not None:
                await stream.finished(env)
        return answer.model_dump()
