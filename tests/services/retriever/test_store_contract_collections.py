"""One contract for every VectorStore backend: collections (unknown, created, separate,
oddly named, dropped) and idempotent upserts and deletes."""

from __future__ import annotations

import pytest

from services.retriever.store import VectorStore
from tests.services.retriever.store_contract import DIM, basis, chunk, index_docs, mix

# -- unknown collections --------------------------------------------------------


def test_unknown_collection_is_empty_and_deletes_are_no_ops(store: VectorStore) -> None:
    assert store.search("nope", basis(0), top_k=5) == []
    assert store.count("nope") == 0
    store.delete_document("nope", "doc-a")
    store.delete_collection("nope")
    assert store.count("nope") == 0


def test_delete_of_unknown_document_is_a_no_op(store: VectorStore) -> None:
    index_docs(store)
    store.delete_document("docs", "doc-zzz")
    assert store.count("docs") == 5


def test_ensure_collection_is_idempotent(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    store.ensure_collection("docs", DIM)
    assert store.count("docs") == 0
    assert store.search("docs", basis(0), top_k=3) == []


def test_upsert_creates_a_missing_collection(store: VectorStore) -> None:
    store.upsert("fresh", [chunk("doc-f", 0)], [basis(1)])
    assert store.count("fresh") == 1


def test_collections_are_separate(store: VectorStore) -> None:
    index_docs(store, "one")
    store.upsert("two", [chunk("doc-z", 0)], [basis(0)])
    assert store.count("one") == 5
    assert store.count("two") == 1
    assert [h.document_id for h in store.search("two", basis(0), top_k=5)] == ["doc-z"]


@pytest.mark.parametrize("name", ["Docs", "with space", "../escape", "a/b", "ünïcode", "x" * 200])
def test_odd_collection_names_work(store: VectorStore, name: str) -> None:
    store.upsert(name, [chunk("doc-o", 0)], [basis(2)])
    assert store.count(name) == 1
    assert store.count(name.lower() + "-other") == 0
    assert [h.document_id for h in store.search(name, basis(2), top_k=1)] == ["doc-o"]
    store.delete_collection(name)
    assert store.count(name) == 0


# -- idempotent upserts and deletes --------------------------------------------


def test_replayed_upsert_leaves_count_unchanged(store: VectorStore) -> None:
    index_docs(store)
    store.upsert("docs", [chunk("doc-a", i) for i in range(3)], [basis(i) for i in range(3)])
    assert store.count("docs") == 5


def test_upsert_overwrites_the_same_chunk(store: VectorStore) -> None:
    index_docs(store)
    moved = chunk("doc-a", 0).model_copy(update={"text": "rewritten"})
    store.upsert("docs", [moved], [basis(7)])
    assert store.count("docs") == 5
    [hit] = store.search("docs", basis(7), top_k=1)
    assert (hit.document_id, hit.chunk_index, hit.text) == ("doc-a", 0, "rewritten")


def test_delete_document_removes_only_that_document(store: VectorStore) -> None:
    index_docs(store)
    store.delete_document("docs", "doc-a")
    assert store.count("docs") == 2
    hits = store.search("docs", mix({0: 1.0, 3: 0.5}), top_k=10)
    assert {h.document_id for h in hits} == {"doc-b"}
    assert hits[0].chunk_index == 0


def test_delete_collection_drops_everything(store: VectorStore) -> None:
    index_docs(store)
    index_docs(store, "kept")
    store.delete_collection("docs")
    assert store.count("docs") == 0
    assert store.search("docs", basis(0), top_k=5) == []
    assert store.count("kept") == 5
    # The name can be used again, even with another dimension.
    store.ensure_collection("docs", 4)
    store.upsert("docs", [chunk("doc-q", 0)], [[0.0, 1.0, 0.0, 0.0]])
    assert store.count("docs") == 1
