"""300 chats and uploads on a Valkey Cluster while a primary dies, or while a partition's
slot moves to another primary: every job the gateway accepted ends ``done``, once.

Each test has a cluster of its own (the session's stays whole), 3 primaries with a
replica each and ``DOCUMIND_PARTITIONS=6``; the collections are picked so that their
partitions sit on every primary. Eight client threads submit the jobs (chats with a
question of their own, each upload a document of its own) and retry, as a user would,
whatever the gateway refuses (5xx, a dropped connection) until it is accepted; the
refusals are counted and printed. Mid-load (once a third of the jobs are accepted):

- failover: the primary of one collection's partition is paused for writes, waited on
  until its replica has every acknowledged write (``WAIT``: an asynchronous replica
  may miss the last milliseconds of acknowledged writes; the stages' own WAIT,
  ``DOCUMIND_VALKEY_WAIT_REPLICAS``, bounds that by its timeout, the pause makes it
  exact), then SIGKILLed; the test goes on once the cluster names the replica
  primary, and ends with a ``?wait=`` held in each collection while its job is in
  flight, which must end with the job (the gateway's waiters follow the new primary);
- migration: that partition's slot moves to another primary the way ``valkey-cli
  --cluster reshard`` moves it (SETSLOT IMPORTING/MIGRATING, MIGRATE ... KEYS in
  small batches, SETSLOT NODE on every primary) while the load goes on.

Then every accepted job must end ``done``, with one entry on its done stream and one
final event; every upload's document ``ready``, each collection's documents counted
once, and a search returning each chunk once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bench.waiters import following
from libs.common import events, keys, slots
from libs.common.constants import EVENT_TYPE_FIELD
from libs.common.status import is_final
from libs.common.valkey_cluster import ValkeyCluster
from libs.common.valkey_server import ValkeyServer
from tests.integration.harness import Stack
from tests.integration.test_cluster_failover import primary_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PARTITIONS = 6
JOBS = 300
UPLOAD_EVERY = 5  # one job in five is an upload: 60 uploads, 240 chats
CLIENTS = 8
MIDWAY = JOBS // 3
SEARCH_TOP_K = 50  # the gateway's most
BASE = b"The Rathlin ferry leaves Ballycastle at nine. Tickets are sold at the pier office."


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ValkeyCluster]:
    with ValkeyCluster(tmp_path / "cluster", node_timeout_ms=1000) as c:
        yield c


@pytest.fixture
def stack(cluster: ValkeyCluster, tmp_path: Path) -> Iterator[Stack]:
    env = {
        "DOCUMIND_VALKEY_CLUSTER": "true",
        "DOCUMIND_PARTITIONS": str(PARTITIONS),
        # One tenant's load on purpose: past the cap on its questions in flight.
        "DOCUMIND_TENANT_MAX_INTERACTIVE": str(JOBS),
    }
    s = Stack(cluster.url, tmp_path, **env)
    try:
        s.start_all()
        yield s
    finally:
        s.stop()


def slot_of(stack: Stack, collection: str) -> int:
    return slots.key_slot(stack.partition_of(collection).key("x"))


def collections_on_every_primary(stack: Stack, cluster: ValkeyCluster) -> list[str]:
    """One collection per primary, each in a partition of its own."""
    client = redis.Redis.from_url(cluster.url, decode_responses=True)
    try:
        chosen: dict[int, str] = {}
        seen: set[int] = set()
        for i in range(1000):
            name = f"load{i}"
            partition = stack.partition_of(name).index
            port = primary_port(client, slot_of(stack, name))
            if port not in chosen and partition not in seen:
                chosen[port] = name
                seen.add(partition)
    finally:
        client.close()
    assert len(chosen) == len(cluster.primaries), chosen
    return sorted(chosen.values())


@dataclass
class Load:
    """What the client threads saw: accepted jobs, refusals, and an event at ``MIDWAY``."""

    accepted: dict[str, str] = field(default_factory=dict)  # job id -> collection
    uploads: dict[str, set[str]] = field(default_factory=dict)  # collection -> document ids
    refused: Counter[str] = field(default_factory=Counter)
    midway: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, job_id: str, collection: str, document_id: str | None) -> None:
        with self.lock:
            self.accepted[job_id] = collection
            if document_id is not None:
                self.uploads.setdefault(collection, set()).add(document_id)
            if len(self.accepted) >= MIDWAY:
                self.midway.set()


def submit(stack: Stack, load: Load, client: httpx.Client, n: int, collection: str) -> None:
    """Job ``n``, retried until the gateway accepts it (a refusal is counted by its reason)."""
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, (n, load.refused, stack.logs())
        try:
            if n % UPLOAD_EVERY == 0:
                text = f"Report {n}. The harbour crane {n} lifted {n * 3} containers on shift {n}."
                files = {"file": (f"report-{n}.txt", text.encode())}
                resp = client.post(f"/v1/collections/{collection}/documents", files=files)
            else:
                question = {"question": f"When does the ferry leave? (#{n})", "collection": collection}
                resp = client.post("/v1/chat", json=question)
        except httpx.TransportError as exc:
            load.refused[type(exc).__name__] += 1
            continue
        if resp.status_code >= 500:
            load.refused[f"HTTP {resp.status_code}"] += 1
            continue
        assert resp.status_code == 202, (n, resp.status_code, resp.text)
        body = resp.json()
        load.accept(body["job_id"], collection, body.get("document_id"))
        return


def run_load(stack: Stack, collections: list[str], during: Callable[[Load], None]) -> Load:
    """Submit ``JOBS`` jobs from ``CLIENTS`` threads; ``during`` runs once ``MIDWAY`` are accepted."""
    load = Load()
    local = threading.local()
    clients: list[httpx.Client] = []

    def one(n: int) -> None:
        if not hasattr(local, "client"):
            local.client = stack.client(timeout=30)
            clients.append(local.client)
        submit(stack, load, local.client, n, collections[n % len(collections)])

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(one, n) for n in range(JOBS)]
            assert load.midway.wait(120), (load.refused, stack.logs())
            during(load)
            for future in futures:
                future.result()
    finally:
        for client in clients:
            client.close()
    return load


def wait_final(stack: Stack, job_id: str) -> dict[str, Any]:
    """The job once final, through the gateway's ``?wait=`` (a refusal is retried)."""
    deadline = time.monotonic() + 120
    with stack.client(timeout=40) as client:
        while time.monotonic() < deadline:
            try:
                resp = client.get(f"/v1/jobs/{job_id}", params={"wait": 30})
            except httpx.TransportError:
                continue
            if resp.status_code == 200 and is_final(resp.json()["status"]):
                job: dict[str, Any] = resp.json()
                return job
            assert resp.status_code in (200, 500, 503), (job_id, resp.status_code, resp.text)
    raise AssertionError(f"job {job_id} not final; logs in {stack.tmp}")


