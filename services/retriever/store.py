"""The vector store protocol the retriever indexes into and searches, and the
plumbing every backend (``EdgeStore``, ``QdrantStore``, ``MemoryStore``) shares.

The backends import this module and :mod:`.stores` imports the backends, so
nothing here may import either.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from libs.common.envelope import Envelope
from libs.common.errors import PermanentError
from libs.common.keys import DEFAULT_TENANT
from libs.common.models import Chunk, Hit
from services.retriever.fusion import Fusion
from services.retriever.sparse import SparseVector

# Namespace for deterministic point ids: the same chunk always maps to the same
# point, so a replayed index message overwrites instead of duplicating.
POINT_NAMESPACE = uuid.UUID("5b0f1c52-7f0e-4c55-9d55-6f1f2a7de0a1")

# The named sparse vector (BM25) of collections created with hybrid search; the dense
# vector keeps the unnamed slot, so collections created before it read as they were.
SPARSE_VECTOR = "bm25"


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
        ``score`` is its cosine similarity either way, its ``relevance`` the
        evidence score of :mod:`.fusion` (from the ranking it was found by).

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


# ---------------------------------------------------------- shared by the backends

# Names used as they are for directories and Qdrant collections: lower case so
# that case-insensitive filesystems cannot merge two collections, no dots or
# separators so a name can never leave its parent directory.
_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def store_collection(env: Envelope) -> str:
    """The store's collection of a job's collection: each tenant's vectors are its own.

    The default tenant's keep the plain name (stores made before tenants existed);
    another tenant's name joins both with '~', which no collection name holds (such
    names are hashed by :func:`storage_name`).
    """
    if env.tenant == DEFAULT_TENANT:
        return env.collection
    return f"{env.tenant}~{env.collection}"


def storage_name(name: str) -> str:
    """A filesystem- and Qdrant-safe name for a DocuMind collection name.

    Plain names (``[a-z0-9][a-z0-9_-]{0,63}``) are kept; any other name maps to
    ``_`` plus a hash of it, which no plain name can collide with.
    """
    if _PLAIN_NAME.fullmatch(name):
        return name
    return "_" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]


def chunk_payload(chunk: Chunk) -> dict[str, Any]:
    """The payload stored with a chunk's point."""
    return {
        "document_id": chunk.document_id,
        "filename": chunk.filename,
        "chunk_index": chunk.chunk_index,
        "text": chunk.text,
        "page": chunk.page,
        "page_end": chunk.page_end,
        "heading": chunk.heading,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
    }


def payload_hit(payload: Mapping[str, Any] | None, score: float, relevance: float | None = None) -> Hit:
    """A search hit from a stored payload, its cosine similarity and its evidence score."""
    data = payload or {}
    return Hit(
        document_id=str(data.get("document_id", "")),
        filename=str(data.get("filename", "")),
        page=int(data.get("page", 1)),
        score=float(score),
        text=str(data.get("text", "")),
        chunk_index=int(data.get("chunk_index", 0)),
        page_end=data.get("page_end"),
        char_start=_offset(data.get("char_start")),
        char_end=_offset(data.get("char_end")),
        relevance=relevance,
    )


def _offset(value: Any) -> int | None:
    """A stored character offset, or None when it is missing or not a number."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def as_matrix(vectors: Sequence[Sequence[float]] | np.ndarray, rows: int, collection: str) -> np.ndarray:
    """Vectors (lists or numpy rows) as a finite float32 matrix with one row per chunk."""
    matrix = _as_float32(vectors, collection)
    if rows == 0 and matrix.size == 0:
        return matrix.reshape(0, 0)
    if matrix.ndim != 2 or matrix.shape[0] != rows:
        raise PermanentError(
            f"collection {collection!r}: expected {rows} vectors (one per chunk), "
            f"got an array of shape {matrix.shape}"
        )
    _check_finite(matrix, collection)
    return matrix


def as_query(vector: Sequence[float] | np.ndarray, collection: str) -> np.ndarray:
    """A query vector (list or numpy row) as a finite 1-d float32 array."""
    query = _as_float32(vector, collection)
    if query.ndim != 1 or query.size == 0:
        raise PermanentError(
            f"collection {collection!r}: a query must be one non-empty vector, "
            f"got an array of shape {query.shape}"
        )
    _check_finite(query, collection)
    return query


def check_sparse(sparse: Sequence[SparseVector] | None, rows: int, collection: str) -> None:
    """One sparse vector per chunk, or none at all."""
    if sparse is not None and len(sparse) != rows:
        raise PermanentError(
            f"collection {collection!r}: expected {rows} sparse vectors (one per chunk), got {len(sparse)}"
        )


def check_dim(got: int, expected: int, collection: str) -> None:
    if got != expected:
        raise PermanentError(
            f"collection {collection!r} takes {expected}-d vectors, got {got}-d "
            "(does the embedding model match the collection?)"
        )


def _as_float32(data: object, collection: str) -> np.ndarray:
    try:
        # Overflow to inf is reported by _check_finite, not as a RuntimeWarning.
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"collection {collection!r}: vectors are not arrays of numbers: {exc}") from exc


def _check_finite(array: np.ndarray, collection: str) -> None:
    if not np.isfinite(array).all():
        raise PermanentError(f"collection {collection!r}: vectors contain NaN or infinite values")
