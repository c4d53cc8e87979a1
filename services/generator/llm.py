"""The LLM answerer and an OpenAI-compatible streaming chat model behind ``ChatLLM``.

``OpenAIChat`` makes exactly one request per call (the SDK's own retries are off,
``max_retries=0``); ``ResilientChat`` (resilient.py) adds retries, backoff and the
circuit breaker around it. Failures become ``RetryableError`` or ``PermanentError``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import openai

from libs.common import metrics
from libs.common.errors import DocuMindError, PermanentError, RetryableError
from libs.common.models import Hit
from services.generator.backends import Answer, ChatLLM, OnToken, emit_pieces
from services.generator.budget import fit_sources
from services.generator.extractive import ExtractiveAnswerer
from services.generator.llm_errors import LLMDeadlineError, LLMUnavailableError, map_openai_error
from services.generator.prompt import (
    NOTHING_RELEVANT,
    build_messages,
    make_citations,
    relevant_hits,
    says_not_found,
)
from services.generator.thinking import ThinkFilter
from services.generator.word_vectors import Similarity

if TYPE_CHECKING:
    import httpx2
    from openai.types.chat import ChatCompletionMessageParam

logger = logging.getLogger(__name__)


def _left(deadline: float) -> float:
    return max(deadline - time.time(), 0.0)


def _is_event_stream(response: httpx2.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


def _completion_text(data: Any) -> tuple[str, str | None]:
    """Content and finish reason of a whole (not streamed) chat completion."""
    if not isinstance(data, Mapping) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise ValueError("no choices in the completion")
    choice = data["choices"][0]
    message = choice.get("message") if isinstance(choice, Mapping) else None
    content = message.get("content") if isinstance(message, Mapping) else None
    if content is not None and not isinstance(content, str):
        raise ValueError("the message content is not text")
    finish = choice.get("finish_reason")
    return content or "", finish if isinstance(finish, str) else None


async def aclose(stream: AsyncIterator[str]) -> None:
    """Close an async generator (and the HTTP response it holds) now, not at GC time."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


