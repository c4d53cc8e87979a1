"""The vector store protocol the retriever indexes into and searches."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Protocol

from libs.common.models import Chunk, Hit

# Namespace for deterministic point ids: the same chunk always maps to the same
# point, so a replayed index message overwrites instead of duplicating.
POINT_NAMESPACE = uuid.UUID("5b0f1c52-7f0e-4c55-9d55-6f1f2a7de0a1")


def point_id(document_id: str, chunk_index: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{document_id}:{chunk_index}"))


class VectorStore(Protocol):
    def ensure_collection(self, name: str, dim: int) -> None:
        """Create the collection if it does not exist (idempotent)."""

    def upsert(self, collection: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        """Insert or overwrite one point per chunk, id = point_id(document_id, chunk_index)."""

    def search(
        self, collection: str, vector: Sequence[float], top_k: int, exclude: Collection[str] = ()
    ) -> list[Hit]:
        """Nearest chunks by cosine similarity, best first; [] for an unknown collection.

        Points of the documents in ``exclude`` (deleted, or not ready yet) are
        filtered inside the engine, so they never take a place in the top k.
        """

    def delete_document(self, collection: str, document_id: str) -> None:
        """Remove every point of one document."""

    def delete_collection(self, name: str) -> None:
        """Drop a collection and all its points (no error if absent)."""

    def count(self, collection: str) -> int:
        """Number of points in a collection (0 if absent)."""

    def close(self) -> None: ...
