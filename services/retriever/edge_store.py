"""VectorStore on qdrant-edge: Qdrant's engine in-process, one shard per collection.

Layout under ``path``::

    .lock                 held (flock) while an EdgeStore has the directory open
    <storage name>/       one EdgeShard per DocuMind collection
    .tmp-* / .trash-*     half-created / half-deleted shards, swept at start-up

A shard is created in a temporary directory and renamed into place, and dropped
by renaming it away before deleting it, so a collection directory is always
either complete or absent, whatever moment the process dies.

Durability: every update goes to the shard's write-ahead log before ``update``
returns, and each write is followed by ``flush()``, so an upsert that returned
survives the process being killed. qdrant-edge runs no background threads:
optimisation (building the HNSW index once a segment passes the indexing
threshold, vacuuming deleted points) happens only when ``optimize()`` is called,
which this store does after each write. ``optimize()`` holds the GIL while it
works, which stalls the whole process for as long as an index build takes.

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
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    MatchAny,
    MatchValue,
    PayloadSchemaType,
    Point,
    Query,
    QueryRequest,
    UpdateOperation,
)

from libs.common.errors import PermanentError, RetryableError
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

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger(__name__)

_CONFIG_FILE = "edge_config.json"
_LOCK_FILE = ".lock"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"


@dataclass
class _Open:
    shard: EdgeShard
    # Vector size, read from the shard's config; None if it could not be read
    # (the engine's own dimension check still applies then).
    dim: int | None


class EdgeStore:
    """One qdrant-edge shard per collection under ``path``; thread-safe."""

    def __init__(self, path: Path, dim_default: int = 384, *, optimize: bool = True) -> None:
        if dim_default < 1:
            raise ValueError(f"dim_default must be positive, got {dim_default}")
        self._root = Path(path)
        self._root.mkdir(parents=True, exist_ok=True)
        self._dir_lock = _lock_directory(self._root)
        self._dim_default = dim_default
        self._optimize = optimize
        # One lock for everything: shards are opened, closed and deleted under
        # it, so no call can meet a shard that another thread just closed.
        self._lock = threading.Lock()
        self._shards: dict[str, _Open] = {}
        self._closed = False
        self._sweep()

    def ensure_collection(self, name: str, dim: int) -> None:
        with self._lock:
            opened = self._get(name, create_dim=dim)
            if opened is not None and opened.dim is not None:
                check_dim(dim, opened.dim, name)

    def upsert(
        self, collection: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]] | np.ndarray
    ) -> None:
        matrix = as_matrix(vectors, len(chunks), collection)
        if not chunks:
            return
        points = [
            Point(point_id(chunk.document_id, chunk.chunk_index), row.tolist(), chunk_payload(chunk))
            for chunk, row in zip(chunks, matrix, strict=True)
        ]
        with self._lock:
            opened = self._get(collection)
            if opened is None:
                # Fail before creating anything for vectors that cannot go in.
                check_dim(matrix.shape[1], self._dim_default, collection)
                opened = self._get(collection, create_dim=self._dim_default)
            assert opened is not None
            if opened.dim is not None:
                check_dim(matrix.shape[1], opened.dim, collection)
            with _dimension_errors(collection):
                opened.shard.update(UpdateOperation.upsert_points(points))
            self._persist(opened)
        logger.debug("edge: upserted %d points into %r", len(points), collection)

    def search(
        self,
        collection: str,
        vector: Sequence[float] | np.ndarray,
        top_k: int,
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        query = as_query(vector, collection)
        with self._lock:
            opened = self._get(collection)
            if opened is None or top_k <= 0:
                return []
            if opened.dim is not None:
                check_dim(query.shape[0], opened.dim, collection)
            request = QueryRequest(
                limit=top_k,
                query=Query.Nearest(query.tolist()),
                filter=_excluding(exclude),
                with_payload=True,
                with_vector=False,
            )
            with _dimension_errors(collection):
                scored = opened.shard.query(request)
        return [payload_hit(point.payload, point.score) for point in scored]

    def delete_document(self, collection: str, document_id: str) -> None:
        with self._lock:
            opened = self._get(collection)
            if opened is None:
                return
            match = Filter(must=[FieldCondition(key="document_id", match=MatchValue(document_id))])
            opened.shard.update(UpdateOperation.delete_points_by_filter(match))
            self._persist(opened)
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
            opened = _Open(EdgeShard.load(str(directory)), _read_dim(directory))
        elif create_dim is None:
            return None
        else:
            self._create(name, directory, create_dim)
            opened = _Open(EdgeShard.load(str(directory)), create_dim)
        self._shards[slug] = opened
        return opened

    def _create(self, name: str, directory: Path, dim: int) -> None:
        if dim < 1:
            raise PermanentError(f"collection {name!r}: dimension must be positive, got {dim}")
        staging = self._root / f"{_TMP_PREFIX}{directory.name}-{uuid.uuid4().hex}"
        config = EdgeConfig(
            vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine),
            hnsw_config=HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000),
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

    def _persist(self, opened: _Open) -> None:
        opened.shard.flush()
        if self._optimize and opened.shard.optimize():
            opened.shard.flush()

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


def _read_dim(directory: Path) -> int | None:
    try:
        config = json.loads((directory / _CONFIG_FILE).read_text(encoding="utf-8"))
        return int(config["vectors"][""]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("edge: cannot read the vector size from %s", directory / _CONFIG_FILE)
        return None


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
