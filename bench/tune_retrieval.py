"""Tuning hybrid retrieval on the SciFact subset: chunk sizes, fusion weight, RRF k, BM25 avgdl.

    .venv/bin/python -m bench.tune_retrieval [--chunking 200:32,128:24] [--json FILE]

In process, no services: every abstract of ``../shared/data/scifact-subset`` is
cut by the embedder's own chunker (``services/embedder/chunking.py``, called as
``EmbedHandler._chunk`` calls it: sized in the model's tokens), embedded by
``build_embedder(EmbedderSettings())`` (whatever the default backend is), and
indexed into an ``EdgeStore`` with the BM25 sparse vectors the retriever makes
(``handler.sparse_text``, ``Bm25``). The corpus has no titles (its ``title``
fields are empty); a title would go first, on its own line, as the first line of
an uploaded text file does.

Each judged query (``qrels/*.tsv``) searches the top 100 chunks; chunks are
reduced to documents (a document ranks where its best chunk does) and the first
10 are scored: nDCG@10 and Recall@10, means over the queries. Rows: dense only,
BM25 only (the sparse vectors alone), and hybrid at several dense weights and
RRF k; then BM25's ``avgdl`` on the default chunking.

Embeddings are cached per model and chunking under ``.documind/bench-cache/``
(git-ignored), keyed by a hash of the texts, so a second run only searches.
The same queries pick and score here (no held-out split). The defaults are now
chosen by cross-validation over these queries and pdf-qa's questions together:
``bench/retrieval_cv.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from libs.common.models import Chunk
from libs.common.settings import EmbedderSettings, RetrieverSettings
from services.embedder.backends import Embedder, build_embedder
from services.embedder.chunking import chunk_pages
from services.embedder.parsing import Page
from services.embedder.structure import embedded_text
from services.retriever.edge_store import EdgeStore
from services.retriever.fusion import DENSE_ONLY, Fusion
from services.retriever.handler import sparse_text
from services.retriever.sparse import Bm25, terms

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact-subset"
CACHE = ROOT / ".documind" / "bench-cache" / "tune_retrieval"
K = 10
SEARCH_CHUNKS = 100
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
RRF_KS = (10, 30, 60)
AVGDLS = (50.0, 100.0, 200.0)


def load() -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """Documents (title + text), the judged queries, and their relevance judgements."""
    docs = {}
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            title = row.get("title", "").strip()
            docs[str(row["_id"])] = f"{title}\n\n{row['text']}" if title else row["text"]
    qrels: dict[str, dict[str, int]] = {}
    for path in sorted((SCIFACT / "qrels").glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            query, doc, score = line.split("\t")
            if int(score) > 0:
                qrels.setdefault(query, {})[doc] = int(score)
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as fh:
        queries = {str(r["_id"]): r["text"] for r in map(json.loads, fh) if str(r["_id"]) in qrels}
    return docs, queries, {q: rel for q, rel in qrels.items() if q in queries}


def chunk_all(docs: dict[str, str], embedder: Embedder, size: int, overlap: int) -> list[Chunk]:
    """Every document's chunks, as the embedder cuts an uploaded text file."""
    count_tokens = getattr(embedder, "count_tokens", None)
    max_tokens = getattr(embedder, "max_text_tokens", None)
    chunks: list[Chunk] = []
    for doc_id, text in docs.items():
        pages = [Page(number=1, text=text)]
        if callable(count_tokens) and isinstance(max_tokens, int):
            size_tokens = min(size, max_tokens)
            chunks += chunk_pages(
                pages,
                doc_id,
                f"{doc_id}.txt",
                size_words=size_tokens,
                overlap_words=0,
                count_tokens=count_tokens,
                max_tokens=max_tokens,
                size_tokens=size_tokens,
                overlap_tokens=overlap,
            )
        else:  # a backend without a tokenizer: sized in words, as the embedder does
            chunks += chunk_pages(pages, doc_id, f"{doc_id}.txt", size, overlap)
    return chunks


def embed_cached(embedder: Embedder, texts: Sequence[str], label: str) -> np.ndarray:
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
    path = CACHE / embedder.name.replace("/", "_") / f"{label}-{digest}.npy"
    if path.is_file():
        cached: np.ndarray = np.load(path)
        return cached
    started = time.perf_counter()
    parts = [embedder.embed(texts[i : i + 64]) for i in range(0, len(texts), 64)]
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)
    print(f"  embedded {len(texts)} {label} texts in {time.perf_counter() - started:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def ndcg(ranked: Sequence[str], rel: dict[str, int]) -> float:
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:K]))
    ideal = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(rel.values(), reverse=True)[:K]))
    return dcg / ideal if ideal else 0.0


def recall(ranked: Sequence[str], rel: dict[str, int]) -> float:
    return len(set(ranked[:K]) & set(rel)) / len(rel)


