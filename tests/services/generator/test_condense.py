"""A follow-up question rewritten as a standalone one before retrieval."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from libs.common import constants
from libs.common.envelope import Envelope
from libs.common.settings import GeneratorSettings
from libs.common.stage import Output
from services.generator.answerers import build_answerer
from services.generator.condense import (
    CONDENSE_PROMPT,
    HeuristicCondenser,
    LLMCondenser,
    clean_rewrite,
    heuristic_standalone,
    needs_condensing,
    refers_back,
)
from services.generator.extractive import ExtractiveAnswerer
from services.generator.handler import GenerateHandler
from tests.fakes.openai_server import FakeOpenAI, ok, status

FERRY = [
    {"role": "user", "content": "Tell me about the ferry to Elmsworth"},
    {"role": "assistant", "content": "The ferry to Elmsworth leaves from Pier 3 [1]."},
]
HIT = {
    "document_id": "d1",
    "filename": "ferry.txt",
    "page": 1,
    "score": 0.8,
    "text": "The ferry to Elmsworth leaves from Pier 3 at 7:15 every morning.",
}


def llm_settings(server: FakeOpenAI) -> GeneratorSettings:
    return GeneratorSettings(
        _env_file=None,  # type: ignore[call-arg]
        llm_api_key=SecretStr("test-key"),
        llm_base_url=server.base_url,
        llm_model="served-model",
        llm_retry_backoff_s=0.01,
    )


def chat_env(question: str, history: list[dict[str, str]] | None, **payload: object) -> Envelope:
    body: dict[str, object] = {"question": question, "query": question, "top_k": 3, **payload}
    route = None
    if history:
        body["history"] = history
        route = constants.CHAT_WITH_HISTORY_ROUTE
    return Envelope.new("chat", "docs", body, 60, route=route)


@pytest.mark.parametrize(
    ("question", "refers"),
    [
        ("When does it leave?", True),
        ("How much do they cost?", True),
        ("And on Sundays?", True),
        ("What about the return trip?", True),
        ("Why?", True),
        ("When does the ferry to Elmsworth leave?", False),
        ("How old is the bakery's sourdough starter?", False),
    ],
)
def test_refers_back(question: str, refers: bool) -> None:
    assert refers_back(question) is refers


def test_a_follow_up_gets_the_earlier_questions_content_words_in_front() -> None:
    assert heuristic_standalone("When does it leave?", FERRY) == "ferry Elmsworth: When does it leave?"


def test_a_question_that_stands_on_its_own_is_kept() -> None:
    question = "How old is the bakery's sourdough starter?"
    assert heuristic_standalone(f"  {question} ", FERRY) == question


def test_a_chain_of_follow_ups_reaches_back_to_the_topic() -> None:
    history = [
        *FERRY,
        {"role": "user", "content": "When does it leave?"},
        {"role": "assistant", "content": "At 7:15 [1]."},
    ]
    # "leave" comes from the last question, "ferry Elmsworth" from the one before it.
    standalone = heuristic_standalone("How much does it cost?", history)
    assert standalone == "ferry Elmsworth leave: How much does it cost?"


def test_without_an_earlier_user_question_the_follow_up_is_kept() -> None:
    assert heuristic_standalone("When does it leave?", [{"role": "assistant", "content": "Hi"}]) == (
        "When does it leave?"
    )


def test_clean_rewrite_keeps_only_the_question() -> None:
    assert clean_rewrite('Standalone question: "When does the ferry leave?"\n\nIt leaves at 7.') == (
        "When does the ferry leave?"
    )
    assert clean_rewrite("\n  When does the ferry leave?  ") == "When does the ferry leave?"
    assert clean_rewrite("  \n") == ""


def test_the_llm_rewrites_the_follow_up(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ok(chunks=["Standalone question: ", "When does the ferry ", "to Elmsworth leave?"]))

    async def main() -> str:
        answerer = build_answerer(llm_settings(fake_llm))
        handler = GenerateHandler(answerer)
        assert isinstance(handler.condenser, LLMCondenser)
        try:
            return await handler.condenser.condense("When does it leave?", FERRY, deadline=time.time() + 30)
        finally:
            await handler.aclose()

    assert asyncio.run(main()) == "When does the ferry to Elmsworth leave?"
    (request,) = fake_llm.requests
    system, user = request.body["messages"]
    assert system == {"role": "system", "content": CONDENSE_PROMPT}
    assert "User: Tell me about the ferry to Elmsworth" in user["content"]
    assert "Assistant: The ferry to Elmsworth leaves from Pier 3 [1]." in user["content"]
    assert user["content"].endswith("Follow-up question: When does it leave?")


def test_an_unusable_llm_rewrite_falls_back_to_the_heuristic(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ok("word " * 400))

    async def main() -> str:
        answerer = build_answerer(llm_settings(fake_llm))
        condenser = GenerateHandler(answerer).condenser
        try:
            return await condenser.condense("When does it leave?", FERRY, deadline=time.time() + 30)
        finally:
            await answerer.aclose()  # type: ignore[attr-defined]

    assert asyncio.run(main()) == "ferry Elmsworth: When does it leave?"


def test_an_llm_failure_is_the_steps_outcome(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(status(401, "Incorrect API key provided"))

    async def main() -> list[object]:
        handler = GenerateHandler(build_answerer(llm_settings(fake_llm)))
        try:
            return list(await handler([chat_env("When does it leave?", FERRY)]))
        finally:
            await handler.aclose()

    (outcome,) = asyncio.run(main())
    assert isinstance(outcome, Exception) and "401" in str(outcome)


def test_the_first_generator_step_condenses_and_the_last_answers_the_standalone_question() -> None:
    handler = GenerateHandler(ExtractiveAnswerer(min_score=0.2, max_sentences=2))
    assert isinstance(handler.condenser, HeuristicCondenser)
    job = chat_env("When does it leave?", FERRY)
    assert needs_condensing(job)
    (step,) = asyncio.run(handler([job]))
    assert isinstance(step, Output)
    payload = step.payload
    assert payload["question"] == payload["query"] == "ferry Elmsworth: When does it leave?"
    assert payload["condensed"] is True and payload["original_question"] == "When does it leave?"
    assert payload["history"] == FERRY
    assert step.event == {"standalone_question": "ferry Elmsworth: When does it leave?"}

    # The worker forwards it (embedder, retriever); the last step answers it.
    last = job.model_copy(update={"route": [constants.GENERATOR], "payload": {**payload, "hits": [HIT]}})
    assert not needs_condensing(last)
    (answer,) = asyncio.run(handler([last]))
    assert isinstance(answer, dict)
    assert "7:15" in answer["answer"]
    assert answer["standalone_question"] == "ferry Elmsworth: When does it leave?"


def test_only_chats_with_history_and_a_later_stage_are_condensed() -> None:
    assert not needs_condensing(chat_env("When does it leave?", None))
    at_the_end = chat_env("When does it leave?", FERRY).model_copy(update={"route": [constants.GENERATOR]})
    assert not needs_condensing(at_the_end)
    done_already = chat_env("When does it leave?", FERRY, condensed=True)
    assert not needs_condensing(done_already)
