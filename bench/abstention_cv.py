"""Choosing the extractive answerer's abstention threshold by cross-validation on pdf-qa.

    .venv/bin/python -m bench.abstention_cv

Every dev question is answered in process with no threshold (``bench.pdfqa_answers``:
the chat's hits and the generator's answerer, ``min_evidence`` off), which gives each
its evidence features (the draft's ``coverage`` and ``relevance``) and whether the
answer would be right. A choice is a pair (coverage weight ``w``, threshold ``t``): it
abstains on a question whose ``w * coverage + (1 - w) * relevance`` is below ``t``.
The best pair on a training set has the highest answerable-right rate plus
unanswerable-abstained rate among the pairs that abstain on at most 10 % of the
training set's answerable questions (ties: the ``w`` nearest ``COVERAGE_WEIGHT``, then
the median ``t``).

Printed: leave-one-out (each question decided by the pair chosen on the other 39), the
spread of the folds' choices, stratified 4-fold x 10 shuffles (each fold a quarter of
each kind), and the pair chosen on all 40, which ``evidence.py`` documents.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.pdfqa_answers import answer_rows
from bench.pdfqa_eval import PDFQA, available, load_corpus, search_all
from libs.common.settings import EmbedderSettings, GatewaySettings, GeneratorSettings
from services.embedder.backends import build_embedder
from services.generator.answerers import build_answerer
from services.generator.evidence import COVERAGE_WEIGHT
from services.generator.extractive import ExtractiveAnswerer

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
MAX_WRONG_ABSTENTIONS = 0.10


@dataclass(frozen=True)
class Row:
    answerable: bool
    right: bool  # answerable: fact and page right when answered
    coverage: float | None  # None: nothing to quote (always abstains)
    relevance: float | None

    def score(self, w: float) -> float:
        if self.coverage is None or self.relevance is None:
            return -math.inf
        return w * self.coverage + (1 - w) * self.relevance


def objective(rows: Sequence[Row], w: float, t: float) -> float:
    answerable = [r for r in rows if r.answerable]
    unanswerable = [r for r in rows if not r.answerable]
    wrong = sum(r.score(w) < t for r in answerable) / len(answerable)
    abstained = sum(r.score(w) < t for r in unanswerable) / len(unanswerable) if unanswerable else 0.0
    if wrong > MAX_WRONG_ABSTENTIONS:
        return -1.0 + abstained - wrong
    return sum(r.score(w) >= t and r.right for r in answerable) / len(answerable) + abstained


def thresholds(rows: Sequence[Row], w: float) -> list[float]:
    """Midpoints between the rows' distinct scores, and one below and above them all."""
    values = sorted({round(r.score(w), 6) for r in rows if r.coverage is not None})
    return [-1.0, *((a + b) / 2 for a, b in itertools.pairwise(values)), 2.0]


def choose(rows: Sequence[Row]) -> tuple[float, float]:
    scored = [(objective(rows, w, t), w, t) for w in WEIGHTS for t in thresholds(rows, w)]
    top = max(o for o, _, _ in scored)
    w = min({w for o, w, _ in scored if o == top}, key=lambda w: abs(w - COVERAGE_WEIGHT))
    ts = sorted(t for o, ww, t in scored if o == top and ww == w)
    return w, ts[len(ts) // 2]


def rates(decided: Sequence[tuple[Row, bool]]) -> tuple[float, float, float]:
    """(answerable right, wrong abstentions, unanswerable abstained) of (row, abstains) pairs."""
    answerable = [(r, a) for r, a in decided if r.answerable]
    unanswerable = [(r, a) for r, a in decided if not r.answerable]
    right = sum((not a) and r.right for r, a in answerable) / len(answerable)
    wrong = sum(a for _, a in answerable) / len(answerable)
    return right, wrong, sum(a for _, a in unanswerable) / len(unanswerable) if unanswerable else math.nan


def leave_one_out(rows: Sequence[Row]) -> tuple[list[tuple[Row, bool]], list[tuple[float, float]]]:
    decided, chosen = [], []
    for i, row in enumerate(rows):
        w, t = choose([*rows[:i], *rows[i + 1 :]])
        chosen.append((w, t))
        decided.append((row, row.score(w) < t))
    return decided, chosen


def stratified(rows: Sequence[Row], folds: int = 4, shuffles: int = 10) -> list[tuple[float, float, float]]:
    out = []
    for seed in range(shuffles):
        rnd = random.Random(seed)
        answerable = [r for r in rows if r.answerable]
        unanswerable = [r for r in rows if not r.answerable]
        rnd.shuffle(answerable)
        rnd.shuffle(unanswerable)
        for k in range(folds):
            test = answerable[k::folds] + unanswerable[k::folds]
            w, t = choose([r for r in rows if all(r is not x for x in test)])
            out.append(rates([(r, r.score(w) < t) for r in test]))
    return out


def _spread(values: Sequence[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    mean, sd = statistics.mean(finite), statistics.pstdev(finite)
    return f"{mean:.3f} +- {sd:.3f} [{min(finite):.2f}, {max(finite):.2f}]"


def collect() -> list[Row]:
    corpus = load_corpus(build_embedder(EmbedderSettings()))
    answerer = build_answerer(GeneratorSettings(min_evidence=-1.0))
    assert isinstance(answerer, ExtractiveAnswerer), "set no LLM key: the threshold is the extractive one's"
    raw: list[dict[str, Any]] = answer_rows(search_all(corpus, GatewaySettings().default_top_k), answerer)
    rows = []
    for r in raw:
        rows.append(
            Row(r["kind"] != "unanswerable", bool(r.get("both_correct")), r["coverage"], r["relevance"])
        )
    return rows


def report(rows: Sequence[Row], say: Callable[[str], None] = print) -> tuple[float, float]:
    decided, chosen = leave_one_out(rows)
    right, wrong, abstained = rates(decided)
    say(f"{sum(r.answerable for r in rows)} answerable, {sum(not r.answerable for r in rows)} unanswerable")
    say(f"no threshold: answerable right {rates([(r, r.coverage is None) for r in rows])[0]:.3f}")
    say(
        f"leave-one-out, held out: answerable right {right:.3f}, wrong abstentions {wrong:.3f}, "
        f"unanswerable abstained {abstained:.3f}"
    )
    ts = [t for _, t in chosen]
    say(
        f"  folds chose w {dict(Counter(w for w, _ in chosen))}, t {min(ts):.3f} to {max(ts):.3f} "
        f"(median {statistics.median(ts):.3f})"
    )
    folds = stratified(rows)
    say("stratified 4-fold x 10, held out: answerable right " + _spread([f[0] for f in folds]))
    say("  wrong abstentions " + _spread([f[1] for f in folds]))
    say("  unanswerable abstained " + _spread([f[2] for f in folds]))
    w, t = choose(rows)
    right, wrong, abstained = rates([(r, r.score(w) < t) for r in rows])
    say(
        f"on all: w {w}, t {t:.3f}: answerable right {right:.3f}, wrong abstentions {wrong:.3f}, "
        f"unanswerable abstained {abstained:.3f}"
    )
    return w, statistics.median(ts)


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    if not available():
        print(f"the pdf-qa PDFs are not installed (sh {PDFQA}/install.sh as root)", file=sys.stderr)
        return 2
    report(collect())
    return 0


if __name__ == "__main__":
    sys.exit(main())
