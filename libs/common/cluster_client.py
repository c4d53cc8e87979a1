"""redis-py's async Valkey Cluster client as DocuMind uses it (``DOCUMIND_VALKEY_CLUSTER``).

:func:`libs.common.service.connect` builds it. It is redis-py 8.1's ``RedisCluster``
with six repairs, each of a behaviour the cluster tests met:

- ``XREAD`` and ``XREADGROUP`` are routed by their stream keys read here: redis-py
  asks a node ``COMMAND GETKEYS`` before each (its keys are "movable"), a round trip
  more per read, to a node that may be the one that just died.
- A command whose connection was closed under it (redis-py closes a node's
  connections when it re-reads the slot map, after a failover too, while other tasks
  use them) fails with ``AttributeError``/``RuntimeError`` from the transport; it is
  raised as ``ConnectionError``, which every loop rides out (``outage.py``), instead
  of ending the loop. (redis-py's fix, #4288, is not in 8.1.)
- MULTI/EXEC hands each reply's parser the command's ``keys`` option (``SMEMBERS``
  in a transaction raised ``TypeError``); the option is dropped, as redis-py's other
  paths drop it.
- :func:`ready` reads the slot map before tasks share the client: left to its first
  commands, concurrent ones closed each other's connections.
- Reading the slot map when no node answers (mid-failover, the node the client knew
  dead) raised ``RedisClusterException``, which is no ``RedisError``: it ended the
  gateway's waiter readers (their watches then waited in vain) and could end any
  loop that rides out ``ConnectionError``; it is raised as ``ConnectionError``.
- A client starts from one node (``DOCUMIND_VALKEY_URL``); one first reading its
  slot map after that node died (the gateway's waiter fan-out, first used after a
  failover) could never reach the cluster, though the process's other clients knew
  every node. Every client of a process records the nodes it has seen, and one
  reading the slot map asks them too.

And one addition: :meth:`ClusterClient.on_slot_owner` sends commands in one round
trip on one connection to the primary owning a key's slot, so a keyless command that
must follow a write on its connection (``WAIT``, ``durability.py``) reaches the same
node and connection (redis-py's cluster pipeline sends ``WAIT`` to its default node).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, PipelineCommand, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What the transport raises when its connection was closed under a command.
_CLOSED_TRANSPORT: Final = (
    "'NoneType' object has no attribute",
    "'NoneType' object is not callable",
    "unable to perform operation on",
)
_STREAM_READS: Final = frozenset({"XREAD", "XREADGROUP"})
# on_slot_owner: tries, and the pause before another after the cluster was down.
_OWNER_ATTEMPTS: Final = 3
_CLUSTER_DOWN_PAUSE_S: Final = 0.25
# A first reply saying the command did not run on that node: the slot map is re-read.
_NOT_RUN_HERE: Final = (MovedError, AskError, TryAgainError, ClusterDownError, SlotNotCoveredError)
_LOST: Final = (RedisConnectionError, RedisTimeoutError)
# What redis-py's slot-map read raises, as a RedisClusterException (no RedisError), when no
# node it knows answers or their answers leave slots uncovered: a failover under way.
_NO_SLOT_MAP: Final = ("Redis Cluster cannot be connected", "All slots are not covered")
# Every node the cluster clients of this process have seen, by the URL they started from
# (a process's clients all start from DOCUMIND_VALKEY_URL's one node).
_SEEN: dict[str, set[tuple[str, int]]] = {}


def _closed_transport(exc: BaseException) -> bool:
    return isinstance(exc, AttributeError | RuntimeError | TypeError) and any(
        text in str(exc) for text in _CLOSED_TRANSPORT
    )


def stream_read_keys(args: Sequence[Any]) -> list[Any]:
    """The stream keys of an ``XREAD``/``XREADGROUP`` call's arguments (after its name):
    the first half of what follows ``STREAMS`` (the rest are their ids)."""
    words = [a.upper() if isinstance(a, str | bytes) else a for a in args]
    for marker in ("STREAMS", b"STREAMS"):
        if marker in words:
            rest = list(args[words.index(marker) + 1 :])
            return rest[: len(rest) // 2]
    return []


class ClusterClient(RedisCluster):
    """The cluster client with the repairs of the module docstring."""

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if command.upper() in _STREAM_READS and (streams := stream_read_keys(args)):
            found = {self.keyslot(key) for key in streams}
            if len(found) != 1:
                raise RedisClusterException(f"{command} - all keys must map to the same key slot")
            return found.pop()
        slot: int = await super()._determine_slot(command, *args)
        return slot

    # The URL it started from (cluster_client): the key of the nodes it shares in _SEEN.
    seed: str = ""

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> ClusterClient:
        if self._initialize and self.seed:
            manager = self.nodes_manager
            for host, port in sorted(_SEEN.get(self.seed, ())):
                if f"{host}:{port}" not in manager.startup_nodes:
                    node = ClusterNode(host, port, **manager.connection_kwargs)
                    manager.startup_nodes[node.name] = node
        try:
            await super().initialize(additional_startup_nodes_info, last_failed_node_name)
        except RedisClusterException as exc:
            if not str(exc).startswith(_NO_SLOT_MAP):
                raise
            raise RedisConnectionError(f"no node answered for the slot map ({exc})") from exc
        if self.seed:
            _SEEN.setdefault(self.seed, set()).update((n.host, int(n.port)) for n in self.get_nodes())
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (AttributeError, RuntimeError, TypeError) as exc:
            if not _closed_transport(exc):
                raise
            raise RedisConnectionError(f"connection closed under the command ({exc})") from exc

    async def on_slot_owner(self, key: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """``commands`` in one round trip on one connection to the primary owning
        ``key``'s slot: each reply, or its error, in place (none raised).

        When the first reply says the command did not run there (MOVED, ASK, TRYAGAIN,
        CLUSTERDOWN) or the connection was lost, the slot map is re-read and all are
        sent again, up to 3 times in all (after a lost connection the first may have
        run: as redis-py's own retries, a write may then be applied twice; the
        scripts DocuMind sends this way ack messages or check a job's state first).
        """
        for attempt in range(1, _OWNER_ATTEMPTS + 1):
            if self._initialize:
                await self.initialize()
            node = self.get_node_from_key(key)
            if node is None:
                raise SlotNotCoveredError(f"no primary serves the slot of {key}")
            batch = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
            try:
                await node.execute_pipeline(batch)
            except (*_LOST, AttributeError, RuntimeError, TypeError) as exc:
                if not isinstance(exc, _LOST) and not _closed_transport(exc):
                    raise
                self._initialize = True
                if attempt == _OWNER_ATTEMPTS:
                    raise RedisConnectionError(f"{node.name}: {exc}") from exc
                continue
            first = batch[0].result
            if attempt < _OWNER_ATTEMPTS and isinstance(first, (*_NOT_RUN_HERE, *_LOST)):
                self._initialize = True
                if isinstance(first, ClusterDownError | TryAgainError):
                    await asyncio.sleep(_CLUSTER_DOWN_PAUSE_S)
                continue
            return [command.result for command in batch]
        raise AssertionError("unreachable")  # pragma: no cover

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _Pipeline(self, transaction)  # type: ignore[abstract]  # as redis-py's own


class _Pipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except (AttributeError, RuntimeError, TypeError) as exc:
            if not _closed_transport(exc):
                raise
            raise RedisConnectionError(f"connection closed under the pipeline ({exc})") from exc


def cluster_client(url: str, **options: Any) -> ClusterClient:
    """A cluster client starting from ``url`` (any node; credentials and TLS from it)."""
    client = cast(ClusterClient, ClusterClient.from_url(url, **options))
    client.seed = url
    callbacks = client.response_callbacks
    for name, parse in list(callbacks.items()):
        callbacks[name] = functools.partial(_without_keys, parse)
    return client


def _without_keys(parse: Callable[..., Any], response: Any, **options: Any) -> Any:
    options.pop("keys", None)
    return parse(response, **options)


async def ready(client: Any) -> None:
    """Before a client is used by concurrent tasks: a cluster client reads the slot map
    now (one server's client needs nothing)."""
    if isinstance(client, RedisCluster):
        await client.initialize()
