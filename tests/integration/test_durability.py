"""Issue 16: an accepted job outlives the node that accepted it (``libs/common/durability.py``).

On real ``valkey-server``\\ s: a primary with a replica (``REPLICAOF``), and the
session's Valkey Cluster (3 primaries, a replica each). SUBMIT and COMMIT are
followed by ``WAIT`` on their own connection; the tests read the replica directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from libs.common.commit import CommitBatch, Enqueue, SetFields
from libs.common.durability import SHORTFALLS, Durability, WaitReplicas
from libs.common.envelope import Envelope
from libs.common.jobs import JobStore
from libs.common.keys import KeySpace, Partition
from libs.common.scripts import Commit
from libs.common.service import connect
from libs.common.valkey_acl import ValkeyUsers
from libs.common.valkey_cluster import ValkeyCluster
from libs.common.valkey_replication import PROBE_KEY, ReplicaSet
from libs.common.valkey_server import ValkeyServer

TIMEOUT_MS = 300


@pytest.fixture
def replica_set(tmp_path: Path) -> Iterator[ReplicaSet]:
    with ReplicaSet(tmp_path / "rs", replicas=1, appendonly=False) as rs:
        yield rs


def wait_calls(url: str) -> int:
    """WAITs a server has run (INFO commandstats)."""
    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def on_replica(url: str, key: str, *, cluster: bool = False) -> bool:
    """Whether ``key`` exists on the replica at ``url`` (read there, not redirected)."""
    with redis.Redis.from_url(url) as client:
        if cluster:
            client.execute_command("READONLY")
        return bool(client.exists(key))


def shortfalls(op: str) -> float:
    return SHORTFALLS.labels(op)._value.get()  # prometheus_client's own reading


async def submit(store: JobStore, partition: Partition | None = None, collection: str = "c1") -> Envelope:
    env = Envelope.new("chat", collection, {"question": "q"}, 60, partition=partition or Partition(0))
    assert await store.submit(env, max_backlog=1000) == "ok"
    return env


async def hand_on(commit: Commit, env: Envelope) -> str:
    """A commit as a worker's forward: the job's next message and its status. The stream."""
    stream = env.partition.stream("generator", "interactive")
    batch = CommitBatch(env.job_keys.hash)
    batch.add("", [Enqueue(stream, env.dumps()), SetFields(env.job_keys.hash, {"status": "generating"})])
    assert await commit(batch, group="", subject=f"job_id={env.job_id}") == [1]
    return stream


def client_of(server: ValkeyServer) -> aioredis.Redis:
    return connect(server.url, 5.0)


# --- (a) a primary with a replica ---------------------------------------------------


def test_submit_and_commit_return_after_the_replica_has_them(replica_set: ReplicaSet) -> None:
    async def main() -> None:
        primary, replica = replica_set.primary, replica_set.replicas[0]
        r = client_of(primary)
        try:
            durability = Durability(r, "auto", TIMEOUT_MS)
            store = JobStore(r, durability=durability)
            commit = Commit(r, durability)
            # The first of each script goes whole after NOSCRIPT (a WAIT more each).
            await hand_on(commit, await submit(store))
            before = wait_calls(primary.url)
            for _ in range(5):
                env = await submit(store)
                # Read at once on the replica, which the primary may not outlive.
                assert on_replica(replica.url, env.job_keys.hash)
                assert on_replica(replica.url, env.stream)
                await hand_on(commit, env)
                with redis.Redis.from_url(replica.url) as rr:
                    assert rr.hget(env.job_keys.hash, "status") == b"generating"
            assert wait_calls(primary.url) - before == 10
        finally:
            await r.aclose()

    asyncio.run(main())


def test_the_job_survives_the_primary_killed_after_submit(replica_set: ReplicaSet) -> None:
    async def main() -> None:
        primary, replica = replica_set.primary, replica_set.replicas[0]
        r = client_of(primary)
        try:
            env = await submit(JobStore(r, durability=Durability(r, "auto", TIMEOUT_MS)))
        finally:
            await r.aclose()
        replica_set.kill(primary)
        with redis.Redis.from_url(replica.url) as rr:
            rr.execute_command("REPLICAOF", "NO", "ONE")
            assert rr.hget(env.job_keys.hash, "status") == b"queued"
            assert rr.xlen(env.stream) == 1

    asyncio.run(main())


# --- (b) the replica frozen: a shortfall, bounded by the timeout --------------------


def test_a_frozen_replica_is_a_shortfall_within_the_timeout(
    replica_set: ReplicaSet, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        primary, replica = replica_set.primary, replica_set.replicas[0]
        r = client_of(primary)
        try:
            durability = Durability(r, "auto", TIMEOUT_MS)
            store = JobStore(r, durability=durability)
            await submit(store)  # reads the replica count: one online
            submits, commits = shortfalls("submit"), shortfalls("commit")
            replica_set.pause(replica)
            try:
                started = time.monotonic()
                with caplog.at_level(logging.WARNING, logger="libs.common.durability"):
                    env = await submit(store)
                    await hand_on(Commit(r, durability), env)
                elapsed = time.monotonic() - started
            finally:
                replica_set.resume(replica)
            # Two waits of the timeout each, not more: nothing hangs.
            assert 2 * TIMEOUT_MS / 1000 <= elapsed < 2 * TIMEOUT_MS / 1000 + 2
            assert shortfalls("submit") == submits + 1
            assert shortfalls("commit") == commits + 1
            warned = [rec.getMessage() for rec in caplog.records if env.job_id in rec.getMessage()]
            assert len(warned) == 2 and all("stays accepted" in m for m in warned)
            # The job stays accepted, and the replica catches up once it runs again.
            assert await r.hget(env.job_keys.hash, "status") == b"generating"
            ReplicaSet.wait_synced(primary, 1)
            assert on_replica(replica.url, env.job_keys.hash)
        finally:
            await r.aclose()

    asyncio.run(main())


# --- (d) no replica: no WAIT ----------------------------------------------------------


@pytest.mark.parametrize("replicas", ["auto", 0])
def test_no_wait_without_replicas(tmp_path: Path, replicas: WaitReplicas) -> None:
    async def main() -> None:
        with ValkeyServer(tmp_path / "alone", appendonly=False) as server:
            r = client_of(server)
            try:
                durability = Durability(r, replicas, TIMEOUT_MS)
                store, commit = JobStore(r, durability=durability), Commit(r, durability)
                for _ in range(5):
                    await hand_on(commit, await submit(store))
            finally:
                await r.aclose()
            assert wait_calls(server.url) == 0

    asyncio.run(main())


def test_a_number_of_replicas_is_waited_for_even_without_any(tmp_path: Path) -> None:
    async def main() -> None:
        with ValkeyServer(tmp_path / "alone", appendonly=False) as server:
            r = client_of(server)
            try:
                await submit(JobStore(r))  # the script cached: one WAIT follows, not two
                before = shortfalls("submit")
                await submit(JobStore(r, durability=Durability(r, 1, TIMEOUT_MS)))
                assert shortfalls("submit") == before + 1
            finally:
                await r.aclose()
            assert wait_calls(server.url) == 1

    asyncio.run(main())


# --- (c) the cluster: every partition's primary waits for its replica --------------


def collections_per_partition(space: KeySpace) -> dict[int, str]:
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(space.all()):
        name = f"c{i}"
        found.setdefault(space.collection(name).partition.index, name)
        i += 1
    return found


def test_on_the_cluster_each_partition_waits_for_its_replica(valkey_cluster: ValkeyCluster) -> None:
    async def main() -> None:
        space = KeySpace(3)
        r = connect(valkey_cluster.url, 5.0, cluster=True)
        sync = redis.RedisCluster.from_url(valkey_cluster.url)
        try:
            await r.initialize()  # type: ignore[attr-defined]
            durability = Durability(r, "auto", TIMEOUT_MS)
            store, commit = JobStore(r, durability=durability), Commit(r, durability)
            before = {n.name: wait_calls(f"redis://{n.name}") for n in sync.get_primaries()}
            owners = set()
            for index, name in collections_per_partition(space).items():
                partition = space.all()[index]
                env = await submit(store, partition, name)
                replica = sync.get_node_from_key(env.job_keys.hash, replica=True)
                assert replica is not None and replica.server_type == "replica"
                assert on_replica(f"redis://{replica.name}", env.job_keys.hash, cluster=True)
                stream = await hand_on(commit, env)
                assert on_replica(f"redis://{replica.name}", stream, cluster=True)
                owners.add(sync.get_node_from_key(env.job_keys.hash).name)
            after = {n.name: wait_calls(f"redis://{n.name}") for n in sync.get_primaries()}
            # Each job's own primary ran its submit's and its commit's WAIT.
            for owner in owners:
                assert after[owner] - before[owner] >= 2
        finally:
            sync.close()
            await r.aclose()

    asyncio.run(main())


# --- a user without INFO (the embedded stack's service user) ------------------------


def test_without_info_the_replicas_are_counted_by_wait_0_0(tmp_path: Path) -> None:
    users = ValkeyUsers.ensure(tmp_path)
    with ValkeyServer(tmp_path / "acl", appendonly=False, users=users) as server:

        async def main() -> None:
            r = client_of(server)  # as the service user: INFO is @dangerous, refused
            try:
                durability = Durability(r, "auto", TIMEOUT_MS)
                store, commit = JobStore(r, durability=durability), Commit(r, durability)
                before = shortfalls("submit")
                for _ in range(3):
                    await hand_on(commit, await submit(store))
                assert shortfalls("submit") == before
            finally:
                await r.aclose()

        asyncio.run(main())
        # One probe (WAIT 0 0: no replica online), then no WAIT after the writes.
        assert wait_calls(server.admin_url) == 1


def test_a_refused_info_is_asked_once_not_at_every_refresh(tmp_path: Path) -> None:
    users = ValkeyUsers.ensure(tmp_path)
    with ValkeyServer(tmp_path / "acl", appendonly=False, users=users) as server:

        async def main() -> None:
            r = client_of(server)
            try:
                # Every write finds its reading stale: a refresh each time.
                durability = Durability(r, "auto", TIMEOUT_MS, refresh_s=0.0)
                store, commit = JobStore(r, durability=durability), Commit(r, durability)
                for _ in range(5):
                    await hand_on(commit, await submit(store))
                    await durability.replicas_for(PROBE_KEY)
            finally:
                await r.aclose()

        asyncio.run(main())
        with redis.Redis.from_url(server.admin_url) as admin:
            refused = [e for e in admin.acl_log() if e.get("object") == "info"]
        # One refusal in the server's ACL log; every later reading used WAIT 0 0.
        assert [e["count"] for e in refused] == [1]
        assert wait_calls(server.admin_url) >= 2
