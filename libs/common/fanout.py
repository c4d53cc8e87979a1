"""Every waiter of a process on a few connections: one reader fans out to many watches.

A gateway follows many streams at once: each open events stream follows its job's
``events``, each ``?wait=`` (and each plain OpenAI completion) its job's ``done``.
Were each to block in its own ``XREAD`` it would hold a pooled connection for as long
as it waits, and a hundred waiters would take every connection the ordinary requests
need. Here they hold none:

- A watch registers (stream key, last id) with :class:`Fanout` and waits on an
  in-process event; leaving its ``async with`` (the request ended, the client went
  away, the task was cancelled) unregisters it, so nothing outlives its request.
- Streams are read by *readers*, each a task that owns one dedicated connection and
  loops on one ``XREAD COUNT BLOCK`` over all of its streams at once, then hands each
  entry to the watches of its stream. A stream's read position is the lowest last id
  among its watches; a watch skips what it already has, so two clients of one job, one
  resuming from an earlier id, share one read.
- A stream belongs to reader ``crc32(key) % readers`` of its hash tag's group: one
  ``XREAD`` names keys of one cluster slot only (every job key carries its partition's
  tag, ``{p<N>}``; see ``keys.py``), so the design holds on a Valkey Cluster. The
  process therefore uses ``readers`` connections per partition that has watches (with
  ``DOCUMIND_PARTITIONS=1``: ``readers``), plus one to wake readers; however many
  watches there are.
- A new watch must be read at once, but its reader may be blocked on the streams it
  had: each reader also blocks on a wake stream of its own (``keys.waiter_wake``, in the
  same slot, capped to one entry and expiring), and the first watch added during a
  read appends to it, which ends that read; the next one names every stream. One
  call names all of a reader's streams: a reader with a few thousand pays about a
  millisecond to send them (their request bytes are built once per stream), far less
  than a connection per waiter costs Valkey and the pool.
- Valkey errors do not end watches: the reader logs, backs off and reads again from
  each stream's position, so nothing is lost or repeated. A waiter that gives up
  meanwhile sees a timeout, as it would see a quiet stream.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import zlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final

from prometheus_client import Counter, Gauge
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from libs.common import keys, slots
from libs.common.fanout_connections import WaiterConnections, waiter_connections
from libs.common.sentinel import SentinelTarget
from libs.common.watch import Entry, StreamId, Watch, parse_id

logger = logging.getLogger(__name__)

WATCHES = Gauge(
    "documind_waiters", "Watches open in this process: events streams and ?wait= following a stream."
)
READS = Counter("documind_waiter_reads_total", "XREAD calls of the waiter readers, by outcome.", ["outcome"])

# Entries taken from one stream per read: a long backlog comes over a few reads.
READ_COUNT: Final = 100
# A reader's longest block; a new watch wakes it sooner (see the module docstring).
BLOCK_MS: Final = 10_000
# A reader's wake stream outlives its longest block by far (reset on every wake).
WAKE_TTL_MS: Final = 600_000
# Backoff of a reader whose read failed: doubling from the first to the last.
RETRY_FIRST_S: Final = 0.05
RETRY_MAX_S: Final = 2.0


def hash_tag(key: str) -> str:
    """The part of ``key`` that Valkey Cluster hashes, braces included ("{p0}")."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start < 0 or end <= start + 1:
        raise ValueError(f"{key!r} has no hash tag: a waiter's stream must name its slot")
    return key[start : end + 1]


def _bulk(value: str) -> bytes:
    data = value.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class _Watch:
    """One waiter's place in a stream, and the entries read for it not yet taken."""

    __slots__ = ("_entries", "_ready", "key", "last")

    def __init__(self, key: str, after: str) -> None:
        self.key = key
        self.last: StreamId = parse_id(after)
        self._entries: list[Entry] = []
        self._ready = asyncio.Event()

    def push(self, sid: StreamId, entry: Entry) -> None:
        if sid > self.last:
            self._entries.append(entry)
            self.last = sid
            self._ready.set()

    async def next(self, timeout_s: float) -> list[Entry]:
        if not self._entries:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return []
        taken, self._entries = self._entries, []
        return taken


