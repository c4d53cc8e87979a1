from __future__ import annotations

import asyncio

from libs.common.envelope import Envelope
from services.generator.extractive import ExtractiveAnswerer
from services.generator.handler import GenerateHandler


def env(question: str, hits: list[dict[str, object]]) -> Envelope:
    return Envelope.new("chat", "docs", {"question": question, "top_k": 3, "hits": hits}, 60)


HIT = {
    "document_id": "d1",
    "filename": "guide.pdf",
    "page": 4,
    "score": 0.8,
    "text": "The reset button sits behind the battery cover. Hold it for ten seconds.",
}


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
