"""Hybrid search: a dense and a sparse (BM25) ranking merged by weighted reciprocal rank fusion.

Every backend runs the same two searches, each with the search's filter, then
hands both rankings to :func:`fuse`, so a collection gives the same hits in
whichever engine holds it. A point's fused score is::

    dense_weight / (k + dense rank) + (1 - dense_weight) / (k + sparse rank)

(ranks from 1; a ranking a point is missing from adds nothing). Only the ratio of
the two weights moves the order, and ``dense_weight = 0.5`` is plain RRF.

The fusion is done here rather than with Qdrant's own ``Fusion.Rrf(k, weights)``,
which both qdrant-edge and qdrant-client speak: a Qdrant server takes ``k`` from
v1.16 and ``weights`` from v1.17 (the compose file runs v1.15), the engines'
weighted formula ties the weights to ``k``, and their order among equal scores
is their own. Here, equal branch scores (to 5 decimals, so float32 and float64
engines agree) are ordered by point id, and equal fused scores by best rank,
then the closer to the question (dense cosine, to 5 decimals), then point id.
(Equal fused scores are common: with equal weights, ranks 1 and 3 tie with 3 and
1, and the id's order is arbitrary: reversing it moved pdf-qa's MRR by 0.03. By
closeness, at the defaults: pdf-qa MRR 0.683 -> 0.711, SciFact nDCG@10 0.834 ->
0.836; bench/RESULTS.md, "Issue 15: retrieval".)

The hits' ``score`` stays the dense cosine similarity, whatever the order: RRF
scores are all near ``1/k`` and say nothing about how close a chunk is, while
the generator's ``min_score`` expects a cosine.

Evidence score: each hit also carries ``relevance``, in [0, 1], an estimate of the
probability that the hit is evidence for the question (the page that answers it,
a judged-relevant abstract), from where it stands in the fused ranking and how
close it is::

    support   = dense_weight / dense rank + (1 - dense_weight) / sparse rank
    relevance = 1 / (1 + exp(-(A + B * cosine + C * support)))

``support`` is the fused score with ``k = 0`` (a ranking the hit is missing from
adds nothing): 1.0 for a hit first in both rankings, 0.5 for one first in one and
absent from the other, whatever ``k`` is. A dense-only search has
``support = 1 / rank``. ``A``, ``B`` and ``C`` (:data:`RELEVANCE`) are a logistic
regression fitted on the hits of SciFact's queries and pdf-qa's questions
(unanswerable ones included, every hit of theirs counting as not evidence),
chosen by cross-validation (``bench/retrieval_cv.py``; figures in
bench/RESULTS.md, "Issue 15: retrieval"). A question none of whose hits is
strong (low cosine, and dense and BM25 rankings that do not agree on any chunk)
gets a low best relevance: the generator may abstain below a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Decimals that branch scores are compared to: an engine working in float32 and one
# in float64 then order the same points the same way.
SCORE_DECIMALS = 5


@dataclass(frozen=True)
class Calibration:
    """``relevance = sigmoid(intercept + cosine * cosine + support * support)``."""

    intercept: float
    cosine: float
    support: float

    def __call__(self, cosine: float, support: float) -> float:
        """The evidence score of a hit with this cosine and fused-ranking support."""
        z = self.intercept + self.cosine * cosine + self.support * support
        # Clamped: exp overflows past ~709, and no hit needs more than 1e-16 of precision.
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


# Fitted by bench/retrieval_cv.py on the top 10 hits of the default settings' searches
# (5 folds: intercept -3.88 to -4.19, cosine 3.02 to 3.50, support 3.37 to 3.54; held-out
# log loss 0.424 against 0.473 for the cosine alone; bench/RESULTS.md, "Issue 15: retrieval").
RELEVANCE = Calibration(intercept=-4.136, cosine=3.404, support=3.492)


@dataclass(frozen=True)
class Fusion:
    """How a search merges its two rankings.

    ``dense_weight`` 1.0 is a dense-only search (no sparse search is run), 0.0 a
    BM25-only one. ``candidates``: how many points each ranking brings (at least
    the search's ``top_k``).
    """

    # RetrieverSettings' defaults (cross-validated, bench/retrieval_cv.py).
    dense_weight: float = 0.5
    k: int = 5
    candidates: int = 50

    def __post_init__(self) -> None:
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be within [0, 1], got {self.dense_weight}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {self.candidates}")

    @property
    def dense_only(self) -> bool:
        return self.dense_weight >= 1.0

    def limit(self, top_k: int) -> int:
        """Points each ranking brings for a search of ``top_k``."""
        return max(self.candidates, top_k)


DENSE_ONLY = Fusion(dense_weight=1.0)


@dataclass(frozen=True)
class Ranked:
    """A point of one ranking: its id (as a string) and its score there."""

    id: str
    score: float


def ordered(ranking: Sequence[Ranked]) -> list[str]:
    """A ranking's ids, best first, equal scores (to SCORE_DECIMALS) by id."""
    return [r.id for r in sorted(ranking, key=lambda r: (-round(r.score, SCORE_DECIMALS), r.id))]


def weighted_rrf(
    rankings: Sequence[Sequence[str]],
    weights: Sequence[float],
    k: int,
    closeness: Mapping[str, float] | None = None,
) -> list[tuple[str, float]]:
    """Ids by fused score ``sum(weight / (k + rank))``, best first, with that score.

    Rankings with a weight of 0 take no part. Equal scores: the best rank in any
    ranking first, then the higher ``closeness`` (to SCORE_DECIMALS; 0.0 when not
    given), then the id.
    """
    if len(rankings) != len(weights):
        raise ValueError(f"{len(rankings)} rankings but {len(weights)} weights")
    scores: dict[str, float] = {}
    best: dict[str, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight <= 0:
            continue
        for rank, point in enumerate(ranking, start=1):
            scores[point] = scores.get(point, 0.0) + weight / (k + rank)
            best[point] = min(best.get(point, rank), rank)
    near = closeness or {}
    return sorted(
        scores.items(),
        key=lambda item: (-item[1], best[item[0]], -round(near.get(item[0], 0.0), SCORE_DECIMALS), item[0]),
    )


@dataclass(frozen=True)
class Fused:
    """A point of the fused ranking: its id, dense cosine and evidence score."""

    id: str
    cosine: float
    relevance: float


def fuse(
    dense: Sequence[Ranked],
    sparse: Sequence[Ranked],
    fusion: Fusion,
    top_k: int,
    cosines: Mapping[str, float] | None = None,
    *,
    calibration: Calibration = RELEVANCE,
) -> list[Fused]:
    """The ``top_k`` fused points, each with its dense cosine and relevance.

    The cosine comes from ``dense``, else from ``cosines`` (the sparse candidates
    scored by the dense query), else 0.0. Relevance: see the module docstring.
    """
    weights = (fusion.dense_weight, 1.0 - fusion.dense_weight)
    rankings = (ordered(dense), ordered(sparse))
    known = {**(cosines or {}), **{r.id: r.score for r in dense}}
    fused = weighted_rrf(rankings, weights, fusion.k, known)[:top_k]
    # The fused score with k = 0: how strongly the two rankings put the point on top.
    support = dict(weighted_rrf(rankings, weights, 0))
    found = []
    for point, _ in fused:
        cosine = known.get(point, 0.0)
        found.append(Fused(point, cosine, calibration(cosine, support[point])))
    return found


def dense_relevance(cosines: Sequence[float], calibration: Calibration = RELEVANCE) -> list[float]:
    """The relevance of a dense-only ranking's hits (best first): support ``1 / rank``."""
    return [calibration(cosine, 1.0 / rank) for rank, cosine in enumerate(cosines, start=1)]
