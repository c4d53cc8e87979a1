from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from pydantic import SecretStr

from libs.common.errors import PermanentError, RetryableError
from libs.common.models import Hit
from libs.common.settings import GeneratorSettings
from services.generator.answerers import build_answerer
from services.generator.extractive import ExtractiveAnswerer
from services.generator.llm import LLMAnswerer, OpenAIChat
from services.generator.llm_errors import LLMDeadlineError, LLMUnavailableError, retry_after_s
from services.generator.prompt import NOTHING_RELEVANT
from services.generator.resilient import ResilientChat
from tests.fakes.openai_server import FakeOpenAI, hang, malformed_stream, ok, slow_tokens, status

T = TypeVar("T")

HITS = [
    Hit(document_id="d1", filename="about.pdf", page=1, score=0.7, text="The company was founded in 1998."),
    Hit(
        document_id="d2",
        filename="terms.pdf",
        page=7,
        score=0.6,
        text="Shipping is free. Refunds are paid within 14 days of the request.",
    ),
    Hit(document_id="d3", filename="old.pdf", page=3, score=0.05, text="Refunds used to take 60 days."),
]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Refunds?"}]


def later(seconds: float = 30.0) -> float:
    return time.time() + seconds


@dataclass
class FakeChat:
    """A ``ChatLLM`` replying with fixed deltas."""

    deltas: list[str]
    model: str = "fake-model"
    calls: list[list[dict[str, str]]] = field(default_factory=list)
    deadlines: list[float] = field(default_factory=list)

    async def stream(self, messages: Sequence[dict[str, str]], *, deadline: float) -> AsyncIterator[str]:
        self.calls.append([dict(m) for m in messages])
        self.deadlines.append(deadline)
        for delta in self.deltas:
            yield delta


class Tokens:
    """An ``on_token`` callback that records what it gets."""

    def __init__(self) -> None:
        self.pieces: list[str] = []

    async def __call__(self, token: str) -> None:
        self.pieces.append(token)


def collect(chat: OpenAIChat, deadline: float | None = None) -> list[str]:
    async def main() -> list[str]:
        try:
            return [d async for d in chat.stream(MESSAGES, deadline=deadline or later())]
        finally:
            await chat.aclose()

    return asyncio.run(main())


def failure(make: Callable[[], Awaitable[T]]) -> BaseException:
    async def main() -> BaseException:
        try:
            await make()
        except BaseException as exc:
            return exc
        raise AssertionError("no error raised")

    return asyncio.run(main())


# --- LLMAnswerer over a fake ChatLLM ---------------------------------------------------------


def test_llm_answerer_cites_only_what_the_answer_cites() -> None:
    chat = FakeChat(["Refunds are paid", " within 14 days [2]."])
    deadline = later()
    tokens = Tokens()
    result = asyncio.run(
        LLMAnswerer(chat, min_score=0.2).answer(
            "How long do refunds take?", HITS, on_token=tokens, deadline=deadline
        )
    )

    assert result.mode == "llm:fake-model"
    assert result.answer == "Refunds are paid within 14 days [2]."
    assert not result.abstained
    assert tokens.pieces == ["Refunds are paid", " within 14 days [2]."]
    assert chat.deadlines == [deadline]
    assert len(result.citations) == 1
    c = result.citations[0]
    assert (c.n, c.document_id, c.filename, c.page, c.score) == (2, "d2", "terms.pdf", 7, 0.6)
    assert c.snippet == "Refunds are paid within 14 days of the request."

    assert len(chat.calls) == 1
    system, user = chat.calls[0]
    assert system["role"] == "system"
    assert "[1] about.pdf, page 1\nThe company was founded in 1998." in user["content"]
    assert "[2] terms.pdf, page 7\nShipping is free." in user["content"]
    assert "old.pdf" not in user["content"]  # below min_score
    assert "[3]" not in user["content"]
    assert user["content"].endswith("Question: How long do refunds take?")


def test_llm_answerer_without_citations_cites_nothing() -> None:
    chat = FakeChat(["I don't know based on the documents."])
    result = asyncio.run(LLMAnswerer(chat, min_score=0.2).answer("Who is the CEO?", HITS, deadline=later()))
    assert result.citations == []
    assert result.answer == "I don't know based on the documents."
    assert result.abstained  # a usual wording of "not in your documents"


def test_llm_answerer_nothing_relevant_skips_the_llm_and_still_streams() -> None:
    chat = FakeChat(["should not be used [1]"])
    tokens = Tokens()
    answerer = LLMAnswerer(chat, min_score=0.9)
    result = asyncio.run(answerer.answer("How long?", HITS, on_token=tokens, deadline=later()))
    assert result.answer == NOTHING_RELEVANT
    assert "".join(tokens.pieces) == NOTHING_RELEVANT
    assert len(tokens.pieces) > 1
    assert result.citations == []
    assert result.mode == "llm:fake-model"
    assert result.abstained
    assert chat.calls == []


