"""A brute-force in-memory VectorStore: deterministic, for unit tests."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from libs.common.errors import PermanentError
from libs.common.models import Chunk, Hit
from services.retriever.store import point_id
from services.retriever.stores import as_matrix, as_query, check_dim, chunk_payload, payload_hit

logger = logging.getLogger(__name__)


@dataclass
class _Collection:
    dim: int
    # point id -> (unit-length vector, payload); insertion order breaks score ties.
    points: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)


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
        self, collection: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]] | np.ndarray
    ) -> None:
        matrix = as_matrix(vectors, len(chunks), collection)
        if not chunks:
            return
        with self._lock:
            existing = self._collections.get(collection)
            check_dim(matrix.shape[1], existing.dim if existing else self._dim_default, collection)
            target = self._ensure(collection, matrix.shape[1])
            for chunk, row in zip(chunks, matrix, strict=True):
                target.points[point_id(chunk.document_id, chunk.chunk_index)] = (
                    _unit(row),
                    chunk_payload(chunk),
                )

    def search(
        self,
        collection: str,
        vector: Sequence[float] | np.ndarray,
        top_k: int,
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        query = as_query(vector, collection)
        with self._lock:
            target = self._collections.get(collection)
            if target is None or top_k <= 0:
                return []
            check_dim(query.shape[0], target.dim, collection)
            if not target.points:
                return []
            entries = [e for e in target.points.values() if e[1]["document_id"] not in exclude]
            if not entries:
                return []
        matrix = np.stack([unit for unit, _ in entries])
        scores = matrix @ _unit(query)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [payload_hit(entries[i][1], float(scores[i])) for i in order]

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


def _unit(vector: np.ndarray) -> np.ndarray:
    as64 = vector.astype(np.float64)
    norm = float(np.linalg.norm(as64))
    return as64 / norm if norm > 0 else as64
