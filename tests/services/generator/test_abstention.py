"""Saying "not in your documents": the evidence test both answerers share, the LLM's fixed
phrase, and the ``answerable`` flag next to ``abstained``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from pydantic import SecretStr

from libs.common.models import Hit
from libs.common.settings import GeneratorSettings
from services.generator.answerers import build_answerer
from services.generator.evidence import (
    COVERAGE_WEIGHT,
    DEFAULT_MIN_EVIDENCE,
    NEGATION_TERM,
    NUMBER_TERM,
    Cues,
    sentence_cues,
)
from services.generator.extractive import ExtractiveAnswerer
from services.generator.llm import LLMAnswerer
from services.generator.prompt import NOT_FOUND, NOTHING_RELEVANT, SYSTEM_PROMPT, says_not_found

HITS = [
    Hit(
        document_id="d1",
        filename="harbour.pdf",
        page=3,
        score=0.55,
        text="The Elmsworth lighthouse was built in 1887 from granite. Its lamp is visible "
        "for twenty-two nautical miles on a clear night.",
    ),
    Hit(
        document_id="d2",
        filename="council.pdf",
        page=8,
        score=0.45,
        text="The town council meets on the first Monday of every month.",
    ),
]
ANSWERED = "When was the Elmsworth lighthouse built?"
NOT_ANSWERED = "How many volunteers crew the Elmsworth lifeboat in winter storms?"


@dataclass
class FakeChat:
    deltas: list[str]
    model: str = "fake-model"
    calls: list[list[dict[str, str]]] = field(default_factory=list)

    async def stream(self, messages: Sequence[dict[str, str]], *, deadline: float) -> AsyncIterator[str]:
        self.calls.append([dict(m) for m in messages])
        for delta in self.deltas:
            yield delta


def ask(answerer: LLMAnswerer, question: str) -> tuple[str, bool, bool, int]:
    result = asyncio.run(answerer.answer(question, HITS, deadline=time.time() + 30))
    dumped = result.model_dump()
    assert dumped["answerable"] is (not dumped["abstained"])
    return result.answer, dumped["answerable"], bool(result.citations), len(result.citations)


def test_the_prompt_tells_the_model_the_phrase_to_say() -> None:
    assert f'reply exactly "{NOT_FOUND}"' in SYSTEM_PROMPT


@pytest.mark.parametrize(
    "reply",
    [
        NOT_FOUND,
        "i could not find this in your documents",
        "  \u201cI could  not find this in your\ndocuments.\u201d [1]",
        "Answer: I could not find this in your documents.",
    ],
)
def test_the_phrase_is_recognised_however_it_is_written(reply: str) -> None:
    assert says_not_found(reply)


def test_a_reply_that_answers_is_not_taken_for_the_phrase() -> None:
    assert not says_not_found("It was built in 1887 [1].")
    # Said about a part of the question only, after answering the rest: an answer.
    assert not says_not_found(
        "It was built in 1887 [1]. I could not find this in your documents for the lamp."
    )


def test_a_reply_with_the_phrase_abstains_even_if_it_cites_a_source() -> None:
    chat = FakeChat(["I could not find this", " in your documents [1]."])
    answer, answerable, cited, _ = ask(LLMAnswerer(chat, min_score=0.2), ANSWERED)
    assert answer == "I could not find this in your documents [1]."
    assert (answerable, cited) == (False, False)
    assert len(chat.calls) == 1


def test_a_reply_that_answers_is_answerable_cited_or_not() -> None:
    chat = FakeChat(["It was built in 1887 [1]."])
    _, answerable, cited, n = ask(LLMAnswerer(chat, min_score=0.2), ANSWERED)
    assert (answerable, cited, n) == (True, True, 1)
    # A model that forgets to cite still answered: no citations, but not "not found".
    uncited = FakeChat(["It was built in 1887."])
    assert ask(LLMAnswerer(uncited, min_score=0.2), ANSWERED)[1:] == (True, False, 0)


@pytest.mark.parametrize(
    "reply", ["I don't know.", "The sources do not say when it was built.", "I'm unable to find it."]
)
def test_usual_ways_of_saying_not_found_abstain_too(reply: str) -> None:
    answer, answerable, cited, _ = ask(LLMAnswerer(FakeChat([reply]), min_score=0.2), ANSWERED)
    assert (answer, answerable, cited) == (reply, False, False)


def test_weak_evidence_abstains_before_asking_the_model() -> None:
    chat = FakeChat(["The lifeboat has twelve volunteers [1]."])
    answerer = LLMAnswerer(chat, min_score=0.2, min_evidence=0.5)
    answer, answerable, cited, _ = ask(answerer, NOT_ANSWERED)
    assert (answer, answerable, cited) == (NOTHING_RELEVANT, False, False)
    assert chat.calls == []
    # The same threshold lets a question the sources answer through to the model.
    _, answerable, cited, _ = ask(answerer, ANSWERED)
    assert (answerable, cited) == (True, True)
    assert len(chat.calls) == 1


def test_the_threshold_is_a_setting_whose_default_is_the_calibrated_one() -> None:
    default = GeneratorSettings(_env_file=None)  # type: ignore[call-arg]
    assert default.min_evidence == DEFAULT_MIN_EVIDENCE
    extractive = build_answerer(GeneratorSettings(_env_file=None, min_evidence=0.4))  # type: ignore[call-arg]
    assert isinstance(extractive, ExtractiveAnswerer) and extractive.min_evidence == 0.4
    llm = build_answerer(
        GeneratorSettings(_env_file=None, llm_api_key=SecretStr("k"), min_evidence=0.3)  # type: ignore[call-arg]
    )
    assert isinstance(llm, LLMAnswerer) and llm.min_evidence == 0.3
    asyncio.run(llm.aclose())


@pytest.mark.parametrize(
    ("question", "quantity", "negation", "yes_no"),
    [
        ("How long does readline wait by default?", True, False, False),
        ("How many bits long are the identifiers?", True, False, False),
        ("Which item is not required in them?", False, True, False),
        ("Which of them don't take numeric arguments?", False, True, False),
        ("Which of them don\u2019t take numeric arguments?", False, True, False),
        ("Is a loop ignored by Traces?", False, True, True),
        ("Can Traces process directed graphs?", False, False, True),
        ("Where does the name come from?", False, False, False),
    ],
)
def test_what_a_question_asks_for(question: str, quantity: bool, negation: bool, yes_no: bool) -> None:
    assert Cues.of(question) == Cues(quantity=quantity, negation=negation, yes_no=yes_no)


@pytest.mark.parametrize(
    ("sentence", "cues"),
    [
        ("The timeout is 30 seconds.", {NUMBER_TERM}),
        ("It is read twice at start-up.", {NUMBER_TERM}),
        ("Traces can\u2019t handle directed edges.", {NEGATION_TERM}),
        ("Loops are ignored, and only one of ten is kept.", {NUMBER_TERM, NEGATION_TERM}),
        ("Nothing here is known to anyone.", set()),
    ],
)
def test_what_a_sentence_offers_an_answer(sentence: str, cues: set[str]) -> None:
    assert sentence_cues(sentence) == cues


def test_the_retrievers_evidence_score_counts_rather_than_the_cosine() -> None:
    # The passage covers the whole question; halfway between no relevance and full.
    threshold = COVERAGE_WEIGHT + (1 - COVERAGE_WEIGHT) / 2
    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=3, min_evidence=threshold)
    # Same text, same cosines: the fused ranking's verdict decides.
    believed = [hit.model_copy(update={"relevance": 0.95}) for hit in HITS]
    doubted = [hit.model_copy(update={"relevance": 0.0}) for hit in HITS]
    assert answerer.compose(ANSWERED, believed).answerable
    refused = answerer.compose(ANSWERED, doubted)
    assert not refused.answerable and refused.citations == []
