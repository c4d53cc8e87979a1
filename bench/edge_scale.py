"""The embedded Qdrant (EdgeStore) at 100k+ chunks: load, search, optimise.

    .venv/bin/python -m bench.edge_scale [--chunks 100000] [--queries 200] [--no-policy]
    .venv/bin/python -m bench.edge_scale --during-load [--chunks 100000]

Data: clustered random 384-d unit vectors standing in for embeddings: 2,000
random unit "topics", each document (8 chunks) on one of them, each chunk its
topic plus Gaussian noise (cosine about 0.75 to it); a question's vector is a
random document's topic plus the same noise. (Plain random vectors have no
neighbours worth the name: HNSW recall on them says nothing.) Each chunk also
gets a BM25 sparse vector of ~120 words of real text: windows cut at random
offsets from the scifact abstracts (``../shared/data/scifact-subset``), or words
drawn from a Zipf distribution over a made-up vocabulary where that is absent;
questions are scifact claims (or Zipf words) for the sparse side.

1. ``raw``: an EdgeStore that never optimises by itself takes every chunk in
   writes of 32 (one index message's part, ``ingest_part_chunks``); searches are
   timed on the unoptimised shard, then one ``optimize()``, then again; then the
   store is reopened with each ``--ef`` (the search's HNSW candidates) for dense
   latency and recall.
2. ``policy``: a store with the default policy but no pause needed
   (``edge_optimize_idle_s`` 0) takes the same chunks, then the rest is optimised
   in-process once.
3. ``--during-load`` (alone): searches during a bulk load. A store with the default
   policy (optimise in a child process once ``edge_optimize_points`` came in and
   writes have paused ``edge_optimize_idle_s``) takes every chunk in writes of 32
   while another thread searches (dense, hybrid, each with and without the filter,
   one every ``SEARCH_EVERY_S``); then the searches go on until the background
   optimisation has landed. p50/p99/max of the searches in each phase.

Searches (top 10): dense and hybrid (dense_weight 0.5), each also excluding 200
documents (the deleted/pending filter), ``--queries`` times each; p50/p99 in ms.
Dense recall@10 is against exact cosine top 10 (numpy) over the same points.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from libs.common.models import Chunk
from services.retriever.edge_maintenance import OPTIMIZE_POINTS
from services.retriever.edge_store import EdgeStore
from services.retriever.fusion import Fusion
from services.retriever.sparse import Bm25, SparseVector

DIM = 384
CHUNKS_PER_DOC = 8
TOPICS = 2000
# Per-dimension noise: a chunk's cosine to its topic is about 1 / sqrt(1 + 384 * NOISE**2) = 0.75.
NOISE = 0.045
WRITE = 32
WORDS_PER_CHUNK = 120
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact-subset"
COLLECTION = "bench"
# The pace of the searches during a bulk load (a busy chat: 20 questions a second).
SEARCH_EVERY_S = 0.05


def texts(n: int, rng: np.random.Generator) -> tuple[list[str], list[str], str]:
    """n chunk texts, some questions, and where they came from."""
    corpus = SCIFACT / "corpus.jsonl"
    if corpus.is_file():
        with corpus.open(encoding="utf-8") as fh:
            words = " ".join(json.loads(line)["text"] for line in fh).split()
        with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as fh:
            questions = [json.loads(line)["text"] for line in fh]
        starts = rng.integers(0, len(words) - WORDS_PER_CHUNK, n)
        chunks = [" ".join(words[s : s + WORDS_PER_CHUNK]) for s in starts]
        return chunks, questions, "scifact abstracts, 120-word windows at random offsets"
    vocabulary = [f"w{i}" for i in range(50_000)]
    ranks = np.minimum(rng.zipf(1.2, (n + 200) * WORDS_PER_CHUNK), len(vocabulary)) - 1
    drawn = [vocabulary[r] for r in ranks]
    cut = [" ".join(drawn[i * WORDS_PER_CHUNK : (i + 1) * WORDS_PER_CHUNK]) for i in range(n + 200)]
    questions = [" ".join(c.split()[:12]) for c in cut[n:]]
    return cut[:n], questions, "Zipf(1.2) words over a 50k vocabulary (no scifact data found)"


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    rows: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return rows


def embeddings(n: int, queries: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Chunk vectors near their document's topic, and question vectors near random documents' topics."""
    topics = unit(rng.standard_normal((TOPICS, DIM)))
    of_chunk = (np.arange(n) // CHUNKS_PER_DOC) % TOPICS
    chunks = unit(topics[of_chunk] + rng.normal(0.0, NOISE, (n, DIM)))
    asked = of_chunk[rng.integers(0, n, queries)]
    return chunks, unit(topics[asked] + rng.normal(0.0, NOISE, (queries, DIM)))


def chunk(i: int) -> Chunk:
    return Chunk(
        document_id=f"doc-{i // CHUNKS_PER_DOC}", filename="f.txt", chunk_index=i % CHUNKS_PER_DOC, text=""
    )


def load(store: EdgeStore, vectors: np.ndarray, sparse: Sequence[SparseVector]) -> tuple[float, list[float]]:
    """Seconds to upsert everything in writes of WRITE, and the writes that took over a second."""
    n = len(sparse)
    stalls = []
    started = time.perf_counter()
    for start in range(0, n, WRITE):
        end = min(n, start + WRITE)
        chunks = [chunk(i) for i in range(start, end)]
        t = time.perf_counter()
        store.upsert(COLLECTION, chunks, vectors[start:end], sparse[start:end])
        if time.perf_counter() - t > 1.0:
            stalls.append(round(time.perf_counter() - t, 1))
    return time.perf_counter() - started, stalls


def timed(calls: Sequence[Callable[[], object]]) -> tuple[float, float]:
    """p50 and p99 in ms of the calls, each run once (after two warm-up calls)."""
    for call in calls[:2]:
        call()
    times = []
    for call in calls:
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def searches(
    store: EdgeStore, queries: np.ndarray, questions: Sequence[SparseVector], n_docs: int
) -> dict[str, tuple[float, float]]:
    hybrid = Fusion(dense_weight=0.5)
    hidden = {f"doc-{i}" for i in range(0, n_docs, max(1, n_docs // 200))}
    pairs = list(zip(queries, questions, strict=True))

    def dense(q: np.ndarray, exclude: set[str]) -> Callable[[], object]:
        return lambda: store.search(COLLECTION, q, 10, exclude)

    def fused(q: np.ndarray, s: SparseVector, exclude: set[str]) -> Callable[[], object]:
        return lambda: store.search(COLLECTION, q, 10, exclude, sparse=s, fusion=hybrid)

    return {
        "dense": timed([dense(q, set()) for q, _ in pairs]),
        "dense + exclude 200 docs": timed([dense(q, hidden) for q, _ in pairs]),
        "hybrid": timed([fused(q, s, set()) for q, s in pairs]),
        "hybrid + exclude 200 docs": timed([fused(q, s, hidden) for q, s in pairs]),
    }


def recall(store: EdgeStore, vectors: np.ndarray, queries: np.ndarray) -> float:
    found = 0
    for q in queries:
        exact = set(np.argsort(-(vectors @ q))[:10].tolist())
        hits = store.search(COLLECTION, q, 10)
        got = {int(h.document_id.split("-")[1]) * CHUNKS_PER_DOC + h.chunk_index for h in hits}
        found += len(exact & got)
    return found / (10 * len(queries))


def percentiles(times: Sequence[float]) -> dict[str, float]:
    ordered = sorted(times)
    if not ordered:
        return {"n": 0}
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"n": len(ordered), "p50_ms": statistics.median(ordered), "p99_ms": p99, "max_ms": ordered[-1]}


def during_load(
    root: Path,
    *,
    vectors: np.ndarray,
    sparse: Sequence[SparseVector],
    queries: np.ndarray,
    questions: Sequence[SparseVector],
    n_docs: int,
    settle_s: float,
) -> dict[str, Any]:
    """Search latency while a bulk load goes in, then until its background optimisation lands."""
    store = EdgeStore(root / "during", dim_default=DIM)
    hybrid = Fusion(dense_weight=0.5)
    hidden = {f"doc-{i}" for i in range(0, n_docs, max(1, n_docs // 200))}
    store.upsert(COLLECTION, [chunk(0)], vectors[:1], sparse[:1])
    phase = ["load"]
    times: dict[str, list[float]] = {"load": [], "optimising": []}
    stop = threading.Event()

    def search() -> None:
        i = 0
        while not stop.wait(SEARCH_EVERY_S):
            q, s = queries[i % len(queries)], questions[i % len(questions)]
            exclude = hidden if i % 2 else set()
            t = time.perf_counter()
            if (i // 2) % 2:
                store.search(COLLECTION, q, 10, exclude, sparse=s, fusion=hybrid)
            else:
                store.search(COLLECTION, q, 10, exclude)
            times[phase[0]].append((time.perf_counter() - t) * 1000)
            i += 1

    searcher = threading.Thread(target=search, name="searcher")
    searcher.start()
    try:
        seconds, stalls = load(store, vectors, sparse)
        phase[0] = "optimising"
        t = time.perf_counter()
        landed = store.wait_optimised(COLLECTION, settle_s)
        settle = time.perf_counter() - t
    finally:
        stop.set()
        searcher.join()
    out: dict[str, Any] = {
        "load_chunks_per_s": len(sparse) / seconds,
        "writes_over_1s": stalls,
        "optimised_after_load_s": settle if landed else None,
        "search_during_load": percentiles(times["load"]),
        "search_until_optimised": percentiles(times["optimising"]),
    }
    store.close()
    return out


def report(title: str, figures: dict[str, tuple[float, float]], out: dict[str, Any]) -> None:
    out[title] = figures
    for name, (p50, p99) in figures.items():
        print(f"| {title} | {name} | {p50:.2f} | {p99:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128, 256], help="hnsw_ef values")
    parser.add_argument("--no-policy", action="store_true", help="skip the second load (default policy)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--during-load", action="store_true", help="only: searches during a bulk load")
    parser.add_argument("--settle-s", type=float, default=900, help="longest wait for the optimisation")
    args = parser.parse_args()
    fig: dict[str, Any] = {"chunks": args.chunks, "queries": args.queries, "search_ms": {}}

    rng = np.random.default_rng(7)
    n = args.chunks
    chunk_texts, question_texts, source = texts(n, rng)
    bm25 = Bm25()
    t = time.perf_counter()
    sparse = [bm25.document(text) for text in chunk_texts]
    bm25_s = time.perf_counter() - t
    vectors, queries = embeddings(n, args.queries, rng)
    questions = [bm25.query(question_texts[i % len(question_texts)]) for i in range(args.queries)]
    n_docs = -(-n // CHUNKS_PER_DOC)
    print(
        f"{n} chunks ({n_docs} documents), {DIM}-d clustered unit vectors ({TOPICS} topics); text: {source}"
    )
    terms = statistics.mean(len(s.indices) for s in sparse)
    print(f"BM25 vectors: {n / bm25_s:,.0f} chunks/s, {terms:.0f} distinct terms each")
    fig |= {"text": source, "bm25_chunks_per_s": n / bm25_s}

    root = Path(tempfile.mkdtemp(prefix="edge-scale-"))
    if args.during_load:
        try:
            fig["during_load"] = during = during_load(
                root,
                vectors=vectors,
                sparse=sparse,
                queries=queries,
                questions=questions,
                n_docs=n_docs,
                settle_s=args.settle_s,
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(json.dumps(during, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(fig, indent=2), encoding="utf-8")
        return
    try:
        store = EdgeStore(root / "raw", dim_default=DIM, optimize=False)
        seconds, stalls = load(store, vectors, sparse)
        fig["raw_load_chunks_per_s"] = n / seconds
        print(f"\nraw load: {n / seconds:,.0f} chunks/s ({seconds:.0f} s; writes over 1 s: {stalls})")
        print("\n| shard | search | p50 ms | p99 ms |\n|---|---|---|---|")
        report("unoptimised", searches(store, queries, questions, n_docs), fig["search_ms"])
        t = time.perf_counter()
        store.optimize(COLLECTION)
        fig["optimize_s"] = time.perf_counter() - t
        report("optimised", searches(store, queries, questions, n_docs), fig["search_ms"])
        print(f"\noptimize(): {fig['optimize_s']:.0f} s")
        store.close()
        print("\n| hnsw_ef | dense p50 ms | dense p99 ms | recall@10 vs exact |\n|---|---|---|---|")
        fig["hnsw_ef"] = {}
        for ef in args.ef:
            store = EdgeStore(root / "raw", dim_default=DIM, optimize=False, hnsw_ef=ef)
            p50, p99 = timed([partial(store.search, COLLECTION, q, 10) for q in queries])
            found = recall(store, vectors, queries)
            fig["hnsw_ef"][ef] = {"p50_ms": p50, "p99_ms": p99, "recall@10": found}
            print(f"| {ef} | {p50:.2f} | {p99:.2f} | {found:.3f} |", flush=True)
            store.close()
        shutil.rmtree(root / "raw", ignore_errors=True)

        if not args.no_policy:
            store = EdgeStore(root / "policy", dim_default=DIM, optimize_idle_s=0)
            seconds, stalls = load(store, vectors, sparse)
            fig |= {"policy_load_chunks_per_s": n / seconds, "policy_stalls_s": stalls}
            print(
                f"\npolicy load (a child process optimises a copy once {OPTIMIZE_POINTS:,} points came in "
                "and writes paused; one landing during a load is dropped): "
                f"{n / seconds:,.0f} chunks/s ({seconds:.0f} s; writes over 1 s: {stalls})"
            )
            t = time.perf_counter()
            store.optimize(COLLECTION)
            fig["policy_idle_optimize_s"] = time.perf_counter() - t
            print(f"optimising the rest (the idle step): {fig['policy_idle_optimize_s']:.1f} s")
            print("\n| shard | search | p50 ms | p99 ms |\n|---|---|---|---|")
            report("policy", searches(store, queries, questions, n_docs), fig["search_ms"])
            fig["policy_recall@10"] = recall(store, vectors, queries)
            print(f"dense recall@10 vs exact: {fig['policy_recall@10']:.3f}")
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
