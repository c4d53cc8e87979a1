"""Hybrid (dense + BM25) search in every backend: EdgeStore, QdrantStore (local mode), MemoryStore."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    HnswIndexConfig,
    PayloadSchemaType,
    Point,
    UpdateOperation,
)

from libs.common.models import Chunk, Hit
from services.embedder.backends import HashEmbedder
from services.retriever.edge_store import EdgeStore
from services.retriever.fusion import DENSE_ONLY, Fusion
from services.retriever.memory_store import MemoryStore
from services.retriever.qdrant_store import QdrantStore
from services.retriever.sparse import Bm25
from services.retriever.store import VectorStore, chunk_payload, point_id

DIM = 16
BM25 = Bm25(avgdl=10.0)

FACTORIES: dict[str, Callable[[Path], VectorStore]] = {
    "edge": lambda path: EdgeStore(path / "edge", dim_default=DIM),
    "qdrant-local": lambda _path: QdrantStore.local(":memory:", dim_default=DIM),
    "memory": lambda _path: MemoryStore(dim_default=DIM),
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    backend = FACTORIES[request.param](tmp_path)
    yield backend
    backend.close()


def direction(*weights: float, seed: int = 0) -> list[float]:
    """A vector near the axes given by ``weights``, with a little deterministic noise."""
    rng = np.random.default_rng(seed)
    vector = rng.normal(0.0, 0.02, DIM)
    vector[: len(weights)] += weights
    return [float(x) for x in vector]


def chunk(document_id: str, text: str, index: int = 0) -> Chunk:
    return Chunk(document_id=document_id, filename=f"{document_id}.txt", chunk_index=index, text=text)


def put(store: VectorStore, items: Sequence[tuple[Chunk, list[float]]], collection: str = "docs") -> None:
    store.ensure_collection(collection, DIM)
    chunks = [c for c, _ in items]
    store.upsert(collection, chunks, [v for _, v in items], [BM25.document(c.text) for c in chunks])


def ids(hits: Sequence[Hit]) -> list[str]:
    return [h.document_id for h in hits]


# Printer manuals on topic A (axis 0), a few router notes leaning on it, and one error
# table on topic B (axis 1): the only chunk with the question's rare code.
CORPUS = [
    *[
        (chunk(f"printer-{i}", f"Printer model {i}: replace the toner cartridge and clean the drum."), v)
        for i, v in enumerate(direction(1.0, seed=i) for i in range(20))
    ],
    *[
        (chunk(f"router-{i}", f"The router {i} restarts when its reset button is held down."), v)
        for i, v in enumerate(direction(0.6, 0.2, seed=100 + i) for i in range(4))
    ],
    (
        chunk("errors", "Code ZX81 means the flux capacitor overheated; let it cool."),
        direction(0.0, 1.0, seed=7),
    ),
]
QUESTION = "What does error code ZX81 mean on the router?"


def test_a_rare_exact_term_reaches_the_top_k_only_with_hybrid(store: VectorStore) -> None:
    put(store, CORPUS)
    query = direction(1.0, seed=99)  # the question's meaning: topic A, far from the error table
    dense = store.search("docs", query, 3, sparse=BM25.query(QUESTION), fusion=DENSE_ONLY)
    hybrid = store.search("docs", query, 3, sparse=BM25.query(QUESTION), fusion=Fusion(dense_weight=0.5))
    assert "errors" not in ids(store.search("docs", query, 10))  # no sparse vector: dense
    assert "errors" not in ids(dense)
    assert "errors" in ids(hybrid)
    assert len(hybrid) == 3
    # Scores stay cosines: the error table is far from the question's vector.
    [found] = [h for h in hybrid if h.document_id == "errors"]
    assert found.score == pytest.approx(float(np.dot(_unit(query), _unit(CORPUS[-1][1]))), abs=1e-5)
    assert found.score < 0.2
    assert found.text.startswith("Code ZX81")


def test_bm25_only_ranks_by_the_terms(store: VectorStore) -> None:
    put(store, CORPUS)
    hits = store.search(
        "docs", direction(1.0), 2, sparse=BM25.query(QUESTION), fusion=Fusion(dense_weight=0.0)
    )
    # Only the rare code's chunk and the router notes share terms with the question.
    assert ids(hits)[0] == "errors"
    assert ids(hits)[1].startswith("router-")


def test_exclude_applies_inside_the_sparse_ranking(store: VectorStore) -> None:
    put(
        store,
        [
            *CORPUS[:20],
            (chunk("old-1", "ZX81 ZX81 overheated."), direction(0.0, 1.0, seed=1)),
            (chunk("old-2", "ZX81 ZX81 overheated again."), direction(0.0, 1.0, seed=2)),
            CORPUS[-1],  # "errors": ZX81 once, in a longer chunk, so BM25 ranks it third
        ],
    )
    question = BM25.query("ZX81 overheated")
    # Two candidates per ranking: were the filter applied after the sparse search, the
    # two hidden chunks would take both places and "errors" would never be seen.
    fusion = Fusion(dense_weight=0.3, candidates=2)
    hits = store.search("docs", direction(1.0), 1, exclude={"old-1", "old-2"}, sparse=question, fusion=fusion)
    assert ids(hits) == ["errors"]
    everything = store.search("docs", direction(1.0), 3, sparse=question, fusion=Fusion(dense_weight=0.0))
    assert set(ids(everything)[:2]) == {"old-1", "old-2"} and ids(everything)[2] == "errors"
    hidden = store.search(
        "docs", direction(1.0), 25, {"errors"}, sparse=question, fusion=Fusion(dense_weight=0.3)
    )
    assert "errors" not in ids(hidden) and len(hidden) == 22


def test_hits_carry_an_evidence_score_that_is_low_for_an_unrelated_question(store: VectorStore) -> None:
    put(store, CORPUS)
    fusion = Fusion(dense_weight=0.5)
    on_topic = store.search(
        "docs",
        direction(1.0, seed=99),
        5,
        sparse=BM25.query("replace the printer toner cartridge"),
        fusion=fusion,
    )
    # Far from every chunk, and sharing one common word ("model") with the manuals only.
    unrelated = store.search(
        "docs", direction(0.0, 0.0, 1.0, seed=5), 5, sparse=BM25.query("model glacier retreat"), fusion=fusion
    )
    for hits in (on_topic, unrelated, store.search("docs", direction(1.0), 5)):  # the last: dense only
        assert hits and all(h.relevance is not None and 0.0 <= h.relevance <= 1.0 for h in hits)
    best = {
        name: max(h.relevance or 0.0 for h in hits) for name, hits in (("on", on_topic), ("off", unrelated))
    }
    assert best["on"] > 0.5 > best["off"]
    # The score stays the cosine whatever the relevance.
    assert all(h.score < 0.2 for h in unrelated)


def test_a_question_without_terms_is_a_dense_search(store: VectorStore) -> None:
    put(store, CORPUS)
    query = direction(0.0, 1.0)
    dense = store.search("docs", query, 5)
    assert store.search("docs", query, 5, sparse=BM25.query("what is it?"), fusion=Fusion()) == dense


# -- every backend ranks alike ----------------------------------------------------------

TOPICS = [
    "enzyme kinetics of lactase in the small intestine",
    "vitamin D deficiency and bone density in adults",
    "insulin resistance after a high fat diet",
    "tumour suppressor genes and cell cycle arrest",
    "antibiotic resistance in hospital acquired infections",
]
QUESTIONS = [
    "Does vitamin D change bone density?",
    "lactase enzyme activity",
    "which genes arrest the cell cycle",
    "hospital infections resistant to antibiotics and diet",
    "fat diet insulin",
    "cycle of infections in adults",
]


def shared_corpus() -> list[tuple[Chunk, list[float]]]:
    texts = []
    for i in range(40):
        a, b = TOPICS[i % 5], TOPICS[(i * 3 + 1) % 5]
        words = (a + " " + b).split()
        texts.append(" ".join(words[(i % 4) : len(words) - (i % 3)]) + f" note {i}")
    vectors = HashEmbedder(dim=DIM).embed(texts)
    return [
        (chunk(f"doc-{i // 2}", t, i % 2), v.tolist())
        for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
    ]


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 0.7])
def test_every_backend_gives_the_same_ranking(tmp_path: Path, weight: float) -> None:
    """Hybrid rankings match exactly, ties and all. (A dense-only search keeps each engine's
    own order among equal cosines, which the hash vectors here have plenty of.)"""
    corpus = shared_corpus()
    questions = [(HashEmbedder(dim=DIM).embed([q])[0], BM25.query(q)) for q in QUESTIONS]
    results: dict[str, list[list[tuple[str, int, float]]]] = {}
    relevance: dict[str, list[float]] = {}
    for name, factory in FACTORIES.items():
        backend = factory(tmp_path)
        try:
            put(backend, corpus)
            found = [
                backend.search("docs", vector, 8, {"doc-3"}, sparse=terms, fusion=Fusion(dense_weight=weight))
                for vector, terms in questions
            ]
        finally:
            backend.close()
        results[name] = [[(h.document_id, h.chunk_index, round(h.score, 4)) for h in hits] for hits in found]
        relevance[name] = [h.relevance if h.relevance is not None else -1.0 for hits in found for h in hits]
    assert results["edge"] == results["memory"]
    assert results["qdrant-local"] == results["memory"]
    # The evidence score too (to float32's precision: the engines' cosines differ there).
    assert relevance["edge"] == pytest.approx(relevance["memory"], abs=1e-3)
    assert relevance["qdrant-local"] == pytest.approx(relevance["memory"], abs=1e-3)
    assert all(len(r) == 8 for r in results["memory"]) or weight == 0.0  # BM25 alone: matches only
    assert any(results["memory"])


# -- collections made before hybrid search -------------------------------------------------


def legacy_points() -> list[tuple[Chunk, list[float]]]:
    return [*CORPUS[:20], CORPUS[-1]]


def test_an_edge_collection_without_sparse_vectors_still_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "edge"
    root.mkdir()
    # The shard as the store created it before hybrid search: the dense vector only.
    shard = EdgeShard.create(
        str(root / "docs"),
        EdgeConfig(
            vectors=EdgeVectorParams(size=DIM, distance=Distance.Cosine),
            hnsw_config=HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000),
        ),
    )
    shard.update(UpdateOperation.create_field_index("document_id", PayloadSchemaType.Keyword))
    shard.update(
        UpdateOperation.upsert_points(
            [Point(point_id(c.document_id, c.chunk_index), v, chunk_payload(c)) for c, v in legacy_points()]
        )
    )
    shard.flush()
    shard.close()
    _answers_dense_only(EdgeStore(root, dim_default=DIM), caplog)
    # A new collection beside it is hybrid.
    store = EdgeStore(root, dim_default=DIM)
    try:
        put(store, CORPUS, "fresh")
        hits = store.search("fresh", direction(1.0), 3, sparse=BM25.query(QUESTION), fusion=Fusion())
        assert "errors" in ids(hits)
    finally:
        store.close()


def test_a_qdrant_collection_without_sparse_vectors_still_answers(caplog: pytest.LogCaptureFixture) -> None:
    client = QdrantClient(location=":memory:")
    client.create_collection(
        "documind_docs", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    client.upsert(
        "documind_docs",
        [
            models.PointStruct(id=point_id(c.document_id, c.chunk_index), vector=v, payload=chunk_payload(c))
            for c, v in legacy_points()
        ],
    )
    _answers_dense_only(QdrantStore(client, dim_default=DIM), caplog)


def _answers_dense_only(store: VectorStore, caplog: pytest.LogCaptureFixture) -> None:
    try:
        query = direction(1.0, seed=99)
        # Writing sparse vectors into it is harmless: they are left out.
        put(store, [CORPUS[20]])
        assert store.count("docs") == 22
        dense = store.search("docs", query, 3)
        with caplog.at_level(logging.INFO, logger="services.retriever"):
            for _ in range(3):
                hybrid = store.search("docs", query, 3, sparse=BM25.query(QUESTION), fusion=Fusion())
                assert hybrid == dense
                assert "errors" not in ids(hybrid)
        told = [r for r in caplog.records if "before hybrid search" in r.getMessage()]
        assert len(told) == 1  # once per collection, not per search
        assert store.search("docs", query, 2, {ids(dense)[0]}, sparse=BM25.query(QUESTION), fusion=Fusion())
    finally:
        store.close()


# -- the embedded store ------------------------------------------------------------------


def test_edge_writes_survive_reopening_before_the_flush(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, dim_default=DIM, optimize=False)
    put(store, CORPUS)
    store.close()  # flushes
    reopened = EdgeStore(tmp_path, dim_default=DIM)
    try:
        assert reopened.count("docs") == len(CORPUS)
        hits = reopened.search(
            "docs", direction(1.0, seed=99), 3, sparse=BM25.query(QUESTION), fusion=Fusion()
        )
        assert "errors" in ids(hits)  # still a hybrid collection
    finally:
        reopened.close()


def _unit(vector: Sequence[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float64)
    return array / np.linalg.norm(array)
