"""Scoring rankings per query, and fitting the evidence score (``fusion.RELEVANCE``) by folds.

Used by ``bench/retrieval_cv.py``. A hit is evidence when it is on a judged-relevant
SciFact abstract, or on a pdf-qa question's PDF and one of its acceptable pages; no
hit of an unanswerable question is. Each query set weighs the same in the fit.
Held out, per fold: log loss and Brier score of the fitted model against one on
the cosine alone (the evidence score ``min_score`` stood for); pooled over the
folds (every query scored by a model that did not see it): how well the best
relevance of a question separates pdf-qa's answerable questions from its
unanswerable ones (AUC), and the best relevance of each kind.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from bench import cv
from bench.pdfqa_eval import Question
from bench.tune_retrieval import ndcg
from libs.common.models import Chunk
from services.retriever.fusion import Fusion, ordered, weighted_rrf

Judge = Callable[[str, list[Chunk]], tuple[float, float] | None]


def judges(qrels: Mapping[str, dict[str, int]], questions: Mapping[str, Question]) -> dict[str, Judge]:
    """Per query set: (the tuned figure, hit@1) of a query's hits; None for a query not scored."""

    def scifact(qid: str, hits: list[Chunk]) -> tuple[float, float]:
        rel = qrels[qid.split(":", 1)[1]]
        docs = list(dict.fromkeys(c.document_id for c in hits))
        return ndcg(docs, rel), float(bool(docs) and docs[0] in rel)

    def pdfqa(qid: str, hits: list[Chunk]) -> tuple[float, float] | None:
        q = questions[qid]
        if not q.answerable:
            return None
        rank = next((n for n, c in enumerate(hits[:10], 1) if is_evidence(c, q)), None)
        return (1.0 / rank if rank else 0.0), float(rank == 1)

    return {"scifact": scifact, "pdfqa": pdfqa}


def is_evidence(chunk: Chunk, q: Question) -> bool:
    return q.answerable and chunk.filename.casefold() == q.filename.casefold() and chunk.page in q.pages


def hit_rows(
    setting: Any,
    ranks: Mapping[str, Mapping[str, Any]],
    *,
    datasets: Sequence[Any],
    questions: Mapping[str, Question],
    qrels: Mapping[str, dict[str, int]],
    top: int = 10,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per hit of each query's top ``top``: its query, features (cosine, support), label."""
    sparse, weight, k, candidates = setting
    fusion = Fusion(dense_weight=weight, k=k, candidates=candidates)
    owners, features, labels = [], [], []
    for data in datasets:
        unit = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
        row_of = {pid: n for n, pid in enumerate(data.by_id)}
        for qid, (vector, _) in data.queries.items():
            r = ranks[data.name][qid]
            limit = fusion.limit(top)
            rankings = (ordered(r.dense[:limit]), r.sparse[sparse][:limit])
            weights = (weight, 1.0 - weight)
            support = dict(weighted_rrf(rankings, weights, 0))
            q = np.asarray(vector, np.float32)
            q = q / np.linalg.norm(q)
            for pid, _ in weighted_rrf(rankings, weights, k, r.cosines)[:top]:
                chunk = data.by_id[pid]
                owners.append(qid)
                features.append((float(unit[row_of[pid]] @ q), support[pid]))
                if data.name == "scifact":
                    labels.append(float(chunk.document_id in qrels[qid.split(":", 1)[1]]))
                else:
                    labels.append(float(is_evidence(chunk, questions[qid])))
    return owners, np.asarray(features), np.asarray(labels)


def calibrate(
    setting: Hashable,
    ranks: Mapping[str, Mapping[str, Any]],
    *,
    datasets: Sequence[Any],
    questions: Mapping[str, Question],
    qrels: Mapping[str, dict[str, int]],
    folds: int,
    seed: int,
) -> dict[str, Any]:
    owners, x, y = hit_rows(setting, ranks, datasets=datasets, questions=questions, qrels=qrels)
    every = {q: q.split(":")[0] for q in dict.fromkeys(owners)}  # unanswerable questions too
    sets = np.array([every[q] for q in owners])
    weights = np.zeros(len(owners))
    for name in set(sets):
        weights[sets == name] = 1.0 / np.sum(sets == name)
    pooled = np.zeros(len(owners))
    rows: list[dict[str, float]] = []
    for held in cv.stratified_folds(every, folds, seed):
        test = np.array([q in held for q in owners])
        train = ~test
        full = cv.fit_logistic(x[train], y[train], weights[train])
        cosine = cv.fit_logistic(x[train][:, :1], y[train], weights[train])
        p = _predict(full, x[test])
        pooled[test] = p
        rows.append(
            {
                "log_loss": cv.log_loss(p, y[test], weights[test]),
                "log_loss_cosine_only": cv.log_loss(_predict(cosine, x[test][:, :1]), y[test], weights[test]),
                "brier": cv.brier(p, y[test], weights[test]),
                "intercept": full[0],
                "cosine": full[1],
                "support": full[2],
            }
        )
    final = cv.fit_logistic(x, y, weights)
    best: dict[str, float] = {}
    for q, value in zip(owners, pooled, strict=True):
        best[q] = max(best.get(q, 0.0), float(value))
    answerable = [best[q] for q in best if q.startswith("pdfqa:") and questions[q].answerable]
    unanswerable = [best[q] for q in best if q.startswith("pdfqa:") and not questions[q].answerable]
    print("\n| fold | log loss | (cosine alone) | Brier | intercept | cosine | support |")
    print("|---|---|---|---|---|---|---|")
    for n, r in enumerate(rows, 1):
        print(
            f"| {n} | {r['log_loss']:.4f} | {r['log_loss_cosine_only']:.4f} | {r['brier']:.4f} | "
            f"{r['intercept']:.2f} | {r['cosine']:.2f} | {r['support']:.2f} |"
        )
    for key in ("log_loss", "log_loss_cosine_only", "brier"):
        values = [r[key] for r in rows]
        print(f"held-out {key}: {statistics.fmean(values):.4f} ± {statistics.pstdev(values):.4f}")
    print(
        f"pdf-qa best relevance held out: answerable median {statistics.median(answerable):.3f} "
        f"(min {min(answerable):.3f}), unanswerable {sorted(round(u, 3) for u in unanswerable)}; "
        f"AUC {cv.auc(answerable, unanswerable):.3f}"
    )
    print(
        f"fitted on all: RELEVANCE = Calibration(intercept={final[0]:.3f}, cosine={final[1]:.3f}, "
        f"support={final[2]:.3f})"
    )
    return {
        "folds": rows,
        "final": final.tolist(),
        "best_answerable": answerable,
        "best_unanswerable": unanswerable,
    }


def _predict(beta: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = beta[0] + x @ beta[1:]
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -60, 60))))
