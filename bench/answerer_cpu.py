"""CPU per answer of the extractive answerer, in process.

    .venv/bin/python -m bench.answerer_cpu [--pdfqa] [--questions N] [--json FILE]

``ExtractiveAnswerer.compose`` on 60 SciFact questions, each with 5 hits of 160 words
drawn from the corpus with a fixed seed (so any revision answers the same inputs), and
with ``--pdfqa`` also on the pdf-qa questions with the chat's real top-5 hits
(``bench.pdfqa_eval.search_all``; the PDFs must be installed). Figure: CPU ms per
question (``time.process_time``, so the machine's load counts little), the best of 5
rounds, with the answerer's per-sentence caches cleared before each round (a cold
answer: no sentence seen before). Where the revision has word vectors
(``services/generator/word_vectors.py``), each set is answered twice in the same run:
with shared words alone, and with the word vectors (their cache cleared too).

To compare revisions, run it from a worktree of the other one, which imports that
revision's answerer (the inputs are built here)::

    git worktree add /tmp/base <rev>
    (cd /tmp/base && PYTHONPATH=. /work/main/.venv/bin/python /work/main/bench/answerer_cpu.py)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from libs.common.models import Hit

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact-subset"
QUESTIONS = 60
HITS = 5
WORDS = 160
ROUNDS = 5

Case = tuple[str, list[Hit]]


def scifact_cases(root: Path = SCIFACT, seed: int = 7, questions: int = QUESTIONS) -> list[Case]:
    docs = [json.loads(line) for line in (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    queries = [json.loads(line) for line in (root / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    rng = random.Random(seed)
    cases = []
    for q in queries[:questions]:
        hits = []
        for i in range(HITS):
            d = rng.choice(docs)
            text = " ".join(d["text"].split()[:WORDS])
            hits.append(
                Hit(
                    document_id=d["_id"],
                    filename="f.pdf",
                    page=1,
                    chunk_index=i,
                    text=text,
                    score=0.6 - 0.05 * i,
                    relevance=0.7 - 0.05 * i,
                )
            )
        cases.append((q["text"], hits))
    return cases


def pdfqa_cases() -> list[Case]:
    from bench.pdfqa_answers import _score_module
    from bench.pdfqa_eval import PDFQA, load_corpus, search_all
    from libs.common.settings import EmbedderSettings
    from services.embedder.backends import build_embedder

    hits = search_all(load_corpus(build_embedder(EmbedderSettings())), HITS)
    questions = _score_module().load_jsonl(str(PDFQA / "dev.jsonl"))
    return [(q["question"], hits[q["id"]]) for q in questions]


def _clear_caches() -> None:
    """Empty the answerer's per-sentence caches (those a revision has)."""
    for module_name, name in (("extractive", "_terms"), ("quotes", "_line_key")):
        module = sys.modules.get(f"services.generator.{module_name}")
        clear: Callable[[], None] | None = getattr(getattr(module, name, None), "cache_clear", None)
        if clear is not None:
            clear()


def cpu_ms_per_answer(cases: Sequence[Case], similarity: Any = None) -> float:
    """``similarity``: the answerer's word vectors (None: shared words alone)."""
    from services.generator.extractive import ExtractiveAnswerer

    extra = {} if similarity is None else {"similarity": similarity}
    answerer: Any = ExtractiveAnswerer(min_score=0.0, max_sentences=3, **extra)
    for question, hits in cases:
        answerer.compose(question, hits)
    best = float("inf")
    for _ in range(ROUNDS):
        _clear_caches()
        if similarity is not None:
            similarity.pieces.cache_clear()
        start = time.process_time()
        for question, hits in cases:
            answerer.compose(question, hits)
        best = min(best, (time.process_time() - start) / len(cases))
    return best * 1000


def _word_vectors() -> Any:
    """The generator's word vectors, where this revision has them and they can be had."""
    try:
        from services.generator import word_vectors
    except ImportError:
        return None
    try:
        return word_vectors.load(None)
    except word_vectors.WordVectorsMissingError as exc:
        print(f"no word vectors: {exc}", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdfqa", action="store_true", help="also the pdf-qa questions with their real hits")
    parser.add_argument(
        "--questions", type=int, default=QUESTIONS, help="SciFact questions (default %(default)s)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    vectors = _word_vectors()
    sets = [("scifact", "SciFact-like hits", scifact_cases(questions=args.questions))]
    if args.pdfqa:
        sets.append(("pdfqa", "pdf-qa hits", pdfqa_cases()))
    figures: dict[str, float] = {}
    for key, label, cases in sets:
        figures[f"{key}_cpu_ms_per_answer"] = cpu_ms_per_answer(cases)
        line = f"{label}: {figures[f'{key}_cpu_ms_per_answer']:.2f} CPU ms per answer"
        if vectors is not None:
            with_vectors = cpu_ms_per_answer(cases, vectors)
            figures[f"{key}_word_vectors_cpu_ms_per_answer"] = with_vectors
            line += f"; with word vectors {with_vectors:.2f}"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
