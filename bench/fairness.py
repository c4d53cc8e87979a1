"""Fair bulk work: a small upload behind another tenant's backlog, against the same upload alone.

    .venv/bin/python -m bench.fairness [--backlog 1000] [--trials 3] [--json out.json]

On the embedded stack (``documind up``'s, default settings): tenant ``quiet`` uploads a
one-line note ``--trials`` times with nothing else queued, each waited on until ready
(its time alone). Tenant ``bulky`` then queues ``--backlog`` SciFact abstracts (multipart
uploads of 100); at once ``quiet`` uploads ``--trials`` more notes one after another,
each waited on until ready, and the number of ``bulky``'s documents still not ready is
read the moment each note is. Reported: the notes' time to ready alone and behind the
backlog (median and max, and their ratio), what was left of the backlog, and how long
the backlog took to drain (what a first-in first-out queue would have made the first
note wait). Issue 13's figure (``bench/RESULTS.md``); the test is
``tests/integration/test_fair_bulk.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from bench.client import Http, multipart
from bench.common import context_line, loadavg, run_context, sigterm_as_interrupt, write_json
from bench.stack import BenchStack, load_scifact
from libs.common.admin_key import auth_headers

PER_UPLOAD = 100


async def tenant_client(port: int, tenant: str) -> Http:
    """A connection that sends a new writer key of ``tenant``."""
    operator = await Http.connect(port)
    try:
        status, body = await operator.call(
            "POST", "/v1/keys", {"name": tenant, "tenant": tenant, "role": "writer"}
        )
    finally:
        await operator.close()
    if status != 201:
        raise RuntimeError(f"POST /v1/keys answered {status}: {body}")
    http = await Http.connect(port)
    http.auth = "".join(f"{k}: {v}\r\n" for k, v in auth_headers(body["key"]).items())
    return http


async def upload(http: Http, collection: str, files: list[tuple[str, bytes]]) -> list[str]:
    body, content_type = multipart(files)
    status, data = await http.request(
        "POST", f"/v1/collections/{collection}/documents", body, {"Content-Type": content_type}
    )
    if status != 202:
        raise RuntimeError(f"upload answered {status}: {data[:300]!r}")
    return [d["job_id"] for d in json.loads(data)["documents"]]


async def note_ready_s(http: Http, n: int) -> float:
    """Upload a note (new content each time) and wait until it is ready: seconds taken."""
    text = f"Note {n}: the night ferry to island {n} leaves at ten past eleven.".encode()
    started = time.perf_counter()
    [job_id] = await upload(http, "notes", [(f"note-{n}.txt", text)])
    job = await http.wait_job(job_id)
    if job["status"] != "done":
        raise RuntimeError(f"note {n}: {job}")
    return time.perf_counter() - started


async def reconnect(tenant: Http) -> Http:
    """A new connection with ``tenant``'s key (the server closes one idle past its keep-alive)."""
    http = await Http.connect(tenant.port)
    http.auth = tenant.auth
    return http


async def not_ready(tenant: Http, collection: str) -> int:
    """How many of the collection's documents are not ready (asked on a new connection)."""
    http = await reconnect(tenant)
    try:
        status, body = await http.call("GET", f"/v1/collections/{collection}/documents")
    finally:
        await http.close()
    if status != 200:
        raise RuntimeError(f"listing answered {status}: {body}")
    return sum(1 for d in body["documents"] if d["status"] != "ready")


async def run(port: int, texts: list[str], trials: int) -> dict[str, Any]:
    quiet, bulky = await tenant_client(port, "quiet"), await tenant_client(port, "bulky")
    try:
        alone = [await note_ready_s(quiet, n) for n in range(trials)]
        queued_at = time.perf_counter()
        backlog: list[str] = []
        for first in range(0, len(texts), PER_UPLOAD):
            files = [(f"abstract-{i}.txt", texts[i].encode()) for i in range(first, first + PER_UPLOAD)]
            backlog += await upload(bulky, "abstracts", files[: len(texts) - first])
        queued_s = time.perf_counter() - queued_at
        behind, left = [], []
        for n in range(trials, 2 * trials):
            behind.append(await note_ready_s(quiet, n))
            left.append(await not_ready(bulky, "abstracts"))
        await bulky.close()
        bulky = await reconnect(bulky)  # it idled while the notes were waited on
        for job_id in backlog:
            await bulky.wait_job(job_id)
        drained_s = time.perf_counter() - queued_at
    finally:
        await quiet.close()
        await bulky.close()
    return {
        "alone_s": [round(x, 3) for x in alone],
        "behind_s": [round(x, 3) for x in behind],
        "backlog_left": left,
        "backlog": len(texts),
        "backlog_queued_s": round(queued_s, 2),
        "backlog_drained_s": round(drained_s, 2),
        "median_ratio": round(statistics.median(behind) / statistics.median(alone), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backlog", type=int, default=1000, help="documents tenant bulky queues")
    p.add_argument("--trials", type=int, default=3, help="notes uploaded alone, and behind the backlog")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    sigterm_as_interrupt()
    config = run_context("bench.fairness")
    texts = list(load_scifact(args.backlog).docs.values())[: args.backlog]
    with BenchStack() as stack:
        config["embedder"] = stack.embedder_model()
        figures = asyncio.run(run(stack.port, texts, args.trials))
    config["loadavg_1m_end"] = loadavg()
    print(context_line(config))
    alone, behind = figures["alone_s"], figures["behind_s"]
    print(f"a note alone: median {statistics.median(alone):.3f} s, max {max(alone):.3f} s")
    print(
        f"behind {figures['backlog']} documents of another tenant: median {statistics.median(behind):.3f} s, "
        f"max {max(behind):.3f} s (ratio {figures['median_ratio']}); backlog not ready meanwhile: "
        f"{figures['backlog_left']}; backlog queued in {figures['backlog_queued_s']} s, "
        f"drained in {figures['backlog_drained_s']} s"
    )
    write_json(args.json, {"config": config, **figures})


if __name__ == "__main__":
    main()
