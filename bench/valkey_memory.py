"""Valkey's memory after many chats, and what one finished job keeps (``bench.memory valkey``).

    .venv/bin/python -m bench.memory valkey [--chats 100000] [--clients 8] [--sample 200] [--json FILE]

Runs the embedded stack (``documind up``'s, hash embeddings unless
``DOCUMIND_EMBEDDINGS`` says otherwise: the model does not change what Valkey
keeps), ingests one small document, then asks ``--chats`` distinct questions
(``POST /v1/chat`` + ``GET /v1/jobs/{id}?wait=``) from ``--clients`` keep-alive
connections. It reports Valkey's ``used_memory`` before and after (as the
operator user: ``INFO`` is not the services'), and, over a sample of the
finished jobs, ``MEMORY USAGE`` of each key a chat leaves behind with its TTL:

* the job hash (status, result, timings): kept ``JOB_TTL_S`` (24 h);
* its done stream (the final fields for waiters): kept ``DONE_TTL_S``;
* its events stream: kept ``EVENTS_TTL_S`` after the last event;
* its answer-cache entry (one per distinct question): kept ``ANSWER_CACHE_TTL_S``.

"Kept per finished job once its events expire" is the job hash's share.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis

from bench.client import Http
from bench.common import context_line, loadavg, run_context, write_json
from bench.stack import BenchStack, ingest
from libs.common import keys

DOCUMENT = " ".join(
    f"Ferry {i} leaves pier {i % 7} at {6 + i % 12} o'clock; tickets cost {3 + i % 5} euros."
    for i in range(120)
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.memory valkey", description=__doc__.split("\n")[0])
    p.add_argument("--chats", type=int, default=100_000, help="distinct questions asked")
    p.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    p.add_argument("--sample", type=int, default=200, help="finished jobs whose keys are measured")
    p.add_argument("--json", help="write the figures here")
    return p.parse_args(argv)


async def ask_all(port: int, chats: int, clients: int) -> list[str]:
    """Every question once; the ids of the finished jobs."""
    todo = iter(range(chats))
    done: list[str] = []

    async def client() -> None:
        conn = await Http.connect(port)
        try:
            for i in todo:
                body = {"question": f"When does ferry {i} leave pier {i % 7}?", "collection": "memory"}
                status, accepted = await conn.call("POST", "/v1/chat", body)
                if status != 202:
                    raise RuntimeError(f"POST /v1/chat answered {status}: {accepted}")
                job = await conn.wait_job(accepted["job_id"], 120.0)
                if job["status"] != "done":
                    raise RuntimeError(f"chat {accepted['job_id']} ended {job['status']}: {job}")
                done.append(accepted["job_id"])
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return done


def key_sizes(r: redis.Redis, job_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Median MEMORY USAGE and TTL of each kind of key the sampled jobs left."""
    kinds: dict[str, list[tuple[int, int]]] = {"job hash": [], "done stream": [], "events stream": []}
    for job_id in job_ids:
        k = keys.job(job_id)
        for kind, name in (("job hash", k.hash), ("done stream", k.done), ("events stream", k.events)):
            size = r.memory_usage(name, samples=0)
            if size is not None:
                kinds[kind].append((int(size), int(r.ttl(name))))
    answers: list[tuple[int, int]] = []
    for name in r.scan_iter(match="*:answer:*", count=1000):
        answers.append((int(r.memory_usage(name, samples=0) or 0), int(r.ttl(name))))
        if len(answers) >= len(job_ids):
            break
    kinds["answer-cache entry"] = answers
    return {
        kind: {
            "bytes_median": statistics.median(s for s, _ in found) if found else 0.0,
            "ttl_s_max": float(max((t for _, t in found), default=0)),
            "count": float(len(found)),
        }
        for kind, found in kinds.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DOCUMIND_EMBEDDINGS", "hash")
    config = {**run_context("bench.memory"), "chats": args.chats, "clients": args.clients}
    config["embeddings"] = os.environ["DOCUMIND_EMBEDDINGS"]
    report: dict[str, Any] = {"config": config}
    with BenchStack() as bench:
        admin = redis.Redis.from_url(bench.stack.valkey.admin_url)
        try:
            ingested = asyncio.run(ingest(bench.port, {"ferries": DOCUMENT}, "memory", files_per_upload=1))
            if ingested.failed:
                raise RuntimeError(f"ingest failed: {ingested.failed}")
            before = int(admin.info("memory")["used_memory"])
            started = time.perf_counter()
            job_ids = asyncio.run(ask_all(bench.port, args.chats, args.clients))
            elapsed = time.perf_counter() - started
            after = int(admin.info("memory")["used_memory"])
            sizes = key_sizes(admin, job_ids[-args.sample :])
            jobs_kept = sum(1 for _ in admin.scan_iter(match="*:job:*", count=10_000))
        finally:
            admin.close()
    per_chat = (after - before) / max(1, len(job_ids))
    report["figures"] = {
        "chats": len(job_ids),
        "chats_per_s": round(len(job_ids) / elapsed, 1),
        "used_memory_before_bytes": before,
        "used_memory_after_bytes": after,
        "used_memory_per_chat_bytes": round(per_chat, 1),
        "job_hashes_kept": jobs_kept,
        "keys": sizes,
        "kept_per_job_after_events_expire_bytes": sizes["job hash"]["bytes_median"],
    }
    config["loadavg_1m_end"] = loadavg()
    print(context_line(config))
    print(f"{len(job_ids)} chats in {elapsed:.0f} s; used_memory {before:,} -> {after:,} bytes")
    print(f"per chat, all keys alive: {per_chat:,.0f} bytes")
    for kind, s in sizes.items():
        size, n, ttl = s["bytes_median"], s["count"], s["ttl_s_max"]
        print(f"  {kind}: {size:,.0f} bytes (median of {n:.0f}), TTL up to {ttl:.0f} s")
    print(f"kept per finished job once its events expire: {sizes['job hash']['bytes_median']:,.0f} bytes")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
