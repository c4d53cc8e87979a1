"""K-fold cross-validation of retrieval settings over several query sets at once.

A tuning run first scores every candidate setting on every query (a table:
setting -> query id -> figure, e.g. nDCG@10 for a SciFact query, reciprocal rank
for a pdf-qa question); :func:`cross_validate` then, for each of ``k`` folds, picks
the setting with the best objective on the other folds and scores that choice on
the held-out fold. The held-out means, and their spread over the folds, estimate
what the selection procedure gives on queries it never saw; the setting finally
recommended is the one picked on all queries.

The objective is the mean over query sets of each set's mean figure, so that 188
SciFact queries do not drown 36 pdf-qa questions. Folds are stratified: each holds
about ``1/k`` of every set, drawn with a fixed seed. Ties between settings go to
the one listed first (list the current defaults first).

:func:`fit_logistic` fits the evidence-score calibration (fusion.py) the same way:
per fold on the other folds, scored on the held-out one.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def stratified_folds(groups: Mapping[str, str], k: int, seed: int = 15) -> list[frozenset[str]]:
    """``k`` disjoint sets of query ids covering ``groups`` (query id -> its set's name),
    each holding about ``1/k`` of every set."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    rng = random.Random(seed)
    folds: list[set[str]] = [set() for _ in range(k)]
    offset = 0
    for name in sorted(set(groups.values())):
        ids = sorted(q for q, g in groups.items() if g == name)
        rng.shuffle(ids)
        for i, query in enumerate(ids):
            folds[(i + offset) % k].add(query)
        offset += len(ids)  # the next set's remainder goes to other folds
    return [frozenset(f) for f in folds]


def objective(figures: Mapping[str, float], groups: Mapping[str, str], queries: Sequence[str]) -> float:
    """Mean over query sets of each set's mean figure, over ``queries``."""
    by_group: dict[str, list[float]] = {}
    for query in queries:
        by_group.setdefault(groups[query], []).append(figures[query])
    return statistics.fmean(statistics.fmean(v) for v in by_group.values())


def group_means(
    figures: Mapping[str, float], groups: Mapping[str, str], queries: Sequence[str]
) -> dict[str, float]:
    """Each query set's mean figure over ``queries``."""
    by_group: dict[str, list[float]] = {}
    for query in queries:
        by_group.setdefault(groups[query], []).append(figures[query])
    return {g: statistics.fmean(v) for g, v in sorted(by_group.items())}


@dataclass(frozen=True)
class Fold:
    chosen: Hashable
    train: float
    held_out: dict[str, float]


@dataclass(frozen=True)
class Report:
    """Per fold: the setting picked on the other folds and its held-out figures per set."""

    folds: list[Fold]
    # The setting picked on all queries, and how many folds picked it too.
    final: Hashable

    def held_out(self, group: str) -> tuple[float, float]:
        """Mean and standard deviation over folds of a set's held-out figure."""
        values = [f.held_out[group] for f in self.folds]
        return statistics.fmean(values), statistics.pstdev(values)

    @property
    def agreement(self) -> int:
        return sum(f.chosen == self.final for f in self.folds)


def cross_validate(
    table: Mapping[Hashable, Mapping[str, float]],
    groups: Mapping[str, str],
    k: int = 5,
    seed: int = 15,
) -> Report:
    """Pick a setting of ``table`` on each fold's training queries; score it held out."""
    if not table:
        raise ValueError("no settings to choose from")
    folds = stratified_folds(groups, k, seed)
    everything = sorted(groups)
    found = []
    for held in folds:
        train = [q for q in everything if q not in held]
        chosen = best(table, groups, train)
        found.append(
            Fold(
                chosen,
                objective(table[chosen], groups, train),
                group_means(table[chosen], groups, sorted(held)),
            )
        )
    return Report(found, best(table, groups, everything))


def best(
    table: Mapping[Hashable, Mapping[str, float]], groups: Mapping[str, str], queries: Sequence[str]
) -> Hashable:
    """The setting with the highest objective over ``queries`` (the first listed on a tie)."""
    scored = [
        (objective(figures, groups, queries), n, setting)
        for n, (setting, figures) in enumerate(table.items())
    ]
    return max(scored, key=lambda s: (round(s[0], 9), -s[1]))[2]


# ------------------------------------------------------------------ calibration


def fit_logistic(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, l2: float = 1e-3, steps: int = 50
) -> np.ndarray:
    """Coefficients ``[intercept, *per feature]`` of a weighted logistic regression
    (Newton's method; a small L2 penalty on the features keeps separable data finite)."""
    rows = x.shape[0]
    design = np.hstack([np.ones((rows, 1)), x])
    w = np.ones(rows) if weights is None else weights
    beta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ beta, -60, 60)))
        gradient = design.T @ (w * (p - y)) + penalty * beta
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.max(np.abs(step))) < 1e-9:
            break
    return beta


def log_loss(p: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.average(losses, weights=weights))


def brier(p: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    return float(np.average((p - y) ** 2, weights=weights))


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Probability that a positive scores above a negative (ties count half); nan if a side is empty."""
    if not positive or not negative:
        return math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))