def final_events(r: redis.RedisCluster, job_id: str) -> int:
    """How many final events (done, error, cancelled) the job's events stream holds."""
    entries: list[tuple[str, dict[str, str]]] = r.xrange(keys.job(job_id).events)  # type: ignore[assignment]
    return sum(fields[EVENT_TYPE_FIELD] in events.TERMINAL for _id, fields in entries)


def check_exactly_once(stack: Stack, cluster_url: str, load: Load) -> dict[str, int]:
    """Every accepted job done once; every upload's document ready once; chunks once."""
    with ThreadPoolExecutor(CLIENTS) as pool:
        jobs = dict(zip(load.accepted, pool.map(lambda j: wait_final(stack, j), load.accepted), strict=True))
    statuses = Counter(job["status"] for job in jobs.values())
    assert statuses == {"done": len(jobs)}, (statuses, stack.logs())
    r = redis.RedisCluster.from_url(cluster_url, decode_responses=True)
    try:
        done_entries = Counter(r.xlen(keys.job(j).done) for j in jobs)
        finals = Counter(final_events(r, j) for j in jobs)
    finally:
        r.close()
    duplicates = sum(n for count, n in done_entries.items() if count > 1)
    assert done_entries == {1: len(jobs)}, done_entries  # one final write per job
    assert finals == {1: len(jobs)}, finals  # one final event per job
    chunks = 0
    with stack.client(timeout=30) as client:
        for collection, uploaded in load.uploads.items():
            docs = client.get(f"/v1/collections/{collection}/documents").json()["documents"]
            ids = [d["document_id"] for d in docs]
            assert len(ids) == len(set(ids)) == len(uploaded) + 1, (collection, len(ids), len(uploaded))
            assert uploaded <= set(ids)
            assert {d["status"] for d in docs} == {"ready"}, docs
            total = sum(d["chunks"] for d in docs)
            assert total <= SEARCH_TOP_K  # one search sees every chunk
            query = {"query": "harbour crane containers", "collection": collection, "top_k": SEARCH_TOP_K}
            resp = client.post("/v1/search", json=query)
            assert resp.status_code == 202, resp.text
            hits = wait_final(stack, resp.json()["job_id"])["result"]["hits"]
            assert len(hits) == total == len({(h["document_id"], h["text"]) for h in hits}), collection
            chunks += total
    return {"accepted": len(jobs), "done": statuses["done"], "duplicates": duplicates, "chunks": chunks}


