"""The in-process pdf-qa search figures are score.py's (bench/pdfqa_eval.py)."""

from __future__ import annotations

import importlib.util
import random
from types import ModuleType

import pytest

from bench import pdfqa_eval
from bench.pdfqa_eval import Question, page_rank, summarize
from libs.common.models import Hit

SCORE_PY = pdfqa_eval.PDFQA / "score.py"


def score_py() -> ModuleType:
    if not SCORE_PY.is_file():
        pytest.skip(f"no {SCORE_PY}")
    spec = importlib.util.spec_from_file_location("pdfqa_score", SCORE_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hit(filename: str, page: int) -> Hit:
    return Hit(document_id=filename, filename=filename, page=page, score=0.5, text="t")


def test_ranks_and_summary_match_score_py_on_random_searches() -> None:
    score = score_py()
    rng = random.Random(3)
    questions, ranks, records = [], {}, []
    for n in range(60):
        q = Question(f"q{n}", rng.choice(["fact", "table", "list"]), "?", "a.pdf", frozenset({3, 4}))
        hits = [
            hit(rng.choice(["a.pdf", "A.PDF", "b.pdf"]), rng.randint(1, 8)) for _ in range(rng.randint(0, 12))
        ]
        questions.append(q)
        ranks[q.id] = page_rank(hits, q)
        raw = {"id": q.id, "kind": q.kind, "pdf": "x", "pages": sorted(q.pages)}
        records.append(score.score_search(raw, [h.model_dump() for h in hits], "a.pdf", 10))
        assert ranks[q.id] == records[-1]["rank"]
    ours = summarize(ranks, questions)
    theirs = score.summarize_search(records, 10)
    for kind, figures in theirs.items():
        for name in ("recall@1", "recall@5", "recall@10", "mrr@10"):
            assert ours[kind][name] == pytest.approx(figures[name], abs=1e-4)


def test_an_unanswerable_question_is_not_searched_for_recall() -> None:
    questions = pdfqa_eval.load_questions() if (pdfqa_eval.PDFQA / "dev.jsonl").is_file() else []
    if not questions:
        pytest.skip("no pdf-qa questions")
    kinds = {q.kind for q in questions}
    assert "unanswerable" in kinds
    assert all(not q.answerable for q in questions if q.kind == "unanswerable")
    assert all(q.filename and q.pages for q in questions if q.answerable)
