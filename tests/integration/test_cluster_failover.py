"""A primary of the Valkey Cluster dies: its replica takes over and the stack goes on.

A cluster of its own (the session's stay whole), with a short node timeout. The
primary serving a collection's partition is killed (SIGKILL) after its replica has
every write (``WAIT``); once the cluster names the replica primary of that slot, a
question in the collection is answered, followed by the gateway's waiters (``?wait=``
and the events stream) whose readers must find the slot's new node.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from libs.common import slots
from libs.common.valkey_cluster import ValkeyCluster
from tests.integration.backends import CLUSTER_PARTITIONS, Backend, cluster_backend
from tests.integration.harness import Stack
from tests.integration.test_events import read_sse

pytestmark = pytest.mark.timeout(240)

DOC = b"The Rathlin ferry leaves Ballycastle at nine. Tickets are sold at the pier office."
COLLECTION = "rathlin"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ValkeyCluster]:
    with ValkeyCluster(tmp_path / "cluster", node_timeout_ms=1000) as c:
        yield c


def primary_port(client: redis.Redis, slot: int) -> int:
    """The port of the node the cluster names primary of ``slot`` (and reports online)."""
    for shard in client.cluster("SHARDS"):
        ranges = shard["slots"]
        if any(int(a) <= slot <= int(b) for a, b in zip(ranges[::2], ranges[1::2], strict=True)):
            for node in shard["nodes"]:
                if node["role"] == "master" and node["health"] == "online":
                    return int(node["port"])
    return 0


def ask(stack: Stack, question: str) -> dict[str, Any]:
    with stack.client(timeout=60) as client:
        resp = client.post("/v1/chat", json={"question": question, "collection": COLLECTION})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        waited = client.get(f"/v1/jobs/{job_id}", params={"wait": 30})  # the gateway's waiters
        assert waited.status_code == 200
        events = [e.event for e in read_sse(client, resp.json()["events_url"])]
    job: dict[str, Any] = waited.json()
    assert events[-1] == job["status"], (events, job)
    return job


def test_the_stack_goes_on_when_a_primary_dies_and_its_replica_takes_over(
    cluster: ValkeyCluster, tmp_path: Path
) -> None:
    backend: Backend = cluster_backend(cluster)
    assert backend.partitions == CLUSTER_PARTITIONS
    stack = Stack(backend.url, tmp_path, **backend.env)
    try:
        stack.start_all()
        with stack.client(timeout=30) as client:
            up = client.post(f"/v1/collections/{COLLECTION}/documents", files={"file": ("rathlin.txt", DOC)})
            assert stack.wait_job(up.json()["job_id"])["status"] == "done"
        first = ask(stack, "When does the ferry leave?")
        assert first["status"] == "done" and "nine" in first["result"]["answer"], first

        slot = slots.key_slot(backend.partition_of(COLLECTION).key("x"))
        by_port = {node.port: node for node in cluster.nodes}
        old = by_port[primary_port(redis.Redis.from_url(cluster.url, decode_responses=True), slot)]
        doomed = redis.Redis.from_url(old.url)
        try:
            assert doomed.wait(1, 10_000) >= 1  # its replica has every write
        finally:
            doomed.close()
        assert old.proc is not None
        old.proc.kill()
        old.proc.wait()

        survivor = next(n for n in cluster.nodes if n is not old)
        watcher = redis.Redis.from_url(survivor.url, decode_responses=True)
        try:
            deadline = time.monotonic() + 60
            while primary_port(watcher, slot) in (0, old.port):
                assert time.monotonic() < deadline, "no replica took over"
                time.sleep(0.1)  # polling the cluster's state: the failover has no event to wait on
        finally:
            watcher.close()

        # Another question (not the answer cache's): every stage works on the new primary.
        job = ask(stack, "Where are tickets sold?")
        assert job["status"] == "done", (job, stack.logs())
        assert "pier office" in job["result"]["answer"], job
        stack.assert_alive()
    finally:
        stack.stop()