def base_documents(stack: Stack, collections: list[str]) -> None:
    with stack.client(timeout=30) as client:
        for name in collections:
            up = client.post(f"/v1/collections/{name}/documents", files={"file": ("rathlin.txt", BASE)})
            assert up.status_code == 202, up.text
            assert stack.wait_job(up.json()["job_id"])["status"] == "done"


def report(what: str, load: Load, figures: dict[str, int]) -> None:
    refused = sum(load.refused.values())
    print(f"\n{what}: {figures}, refused then retried: {refused} {dict(load.refused)}")


def timed_wait(stack: Stack, job_id: str) -> tuple[str, float]:
    started = time.monotonic()
    with stack.client(timeout=60) as client:
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
    return job["status"], time.monotonic() - started


def waits_in_flight_wake(stack: Stack, collections: list[str]) -> list[float]:
    """A ``?wait=`` per collection held while its job is in flight (the generator stopped),
    then the job let through: each wait must end with its job, not by its 30 s timeout
    (the gateway's waiter readers of every slot read on, the promoted primary's too)."""
    generator = next(p for p in stack.procs if "services.generator" in str(p.args) and p.poll() is None)
    generator.send_signal(signal.SIGSTOP)
    try:
        with stack.client(timeout=30) as client:
            asked = [
                client.post("/v1/chat", json={"question": f"Where are tickets sold? ({c})", "collection": c})
                for c in collections
            ]
        ids = [resp.json()["job_id"] for resp in asked]
        with ThreadPoolExecutor(len(ids)) as pool:
            futures = [pool.submit(timed_wait, stack, job_id) for job_id in ids]
            deadline = time.monotonic() + 30
            while following(httpx.get(stack.gateway_metrics_url, timeout=5).text) < len(ids):
                assert time.monotonic() < deadline, "the waits did not reach the gateway's waiters"
                time.sleep(0.05)  # polling the gauge: it has no event to block on
            generator.send_signal(signal.SIGCONT)
            waited = [future.result() for future in futures]
    finally:
        generator.send_signal(signal.SIGCONT)
    assert [status for status, _ in waited] == ["done"] * len(ids), waited
    return [seconds for _, seconds in waited]


def node_of(cluster: ValkeyCluster, port: int) -> ValkeyServer:
    return next(n for n in cluster.nodes if n.port == port)


