"""The Valkey Cluster the integration tests run on, and how partitions spread over it."""

from __future__ import annotations

import redis

from libs.common.valkey_cluster import SLOTS, ValkeyCluster


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
