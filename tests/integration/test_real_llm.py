"""The generator against a real OpenAI-compatible server: llama-cpp-python with SmolLM2-135M.

The model is tiny and its answers are poor, so these tests check the mechanics (a real
server's stream reaches ``on_token`` piece by piece, the answer is those pieces joined, the
mode names the model, citations only name sources that exist, the ``answerable`` flag
follows the evidence and the reply), never what the answer says; the one judgement of
the model's that a test relies on is said where it is.
Skipped until ``make llm`` has installed the server and the model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest
from pydantic import SecretStr

from libs.common.models import Hit
from libs.common.settings import GeneratorSettings
from services.generator.answerers import build_answerer
from services.generator.backends import Answer
from services.generator.llm import LLMAnswerer
from services.generator.prompt import NOTHING_RELEVANT, says_not_found
from tests.integration import llm_server
from tests.integration.harness import Stack
from tests.integration.llm_server import LlamaServer

# Short answers keep each test to seconds on 2 cores.
MAX_TOKENS = 64
HITS = [
    Hit(
        document_id="d1",
        filename="lighthouse.txt",
        page=1,
        score=0.8,
        text="The Elmsworth lighthouse was built in 1887 from granite. Its lamp is visible "
        "for twenty-two nautical miles on a clear night.",
    ),
    Hit(
        document_id="d2",
        filename="council.txt",
        page=2,
        score=0.6,
        text="The town council meets on the first Monday of every month in the old customs house.",
    ),
]
DOCUMENT = (
    "Elmsworth harbour guide.\n\n"
    "The Elmsworth lighthouse was built in 1887 from granite quarried on the northern cliffs. "
    "Its lamp is visible for twenty-two nautical miles on a clear night. The keeper climbs "
    "one hundred and twelve steps to reach the lamp room.\n\n"
    "The fishing fleet sails at dawn and returns before the evening market opens. Fresh "
    "mackerel and crab are sold on the quay until the bell of the customs house rings."
)


class Tokens:
    """An ``on_token`` callback that records each delta and when it came."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.at: list[float] = []

    async def __call__(self, token: str) -> None:
        self.pieces.append(token)
        self.at.append(time.monotonic())


def settings_for(llm: LlamaServer) -> GeneratorSettings:
    return GeneratorSettings(
        llm_base_url=llm.base_url,
        llm_api_key=SecretStr("local"),
        llm_model=llm.model,
        llm_max_tokens=MAX_TOKENS,
    )


@pytest.mark.llm
@pytest.mark.slow
def test_generator_streams_an_answer_from_the_real_server(real_llm: LlamaServer) -> None:
    answerer = build_answerer(settings_for(real_llm))
    assert isinstance(answerer, LLMAnswerer)
    tokens = Tokens()

    async def main() -> Answer:
        try:
            return await answerer.answer(
                "When was the lighthouse built?", HITS, on_token=tokens, deadline=time.time() + 120
            )
        finally:
            await answerer.aclose()

    answer = asyncio.run(main())

    assert answer.mode == f"llm:{real_llm.model}"
    assert answer.answer.strip(), real_llm.log_tail()
    assert answer.answer != NOTHING_RELEVANT
    # Streamed: several deltas, in order, making up exactly the answer.
    assert len(tokens.pieces) >= 3, tokens.pieces
    assert all(tokens.pieces), tokens.pieces
    assert "".join(tokens.pieces) == answer.answer
    assert tokens.at == sorted(tokens.at)
    # Citations, if the model made any, name only the two sources it was given, once each.
    numbers = [c.n for c in answer.citations]
    assert numbers == sorted(set(numbers))
    assert set(numbers) <= {1, 2}
    for citation in answer.citations:
        assert citation.document_id == HITS[citation.n - 1].document_id