def test_kill_9_of_a_primary_under_load_completes_every_accepted_job_once(
    cluster: ValkeyCluster, stack: Stack
) -> None:
    collections = collections_on_every_primary(stack, cluster)
    base_documents(stack, collections)
    slot = slot_of(stack, collections[0])
    watcher = redis.Redis.from_url(cluster.url, decode_responses=True)
    old = node_of(cluster, primary_port(watcher, slot))
    watcher.close()
    survivor = next(n for n in cluster.primaries if n is not old)
    promoted: list[int] = []

    def kill_primary(_load: Load) -> None:
        doomed = redis.Redis.from_url(old.url)
        try:
            doomed.client_pause(60_000, all=False)  # no write acknowledged from now
            assert doomed.wait(1, 10_000) >= 1  # the replica has every acknowledged one
        finally:
            doomed.close()
        assert old.proc is not None
        old.proc.kill()
        old.proc.wait()
        view = redis.Redis.from_url(survivor.url, decode_responses=True)
        try:
            deadline = time.monotonic() + 60
            while primary_port(view, slot) in (0, old.port):
                assert time.monotonic() < deadline, "no replica took over"
                time.sleep(0.1)  # polling the cluster's state: the failover has no event to wait on
            promoted.append(primary_port(view, slot))
        finally:
            view.close()

    load = run_load(stack, collections, kill_primary)
    assert promoted and promoted[0] != old.port
    figures = check_exactly_once(stack, survivor.url, load)
    report("failover", load, figures)
    stack.assert_alive()
    # The gateway's waiter readers rode the failover out (none ended, leaving its watches
    # to time out: cluster_client.py raises "no node answered" as a ConnectionError).
    gateway_logs = "".join(p.read_text() for p in stack.tmp.glob("gateway-*.log"))
    assert "wait in vain" not in gateway_logs
    seconds = waits_in_flight_wake(stack, collections)
    print(f"?wait= in flight after the failover, seconds: {[round(s, 2) for s in seconds]}")
    # 30: the wait timed out, its job long done (the fan-out's cluster client, first used
    # after the failover, knew only the dead node: cluster_client.py shares the nodes seen).
    assert max(seconds) < 20, (seconds, stack.logs())


def migrate_slot(cluster: ValkeyCluster, slot: int, source: ValkeyServer, target: ValkeyServer) -> int:
    """Move ``slot`` from ``source`` to ``target`` as ``valkey-cli --cluster reshard`` does;
    the number of keys moved."""
    src = redis.Redis.from_url(source.url, decode_responses=True)
    dst = redis.Redis.from_url(target.url, decode_responses=True)
    moved = 0
    try:
        src_id, dst_id = src.cluster("MYID"), dst.cluster("MYID")
        dst.cluster("SETSLOT", slot, "IMPORTING", src_id)
        src.cluster("SETSLOT", slot, "MIGRATING", dst_id)
        while names := src.cluster("GETKEYSINSLOT", slot, 2):
            src.migrate("127.0.0.1", target.port, names, 0, 5000)
            moved += len(names)
        dst.cluster("SETSLOT", slot, "NODE", dst_id)
        src.cluster("SETSLOT", slot, "NODE", dst_id)
        for node in cluster.primaries:
            if node not in (source, target):
                other = redis.Redis.from_url(node.url)
                try:
                    other.cluster("SETSLOT", slot, "NODE", dst_id)
                finally:
                    other.close()
    finally:
        src.close()
        dst.close()
    return moved


def test_a_partition_slot_migrating_under_load_completes_every_accepted_job_once(
    cluster: ValkeyCluster, stack: Stack
) -> None:
    collections = collections_on_every_primary(stack, cluster)
    base_documents(stack, collections)
    slot = slot_of(stack, collections[0])
    view = redis.Redis.from_url(cluster.url, decode_responses=True)
    source = node_of(cluster, primary_port(view, slot))
    target = next(n for n in cluster.primaries if n is not source)
    moved: list[int] = []
    meanwhile: list[int] = []  # jobs accepted while the slot moved

    def migrate(load: Load) -> None:
        before = len(load.accepted)
        moved.append(migrate_slot(cluster, slot, source, target))
        meanwhile.append(len(load.accepted) - before)

    load = run_load(stack, collections, migrate)
    try:
        assert primary_port(view, slot) == target.port
    finally:
        view.close()
    assert moved[0] > 0
    figures = check_exactly_once(stack, cluster.url, load)
    report(f"migration ({moved[0]} keys moved, {meanwhile[0]} jobs accepted meanwhile)", load, figures)
    stack.assert_alive()