class _Stream:
    """A stream a reader follows: its watches, its key and position as request bytes, and
    the position the read in flight asked from."""

    __slots__ = ("asked", "key", "low", "position", "watches")

    def __init__(self, key: str) -> None:
        self.key = _bulk(key)
        self.watches: set[_Watch] = set()
        self.low: StreamId = (0, 0)
        self.position = b""
        # None: not in the read in flight (added during it).
        self.asked: StreamId | None = None

    def reposition(self) -> None:
        self.low = min(w.last for w in self.watches)
        self.position = _bulk(f"{self.low[0]}-{self.low[1]}")


class _Reader:
    """One connection's loop over the streams of one slot that hash to it."""

    def __init__(self, fanout: Fanout, wake_key: str) -> None:
        self._fanout = fanout
        self.wake_key = wake_key
        self._wake_last = "0-0"
        self.streams: dict[str, _Stream] = {}
        self._reading = False
        self._woken = False
        self._changed = asyncio.Event()
        self._tag = hash_tag(wake_key)
        self.stopped = False
        self.task = asyncio.create_task(self._run(), name=f"waiters {wake_key}")
        self.task.add_done_callback(_log_crash)

    def add(self, watch: _Watch) -> None:
        stream = self.streams.get(watch.key)
        if stream is None:
            stream = self.streams[watch.key] = _Stream(watch.key)
        stream.watches.add(watch)
        stream.reposition()
        if not self._reading:
            self._changed.set()
        elif not self._woken:
            self._woken = True
            self._fanout.wake(self.wake_key)

    def remove(self, watch: _Watch) -> None:
        stream = self.streams.get(watch.key)
        if stream is None:
            return
        stream.watches.discard(watch)
        if stream.watches:
            stream.reposition()
        else:
            del self.streams[watch.key]

    def _request(self) -> bytes:
        """``XREAD COUNT BLOCK STREAMS`` over every stream and the wake stream, as RESP."""
        streams = list(self.streams.values())
        for stream in streams:
            stream.asked = stream.low
        slots.record("XREAD waiters", [*self.streams, self.wake_key])
        head = b"*%d\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n%s$5\r\nBLOCK\r\n%s$7\r\nSTREAMS\r\n" % (
            6 + 2 * (len(streams) + 1),
            _bulk(str(READ_COUNT)),
            _bulk(str(self._fanout.block_ms)),
        )
        return b"".join(
            [
                head,
                *(s.key for s in streams),
                _bulk(self.wake_key),
                *(s.position for s in streams),
                _bulk(self._wake_last),
            ]
        )

    async def _run(self) -> None:
        conn: AbstractConnection | None = None
        backoff = RETRY_FIRST_S
        failed = False
        try:
            while not self.stopped:
                if not self.streams:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                request = self._request()
                self._reading, self._woken = True, False
                try:
                    if conn is None:
                        conn = await self._fanout.connections.connection(self._tag, after_error=failed)
                    await conn.send_packed_command(request, check_health=False)
                    reply = await conn.read_response()
                except (RedisError, OSError) as exc:
                    if self.stopped:
                        return
                    READS.labels("error").inc()
                    logger.warning(
                        "waiters: reading %d streams failed (%s), again in %.2fs",
                        len(self.streams),
                        exc,
                        backoff,
                    )
                    if conn is not None:
                        await conn.disconnect()
                        conn = None  # the next may be another node's (a failover)
                    failed = True
                    await asyncio.sleep(backoff)
                    backoff = min(RETRY_MAX_S, backoff * 2)
                    continue
                finally:
                    self._reading = False
                backoff, failed = RETRY_FIRST_S, False
                READS.labels("entries" if reply else "timeout").inc()
                if reply:
                    self._dispatch(reply)
        finally:
            if conn is not None:
                await conn.disconnect()

    def _dispatch(self, reply: Any) -> None:
        for raw_key, raw_entries in reply.items() if isinstance(reply, dict) else reply:
            key = raw_key.decode()
            if key == self.wake_key:
                self._wake_last = raw_entries[-1][0].decode()
                continue
            stream = self.streams.get(key)
            if stream is None or stream.asked is None:  # its watches left during the read
                continue
            # A watch that joined during the read from an earlier id waits for the next
            # read (from its id): it must not skip what lies between.
            takers = [w for w in stream.watches if w.last >= stream.asked]
            for raw_id, raw_fields in raw_entries:
                entry_id = raw_id.decode()
                sid = parse_id(entry_id)
                fields = raw_fields
                if isinstance(raw_fields, list):
                    fields = dict(zip(raw_fields[::2], raw_fields[1::2], strict=True))
                for watch in takers:
                    watch.push(sid, (entry_id, fields))
            stream.reposition()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("waiters: %s stopped: %r (its watches wait in vain)", task.get_name(), exc, exc_info=exc)


