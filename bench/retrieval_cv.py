"""Retrieval settings chosen by cross-validation over SciFact and pdf-qa together.

    .venv/bin/python -m bench.retrieval_cv [--folds 5] [--seed 15] [--quick] [--json FILE]

In process, no services. The two corpora are built as the services build them
(SciFact: ``bench/tune_retrieval.py``; pdf-qa: ``bench/pdfqa_eval.py``) and each
query's rankings are read from ``EdgeStore`` collections: the dense one once, the
BM25 one once per BM25 setting (tokenizer, k1, b, avgdl; sparse vectors made by
``Bm25`` from ``handler.sparse_text``). Every fusion setting (dense weight, RRF k,
candidates) then merges them with ``fusion.fuse``'s own functions, so the table of
figures (setting x query: nDCG@10 of a SciFact query over its top 100 chunks
reduced to documents, as tune_retrieval scores it; reciprocal rank of a pdf-qa
question's first hit on its page within the top 10, as score.py) costs one search
per query and BM25 setting. ``bench/cv.py`` picks a setting per fold on the other
folds (objective: mean of SciFact's mean nDCG@10 and pdf-qa's MRR@10) and reports
the held-out figures, their spread over folds, and the setting picked on all
queries: once per parameter (the others as today's defaults) and once for all of
them jointly. The evidence score's calibration (``fusion.RELEVANCE``) is fitted on
the top 10 hits of today's settings the same way, fold by fold, and printed with
the coefficients fitted on all queries (``bench/calibrate.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import cv, pdfqa_eval
from bench.tune_retrieval import SCIFACT, chunk_all, embed_cached, load
from libs.common.models import Chunk
from libs.common.settings import EmbedderSettings, RetrieverSettings
from services.embedder.backends import build_embedder
from services.retriever.edge_store import EdgeStore
from services.retriever.fusion import DENSE_ONLY, Fusion, Ranked, ordered, weighted_rrf
from services.retriever.handler import sparse_text
from services.retriever.sparse import Bm25
from services.retriever.store import point_id

DEPTH = 100  # points each ranking is read to (the largest candidates, and SciFact's top_k)
SCIFACT_TOP_K = 100
TOKENIZERS = ("words", "technical", "qdrant")
K1S, BS, AVGDLS = (0.9, 1.2, 1.6), (0.5, 0.75, 0.9), (50.0, 100.0, 200.0)
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
RRF_KS = (5, 10, 20, 60)
CANDIDATES = (20, 50, 100)

Sparse = tuple[str, float, float, float]  # tokenizer, k1, b, avgdl
Setting = tuple[Sparse, float, int, int]  # sparse, dense weight, k, candidates


@dataclass
class Dataset:
    """One corpus's chunks, vectors and queries, and how a query's hits are scored."""

    name: str
    chunks: list[Chunk]
    vectors: np.ndarray
    queries: dict[str, tuple[np.ndarray, str]]  # query id -> (vector, text)
    top_k: int

    def __post_init__(self) -> None:
        self.by_id = {point_id(c.document_id, c.chunk_index): c for c in self.chunks}


def scifact(embedder: Any) -> tuple[Dataset, dict[str, dict[str, int]]]:
    docs, texts, qrels = load()
    settings = EmbedderSettings()
    chunks = chunk_all(docs, embedder, settings.chunk_size_tokens, settings.chunk_overlap_tokens)
    label = f"chunks-{settings.chunk_size_tokens}-{settings.chunk_overlap_tokens}"
    vectors = embed_cached(embedder, pdfqa_eval.embedded_texts(chunks), label)
    qvectors = embed_cached(embedder, list(texts.values()), "queries")
    queries = {f"scifact:{q}": (v, t) for (q, t), v in zip(texts.items(), qvectors, strict=True)}
    return Dataset("scifact", chunks, vectors, queries, SCIFACT_TOP_K), qrels


def pdfqa(embedder: Any) -> tuple[Dataset, dict[str, pdfqa_eval.Question]]:
    corpus = pdfqa_eval.load_corpus(embedder)
    questions = {f"pdfqa:{q.id}": q for q in corpus.questions}
    queries = {
        qid: (v, q.question) for (qid, q), v in zip(questions.items(), corpus.question_vectors, strict=True)
    }
    return Dataset("pdfqa", corpus.chunks, corpus.vectors, queries, pdfqa_eval.TOP_K), questions


@dataclass
class Rankings:
    """A query's dense ranking (with cosines) and its BM25 ranking per BM25 setting, best first."""

    dense: list[Ranked]
    dense_ids: list[str]  # ordered(dense), once
    sparse: dict[Sparse, list[str]]
    # Every candidate's cosine (the stores break equal fused scores by it).
    cosines: dict[str, float] = field(default_factory=dict)


