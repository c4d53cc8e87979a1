"""How a Qdrant server's collections are sharded and replicated, and how consistent
the retriever's reads and writes are (``DOCUMIND_QDRANT_*``, see :class:`Replication`).

What each setting guarantees, in Qdrant's terms (Qdrant's documentation, "Consistency
guarantees" and "Distributed deployment"):

``shard_number``
    A collection's points are spread over this many shards. BM25's IDF (the sparse
    vector's ``idf`` modifier) is computed by each shard from its own points, so with
    several shards the same chunk's BM25 score depends on the shard it landed in and
    hybrid rankings drift from the single-shard ones. Prefer one shard and more replicas.
``replication_factor``
    Copies of each shard, placed on different nodes (a cluster with fewer nodes holds
    fewer copies).
``write_consistency_factor`` (default: ``replication_factor``)
    Replicas that must have applied a write before Qdrant reports it successful. Every
    write here is sent with ``wait=True``: a replica counts once the points are applied,
    and so searchable, on it. With the default, equal to the replication factor, an
    ``upsert`` that returned has reached *every* replica of its shard, so a document the
    retriever marks ready (after its upsert returned) is found by a search on any
    replica, whatever ``read_consistency``. The price: while a replica is down, writes to
    its shard fail (a retryable error: the index job is redelivered and tried again).
    A lower factor keeps writes going with replicas down; Qdrant disables a replica that
    missed a write until it has caught up, but "ready" then promises only that many
    copies.
``read_consistency`` (default: Qdrant's, 1)
    Replicas a search (the queries and the payload ``retrieve``) asks: ``N`` asks N
    replicas and keeps points that all of them hold; ``"majority"``, ``"quorum"`` and
    ``"all"`` ask more of them (see Qdrant's documentation). It guards against replicas
    that disagree, e.g. after a write acknowledged by fewer than all of them.
``write_ordering`` (default: ``"weak"``, Qdrant's)
    Whether concurrent writes to the same points are applied in one order on every
    replica: ``"weak"`` no (two retriever replicas writing one point at once may leave
    replicas differing), ``"medium"`` through a leader elected on the fly (briefly
    inconsistent when it changes), ``"strong"`` through the shard's permanent leader
    (writes fail while it is down). It does not change when a write is acknowledged.

Qdrant's local mode (the tests) ignores all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from qdrant_client import models

if TYPE_CHECKING:
    from libs.common.settings import RetrieverSettings

ReadConsistency = int | Literal["all", "majority", "quorum"]
WriteOrdering = Literal["weak", "medium", "strong"]


@dataclass(frozen=True)
class Replication:
    """Sharding and consistency of a Qdrant store (the module docstring says what each guarantees)."""

    shard_number: int = 1
    replication_factor: int = 1
    # None: the replication factor (a write waits for every replica).
    write_consistency_factor: int | None = None
    # None: Qdrant's default (one replica).
    read_consistency: ReadConsistency | None = None
    write_ordering: WriteOrdering = "weak"

    def __post_init__(self) -> None:
        for name in ("shard_number", "replication_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more, got {getattr(self, name)}")
        factor = self.write_consistency_factor
        if factor is not None and not 1 <= factor <= self.replication_factor:
            raise ValueError(
                f"write_consistency_factor {factor} must be between 1 and the replication factor "
                f"{self.replication_factor}"
            )
        read = self.read_consistency
        if isinstance(read, bool) or (isinstance(read, int) and not 1 <= read <= self.replication_factor):
            raise ValueError(
                f"read_consistency {read!r} must be all, majority, quorum or a number of replicas "
                f"between 1 and the replication factor {self.replication_factor}"
            )

    @classmethod
    def from_settings(cls, settings: RetrieverSettings) -> Replication:
        return cls(
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
            read_consistency=settings.qdrant_read_consistency,
            write_ordering=settings.qdrant_write_ordering,
        )

    @property
    def write_factor(self) -> int:
        """Replicas a write waits for."""
        return self.write_consistency_factor or self.replication_factor

    @property
    def read(self) -> int | models.ReadConsistencyType | None:
        """The ``consistency`` argument of qdrant-client's reads."""
        read = self.read_consistency
        return models.ReadConsistencyType(read) if isinstance(read, str) else read

    @property
    def ordering(self) -> models.WriteOrdering:
        """The ``ordering`` argument of qdrant-client's writes."""
        return models.WriteOrdering(self.write_ordering)

    def describe(self) -> str:
        return (
            f"{self.shard_number} shard(s) x {self.replication_factor} replica(s), writes wait for "
            f"{self.write_factor}, reads ask {self.read_consistency or 1}, {self.write_ordering} ordering"
        )
