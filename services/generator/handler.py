"""The generator stage: a cited answer from the retrieved hits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from libs.common.envelope import Envelope
from libs.common.models import Hit
from libs.common.worker import Outcome
from services.generator.backends import JOB_ID, Answerer, OnToken


class TokenSink(Protocol):
    """Receives each piece of a job's answer while it is written (e.g. to stream it out)."""

    async def __call__(self, env: Envelope, token: str) -> None: ...


class GenerateHandler:
    def __init__(self, answerer: Answerer, token_sink: TokenSink | None = None) -> None:
        self.answerer = answerer
        self.token_sink = token_sink

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        # Answers are independent (LLM calls are I/O): run them side by side.
        results = await asyncio.gather(*(self._answer(env) for env in batch), return_exceptions=True)
        return list(results)

    async def aclose(self) -> None:
        """Release the answerer's HTTP client, if it has one."""
        close = getattr(self.answerer, "aclose", None)
        if close is not None:
            await close()

    async def _answer(self, env: Envelope) -> dict[str, object]:
        JOB_ID.set(env.job_id)  # this task's own context: log lines below name the job
        hits = [Hit.model_validate(h) for h in env.payload["hits"]]
        answer = await self.answerer.answer(
            env.payload["question"], hits, on_token=self._on_token(env), deadline=env.deadline
        )
        return answer.model_dump()

    def _on_token(self, env: Envelope) -> OnToken | None:
        sink = self.token_sink
        if sink is None:
            return None

        async def on_token(token: str) -> None:
            await sink(env, token)

        return on_token
