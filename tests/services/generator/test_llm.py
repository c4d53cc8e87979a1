from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from libs.common.errors import PermanentError, RetryableError
from libs.common.models import Hit
from libs.common.settings import GeneratorSettings
from services.generator.answerers import build_answerer
from services.generator.extractive import ExtractiveAnswerer
from services.generator.llm import LLMAnswerer, OpenAIChat, retry_after_s
from services.generator.prompt import NOTHING_RELEVANT

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


@dataclass
class FakeChat:
    reply: str
    model: str = "fake-model"
    calls: list[list[dict[str, str]]] = field(default_factory=list)

    def complete(self, messages: Sequence[dict[str, str]]) -> str:
        self.calls.append([dict(m) for m in messages])
        return self.reply


def test_llm_answerer_cites_only_what_the_answer_cites() -> None:
    chat = FakeChat("Refunds are paid within 14 days [2].")
    result = LLMAnswerer(chat, min_score=0.2).answer("How long do refunds take?", HITS)

    assert result.mode == "llm:fake-model"
    assert result.answer == "Refunds are paid within 14 days [2]."
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
    chat = FakeChat("I don't know based on the documents.")
    result = LLMAnswerer(chat, min_score=0.2).answer("Who is the CEO?", HITS)
    assert result.citations == []
    assert result.answer == "I don't know based on the documents."


def test_llm_answerer_nothing_relevant_skips_the_llm() -> None:
    chat = FakeChat("should not be used [1]")
    result = LLMAnswerer(chat, min_score=0.9).answer("How long do refunds take?", HITS)
    assert result.answer == NOTHING_RELEVANT
    assert result.citations == []
    assert result.mode == "llm:fake-model"
    assert chat.calls == []


def test_llm_answerer_empty_reply_is_retryable() -> None:
    with pytest.raises(RetryableError):
        LLMAnswerer(FakeChat("   "), min_score=0.2).answer("refunds?", HITS)


def test_build_answerer_picks_llm_when_a_key_is_set() -> None:
    settings = GeneratorSettings(
        _env_file=None,  # type: ignore[call-arg]
        llm_api_key=SecretStr("dummy"),
        llm_base_url="http://127.0.0.1:9/v1",
        llm_model="local-model",
    )
    answerer = build_answerer(settings)
    assert isinstance(answerer, LLMAnswerer)
    assert answerer.mode == "llm:local-model"
    answerer.close()


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


def test_retry_after_parsing() -> None:
    assert retry_after_s({"retry-after": "7"}) == 7.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "nan"}) is None
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_s({}) is None


# --- OpenAIChat against a tiny local OpenAI-compatible server -------------------------------

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "ok",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Refunds take 14 days [1]."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16},
}

# model name -> (status, extra headers, body, seconds to wait first)
ROUTES: dict[str, tuple[int, dict[str, str], dict[str, Any], float]] = {
    "ok": (200, {}, COMPLETION, 0.0),
    "thinking": (
        200,
        {},
        {
            **COMPLETION,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "<think>hmm</think>\nIt is 14 days [1]."},
                    "finish_reason": "stop",
                }
            ],
        },
        0.0,
    ),
    "empty": (
        200,
        {},
        {
            **COMPLETION,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}
            ],
        },
        0.0,
    ),
    "limited": (
        429,
        {"Retry-After": "7"},
        {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
        0.0,
    ),
    "broken": (500, {}, {"error": {"message": "upstream exploded", "type": "server_error"}}, 0.0),
    "busy": (503, {"Retry-After": "3"}, {"error": {"message": "overloaded"}}, 0.0),
    "bad": (
        400,
        {},
        {"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}},
        0.0,
    ),
    "unauthorized": (401, {}, {"error": {"message": "Incorrect API key provided"}}, 0.0),
    "forbidden": (403, {}, {"error": {"message": "not allowed"}}, 0.0),
    "missing": (404, {}, {"error": {"message": "The model `missing` does not exist"}}, 0.0),
    "slow": (200, {}, COMPLETION, 0.5),
}


class _Server(ThreadingHTTPServer):
    # server_close() waits for handler threads, so none outlives its test.
    daemon_threads = False
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        status, headers, payload, wait = ROUTES[body["model"]]
        time.sleep(wait)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _chat(server: _Server, model: str, timeout_s: float = 5.0) -> OpenAIChat:
    host, port = server.server_address[:2]
    return OpenAIChat(
        model=model,
        base_url=f"http://{host!s}:{port}/v1",
        api_key="sk-test",
        timeout_s=timeout_s,
        max_tokens=64,
    )


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Refunds?"}]


def test_openai_chat_returns_the_completion(server: _Server) -> None:
    with _chat(server, "ok") as chat:
        assert chat.model == "ok"
        assert chat.complete(MESSAGES) == "Refunds take 14 days [1]."
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == "Bearer sk-test"
    assert body["model"] == "ok"
    assert body["messages"] == MESSAGES
    assert body["max_tokens"] == 64


def test_openai_chat_strips_thinking(server: _Server) -> None:
    with _chat(server, "thinking") as chat:
        assert chat.complete(MESSAGES) == "It is 14 days [1]."


def test_llm_answerer_over_openai_chat(server: _Server) -> None:
    with _chat(server, "ok") as chat:
        result = LLMAnswerer(chat, min_score=0.2).answer("How long do refunds take?", HITS)
    assert result.mode == "llm:ok"
    assert [c.n for c in result.citations] == [1]


def test_rate_limit_is_retryable_with_retry_after(server: _Server) -> None:
    with _chat(server, "limited") as chat, pytest.raises(RetryableError) as info:
        chat.complete(MESSAGES)
    assert info.value.delay_s == 7.0
    assert "429" in info.value.message
    assert "Rate limit reached" in info.value.message
    assert len(server.requests) == 1  # the SDK does not retry by itself


@pytest.mark.parametrize(("model", "delay"), [("broken", None), ("busy", 3.0)])
def test_server_errors_are_retryable(server: _Server, model: str, delay: float | None) -> None:
    with _chat(server, model) as chat, pytest.raises(RetryableError) as info:
        chat.complete(MESSAGES)
    assert info.value.delay_s == delay
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("bad", ["400", "max_tokens is too large"]),
        ("unauthorized", ["401", "DOCUMIND_LLM_API_KEY", "Incorrect API key"]),
        ("forbidden", ["403", "not allowed"]),
        ("missing", ["404", "'missing'", "does not exist"]),
    ],
)
def test_client_errors_are_permanent(server: _Server, model: str, words: list[str]) -> None:
    with _chat(server, model) as chat, pytest.raises(PermanentError) as info:
        chat.complete(MESSAGES)
    for word in words:
        assert word in info.value.message


def test_empty_completion_is_retryable(server: _Server) -> None:
    with _chat(server, "empty") as chat, pytest.raises(RetryableError, match="empty"):
        chat.complete(MESSAGES)


def test_timeout_is_retryable(server: _Server) -> None:
    with _chat(server, "slow", timeout_s=0.1) as chat, pytest.raises(RetryableError, match="timed out"):
        chat.complete(MESSAGES)


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chat = OpenAIChat(
        model="ok", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", timeout_s=2.0, max_tokens=8
    )
    with chat, pytest.raises(RetryableError, match="cannot reach"):
        chat.complete(MESSAGES)
