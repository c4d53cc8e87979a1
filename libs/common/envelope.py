"""The job envelope: one typed, versioned message passed stage by stage.

It travels as a single JSON field (``data``) of a stream entry and is validated
only where it enters a process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from libs.common import keys
from libs.common.commit import AddMember, Enqueue, Op
from libs.common.constants import BULK, ROUTES, lane_of
from libs.common.keys import DEFAULT_TENANT, CollectionKeys, JobKeys, Partition, Stage
from libs.common.status import JobStatus

JobKind = Literal["chat", "search", "ingest", "delete"]

ENVELOPE_VERSION: Final = 1


class Envelope(BaseModel):
    v: Literal[1] = ENVELOPE_VERSION
    job_id: str
    kind: JobKind
    # The tenant whose collection this is, and the API key that asked ("" for none).
    tenant: str = DEFAULT_TENANT
    key_id: str = ""
    collection: str
    # Stages still to run, the current one first.
    route: list[Stage]
    # Stages of the route already done: 0 while the job is at its first stage.
    step: int = 0
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
        route: Sequence[Stage] | None = None,
        partition: Partition | None = None,
        tenant: str = DEFAULT_TENANT,
        key_id: str = "",
    ) -> Envelope:
        """A job just submitted; ``route`` defaults to ``ROUTES[kind]``.

        Its id is minted in ``partition``, which must be the collection's
        (``KeySpace.collection``); partition 0 when not given.
        """
        now = time.time() if now is None else now
        # Validated although built from typed arguments: pydantic-core's validator is
        # several times quicker than model_construct's Python loop over the fields.
        return cls(
            job_id=job_id or keys.new_id(partition or Partition(0)),
            kind=kind,
            tenant=tenant,
            key_id=key_id,
            collection=collection,
            route=list(route or ROUTES[kind]),
            created_at=now,
            deadline=now + timeout_s,
            traceparent=traceparent,
            enqueued_at=now,
            payload=payload,
        )

    @property
    def stage(self) -> Stage:
        return self.route[0]

    @property
    def partition(self) -> Partition:
        """The partition of the job (its id names it): its keys, its collection's, its streams."""
        return keys.partition_of_id(self.job_id)

    @property
    def job_keys(self) -> JobKeys:
        return keys.job(self.job_id)

    @property
    def collection_keys(self) -> CollectionKeys:
        return keys.collection(self.tenant, self.collection, self.partition)

    @property
    def stream(self) -> str:
        """The stream this message is queued on: its current stage's, in its kind's lane
        (on the bulk lane, its tenant's)."""
        return self.partition.stream(self.stage, lane_of(self.kind), self.tenant)

    def dumps(self) -> str:
        return self.model_dump_json()

    @classmethod
    def loads(cls, raw: str | bytes) -> Envelope:
        return cls.model_validate_json(raw)


def enqueue(env: Envelope) -> list[Op]:
    """The ops that queue ``env`` at its stage: its stream entry and, on the bulk lane,
    its tenant in the set of tenants whose streams the stage's workers read."""
    ops: list[Op] = [Enqueue(env.stream, env.dumps())]
    if lane_of(env.kind) == BULK:
        ops.append(AddMember(env.partition.bulk_tenants(env.stage), env.tenant))
    return ops


def stage_status(kind: str, stage: Stage, last: bool = True) -> JobStatus:
    """The user-visible status of a job while ``stage`` works on it.

    ``last``: whether ``stage`` is the last of the job's route. A generator step
    before the end (a chat with history) condenses the question, it does not answer.
    """
    if stage == "embedder":
        return JobStatus.EMBEDDING
    if stage == "retriever":
        return _RETRIEVER_STATUS.get(kind, JobStatus.RETRIEVING)
    return JobStatus.GENERATING if last else JobStatus.CONDENSING


_RETRIEVER_STATUS: Final = {"ingest": JobStatus.INDEXING, "delete": JobStatus.DELETING}