def test_llm_answerer_empty_reply_is_retryable() -> None:
    answerer = LLMAnswerer(FakeChat([]), min_score=0.2)
    exc = failure(lambda: answerer.answer("refunds?", HITS, deadline=later()))
    assert isinstance(exc, RetryableError)


def test_a_failing_token_sink_stops_the_answer() -> None:
    async def broken(token: str) -> None:
        raise ConnectionError("sink down")

    answerer = LLMAnswerer(FakeChat(["a", "b"]), min_score=0.2)
    exc = failure(lambda: answerer.answer("refunds?", HITS, on_token=broken, deadline=later()))
    assert isinstance(exc, ConnectionError)


# --- build_answerer ----------------------------------------------------------------------------


def test_build_answerer_picks_a_resilient_llm_when_a_key_is_set() -> None:
    settings = GeneratorSettings(
        _env_file=None,  # type: ignore[call-arg]
        llm_api_key=SecretStr("dummy"),
        llm_base_url="http://127.0.0.1:9/v1",
        llm_model="local-model",
        llm_max_retries=4,
        llm_breaker_failures=7,
        llm_breaker_cooldown_s=12,
        llm_context_tokens=900,
    )
    answerer = build_answerer(settings)
    assert isinstance(answerer, LLMAnswerer)
    assert answerer.mode == "llm:local-model"
    assert answerer.context_tokens == 900
    assert isinstance(answerer.llm, ResilientChat)
    assert answerer.llm.policy.max_retries == 4
    assert (answerer.llm.breaker.threshold, answerer.llm.breaker.cooldown_s) == (7, 12)
    asyncio.run(answerer.aclose())


@pytest.mark.parametrize("key", [None, "", "  "])
def test_build_answerer_is_extractive_without_a_key(key: str | None) -> None:
    settings = GeneratorSettings(
        _env_file=None,  # type: ignore[call-arg]
        llm_api_key=SecretStr(key) if key is not None else None,
        extractive_sentences=2,
        min_score=0.3,
    )
    answerer = build_answerer(settings)
    assert isinstance(answerer, ExtractiveAnswerer)
    assert (answerer.max_sentences, answerer.min_score) == (2, 0.3)


def test_llm_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUMIND_LLM_MAX_RETRIES", "5")
    monkeypatch.setenv("DOCUMIND_LLM_RETRY_BACKOFF_S", "0.25")
    monkeypatch.setenv("DOCUMIND_LLM_RETRY_BACKOFF_MAX_S", "4")
    monkeypatch.setenv("DOCUMIND_LLM_BREAKER_FAILURES", "3")
    monkeypatch.setenv("DOCUMIND_LLM_BREAKER_COOLDOWN_S", "9")
    monkeypatch.setenv("DOCUMIND_LLM_CONTEXT_TOKENS", "2048")
    s = GeneratorSettings(_env_file=None)  # type: ignore[call-arg]
    assert (s.llm_max_retries, s.llm_retry_backoff_s, s.llm_retry_backoff_max_s) == (5, 0.25, 4.0)
    assert (s.llm_breaker_failures, s.llm_breaker_cooldown_s, s.llm_context_tokens) == (3, 9.0, 2048)


def test_retry_after_parsing() -> None:
    assert retry_after_s({"retry-after": "7"}) == 7.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "nan"}) is None
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_s({}) is None


# --- OpenAIChat: one streamed request against the fake server --------------------------------


def chat_at(server: FakeOpenAI, timeout_s: float = 5.0, model: str = "served-model") -> OpenAIChat:
    return OpenAIChat(
        model=model, base_url=server.base_url, api_key="sk-test", timeout_s=timeout_s, max_tokens=64
    )


