"""A lane's reading: one stream per tenant, read in turns.

Questions (the interactive lane) and uploads and deletes (the bulk lane) queue on a
stream of their tenant's at each stage (``Partition.stream``); the tenant joins the
partition's set of tenants of that stage and lane as its first job there is queued
(``SUBMIT``, ``envelope.enqueue``). A stage's worker of a lane reads all those streams
through one consumer group:

- every read first looks up the set (one round trip) and creates the group on the
  stream of a tenant it has not met;
- ``FAIR_READ`` then fills the batch in passes, each waiting tenant getting an
  equal share of what is left, starting one tenant further on every read. A question
  (or a small upload) queued behind another tenant's flood is in the very next batch,
  so it waits for the batches already running, never for the backlog;
- with nothing waiting, the worker blocks on every tenant's stream at once and on the
  stage's arrivals stream (``Partition.arrivals``), which gets an entry when a tenant
  joins the set or queues work on its empty stream: a new tenant's very first job wakes
  an idle worker, which deletes the entry (and any older one: a crashed reader's) and
  reads again at once (its next read meets the tenant), instead of waiting for the block
  (``READ_BLOCK_MS``) to end. The entry goes to one consumer of the group; the others
  meet the tenant at their next read. Left unread, entries tell an autoscaler that a
  stage scaled to zero has work.

A read thus holds entries of several streams; entries are acknowledged on their own
stream (``CommitBatch.add(..., stream=)``). The worker handles each tenant's share as
a sub-batch of its own, the smallest first (its texts reach the model first), each
committed on its own: a question (or a few uploads) read beside another tenant's many
is done when it is, not with the rest. Retries wait in their tenant's
delayed set and go back to their tenant's stream. The default tenant's stream is always
read: its group is what ``/readyz`` looks for.

A bulk handler may also say which tenants' next bulk work would only wait in this process
(:class:`TenantGate`: the embedder names the tenants whose uploads wait for a parse
process because they hold their share of them). Those tenants are left out of the
reads meanwhile, so their queued uploads do not take the worker's batches from the
other tenants; while any is left out, a read blocks at most ``GATED_BLOCK_MS``, so a
tenant is read again soon after its wait ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from libs.common.decode import as_text
from libs.common.jobflow import Message
from libs.common.keys import DEFAULT_TENANT, Lane, Partition, Stage
from libs.common.scripts import FairRead

# One entry read: (stream, entry id, fields).
Entry = tuple[str, Any, Any]

# The longest a read blocks while some tenant is left out of it (TenantGate): about
# how late that tenant's next read comes after its wait ends.
GATED_BLOCK_MS = 100
# The longest a reader goes without looking up the set of tenants (it does at once after
# reading an arrival): how late a worker that did not take a tenant's arrival (another
# replica took it) starts reading that tenant's stream, and forgets a dropped one.
LOOKUP_EVERY_S = 1.0


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
    """One stage's streams of one lane in one partition, as one consumer reads them."""

    def __init__(
        self, client: aioredis.Redis, partition: Partition, stage: Stage, lane: Lane, group: str
    ) -> None:
        self.r = client
        self.partition = partition
        self.stage = stage
        self.lane = lane
        self.group = group
        self.tenants_key = partition.tenants(stage, lane)
        self.arrivals = partition.arrivals(stage, lane)
        # tenant -> stream, for the streams whose group exists.
        self.streams: dict[str, str] = {}
        # Arrivals read but not deleted yet: the next lookup of the set deletes them.
        self._arrived: list[Any] = []
        # When the set must be looked up again (monotonic; 0: at the next read).
        self._lookup_at = 0.0
        # The last read blocked and found the streams drained: the next one blocks at once.
        self._drained = False
        self._turn = 0
        self._fair_read = FairRead(client)

    def stream_of(self, tenant: str) -> str:
        return self.partition.stream(self.stage, self.lane, tenant)

    def known(self) -> list[str]:
        return list(self.streams.values())

    def forget(self) -> None:
        """Groups may be gone (a Valkey that lost its data): create them again on the next read."""
        self.streams.clear()
        self._arrived.clear()
        self._lookup_at = 0.0
        self._drained = False

    async def refresh(self) -> list[str]:
        """The streams to read: the default tenant's and those of every tenant in the set
        (a tenant dropped from it while idle, ``lua.PRUNE_TENANT``, is dropped here too).
        Arrivals read since the last lookup are deleted in its round trip."""
        if self._arrived:
            async with self.r.pipeline(transaction=False) as pipe:
                self._forget_arrived(pipe)
                pipe.smembers(self.tenants_key)
                *_, found = await pipe.execute()
        else:
            found = await self.r.smembers(self.tenants_key)
        self._lookup_at = time.monotonic() + LOOKUP_EVERY_S
        members = {as_text(m) for m in found}
        for gone in [t for t in self.streams if t != DEFAULT_TENANT and t not in members]:
            del self.streams[gone]
        if not self.streams:  # the first lookup, or one after forget()
            await create_group(self.r, self.arrivals, self.group)
        for tenant in [DEFAULT_TENANT, *sorted(members)]:
            if tenant not in self.streams:
                stream = self.stream_of(tenant)
                await create_group(self.r, stream, self.group)
                self.streams[tenant] = stream
        return self.known()

    async def read(self, consumer: str, count: int, block_ms: int, skip: Collection[str] = ()) -> list[Entry]:
        """Up to ``count`` entries shared fairly over the tenants but those in ``skip``;
        blocks while there are none (nothing, after an arrival: see ``_block``)."""
        if time.monotonic() >= self._lookup_at:
            await self.refresh()
        streams = self.known()
        if skip:
            streams = [stream for tenant, stream in self.streams.items() if tenant not in skip]
            block_ms = min(block_ms, GATED_BLOCK_MS)
            if not streams:
                await asyncio.sleep(block_ms / 1000)  # as long as a read would have blocked
                return []
        first = self._turn % len(streams)
        self._turn += 1
        order = streams[first:] + streams[:first]
        got: list[tuple[str, Any]] = []
        if skip or not self._drained:
            # The arrivals stream too: a tenant's first work is met while the streams are busy.
            read = await self._fair_read(
                order, group=self.group, consumer=consumer, count=count, arrivals=self.arrivals
            )
            got = self._without_arrivals(read)
            if not got and self._arrived:
                return []  # a tenant's first work: the next read meets the tenant
        if not got:
            got = await self._block(order, consumer, count, block_ms)
        return [(stream, mid, fields) for stream, entries in got for mid, fields in entries]

    async def _block(
        self, streams: list[str], consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, Any]]:
        """Wait for entries on ``streams`` (about ``count`` in all) or an arrival; the
        entries read. Fewer than each stream's share means the streams are drained: the
        next read blocks at once (one round trip, as with a single stream)."""
        wanted: dict[Any, Any] = {stream: ">" for stream in [*streams, self.arrivals]}
        each = max(1, count // len(streams))
        reply: Any = await self.r.xreadgroup(self.group, consumer, wanted, count=each, block=block_ms)
        got = self._without_arrivals([(as_text(stream), entries) for stream, entries in reply or []])
        self._drained = all(len(entries) < each for _stream, entries in got)
        return got

    def _without_arrivals(self, read: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """``read`` but the arrivals in it, which are noted: the next read looks up the set
        (meeting their tenants) and deletes them in that round trip, so a question read
        beside its arrival is handled without waiting for one."""
        got: list[tuple[str, Any]] = []
        for stream, entries in read:
            if stream == self.arrivals:
                self._arrived += [mid for mid, _fields in entries]
                self._lookup_at = 0.0
                self._drained = False
            else:
                got.append((stream, entries))
        return got

    async def settle(self) -> None:
        """Delete the arrivals read and not deleted yet (as this reader stops)."""
        if self._arrived:
            async with self.r.pipeline(transaction=False) as pipe:
                self._forget_arrived(pipe)
                await pipe.execute()

    def _forget_arrived(self, pipe: Any) -> None:
        ids, self._arrived = self._arrived, []
        pipe.xack(self.arrivals, self.group, *ids)
        pipe.xdel(self.arrivals, *ids)
        # Older ones were all delivered already: a crashed reader's, never deleted.
        pipe.xtrim(self.arrivals, minid=ids[-1])


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
