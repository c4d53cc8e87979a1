"""VectorStore on qdrant-client: a Qdrant server, or the client's local mode.

Each DocuMind collection is one Qdrant collection named ``documind_<name>``
(odd names are hashed, see ``storage_name``): the unnamed dense vector (cosine
distance) and the sparse vector ``bm25`` with the IDF modifier, with a keyword
payload index on ``document_id`` so deleting a document is one filter delete.
Collections are created with the shards and replicas of :class:`.Replication`.
Writes use ``wait=True`` and wait for ``write_consistency_factor`` replicas (by
default all): when ``upsert`` returns, the points are searchable on every replica
(:mod:`.qdrant_replication` says what each setting guarantees).

A hybrid search is one batch of three queries, each filtered: the dense ranking,
the sparse ranking, and the sparse candidates scored by the dense query (their
cosine, for the hits' scores); :func:`.fusion.fuse` merges them and one
``retrieve`` brings the payloads of the top k. Collections created before hybrid
search have no sparse vector and are searched by the dense one alone.

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
from services.retriever.fusion import Fusion, Ranked, dense_relevance, fuse
from services.retriever.qdrant_replication import Replication
from services.retriever.sparse import SparseVector
from services.retriever.store import (
    SPARSE_VECTOR,
    as_matrix,
    as_query,
    check_dim,
    check_sparse,
    chunk_payload,
    payload_hit,
    point_id,
    storage_name,
)

logger = logging.getLogger(__name__)

COLLECTION_PREFIX = "documind_"
# Points per upsert request, to stay well under the server's request size limit.
UPSERT_BATCH = 256


class QdrantStore:
    """A VectorStore backed by a ``QdrantClient`` (server or local mode).

    ``replication``: how new collections are sharded and replicated, and the consistency
    of every read and write (:mod:`.qdrant_replication`).
    """

    def __init__(
        self, client: QdrantClient, *, dim_default: int = 384, replication: Replication | None = None
    ) -> None:
        if dim_default < 1:
            raise ValueError(f"dim_default must be positive, got {dim_default}")
        self._client = client
        self._dim_default = dim_default
        self._replication = replication or Replication()
        self._consistency = self._replication.read
        self._ordering = self._replication.ordering
        options = client.init_options
        self._local = options.get("location") == ":memory:" or options.get("path") is not None
        # Local mode is not thread-safe; a server client is.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._local else contextlib.nullcontext()
        )
        # Qdrant collection name -> vector size, for collections known to exist.
        self._dims: dict[str, int] = {}
        # Qdrant collection name -> whether it has the sparse vector (False: made before hybrid search).
        self._sparse: dict[str, bool] = {}
        self._told_dense_only: set[str] = set()

    @property
    def replication(self) -> Replication:
        return self._replication

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        timeout: int = 30,
        dim_default: int = 384,
        replication: Replication | None = None,
    ) -> QdrantStore:
        """A store on a Qdrant server (the version check is skipped so start-up never blocks on it)."""
        client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        return cls(client, dim_default=dim_default, replication=replication)

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
        qname = _qname(collection)
        with self._lock:
            dim = self._dim(qname)
            if dim is None:
                check_dim(matrix.shape[1], self._dim_default, collection)
                dim = self._create(collection, self._dim_default)
            check_dim(matrix.shape[1], dim, collection)
            with_sparse = sparse if self._sparse.get(qname) else None
            points = [
                models.PointStruct(
                    id=point_id(chunk.document_id, chunk.chunk_index),
                    vector=_vectors(row, with_sparse[i] if with_sparse is not None else None),
                    payload=chunk_payload(chunk),
                )
                for i, (chunk, row) in enumerate(zip(chunks, matrix, strict=True))
            ]
            with self._forget_on_error(qname, collection):
                for start in range(0, len(points), UPSERT_BATCH):
                    self._client.upsert(
                        qname, points=points[start : start + UPSERT_BATCH], wait=True, ordering=self._ordering
                    )
        logger.debug("qdrant: upserted %d points into %s", len(points), qname)

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
        qname = _qname(collection)
        with self._lock:
            dim = self._dim(qname)
            if dim is None or top_k <= 0:
                return []
            check_dim(query.shape[0], dim, collection)
            hybrid = sparse and fusion is not None and not fusion.dense_only and self._has_sparse(qname)
            try:
                with self._forget_on_error(qname, collection):
                    if hybrid:
                        assert sparse is not None and fusion is not None
                        return self._hybrid(qname, query, sparse, fusion=fusion, top_k=top_k, exclude=exclude)
                    response = self._client.query_points(
                        qname,
                        query=query.tolist(),
                        query_filter=_excluding(exclude),
                        limit=top_k,
                        with_payload=True,
                        with_vectors=False,
                        consistency=self._consistency,
                    )
            except PermanentError:
                raise
            except Exception:
                if not self._client.collection_exists(qname):
                    return []  # dropped by another process meanwhile
                raise
        relevance = dense_relevance([point.score for point in response.points])
        return [payload_hit(p.payload, p.score, r) for p, r in zip(response.points, relevance, strict=True)]

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
                    self._client.delete(qname, points_selector=selector, wait=True, ordering=self._ordering)
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

    def _hybrid(
        self,
        qname: str,
        query: np.ndarray,
        sparse: SparseVector,
        *,
        fusion: Fusion,
        top_k: int,
        exclude: Collection[str],
    ) -> list[Hit]:
        limit = fusion.limit(top_k)
        where = _excluding(exclude)
        dense = query.tolist()
        terms = models.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
        by_terms = models.Prefetch(query=terms, using=SPARSE_VECTOR, filter=where, limit=limit)
        rankings = self._client.query_batch_points(
            qname,
            [
                models.QueryRequest(query=dense, filter=where, limit=limit, with_payload=False),
                models.QueryRequest(
                    query=terms, using=SPARSE_VECTOR, filter=where, limit=limit, with_payload=False
                ),
                # The sparse candidates' cosines, for the hits' scores.
                models.QueryRequest(prefetch=by_terms, query=dense, limit=limit, with_payload=False),
            ],
            consistency=self._consistency,
        )
        nearest, matching, cosines = ([Ranked(str(p.id), p.score) for p in r.points] for r in rankings)
        fused = fuse(nearest, matching, fusion, top_k, {r.id: r.score for r in cosines})
        if not fused:
            return []
        records = self._client.retrieve(
            qname, ids=[f.id for f in fused], with_payload=True, consistency=self._consistency
        )
        payloads = {str(record.id): record.payload for record in records}
        # A point deleted between the two calls is left out.
        return [payload_hit(payloads[f.id], f.cosine, f.relevance) for f in fused if f.id in payloads]

    def _has_sparse(self, qname: str) -> bool:
        if self._sparse.get(qname):
            return True
        if qname not in self._told_dense_only:
            self._told_dense_only.add(qname)
            logger.info(
                "qdrant: collection %s was created before hybrid search (no sparse vectors): "
                "searched by dense vectors only; index its documents into a new collection for hybrid",
                qname,
            )
        return False

    def _dim(self, qname: str) -> int | None:
        """Vector size of an existing collection; None if it does not exist."""
        dim = self._dims.get(qname)
        if dim is not None:
            return dim
        if not self._client.collection_exists(qname):
            return None
        params = self._client.get_collection(qname).config.params
        vectors = params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise PermanentError(f"Qdrant collection {qname} is not a single unnamed-vector collection")
        self._dims[qname] = vectors.size
        self._sparse[qname] = SPARSE_VECTOR in (params.sparse_vectors or {})
        return vectors.size

    def _create(self, name: str, dim: int) -> int:
        if dim < 1:
            raise PermanentError(f"collection {name!r}: dimension must be positive, got {dim}")
        qname = _qname(name)
        replication = self._replication
        try:
            self._client.create_collection(
                qname,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                sparse_vectors_config={
                    SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
                shard_number=replication.shard_number,
                replication_factor=replication.replication_factor,
                write_consistency_factor=replication.write_factor,
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
        self._sparse[qname] = True
        logger.info(
            "qdrant: created collection %s (dim %d, with sparse vectors; %s)",
            qname,
            dim,
            replication.describe(),
        )
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


def _vectors(row: np.ndarray, sparse: SparseVector | None) -> list[float] | dict[str, Any]:
    """A point's vectors: the dense one alone, or with its (non-empty) sparse one."""
    dense: list[float] = row.tolist()
    if not sparse:
        return dense
    terms = models.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
    return {"": dense, SPARSE_VECTOR: terms}


def _excluding(document_ids: Collection[str]) -> models.Filter | None:
    """A filter that drops the points of these documents, or None for no filter."""
    if not document_ids:
        return None
    return models.Filter(
        must_not=[models.FieldCondition(key="document_id", match=models.MatchAny(any=sorted(document_ids)))]
    )
