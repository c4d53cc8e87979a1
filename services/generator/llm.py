"""The LLM answerer and an OpenAI-compatible chat model behind ``ChatLLM``.

The client never retries by itself (``max_retries=0``): failures become
``RetryableError`` or ``PermanentError`` and the stream runtime decides.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, cast

import openai

from libs.common.errors import DocuMindError, PermanentError, RetryableError
from libs.common.models import Hit
from services.generator.backends import Answer, ChatLLM
from services.generator.prompt import NOTHING_RELEVANT, build_messages, make_citations, relevant_hits

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

logger = logging.getLogger(__name__)

# Reasoning models served through OpenAI-compatible servers may prefix their thoughts.
_THINKING = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)
_DETAIL_MAX_CHARS = 300


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value) / scale
        except ValueError:
            continue
        if math.isfinite(delay):
            return max(delay, 0.0)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _detail(exc: openai.APIError) -> str:
    """The server's own error message when it sent one, else the SDK's."""
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(message, str) and message.strip():
            return message.strip()[:_DETAIL_MAX_CHARS]
    return str(exc.message)[:_DETAIL_MAX_CHARS]


def map_openai_error(exc: openai.OpenAIError, *, model: str, base_url: str | None) -> DocuMindError:
    """A ``RetryableError`` for transient failures, a ``PermanentError`` for the rest."""
    where = base_url or "the OpenAI API"
    if isinstance(exc, openai.APITimeoutError):
        return RetryableError(f"LLM request to {where} timed out")
    if isinstance(exc, openai.APIConnectionError):
        return RetryableError(f"cannot reach the LLM at {where}: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _detail(exc)
        if isinstance(exc, openai.RateLimitError):
            return RetryableError(
                f"LLM rate limit or quota hit (429): {detail}", delay_s=retry_after_s(exc.response.headers)
            )
        if isinstance(exc, openai.InternalServerError) or status in (408, 409):
            return RetryableError(
                f"LLM server error ({status}): {detail}", delay_s=retry_after_s(exc.response.headers)
            )
        if isinstance(exc, openai.AuthenticationError):
            return PermanentError(f"LLM authentication failed (401), check DOCUMIND_LLM_API_KEY: {detail}")
        if isinstance(exc, openai.PermissionDeniedError):
            return PermanentError(f"LLM access denied (403) for model {model!r}: {detail}")
        if isinstance(exc, openai.NotFoundError):
            return PermanentError(
                f"LLM model {model!r} or endpoint not found (404) at {where}, "
                f"check DOCUMIND_LLM_MODEL and DOCUMIND_LLM_BASE_URL: {detail}"
            )
        if isinstance(exc, openai.BadRequestError):
            return PermanentError(f"LLM rejected the request (400): {detail}")
        return PermanentError(f"LLM request failed ({status}): {detail}")
    if isinstance(exc, openai.APIResponseValidationError):
        return RetryableError(f"LLM returned an unexpected response: {exc.message}")
    return PermanentError(f"LLM client error: {exc}")


class OpenAIChat:
    """``ChatLLM`` over any OpenAI-compatible chat completions endpoint."""

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
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)

    def complete(self, messages: Sequence[dict[str, str]]) -> str:
        params = cast("list[ChatCompletionMessageParam]", [dict(m) for m in messages])
        started = time.monotonic()
        try:
            if self.temperature is None:
                response = self._client.chat.completions.create(
                    model=self.model, messages=params, max_tokens=self.max_tokens
                )
            else:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=params,
                    max_tokens=self.max_tokens,
                    temperature=self.temperature,
                )
        except openai.OpenAIError as exc:
            error = map_openai_error(exc, model=self.model, base_url=self.base_url)
            logger.warning("LLM call to model %s failed: %s", self.model, error.message)
            raise error from exc
        if not response.choices:
            raise RetryableError("LLM returned no choices")
        choice = response.choices[0]
        text = _THINKING.sub("", choice.message.content or "").strip()
        if not text:
            if choice.finish_reason == "content_filter":
                raise PermanentError("LLM refused to answer (content filter)")
            raise RetryableError(f"LLM returned an empty answer (finish reason {choice.finish_reason})")
        usage = response.usage
        logger.debug(
            "LLM %s answered in %.2fs, finish %s, tokens %s+%s",
            self.model,
            time.monotonic() - started,
            choice.finish_reason,
            usage.prompt_tokens if usage else "?",
            usage.completion_tokens if usage else "?",
        )
        return text

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIChat:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LLMAnswerer:
    """Asks a chat model to answer from the numbered evidence hits, citing them as [n]."""

    def __init__(self, llm: ChatLLM, min_score: float) -> None:
        self.llm = llm
        self.min_score = min_score

    @property
    def mode(self) -> str:
        return f"llm:{self.llm.model}"

    def answer(self, question: str, hits: Sequence[Hit]) -> Answer:
        evidence = relevant_hits(hits, self.min_score)
        if not evidence:
            logger.info("nothing relevant: none of %d hits reach min_score %.3f", len(hits), self.min_score)
            return Answer(answer=NOTHING_RELEVANT, citations=[], mode=self.mode)
        text = self.llm.complete(build_messages(question, evidence)).strip()
        if not text:
            raise RetryableError("LLM returned an empty answer")
        return Answer(answer=text, citations=make_citations(text, evidence), mode=self.mode)

    def close(self) -> None:
        """Closes the model's client when it has one."""
        close = getattr(self.llm, "close", None)
        if callable(close):
            close()
