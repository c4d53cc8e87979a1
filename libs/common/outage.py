"""Riding out a Valkey outage: capped exponential backoff with jitter, logged once.

When Valkey goes away (killed and restarted by ``documind up``'s supervisor, a
failover, a network cut), a worker's loops get redis-py's ``ConnectionError`` or
``TimeoutError``. They keep the process alive and try again: each loop waits
:meth:`Backoff.next_delay` between tries (0.1 s, then doubling up to
:data:`RECONNECT_MAX_S`, each drawn at random from its upper half so that the
replicas of a stage do not knock at the same instant), and redis-py's pool opens
fresh connections once Valkey answers. At the first failure of an outage the
pool's idle connections are dropped: one to the old server can pass the pool's
check and then fail once more after the outage. Messages read but not
acknowledged when the connection dropped stay pending and are reclaimed after
the visibility timeout, as after a crash.

One :class:`Outage` per client (:meth:`Outage.of`: every loop of a worker
process shares its client) says so in the log: a warning at the first failure of
an outage (however many loops meet it, however long it lasts) and one line when
Valkey answers again, with how long it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# The first wait after a failed round trip.
RECONNECT_BASE_S: Final = 0.1
# The longest wait between tries: how late, at worst, a loop notices that Valkey is back.
RECONNECT_MAX_S: Final = 5.0
# Valkey states that pass by themselves: a connection lost in a failover, a slot being
# migrated (TRYAGAIN: a multi-key command meets its slot half moved), a cluster that has
# not settled its slot map (CLUSTERDOWN).
TRANSIENT: Final = (RedisConnectionError, RedisTimeoutError, TryAgainError, ClusterDownError)
# Repeats of a call that met one (after 0.05-0.1, 0.1-0.2, 0.2-0.4 s) before it fails.
TRANSIENT_REPEATS: Final = 3

T = TypeVar("T")


async def ride_out(call: Callable[[], Awaitable[T]], stopping: asyncio.Event, what: str) -> T:
    """``call()``, repeated with backoff while it meets a passing Valkey state
    (:data:`TRANSIENT`), at most :data:`TRANSIENT_REPEATS` times and not once
    ``stopping`` is set; then its error is raised. A worker calls its handler so: a
    failover or a slot migration under a batch does not cost its jobs an attempt."""
    backoff = Backoff()
    for repeat in range(TRANSIENT_REPEATS + 1):
        try:
            return await call()
        except TRANSIENT as exc:
            if repeat == TRANSIENT_REPEATS or stopping.is_set():
                raise
            logger.info("%s met Valkey not ready (%s): repeated", what, exc)
            await asyncio.sleep(backoff.next_delay())
    raise AssertionError("unreachable")  # the loop returns or raises


class Backoff:
    """Waits between tries of one loop: doubling from ``base_s`` up to ``max_s``, with jitter."""

    def __init__(
        self,
        base_s: float = RECONNECT_BASE_S,
        max_s: float = RECONNECT_MAX_S,
        rng: random.Random | None = None,
    ) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next try: in the upper half of the current ceiling (never 0)."""
        ceiling = min(self.max_s, self.base_s * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0


class Outage:
    """Whether Valkey is away, as the loops sharing ``client`` see it; logs each outage once."""

    def __init__(self, name: str, client: aioredis.Redis | None = None) -> None:
        self.name = name
        self.client = client
        self.since: float | None = None

    @classmethod
    def of(cls, client: aioredis.Redis, name: str) -> Outage:
        """The one Outage of everything that shares ``client`` (named by the first to ask)."""
        found = _BY_CLIENT.get(client)
        if found is None:
            found = _BY_CLIENT[client] = cls(name, client)
        return found

    @property
    def down(self) -> bool:
        return self.since is not None

    async def failed(self, exc: BaseException) -> None:
        """A round trip failed: the first failure of an outage is logged and drops the
        client's connections; the rest are not."""
        if self.since is not None:
            return
        self.since = time.monotonic()
        logger.warning(
            "%s: valkey unavailable (%s: %s); retrying with backoff (at most %.0fs apart)",
            self.name,
            type(exc).__name__,
            exc,
            RECONNECT_MAX_S,
        )
        if self.client is not None:
            # Those in use fail on their own, and redis-py drops each that fails.
            with contextlib.suppress(RedisError, OSError):
                await _drop_idle_connections(self.client)

    def answered(self) -> None:
        """A round trip succeeded: the end of an outage is logged."""
        if self.since is not None:
            logger.info("%s: valkey answers again after %.1fs", self.name, time.monotonic() - self.since)
            self.since = None


async def _drop_idle_connections(client: aioredis.Redis) -> None:
    """Close a client's idle connections: its pool's, or on a Valkey Cluster (whose
    client has a pool per node, and no ``connection_pool``) every node's."""
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():
            await node.disconnect_free_connections()
        return
    await client.connection_pool.disconnect(inuse_connections=False)


_BY_CLIENT: weakref.WeakKeyDictionary[aioredis.Redis, Outage] = weakref.WeakKeyDictionary()
