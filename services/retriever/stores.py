"""Picking a vector store backend, and the search settings the retriever runs with.

The backends import what they share from :mod:`.store`, never this module, so the
imports run one way: stores -> backends -> store. ``QdrantStore`` alone is imported
when it is picked, for the weight of qdrant-client (see :func:`build_store`).
"""

from __future__ import annotations

import logging

from libs.common.settings import RetrieverSettings
from services.retriever.edge_store import EdgeStore
from services.retriever.fusion import Fusion
from services.retriever.memory_store import MemoryStore
from services.retriever.sparse import Bm25
from services.retriever.store import VectorStore

logger = logging.getLogger(__name__)

VECTOR_STORES = ("edge", "qdrant", "memory")


def build_fusion(settings: RetrieverSettings) -> Fusion:
    """How searches merge the dense and BM25 rankings."""
    return Fusion(
        dense_weight=settings.hybrid_dense_weight, k=settings.rrf_k, candidates=settings.hybrid_candidates
    )


def build_bm25(settings: RetrieverSettings) -> Bm25:
    """The BM25 sparse vectors' parameters."""
    return Bm25(
        k1=settings.bm25_k1, b=settings.bm25_b, avgdl=settings.bm25_avgdl, tokenizer=settings.bm25_tokenizer
    )


def build_store(settings: RetrieverSettings) -> VectorStore:
    """The vector store named by ``settings.vector_store``."""
    kind = settings.vector_store.strip().lower()
    if kind == "edge":
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
        # Imported here: qdrant-client takes about a second and 40 MB to import, which only
        # a retriever that talks to a Qdrant server should pay.
        from services.retriever.qdrant_replication import Replication
        from services.retriever.qdrant_store import QdrantStore

        if not settings.qdrant_url:
            raise ValueError("vector_store 'qdrant' needs DOCUMIND_QDRANT_URL (the Qdrant server's URL)")
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        replication = Replication.from_settings(settings)
        logger.info("vector store: qdrant server at %s (%s)", settings.qdrant_url, replication.describe())
        return QdrantStore.from_url(
            settings.qdrant_url, api_key=api_key, dim_default=settings.embedding_dim, replication=replication
        )
    if kind == "memory":
        logger.info("vector store: in-memory (data is lost on exit)")
        return MemoryStore(dim_default=settings.embedding_dim)
    raise ValueError(
        f"unknown vector_store {settings.vector_store!r} (DOCUMIND_VECTOR_STORE): "
        f"expected one of {', '.join(VECTOR_STORES)}"
    )