def read_rankings(store: EdgeStore, data: Dataset, sparse_settings: Sequence[Sparse]) -> dict[str, Rankings]:
    """Every query's rankings: one dense collection, one sparse-only collection per BM25 setting."""
    dense_name = f"{data.name}-dense"
    store.ensure_collection(dense_name, data.vectors.shape[1])
    for start in range(0, len(data.chunks), 512):
        store.upsert(dense_name, data.chunks[start : start + 512], data.vectors[start : start + 512])
    found = {}
    for qid, (vector, _) in data.queries.items():
        hits = store.search(dense_name, vector, DEPTH, fusion=DENSE_ONLY)
        dense = [Ranked(point_id(h.document_id, h.chunk_index), h.score) for h in hits]
        found[qid] = Rankings(dense, ordered(dense), {})
    store.delete_collection(dense_name)
    ones = np.ones((len(data.chunks), 1), np.float32)  # BM25 alone: a 1-d dense vector, the same for all
    texts = [sparse_text(c) for c in data.chunks]
    tokenized: dict[str, list[list[int]]] = {}  # a tokenizer's terms of every chunk, cut once
    for setting in sparse_settings:
        tokenizer, k1, b, avgdl = setting
        bm25 = Bm25(k1, b, avgdl, tokenizer)
        if tokenizer == "qdrant":
            vectors = [bm25.document(t) for t in texts]
        else:
            if tokenizer not in tokenized:
                tokenized[tokenizer] = [bm25.terms(t) for t in texts]
            vectors = [bm25.weights(terms) for terms in tokenized[tokenizer]]
        name = f"{data.name}-bm25"
        store.ensure_collection(name, 1)
        for start in range(0, len(data.chunks), 512):
            part = data.chunks[start : start + 512]
            store.upsert(name, part, ones[: len(part)], vectors[start : start + 512])
        for qid, (_, text) in data.queries.items():
            query = bm25.query(text)
            if not query:  # nothing to match: the search is dense only
                found[qid].sparse[setting] = []
                continue
            hits = store.search(
                name, [1.0], DEPTH, sparse=query, fusion=Fusion(dense_weight=0.0, candidates=DEPTH)
            )
            found[qid].sparse[setting] = [point_id(h.document_id, h.chunk_index) for h in hits]
        store.delete_collection(name)
        print(f"  {data.name}: BM25 {setting} read", flush=True)
    unit = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
    row = {pid: n for n, pid in enumerate(data.by_id)}
    for qid, (vector, _) in data.queries.items():
        r = found[qid]
        candidates = sorted({p for ids in r.sparse.values() for p in ids} - set(r.dense_ids))
        q = np.asarray(vector, np.float32) / np.linalg.norm(vector)
        near = unit[[row[p] for p in candidates]] @ q if candidates else []
        r.cosines = {
            **dict(zip(candidates, map(float, near), strict=True)),
            **{d.id: d.score for d in r.dense},
        }
    return found


def fused_ids(r: Rankings, sparse: Sparse, fusion: Fusion, top_k: int) -> list[str]:
    """The fused order as ``fusion.fuse`` makes it (its own ordered() and weighted_rrf())."""
    limit = fusion.limit(top_k)
    rankings = (r.dense_ids[:limit], r.sparse[sparse][:limit])
    weights = (fusion.dense_weight, 1.0 - fusion.dense_weight)
    return [p for p, _ in weighted_rrf(rankings, weights, fusion.k, r.cosines)[:top_k]]


