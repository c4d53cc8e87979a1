"""Answer backends: a streaming LLM behind a protocol, answerers, and the answer shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from pydantic import BaseModel, computed_field

from libs.common.models import Citation, Hit
from services.generator.text import word_pieces

# Called with each piece of the answer as it is produced; the pieces join to the answer.
OnToken = Callable[[str], Awaitable[None]]


class Answer(BaseModel):
    answer: str
    citations: list[Citation]
    # "llm:<model>" or "extractive"
    mode: str
    # The answerer declined: nothing in the documents answers the question (no evidence
    # reached min_score, or none that it could quote or cite). The answer then says so.
    abstained: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def answerable(self) -> bool:
        """Whether the documents answer the question: ``not abstained``, for clients that
        look for an explicit flag (``"answerable": false`` is an abstention)."""
        return not self.abstained


class ChatLLM(Protocol):
    """An OpenAI-style chat model: messages in, text deltas out as they are produced.

    The deltas join to the answer (a leading ``<think>`` block and outer whitespace
    removed). Failures raise ``RetryableError`` or ``PermanentError``; nothing waits
    past ``deadline`` (unix time).
    """

    @property
    def model(self) -> str: ...

    def stream(self, messages: Sequence[dict[str, str]], *, deadline: float) -> AsyncIterator[str]: ...


class Answerer(Protocol):
    """Builds a cited answer to a question from retrieved hits.

    ``on_token`` receives the answer piece by piece while it is produced; the pieces
    join to ``Answer.answer``.
    """

    async def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        *,
        on_token: OnToken | None = None,
        deadline: float,
    ) -> Answer: ...


async def emit_pieces(text: str, on_token: OnToken | None) -> None:
    """Send ``text`` to ``on_token`` a word at a time (with its spaces), if there is one."""
    if on_token is None:
        return
    for piece in word_pieces(text):
        await on_token(piece)
