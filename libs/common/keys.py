"""The key space: every Valkey key DocuMind uses, built here from typed parts.

No other module formats a key. A key names its partition's hash tag first::

    documind:{p0}:job:<job id>
    documind:{p0}:t:<tenant>:collection:<name>:documents
    documind:{p0}:stream:embedder:bulk

Valkey Cluster hashes only the text between the first ``{`` and ``}``, so every
key of a partition lands in one slot: whatever one script, transaction or commit
touches (a job, its stage streams, its document, its collection, its events)
lives on one node. A collection's partition is a function of (tenant, collection)
(:meth:`KeySpace.collection`); the job and document ids minted for it carry the
partition (:func:`new_id`), so any process finds a job's keys from its id alone.

Keys outside every partition: the embedding cache (a text's vector is the same
whoever asks; each entry hashes to a slot of its own) and the cancel channel
(pub/sub, not a key).
"""

from __future__ import annotations

import secrets
import zlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Final, Literal, NamedTuple

PREFIX: Final = "documind"
# Until keys and tenants exist (issue 12) every collection is the default tenant's.
DEFAULT_TENANT: Final = "default"

Stage = Literal["embedder", "retriever", "generator"]
Lane = Literal["interactive", "bulk"]

# Published with a job id when a client cancels that job (a channel, not a key).
CANCEL_CHANNEL: Final = f"{PREFIX}:cancel"


@dataclass(frozen=True, slots=True)
class Partition:
    """One slot's worth of keys: stage streams and the jobs, documents and collections in it."""

    index: int

    @property
    def tag(self) -> str:
        """The hash tag every key of the partition carries (its cluster slot)."""
        return f"{{p{self.index}}}"

    def key(self, *parts: str) -> str:
        return _prefix(self.index) + ":".join(parts)

    def stream(self, stage: Stage, lane: Lane, tenant: str = DEFAULT_TENANT) -> str:
        """The input stream of ``stage`` for one lane of this partition.

        The interactive lane has one stream; the bulk lane one per tenant, which a
        stage's workers read round-robin (``fair_read.py``): one tenant's backlog
        never queues another's uploads behind it.
        """
        return _stream(self.index, stage, lane, tenant)

    def delayed(self, stage: Stage, lane: Lane, tenant: str = DEFAULT_TENANT) -> str:
        """Sorted set of a stage's messages waiting out a retry backoff (score = due time);
        like the streams, one per tenant on the bulk lane."""
        if lane == "interactive":
            return self.key("delayed", stage)
        return self.key("delayed", stage, lane, "t", tenant)

    def bulk_tenants(self, stage: Stage) -> str:
        """Set of the tenants with a bulk stream at ``stage`` in this partition: the
        streams that stage's bulk workers read (a tenant joins with its first bulk job)."""
        return self.key("bulk", stage, "tenants")

    def dead_letters(self) -> str:
        """Dead letters of the partition: entries carry the stage and the reason."""
        return self.key("dead")

    def collections(self, tenant: str) -> str:
        """Set of the names of a tenant's collections that live in this partition."""
        return self.key("t", tenant, "collections")

    def inflight(self, tenant: str) -> str:
        """Sorted set of a tenant's jobs queued or running in this partition (their
        hash keys, scored by deadline): what ``DOCUMIND_TENANT_MAX_INFLIGHT`` counts."""
        return self.key("t", tenant, "inflight")

    def interactive_inflight(self, tenant: str) -> str:
        """Sorted set of a tenant's jobs on the interactive lane (questions) queued or
        running in this partition, scored by deadline: what
        ``DOCUMIND_TENANT_MAX_INTERACTIVE`` counts."""
        return self.key("t", tenant, "inflight", "interactive")


@lru_cache(maxsize=4096)
def _stream(index: int, stage: Stage, lane: Lane, tenant: str) -> str:
    parts = ("stream", stage) if lane == "interactive" else ("stream", stage, lane, "t", tenant)
    return _prefix(index) + ":".join(parts)


