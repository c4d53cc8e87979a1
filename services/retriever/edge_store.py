"""VectorStore on qdrant-edge: Qdrant's engine in-process, one shard per collection.

One shard directory per collection under ``path``, created and dropped atomically,
and one process at a time: :mod:`.edge_layout`.

Vectors: the unnamed dense one (cosine, HNSW) and, in collections created since
hybrid search, the sparse ``bm25`` one with the IDF modifier. A hybrid search is
one ``query_batch`` of three filtered queries (dense ranking, sparse ranking, the
sparse candidates' cosines) merged by :func:`.fusion.fuse`, then one
``retrieve`` of the top k's payloads. Older collections are searched dense only.

Durability (the WAL, flushes) and optimisation (when segments are merged and
HNSW-indexed, and what searches meet until then): :mod:`.edge_maintenance`.

Only one EdgeStore may have a directory open at a time (a second one, in any
process, fails with :class:`.edge_layout.EdgeStoreInUse`), so several retriever
replicas need the ``qdrant`` backend.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    MatchAny,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    Point,
    Prefetch,
    Query,
    QueryBatchRequest,
    QueryRequest,
    SearchParams,
    UpdateOperation,
)
from qdrant_edge import SparseVector as EdgeSparseVector

from libs.common.errors import PermanentError, RetryableError
from libs.common.models import Chunk, Hit
from services.retriever import edge_layout
from services.retriever.edge_maintenance import OPTIMIZE_IDLE_S, OPTIMIZE_POINTS, Maintenance, OpenShard
from services.retriever.fusion import Fusion, Ranked, dense_relevance, fuse
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

# HNSW graph: 16 links per node, 128 candidates while building; a search keeps hnsw_ef
# candidates. On 100k clustered 384-d vectors recall@10 against exact search was 0.999
# at ef 32 and 1.000 from 64 up, at about 1 ms (bench/RESULTS.md); 128 leaves a margin for
# real embeddings, whose neighbourhoods are less clear-cut.
HNSW_M = 16
HNSW_EF_CONSTRUCT = 128
HNSW_EF = 128
# Below this many KB of vectors a filtered search scans instead of walking the graph.
FULL_SCAN_THRESHOLD_KB = 10_000
# Segments a shard may keep before the optimizer merges the smallest. The engine's
# default (about one per CPU) merges every newly indexed segment into the big one,
# rebuilding the whole HNSW graph on each optimisation: a load's indexing time grows
# with the square of its size (bench/RESULTS.md). With 8, each step indexes what it
# brings and merges happen only among the smallest segments.
SEGMENTS = 8


class EdgeStore:
    """One qdrant-edge shard per collection under ``path``; thread-safe.

    ``optimize``: False leaves optimisation to :meth:`optimize` calls (benchmarks);
    ``optimize_points`` / ``optimize_idle_s``: when a collection is optimised in the
    background, see :mod:`.edge_maintenance` (``optimize_points`` 0 turns it off).
    ``hnsw_ef``: candidates a dense search keeps while walking the graph.
    """

    def __init__(
        self,
        path: Path,
        dim_default: int = 384,
        *,
        optimize: bool = True,
        optimize_points: int = OPTIMIZE_POINTS,
        optimize_idle_s: float = OPTIMIZE_IDLE_S,
        hnsw_m: int = HNSW_M,
        hnsw_ef_construct: int = HNSW_EF_CONSTRUCT,
        hnsw_ef: int = HNSW_EF,
    ) -> None:
        if dim_default < 1:
            raise ValueError(f"dim_default must be positive, got {dim_default}")
        self._root = Path(path)
        self._root.mkdir(parents=True, exist_ok=True)
        self._dir_lock = edge_layout.DirectoryLock(self._root)
        self._dim_default = dim_default
        self._hnsw = HnswIndexConfig(
            m=hnsw_m, ef_construct=hnsw_ef_construct, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
        )
        self._params = SearchParams(hnsw_ef=hnsw_ef)
        # One lock for everything: shards are opened, closed and deleted under
        # it, so no call can meet a shard that another thread just closed.
        self._lock = threading.Lock()
        self._shards: dict[str, OpenShard] = {}
        self._closed = False
        edge_layout.sweep(self._root)
        self._maintenance = Maintenance(
            self._lock,
            self._shards,
            self._root,
            optimize_points=optimize_points if optimize else 0,
            optimize_idle_s=optimize_idle_s,
        )

    def ensure_collection(self, name: str, dim: int) -> None:
        with self._lock:
            opened = self._get(name, create_dim=dim)
            if opened is not None and opened.dim is not None:
                check_dim(dim, opened.dim, name)

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
            opened = self._get(collection)
            if opened is None:
                # Fail before creating anything for vectors that cannot go in.
                check_dim(matrix.shape[1], self._dim_default, collection)
                opened = self._get(collection, create_dim=self._dim_default)
            assert opened is not None
            if opened.dim is not None:
                check_dim(matrix.shape[1], opened.dim, collection)
            with_sparse = sparse if opened.sparse else None
            points = [
                Point(
                    point_id(chunk.document_id, chunk.chunk_index),
                    _vectors(row, with_sparse[i] if with_sparse is not None else None),
                    chunk_payload(chunk),
                )
                for i, (chunk, row) in enumerate(zip(chunks, matrix, strict=True))
            ]
            with _dimension_errors(collection):
                opened.shard.update(UpdateOperation.upsert_points(points))
            self._maintenance.wrote(opened, len(points))
        logger.debug("edge: upserted %d points into %r", len(points), collection)

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
            opened = self._get(collection)
            if opened is None or top_k <= 0:
                return []
            if opened.dim is not None:
                check_dim(query.shape[0], opened.dim, collection)
            if (
                sparse
                and fusion is not None
                and not fusion.dense_only
                and self._has_sparse(collection, opened)
            ):
                with _dimension_errors(collection):
                    return self._hybrid(opened, query, sparse, fusion=fusion, top_k=top_k, exclude=exclude)
            request = QueryRequest(
                limit=top_k,
                query=Query.Nearest(query.tolist()),
                filter=_excluding(exclude),
                params=self._params,
                with_payload=True,
                with_vector=False,
            )
            with _dimension_errors(collection):
                scored = opened.shard.query(request)
        relevance = dense_relevance([point.score for point in scored])
        return [payload_hit(p.payload, p.score, r) for p, r in zip(scored, relevance, strict=True)]

    def optimize(self, collection: str) -> bool:
        """Optimise one collection now (merge, index, vacuum); True if anything changed."""
        with self._lock:
            opened = self._get(collection)
            return opened is not None and self._maintenance.optimize(collection, opened)

    def wait_optimised(self, collection: str, timeout: float) -> bool:
        """Wait until the collection's background optimisation, if one is due, has landed."""
        with self._lock:
            opened = self._get(collection)
            return opened is None or self._maintenance.wait_optimised(opened, timeout)

    def delete_document(self, collection: str, document_id: str) -> None:
        with self._lock:
            opened = self._get(collection)
            if opened is None:
                return
            match = Filter(must=[FieldCondition(key="document_id", match=MatchValue(document_id))])
            opened.shard.update(UpdateOperation.delete_points_by_filter(match))
            # A delete counts as one write: vacuuming waits for an idle moment.
            self._maintenance.wrote(opened, 1)
        logger.debug("edge: deleted document %r from %r", document_id, collection)

    def delete_collection(self, name: str) -> None:
        with self._lock:
            self._check_open()
            slug = storage_name(name)
            opened = self._shards.pop(slug, None)
            if opened is not None:
                opened.shard.close()
            trash = edge_layout.move_to_trash(self._root / slug)
        if trash is None:
            return
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("edge: dropped collection %r", name)

    def count(self, collection: str) -> int:
        with self._lock:
            opened = self._get(collection)
            return 0 if opened is None else opened.shard.count(CountRequest(exact=True))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._maintenance.stop()
        with self._lock:
            shards = dict(self._shards)
            self._shards.clear()
            for slug, opened in shards.items():
                try:
                    opened.shard.flush()
                    opened.shard.close()
                except Exception:
                    logger.exception("edge: closing shard %s failed", slug)
            self._dir_lock.release()

    def _get(self, name: str, create_dim: int | None = None) -> OpenShard | None:
        """The open shard of a collection; created if absent and create_dim is given."""
        self._check_open()
        slug = storage_name(name)
        opened = self._shards.get(slug)
        if opened is not None:
            return opened
        directory = self._root / slug
        if edge_layout.is_shard(directory):
            dim, sparse = edge_layout.read_config(directory, SPARSE_VECTOR)
            opened = OpenShard(EdgeShard.load(str(directory)), dim, sparse)
        elif create_dim is None:
            return None
        else:
            self._create(name, directory, create_dim)
            opened = OpenShard(EdgeShard.load(str(directory)), create_dim)
        self._shards[slug] = opened
        return opened

    def _hybrid(
        self,
        opened: OpenShard,
        query: np.ndarray,
        sparse: SparseVector,
        *,
        fusion: Fusion,
        top_k: int,
        exclude: Collection[str],
    ) -> list[Hit]:
        limit = fusion.limit(top_k)
        where = _excluding(exclude)
        dense = Query.Nearest(query.tolist())
        terms = Query.Nearest(
            EdgeSparseVector(list(sparse.indices), list(sparse.values)), using=SPARSE_VECTOR
        )
        by_terms = Prefetch(limit=limit, query=terms, filter=where)
        nearest, matching, cosines = (
            [Ranked(str(point.id), point.score) for point in ranking]
            for ranking in opened.shard.query_batch(
                QueryBatchRequest(
                    [
                        QueryRequest(limit=limit, query=dense, filter=where, params=self._params),
                        QueryRequest(limit=limit, query=terms, filter=where),
                        # The sparse candidates' cosines, for the hits' scores.
                        QueryRequest(limit=limit, prefetches=[by_terms], query=dense),
                    ]
                )
            )
        )
        fused = fuse(nearest, matching, fusion, top_k, {r.id: r.score for r in cosines})
        if not fused:
            return []
        records = opened.shard.retrieve([f.id for f in fused], with_payload=True, with_vector=False)
        payloads = {str(record.id): record.payload for record in records}
        return [payload_hit(payloads[f.id], f.cosine, f.relevance) for f in fused if f.id in payloads]

    def _has_sparse(self, collection: str, opened: OpenShard) -> bool:
        if not opened.sparse and not opened.told_dense_only:
            opened.told_dense_only = True
            logger.info(
                "edge: collection %r was created before hybrid search (no sparse vectors): searched by "
                "dense vectors only; index its documents into a new collection for hybrid search",
                collection,
            )
        return opened.sparse

    def _create(self, name: str, directory: Path, dim: int) -> None:
        if dim < 1:
            raise PermanentError(f"collection {name!r}: dimension must be positive, got {dim}")
        config = EdgeConfig(
            vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine),
            sparse_vectors={SPARSE_VECTOR: EdgeSparseVectorParams(modifier=Modifier.Idf)},
            hnsw_config=self._hnsw,
            optimizers=EdgeOptimizersConfig(default_segment_number=SEGMENTS),
        )

        def build(staging: Path) -> None:
            shard = EdgeShard.create(str(staging), config)
            try:
                shard.update(UpdateOperation.create_field_index("document_id", PayloadSchemaType.Keyword))
                shard.flush()
            finally:
                shard.close()

        edge_layout.create_atomically(directory, build)
        logger.info("edge: created collection %r (dim %d) at %s", name, dim, directory)

    def _check_open(self) -> None:
        if self._closed:
            raise RetryableError("the edge vector store is closed")


@contextmanager
def _dimension_errors(collection: str) -> Iterator[None]:
    """The engine's dimension errors (plain Exception) as PermanentError."""
    try:
        yield
    except PermanentError:
        raise
    except Exception as exc:
        if "dimension error" in str(exc).lower():
            raise PermanentError(f"collection {collection!r}: {exc}") from exc
        raise


def _vectors(
    row: np.ndarray, sparse: SparseVector | None
) -> list[float] | dict[str, list[float] | EdgeSparseVector | list[list[float]]]:
    """A point's vectors: the dense one alone, or with its (non-empty) sparse one."""
    dense: list[float] = row.tolist()
    if not sparse:
        return dense
    return {"": dense, SPARSE_VECTOR: EdgeSparseVector(list(sparse.indices), list(sparse.values))}


def _excluding(document_ids: Collection[str]) -> Filter | None:
    """A filter that drops the points of these documents, or None for no filter."""
    if not document_ids:
        return None
    return Filter(must_not=[FieldCondition(key="document_id", match=MatchAny(sorted(document_ids)))])
