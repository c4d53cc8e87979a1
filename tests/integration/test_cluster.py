"""The Valkey Cluster the integration tests run on, and how partitions spread over it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis

from libs.common import keys, slots
from libs.common.cluster_client import ready
from libs.common.errors import StoreFull
from libs.common.keys import KeySpace
from libs.common.memory_guard import MB, MemoryGuard
from libs.common.service import connect
from libs.common.valkey_acl import ValkeyUsers
from libs.common.valkey_cluster import SLOTS, ValkeyCluster
from tests.integration.backends import CLUSTER_PARTITIONS, cluster_backend, sync_client
from tests.integration.harness import Stack


def test_the_cluster_has_three_primaries_each_with_a_replica_and_every_slot(
    valkey_cluster: ValkeyCluster,
) -> None:
    client = redis.Redis.from_url(valkey_cluster.url, decode_responses=True)
    try:
        info = client.cluster("INFO")
        shards = client.cluster("SHARDS")
    finally:
        client.close()
    assert info["cluster_state"] == "ok"
    assert int(info["cluster_slots_ok"]) == SLOTS
    roles = sorted(sorted(n["role"] for n in shard["nodes"]) for shard in shards)
    assert roles == [["master", "replica"]] * 3


def primary_of_slot(shards: list[dict[str, Any]]) -> dict[int, str]:
    """Slot -> id of the primary that serves it, from CLUSTER SHARDS."""
    owner: dict[int, str] = {}
    for shard in shards:
        primary = next(n["id"] for n in shard["nodes"] if n["role"] == "master")
        ranges = shard["slots"]
        for start, end in zip(ranges[::2], ranges[1::2], strict=True):
            owner.update(dict.fromkeys(range(int(start), int(end) + 1), primary))
    return owner


@pytest.mark.parametrize("partitions", [CLUSTER_PARTITIONS, 8])
def test_the_keys_of_every_partition_share_a_slot_and_the_partitions_span_primaries(
    valkey_cluster: ValkeyCluster, partitions: int
) -> None:
    client = redis.Redis.from_url(valkey_cluster.url, decode_responses=True)
    try:
        owner = primary_of_slot(client.cluster("SHARDS"))
        primaries = set()
        for partition in KeySpace(partitions).all():
            job = keys.job(keys.new_id(partition))
            coll = keys.collection(keys.DEFAULT_TENANT, "docs", partition)
            names = [
                partition.stream("embedder", "interactive"),
                partition.stream("retriever", "bulk", "acme"),
                partition.dead_letters(),
                job.hash,
                job.done,
                job.events,
                coll.meta,
                coll.documents,
                keys.document(keys.new_id(partition)).hash,
            ]
            # Valkey's own hashing, not ours: one slot per partition.
            found = {int(client.cluster("KEYSLOT", name)) for name in names}
            assert found == {slots.key_slot(names[0])}, (partition, found)
            primaries.add(owner[found.pop()])
    finally:
        client.close()
    assert len(primaries) > 1
    if partitions >= 8:
        assert len(primaries) == 3  # enough partitions reach every primary


def test_the_memory_guard_reads_the_fullest_primary(valkey_cluster: ValkeyCluster) -> None:
    """10 MB in one partition's slot: the guard of a cluster sees them, on whichever primary."""
    backend = cluster_backend(valkey_cluster)
    admin = sync_client(backend.url, cluster=True)
    try:
        filler = keys.Partition(1).key("filler")
        admin.set(filler, b"x" * (10 * MB))
        others = sorted(
            int(stats["total.allocated"])
            for stats in admin.memory_stats(target_nodes=redis.RedisCluster.PRIMARIES).values()
        )[:-1]
    finally:
        admin.close()
    # The guard trips at 9 MB: on the filler's primary only, whichever it is. (A limit
    # derived from the fullest reading taken here was flaky: that reading may include
    # the 10 MB write's transient buffers, freed before the guard reads.)
    assert max(others) < 9 * MB, others

    async def used() -> int:
        client = connect(backend.url, 5, cluster=True)
        try:
            await ready(client)
            guard = MemoryGuard(client, 10, 0.9, retry_after_s=5)
            with pytest.raises(StoreFull):
                await guard.check()
            return await guard.used_bytes()
        finally:
            await client.aclose()

    assert asyncio.run(used()) >= 10 * MB


def test_the_stack_runs_on_a_cluster_whose_nodes_require_the_service_users_password(tmp_path: Path) -> None:
    """ACLs are per node: every node has the embedded stack's users, the services connect
    as ``documind`` (no @dangerous command) and the replicas sync as ``default``."""
    users = ValkeyUsers("service-password-for-the-test", "admin-password-for-the-test")
    with ValkeyCluster(tmp_path / "cluster", users=users) as cluster:
        assert "documind:" in cluster.url
        anonymous = redis.Redis(port=cluster.nodes[0].port)
        try:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
        finally:
            anonymous.close()
        env = {"DOCUMIND_VALKEY_CLUSTER": "true", "DOCUMIND_PARTITIONS": str(CLUSTER_PARTITIONS)}
        stack = Stack(cluster.url, tmp_path, **env)
        try:
            stack.start_all()
            with stack.client(timeout=30) as client:
                up = client.post(
                    "/v1/collections/locks/documents",
                    files={
                        "file": ("locks.txt", b"The canal lock opens at seven. Boats wait at the lower gate.")
                    },
                )
                assert up.status_code == 202, up.text
                assert stack.wait_job(up.json()["job_id"])["status"] == "done"
                asked = client.post(
                    "/v1/chat", json={"collection": "locks", "question": "When does the lock open?"}
                )
                job = stack.wait_job(asked.json()["job_id"])
            assert job["status"] == "done", (job, stack.logs())
            assert "seven" in job["result"]["answer"]
        finally:
            stack.stop()