@pytest.mark.llm
@pytest.mark.slow
def test_the_pipeline_answers_with_the_real_llm(
    real_llm: LlamaServer, tmp_path: Path, valkey_url: str
) -> None:
    stack = Stack(valkey_url, tmp_path)
    try:
        for name in ("embedder", "retriever"):
            stack.start(name)
        stack.start(
            "generator",
            DOCUMIND_LLM_BASE_URL=real_llm.base_url,
            DOCUMIND_LLM_API_KEY="local",
            DOCUMIND_LLM_MODEL=real_llm.model,
            DOCUMIND_LLM_MAX_TOKENS=str(MAX_TOKENS),
            # The hash embeddings' scores say little: every hit is evidence, so the LLM is asked.
            DOCUMIND_MIN_SCORE="-1",
        )
        stack.start("gateway")
        stack.wait_ready()

        with stack.client(timeout=30) as client:
            upload = client.post(
                "/v1/collections/harbour/documents", files={"file": ("harbour.txt", DOCUMENT.encode())}
            )
            assert upload.status_code == 202, upload.text
            ingest = stack.wait_job(upload.json()["job_id"])
            assert ingest["status"] == "done", (ingest, stack.logs())
            document_id = upload.json()["document_id"]

            top_k = 3
            chat = client.post(
                "/v1/chat",
                json={"question": "When was the lighthouse built?", "collection": "harbour", "top_k": top_k},
            )
            assert chat.status_code == 202, chat.text
            job = stack.wait_job(chat.json()["job_id"], timeout_s=120)

        assert job["status"] == "done", (job, stack.logs(), real_llm.log_tail())
        assert "generator" in job["timings"]
        result = job["result"]
        assert result["mode"] == f"llm:{real_llm.model}"
        assert isinstance(result["answer"], str)
        assert result["answer"].strip()
        assert result["answer"] != NOTHING_RELEVANT
        assert isinstance(result["citations"], list)
        numbers = [c["n"] for c in result["citations"]]
        assert numbers == sorted(set(numbers))
        assert all(1 <= n <= top_k for n in numbers), numbers
        for citation in result["citations"]:
            assert citation["document_id"] == document_id
            assert citation["filename"] == "harbour.txt"
    finally:
        stack.stop()


@pytest.mark.llm
@pytest.mark.slow
def test_the_real_llm_result_says_whether_the_documents_answer(real_llm: LlamaServer) -> None:
    """What the service guarantees, whatever the model says: a question the sources barely
    touch is answered "not found" before the model is asked (answerable false, no
    citations); a reply is unanswerable exactly when it begins with the NOT_FOUND phrase
    (or a usual wording of it), and then cites nothing. That SmolLM2 does not say the
    phrase for a question its source 1 answers is the model's judgement (deterministic at
    temperature 0): checked last."""
    settings = settings_for(real_llm)
    answerer = build_answerer(settings)
    assert isinstance(answerer, LLMAnswerer)
    assert answerer.min_evidence == settings.min_evidence > 0

    async def main() -> tuple[Answer, Answer]:
        try:
            # As a retriever finds them for a question they do not answer: weakly.
            weak = [hit.model_copy(update={"score": 0.3}) for hit in HITS]
            unanswered = await answerer.answer(
                "How many volunteers crew the Elmsworth lifeboat in winter storms?",
                weak,
                deadline=time.time() + 120,
            )
            answered = await answerer.answer(
                "When was the lighthouse built?", HITS, deadline=time.time() + 120
            )
            return unanswered, answered
        finally:
            await answerer.aclose()

    unanswered, answered = asyncio.run(main())
    # The service's guarantee: weak evidence, so the model was not asked.
    assert unanswered.answer == NOTHING_RELEVANT
    assert unanswered.model_dump()["answerable"] is False and unanswered.citations == []
    # The service's guarantee: the flag follows the reply (phrase, citations).
    dumped = answered.model_dump()
    assert dumped["answerable"] is (not dumped["abstained"])
    assert dumped["answerable"] is (not says_not_found(answered.answer)), answered.answer
    if not dumped["answerable"]:
        assert answered.citations == []
    assert all(c.n in (1, 2) for c in answered.citations)
    # The model's judgement: it answers (source 1 says when), not "not found".
    assert dumped["answerable"] is True, (answered.answer, real_llm.log_tail())


def test_without_the_extra_the_server_skips_saying_what_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "llama_cpp" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    reason = llm_server.missing()
    assert reason is not None
    assert reason.startswith(llm_server.SKIP_REASON)
    assert "llama_cpp" in reason
    with (
        pytest.raises(pytest.skip.Exception, match="make llm"),
        llm_server.llama_server(Path("/nonexistent")),
    ):
        pass
