"""Retries, backoff, deadline and circuit breaker, against the scripted OpenAI server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from libs.common.errors import DocuMindError, PermanentError, RetryableError
from services.generator.backends import OnToken
from services.generator.breaker import CircuitBreaker
from services.generator.llm import OpenAIChat
from services.generator.llm_errors import LLMDeadlineError, LLMUnavailableError
from services.generator.resilient import ResilientChat, RetryPolicy
from tests.fakes.openai_server import DEFAULT_REPLY, FakeOpenAI, hang, malformed_stream, ok, status

MESSAGES = [{"role": "user", "content": "How long do refunds take?"}]
ANSWER = "Refunds take 14 days [1]."


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resilient(
    server: FakeOpenAI,
    *,
    retries: int = 2,
    backoff_s: float = 0.01,
    backoff_max_s: float = 1.0,
    failures: int = 5,
    cooldown_s: float = 30.0,
    timeout_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> ResilientChat:
    chat = OpenAIChat(model="m", base_url=server.base_url, api_key="k", timeout_s=timeout_s, max_tokens=64)
    return ResilientChat(
        chat,
        RetryPolicy(max_retries=retries, backoff_s=backoff_s, backoff_max_s=backoff_max_s),
        CircuitBreaker(failures, cooldown_s, clock=clock),
    )


async def ask(chat: ResilientChat, deadline: float | None = None, on_token: OnToken | None = None) -> str:
    parts = []
    async for delta in chat.stream(MESSAGES, deadline=deadline or time.time() + 30):
        parts.append(delta)
        if on_token is not None:
            await on_token(delta)
    return "".join(parts)


async def outcome(chat: ResilientChat, deadline: float | None = None) -> str | DocuMindError:
    try:
        return await ask(chat, deadline)
    except DocuMindError as exc:
        return exc


def run_once(chat: ResilientChat, deadline: float | None = None) -> str | DocuMindError:
    async def main() -> str | DocuMindError:
        try:
            return await outcome(chat, deadline)
        finally:
            await chat.aclose()

    return asyncio.run(main())


# --- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "wait"),
    [(status(429, retry_after_ms=400), 0.4), (status(503, retry_after=0.3), 0.3)],
)
def test_retry_after_is_honoured(fake_llm: FakeOpenAI, first: object, wait: float) -> None:
    fake_llm.script(first, ok(ANSWER))  # type: ignore[arg-type]
    assert run_once(resilient(fake_llm, backoff_s=0.01)) == ANSWER
    (gap,) = fake_llm.gaps()
    assert wait <= gap < wait + 1.0


def test_server_errors_are_retried_with_growing_backoff(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(500), status(502), ok(ANSWER))
    assert run_once(resilient(fake_llm, backoff_s=0.1)) == ANSWER
    first, second = fake_llm.gaps()
    # Equal jitter: retry 1 waits 0.05-0.1 s, retry 2 waits 0.1-0.2 s.
    assert 0.05 <= first < 1.0
    assert 0.1 <= second < 1.0


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(max_retries=9, backoff_s=1.0, backoff_max_s=4.0)
    assert [policy.backoff(n, rand=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert [policy.backoff(n, rand=lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_a_timeout_is_retried(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(hang(5), ok(ANSWER))
    started = time.monotonic()
    assert run_once(resilient(fake_llm, timeout_s=0.3)) == ANSWER
    assert len(fake_llm.requests) == 2
    assert time.monotonic() - started < 3


def test_a_connection_dropped_before_the_first_token_is_retried(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(malformed_stream("drop"), ok(ANSWER))
    assert run_once(resilient(fake_llm)) == ANSWER
    assert len(fake_llm.requests) == 2


def test_retries_run_out(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(500, "upstream exploded"), status(500), status(500, "still down"))
    exc = run_once(resilient(fake_llm, retries=2))
    assert isinstance(exc, LLMUnavailableError)
    assert exc.message.startswith("LLM unavailable after 3 tries: LLM server error (500): still down")
    assert len(fake_llm.requests) == 3


def test_no_retry_once_tokens_went_out(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(malformed_stream("drop", after=["Refunds ", "take "]), ok(ANSWER))
    tokens: list[str] = []

    async def on_token(token: str) -> None:
        tokens.append(token)

    async def main() -> DocuMindError:
        chat = resilient(fake_llm)
        try:
            await ask(chat, on_token=on_token)
        except DocuMindError as exc:
            return exc
        finally:
            await chat.aclose()
        raise AssertionError("the broken stream passed")

    exc = asyncio.run(main())
    assert type(exc) is RetryableError  # the runtime retries the job, not this call
    assert "broke off mid-answer" in exc.message
    assert tokens == ["Refunds", " take"]
    assert len(fake_llm.requests) == 1


def test_a_malformed_stream_is_not_retried_here(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(malformed_stream("bad_json"), ok(ANSWER))
    exc = run_once(resilient(fake_llm))
    assert type(exc) is RetryableError
    assert "malformed" in exc.message
    assert len(fake_llm.requests) == 1


# --- the job's deadline ------------------------------------------------------------------------


def test_a_retry_after_past_the_deadline_fails_now(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(429, "Rate limit reached", retry_after=5))
    started = time.time()
    exc = run_once(resilient(fake_llm), deadline=started + 1.0)
    assert isinstance(exc, PermanentError)
    assert exc.message.startswith("LLM unavailable: LLM rate limit or quota hit (429): Rate limit reached")
    assert "gave up before the job's deadline" in exc.message
    assert time.time() - started < 0.8
    assert len(fake_llm.requests) == 1


def test_a_hanging_server_cannot_hold_the_call_past_the_deadline(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(*[hang(10)] * 20)
    started = time.time()
    exc = run_once(resilient(fake_llm, retries=20, timeout_s=0.2), deadline=started + 1.0)
    assert isinstance(exc, PermanentError)
    assert "deadline" in exc.message
    assert time.time() < started + 1.0 + 0.5


def test_the_deadline_is_not_a_provider_failure(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(hang(10))
    chat = resilient(fake_llm, failures=1, timeout_s=30)
    exc = run_once(chat, deadline=time.time() + 0.3)
    assert isinstance(exc, LLMDeadlineError)
    assert chat.breaker.state == "closed"


# --- the circuit breaker -----------------------------------------------------------------------


def test_the_breaker_opens_after_n_failures_and_fails_fast(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(500), status(500), status(500))
    clock = Clock()
    chat = resilient(fake_llm, retries=0, failures=3, cooldown_s=30, clock=clock)

    async def main() -> tuple[list[str | DocuMindError], float]:
        try:
            failed = [await outcome(chat) for _ in range(3)]
            clock.now += 10
            started = time.monotonic()
            fast = await outcome(chat)
            return [*failed, fast], time.monotonic() - started
        finally:
            await chat.aclose()

    results, took = asyncio.run(main())
    assert all(isinstance(r, LLMUnavailableError) for r in results[:3])
    fast = results[3]
    assert type(fast) is RetryableError
    assert "circuit breaker open after 3 failed requests in a row" in fast.message
    assert fast.delay_s == pytest.approx(20.0)
    assert took < 0.1
    assert len(fake_llm.requests) == 3  # the fourth call never reached the server


def test_a_breaker_open_past_the_deadline_says_the_llm_is_down(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(503, "overloaded"))
    chat = resilient(fake_llm, retries=0, failures=1, cooldown_s=60)

    async def main() -> DocuMindError | str:
        try:
            await outcome(chat)
            return await outcome(chat, deadline=time.time() + 5)
        finally:
            await chat.aclose()

    exc = asyncio.run(main())
    assert isinstance(exc, PermanentError)
    assert exc.message.startswith("LLM is down")
    assert "past the job's deadline" in exc.message
    assert len(fake_llm.requests) == 1


def test_retries_stop_when_the_breaker_opens(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(500, "boom"), status(500, "boom again"))
    exc = run_once(resilient(fake_llm, retries=5, failures=2, cooldown_s=10))
    assert type(exc) is RetryableError
    assert "circuit breaker open" in exc.message
    assert "last error: LLM server error (500): boom again" in exc.message
    assert len(fake_llm.requests) == 2


def test_half_open_lets_one_probe_through(fake_llm: FakeOpenAI) -> None:
    clock = Clock()
    chat = resilient(fake_llm, retries=0, failures=1, cooldown_s=30, clock=clock)
    gate = threading.Event()
    fake_llm.script(status(500), ok(chunks=["Refunds", " take 14 days [1]."], gate=gate), ok(ANSWER))

    async def main() -> tuple[str, DocuMindError | str, str]:
        try:
            await outcome(chat)  # opens the breaker
            clock.now += 30  # cooldown over: half-open
            first_token = asyncio.Event()

            async def on_token(token: str) -> None:
                first_token.set()

            probe = asyncio.create_task(ask(chat, on_token=on_token))
            await first_token.wait()
            assert chat.breaker.state == "half-open"
            refused = await outcome(chat)  # while the probe runs
            gate.set()
            probed = await probe
            after = await ask(chat)
            return probed, refused, after
        finally:
            gate.set()
            await chat.aclose()

    probed, refused, after = asyncio.run(main())
    assert probed == ANSWER
    assert type(refused) is RetryableError
    assert "half-open" in refused.message
    assert refused.delay_s is None  # the runtime's backoff decides
    assert after == ANSWER
    assert chat.breaker.state == "closed"
    assert len(fake_llm.requests) == 3


def test_a_failed_probe_opens_the_breaker_again(fake_llm: FakeOpenAI) -> None:
    clock = Clock()
    chat = resilient(fake_llm, retries=0, failures=2, cooldown_s=30, clock=clock)
    fake_llm.script(status(500), status(500), status(500))

    async def main() -> list[str | DocuMindError]:
        try:
            results = [await outcome(chat), await outcome(chat)]
            clock.now += 31
            results.append(await outcome(chat))  # the probe fails
            clock.now += 29
            results.append(await outcome(chat))
            return results
        finally:
            await chat.aclose()

    results = asyncio.run(main())
    assert [type(r) for r in results] == [LLMUnavailableError] * 3 + [RetryableError]
    last = results[3]
    assert isinstance(last, RetryableError)
    assert last.delay_s == pytest.approx(1.0)
    assert len(fake_llm.requests) == 3


def test_permanent_errors_do_not_open_the_breaker(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(400, "bad"), status(401, "who"), status(400, "bad"))
    chat = resilient(fake_llm, failures=2)

    async def main() -> list[str | DocuMindError]:
        try:
            return [await outcome(chat) for _ in range(4)]
        finally:
            await chat.aclose()

    results = asyncio.run(main())
    assert [type(r) for r in results[:3]] == [PermanentError] * 3
    assert results[3] == DEFAULT_REPLY
    assert chat.breaker.state == "closed"
