"""The generator stage: a cited answer from the retrieved hits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from libs.common.envelope import Envelope
from libs.common.models import Hit
from libs.common.worker import Outcome
from services.generator.backends import Answerer


class GenerateHandler:
    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        # Answers are independent (LLM calls are I/O): run them side by side.
        results = await asyncio.gather(
            *(asyncio.to_thread(self._answer, env) for env in batch), return_exceptions=True
        )
        return list(results)

    def close(self) -> None:
        """Release the answerer's HTTP client, if it has one."""
        close = getattr(self.answerer, "close", None)
        if close is not None:
            close()

    def _answer(self, env: Envelope) -> dict[str, object]:
        hits = [Hit.model_validate(h) for h in env.payload["hits"]]
        return self.answerer.answer(env.payload["question"], hits).model_dump()
