"""The Valkeys the integration tests run the stack on: one server, or a cluster.

A test that takes the ``backend`` fixture (or ``module_backend``) runs twice: on a
``valkey-server`` of its own, and on a Valkey Cluster of the session
(:mod:`libs.common.valkey_cluster`, 3 primaries and 3 replicas) with
``DOCUMIND_PARTITIONS=3``, emptied first (FLUSHALL on every primary). The two
fixtures use two clusters: a module's stack may run while the same module's
function-scoped tests run theirs. ``env`` is what
the services need to use it (:class:`tests.integration.harness.Stack` takes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import redis

from libs.common.keys import DEFAULT_TENANT, KeySpace, Partition
from libs.common.valkey_cluster import ValkeyCluster

CLUSTER_PARTITIONS: Final = 3


@dataclass(frozen=True)
class Backend:
    """A Valkey (URL) and the environment that points the services at it."""

    name: str
    url: str
    partitions: int = 1
    env: dict[str, str] = field(default_factory=dict)
    # Every node's URL (a cluster's primaries and replicas; one server's own).
    node_urls: tuple[str, ...] = ()

    @property
    def cluster(self) -> bool:
        return self.name == "cluster"

    def partition_of(self, collection: str, tenant: str = DEFAULT_TENANT) -> Partition:
        """The partition a collection's jobs, documents and streams live in."""
        return KeySpace(self.partitions).collection(collection, tenant).partition


def server_backend(url: str) -> Backend:
    return Backend("server", url, node_urls=(url,))


def cluster_backend(cluster: ValkeyCluster) -> Backend:
    """The cluster, emptied: every primary flushed (replicas follow)."""
    client = redis.RedisCluster.from_url(cluster.url)
    try:
        client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    finally:
        client.close()
    return Backend(
        "cluster",
        cluster.url,
        CLUSTER_PARTITIONS,
        {"DOCUMIND_VALKEY_CLUSTER": "true", "DOCUMIND_PARTITIONS": str(CLUSTER_PARTITIONS)},
        tuple(cluster.urls),
    )


def sync_client(url: str, *, cluster: bool, **options: object) -> redis.Redis:
    """A blocking client of the test's Valkey: the cluster client on a cluster
    (typed as ``redis.Redis``: tests call the commands both have)."""
    if cluster:
        return redis.RedisCluster.from_url(url, **options)  # type: ignore[return-value]
    return redis.Redis.from_url(url, **options)
