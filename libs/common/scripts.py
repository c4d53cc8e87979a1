"""Typed wrappers of the Lua scripts: each one owns its script's KEYS and ARGV order.

Call sites pass named, typed parameters; only this module knows the positions
(documented beside each script in ``lua.py``). Every call is noted for the
slot audit (``slots.record``): all of a call's keys must lie in one slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline

from libs.common import jsontext, lua, lua_apikeys, slots
from libs.common.apikey_record import AuthOutcome
from libs.common.commit import CommitBatch, Scalar
from libs.common.constants import CollectionMode
from libs.common.decode import as_text
from libs.common.durability import Durability, ScriptCall, Subject
from libs.common.durability import Op as DurableOp
from libs.common.keys import ApiKeyKeys, CollectionKeys, DocumentKeys, JobKeys
from libs.common.ratelimit import RateDecision


class _Script:
    name: ClassVar[str]
    source: ClassVar[str]

    def __init__(self, client: aioredis.Redis, durability: Durability | None = None) -> None:
        """``durability``: a replica confirms each call's write (``durability.py``)."""
        self._text = lua.with_prelude(self.source)
        self._script = client.register_script(self._text)
        self._durability = durability

    async def _run_durable(
        self, op: DurableOp, keys: Sequence[str], args: Sequence[Any], subject: Subject
    ) -> Any:
        """As :meth:`_run`, then WAIT for the replicas the durability policy asks."""
        durability = self._durability
        replicas = await durability.replicas_for(keys[0]) if durability is not None else 0
        if durability is None or replicas == 0:
            return await self._run(keys, args)
        slots.record(self.name, keys)
        call = ScriptCall(self._script.sha, self._text, keys, args)
        return await durability.write(op, call, replicas, subject)

    async def _run(self, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Any:
        slots.record(self.name, keys)
        if isinstance(client, ClusterPipeline):
            # A cluster pipeline does not load scripts before it runs (one server's
            # pipeline does): the script goes whole, and its node caches it.
            return client.eval(self._text, len(keys), *keys, *args)
        return await self._script(keys=keys, args=args, client=client)


def _flat(fields: Mapping[str, Scalar]) -> list[Scalar]:
    return [x for kv in fields.items() for x in kv]


class Commit(_Script):
    name = "COMMIT"
    source = lua.COMMIT

    async def __call__(self, batch: CommitBatch, *, group: str, subject: Subject = "") -> list[int]:
        """Per message: ``commit.APPLIED``, ``STALE``, ``SKIPPED`` or ``STOPPED``.

        ``subject`` names the batch's jobs in a replication shortfall's warning."""
        if not batch.messages:
            return []
        args = [group, batch.payload()]
        applied: list[Any] = await self._run_durable("commit", batch.keys, args, subject or batch.first_key)
        return [int(a) for a in applied]


@dataclass(frozen=True, slots=True)
class NewDocument:
    """An upload registered with its ingest job: its hash fields and content hash."""

    keys: DocumentKeys
    fields: Mapping[str, str]
    filename: str
    sha256: str = ""
    blob: bytes | None = None


class Submit(_Script):
    name = "SUBMIT"
    source = lua.SUBMIT

    async def __call__(
        self,
        *,
        stream: str,
        job: JobKeys,
        collection: CollectionKeys,
        mode: CollectionMode,
        bulk_tenants: str | None,
        envelope: str,
        job_fields: Mapping[str, str],
        job_ttl_s: int,
        events_ttl_s: int,
        max_backlog: int,
        max_inflight: int,
        max_interactive: int,
        now: str,
        deadline: str,
        document: NewDocument | None = None,
        blob_ttl_s: int = 0,
    ) -> str:
        """'ok', 'unknown', 'full', 'busy' or 'duplicate:<document id>' (see ``lua.SUBMIT``).

        ``bulk_tenants``: for a job on the bulk lane, the set its tenant joins
        (``Partition.bulk_tenants``); None on the interactive lane. ``now`` and
        ``deadline``: unix times as the job's hash keeps them (``repr`` of the float).
        """
        partition = collection.partition
        keys = [
            stream,
            job.hash,
            collection.registry,
            collection.meta,
            collection.hashes,
            job.events,
            partition.inflight(collection.tenant),
            # On the interactive lane, the tenant's interactive jobs in flight.
            bulk_tenants or partition.interactive_inflight(collection.tenant),
        ]
        doc_fields = ""
        blob = b""
        if document is not None:
            keys += [
                document.keys.hash,
                collection.documents,
                collection.pending,
                collection.filename(document.filename),
            ]
            doc_fields = jsontext.dumps(document.fields)
            if document.blob is not None:
                keys.append(document.keys.blob)
                blob = document.blob
        # The hashes' fields as one JSON object each (every value a string): one argument
        # to pack instead of two per field, which costs a client more than the JSON.
        args = [
            max_backlog,
            envelope,
            job_ttl_s,
            blob,
            blob_ttl_s,
            collection.name,
            mode,
            now,
            document.sha256 if document else "",
            document.keys.document_id if document else "",
            events_ttl_s,
            "1" if document is not None else "0",
            "1" if document is not None and document.blob is not None else "0",
            max_inflight,
            deadline,
            collection.tenant if bulk_tenants else "",
            jsontext.dumps(job_fields),
            doc_fields,
            max_interactive,
        ]
        return as_text(await self._run_durable("submit", keys, args, f"job_id={job.job_id}"))


class FairRead(_Script):
    name = "FAIR_READ"
    source = lua.FAIR_READ

    async def __call__(
        self, streams: Sequence[str], *, group: str, consumer: str, count: int
    ) -> list[tuple[str, list[Any]]]:
        """Up to ``count`` new entries for ``consumer``, shared out over ``streams``
        (the first served first): (stream, [(id, [field, value, ...]), ...]) per stream read."""
        if not streams:
            return []
        reply: list[Any] = await self._run(streams, [group, consumer, count])
        return [(streams[int(index) - 1], entries) for index, entries in reply]


class MoveDue(_Script):
    name = "MOVE_DUE"
    source = lua.MOVE_DUE

    async def __call__(self, *, delayed: str, stream: str, now: float, limit: int) -> int:
        """Retries due by ``now`` back onto ``stream``: how many moved."""
        return int(await self._run([delayed, stream], [now, limit]))


@dataclass(frozen=True, slots=True)
class IdleTenant:
    """A bulk tenant that may be idle at a stage: its name, stream and delayed set."""

    tenant: str
    stream: str
    delayed: str


class PruneTenant(_Script):
    name = "PRUNE_TENANT"
    source = lua.PRUNE_TENANT

    async def many(self, idle: Sequence[IdleTenant], *, tenants: str, group: str, idle_s: float) -> list[str]:
        """Drop each of ``idle`` from the set ``tenants`` and delete its stream if the
        stream is empty, nothing is pending or delayed, and its last entry is at least
        ``idle_s`` old, in one call: the tenants dropped."""
        if not idle:
            return []
        keys = [tenants, *(key for t in idle for key in (t.stream, t.delayed))]
        args = [group, int(idle_s * 1000), *(t.tenant for t in idle)]
        return [as_text(t) for t in await self._run(keys, args)]

    async def __call__(
        self, *, tenants: str, stream: str, delayed: str, tenant: str, group: str, idle_s: float
    ) -> bool:
        """:meth:`many` for one tenant: True if dropped."""
        return bool(
            await self.many(
                [IdleTenant(tenant, stream, delayed)], tenants=tenants, group=group, idle_s=idle_s
            )
        )


@dataclass(frozen=True, slots=True)
class Running:
    """A job a stage has started: its hash and the status to show."""

    job: JobKeys
    status: str


class MarkRunning(_Script):
    name = "MARK_RUNNING"
    source = lua.MARK_RUNNING

    async def __call__(self, jobs: Sequence[Running], *, stage: str, ttl_s: int, now: float) -> None:
        if jobs:
            await self._run([j.job.hash for j in jobs], [ttl_s, now, stage, *[j.status for j in jobs]])


class ExpireOverdue(_Script):
    name = "EXPIRE_OVERDUE"
    source = lua.EXPIRE_OVERDUE

    async def __call__(
        self,
        job: JobKeys,
        *,
        now: float,
        grace_s: float,
        done_ttl_s: int,
        events_ttl_s: int,
        events_maxlen: int,
    ) -> bool:
        """True when it expired the job."""
        args = [now, grace_s, done_ttl_s, events_ttl_s, events_maxlen]
        return bool(await self._run([job.hash, job.done, job.events], args))


class Cancel(_Script):
    name = "CANCEL"
    source = lua.CANCEL

    async def __call__(
        self,
        job: JobKeys,
        *,
        inflight: str,
        interactive_inflight: str,
        document: DocumentKeys | None,
        now: float,
        done_ttl_s: int,
        events_ttl_s: int,
        events_maxlen: int,
        channel: str,
    ) -> str:
        """'cancelled', 'ended:<status>' for a job already final, '' for an unknown job.

        ``inflight``, ``interactive_inflight``: the tenant's sets of jobs in flight
        (``Partition.inflight``, ``Partition.interactive_inflight``)."""
        keys = [job.hash, job.done, job.events, inflight, interactive_inflight]
        keys += [document.hash] if document else []
        args = [now, done_ttl_s, events_ttl_s, events_maxlen, channel, job.job_id]
        return as_text(await self._run(keys, args))


class HSetIfExists(_Script):
    name = "HSET_IF_EXISTS"
    source = lua.HSET_IF_EXISTS

    async def __call__(self, key: str, fields: Mapping[str, Scalar], *, client: Any = None) -> None:
        """HSET on a hash that exists; ``client`` queues it on a pipeline instead."""
        await self._run([key], _flat(fields), client=client)


class CreateCollection(_Script):
    name = "CREATE_COLLECTION"
    source = lua.CREATE_COLLECTION

    async def __call__(self, collection: CollectionKeys, *, description: str, now: float) -> bool:
        """False when a collection of that name exists already."""
        keys = [collection.registry, collection.meta]
        return bool(await self._run(keys, [collection.name, description, repr(now)]))


class DropCollection(_Script):
    name = "DROP_COLLECTION"
    source = lua.DROP_COLLECTION

    async def __call__(self, collection: CollectionKeys) -> bool:
        """False when there is no such collection."""
        return bool(await self._run([collection.registry, collection.meta], [collection.name]))


class ServeCachedAnswer(_Script):
    name = "SERVE_CACHED_ANSWER"
    source = lua.SERVE_CACHED_ANSWER

    async def __call__(
        self,
        entry: str,
        job: JobKeys,
        *,
        final_fields: Mapping[str, str],
        job_fields: Mapping[str, str],
        job_ttl_s: int,
        done_ttl_s: int,
        events_ttl_s: int,
        events_maxlen: int,
    ) -> bool:
        """True when the entry existed and the job was created done with it."""
        final = _flat(final_fields)
        args = [job_ttl_s, done_ttl_s, events_ttl_s, events_maxlen, len(final), *final, *_flat(job_fields)]
        return bool(await self._run([entry, job.hash, job.done, job.events], args))


# --- API keys (issue 12) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthReply:
    """AUTHENTICATE's answer: the outcome, and for ``OK`` the rate decision and the
    record's tenant, role and collections field (as stored; '' for the operator)."""

    outcome: AuthOutcome
    rate: RateDecision | None = None
    tenant: str = ""
    role: str = ""
    collections: str = ""


class Authenticate(_Script):
    name = "AUTHENTICATE"
    source = lua_apikeys.AUTHENTICATE

    async def __call__(
        self, key: ApiKeyKeys, *, secret_sha256: str | None, now: float, default_rpm: int
    ) -> AuthReply:
        """Check a key's secret hash and count the request against its rate limit.

        ``secret_sha256`` None: the operator, already checked in-process (no record;
        only the rate limit of ``key`` applies). ``now`` is epoch seconds.
        """
        operator = secret_sha256 is None
        args = [secret_sha256 or "", round(now * 1_000_000), default_rpm, "1" if operator else "0"]
        reply: list[Any] = await self._run([key.record, key.rate], args)
        outcome = AuthOutcome(int(reply[0]))
        if outcome != AuthOutcome.OK:
            return AuthReply(outcome)
        allowed, limit, remaining, reset_s, retry_after_s = (int(x) for x in reply[1:6])
        rate = RateDecision(bool(allowed), limit, remaining, reset_s, retry_after_s)
        tenant, role, collections = (as_text(x) for x in reply[6:9])
        return AuthReply(outcome, rate, tenant, role, collections)


class RevokeApiKey(_Script):
    name = "REVOKE_API_KEY"
    source = lua_apikeys.REVOKE_API_KEY

    async def __call__(self, key: ApiKeyKeys, *, tenant: str | None, now: float, retention_s: int) -> int:
        """0: no such key (in ``tenant``, when given); 1: revoked now; 2: revoked already."""
        return int(await self._run([key.record, key.rate], [tenant or "", repr(now), retention_s]))
