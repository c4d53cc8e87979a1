"""The job envelope: one typed, versioned message passed stage by stage.

It travels as a single JSON field (``data``) of a stream entry and is validated
only where it enters a process.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from libs.common.constants import ROUTES

JobKind = Literal["chat", "search", "ingest", "delete"]

ENVELOPE_VERSION: Final = 1


class Envelope(BaseModel):
    v: Literal[1] = ENVELOPE_VERSION
    job_id: str
    kind: JobKind
    collection: str
    # Stages still to run, the current one first.
    route: list[str]
    # Handler failures at the current stage (0 on the first try).
    attempt: int = 0
    # Handler failures over the whole job: the job's "attempts".
    failures: int = 0
    created_at: float
    deadline: float
    # W3C trace context of the request that created the job.
    traceparent: str | None = None
    # Seconds spent per stage: "<stage>" handling, "<stage>.wait" queued.
    timings: dict[str, float] = Field(default_factory=dict)
    # Unix time this message was put on its current stream.
    enqueued_at: float = 0.0
    payload: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def new(
        cls,
        kind: JobKind,
        collection: str,
        payload: dict[str, Any],
        timeout_s: float,
        *,
        traceparent: str | None = None,
        job_id: str | None = None,
        now: float | None = None,
        route: Sequence[str] | None = None,
    ) -> Envelope:
        """A job just submitted; ``route`` defaults to ``ROUTES[kind]``."""
        now = time.time() if now is None else now
        return cls(
            job_id=job_id or uuid.uuid4().hex,
            kind=kind,
            collection=collection,
            route=list(route or ROUTES[kind]),
            created_at=now,
            deadline=now + timeout_s,
            traceparent=traceparent,
            enqueued_at=now,
            payload=payload,
        )

    @property
    def stage(self) -> str:
        return self.route[0]

    def dumps(self) -> str:
        return self.model_dump_json()

    @classmethod
    def loads(cls, raw: str | bytes) -> Envelope:
        return cls.model_validate_json(raw)


def stage_status(kind: str, stage: str, last: bool = True) -> str:
    """The user-visible status of a job while ``stage`` works on it.

    ``last``: whether ``stage`` is the last of the job's route. A generator step
    before the end (a chat with history) condenses the question, it does not answer.
    """
    if stage == "embedder":
        return "embedding"
    if stage == "retriever":
        return {"ingest": "indexing", "delete": "deleting"}.get(kind, "retrieving")
    if stage == "generator":
        return "generating" if last else "condensing"
    return stage