@lru_cache(maxsize=1024)
def _prefix(index: int) -> str:
    """What every key of partition ``index`` starts with."""
    return f"{PREFIX}:{{p{index}}}:"


def group_name(stage: Stage) -> str:
    """The consumer group that the workers of ``stage`` share (on each of its streams)."""
    return f"{PREFIX}:{stage}"


def new_id(partition: Partition) -> str:
    """A fresh job or document id that names its partition: "p<index>-<32 hex digits>".

    An id without the prefix (older data, hand-made test ids) belongs to partition 0.
    """
    return f"p{partition.index}-{secrets.token_hex(16)}"


@lru_cache(maxsize=4096)
def partition_of_id(any_id: str) -> Partition:
    """The partition of a job or document id (partition 0 for an id without one).

    Cached: a message asks for its job's partition several times (its keys, its
    streams, its events). An id that only looks minted ("p7-x") maps to its
    partition all the same: its keys are simply not found there.
    """
    head, dash, _ = any_id.partition("-")
    digits = head[1:]
    if dash and head[:1] == "p" and 0 < len(digits) <= 5 and digits.isascii() and digits.isdigit():
        return _partition(int(digits))
    return _partition(0)


@lru_cache(maxsize=1024)
def _partition(index: int) -> Partition:
    return Partition(index)


class JobKeys(NamedTuple):
    """The keys of one job, all in its partition (build them with :func:`job`)."""

    job_id: str
    partition: Partition
    # Hash with the status, stage, result and timings of the job.
    hash: str
    # Stream that receives one entry (the final fields) when the job reaches a final status.
    done: str
    # Stream of the job's events in order, served as Server-Sent Events.
    events: str


@lru_cache(maxsize=4096)
def job(job_id: str) -> JobKeys:
    """The keys of a job (cached: a message names its job's keys several times)."""
    p = partition_of_id(job_id)
    prefix = _prefix(p.index)
    return JobKeys(job_id, p, f"{prefix}job:{job_id}", f"{prefix}done:{job_id}", f"{prefix}events:{job_id}")


@dataclass(frozen=True, slots=True)
class DocumentKeys:
    """The keys of one uploaded document, in its collection's partition."""

    document_id: str
    partition: Partition

    @property
    def hash(self) -> str:
        """Hash describing the document (kept until the document is deleted)."""
        return self.partition.key("document", self.document_id)

    @property
    def blob(self) -> str:
        """The uploaded bytes, waiting to be parsed."""
        return self.partition.key("blob", self.document_id)


def document(document_id: str) -> DocumentKeys:
    return DocumentKeys(document_id, partition_of_id(document_id))


@dataclass(frozen=True)
class CollectionKeys:
    """The keys of one tenant's collection (each built once: build it with :func:`collection`)."""

    tenant: str
    name: str
    partition: Partition

    def _key(self, *parts: str) -> str:
        return self.partition.key("t", self.tenant, "collection", self.name, *parts)

    @cached_property
    def registry(self) -> str:
        """The tenant's set of collection names in this partition."""
        return self.partition.collections(self.tenant)

    @cached_property
    def meta(self) -> str:
        """Hash of metadata (name, description, created_at, version)."""
        return self._key()

    @cached_property
    def documents(self) -> str:
        """Set of the collection's document ids."""
        return self._key("documents")

    @cached_property
    def hashes(self) -> str:
        """Hash sha256 -> document id: the same content is stored once per collection."""
        return self._key("hashes")

    @cached_property
    def deleted(self) -> str:
        """Set of deleted document ids (tombstones): searches drop their hits at once.

        Kept for good (ids are never reused), so an index that races a delete can
        still tell it must not leave vectors.
        """
        return self._key("deleted")

    @cached_property
    def pending(self) -> str:
        """Set of documents not ready yet: searches leave their vectors out."""
        return self._key("pending")

    def filename(self, filename: str) -> str:
        """Set of the document ids uploaded under one filename (what ``replace`` retires)."""
        return self._key("filename", filename)

    def answer(self, epoch: str, version: str, digest: str) -> str:
        """A finished chat result (JSON) for one collection state and one normalised request.

        ``epoch`` is the collection's ``created_at`` (a dropped and re-created
        collection never meets its predecessor's answers), ``version`` its change
        counter, ``digest`` the sha256 of the normalised question and parameters.
        """
        return self._key("answer", epoch, version, digest)


