"""Job statuses: the one Python source of their spelling (the Lua scripts get theirs from here).

A job is ``queued`` at its first stage, shows the status of the stage working on
it while in flight, and ends in exactly one final status. Nothing changes a job
once its status is final.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class JobStatus(StrEnum):
    QUEUED = "queued"
    EMBEDDING = "embedding"
    RETRIEVING = "retrieving"
    CONDENSING = "condensing"
    GENERATING = "generating"
    INDEXING = "indexing"
    DELETING = "deleting"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# Statuses after which nothing changes.
FINAL_STATUSES: Final = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED})


def is_final(status: str) -> bool:
    """Whether ``status`` (as stored: a plain string) is final."""
    return status in FINAL_STATUSES


class DocumentStatus(StrEnum):
    """A document's own status; it outlives its ingest job."""

    QUEUED = "queued"
    PARSING = "parsing"
    EMBEDDING = "embedding"
    INDEXING = "indexing"
    READY = "ready"
    FAILED = "failed"


DOCUMENT_FINAL: Final = frozenset({DocumentStatus.READY, DocumentStatus.FAILED})
