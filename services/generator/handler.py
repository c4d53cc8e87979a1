"""The generator stage: a cited answer from the retrieved hits, streamed as it is written."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common.constants import GENERATOR
from libs.common.decode import as_text
from libs.common.envelope import Envelope
from libs.common.errors import JobEnded
from libs.common.logs import bind, job_log
from libs.common.models import Hit
from libs.common.payloads import ChatHits, view
from libs.common.stage import Outcome, Output
from libs.common.status import is_final
from services.generator.backends import Answerer, OnToken
from services.generator.cache import with_cache_entry
from services.generator.condense import (
    Condenser,
    answered_question,
    condense_step,
    condenser_for,
    needs_condensing,
)
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
        condenser: Condenser | None = None,
    ) -> None:
        self.answerer = answerer
        # Rewrites a follow-up as a standalone question (a chat with history, see condense.py).
        self.condenser = condenser or condenser_for(answerer)
        self.stream = stream
        self.r = client
        self.cancels = CancelWatch(client) if client is not None else None

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        if self.cancels is not None:
            self.cancels.start()  # once: needs the running loop
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
            JobEnded("cancelled by the client") if isinstance(r, asyncio.CancelledError) else r
            for r in results
        ]

    async def _ended(self, batch: Sequence[Envelope]) -> dict[str, str]:
        """Jobs of the batch that already reached a final status (cancelled while queued)."""
        if self.r is None:
            return {}
        async with self.r.pipeline(transaction=False) as pipe:
            for env in batch:
                pipe.hget(env.job_keys.hash, "status")
            statuses = await pipe.execute()
        return {
            env.job_id: as_text(status)
            for env, status in zip(batch, statuses, strict=True)
            if status is not None and is_final(as_text(status))
        }

    async def aclose(self) -> None:
        """Release the answerer's HTTP client, if it has one, and the cancel listener."""
        if self.cancels is not None:
            await self.cancels.aclose()
        close = getattr(self.answerer, "aclose", None)
        if close is not None:
            await close()

    async def _answer(self, env: Envelope, ended: str | None) -> Outcome:
        bind(**job_log(env, GENERATOR))  # this task's context: its log lines name the job
        if ended is not None:
            raise JobEnded(f"the job was {ended} before its answer started")
        if needs_condensing(env):
            # The first of a chat's two generator steps: the question to retrieve with.
            return await condense_step(self.condenser, env)
        payload = view(env, ChatHits)
        hits = [Hit.model_validate(h) for h in payload["hits"]]
        stream = self.stream
        on_token: OnToken | None = None
        if stream is not None:
            await stream.started(env)

            async def on_token(text: str) -> None:
                await stream.token(env, text)

        try:
            answer = await self.answerer.answer(
                payload["question"], hits, on_token=on_token, deadline=env.deadline
            )
        finally:
            # Events not written yet go with the final commit (a failed answer drops them).
            pending = await stream.finished(env) if stream is not None else []
        outcome = with_cache_entry(env.payload, {**answer.model_dump(), **answered_question(env.payload)})
        if not pending:
            return outcome
        if isinstance(outcome, Output):
            return dataclasses.replace(outcome, events=pending)
        assert isinstance(outcome, dict)
        return Output(outcome, events=pending)
