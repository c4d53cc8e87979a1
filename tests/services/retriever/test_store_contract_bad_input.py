"""One contract for every VectorStore backend: wrong dimensions and malformed vectors are
permanent errors that store nothing."""

from __future__ import annotations

import math

import pytest

from libs.common.errors import PermanentError
from services.retriever.store import VectorStore
from tests.services.retriever.store_contract import DIM, basis, chunk, index_docs

# -- bad input ----------------------------------------------------------------


def test_upsert_with_wrong_dimension_is_permanent(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    with pytest.raises(PermanentError, match="8-d"):
        store.upsert("docs", [chunk("doc-a", 0)], [[1.0, 0.0, 0.0]])
    assert store.count("docs") == 0


def test_upsert_into_new_collection_with_wrong_dimension_creates_nothing(store: VectorStore) -> None:
    with pytest.raises(PermanentError, match="8-d"):
        store.upsert("fresh", [chunk("doc-a", 0)], [basis(0, dim=16)])
    assert store.count("fresh") == 0
    # Creating it explicitly with that dimension is fine.
    store.ensure_collection("fresh", 16)
    store.upsert("fresh", [chunk("doc-a", 0)], [basis(0, dim=16)])
    assert store.count("fresh") == 1


def test_search_with_wrong_dimension_is_permanent(store: VectorStore) -> None:
    index_docs(store)
    with pytest.raises(PermanentError, match="8-d"):
        store.search("docs", [1.0, 0.0], top_k=3)


def test_ensure_collection_with_other_dimension_is_permanent(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    with pytest.raises(PermanentError, match="8-d"):
        store.ensure_collection("docs", 16)


@pytest.mark.parametrize(
    "vectors",
    [
        [basis(0)],  # fewer vectors than chunks
        [basis(0), basis(1), basis(2)],  # more vectors than chunks
        [basis(0), basis(1)[:4]],  # ragged
        [basis(0), [math.nan] * DIM],  # not finite
        [basis(0), [1e300] * DIM],  # overflows float32
        [basis(0), ["a"] * DIM],  # not numbers
    ],
    ids=["fewer", "more", "ragged", "nan", "overflow", "strings"],
)
def test_malformed_vectors_are_permanent(store: VectorStore, vectors: list[list[float]]) -> None:
    store.ensure_collection("docs", DIM)
    with pytest.raises(PermanentError):
        store.upsert("docs", [chunk("doc-a", 0), chunk("doc-a", 1)], vectors)
    assert store.count("docs") == 0


def test_upsert_of_nothing_is_a_no_op(store: VectorStore) -> None:
    store.upsert("docs", [], [])
    assert store.count("docs") == 0
