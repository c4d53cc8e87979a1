"""What the VectorStore contract tests share: the backends under test, small vectors
and chunks, and a two-document index (the ``store`` fixture is in ``conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from libs.common.models import Chunk
from services.retriever.edge_store import EdgeStore
from services.retriever.memory_store import MemoryStore
from services.retriever.qdrant_store import QdrantStore
from services.retriever.store import VectorStore

DIM = 8

Factory = Callable[[Path], VectorStore]

FACTORIES: dict[str, Factory] = {
    "edge": lambda path: EdgeStore(path / "edge", dim_default=DIM),
    "qdrant-local": lambda _path: QdrantStore.local(":memory:", dim_default=DIM),
    "memory": lambda _path: MemoryStore(dim_default=DIM),
}


def basis(i: int, dim: int = DIM) -> list[float]:
    vector = [0.0] * dim
    vector[i] = 1.0
    return vector


def mix(weights: dict[int, float]) -> list[float]:
    vector = [0.0] * DIM
    for i, weight in weights.items():
        vector[i] = weight
    return vector


def chunk(document_id: str, index: int) -> Chunk:
    return Chunk(
        document_id=document_id,
        filename=f"{document_id}.pdf",
        chunk_index=index,
        text=f"text {document_id} #{index}",
        page=index + 1,
        page_end=index + 2,
        char_start=index * 10,
        char_end=index * 10 + 9,
        heading=f"heading {index}",
    )


def index_docs(store: VectorStore, collection: str = "docs") -> None:
    """doc-a: chunks 0..2 on axes 0..2; doc-b: chunks 0..1 on axes 3..4."""
    store.ensure_collection(collection, DIM)
    store.upsert(collection, [chunk("doc-a", i) for i in range(3)], [basis(i) for i in range(3)])
    store.upsert(collection, [chunk("doc-b", i) for i in range(2)], [basis(3 + i) for i in range(2)])
