"""Stage names, routes, lanes, TTLs and the names Python shares with Lua.

Valkey keys are built in one place of their own: :mod:`libs.common.keys`.
"""

from __future__ import annotations

import enum
from typing import Final

from libs.common.keys import Lane, Stage

# --- stages and their streams -------------------------------------------------
# The route of a job is a list of these stage names; each stage reads one stream
# through one consumer group named after the stage.
EMBEDDER: Final[Stage] = "embedder"
RETRIEVER: Final[Stage] = "retriever"
GENERATOR: Final[Stage] = "generator"
STAGES: Final[tuple[Stage, ...]] = (EMBEDDER, RETRIEVER, GENERATOR)

ROUTES: Final[dict[str, tuple[Stage, ...]]] = {
    "chat": (EMBEDDER, RETRIEVER, GENERATOR),
    "search": (EMBEDDER, RETRIEVER),
    "ingest": (EMBEDDER, RETRIEVER),
    # Removes a deleted document's vectors; the document is hidden before it runs.
    "delete": (RETRIEVER,),
}
# A chat whose question follows earlier turns: a first generator step rewrites it as a
# standalone question (it is what gets embedded and retrieved), the last one answers it.
CHAT_WITH_HISTORY_ROUTE: Final[tuple[Stage, ...]] = (GENERATOR, EMBEDDER, RETRIEVER, GENERATOR)

# Dead letters (one stream per partition) are terminal (the job is already marked
# failed), so each stream is capped approximately at this length to bound memory.
DEAD_LETTER_MAXLEN: Final = 100_000

# The single stream-entry field that holds the serialized envelope
# (the Lua scripts get it from lua.PRELUDE as F_ENVELOPE).
ENVELOPE_FIELD: Final = "data"


class CollectionMode(enum.StrEnum):
    """What a submitted job asks of its collection (the SUBMIT script reads it)."""

    REQUIRE = "require"  # it must exist
    CREATE = "create"  # create it when missing (an upload)
    ANY = "any"


class SubmitAnswer(enum.StrEnum):
    """What the SUBMIT script answers; a duplicate is ``DUPLICATE`` + the existing document's id."""

    OK = "ok"
    UNKNOWN = "unknown"  # no such collection
    FULL = "full"  # the first stage's backlog is at its limit
    BUSY = "busy"  # the tenant has its limit of jobs in flight
    BUSY_INTERACTIVE = "busy-interactive"  # ... or of interactive jobs (questions) in flight
    DUPLICATE = "duplicate:"


# The two fields of an event entry: its type and its JSON data.
EVENT_TYPE_FIELD: Final = "type"
EVENT_DATA_FIELD: Final = "data"

# Upload types the parser accepts (the gateway answers 415 for anything else).
SUPPORTED_EXTENSIONS: Final = frozenset({".txt", ".md", ".markdown", ".pdf", ".docx", ".html", ".htm"})
# Longest filename an upload may have, in characters, once reduced to its last path
# component: what common filesystems allow (255), so every name a real file had fits.
MAX_FILENAME_CHARS: Final = 255

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
# fill: {"key": CollectionKeys.answer(...), "ttl_s": seconds}.
ANSWER_CACHE_PAYLOAD_FIELD: Final = "answer_cache"


# --- lanes: interactive work never queues behind bulk work ---------------------
# A stage that serves both reads two streams, each through its own consumer group
# and read loop: questions (chat, search) on the interactive lane, document work
# (ingest, delete) on the bulk lane. A question is read the moment it arrives, even
# behind thousands of queued ingest parts.
INTERACTIVE: Final[Lane] = "interactive"
BULK: Final[Lane] = "bulk"
BULK_KINDS: Final = frozenset({"ingest", "delete"})
STAGE_LANES: Final[dict[Stage, tuple[Lane, ...]]] = {
    EMBEDDER: (INTERACTIVE, BULK),
    RETRIEVER: (INTERACTIVE, BULK),
    GENERATOR: (INTERACTIVE,),
}


def lane_of(kind: str) -> Lane:
    """The lane a job of ``kind`` travels in."""
    return BULK if kind in BULK_KINDS else INTERACTIVE


# A job's events stream keeps about this many entries (answer tokens included).
EVENTS_MAXLEN: Final = 10_000

# Document hash fields "embedded:<part>" = chunks of that part embedded so far.
EMBEDDED_PART_FIELD: Final = "embedded:"

# "embedded" events one ingest job writes at most (one per part up to this, then every
# k-th part): well within EVENTS_MAXLEN whatever INGEST_PART_CHUNKS and MAX_CHUNKS say.
PROGRESS_EVENTS_MAX: Final = 1000
