"""Retries, backoff and the circuit breaker around a ``ChatLLM``.

A call that fails with ``LLMUnavailableError`` (429, 5xx, timeout, connection
error) before its first token is tried again after an exponential backoff with
jitter, or after the server's Retry-After when it sent one. Once a token has been
handed on, a failure is not retried here (the answer would repeat itself): it
raises ``RetryableError`` and the stream runtime retries the job.

Nothing waits past the job's deadline: when the next wait would cross it, the call
fails at once with a ``PermanentError`` saying why. Every request reports to the
process's circuit breaker; while it is open, calls fail fast.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from libs.common.errors import DocuMindError, PermanentError, RetryableError
from services.generator.backends import ChatLLM
from services.generator.breaker import CircuitBreaker, CircuitOpenError, Permit
from services.generator.llm import aclose
from services.generator.llm_errors import LLMDeadlineError, LLMUnavailableError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Wait before retry number ``retry`` (from 1): ``backoff_s * 2**(retry-1)``, capped
        at ``backoff_max_s``, of which a random half is taken off (equal jitter)."""
        base: float = min(self.backoff_s * 2 ** (retry - 1), self.backoff_max_s)
        return base / 2 + rand() * base / 2


class ResilientChat:
    """A ``ChatLLM`` that retries, backs off and respects a shared circuit breaker."""

    def __init__(self, llm: ChatLLM, policy: RetryPolicy, breaker: CircuitBreaker) -> None:
        self.llm = llm
        self.policy = policy
        self.breaker = breaker

    @property
    def model(self) -> str:
        return self.llm.model

    async def stream(self, messages: Sequence[dict[str, str]], *, deadline: float) -> AsyncIterator[str]:
        retry = 0
        last: DocuMindError | None = None
        while True:
            permit = self._admit(deadline, last)
            answered = False
            inner = self.llm.stream(messages, deadline=deadline)
            try:
                async for delta in inner:
                    answered = True
                    yield delta
            except LLMUnavailableError as exc:
                permit.failure()
                if answered:
                    raise RetryableError(f"LLM stream broke off mid-answer: {exc.message}") from exc
                retry += 1
                last = exc
                delay = self._wait_before(retry, exc, deadline)
                logger.warning(
                    "LLM try %d failed, retrying in %.2fs: %s",
                    retry,
                    delay,
                    exc.message,
                )
                await asyncio.sleep(delay)
                continue
            except LLMDeadlineError:
                permit.release()
                raise
            except RetryableError as exc:  # a malformed or empty answer
                permit.failure()
                if answered:
                    raise RetryableError(f"LLM stream broke off mid-answer: {exc.message}") from exc
                raise
            except BaseException:
                # The request is not at fault (a PermanentError such as 400 or 401 came
                # from a server that answers) or the caller stopped reading.
                permit.release()
                raise
            finally:
                await aclose(inner)
            permit.success()
            return

    def _admit(self, deadline: float, last: DocuMindError | None) -> Permit:
        try:
            return self.breaker.admit()
        except CircuitOpenError as exc:
            because = f"; last error: {last.message}" if last is not None else ""
            failed = f"{exc.failures} failed request{'' if exc.failures == 1 else 's'} in a row"
            if exc.probing:
                # Another call is testing the LLM: its answer decides, soon. The
                # runtime's own backoff picks the wait.
                raise RetryableError(
                    f"LLM circuit breaker half-open after {failed}: another request is testing "
                    f"whether the LLM is back{because}"
                ) from exc
            if time.time() + exc.retry_in_s >= deadline:
                raise PermanentError(
                    f"LLM is down: {failed}, and the circuit breaker stays open for "
                    f"{exc.retry_in_s:.1f}s more, past the job's deadline{because}"
                ) from exc
            raise RetryableError(
                f"LLM circuit breaker open after {failed}, not calling it for {exc.retry_in_s:.1f}s{because}",
                delay_s=exc.retry_in_s,
            ) from exc

    def _wait_before(self, retry: int, exc: LLMUnavailableError, deadline: float) -> float:
        """Seconds to wait before retry number ``retry``; raises when there is none left."""
        if retry > self.policy.max_retries:
            raise LLMUnavailableError(
                f"LLM unavailable after {retry} tries: {exc.message}", delay_s=exc.delay_s
            ) from exc
        delay = exc.delay_s if exc.delay_s is not None else self.policy.backoff(retry)
        left = deadline - time.time()
        if delay >= left:
            raise PermanentError(
                f"LLM unavailable: {exc.message} (gave up before the job's deadline: "
                f"the next try was due in {delay:.1f}s, the deadline is {max(left, 0):.1f}s away)"
            ) from exc
        return delay

    async def aclose(self) -> None:
        close = getattr(self.llm, "aclose", None)
        if close is not None:
            await close()
