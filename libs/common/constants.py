"""Every stream, group and key name, and every TTL, in one place.

Keys share the ``documind:`` prefix so one Valkey can host other tenants.
Per-job keys take the job id as a suffix; the ``*_key`` helpers build them.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "documind"

# --- stages and their streams -------------------------------------------------
# The route of a job is a list of these stage names; each stage reads one stream
# through one consumer group named after the stage.
EMBEDDER: Final = "embedder"
RETRIEVER: Final = "retriever"
GENERATOR: Final = "generator"
STAGES: Final = (EMBEDDER, RETRIEVER, GENERATOR)

ROUTES: Final[dict[str, tuple[str, ...]]] = {
    "chat": (EMBEDDER, RETRIEVER, GENERATOR),
    "search": (EMBEDDER, RETRIEVER),
    "ingest": (EMBEDDER, RETRIEVER),
    # Removes a deleted document's vectors; the document is hidden before it runs.
    "delete": (RETRIEVER,),
}
# A chat whose question follows earlier turns: a first generator step rewrites it as a
# standalone question (it is what gets embedded and retrieved), the last one answers it.
CHAT_WITH_HISTORY_ROUTE: Final = (GENERATOR, EMBEDDER, RETRIEVER, GENERATOR)

# Dead letters: one stream for all stages; entries carry the stage and reason.
DEAD_LETTER_STREAM: Final = f"{PREFIX}:dead"
# Dead letters are terminal (the job is already marked failed), so the stream is
# capped approximately at this length to keep memory bounded.
DEAD_LETTER_MAXLEN: Final = 100_000


# Set of known collection names, and a hash of metadata per collection.
COLLECTIONS_KEY: Final = f"{PREFIX}:collections"

# The single stream-entry field that holds the serialized envelope
# (the Lua scripts in scripts.py spell it too).
ENVELOPE_FIELD: Final = "data"

# Upload types the parser accepts (the gateway answers 415 for anything else).
SUPPORTED_EXTENSIONS: Final = frozenset({".txt", ".md", ".markdown", ".pdf", ".docx", ".html", ".htm"})

# Collection names: safe in keys, URLs and Qdrant collection names.
COLLECTION_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

# --- TTLs (seconds) -----------------------------------------------------------
# Job status/result hashes live this long by default (configurable).
JOB_TTL_S: Final = 24 * 3600
# Uploaded bytes wait for the parser at most this long; deleted once parsed.
BLOB_TTL_S: Final = 6 * 3600
# The per-job "finished" notification stream (it carries the final fields) only
# serves waiters that arrive while the job is young; later ones read the job
# hash. Short, because Valkey preallocates ~4 KB for every new stream.
DONE_TTL_S: Final = 600


# --- caches -------------------------------------------------------------------
# A text's embedding is the same for as long as its model is: kept a week by
# default (DOCUMIND_EMBEDDING_CACHE_TTL_S), refreshed only by a new miss.
EMBEDDING_CACHE_TTL_S: Final = 7 * 24 * 3600
# A cached answer is keyed by its collection's version, so a change to the
# collection never serves it again; the TTL bounds what a change of the
# generator's configuration (another LLM, say) leaves behind.
ANSWER_CACHE_TTL_S: Final = 3600
# The collection hash's counter of changes to what the collection answers: a
# document ready, deleted or retired by a replace (the Lua scripts spell it too).
COLLECTION_VERSION_FIELD: Final = "version"
# The chat payload field that names the answer cache entry a job that missed is to
# fill: {"key": answer_cache_key(...), "ttl_s": seconds}.
ANSWER_CACHE_PAYLOAD_FIELD: Final = "answer_cache"


def embedding_cache_key(model: str, text_sha256: str) -> str:
    """A text's vector from one model: float32 little-endian bytes."""
    return f"{PREFIX}:cache:embedding:{model}:{text_sha256}"


def answer_cache_key(collection: str, epoch: str, version: str, digest: str) -> str:
    """A finished chat result (JSON) for one collection state and one normalised request.

    ``epoch`` is the collection's ``created_at`` (a dropped and re-created
    collection never meets its predecessor's answers), ``version`` its change
    counter, ``digest`` the sha256 of the normalised question and parameters.
    """
    return f"{PREFIX}:cache:answer:{collection}:{epoch}:{version}:{digest}"


