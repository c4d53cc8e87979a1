"""Benchmark 4: nDCG@10 and Recall@10 of ``/v1/search`` on SciFact, next to BM25 and dense-only.

    .venv/bin/python -m bench.quality [--quick] [--docs N] [--json FILE]

Every judged query (188 of the full subset; those whose relevant abstracts are
all in a smaller one) goes to ``POST /v1/search`` with ``top_k`` at the
gateway's ``max_top_k``; the chunks that come back are reduced to documents,
each keeping its best-ranked chunk, and the first 10 documents are scored
against the qrels. Whatever ``/v1/search`` does (dense, hybrid) is measured.

Baselines on the same documents and queries, in the same run:

* BM25: ``bm25s`` (Lucene's BM25, k1 1.5, b 0.75) with English stopwords and
  the Snowball English stemmer (PyStemmer);
* dense only: the raw all-MiniLM-L6-v2 (sentence-transformers) embedding of
  each title + abstract (truncated at the model's 256 tokens), exact cosine.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.client import Http
from bench.common import markdown_table
from bench.stack import Corpus, Session, add_common_args, encode, run_one
from libs.common.settings import GatewaySettings

K = 10
STACK = "DocuMind /v1/search"
BM25 = "BM25 (bm25s, English stopwords, Snowball stemmer)"
DENSE = "dense only (raw all-MiniLM-L6-v2, exact cosine)"


def ndcg(ranked: Sequence[str], rel: dict[str, int], k: int = K) -> float:
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(rel.values(), reverse=True)[:k]))
    return dcg / ideal if ideal else 0.0


def recall(ranked: Sequence[str], rel: dict[str, int], k: int = K) -> float:
    return len(set(ranked[:k]) & set(rel)) / len(rel) if rel else 0.0


def scores(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    return {
        f"ndcg@{K}": round(statistics.fmean(ndcg(runs[q], qrels[q]) for q in qrels), 4),
        f"recall@{K}": round(statistics.fmean(recall(runs[q], qrels[q]) for q in qrels), 4),
    }


async def search_all(
    port: int, queries: dict[str, str], collection: str, top_k: int, clients: int = 4
) -> tuple[dict[str, list[str]], list[int]]:
    """Each query's documents, best first (chunks reduced to their documents), and how many
    distinct documents each query's chunks held."""
    ranked: dict[str, list[str]] = {}
    distinct: list[int] = []
    todo = iter(queries.items())

    async def client() -> None:
        conn = await Http.connect(port)
        try:
            for qid, text in todo:
                body = {"query": text, "collection": collection, "top_k": top_k}
                status, accepted = await conn.call("POST", "/v1/search", body)
                if status != 202:
                    raise RuntimeError(f"POST /v1/search answered {status}: {accepted}")
                job = await conn.wait_job(accepted["job_id"], 60.0)
                if job["status"] != "done":
                    raise RuntimeError(f"search {qid} ended {job['status']}: {job}")
                # The API's order is the ranking (hybrid: fused); a hit's score is only its cosine.
                hits = job["result"]["hits"]
                docs = list(dict.fromkeys(Corpus.doc_id(h["filename"]) for h in hits))
                ranked[qid] = docs
                distinct.append(len(docs))
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return ranked, distinct


def bm25(corpus: Corpus) -> dict[str, list[str]]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = list(corpus.docs)
    tokens = bm25s.tokenize(list(corpus.docs.values()), stopwords="en", stemmer=stemmer, show_progress=False)
    index = bm25s.BM25()
    index.index(tokens, show_progress=False)
    qids = list(corpus.queries)
    query_tokens = bm25s.tokenize(
        [corpus.queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False
    )
    found, _scores = index.retrieve(query_tokens, k=min(K, len(ids)), show_progress=False)
    return {q: [ids[int(i)] for i in row] for q, row in zip(qids, found, strict=True)}


def dense(session: Session) -> dict[str, list[str]]:
    corpus = session.corpus
    ids = list(corpus.docs)
    vectors = session.doc_vectors
    if vectors is None or len(vectors) != len(ids):
        vectors = session.doc_vectors = encode(session.model, list(corpus.docs.values()))
    qids = list(corpus.queries)
    queries = encode(session.model, [corpus.queries[q] for q in qids])
    sims = queries @ vectors.T
    top = np.argsort(-sims, axis=1)[:, :K]
    return {q: [ids[int(i)] for i in row] for q, row in zip(qids, top, strict=True)}


def measure(session: Session) -> dict[str, Any]:
    session.ensure_ingested()
    corpus = session.corpus
    top_k = GatewaySettings().max_top_k
    print(f"  {len(corpus.queries)} judged queries through /v1/search (top_k {top_k}) ...", flush=True)
    ranked, distinct = asyncio.run(search_all(session.stack.port, corpus.queries, session.collection, top_k))
    rows = {STACK: scores(ranked, corpus.qrels)}
    print(f"  {STACK}: {rows[STACK]}", flush=True)
    rows[BM25] = scores(bm25(corpus), corpus.qrels)
    rows[DENSE] = scores(dense(session), corpus.qrels)
    stack = rows[STACK][f"ndcg@{K}"]
    return {
        "queries": len(corpus.queries),
        "documents": len(corpus.docs),
        "top_k": top_k,
        "min_documents_per_query": min(distinct),
        "rows": rows,
        "ndcg_vs_bm25": round(stack / rows[BM25][f"ndcg@{K}"], 3),
        "ndcg_vs_dense": round(stack / rows[DENSE][f"ndcg@{K}"], 3),
    }


def table(fig: dict[str, Any]) -> str:
    rows = [[name, f"{r[f'ndcg@{K}']:.3f}", f"{r[f'recall@{K}']:.3f}"] for name, r in fig["rows"].items()]
    return "\n".join(
        [
            markdown_table(["", f"nDCG@{K}", f"Recall@{K}"], rows),
            "",
            f"DocuMind's nDCG@{K} is **{fig['ndcg_vs_bm25']:.2f}x** BM25's and "
            f"**{fig['ndcg_vs_dense']:.2f}x** dense-only's; {fig['queries']} judged queries over "
            f"{fig['documents']:,} documents; top_k {fig['top_k']} chunks gave at least "
            f"{fig['min_documents_per_query']} distinct documents a query.",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=(__doc__ or "").splitlines()[0])
    add_common_args(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_one(args, "bench.quality", "quality", measure, table)


if __name__ == "__main__":
    sys.exit(main())
