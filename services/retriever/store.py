"""The vector store protocol the retriever indexes into and searches."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Protocol

from libs.common.models import Chunk, Hit
from services.retriever.fusion import Fusion
from services.retriever.sparse import SparseVector

# Namespace for deterministic point ids: the same chunk always maps to the same
# point, so a replayed index message overwrites instead of duplicating.
POINT_NAMESPACE = uuid.UUID("5b0f1c52-7f0e-4c55-9d55-6f1f2a7de0a1")


def point_id(document_id: str, chunk_index: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{document_id}:{chunk_index}"))


class VectorStore(Protocol):
    def ensure_collection(self, name: str, dim: int) -> None:
        """Create the collection if it does not exist (idempotent).

        New collections hold a dense vector and a sparse one (BM25, IDF applied
        by the engine); collections created before hybrid search hold the dense
        vector only, and are searched by it alone.
        """

    def upsert(
        self,
        collection: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None = None,
    ) -> None:
        """Insert or overwrite one point per chunk, id = point_id(document_id, chunk_index).

        ``sparse``: one BM25 vector per chunk (see :mod:`.sparse`); left out for a
        dense-only collection, and for empty vectors.
        """

    def search(
        self,
        collection: str,
        vector: Sequence[float],
        top_k: int,
        exclude: Collection[str] = (),
        *,
        sparse: SparseVector | None = None,
        fusion: Fusion | None = None,
    ) -> list[Hit]:
        """The top_k chunks, best first; [] for an unknown collection.

        Dense only (nearest by cosine) unless ``sparse`` (the question's BM25
        vector, see :mod:`.sparse`) and a ``fusion`` that is not dense-only are
        given and the collection has sparse vectors: then the dense and the
        sparse rankings are merged by weighted RRF (:mod:`.fusion`). A hit's
        ``score`` is its cosine similarity either way.

        Points of the documents in ``exclude`` (deleted, or not ready yet) are
        filtered inside the engine, in both rankings, so they never take a place
        in the top k.
        """

    def delete_document(self, collection: str, document_id: str) -> None:
        """Remove every point of one document."""

    def delete_collection(self, name: str) -> None:
        """Drop a collection and all its points (no error if absent)."""

    def count(self, collection: str) -> int:
        """Number of points in a collection (0 if absent)."""

    def close(self) -> None: ...
