"""Where the gateway's waiter readers (:mod:`libs.common.fanout`) get their connections.

Each reader owns one connection for as long as it runs and blocks in ``XREAD`` on it
over streams of one hash tag. On one Valkey server any connection of a pool will do
(:class:`PoolConnections`; with Sentinels, a pool of the primary they name, each
connection asking them where it is as it connects). On a Valkey Cluster the
connection must reach the primary
that owns the tag's slot (:class:`ClusterConnections`): it is opened to the node the
cluster client's slot map names, outside that client's per-node pools (a blocked
connection would hold one of them), and a reader whose read failed asks again after
the slot map is refreshed (a failover moves the slot to the old replica).

Both give the waker (``control``) a client of their own kind for its ``XADD``\\ s.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from libs.common.cluster_client import cluster_client
from libs.common.sentinel import SentinelTarget, sentinel_pool


class WaiterConnections(Protocol):
    """Dedicated connections for readers, and a client for everything else."""

    @property
    def control(self) -> Any:
        """A client whose ``pipeline(transaction=False)`` may name keys of any slot."""

    async def connection(self, tag: str, *, after_error: bool) -> AbstractConnection:
        """A connection for one reader of hash tag ``tag`` ("{p0}")."""

    async def aclose(self) -> None:
        """Close every connection handed out, and the control client."""


def _options(block_ms: int, client_name: str) -> dict[str, Any]:
    return {
        "socket_timeout": block_ms / 1000 + 10,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "client_name": client_name,
    }


class PoolConnections:
    """One server: the readers' connections and the control client share a pool."""

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self._pool = pool
        self.control = aioredis.Redis(connection_pool=pool)

    @classmethod
    def from_url(cls, url: str, *, block_ms: int, client_name: str) -> PoolConnections:
        return cls(aioredis.ConnectionPool.from_url(url, **_options(block_ms, client_name)))

    async def connection(self, tag: str, *, after_error: bool) -> AbstractConnection:
        conn: AbstractConnection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        return conn

    async def aclose(self) -> None:
        # Closing the readers' connections too ends reads that missed their task's
        # cancellation (on Python 3.11, asyncio.wait_for may swallow one that lands as a
        # send completes).
        await self._pool.disconnect()
        await self.control.aclose()
        await self._pool.aclose()


class ClusterConnections:
    """A Valkey Cluster: each reader's connection goes to its slot's primary."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.control = cluster
        self._opened: set[AbstractConnection] = set()

    @classmethod
    def from_url(cls, url: str, *, block_ms: int, client_name: str) -> ClusterConnections:
        return cls(cluster_client(url, **_options(block_ms, client_name)))

    async def connection(self, tag: str, *, after_error: bool) -> AbstractConnection:
        cluster = self.control
        await cluster.initialize()
        if after_error:
            # The slot may have moved (a failover, a resharding): read the map again.
            with contextlib.suppress(RedisError, OSError):
                await cluster.nodes_manager.initialize()
        node = cluster.get_node_from_key(tag)
        if node is None:  # only asked of replicas
            raise RedisError(f"no node serves {tag}")
        conn: AbstractConnection = node.connection_class(**node.connection_kwargs)
        self._opened = {c for c in self._opened if c.is_connected}
        self._opened.add(conn)
        return conn

    async def aclose(self) -> None:
        for conn in list(self._opened):
            with contextlib.suppress(RedisError, OSError):
                await conn.disconnect()
        self._opened.clear()
        await self.control.aclose()


def waiter_connections(
    url: str, *, cluster: bool, block_ms: int, client_name: str, sentinel: SentinelTarget | None = None
) -> WaiterConnections:
    """The connections of one process's waiters on ``url`` (a cluster node's when ``cluster``;
    with ``sentinel``, the Sentinels' primary: each connection asks them where it is when
    it connects, so a reader whose read failed reconnects to the promoted replica)."""
    if sentinel is not None:
        return PoolConnections(sentinel_pool(sentinel, url, _options(block_ms, client_name)))
    kind: type[PoolConnections] | type[ClusterConnections] = (
        ClusterConnections if cluster else PoolConnections
    )
    return kind.from_url(url, block_ms=block_ms, client_name=client_name)
