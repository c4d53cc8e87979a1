"""Turning accepted requests into queued jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common import keys
from libs.common.access import Access
from libs.common.constants import CollectionMode, SubmitAnswer
from libs.common.documents import DocumentStore
from libs.common.durability import Durability
from libs.common.envelope import Envelope, JobKind
from libs.common.errors import (
    CollectionNotFound,
    DuplicateDocument,
    InvalidRequest,
    QueueFull,
    TooManyJobs,
)
from libs.common.jobs import JobStore
from libs.common.keys import KeySpace, Stage
from libs.common.memory_guard import MemoryGuard
from libs.common.scripts import NewDocument
from libs.common.settings import GatewaySettings
from libs.common.telemetry import current_traceparent, tracer
from libs.common.watch import DirectReads, Watcher
from services.gateway.answer_cache import AnswerCache


class Submitter:
    def __init__(
        self, client: aioredis.Redis, settings: GatewaySettings, waiters: Watcher | None = None
    ) -> None:
        """``waiters`` follow the streams routes wait on (default: reads on ``client``)."""
        self.r = client
        self.s = settings
        self.waiters: Watcher = waiters or DirectReads(client)
        durability = Durability.of(client, settings.valkey_wait_replicas, settings.valkey_wait_timeout_ms)
        self.jobs = JobStore(
            client,
            settings.job_ttl_s,
            settings.overdue_grace_s,
            settings.events_ttl_s,
            self.waiters,
            durability=durability,
        )
        self.space = KeySpace(settings.partitions)
        self.docs = DocumentStore(client, self.jobs, self.space)
        self.answers = AnswerCache(client, settings)
        self.memory = MemoryGuard(
            client, settings.valkey_maxmemory_mb, settings.valkey_memory_high_water, settings.retry_after_s
        )

    def new_document_id(self, access: Access, collection: str) -> str:
        """An id for a document uploaded to ``collection`` (it names the collection's partition)."""
        return keys.new_id(self.space.collection(collection, access.tenant).partition)

    def top_k(self, requested: int | None) -> int:
        k = requested or self.s.default_top_k
        if k > self.s.max_top_k:
            raise InvalidRequest(f"top_k must be at most {self.s.max_top_k}")
        return k

    async def submit(
        self,
        kind: JobKind,
        collection: str,
        payload: dict[str, Any],
        *,
        access: Access,
        blob: bytes | None = None,
        extra: dict[str, str] | None = None,
        timeout_s: float | None = None,
        collection_must_exist: bool = True,
        document: dict[str, str] | None = None,
        sha256: str = "",
        route: Sequence[Stage] | None = None,
    ) -> Envelope:
        """Queue a job. Raises :class:`CollectionNotFound` (unless this job creates the
        collection), :class:`QueueFull` when the first stage is too far behind,
        :class:`TooManyJobs` when the tenant has its limit of jobs in flight,
        :class:`StoreFull` when Valkey is near its memory limit, and
        :class:`DuplicateDocument` when ``sha256`` is in the collection already.

        ``route`` overrides the stages of ``kind`` (``ROUTES[kind]``). A ``document``
        (an upload's hash fields, with its ``document_id`` from :meth:`new_document_id`)
        is registered with the job, ``blob`` its bytes. A collection out of ``access``'s
        reach is not found, as one that does not exist."""
        if not access.sees(collection):
            raise CollectionNotFound(collection)
        await self.memory.check()
        target = self.space.collection(collection, access.tenant)
        with tracer.start_as_current_span(f"submit {kind}"):
            env = Envelope.new(
                kind,
                collection,
                payload,
                timeout_s or self.s.job_timeout_s,
                traceparent=current_traceparent(),
                route=route,
                partition=target.partition,
                tenant=target.tenant,
                key_id=access.key_id,
            )
            upload = None
            if document is not None:
                upload = NewDocument(
                    keys.document(document["document_id"]),
                    {**document, "tenant": env.tenant, "job_id": env.job_id},
                    filename=document.get("filename", ""),
                    sha256=sha256,
                    blob=blob,
                )
            answer = await self.jobs.submit(
                env,
                max_backlog=self.s.max_backlog,
                max_inflight=self.s.tenant_max_inflight,
                max_interactive=self.s.tenant_max_interactive,
                extra=extra,
                collection=CollectionMode.REQUIRE if collection_must_exist else CollectionMode.CREATE,
                document=upload,
            )
        if answer.startswith(SubmitAnswer.DUPLICATE):
            raise DuplicateDocument(collection, answer.removeprefix(SubmitAnswer.DUPLICATE))
        if answer == SubmitAnswer.UNKNOWN:
            raise CollectionNotFound(collection)
        if answer == SubmitAnswer.FULL:
            raise QueueFull(self.s.retry_after_s)
        if answer == SubmitAnswer.BUSY:
            raise TooManyJobs(self.s.retry_after_s, self.s.tenant_max_inflight)
        if answer == SubmitAnswer.BUSY_INTERACTIVE:
            raise TooManyJobs(self.s.retry_after_s, self.s.tenant_max_interactive, "questions")
        return env