# --- lanes: interactive work never queues behind bulk work ---------------------
# A stage that serves both reads two streams, each through its own consumer group
# and read loop: questions (chat, search) on the interactive lane, document work
# (ingest, delete) on the bulk lane. A question is read the moment it arrives, even
# behind thousands of queued ingest parts.
INTERACTIVE: Final = "interactive"
BULK: Final = "bulk"
BULK_KINDS: Final = frozenset({"ingest", "delete"})
STAGE_LANES: Final[dict[str, tuple[str, ...]]] = {
    EMBEDDER: (INTERACTIVE, BULK),
    RETRIEVER: (INTERACTIVE, BULK),
    GENERATOR: (INTERACTIVE,),
}


def lane_of(kind: str) -> str:
    """The lane a job of ``kind`` travels in."""
    return BULK if kind in BULK_KINDS else INTERACTIVE


def stream_key(stage: str, lane: str = INTERACTIVE) -> str:
    """The input stream of ``stage`` for one lane (the interactive one by default)."""
    return f"{PREFIX}:stream:{stage}" if lane == INTERACTIVE else f"{PREFIX}:stream:{stage}:{lane}"


def job_stream(stage: str, kind: str) -> str:
    """The stream a job of ``kind`` is queued on at ``stage``."""
    return stream_key(stage, lane_of(kind))


def stage_streams(stage: str) -> list[str]:
    """Every input stream of ``stage``, one per lane."""
    return [stream_key(stage, lane) for lane in STAGE_LANES[stage]]


def group_name(stage: str) -> str:
    """The consumer group that the workers of ``stage`` share."""
    return f"{PREFIX}:{stage}"


def delayed_key(stage: str, lane: str = INTERACTIVE) -> str:
    """Sorted set of ``stage``'s messages of one lane waiting out a retry backoff (score = due time)."""
    return f"{PREFIX}:delayed:{stage}" if lane == INTERACTIVE else f"{PREFIX}:delayed:{stage}:{lane}"


def job_key(job_id: str) -> str:
    """Hash with the status, stage, result and timings of one job."""
    return f"{PREFIX}:job:{job_id}"


# Job statuses after which nothing changes.
FINAL_STATUSES: Final = frozenset({"done", "failed", "expired", "cancelled"})
# A job's events stream keeps about this many entries (answer tokens included).
EVENTS_MAXLEN: Final = 10_000
# Published with a job id when a client cancels that job.
CANCEL_CHANNEL: Final = f"{PREFIX}:cancel"


def events_key(job_id: str) -> str:
    """Stream of a job's events, in order: stage changes, answer tokens, the final result.

    Served as Server-Sent Events; an entry's id is the event's id.
    """
    return f"{PREFIX}:events:{job_id}"


def done_key(job_id: str) -> str:
    """Stream that receives one entry when the job reaches a final status.

    Waiters block on it with XREAD instead of polling the job hash.
    """
    return f"{PREFIX}:done:{job_id}"


def blob_key(document_id: str) -> str:
    """Uploaded document bytes, waiting to be parsed."""
    return f"{PREFIX}:blob:{document_id}"


def collection_key(name: str) -> str:
    """Hash of metadata for one collection (name, description, created_at, version)."""
    return f"{PREFIX}:collection:{name}"


def collection_documents_key(name: str) -> str:
    """Set of the document ids of one collection."""
    return f"{PREFIX}:collection:{name}:documents"


def collection_hashes_key(name: str) -> str:
    """Hash sha256 -> document id: the same content is stored once per collection."""
    return f"{PREFIX}:collection:{name}:hashes"


def deleted_documents_key(name: str) -> str:
    """Set of the collection's deleted document ids (tombstones).

    Searches drop their hits at once; kept for good (ids are never reused), so
    an index that races a delete can still tell it must not leave vectors.
    """
    return f"{PREFIX}:collection:{name}:deleted"


def collection_pending_key(name: str) -> str:
    """Set of the collection's documents that are not ready yet.

    Searches leave out their vectors, so a document becomes searchable whole,
    at the moment it is ready, never part by part.
    """
    return f"{PREFIX}:collection:{name}:pending"


def collection_filename_key(name: str, filename: str) -> str:
    """Set of the collection's document ids uploaded under one filename.

    An upload with ``?replace=true`` replaces these when it is ready.
    """
    return f"{PREFIX}:collection:{name}:filename:{filename}"


# Document hash fields "embedded:<part>" = chunks of that part embedded so far.
EMBEDDED_PART_FIELD: Final = "embedded:"


def document_key(document_id: str) -> str:
    """Hash describing one uploaded document (kept until the document is deleted)."""
    return f"{PREFIX}:document:{document_id}"
