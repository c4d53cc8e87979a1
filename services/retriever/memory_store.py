"""A brute-force in-memory VectorStore: deterministic, for unit tests.

Hybrid searches work as in the Qdrant backends: BM25 with Qdrant's IDF over the
points that hold a sparse vector, the same candidate counts, the same fusion.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from libs.common.errors import PermanentError
from libs.common.models import Chunk, Hit
from services.retriever.fusion import Fusion, Ranked, dense_relevance, fuse
from services.retriever.sparse import SparseVector
from services.retriever.store import (
    as_matrix,
    as_query,
    check_dim,
    check_sparse,
    chunk_payload,
    payload_hit,
    point_id,
)

logger = logging.getLogger(__name__)


@dataclass
class _Collection:
    dim: int
    # point id -> (unit-length vector, payload); insertion order breaks score ties.
    points: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    # point id -> its BM25 vector as {index: weight}, for points that have one.
    sparse: dict[str, dict[int, float]] = field(default_factory=dict)


class MemoryStore:
    """Same semantics as the real backends, exact cosine search with numpy."""

    def __init__(self, dim_default: int = 384) -> None:
        self._dim_default = dim_default
        self._collections: dict[str, _Collection] = {}
        self._lock = threading.Lock()

    def ensure_collection(self, name: str, dim: int) -> None:
        with self._lock:
            self._ensure(name, dim)

    def upsert(
        self,
        collection: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]] | np.ndarray,
        sparse: Sequence[SparseVector] | None = None,
    ) -> None:
        matrix = as_matrix(vectors, len(chunks), collection)
        check_sparse(sparse, len(chunks), collection)
        if not chunks:
            return
        with self._lock:
            existing = self._collections.get(collection)
            check_dim(matrix.shape[1], existing.dim if existing else self._dim_default, collection)
            target = self._ensure(collection, matrix.shape[1])
            for i, (chunk, row) in enumerate(zip(chunks, matrix, strict=True)):
                pid = point_id(chunk.document_id, chunk.chunk_index)
                target.points[pid] = (_unit(row), chunk_payload(chunk))
                terms = sparse[i] if sparse is not None else None
                if terms:
                    target.sparse[pid] = dict(zip(terms.indices, terms.values, strict=True))
                else:
                    target.sparse.pop(pid, None)

    def search(
        self,
        collection: str,
        vector: Sequence[float] | np.ndarray,
        top_k: int,
        exclude: Collection[str] = (),
        *,
        sparse: SparseVector | None = None,
        fusion: Fusion | None = None,
    ) -> list[Hit]:
        query = as_query(vector, collection)
        with self._lock:
            target = self._collections.get(collection)
            if target is None or top_k <= 0:
                return []
            check_dim(query.shape[0], target.dim, collection)
            if not target.points:
                return []
            pids = [pid for pid, e in target.points.items() if e[1]["document_id"] not in exclude]
            if not pids:
                return []
            payloads = {pid: target.points[pid][1] for pid in pids}
            matrix = np.stack([target.points[pid][0] for pid in pids])
            bm25 = _bm25(target.sparse, pids, sparse) if sparse and fusion and not fusion.dense_only else None
        scores = matrix @ _unit(query)
        if bm25 is None or fusion is None:
            order = np.argsort(-scores, kind="stable")[:top_k]
            relevance = dense_relevance([float(scores[i]) for i in order])
            return [
                payload_hit(payloads[pids[i]], float(scores[i]), r)
                for i, r in zip(order, relevance, strict=True)
            ]
        limit = fusion.limit(top_k)
        dense = _best([Ranked(pid, float(score)) for pid, score in zip(pids, scores, strict=True)], limit)
        cosines = {pid: float(score) for pid, score in zip(pids, scores, strict=True)}
        fused = fuse(dense, _best(bm25, limit), fusion, top_k, cosines)
        return [payload_hit(payloads[f.id], f.cosine, f.relevance) for f in fused]

    def delete_document(self, collection: str, document_id: str) -> None:
        with self._lock:
            target = self._collections.get(collection)
            if target is None:
                return
            doomed = [
                pid for pid, (_, payload) in target.points.items() if payload["document_id"] == document_id
            ]
            for pid in doomed:
                del target.points[pid]

    def delete_collection(self, name: str) -> None:
        with self._lock:
            self._collections.pop(name, None)

    def count(self, collection: str) -> int:
        with self._lock:
            target = self._collections.get(collection)
            return len(target.points) if target else 0

    def close(self) -> None:
        """Nothing to release; the data stays until the object is dropped."""

    def _ensure(self, name: str, dim: int) -> _Collection:
        if dim < 1:
            raise PermanentError(f"collection {name!r}: dimension must be positive, got {dim}")
        target = self._collections.get(name)
        if target is None:
            target = self._collections[name] = _Collection(dim=dim)
            logger.debug("memory store: created collection %r (dim %d)", name, dim)
        check_dim(dim, target.dim, name)
        return target


def _bm25(stored: dict[str, dict[int, float]], pids: Sequence[str], query: SparseVector) -> list[Ranked]:
    """The points of ``pids`` that share a term with ``query``, scored as Qdrant's IDF modifier does:
    over every point holding a sparse vector (hidden ones too), ``ln((N - n + 0.5) / (n + 0.5) + 1)``."""
    total = len(stored)
    frequency = {t: sum(1 for terms in stored.values() if t in terms) for t in query.indices}
    weights = {
        t: w * math.log((total - frequency[t] + 0.5) / (frequency[t] + 0.5) + 1.0)
        for t, w in zip(query.indices, query.values, strict=True)
    }
    found = []
    for pid in pids:
        terms = stored.get(pid)
        if terms is not None and not terms.keys().isdisjoint(weights):
            found.append(Ranked(pid, sum(w * terms[t] for t, w in weights.items() if t in terms)))
    return found


def _best(ranking: list[Ranked], limit: int) -> list[Ranked]:
    """The ``limit`` best of a ranking, as an engine returns them."""
    return sorted(ranking, key=lambda r: (-r.score, r.id))[:limit]


def _unit(vector: np.ndarray) -> np.ndarray:
    as64 = vector.astype(np.float64)
    norm = float(np.linalg.norm(as64))
    return as64 / norm if norm > 0 else as64
