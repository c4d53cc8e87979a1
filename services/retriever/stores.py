"""Picking a vector store backend, and the plumbing every backend shares.

The backends (``EdgeStore``, ``QdrantStore``, ``MemoryStore``) are imported lazily
by :func:`build_store`, so a process only loads the engine it uses and the
backends can import the helpers below without an import cycle.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from libs.common.errors import PermanentError
from libs.common.models import Chunk, Hit
from libs.common.settings import RetrieverSettings
from services.retriever.fusion import Fusion
from services.retriever.sparse import Bm25, SparseVector
from services.retriever.store import VectorStore

logger = logging.getLogger(__name__)

VECTOR_STORES = ("edge", "qdrant", "memory")
# The named sparse vector (BM25) of collections created with hybrid search; the dense
# vector keeps the unnamed slot, so collections created before it read as they were.
SPARSE_VECTOR = "bm25"

# Names used as they are for directories and Qdrant collections: lower case so
# that case-insensitive filesystems cannot merge two collections, no dots or
# separators so a name can never leave its parent directory.
_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


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


def payload_hit(payload: Mapping[str, Any] | None, score: float) -> Hit:
    """A search hit from a stored payload and its cosine similarity."""
    data = payload or {}
    return Hit(
        document_id=str(data.get("document_id", "")),
        filename=str(data.get("filename", "")),
        page=int(data.get("page", 1)),
        score=float(score),
        text=str(data.get("text", "")),
        chunk_index=int(data.get("chunk_index", 0)),
        page_end=data.get("page_end"),
    )


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


def build_fusion(settings: RetrieverSettings) -> Fusion:
    """How searches merge the dense and BM25 rankings."""
    return Fusion(
        dense_weight=settings.hybrid_dense_weight, k=settings.rrf_k, candidates=settings.hybrid_candidates
    )


def build_bm25(settings: RetrieverSettings) -> Bm25:
    """The BM25 sparse vectors' parameters."""
    return Bm25(k1=settings.bm25_k1, b=settings.bm25_b, avgdl=settings.bm25_avgdl)


def build_store(settings: RetrieverSettings) -> VectorStore:
    """The vector store named by ``settings.vector_store``."""
    kind = settings.vector_store.strip().lower()
    if kind == "edge":
        from services.retriever.edge_store import EdgeStore

        path = settings.edge_path or settings.data_dir / "qdrant"
        logger.info("vector store: qdrant-edge at %s", path)
        return EdgeStore(
            path,
            dim_default=settings.embedding_dim,
            optimize_points=settings.edge_optimize_points,
            optimize_idle_s=settings.edge_optimize_idle_s,
            hnsw_m=settings.edge_hnsw_m,
            hnsw_ef_construct=settings.edge_hnsw_ef_construct,
            hnsw_ef=settings.edge_hnsw_ef,
        )
    if kind == "qdrant":
        from services.retriever.qdrant_store import QdrantStore

        if not settings.qdrant_url:
            raise ValueError("vector_store 'qdrant' needs DOCUMIND_QDRANT_URL (the Qdrant server's URL)")
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        logger.info("vector store: qdrant server at %s", settings.qdrant_url)
        return QdrantStore.from_url(settings.qdrant_url, api_key=api_key, dim_default=settings.embedding_dim)
    if kind == "memory":
        from services.retriever.memory_store import MemoryStore

        logger.info("vector store: in-memory (data is lost on exit)")
        return MemoryStore(dim_default=settings.embedding_dim)
    raise ValueError(
        f"unknown vector_store {settings.vector_store!r} (DOCUMIND_VECTOR_STORE): "
        f"expected one of {', '.join(VECTOR_STORES)}"
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