class Index:
    """One chunking's chunks in an EdgeStore collection, searched by every judged query."""

    def __init__(self, store: EdgeStore, name: str, chunks: list[Chunk], vectors: np.ndarray) -> None:
        self.store, self.name, self.chunks, self.vectors = store, name, chunks, vectors

    def load(self, bm25: Bm25) -> str:
        collection = f"{self.name}-{bm25.avgdl:g}".replace(".", "_")
        self.store.ensure_collection(collection, self.vectors.shape[1])
        for start in range(0, len(self.chunks), 256):
            part = self.chunks[start : start + 256]
            sparse = [bm25.document(sparse_text(c)) for c in part]
            self.store.upsert(collection, part, self.vectors[start : start + 256], sparse)
        self.store.optimize(collection)
        return collection

    def score(
        self,
        collection: str,
        queries: dict[str, tuple[np.ndarray, str]],
        qrels: dict[str, dict[str, int]],
        fusion: Fusion,
        bm25: Bm25,
    ) -> tuple[float, float]:
        nd, rc = [], []
        for qid, (vector, text) in queries.items():
            hits = self.store.search(
                collection, vector, SEARCH_CHUNKS, sparse=bm25.query(text), fusion=fusion
            )
            ranked = list(dict.fromkeys(h.document_id for h in hits))
            nd.append(ndcg(ranked, qrels[qid]))
            rc.append(recall(ranked, qrels[qid]))
        return statistics.fmean(nd), statistics.fmean(rc)


def row(name: str, figures: tuple[float, float]) -> str:
    return f"| {name} | {figures[0]:.4f} | {figures[1]:.4f} |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--chunking",
        default="200:32,128:24,96:16,254:32",
        help="chunk_size_tokens:chunk_overlap_tokens pairs; the first is the one the grids run on",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (SCIFACT / "corpus.jsonl").is_file():
        print(f"no SciFact subset at {SCIFACT}", file=sys.stderr)
        return 2
    configs = [(int(a), int(b)) for a, b in (pair.split(":") for pair in args.chunking.split(","))]

    docs, query_texts, qrels = load()
    embedder = build_embedder(EmbedderSettings())
    defaults = RetrieverSettings()
    default_bm25 = Bm25(defaults.bm25_k1, defaults.bm25_b, defaults.bm25_avgdl)
    print(f"{len(docs)} abstracts, {len(qrels)} judged queries; embedder {embedder.name}")
    vectors = embed_cached(embedder, list(query_texts.values()), "queries")
    queries = {q: (v, t) for (q, t), v in zip(query_texts.items(), vectors, strict=True)}
    figures: dict[str, Any] = {"embedder": embedder.name, "queries": len(qrels), "chunkings": {}, "grid": {}}

    with tempfile.TemporaryDirectory(prefix="tune-retrieval-") as tmp:
        store = EdgeStore(Path(tmp), dim_default=embedder.dim, optimize=False)
        try:
            indexes = {}
            for size, overlap in configs:
                chunks = chunk_all(docs, embedder, size, overlap)
                label = f"chunks-{size}-{overlap}"
                texts = [embedded_text(c.text, c.context) for c in chunks]  # as the embedder embeds them
                index = Index(store, label, chunks, embed_cached(embedder, texts, label))
                indexes[(size, overlap)] = index
                collection = index.load(default_bm25)
                length = statistics.fmean(len(terms(sparse_text(c))) for c in chunks)
                print(f"\n### chunk_size_tokens {size}, overlap {overlap}: {len(chunks)} chunks, ", end="")
                print(f"{length:.0f} BM25 terms each")
                print("\n| search | nDCG@10 | Recall@10 |\n|---|---|---|")
                rows = {"dense only": DENSE_ONLY, "BM25 only": Fusion(dense_weight=0.0)}
                rows |= {f"hybrid, dense weight {w}": Fusion(dense_weight=w) for w in (0.3, 0.5, 0.7)}
                found = {}
                for name, fusion in rows.items():
                    found[name] = index.score(collection, queries, qrels, fusion, default_bm25)
                    print(row(name, found[name]), flush=True)
                figures["chunkings"][f"{size}:{overlap}"] = {"chunks": len(chunks), "terms": length, **found}

            index = indexes[configs[0]]
            collection = index.load(default_bm25)
            print(f"\n### chunking {configs[0][0]}:{configs[0][1]}: nDCG@10 by dense weight (rows) and RRF k")
            print("\n| dense weight | " + " | ".join(f"k={k}" for k in RRF_KS) + " |")
            print("|---|" + "---|" * len(RRF_KS))
            for w in WEIGHTS:
                cells = []
                for k in RRF_KS:
                    nd, rc = index.score(
                        collection, queries, qrels, Fusion(dense_weight=w, k=k), default_bm25
                    )
                    figures["grid"][f"{w}:{k}"] = (nd, rc)
                    cells.append(f"{nd:.4f} / {rc:.4f}")
                print(f"| {w} | " + " | ".join(cells) + " |", flush=True)

            print(f"\n### chunking {configs[0][0]}:{configs[0][1]}: BM25 avgdl (nDCG@10 / Recall@10)")
            print("\n| avgdl | BM25 only | hybrid (defaults) |\n|---|---|---|")
            hybrid = Fusion(dense_weight=defaults.hybrid_dense_weight, k=defaults.rrf_k)
            figures["avgdl"] = {}
            for avgdl in AVGDLS:
                bm25 = Bm25(defaults.bm25_k1, defaults.bm25_b, avgdl)
                collection = index.load(bm25)
                alone = index.score(collection, queries, qrels, Fusion(dense_weight=0.0), bm25)
                both = index.score(collection, queries, qrels, hybrid, bm25)
                figures["avgdl"][str(avgdl)] = {"bm25": alone, "hybrid": both}
                print(f"| {avgdl:g} | {alone[0]:.4f} / {alone[1]:.4f} | {both[0]:.4f} / {both[1]:.4f} |")
        finally:
            store.close()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
