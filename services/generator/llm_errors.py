"""What a failed LLM call means for the job: retry it, or fail it.

::

    RetryableError
    └── LLMUnavailableError   429, 5xx, 408/409, timeouts, connection errors, errors
                              the server sends inside a stream: worth retrying the
                              call (``delay_s`` is the server's Retry-After)
    PermanentError            the request or the configuration is at fault
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

import openai

from libs.common.errors import DocuMindError, PermanentError, RetryableError

_DETAIL_MAX_CHARS = 300


class LLMUnavailableError(RetryableError):
    """The provider is overloaded, failing or unreachable: the call may be retried."""


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
    """An ``LLMUnavailableError`` for transient failures, a ``PermanentError`` for the rest."""
    where = base_url or "the OpenAI API"
    if isinstance(exc, openai.APITimeoutError):
        return LLMUnavailableError(f"LLM request to {where} timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        why = f"{exc.message} ({type(cause).__name__}: {cause})" if cause is not None else exc.message
        return LLMUnavailableError(f"cannot reach the LLM at {where}: {why}"[:_DETAIL_MAX_CHARS])
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _detail(exc)
        if isinstance(exc, openai.RateLimitError):
            return LLMUnavailableError(
                f"LLM rate limit or quota hit (429): {detail}", delay_s=retry_after_s(exc.response.headers)
            )
        if isinstance(exc, openai.InternalServerError) or status in (408, 409):
            return LLMUnavailableError(
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
    if isinstance(exc, openai.APIError):
        # An error event inside a stream ("data: {"error": {...}}"): the server failed
        # after it had accepted the request.
        return LLMUnavailableError(f"LLM stream failed: {_detail(exc)}")
    return PermanentError(f"LLM client error: {exc}")


class LLMDeadlineError(PermanentError):
    """The job's deadline came while the LLM was still being waited on."""