def test_openai_chat_streams_the_deltas_in_order(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(slow_tokens(["Refunds", " take", " 14", " days [1]."], delay_s=0.01))
    assert collect(chat_at(fake_llm)) == ["Refunds", " take", " 14", " days [1]."]
    (request,) = fake_llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "served-model"
    assert request.body["messages"] == MESSAGES
    assert request.body["max_tokens"] == 64
    assert request.body["stream"] is True


def test_tokens_reach_the_caller_while_the_server_is_still_writing(fake_llm: FakeOpenAI) -> None:
    # The server holds the rest of its answer until the first token has reached on_token.
    first_seen = threading.Event()
    fake_llm.script(ok(chunks=["Refunds", " take 14 days", " [1]."], gate=first_seen))

    async def on_token(token: str) -> None:
        first_seen.set()

    async def main() -> str:
        chat = chat_at(fake_llm)
        try:
            result = await LLMAnswerer(chat, min_score=0.2).answer(
                "refunds?", HITS, on_token=on_token, deadline=later()
            )
        finally:
            await chat.aclose()
        return result.answer

    assert asyncio.run(main()) == "Refunds take 14 days [1]."
    assert fake_llm.requests[0].gate_opened is True


def test_openai_chat_strips_thinking_split_across_deltas(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(
        ok(chunks=["  <th", "ink>the user wants", " refunds</th", "ink>\n\n", "It is", " 14 days [1].\n"])
    )
    assert "".join(collect(chat_at(fake_llm))) == "It is 14 days [1]."


def test_openai_chat_understands_a_server_that_does_not_stream(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ok("<think>hmm</think>\nRefunds take 14 days [1].", as_json=True))
    assert collect(chat_at(fake_llm)) == ["Refunds take 14 days [1]."]


@pytest.mark.parametrize(
    ("behaviour", "delay", "words"),
    [
        (status(429, "Rate limit reached", retry_after=7), 7.0, ["429", "Rate limit reached"]),
        (status(500, "upstream exploded"), None, ["500", "upstream exploded"]),
        (status(503, "overloaded", retry_after_ms=1500), 1.5, ["503", "overloaded"]),
    ],
)
def test_overload_and_server_errors_are_retryable(
    fake_llm: FakeOpenAI, behaviour: object, delay: float | None, words: list[str]
) -> None:
    fake_llm.script(behaviour)  # type: ignore[arg-type]
    exc = failure(lambda: _drain(chat_at(fake_llm)))
    assert isinstance(exc, LLMUnavailableError)
    assert exc.delay_s == delay
    for word in words:
        assert word in exc.message
    assert len(fake_llm.requests) == 1  # the SDK does not retry by itself


@pytest.mark.parametrize(
    ("code", "message", "words"),
    [
        (400, "max_tokens is too large", ["400", "max_tokens is too large"]),
        (401, "Incorrect API key provided", ["401", "DOCUMIND_LLM_API_KEY", "Incorrect API key"]),
        (403, "not allowed", ["403", "not allowed"]),
        (404, "The model does not exist", ["404", "'served-model'", "does not exist"]),
    ],
)
def test_client_errors_are_permanent(fake_llm: FakeOpenAI, code: int, message: str, words: list[str]) -> None:
    fake_llm.script(status(code, message))
    exc = failure(lambda: _drain(chat_at(fake_llm)))
    assert isinstance(exc, PermanentError)
    for word in words:
        assert word in exc.message


@pytest.mark.parametrize(
    ("behaviour", "error", "words"),
    [
        (malformed_stream("bad_json"), RetryableError, ["malformed"]),
        (malformed_stream("no_content"), LLMUnavailableError, ["closed the stream before answering"]),
        (ok(chunks=["<think>still going"], finish_reason="length"), RetryableError, ["reasoning", "length"]),
        (ok(chunks=[""], finish_reason="content_filter"), PermanentError, ["content filter"]),
        (malformed_stream("error_event"), LLMUnavailableError, ["upstream model crashed"]),
        (malformed_stream("drop", after=["Refunds "]), LLMUnavailableError, ["cannot reach", "incomplete"]),
    ],
)
def test_broken_streams_become_clear_errors(
    fake_llm: FakeOpenAI, behaviour: object, error: type[Exception], words: list[str]
) -> None:
    fake_llm.script(behaviour)  # type: ignore[arg-type]
    exc = failure(lambda: _drain(chat_at(fake_llm)))
    assert type(exc) is error
    for word in words:
        assert word in str(exc)


def test_timeout_is_retryable(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(hang(5))
    started = time.monotonic()
    exc = failure(lambda: _drain(chat_at(fake_llm, timeout_s=0.2)))
    assert isinstance(exc, LLMUnavailableError)
    assert "timed out" in exc.message
    assert time.monotonic() - started < 3


def test_the_job_deadline_cuts_a_hanging_request_short(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(hang(10))
    started = time.time()
    exc = failure(lambda: _drain(chat_at(fake_llm, timeout_s=30), deadline=started + 0.4))
    assert isinstance(exc, LLMDeadlineError)
    assert isinstance(exc, PermanentError)
    assert "deadline" in exc.message
    assert time.time() < started + 0.4 + 1.0


def test_the_job_deadline_cuts_a_slow_stream_short(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(slow_tokens(["a"] + [" b"] * 50, delay_s=0.1))
    started = time.time()
    exc = failure(lambda: _drain(chat_at(fake_llm, timeout_s=30), deadline=started + 0.5))
    assert isinstance(exc, LLMDeadlineError)
    assert "characters in" in exc.message
    assert time.time() < started + 0.5 + 1.0


def test_a_past_deadline_makes_no_request(fake_llm: FakeOpenAI) -> None:
    exc = failure(lambda: _drain(chat_at(fake_llm), deadline=time.time() - 1))
    assert isinstance(exc, LLMDeadlineError)
    assert fake_llm.requests == []


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chat = OpenAIChat(
        model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", timeout_s=2.0, max_tokens=8
    )
    exc = failure(lambda: _drain(chat))
    assert isinstance(exc, LLMUnavailableError)
    assert "cannot reach" in exc.message


async def _drain(chat: OpenAIChat, deadline: float | None = None) -> list[str]:
    try:
        return [d async for d in chat.stream(MESSAGES, deadline=deadline or later())]
    finally:
        await chat.aclose()
