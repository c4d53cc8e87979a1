"""The retriever's settings: the vector store, hybrid search and Qdrant's replication."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from libs.common.settings_base import WorkerSettings


class RetrieverSettings(WorkerSettings):
    # "edge" (qdrant-edge-py in-process) or "qdrant" (a Qdrant server).
    vector_store: str = "edge"
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    # Where the embedded store keeps its shards; defaults under data_dir.
    edge_path: Path | None = None
    embedding_dim: int = Field(default=384, ge=1)
    # Hybrid search: the dense (embedding) ranking's weight against BM25's in the
    # reciprocal rank fusion; 1.0 searches by dense vectors alone, 0.0 by BM25 alone.
    # Defaults (these, the BM25 ones and the tokenizer below) chosen by 5-fold
    # cross-validation over SciFact's queries and pdf-qa's questions together
    # (bench/retrieval_cv.py; bench/RESULTS.md, "Issue 15: retrieval").
    hybrid_dense_weight: float = Field(default=0.5, ge=0, le=1)
    # RRF's k: each ranking adds weight / (k + rank); a larger k flattens the ranks.
    rrf_k: int = Field(default=5, ge=1)
    # Points each ranking brings to the fusion (at least a search's top_k).
    hybrid_candidates: int = Field(default=50, ge=1)
    # BM25's document side, for chunks indexed from now on (re-index to apply to others):
    # term-frequency saturation, length normalisation, and a chunk's typical length in terms.
    bm25_k1: float = Field(default=1.6, ge=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    bm25_avgdl: float = Field(default=100.0, gt=0)
    # How BM25 cuts text into terms (services/retriever/sparse.py): "words" (stemmed words),
    # "technical" (those plus identifiers and options whole) or "qdrant" (qdrant-edge's
    # Bm25, the Qdrant server's). Like the three above: re-index to apply to older chunks.
    bm25_tokenizer: Literal["words", "technical", "qdrant"] = "words"
    # Embedded store's HNSW graph (new collections): links per node, build candidates;
    # and the candidates a search keeps.
    edge_hnsw_m: int = Field(default=16, ge=4)
    edge_hnsw_ef_construct: int = Field(default=128, ge=4)
    edge_hnsw_ef: int = Field(default=128, ge=1)
    # Embedded store: optimise (merge, HNSW-index, vacuum) a collection once this many points
    # came in since the last time (0: never) and the store has gone this long without a write:
    # in a child process, on a copy that then replaces the shard, so searches never wait for
    # the index build (services/retriever/edge_maintenance.py).
    edge_optimize_points: int = Field(default=20_000, ge=0)
    edge_optimize_idle_s: float = Field(default=5.0, ge=0)
    # Qdrant server (vector_store "qdrant"), applied when a collection is created: the shards a
    # collection is split into, the copies (replicas) of each shard, and how many copies must
    # have applied a write before it returns (unset: all of them, so a document marked ready is
    # searchable on every replica; services/retriever/qdrant_replication.py says what each
    # guarantees). BM25's IDF is counted per shard: prefer one shard and more replicas.
    qdrant_shard_number: int = Field(default=1, ge=1)
    qdrant_replication_factor: int = Field(default=1, ge=1)
    qdrant_write_consistency_factor: int | None = Field(default=None, ge=1)
    # Replicas each search asks: a number, or "all", "majority" or "quorum"; unset: Qdrant's
    # default (one), enough while every write waits for every replica.
    qdrant_read_consistency: int | Literal["all", "majority", "quorum"] | None = None
    # Order of concurrent writes to the same points across replicas: "weak" (Qdrant's default,
    # may differ by replica), "medium" (through a leader elected on the fly), "strong" (through
    # a permanent leader; writes fail while it is down).
    qdrant_write_ordering: Literal["weak", "medium", "strong"] = "weak"

    @field_validator("qdrant_read_consistency", mode="before")
    @classmethod
    def _read_consistency_is_known(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if value.isdigit():
                value = int(value)
            elif value not in ("all", "majority", "quorum"):
                raise ValueError(
                    f"DOCUMIND_QDRANT_READ_CONSISTENCY {value!r}: expected a number of replicas "
                    "(1 or more) or one of all, majority, quorum"
                )
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise ValueError(f"DOCUMIND_QDRANT_READ_CONSISTENCY {value}: a number of replicas is 1 or more")
        return value

    @model_validator(mode="after")
    def _consistency_fits_the_replicas(self) -> RetrieverSettings:
        replicas = self.qdrant_replication_factor
        factor = self.qdrant_write_consistency_factor
        if factor is not None and factor > replicas:
            raise ValueError(
                f"DOCUMIND_QDRANT_WRITE_CONSISTENCY_FACTOR {factor} exceeds "
                f"DOCUMIND_QDRANT_REPLICATION_FACTOR {replicas}: a write cannot wait for more replicas "
                "than a shard has"
            )
        read = self.qdrant_read_consistency
        if isinstance(read, int) and read > replicas:
            raise ValueError(
                f"DOCUMIND_QDRANT_READ_CONSISTENCY {read} exceeds DOCUMIND_QDRANT_REPLICATION_FACTOR "
                f"{replicas}: a search cannot ask more replicas than a shard has"
            )
        return self
