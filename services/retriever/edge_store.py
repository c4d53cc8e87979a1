"""VectorStore on qdrant-edge: Qdrant's engine in-process, one shard per collection.

Layout under ``path``::

    .lock                 held (flock) while an EdgeStore has the directory open
    <storage name>/       one EdgeShard per DocuMind collection
    .tmp-* / .trash-*     half-created / half-deleted shards, swept at start-up

A shard is created in a temporary directory and renamed into place, and dropped
by renaming it away before deleting it, so a collection directory is always
either complete or absent, whatever moment the process dies.

Vectors: the unnamed dense one (cosine, HNSW) and, in collections created since
hybrid search, the sparse ``bm25`` one with the IDF modifier. A hybrid search is
one ``query_batch`` of three filtered queries (dense ranking, sparse ranking, the
sparse candidates' cosines) merged by :func:`.fusion.fuse`, then one
``retrieve`` of the top k's payloads. Older collections are searched dense only.

Durability: every update goes to the shard's write-ahead log before ``update``
returns, so an upsert that returned survives the process being killed (the WAL
is replayed when the shard is loaded). ``flush()`` (segments written out, the
WAL trimmed) costs about 0.1 s, more than the update itself: the maintenance
thread flushes a shard within ``FLUSH_S`` of its first unflushed write instead
of after every write, as does ``close()``; a power cut may lose that last second.

Optimisation: qdrant-edge runs no background threads, so segments are merged,
HNSW-indexed and vacuumed only when ``optimize()`` is called, and it holds the
GIL while it works (the whole process stalls for an index build). This store
calls it when a collection has taken ``optimize_points`` points since its last
run (a bulk load is indexed in steps, each stall bounded), and once the store
has gone ``optimize_idle_s`` seconds without a write or a search (from the
maintenance thread), so what a load leaves behind is indexed when nobody waits.
Until then new points sit in plain segments that searches scan in full: correct,
only slower (about 7 ms for 100k 384-d points, bench/RESULTS.md).

Only one EdgeStore may have a directory open at a time (the engine holds a lock
on each shard's WAL), so several retriever replicas need the ``qdrant`` backend.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger(__name__)

_CONFIG_FILE = "edge_config.json"
_LOCK_FILE = ".lock"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"


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
# Written points that trigger an optimisation inside the write (each such step took
# 12-22 s for 20k 384-d points on a busy 2-core machine), and how long the store must go
# without a write or a search before the maintenance thread optimises what is left.
OPTIMIZE_POINTS = 20_000
OPTIMIZE_IDLE_S = 5.0
# A shard is flushed this long after its first unflushed write, at the latest.
FLUSH_S = 1.0


@dataclass
class _Open:
    shard: EdgeShard
    # Vector size, read from the shard's config; None if it could not be read
    # (the engine's own dimension check still applies then).
    dim: int | None
    # Whether the shard has the sparse vector (False: created before hybrid search).
    sparse: bool = True
    # Points written since the last optimisation.
    unoptimized: int = 0
    # When the first write since the last flush was; None when flushed.
    dirty_since: float | None = None
    told_dense_only: bool = False


class EdgeStore:
    """One qdrant-edge shard per collection under ``path``; thread-safe.

    ``optimize``: False leaves optimisation to :meth:`optimize` calls (benchmarks);
    ``optimize_points`` / ``optimize_idle_s``: see the module docstring (0 turns
    either off). ``hnsw_ef``: candidates a dense search keeps while walking the graph.
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
        self._dir_lock = _lock_directory(self._root)
        self._dim_default = dim_default
        self._optimize_points = optimize_points if optimize else 0
        self._optimize_idle_s = optimize_idle_s if optimize else 0.0
        self._hnsw = HnswIndexConfig(
            m=hnsw_m, ef_construct=hnsw_ef_construct, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
        )
        self._params = SearchParams(hnsw_ef=hnsw_ef)
        # One lock for everything: shards are opened, closed and deleted under
        # it, so no call can meet a shard that another thread just closed.
        self._lock = threading.Lock()
        self._shards: dict[str, _Open] = {}
        self._closed = False
        self._wake = threading.Condition(self._lock)
        # When the store was last written or searched: idle optimisation waits for quiet.
        self._last_used = time.monotonic()
        self._sweep()
        self._maintenance = threading.Thread(target=self._maintain, name="edge-maintenance", daemon=True)
        self._maintenance.start()

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
            self._persist(collection, opened, len(points))
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
            self._last_used = time.monotonic()
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
            return opened is not None and self._run_optimize(collection, opened)

    def delete_document(self, collection: str, document_id: str) -> None:
        with self._lock:
            opened = self._get(collection)
            if opened is None:
                return
            match = Filter(must=[FieldCondition(key="document_id", match=MatchValue(document_id))])
            opened.shard.update(UpdateOperation.delete_points_by_filter(match))
            # A delete counts as one write: vacuuming waits for an idle moment.
            self._persist(collection, opened, 1)
        logger.debug("edge: deleted document %r from %r", document_id, collection)

    def delete_collection(self, name: str) -> None:
        with self._lock:
            self._check_open()
            slug = storage_name(name)
            opened = self._shards.pop(slug, None)
            if opened is not None:
                opened.shard.close()
            directory = self._root / slug
            if not directory.exists():
                return
            trash = self._root / f"{_TRASH_PREFIX}{slug}-{uuid.uuid4().hex}"
            os.replace(directory, trash)
            _fsync_directory(self._root)
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
            self._wake.notify_all()
        self._maintenance.join()
        with self._lock:
            shards, self._shards = self._shards, {}
            for slug, opened in shards.items():
                try:
                    opened.shard.flush()
                    opened.shard.close()
                except Exception:
                    logger.exception("edge: closing shard %s failed", slug)
            self._dir_lock.close()

    def _get(self, name: str, create_dim: int | None = None) -> _Open | None:
        """The open shard of a collection; created if absent and create_dim is given."""
        self._check_open()
        slug = storage_name(name)
        opened = self._shards.get(slug)
        if opened is not None:
            return opened
        directory = self._root / slug
        if (directory / _CONFIG_FILE).is_file():
            dim, sparse = _read_config(directory)
            opened = _Open(EdgeShard.load(str(directory)), dim, sparse)
        elif create_dim is None:
            return None
        else:
            self._create(name, directory, create_dim)
            opened = _Open(EdgeShard.load(str(directory)), create_dim)
        self._shards[slug] = opened
        return opened

    def _hybrid(
        self,
        opened: _Open,
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

    def _has_sparse(self, collection: str, opened: _Open) -> bool:
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
        staging = self._root / f"{_TMP_PREFIX}{directory.name}-{uuid.uuid4().hex}"
        config = EdgeConfig(
            vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine),
            sparse_vectors={SPARSE_VECTOR: EdgeSparseVectorParams(modifier=Modifier.Idf)},
            hnsw_config=self._hnsw,
            optimizers=EdgeOptimizersConfig(default_segment_number=SEGMENTS),
        )
        shard = EdgeShard.create(str(staging), config)
        try:
            shard.update(UpdateOperation.create_field_index("document_id", PayloadSchemaType.Keyword))
            shard.flush()
        finally:
            shard.close()
        os.replace(staging, directory)
        _fsync_directory(self._root)
        logger.info("edge: created collection %r (dim %d) at %s", name, dim, directory)

    def _persist(self, collection: str, opened: _Open, written: int) -> None:
        """Note a write (the maintenance thread flushes it); optimise once enough points came in."""
        now = time.monotonic()
        opened.unoptimized += written
        self._last_used = now
        if opened.dirty_since is None:
            opened.dirty_since = now
            self._wake.notify_all()
        if self._optimize_points and opened.unoptimized >= self._optimize_points:
            self._run_optimize(collection, opened)

    def _run_optimize(self, collection: str, opened: _Open) -> bool:
        started = time.monotonic()
        pending, opened.unoptimized = opened.unoptimized, 0
        changed = opened.shard.optimize()
        opened.shard.flush()
        opened.dirty_since = None
        if changed:
            logger.info(
                "edge: optimised %s (%d points written since the last time) in %.1f s",
                collection,
                pending,
                time.monotonic() - started,
            )
        return changed

    def _maintain(self) -> None:
        """Maintenance thread: flush each shard FLUSH_S after its first unflushed write, and
        optimise what was written once the store has gone optimize_idle_s unused (if that is on)."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                wake: list[float] = []
                for slug, opened in self._shards.items():
                    try:
                        if self._optimize_idle_s and opened.unoptimized:
                            if now - self._last_used >= self._optimize_idle_s:
                                self._run_optimize(slug, opened)
                            else:
                                wake.append(self._last_used + self._optimize_idle_s)
                        if opened.dirty_since is not None:
                            if now - opened.dirty_since >= FLUSH_S:
                                opened.shard.flush()
                                opened.dirty_since = None
                            else:
                                wake.append(opened.dirty_since + FLUSH_S)
                    except Exception:
                        logger.exception("edge: flushing or optimising %s failed", slug)
                self._wake.wait(timeout=max(min(wake) - now, 0.01) if wake else None)

    def _check_open(self) -> None:
        if self._closed:
            raise RetryableError("the edge vector store is closed")

    def _sweep(self) -> None:
        for entry in self._root.iterdir():
            if entry.is_dir() and entry.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
                logger.info("edge: removing leftover %s", entry)
                shutil.rmtree(entry, ignore_errors=True)


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


def _read_config(directory: Path) -> tuple[int | None, bool]:
    """The shard's vector size (None if unreadable) and whether it has the sparse vector."""
    try:
        config = json.loads((directory / _CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("edge: cannot read %s", directory / _CONFIG_FILE)
        return None, False
    sparse = isinstance(config, dict) and SPARSE_VECTOR in (config.get("sparse_vectors") or {})
    try:
        return int(config["vectors"][""]["size"]), sparse
    except (KeyError, TypeError, ValueError):
        logger.warning("edge: cannot read the vector size from %s", directory / _CONFIG_FILE)
        return None, sparse


def _vectors(
    row: np.ndarray, sparse: SparseVector | None
) -> list[float] | dict[str, list[float] | EdgeSparseVector | list[list[float]]]:
    """A point's vectors: the dense one alone, or with its (non-empty) sparse one."""
    dense: list[float] = row.tolist()
    if not sparse:
        return dense
    return {"": dense, SPARSE_VECTOR: EdgeSparseVector(list(sparse.indices), list(sparse.values))}


def _lock_directory(root: Path) -> IO[str]:
    handle = (root / _LOCK_FILE).open("a", encoding="utf-8")
    if sys.platform != "win32":
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RuntimeError(
                f"{root} is in use by another EdgeStore: the edge store allows one retriever "
                "process per directory (use vector_store=qdrant for several replicas)"
            ) from None
    return handle


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (best effort, POSIX only)."""
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _excluding(document_ids: Collection[str]) -> Filter | None:
    """A filter that drops the points of these documents, or None for no filter."""
    if not document_ids:
        return None
    return Filter(must_not=[FieldCondition(key="document_id", match=MatchAny(sorted(document_ids)))])
