"""One contract for every VectorStore backend: concurrent writers and readers lose
nothing, and a persistent backend's data survives reopening."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from libs.common.errors import PermanentError
from services.retriever.edge_store import EdgeStore
from services.retriever.qdrant_store import QdrantStore
from services.retriever.store import VectorStore
from tests.services.retriever.store_contract import DIM, Factory, basis, chunk, index_docs

# Backends whose data outlives the store object, and how to reopen them.
PERSISTENT: dict[str, Factory] = {
    "edge": lambda path: EdgeStore(path / "edge", dim_default=DIM),
    "qdrant-path": lambda path: QdrantStore.local(path / "qdrant", dim_default=DIM),
}


# -- threads ------------------------------------------------------------------


def test_concurrent_upserts_and_searches(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    errors: list[BaseException] = []
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((8, 10, DIM)).astype(np.float32)

    def work(worker: int) -> None:
        try:
            for i in range(10):
                store.upsert("docs", [chunk(f"doc-{worker}", i)], vectors[worker, i : i + 1])  # type: ignore[arg-type]
                store.search("docs", vectors[worker, i], top_k=3)
                store.count("docs")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count("docs") == 80


# -- persistence ---------------------------------------------------------------


@pytest.mark.parametrize("backend", sorted(PERSISTENT))
def test_data_survives_reopening(backend: str, tmp_path: Path) -> None:
    first = PERSISTENT[backend](tmp_path)
    index_docs(first)
    first.delete_document("docs", "doc-b")
    first.close()

    second = PERSISTENT[backend](tmp_path)
    try:
        assert second.count("docs") == 3
        [hit] = second.search("docs", basis(2), top_k=1)
        assert (hit.document_id, hit.chunk_index, hit.page) == ("doc-a", 2, 3)
        # The reopened collection keeps its dimension.
        with pytest.raises(PermanentError):
            second.upsert("docs", [chunk("doc-c", 0)], [[1.0, 2.0]])
    finally:
        second.close()
