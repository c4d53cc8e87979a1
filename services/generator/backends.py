"""Answer backends: an LLM behind a protocol, and the answer shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel

from libs.common.models import Citation, Hit


class Answer(BaseModel):
    answer: str
    citations: list[Citation]
    # "llm:<model>" or "extractive"
    mode: str


class ChatLLM(Protocol):
    """An OpenAI-style chat model: messages in, text out."""

    model: str

    def complete(self, messages: Sequence[dict[str, str]]) -> str: ...


class Answerer(Protocol):
    """Builds a cited answer to a question from retrieved hits."""

    def answer(self, question: str, hits: Sequence[Hit]) -> Answer: ...
