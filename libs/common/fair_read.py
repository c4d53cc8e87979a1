"""The bulk lane's reading: one stream per tenant, read in turns.

Uploads and deletes (the bulk lane) queue on a stream of their tenant's at each
stage (``Partition.stream``); the tenant joins the partition's set of bulk
tenants of that stage as its first job is queued (``SUBMIT``, ``envelope.enqueue``).
A stage's bulk worker reads all those streams through one consumer group:

- every read first looks up the set (one round trip; a bulk batch takes far longer)
  and creates the group on the stream of a tenant it has not met;
- ``FAIR_READ`` then fills the batch in passes, each waiting tenant getting an
  equal share of what is left, starting one tenant further on every read. A small
  upload queued behind another tenant's thousands of parts is in the very next batch,
  so it waits for the batches already running, never for the backlog;
- with nothing waiting, the worker blocks on every tenant's stream at once (a
  tenant's very first job, on a stream the block does not cover yet, waits for the
  block to end: at most ``READ_BLOCK_MS``).

A read thus holds entries of several streams. The worker handles each tenant's
share as a sub-batch of its own, the smallest first (its texts reach the model
first), each committed on its own (entries are acknowledged on their own stream:
``CommitBatch.add(..., stream=)``): a few messages read beside another tenant's many
are done when they are, not with the rest. Retries wait in their tenant's delayed
set and go back to their tenant's stream. The default tenant's stream is always
read: its group is what ``/readyz`` looks for.

A handler may also say which tenants' next bulk work would only wait in this process
(:class:`TenantGate`: the embedder names the tenants whose uploads wait for a parse
process because they hold their share of them). Those tenants are left out of the
reads meanwhile, so their queued uploads do not take the worker's batches from the
other tenants; while any is left out, a read blocks at most ``GATED_BLOCK_MS``, so a
tenant is read again soon after its wait ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from libs.common.constants import BULK
from libs.common.decode import as_text
from libs.common.jobflow import Message
from libs.common.keys import DEFAULT_TENANT, Partition, Stage
from libs.common.scripts import FairRead

# One entry read: (stream, entry id, fields).
Entry = tuple[str, Any, Any]

# The longest a bulk read blocks while some tenant is left out of it (TenantGate): about
# how late that tenant's next read comes after its wait ends.
GATED_BLOCK_MS = 100


@runtime_checkable
class TenantGate(Protocol):
    """A handler that knows which tenants' bulk work would only wait in this process now."""

    def saturated(self) -> Collection[str]:
        """The tenants to leave out of the next bulk read."""
        ...


async def create_group(client: aioredis.Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream); an existing group is fine."""
    try:
        # From id 0: entries queued before the group existed are kept.
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class TenantStreams:
    """One stage's bulk streams in one partition, as one consumer reads them."""

    def __init__(self, client: aioredis.Redis, partition: Partition, stage: Stage, group: str) -> None:
        self.r = client
        self.partition = partition
        self.stage = stage
        self.group = group
        self.tenants_key = partition.bulk_tenants(stage)
        # tenant -> stream, for the streams whose group exists.
        self.streams: dict[str, str] = {}
        self._turn = 0
        self._fair_read = FairRead(client)

    def stream_of(self, tenant: str) -> str:
        return self.partition.stream(self.stage, BULK, tenant)

    def known(self) -> list[str]:
        return list(self.streams.values())

    def forget(self) -> None:
        """Groups may be gone (a Valkey that lost its data): create them again on the next read."""
        self.streams.clear()

    async def refresh(self) -> list[str]:
        """The streams to read: the default tenant's and those of every tenant in the set
        (a tenant dropped from it while idle, ``lua.PRUNE_TENANT``, is dropped here too)."""
        members = {as_text(m) for m in await self.r.smembers(self.tenants_key)}
        for gone in [t for t in self.streams if t != DEFAULT_TENANT and t not in members]:
            del self.streams[gone]
        for tenant in [DEFAULT_TENANT, *sorted(members)]:
            if tenant not in self.streams:
                stream = self.stream_of(tenant)
                await create_group(self.r, stream, self.group)
                self.streams[tenant] = stream
        return self.known()

    async def read(self, consumer: str, count: int, block_ms: int, skip: Collection[str] = ()) -> list[Entry]:
        """Up to ``count`` entries shared fairly over the tenants but those in ``skip``;
        blocks while there are none."""
        streams = await self.refresh()
        if skip:
            streams = [stream for tenant, stream in self.streams.items() if tenant not in skip]
            block_ms = min(block_ms, GATED_BLOCK_MS)
            if not streams:
                await asyncio.sleep(block_ms / 1000)  # as long as a read would have blocked
                return []
        first = self._turn % len(streams)
        self._turn += 1
        order = streams[first:] + streams[:first]
        got = await self._fair_read(order, group=self.group, consumer=consumer, count=count)
        if not got:
            reply: Any = await self.r.xreadgroup(
                self.group, consumer, {s: ">" for s in order}, count=1, block=block_ms
            )
            got = [(as_text(stream), entries) for stream, entries in reply or []]
        return [(stream, mid, fields) for stream, entries in got for mid, fields in entries]


def field_map(fields: Any) -> dict[Any, Any]:
    """An entry's fields as a dict: XREADGROUP's reply has one, a script's a flat list."""
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=True))


def per_stream(messages: list[Message]) -> list[list[Message]]:
    """A batch's messages grouped by the stream they were read from (in order of first
    appearance): the worker handles each tenant's share as a sub-batch of its own."""
    groups: dict[str, list[Message]] = {}
    for m in messages:
        groups.setdefault(m.stream, []).append(m)
    return list(groups.values())
