"""The cluster client's repairs that need no cluster: stream keys read locally, which
transport errors count as a closed connection, a slot map no node answers for; and, on a
small cluster of its own, a client whose node died before its first use (the cluster
tests run the rest)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from libs.common.cluster_client import _closed_transport, cluster_client, ready, stream_read_keys
from libs.common.fanout_connections import ClusterConnections
from libs.common.valkey_cluster import ValkeyCluster
from libs.common.valkey_server import free_port


def test_the_stream_keys_of_xreadgroup_and_xread_are_the_first_half_after_streams() -> None:
    group = ["GROUP", "g", "c", "COUNT", 32, "BLOCK", 1000, "STREAMS", "a{p0}", "b{p0}", ">", ">"]
    assert stream_read_keys(group) == ["a{p0}", "b{p0}"]
    assert stream_read_keys([b"COUNT", 1, b"streams", b"k{p1}", b"0-0"]) == [b"k{p1}"]
    assert stream_read_keys(["COUNT", 1]) == []


def test_only_errors_of_a_closed_transport_become_connection_errors() -> None:
    assert _closed_transport(AttributeError("'NoneType' object has no attribute 'writelines'"))
    assert _closed_transport(RuntimeError("unable to perform operation on <TCPTransport closed=True>"))
    assert _closed_transport(TypeError("'NoneType' object is not callable"))
    assert not _closed_transport(TypeError("unsupported operand"))
    assert not _closed_transport(ValueError("'NoneType' object is not callable"))


def test_a_slot_map_no_node_answers_for_is_a_connection_error() -> None:
    """Mid-failover (the nodes the client knows dead) redis-py raised RedisClusterException,
    no RedisError: it ended the gateway's waiter readers, whose watches then waited in vain."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens

    async def main() -> None:
        client = cluster_client(url, socket_connect_timeout=1)
        try:
            with pytest.raises(RedisConnectionError, match="slot map"):
                await client.initialize()
        finally:
            await client.aclose()
        waiters = ClusterConnections.from_url(url, block_ms=1000, client_name="documind-test-waiters")
        try:
            with pytest.raises(RedisError):  # what a waiter reader rides out (fanout.py)
                await waiters.connection("{p0}", after_error=True)
        finally:
            await waiters.aclose()

    asyncio.run(main())


def test_a_client_first_used_after_its_node_died_finds_the_cluster_through_another(tmp_path: Path) -> None:
    """A process's clients start from one node; the one first used after that node died
    (the gateway's waiter fan-out after a failover) reaches the others the process saw."""
    with ValkeyCluster(tmp_path / "cluster", primaries=1, replicas=1) as cluster:
        replica = cluster.replicas[0]

        async def main() -> None:
            first = cluster_client(replica.url)
            try:
                await ready(first)  # every node: the primary and this replica
            finally:
                await first.aclose()
            replica.stop()
            later = cluster_client(replica.url)
            try:
                await ready(later)
                assert await later.set("k", "v")
            finally:
                await later.aclose()

        asyncio.run(main())
