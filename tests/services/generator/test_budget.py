from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from libs.common.models import Hit
from services.generator.budget import estimate_tokens, fit_sources
from services.generator.llm import LLMAnswerer
from services.generator.prompt import format_source


def _hit(n: int, words: int, score: float = 0.9) -> Hit:
    text = " ".join(f"fact{n}" for _ in range(words))
    return Hit(document_id=f"d{n}", filename=f"doc{n}.pdf", page=n, score=score, text=text)


def test_estimate_errs_high() -> None:
    assert estimate_tokens("") == 0
    # English averages about 4 characters a token; the estimate takes 3.5.
    assert estimate_tokens("a" * 350) == 100
    # Non-ASCII characters count one token each.
    assert estimate_tokens("日本語のテキスト") == 8
    assert estimate_tokens("café") == 2


def test_the_best_sources_that_fit_are_kept_in_order() -> None:
    hits = [_hit(1, 100), _hit(2, 100), _hit(3, 100), _hit(4, 5)]
    one = estimate_tokens(format_source(1, hits[0]))
    kept = fit_sources(hits, budget_tokens=2 * one + 5)
    assert kept == hits[:2]
    assert fit_sources(hits, budget_tokens=100_000) == hits


def test_a_source_that_does_not_fit_drops_the_lower_ranked_ones_too() -> None:
    hits = [_hit(1, 10), _hit(2, 1000), _hit(3, 10)]
    assert fit_sources(hits, budget_tokens=500) == hits[:1]


def test_a_first_source_too_big_alone_is_shortened() -> None:
    big = _hit(1, 2000)
    (kept,) = fit_sources([big, _hit(2, 5)], budget_tokens=200)
    assert estimate_tokens(format_source(1, kept)) <= 200
    assert kept.text.startswith("fact1 fact1")
    assert kept.text.endswith("\u2026")
    assert (kept.document_id, kept.page) == (big.document_id, big.page)


class RecordingChat:
    model = "fake"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    async def stream(self, messages: Sequence[dict[str, str]], *, deadline: float) -> AsyncIterator[str]:
        self.prompts.append(messages[-1]["content"])
        yield self.reply


def test_citations_map_to_the_sources_in_the_prompt() -> None:
    hits = [_hit(1, 100), _hit(2, 100), _hit(3, 100)]
    budget = 2 * estimate_tokens(format_source(1, hits[0])) + 5
    chat = RecordingChat("Fact two [2]. Fact three [3].")
    answerer = LLMAnswerer(chat, min_score=0.2, context_tokens=budget)
    result = asyncio.run(answerer.answer("facts?", hits, deadline=time.time() + 30))
    (prompt,) = chat.prompts
    assert "[1] doc1.pdf, page 1" in prompt
    assert "[2] doc2.pdf, page 2" in prompt
    assert "doc3.pdf" not in prompt and "[3]" not in prompt
    # [3] was not in the prompt: it is no citation.
    assert [(c.n, c.filename) for c in result.citations] == [(2, "doc2.pdf")]
