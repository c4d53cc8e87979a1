"""VectorStore on qdrant-client: a Qdrant server, or the client's local mode.

Each DocuMind collection is one Qdrant collection named ``documind_<name>``
(odd names are hashed, see ``storage_name``), cosine distance, with a keyword
payload index on ``document_id`` so deleting a document is one filter delete.
Writes use ``wait=True``: when ``upsert`` returns, the points are searchable.

Several retriever replicas may share one server. Vector sizes are cached per
process; a collection dropped by another process is noticed on the next error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from libs.common.errors import PermanentError
from libs.common.models import Chunk, Hit
from services.retriever.store import point_id
from services.retriever.stores import (
    as_matrix,
    as_query,
    check_dim,
    chunk_payload,
    payload_hit,
    storage_name,
)

logger = logging.getLogger(__name__)

COLLECTION_PREFIX = "documind_"
# Points per upsert request, to stay well under the server's request size limit.
UPSERT_BATCH = 256


class QdrantStore:
    """A VectorStore backed by a ``QdrantClient`` (server or local mode)."""

    def __init__(self, client: QdrantClient, *, dim_default: int = 384) -> None:
        if dim_default < 1:
            raise ValueError(f"dim_default must be positive, got {dim_default}")
        self._client = client
        self._dim_default = dim_default
        options = client.init_options
        self._local = options.get("location") == ":memory:" or options.get("path") is not None
        # Local mode is not thread-safe; a server client is.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._local else contextlib.nullcontext()
        )
        # Qdrant collection name -> vector size, for collections known to exist.
        self._dims: dict[str, int] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        timeout: int = 30,
        dim_default: int = 384,
    ) -> QdrantStore:
        """A store on a Qdrant server (the version check is skipped so start-up never blocks on it)."""
        client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        return cls(client, dim_default=dim_default)

    @classmethod
    def local(cls, location: str | Path = ":memory:", *, dim_default: int = 384) -> QdrantStore:
        """qdrant-client's local mode: ``":memory:"`` or a directory (exact search, small data)."""
        if str(location) == ":memory:":
            client = QdrantClient(location=":memory:")
        else:
            client = QdrantClient(path=str(location), force_disable_check_same_thread=True)
        return cls(client, dim_default=dim_default)

    def ensure_collection(self, name: str, dim: int) -> None:
        with self._lock:
            existing = self._dim(_qname(name))
            if existing is None:
                self._create(name, dim)
            else:
                check_dim(dim, existing, name)

    def upsert(
        self, collection: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]] | np.ndarray
    ) -> None:
        matrix = as_matrix(vectors, len(chunks), collection)
        if not chunks:
            return
        qname = _qname(collection)
        points = [
            models.PointStruct(
                id=point_id(chunk.document_id, chunk.chunk_index),
                vector=row.tolist(),
                payload=chunk_payload(chunk),
            )
            for chunk, row in zip(chunks, matrix, strict=True)
        ]
        with self._lock:
            dim = self._dim(qname)
            if dim is None:
                check_dim(matrix.shape[1], self._dim_default, collection)
                dim = self._create(collection, self._dim_default)
            check_dim(matrix.shape[1], dim, collection)
            with self._forget_on_error(qname, collection):
                for start in range(0, len(points), UPSERT_BATCH):
                    self._client.upsert(qname, points=points[start : start + UPSERT_BATCH], wait=True)
        logger.debug("qdrant: upserted %d points into %s", len(points), qname)

    def search(
        self,
        collection: str,
        vector: Sequence[float] | np.ndarray,
        top_k: int,
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        query = as_query(vector, collection)
        qname = _qname(collection)
        with self._lock:
            dim = self._dim(qname)
            if dim is None or top_k <= 0:
                return []
            check_dim(query.shape[0], dim, collection)
            try:
                with self._forget_on_error(qname, collection):
                    response = self._client.query_points(
                        qname,
                        query=query.tolist(),
                        query_filter=_excluding(exclude),
                        limit=top_k,
                        with_payload=True,
                        with_vectors=False,
                    )
            except PermanentError:
                raise
            except Exception:
                if not self._client.collection_exists(qname):
                    return []  # dropped by another process meanwhile
                raise
        return [payload_hit(point.payload, point.score) for point in response.points]

    def delete_document(self, collection: str, document_id: str) -> None:
        qname = _qname(collection)
        selector = models.FilterSelector(
            filter=models.Filter(
                must=[models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))]
            )
        )
        with self._lock:
            if self._dim(qname) is None:
                return
            try:
                with self._forget_on_error(qname, collection):
                    self._client.delete(qname, points_selector=selector, wait=True)
            except Exception:
                if not self._client.collection_exists(qname):
                    return
                raise
        logger.debug("qdrant: deleted document %r from %s", document_id, qname)

    def delete_collection(self, name: str) -> None:
        qname = _qname(name)
        with self._lock:
            self._dims.pop(qname, None)
            if self._client.delete_collection(qname):
                logger.info("qdrant: dropped collection %s", qname)

    def count(self, collection: str) -> int:
        qname = _qname(collection)
        with self._lock:
            if self._dim(qname) is None:
                return 0
            try:
                with self._forget_on_error(qname, collection):
                    return self._client.count(qname, exact=True).count
            except Exception:
                if not self._client.collection_exists(qname):
                    return 0
                raise

    def close(self) -> None:
        with self._lock:
            self._dims.clear()
            self._client.close()

    def _dim(self, qname: str) -> int | None:
        """Vector size of an existing collection; None if it does not exist."""
        dim = self._dims.get(qname)
        if dim is not None:
            return dim
        if not self._client.collection_exists(qname):
            return None
        vectors = self._client.get_collection(qname).config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise PermanentError(f"Qdrant collection {qname} is not a single unnamed-vector collection")
        self._dims[qname] = vectors.size
        return vectors.size

    def _create(self, name: str, dim: int) -> int:
        if dim < 1:
            raise PermanentError(f"collection {name!r}: dimension must be positive, got {dim}")
        qname = _qname(name)
        try:
            self._client.create_collection(
                qname, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
            )
        except Exception:
            # Another replica may have created it first; anything else is re-raised.
            existing = self._dim(qname)
            if existing is None:
                raise
            check_dim(dim, existing, name)
            return existing
        if not self._local:  # local mode ignores payload indexes and warns about them
            self._client.create_payload_index(
                qname, field_name="document_id", field_schema=models.PayloadSchemaType.KEYWORD, wait=True
            )
        self._dims[qname] = dim
        logger.info("qdrant: created collection %s (dim %d)", qname, dim)
        return dim

    @contextlib.contextmanager
    def _forget_on_error(self, qname: str, collection: str) -> Iterator[None]:
        """Drop the cached size on failure (the collection may be gone) and name dimension errors."""
        try:
            yield
        except Exception as exc:
            self._dims.pop(qname, None)
            if "dimension error" in str(exc).lower():
                raise PermanentError(f"collection {collection!r}: {exc}") from exc
            raise


def _qname(name: str) -> str:
    return COLLECTION_PREFIX + storage_name(name)


def _excluding(document_ids: Collection[str]) -> models.Filter | None:
    """A filter that drops the points of these documents, or None for no filter."""
    if not document_ids:
        return None
    return models.Filter(
        must_not=[models.FieldCondition(key="document_id", match=models.MatchAny(any=sorted(document_ids)))]
    )
