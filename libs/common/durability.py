"""Waiting for a replica after the writes that accept a job or hand it on (issue 16).

An accepted job must outlive the node that accepted it. Valkey replicates
asynchronously: a primary that dies right after answering may take the job with it,
and the replica promoted in its place never saw it. So the writes that make a job's
state durable are followed by ``WAIT numreplicas timeout`` **on the same connection**
(WAIT counts the replicas that acknowledged that connection's last write):

- ``SUBMIT`` (the gateway accepts a job: ``jobs.py``), and the ``COMMIT`` of a
  document delete (``documents.py``: it accepts a delete job);
- a worker's ``COMMIT`` (``worker.py``): the ack of its input and the hand-on to the
  next stage, a retry, a final status, in one atomic script.

Not waited for (a loss is re-done or harmless): progress events, cached answers (the
answer is in the response already), cancels, retries moved back onto their stream,
reclaims.

The script and WAIT go in one round trip: on one server (or a Sentinel's primary)
in a non-transactional pipeline, which holds one connection; on a cluster in one
pipeline to the primary owning the keys' slot (``ClusterClient.on_slot_owner``:
redis-py's cluster pipeline would send a keyless WAIT to its default node).

``DOCUMIND_VALKEY_WAIT_REPLICAS``: ``auto`` (the default) waits for one replica when
the primary (on a cluster, the node owning the slot) has a replica online, else
sends no WAIT; a number always waits for that many (0: never). What each primary has
is read with ``INFO replication`` (or, for a user without ``@dangerous`` commands,
such as the embedded stack's service user, ``WAIT 0 0``: its reply is the replicas
online) at the first write, then again every :data:`REFRESH_S` in the background,
never on a write's path. ``DOCUMIND_VALKEY_WAIT_TIMEOUT_MS`` bounds the wait.

A shortfall (fewer replicas than asked within the timeout) does not undo the write:
the job was applied on the primary and stays accepted. Refusing it (503) would make
a client retry a job that exists, a duplicate. It is logged as a warning naming the
jobs and counted in ``documind_replication_wait_shortfalls_total{op}``; the time
waited is ``documind_replication_wait_seconds{op}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoPermissionError, NoScriptError, RedisError

from libs.common.cluster_client import ClusterClient

logger = logging.getLogger(__name__)

Op = Literal["submit", "commit"]
# What a shortfall's warning names ("job_id=..."), or how to make it (only then).
Subject = str | Callable[[], str]
WaitReplicas = int | Literal["auto"]

# How old a primary's replica count may be before it is read again (in the background).
REFRESH_S: Final = 5.0
# What "auto" waits for when the primary has a replica.
AUTO_REPLICAS: Final = 1

SHORTFALLS = Counter(
    "documind_replication_wait_shortfalls_total",
    "Writes (op: submit or commit) after which WAIT saw fewer replicas than asked within the timeout.",
    ["op"],
)
WAIT_SECONDS = Histogram(
    "documind_replication_wait_seconds",
    "Round trip of a durable write and its WAIT, by op (submit or commit).",
    ["op"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """A Lua script's call: its SHA1, its text (sent when the node lacks it), keys, args."""

    sha: str
    text: str
    keys: Sequence[str]
    args: Sequence[Any]

    def evalsha(self) -> tuple[Any, ...]:
        return ("EVALSHA", self.sha, len(self.keys), *self.keys, *self.args)

    def eval(self) -> tuple[Any, ...]:
        return ("EVAL", self.text, len(self.keys), *self.keys, *self.args)


@dataclass(slots=True)
class _Reading:
    replicas: int
    at: float


_BY_CLIENT: weakref.WeakKeyDictionary[Any, Durability] = weakref.WeakKeyDictionary()