class OpenAIChat:
    """``ChatLLM`` over any OpenAI-compatible chat completions endpoint, streamed.

    ``timeout_s`` bounds each wait on the server: for the response to start and for
    each next piece of the stream. A server that ignores ``stream=True`` and sends one
    JSON completion is understood too.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str,
        timeout_s: float,
        max_tokens: int,
        *,
        temperature: float | None = 0.0,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._where = base_url or "the OpenAI API"
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0
        )

    async def stream(self, messages: Sequence[dict[str, str]], *, deadline: float) -> AsyncIterator[str]:
        if _left(deadline) <= 0:
            raise LLMDeadlineError("LLM not asked: the job's deadline has passed")
        params = cast("list[ChatCompletionMessageParam]", [dict(m) for m in messages])
        started = time.monotonic()
        try:
            async with asyncio.timeout(_left(deadline)):
                response = await self._client.chat.completions.create(
                    model=self.model,
                    messages=params,
                    max_tokens=self.max_tokens,
                    temperature=openai.omit if self.temperature is None else self.temperature,
                    stream=True,
                )
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        except TimeoutError as exc:
            raise LLMDeadlineError(f"LLM at {self._where} had not answered by the job's deadline") from exc

        cleaner = ThinkFilter()
        produced = 0
        finish: str | None = None
        try:
            if _is_event_stream(response.response):
                while True:
                    try:
                        async with asyncio.timeout(_left(deadline)):
                            chunk = await anext(response)
                    except StopAsyncIteration:
                        break
                    for choice in getattr(chunk, "choices", None) or ():
                        if getattr(choice, "index", 0) != 0:
                            continue
                        finish = getattr(choice, "finish_reason", None) or finish
                        content = getattr(getattr(choice, "delta", None), "content", None)
                        piece = cleaner.feed(content) if isinstance(content, str) else ""
                        if piece:
                            if not produced:
                                metrics.LLM_FIRST_TOKEN_SECONDS.observe(time.monotonic() - started)
                            metrics.LLM_TOKENS.inc()
                            produced += len(piece)
                            yield piece
            else:
                # A server that ignored stream=True: one JSON completion.
                async with asyncio.timeout(_left(deadline)):
                    body = await response.response.aread()
                content, finish = _completion_text(json.loads(body))
                piece = cleaner.feed(content)
                if piece:
                    produced += len(piece)
                    yield piece
            tail = cleaner.finish()
            if tail:
                produced += len(tail)
                yield tail
        except openai.OpenAIError as exc:
            raise self._error(exc, produced) from exc
        except TimeoutError as exc:
            raise LLMDeadlineError(
                f"LLM still answering when the job's deadline came ({produced} characters in)"
            ) from exc
        except ValueError as exc:  # bad JSON, bad UTF-8, a chunk of the wrong shape
            raise RetryableError(f"LLM sent a malformed response ({produced} characters in): {exc}") from exc
        finally:
            await response.close()

        if not produced:
            if finish == "content_filter":
                raise PermanentError("LLM refused to answer (content filter)")
            if cleaner.in_thought:
                raise RetryableError(
                    f"LLM stopped while still reasoning, before any answer (finish reason {finish})"
                )
            if finish is None:
                # The server ended the stream before answering (llama.cpp's server does when
                # another request interrupts this one): worth trying again within the call.
                raise LLMUnavailableError("LLM closed the stream before answering (no finish reason)")
            raise RetryableError(f"LLM returned an empty answer (finish reason {finish})")
        if finish is None:
            logger.warning(
                "LLM %s stream ended without a finish reason after %d characters: maybe cut short",
                self.model,
                produced,
            )
        metrics.LLM_SECONDS.observe(time.monotonic() - started)
        logger.debug(
            "LLM %s answered %d characters in %.2fs, finish %s",
            self.model,
            produced,
            time.monotonic() - started,
            finish,
        )

    def _error(self, exc: openai.OpenAIError, produced: int = 0) -> DocuMindError:
        error = map_openai_error(exc, model=self.model, base_url=self.base_url)
        logger.warning(
            "LLM call to model %s failed (%d characters in): %s",
            self.model,
            produced,
            error.message,
        )
        return error

    async def aclose(self) -> None:
        await self._client.close()


class LLMAnswerer:
    """Asks a chat model to answer from the numbered evidence hits, citing them as [n].

    The sources are the hits reaching ``min_score``, best first, as many as fit in
    ``context_tokens`` (estimated); they are numbered 1..k in the prompt and the
    answer's citations map back to them.

    It abstains (``abstained``, ``"answerable": false``, no citations) without asking
    the model when the evidence is weak, by the extractive answerer's test (its
    ``Evidence.score`` below ``min_evidence``, see :mod:`.evidence`); and after asking,
    when the reply begins with the ``NOT_FOUND`` phrase the prompt tells the model to
    give when the sources do not answer (or a usual wording of it, ``says_not_found``).
    A reply citing no source is still an answer: it comes with no citations.
    """

    def __init__(
        self,
        llm: ChatLLM,
        min_score: float,
        context_tokens: int = 4000,
        min_evidence: float = 0.0,
        *,
        similarity: Similarity | None = None,
    ) -> None:
        self.llm = llm
        self.min_score = min_score
        self.context_tokens = context_tokens
        self.min_evidence = min_evidence
        # Judges the evidence as extractive mode does (one sentence is enough to judge by),
        # with the same word vectors, as ``min_evidence`` was chosen with them.
        self._assessor = ExtractiveAnswerer(min_score, max_sentences=1, similarity=similarity)

    @property
    def mode(self) -> str:
        return f"llm:{self.llm.model}"

    async def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        *,
        on_token: OnToken | None = None,
        deadline: float,
    ) -> Answer:
        evidence = fit_sources(relevant_hits(hits, self.min_score), self.context_tokens)
        # Off the event loop: judging the evidence scores its sentences (CPU work).
        weak = await asyncio.to_thread(self._weakness, question, evidence)
        if weak is not None:
            logger.info("nothing relevant (%d hits): %s", len(hits), weak)
            await emit_pieces(NOTHING_RELEVANT, on_token)
            return Answer(answer=NOTHING_RELEVANT, citations=[], mode=self.mode, abstained=True)
        parts: list[str] = []
        stream = self.llm.stream(build_messages(question, evidence), deadline=deadline)
        try:
            async for delta in stream:
                parts.append(delta)
                if on_token is not None:
                    await on_token(delta)
        finally:
            await aclose(stream)
        text = "".join(parts)
        if not text.strip():
            raise RetryableError("LLM returned an empty answer")
        citations = make_citations(text, evidence)
        # Told to say NOT_FOUND when the sources lack the answer: a reply that says it
        # abstains, and cites nothing. Any other reply is an answer, cited or not.
        if says_not_found(text):
            return Answer(answer=text, citations=[], mode=self.mode, abstained=True)
        return Answer(answer=text, citations=citations, mode=self.mode)

    def _weakness(self, question: str, evidence: Sequence[Hit]) -> str | None:
        """Why the evidence is too weak to ask the model about, or None."""
        if not evidence:
            return f"none reaches min_score {self.min_score:.3f}"
        if self.min_evidence <= 0:
            return None
        draft = self._assessor.draft(question, evidence)
        if draft is None:
            return "no sentence shares a content word with the question"
        if draft.support.score < self.min_evidence:
            return f"evidence score {draft.support.score:.3f} below min_evidence {self.min_evidence:.3f}"
        return None

    async def aclose(self) -> None:
        """Closes the model's client when it has one."""
        close = getattr(self.llm, "aclose", None)
        if close is not None:
            await close()
