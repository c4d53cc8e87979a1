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
queries. The evidence score's calibration (``fusion.RELEVANCE``) is fitted on the
top 10 hits of that setting the same way, fold by fold (``--calibrate`` prints the
coefficients to paste).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
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
            vectors = [bm25.weights(found) for found in tokenized[tokenizer]]
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
    return found


def fused_ids(r: Rankings, sparse: Sparse, fusion: Fusion, top_k: int) -> list[str]:
    """The fused order as ``fusion.fuse`` makes it (its own ordered() and weighted_rrf())."""
    limit = fusion.limit(top_k)
    rankings = (r.dense_ids[:limit], r.sparse[sparse][:limit])
    weights = (fusion.dense_weight, 1.0 - fusion.dense_weight)
    return [p for p, _ in weighted_rrf(rankings, weights, fusion.k)[:top_k]]


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
    sparse_grid = [today] + [(t, 1.2, 0.75, 100.0) for t in TOKENIZERS if t != today[0]]
    if not args.quick:
        sparse_grid += [s for s in itertools.product(TOKENIZERS, K1S, BS, AVGDLS) if s not in sparse_grid]
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
    report = cv.cross_validate(table, groups, args.folds, args.seed)
    out = print_report(report, table, hit1, groups, today=today_setting, seed=args.seed)
    out["calibration"] = calibrate(
        report.final,
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


def print_report(
    report: cv.Report,
    table: dict[Hashable, dict[str, float]],
    hit1: dict[Hashable, dict[str, float]],
    groups: dict[str, str],
    *,
    today: Setting,
    seed: int,
) -> dict[str, Any]:
    folds = cv.stratified_folds(groups, len(report.folds), seed)
    print(f"\n{len(table)} settings, {len(groups)} queries, {len(report.folds)} folds")
    print(
        "\n| fold | chosen (tokenizer, k1, b, avgdl), weight, k, candidates | SciFact nDCG@10 | pdf-qa MRR |"
    )
    print("|---|---|---|---|")
    for n, fold in enumerate(report.folds, 1):
        print(f"| {n} | {fold.chosen} | {fold.held_out['scifact']:.4f} | {fold.held_out['pdfqa']:.4f} |")
    out: dict[str, Any] = {"final": report.final, "agreement": report.agreement, "folds": []}
    print(
        f"\npicked on all queries: {report.final} (picked by {report.agreement} of {len(report.folds)} folds)"
    )
    print("\n| held out (mean ± sd over folds) | SciFact nDCG@10 | pdf-qa MRR@10 | pdf-qa R@1 |")
    print("|---|---|---|---|")
    for name, fixed in (("today's settings", True), ("chosen per fold", False)):
        sci, mrr, r1 = [], [], []
        for held, fold in zip(folds, report.folds, strict=True):
            setting = today if fixed else fold.chosen
            means = cv.group_means(table[setting], groups, sorted(held))
            sci.append(means["scifact"])
            mrr.append(means["pdfqa"])
            r1.append(cv.group_means(hit1[setting], groups, sorted(held))["pdfqa"])
        cells = " | ".join(f"{statistics.fmean(v):.4f} ± {statistics.pstdev(v):.4f}" for v in (sci, mrr, r1))
        print(f"| {name} | {cells} |")
        out[name] = {"scifact": sci, "pdfqa_mrr": mrr, "pdfqa_r1": r1}
    for name, setting in (("today", today), ("final", report.final)):
        means = cv.group_means(table[setting], groups, sorted(groups))
        first = cv.group_means(hit1[setting], groups, sorted(groups))["pdfqa"]
        print(
            f"all queries, {name} {setting}: SciFact {means['scifact']:.4f}, "
            f"pdf-qa MRR {means['pdfqa']:.4f}, R@1 {first:.4f}"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