class Durability:
    """One client's WAIT policy and its cache of replicas per primary."""

    def __init__(
        self,
        client: aioredis.Redis,
        replicas: WaitReplicas = "auto",
        timeout_ms: int = 1000,
        *,
        refresh_s: float = REFRESH_S,
    ) -> None:
        if replicas != "auto" and replicas < 0:
            raise ValueError("replicas to wait for: 'auto' or a number >= 0")
        if timeout_ms < 1:
            raise ValueError("WAIT's timeout must be at least 1 ms (0 would block for ever)")
        self._client = client
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self.refresh_s = refresh_s
        self._cluster = isinstance(client, RedisCluster)
        self._readings: dict[str, _Reading] = {}
        # This user may not run INFO (no @dangerous): replicas are read with WAIT 0 0.
        self._info_refused = False
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._shortfalls = {op: SHORTFALLS.labels(op) for op in ("submit", "commit")}
        self._seconds = {op: WAIT_SECONDS.labels(op) for op in ("submit", "commit")}

    @classmethod
    def of(cls, client: aioredis.Redis, replicas: WaitReplicas, timeout_ms: int) -> Durability:
        """The one Durability of everything sharing ``client`` (one cache per process)."""
        found = _BY_CLIENT.get(client)
        if found is None or (found.replicas, found.timeout_ms) != (replicas, timeout_ms):
            found = _BY_CLIENT[client] = cls(client, replicas, timeout_ms)
        return found

    # --- how many replicas to wait for ------------------------------------------

    async def replicas_for(self, key: str) -> int:
        """How many replicas a write of ``key`` waits for (0: send no WAIT)."""
        if self.replicas != "auto":
            return self.replicas
        node = self._node_name(key)
        reading = self._readings.get(node)
        if reading is None:
            await self._refresh(node, key)
            reading = self._readings.get(node)
            if reading is None:
                return 0
        elif time.monotonic() - reading.at > self.refresh_s and node not in self._refreshing:
            task = asyncio.create_task(self._refresh(node, key))
            self._refreshing[node] = task
            task.add_done_callback(self._refreshed)
        return AUTO_REPLICAS if reading.replicas > 0 else 0

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        for node, running in list(self._refreshing.items()):
            if running is task:
                del self._refreshing[node]

    def _node_name(self, key: str) -> str:
        if not self._cluster:
            return ""
        node = self._client.get_node_from_key(key)  # type: ignore[attr-defined]
        return str(node.name) if node is not None else ""

    async def _refresh(self, node: str, key: str) -> None:
        """Read the replicas online of the primary serving ``key``; keep the last
        reading when the primary cannot be asked (the write itself will say why)."""
        try:
            count = await self._count_replicas(key)
        except (RedisError, OSError) as exc:
            logger.debug("could not read the replicas of %s: %s", node or "the primary", exc)
            return
        self._readings[node] = _Reading(count, time.monotonic())

    async def _count_replicas(self, key: str) -> int:
        if not self._info_refused:
            try:
                info = await self._on_primary(key, ("INFO", "replication"))
                return online_replicas(info)
            except NoPermissionError:
                # Asked once: each refusal is an entry in the server's ACL log.
                self._info_refused = True
        # No INFO for this user: WAIT 0 0 answers at once with the replicas that
        # acknowledged this connection's writes (all online ones: it wrote nothing).
        return int(await self._on_primary(key, ("WAIT", 0, 0)))

    async def _on_primary(self, key: str, command: tuple[Any, ...]) -> Any:
        if isinstance(self._client, ClusterClient):
            (reply,) = await self._client.on_slot_owner(key, [command])
            if isinstance(reply, Exception):
                raise reply
            return reply
        return await self._client.execute_command(*command)  # type: ignore[no-untyped-call]

    # --- the write and its WAIT -------------------------------------------------

    async def write(self, op: Op, call: ScriptCall, replicas: int, subject: Subject) -> Any:
        """Run ``call`` and WAIT for ``replicas`` on its connection; the script's reply.

        ``subject`` names the jobs in the shortfall's log line (e.g. "job_id=...").
        """
        started = time.perf_counter()
        wait = ("WAIT", replicas, self.timeout_ms)
        reply, acked = await self._send(call.keys[0], [call.evalsha(), wait])
        if isinstance(reply, NoScriptError):
            # This node has not seen the script (a restart, a promoted replica): send it whole.
            reply, acked = await self._send(call.keys[0], [call.eval(), wait])
        self._seconds[op].observe(time.perf_counter() - started)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(acked, Exception) or int(acked) < replicas:
            self._shortfalls[op].inc()
            seen = acked if isinstance(acked, Exception) else f"{int(acked)} of {replicas} replicas"
            logger.warning(
                "%s %s is applied on the primary but not confirmed by a replica within %d ms (%s); "
                "it stays accepted",
                op,
                subject if isinstance(subject, str) else subject(),
                self.timeout_ms,
                seen,
            )
        return reply

    async def _send(self, key: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        if isinstance(self._client, ClusterClient):
            return await self._client.on_slot_owner(key, commands)
        async with self._client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies


def online_replicas(info: Any) -> int:
    """Replicas in state ``online`` in a parsed ``INFO replication`` (a primary's)."""
    if not isinstance(info, dict):
        return 0
    if info.get("role") not in (None, "master"):
        return 0
    return sum(
        1
        for name, value in info.items()
        if str(name).startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )
