"""Choosing the extractive answerer's ``SEMANTIC_WEIGHT`` by cross-validation on pdf-qa.

    .venv/bin/python -m bench.semantic_cv

Every dev question is answered in process (``bench.pdfqa_answers``: the chat's hits and
the generator's answerer with its word vectors and ``min_evidence``) once per weight of
``WEIGHTS`` on the word vectors' closeness; a question is right when score.py says so
(fact and page for an answerable one, an abstention with no citations for the others).
The best weight on a training set answers most of it right (ties: the median of the
tied weights).

Printed: each weight's count on all 40, leave-one-out (each question answered with the
weight chosen on the other 39) and the spread of the folds' choices, and stratified
4-fold x 10 shuffles (each fold a quarter of each kind).
"""

from __future__ import annotations

import random
import statistics
import sys
from collections import Counter
from collections.abc import Sequence

from bench.pdfqa_answers import answer_rows
from bench.pdfqa_eval import PDFQA, available, load_corpus, search_all
from libs.common.settings import EmbedderSettings, GatewaySettings, GeneratorSettings
from services.embedder.backends import build_embedder
from services.generator.answerers import build_answerer
from services.generator.extractive import ExtractiveAnswerer

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)

# Per question id: (answerable, right at each weight of WEIGHTS).
Table = dict[str, tuple[bool, tuple[bool, ...]]]


def collect() -> Table:
    corpus = load_corpus(build_embedder(EmbedderSettings()))
    answerer = build_answerer(GeneratorSettings())
    assert isinstance(answerer, ExtractiveAnswerer), "set no LLM key: the weight is the extractive one's"
    assert answerer.similarity is not None, "no word vectors (see the generator's log)"
    hits = search_all(corpus, GatewaySettings().default_top_k)
    right: dict[str, list[bool]] = {}
    answerable: dict[str, bool] = {}
    for w in WEIGHTS:
        answerer.semantic_weight = w
        for r in answer_rows(hits, answerer):
            answerable[r["id"]] = r["kind"] != "unanswerable"
            right.setdefault(r["id"], []).append(bool(r.get("both_correct") or r.get("unanswerable_correct")))
    return {q: (answerable[q], tuple(v)) for q, v in right.items()}


def choose(table: Table, ids: Sequence[str]) -> float:
    counts = [sum(table[q][1][i] for q in ids) for i in range(len(WEIGHTS))]
    tied = [w for w, c in zip(WEIGHTS, counts, strict=True) if c == max(counts)]
    return tied[(len(tied) - 1) // 2]


def held_out(table: Table, test: Sequence[str], w: float) -> tuple[float, float]:
    """(answerable right, unanswerable right) rates of ``test`` at weight ``w``."""
    i = WEIGHTS.index(w)
    a = [table[q][1][i] for q in test if table[q][0]]
    u = [table[q][1][i] for q in test if not table[q][0]]
    return (sum(a) / len(a) if a else float("nan"), sum(u) / len(u) if u else float("nan"))


def report(table: Table) -> float:
    ids = sorted(table)
    answerable = [q for q in ids if table[q][0]]
    for i, w in enumerate(WEIGHTS):
        a = sum(table[q][1][i] for q in answerable)
        u = sum(table[q][1][i] for q in ids if not table[q][0])
        print(f"weight {w:.1f}: answerable right {a} of {len(answerable)}, unanswerable {u}")
    chosen = []
    right_a = right_u = 0
    for q in ids:
        w = choose(table, [x for x in ids if x != q])
        chosen.append(w)
        ok = table[q][1][WEIGHTS.index(w)]
        right_a += ok and table[q][0]
        right_u += ok and not table[q][0]
    print(
        f"leave-one-out, held out: answerable right {right_a} of {len(answerable)}, "
        f"unanswerable {right_u} of {len(ids) - len(answerable)}; folds chose {dict(Counter(chosen))}"
    )
    rates = []
    for seed in range(10):
        rnd = random.Random(seed)
        kept, refused = answerable[:], [q for q in ids if not table[q][0]]
        rnd.shuffle(kept)
        rnd.shuffle(refused)
        for k in range(4):
            test = kept[k::4] + refused[k::4]
            w = choose(table, [q for q in ids if q not in test])
            rates.append((w, *held_out(table, test, w)))
    ra = [r[1] for r in rates]
    print(
        f"stratified 4-fold x 10, held out: answerable right {statistics.mean(ra):.3f} "
        f"+- {statistics.pstdev(ra):.3f} [{min(ra):.2f}, {max(ra):.2f}]; "
        f"folds chose {dict(Counter(r[0] for r in rates))}"
    )
    w = statistics.median(chosen)
    print(f"chosen: {w} (the median of the leave-one-out folds' choices)")
    return w


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    if not available():
        print(f"the pdf-qa PDFs are not installed (sh {PDFQA}/install.sh as root)", file=sys.stderr)
        return 2
    report(collect())
    return 0


if __name__ == "__main__":
    sys.exit(main())