def figures(
    data: Dataset, rankings: dict[str, Rankings], setting: Setting, judge: Any
) -> tuple[dict[str, float], dict[str, float]]:
    """Per query: the tuned figure (nDCG@10, or reciprocal rank) and hit@1."""
    sparse, weight, k, candidates = setting
    fusion = Fusion(dense_weight=weight, k=k, candidates=candidates)
    main, first = {}, {}
    for qid in data.queries:
        ids = fused_ids(rankings[qid], sparse, fusion, data.top_k)
        scored = judge(qid, [data.by_id[i] for i in ids])
        if scored is not None:  # an unanswerable question has no search figure
            main[qid], first[qid] = scored
    return main, first


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="today's BM25 setting and tokenizers only")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (SCIFACT / "corpus.jsonl").is_file() or not pdfqa_eval.available():
        print("needs ../shared/data/scifact-subset and the installed pdf-qa PDFs", file=sys.stderr)
        return 2
    from bench.calibrate import calibrate, judges

    embedder = build_embedder(EmbedderSettings())
    now = RetrieverSettings()
    today: Sparse = (now.bm25_tokenizer, now.bm25_k1, now.bm25_b, now.bm25_avgdl)
    sparse_grid = sparse_settings(today, quick=args.quick)
    sci, qrels = scifact(embedder)
    pdf, questions = pdfqa(embedder)
    with tempfile.TemporaryDirectory(prefix="retrieval-cv-") as tmp:
        store = EdgeStore(Path(tmp), dim_default=embedder.dim, optimize=False)
        try:
            ranks = {d.name: read_rankings(store, d, sparse_grid) for d in (sci, pdf)}
        finally:
            store.close()
    judge = judges(qrels, questions)
    today_setting: Setting = (today, now.hybrid_dense_weight, now.rrf_k, now.hybrid_candidates)
    settings = [today_setting] + [
        s for s in itertools.product(sparse_grid, WEIGHTS, RRF_KS, CANDIDATES) if s != today_setting
    ]
    table: dict[Hashable, dict[str, float]] = {}
    hit1: dict[Hashable, dict[str, float]] = {}
    for setting in settings:
        table[setting], hit1[setting] = {}, {}
        for d in (sci, pdf):
            main_f, first = figures(d, ranks[d.name], setting, judge[d.name])
            table[setting] |= main_f
            hit1[setting] |= first
    groups = {q: q.split(":")[0] for q in table[today_setting]}
    out: dict[str, Any] = {"all queries": {}}
    for name, setting in (("today", today_setting),):
        out["all queries"][name] = summary(setting, table, hit1, groups)
    print(
        "\n| parameter tuned (the rest as today) | settings | picked on all | folds agreeing | "
        "held out: SciFact nDCG@10 | pdf-qa MRR@10 | pdf-qa R@1 |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| none (today: {today_setting}) | 1 | | | "
        + held_out_cells([today_setting] * args.folds, table, hit1, groups, k=args.folds, seed=args.seed)
        + " |"
    )
    reports = {}
    for family, index in FAMILIES.items():
        chosen: dict[Hashable, dict[str, float]] = {
            s: table[s] for s in settings if family == "all jointly" or differs_only(s, today_setting, index)
        }
        report = cv.cross_validate(chosen, groups, args.folds, args.seed)
        reports[family] = report
        cells = held_out_cells(
            [f.chosen for f in report.folds], table, hit1, groups, k=args.folds, seed=args.seed
        )
        print(
            f"| {family} | {len(chosen)} | {label(report.final, index)} | {report.agreement} of "
            f"{args.folds} | {cells} |",
            flush=True,
        )
        out[family] = {"final": report.final, "folds": [f.chosen for f in report.folds], "held_out": cells}
    final = reports["all jointly"].final
    out["all queries"]["all jointly"] = summary(final, table, hit1, groups)
    for name, found in out["all queries"].items():
        print(f"all queries, {name}: {found}")
    out["calibration"] = calibrate(
        today_setting,
        ranks,
        datasets=(sci, pdf),
        questions=questions,
        qrels=qrels,
        folds=args.folds,
        seed=args.seed,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    return 0


# Which parameters each row of the report tunes: indexes into a Setting, (0, i) into its Sparse.
FAMILIES: dict[str, tuple[int, ...]] = {
    "BM25 tokenizer": (0, 0),
    "BM25 k1": (0, 1),
    "BM25 b": (0, 2),
    "BM25 avgdl": (0, 3),
    "dense weight": (1,),
    "RRF k": (2,),
    "candidates": (3,),
    "all jointly": (),
}


def sparse_settings(today: Sparse, *, quick: bool) -> list[Sparse]:
    """Today's BM25 setting, each tokenizer, and (unless quick) for each tokenizer every
    value of k1, b and avgdl with the other two as today."""
    found = [today] + [(t, *today[1:]) for t in TOKENIZERS if t != today[0]]
    if not quick:
        for tokenizer in TOKENIZERS:
            found += [(tokenizer, k1, today[2], today[3]) for k1 in K1S]
            found += [(tokenizer, today[1], b, today[3]) for b in BS]
            found += [(tokenizer, today[1], today[2], avgdl) for avgdl in AVGDLS]
    return list(dict.fromkeys(found))


def _part(setting: Setting, index: tuple[int, ...]) -> object:
    return setting[0][index[1]] if index[0] == 0 else setting[index[0]]


def differs_only(setting: Setting, today: Setting, index: tuple[int, ...]) -> bool:
    """``setting`` is ``today`` but (perhaps) for the parameter at ``index``."""
    others = [i for i in ((1,), (2,), (3,), (0, 0), (0, 1), (0, 2), (0, 3)) if i != index]
    return all(_part(setting, i) == _part(today, i) for i in others)


def label(setting: Any, index: tuple[int, ...]) -> str:
    return str(_part(setting, index)) if index else str(setting)


def held_out_cells(
    chosen: Sequence[Any], table: Any, hit1: Any, groups: dict[str, str], *, k: int, seed: int
) -> str:
    """Mean ± sd over folds of each held-out figure, fold n scored with ``chosen[n]``."""
    sci, mrr, first = [], [], []
    for held, setting in zip(cv.stratified_folds(groups, k, seed), chosen, strict=True):
        means = cv.group_means(table[setting], groups, sorted(held))
        sci.append(means["scifact"])
        mrr.append(means["pdfqa"])
        first.append(cv.group_means(hit1[setting], groups, sorted(held))["pdfqa"])
    return " | ".join(f"{statistics.fmean(v):.3f} ± {statistics.pstdev(v):.3f}" for v in (sci, mrr, first))


def summary(setting: Any, table: Any, hit1: Any, groups: dict[str, str]) -> dict[str, Any]:
    means = cv.group_means(table[setting], groups, sorted(groups))
    return {
        "setting": setting,
        "scifact_ndcg10": round(means["scifact"], 4),
        "pdfqa_mrr10": round(means["pdfqa"], 4),
        "pdfqa_r1": round(cv.group_means(hit1[setting], groups, sorted(groups))["pdfqa"], 4),
    }


if __name__ == "__main__":
    sys.exit(main())
