"""The cluster client's repairs that need no cluster: stream keys read locally, which
transport errors count as a closed connection, and a slot map no node answers for (the
cluster tests run the rest)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from libs.common.cluster_client import _closed_transport, cluster_client, stream_read_keys
from libs.common.fanout_connections import ClusterConnections
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
