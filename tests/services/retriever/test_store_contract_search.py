"""One contract for every VectorStore backend (EdgeStore, QdrantStore in local mode,
MemoryStore): search, its ranking, scores and payload."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.retriever.fusion import RELEVANCE
from services.retriever.store import VectorStore
from tests.services.retriever.store_contract import DIM, basis, chunk, index_docs, mix

# -- search -------------------------------------------------------------------


def test_search_returns_hits_best_first_with_cosine_scores(store: VectorStore) -> None:
    index_docs(store)
    # Unnormalised on purpose: cosine ignores length.
    query = mix({0: 3.0, 1: 2.0, 3: 1.0})
    hits = store.search("docs", query, top_k=10)

    norm = math.sqrt(14.0)
    assert [(h.document_id, h.chunk_index) for h in hits[:3]] == [("doc-a", 0), ("doc-a", 1), ("doc-b", 0)]
    assert [h.score for h in hits[:3]] == pytest.approx([3 / norm, 2 / norm, 1 / norm], abs=1e-5)
    assert all(h.score == pytest.approx(0.0, abs=1e-6) for h in hits[3:])
    assert len(hits) == 5

    best = hits[0]
    assert best.filename == "doc-a.pdf"
    assert best.text == "text doc-a #0"
    assert best.page == 1
    assert best.page_end == 2


def test_search_returns_at_most_top_k(store: VectorStore) -> None:
    index_docs(store)
    hits = store.search("docs", mix({0: 1.0, 1: 0.5, 2: 0.25}), top_k=2)
    assert [(h.document_id, h.chunk_index) for h in hits] == [("doc-a", 0), ("doc-a", 1)]
    assert store.search("docs", basis(0), top_k=0) == []


def test_excluded_documents_never_take_a_place_in_the_top_k(store: VectorStore) -> None:
    index_docs(store)
    # doc-a's three chunks are the nearest; excluded, the top 2 are doc-b's two.
    query = mix({0: 1.0, 1: 0.9, 2: 0.8, 3: 0.2, 4: 0.1})
    hits = store.search("docs", query, top_k=2, exclude={"doc-a"})
    assert [(h.document_id, h.chunk_index) for h in hits] == [("doc-b", 0), ("doc-b", 1)]
    assert store.search("docs", query, top_k=5, exclude={"doc-a", "doc-b"}) == []
    assert [h.document_id for h in store.search("docs", query, top_k=1, exclude=set())] == ["doc-a"]


def test_identical_vector_scores_one(store: VectorStore) -> None:
    index_docs(store)
    [hit] = store.search("docs", basis(4), top_k=1)
    assert (hit.document_id, hit.chunk_index) == ("doc-b", 1)
    assert hit.score == pytest.approx(1.0, abs=1e-6)


def test_numpy_vectors_and_query(store: VectorStore) -> None:
    chunks = [chunk("doc-n", i) for i in range(3)]
    store.ensure_collection("np", DIM)
    # The Protocol says Sequence[Sequence[float]]; every backend also takes numpy.
    store.upsert("np", chunks[:2], np.eye(DIM, dtype=np.float32)[:2])  # type: ignore[arg-type]
    store.upsert("np", chunks[2:], [np.eye(DIM, dtype=np.float64)[2]])  # a list of rows
    hits = store.search("np", np.eye(DIM, dtype=np.float32)[2], top_k=1)
    assert [(h.chunk_index, round(h.score, 5)) for h in hits] == [(2, 1.0)]
    assert store.count("np") == 3


def test_payload_holds_every_chunk_field(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    store.upsert("docs", [chunk("doc-p", 7)], [basis(0)])
    [hit] = store.search("docs", basis(0), top_k=1)
    assert hit.model_dump() == {
        "document_id": "doc-p",
        "filename": "doc-p.pdf",
        "page": 8,
        "score": pytest.approx(1.0, abs=1e-6),
        "text": "text doc-p #7",
        "chunk_index": 7,
        "page_end": 9,
        # Where the chunk is in its page's text: a citation marks its passage by them.
        "char_start": 70,
        "char_end": 79,
        # Its evidence score: the first of a dense ranking, and identical to the question.
        "relevance": pytest.approx(RELEVANCE(1.0, 1.0)),
    }