@lru_cache(maxsize=4096)
def collection(tenant: str, name: str, partition: Partition) -> CollectionKeys:
    """The keys of a tenant's collection in ``partition`` (shared: their names are built once)."""
    return CollectionKeys(tenant, name, partition)


def partition_for(tenant: str, collection: str, partitions: int) -> Partition:
    """The partition of a tenant's collection: stable for a given partition count."""
    if partitions == 1:
        return _partition(0)
    return _partition(zlib.crc32(f"{tenant}/{collection}".encode()) % partitions)


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The partitions of one deployment (``DOCUMIND_PARTITIONS``)."""

    partitions: int = 1

    def all(self) -> list[Partition]:
        return [Partition(i) for i in range(self.partitions)]

    def collection(self, name: str, tenant: str = DEFAULT_TENANT) -> CollectionKeys:
        return collection(tenant, name, partition_for(tenant, name, self.partitions))


def collection_of(tenant: str, name: str, job_id: str) -> CollectionKeys:
    """The collection of a job (its partition is the job's)."""
    return collection(tenant, name, partition_of_id(job_id))


def embedding_cache(model: str, text_sha256: str, tenant: str = DEFAULT_TENANT) -> str:
    """A text's vector from one model (float32 little-endian bytes), per tenant (no
    tenant learns what another embedded); in no partition."""
    own = "" if tenant == DEFAULT_TENANT else f":{tenant}"
    return f"{PREFIX}:cache:embedding:{model}:{text_sha256}{own}"


def waiter_wake(tag: str, reader: str) -> str:
    """A stream one waiter reader of a gateway blocks on beside the streams it reads
    (``libs.common.fanout``): an entry added ends its read. ``tag`` is their hash tag
    ("{p0}"), so one XREAD stays in one slot; ``reader`` names the process and reader."""
    return f"{PREFIX}:{tag}:wake:{reader}"


# --- API keys (issue 12) ------------------------------------------------------
# Outside every partition. A key's record and its rate-limit state share one hash
# tag, ``{k<key id>}``, so the AUTHENTICATE script touches one slot; a tenant's
# set of key ids has a tag of its own, ``{t<tenant>}``:
#
#     documind:{k0123456789abcdef}:apikey
#     documind:{k0123456789abcdef}:rate
#     documind:{tacme}:apikeys
#     documind:apikeys:tenants


@dataclass(frozen=True, slots=True)
class ApiKeyKeys:
    """The keys of one API key (build them with :func:`api_key`)."""

    key_id: str

    @property
    def tag(self) -> str:
        return f"{{k{self.key_id}}}"

    @property
    def record(self) -> str:
        """Hash of the key: hashed secret, tenant, role, collections, limits, dates."""
        return f"{PREFIX}:{self.tag}:apikey"

    @property
    def rate(self) -> str:
        """The key's rate-limit state (GCRA: its theoretical arrival time, in microseconds)."""
        return f"{PREFIX}:{self.tag}:rate"


def api_key(key_id: str) -> ApiKeyKeys:
    """The keys of an API key id (the operator's rate state uses the id ``operator``)."""
    if not key_id or "{" in key_id or "}" in key_id:
        raise ValueError(f"not an API key id: {key_id!r}")
    return ApiKeyKeys(key_id)


def tenant_api_keys(tenant: str) -> str:
    """Set of the ids of a tenant's API keys (listing tolerates ids whose record is gone)."""
    if not tenant or "{" in tenant or "}" in tenant:
        raise ValueError(f"not a tenant name: {tenant!r}")
    return f"{PREFIX}:{{t{tenant}}}:apikeys"


# Set of the tenants that have (or had) API keys: what the operator's listing walks.
API_KEY_TENANTS: Final = f"{PREFIX}:apikeys:tenants"
