from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from libs.common.envelope import Envelope
from libs.common.errors import PermanentError
from libs.common.settings import GeneratorSettings
from services.generator.answerers import build_answerer
from services.generator.extractive import ExtractiveAnswerer
from services.generator.handler import GenerateHandler
from services.generator.llm import LLMAnswerer, OpenAIChat
from services.generator.resilient import ResilientChat
from tests.fakes.openai_server import FakeOpenAI, ok, status


def env(question: str, hits: list[dict[str, object]], timeout_s: float = 60) -> Envelope:
    return Envelope.new("chat", "docs", {"question": question, "top_k": 3, "hits": hits}, timeout_s)


HIT = {
    "document_id": "d1",
    "filename": "guide.pdf",
    "page": 4,
    "score": 0.8,
    "text": "The reset button sits behind the battery cover. Hold it for ten seconds.",
}


class Sink:
    """An ``AnswerStream`` recording each job's pieces, and when it started and finished."""

    def __init__(self, on_token: Callable[[str], None] | None = None) -> None:
        self.pieces: dict[str, list[str]] = defaultdict(list)
        self.calls: list[tuple[str, str]] = []
        self.on_token = on_token

    async def started(self, env: Envelope) -> None:
        self.calls.append(("started", env.job_id))

    async def token(self, env: Envelope, text: str) -> None:
        self.pieces[env.job_id].append(text)
        if self.on_token is not None:
            self.on_token(text)

    async def finished(self, env: Envelope) -> list[tuple[str, dict[str, Any]]]:
        self.calls.append(("finished", env.job_id))
        return []


def llm_settings(server: FakeOpenAI, **extra: object) -> GeneratorSettings:
    return GeneratorSettings(
        _env_file=None,  # type: ignore[call-arg]
        llm_api_key=SecretStr("test-key"),
        llm_base_url=server.base_url,
        llm_model="served-model",
        llm_retry_backoff_s=0.01,
        **extra,  # type: ignore[arg-type]
    )


def test_each_job_of_a_batch_gets_its_own_answer() -> None:
    handler = GenerateHandler(ExtractiveAnswerer(min_score=0.2, max_sentences=2))
    with_hit, without = asyncio.run(
        handler([env("Where is the reset button?", [HIT]), env("Where is the reset button?", [])])
    )
    assert isinstance(with_hit, dict) and isinstance(without, dict)
    assert with_hit["mode"] == "extractive"
    assert "battery cover" in with_hit["answer"] and "[1]" in with_hit["answer"]
    assert with_hit["citations"][0]["page"] == 4
    assert without["citations"] == []


def test_a_broken_job_does_not_sink_the_batch() -> None:
    handler = GenerateHandler(ExtractiveAnswerer(min_score=0.2, max_sentences=2))
    broken, fine = asyncio.run(
        handler([env("q", [{"nonsense": True}]), env("Where is the reset button?", [HIT])])
    )
    assert isinstance(broken, Exception)
    assert isinstance(fine, dict) and fine["citations"]


def test_the_token_sink_gets_each_jobs_answer_piece_by_piece() -> None:
    sink = Sink()
    handler = GenerateHandler(ExtractiveAnswerer(min_score=0.2, max_sentences=2), sink)
    jobs = [env("Where is the reset button?", [HIT]), env("How long do I hold it?", [HIT])]
    results = asyncio.run(handler(jobs))
    for job, result in zip(jobs, results, strict=True):
        assert isinstance(result, dict)
        assert "".join(sink.pieces[job.job_id]) == result["answer"]
        assert len(sink.pieces[job.job_id]) > 1
        assert sink.calls.index(("started", job.job_id)) < sink.calls.index(("finished", job.job_id))


def test_llm_jobs_stream_side_by_side(fake_llm: FakeOpenAI) -> None:
    # The first request's stream waits until another answer has streamed to its end:
    # only jobs answered side by side can both finish.
    other_done = threading.Event()
    fake_llm.script(
        ok(chunks=["The reset button", " is behind the cover [1]."], gate=other_done),
        ok("Hold it for ten seconds [1]."),
    )
    sink = Sink(on_token=lambda token: other_done.set() if token.endswith("[1].") else None)
    jobs = [env("Where is the reset button?", [HIT]), env("How long do I hold it?", [HIT])]

    async def main() -> list[object]:
        handler = GenerateHandler(build_answerer(llm_settings(fake_llm)), sink)
        try:
            return list(await handler(jobs))
        finally:
            await handler.aclose()

    results = asyncio.run(main())
    assert fake_llm.requests[0].gate_opened is True
    answers = set()
    for job, result in zip(jobs, results, strict=True):
        assert isinstance(result, dict)
        assert result["mode"] == "llm:served-model"
        assert [c["page"] for c in result["citations"]] == [4]
        assert "".join(sink.pieces[job.job_id]) == result["answer"]
        answers.add(result["answer"])
    assert answers == {"The reset button is behind the cover [1].", "Hold it for ten seconds [1]."}


def test_an_llm_failure_is_that_jobs_outcome(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(401, "Incorrect API key provided"))

    async def main() -> list[object]:
        handler = GenerateHandler(build_answerer(llm_settings(fake_llm)))
        try:
            return list(await handler([env("Where is the reset button?", [HIT])]))
        finally:
            await handler.aclose()

    (outcome,) = asyncio.run(main())
    assert isinstance(outcome, PermanentError)
    assert "401" in outcome.message


def test_the_jobs_deadline_reaches_the_llm(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(429, "slow down", retry_after=30))

    async def main() -> list[object]:
        handler = GenerateHandler(build_answerer(llm_settings(fake_llm)))
        try:
            return list(await handler([env("Where is the reset button?", [HIT], timeout_s=5)]))
        finally:
            await handler.aclose()

    (outcome,) = asyncio.run(main())
    assert isinstance(outcome, PermanentError)
    assert "gave up before the job's deadline" in outcome.message


def _chat_of(handler: GenerateHandler) -> OpenAIChat:
    answerer = handler.answerer
    assert isinstance(answerer, LLMAnswerer)
    assert isinstance(answerer.llm, ResilientChat)
    chat = answerer.llm.llm
    assert isinstance(chat, OpenAIChat)
    return chat


def test_aclose_releases_the_llm_client(fake_llm: FakeOpenAI) -> None:
    async def main() -> bool:
        handler = GenerateHandler(build_answerer(llm_settings(fake_llm)))
        await handler([env("Where is the reset button?", [HIT])])
        await handler.aclose()
        await GenerateHandler(ExtractiveAnswerer(min_score=0.2, max_sentences=2)).aclose()  # nothing to close
        return _chat_of(handler)._client.is_closed()

    assert asyncio.run(main())