class Fanout:
    """The waiters of one process, read by ``readers`` connections per slot (see module)."""

    def __init__(self, connections: WaiterConnections, *, readers: int = 2, block_ms: int = BLOCK_MS) -> None:
        if readers < 1:
            raise ValueError("a fan-out needs at least one reader")
        self.readers = readers
        self.block_ms = block_ms
        self.connections = connections
        # Wakes go over one more connection (the readers' are blocked).
        self._control = connections.control
        self._to_wake: set[str] = set()
        self._wake_due = asyncio.Event()
        self._waker: asyncio.Task[None] | None = None
        self._closing = False
        self._groups: dict[tuple[str, int], _Reader] = {}
        self._instance = secrets.token_hex(8)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        readers: int = 2,
        block_ms: int = BLOCK_MS,
        client_name: str = "documind-waiters",
        cluster: bool = False,
        sentinel: SentinelTarget | None = None,
    ) -> Fanout:
        """A fan-out with connections of its own (``client_name`` marks them in CLIENT LIST);
        ``cluster``: ``url`` is a Valkey Cluster node's, each reader reads its slot's primary;
        ``sentinel``: the readers read the Sentinels' primary, and follow it."""
        connections = waiter_connections(
            url, cluster=cluster, block_ms=block_ms, client_name=client_name, sentinel=sentinel
        )
        return cls(connections, readers=readers, block_ms=block_ms)

    @property
    def watching(self) -> int:
        """Streams followed right now (a stream with several watches counts once)."""
        return sum(len(r.streams) for r in self._groups.values())

    @asynccontextmanager
    async def _watch(self, key: str, after: str) -> AsyncIterator[Watch]:
        tag = hash_tag(key)
        index = zlib.crc32(key.encode()) % self.readers
        reader = self._groups.get((tag, index))
        if reader is None or reader.task.done():
            wake_key = keys.waiter_wake(tag, f"{self._instance}-{index}")
            reader = self._groups[(tag, index)] = _Reader(self, wake_key)
        watch = _Watch(key, after)
        reader.add(watch)
        WATCHES.inc()
        try:
            yield watch
        finally:
            WATCHES.dec()
            reader.remove(watch)

    def watch(self, key: str, after: str) -> AbstractAsyncContextManager[Watch]:
        return self._watch(key, after)

    def wake(self, wake_key: str) -> None:
        """End the blocking read of the reader of ``wake_key`` soon (it names a new stream)."""
        self._to_wake.add(wake_key)
        self._wake_due.set()
        if self._waker is None:
            self._waker = asyncio.create_task(self._wake_loop(), name="waiters: wake")
            self._waker.add_done_callback(_log_crash)

    async def _wake_loop(self) -> None:
        """One task sends every wake, over one connection: those asked for meanwhile go
        together in the next round trip."""
        while not self._closing:
            await self._wake_due.wait()
            self._wake_due.clear()
            due, self._to_wake = self._to_wake, set()
            try:
                async with self._control.pipeline(transaction=False) as pipe:
                    for wake_key in due:
                        pipe.xadd(wake_key, {"w": "1"}, maxlen=1, approximate=False)
                        pipe.pexpire(wake_key, WAKE_TTL_MS)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                # Each of those reads ends by its block time at the latest; its new watches wait until then.
                logger.warning("waiters: waking %d readers failed (%s)", len(due), exc)

    async def aclose(self) -> None:
        """Stop the readers and close every connection (open watches then wait in vain)."""
        readers = list(self._groups.values())
        self._groups.clear()
        for reader in readers:
            reader.stopped = True
            reader.task.cancel()
        self._closing = True
        self._wake_due.set()
        if self._waker is not None:
            self._waker.cancel()
        # Closing their connections too ends reads that missed the cancellation.
        tasks = [r.task for r in readers] + ([self._waker] if self._waker else [])
        await self.connections.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)
