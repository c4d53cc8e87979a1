"""Benchmark 3: submit-to-result latency of chat and search on the ingested SciFact collection.

    .venv/bin/python -m bench.latency [--quick] [--docs N] [--passes P] [--concurrency C] [--json FILE]

Each request is ``POST /v1/chat`` (extractive answers: no LLM key) or
``POST /v1/search``, then ``GET /v1/jobs/{id}?wait=30`` until the job is done,
timed by the client from before the POST to the end of the GET, over keep-alive
connections of a lean asyncio client. The questions are SciFact's claims, each
asked once per run, with ``Cache-Control: no-cache`` (no answer-cache hits) and
the embedding cache emptied before each run, so every question is embedded,
searched and answered afresh. Runs: chat and search, sequential (1 client) and
with ``--concurrency`` clients (16), alternated within each of ``--passes``
passes. One more sequential chat run without the header then measures answers
served from the answer cache.

Baselines in the same run, after the HTTP runs of each pass:

* the floor the pipeline adds to: in this process, the embedding of each
  question by the stack's own embedder (built from the same settings: the
  same model and runtime) and a brute-force top-k over as many unit vectors as
  the collection has chunks. (Not interleaved with the HTTP requests: the
  model runtime's threads spin for a while after each call and would slow
  the stack's next request.) A process that runs the model back to back meets
  other load differently from one that wakes per request, so on a busy
  machine the floor can exceed the stack's own embedder stage time;
* the HTTP floor: ``GET /healthz`` on the same kind of connection, 100 per pass.

For the sequential chat run, the job's own timings say where the time went:
each stage's queue wait and handler time; the rest is HTTP, the gateway and
the last hand-off back to the waiting GET.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.client import Http
from bench.common import Latency, markdown_table
from bench.stack import Session, add_common_args, flush_cache, run_one

TARGET_CHAT_P50_MS = 30.0
NO_CACHE = {"Cache-Control": "no-cache"}
FLOOR = "floor: the stack's embedder + brute-force top-k, in process"
HTTP_FLOOR = "floor: HTTP GET /healthz"
STAGE_TIMINGS = ("embedder.wait", "embedder", "retriever.wait", "retriever", "generator.wait", "generator")


@dataclass
class Run:
    seconds: list[float] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)
    cached: int = 0
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds of each process over the run
    modes: set[str] = field(default_factory=set)


async def requests(
    port: int,
    kind: str,
    texts: Sequence[str],
    collection: str,
    clients: int,
    *,
    no_cache: bool = True,
) -> Run:
    """Each text once, as ``kind`` ("chat" or "search") jobs, from ``clients`` connections."""
    run = Run()
    todo = iter(texts)
    path, field_name = ("/v1/chat", "question") if kind == "chat" else ("/v1/search", "query")
    headers = NO_CACHE if no_cache else None

    async def client() -> None:
        conn = await Http.connect(port)
        try:
            for text in todo:
                started = time.perf_counter()
                status, accepted = await conn.call(
                    "POST", path, {field_name: text, "collection": collection}, headers
                )
                if status != 202:
                    raise RuntimeError(f"POST {path} answered {status}: {accepted}")
                job = await conn.wait_job(accepted["job_id"], 60.0)
                run.seconds.append(time.perf_counter() - started)
                if job["status"] != "done":
                    raise RuntimeError(f"{kind} job {accepted['job_id']} ended {job['status']}: {job}")
                run.timings.append(job.get("timings") or {})
                result = job.get("result") or {}
                run.cached += bool(result.get("cached"))
                if "mode" in result:
                    run.modes.add(result["mode"])
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    run.wall_s = time.perf_counter() - started
    return run


async def http_floor(port: int, rounds: int) -> list[float]:
    conn = await Http.connect(port)
    seconds = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            status, _body = await conn.request("GET", "/healthz")
            seconds.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"GET /healthz answered {status}")
    finally:
        await conn.close()
    return seconds


class Floor:
    """The in-process floor of a question: its embedding by the stack's own embedder (built
    from the same settings, so the same model and runtime) and a brute-force top-k over as
    many unit vectors as the collection has chunks."""

    def __init__(self, chunks: int, top_k: int = 5) -> None:
        from libs.common.settings import EmbedderSettings
        from services.embedder.backends import build_embedder

        self.embedder = build_embedder(EmbedderSettings())
        matrix = np.random.default_rng(0).standard_normal((max(1, chunks), 384)).astype(np.float32)
        self.matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        self.k = min(top_k, len(matrix))

    def __call__(self, texts: Sequence[str]) -> list[float]:
        """Seconds per text, one text at a time."""
        seconds = []
        for text in texts:
            started = time.perf_counter()
            scores = self.matrix @ self.embedder.embed([text])[0]
            top = np.argpartition(-scores, self.k - 1)[: self.k]
            top = top[np.argsort(-scores[top])]
            seconds.append(time.perf_counter() - started)
        return seconds


def measure(session: Session, passes: int = 2, concurrency: int = 16) -> dict[str, Any]:
    ingested = session.ensure_ingested()
    port, collection, valkey = session.stack.port, session.collection, session.stack.valkey_url
    texts = list(session.corpus.queries.values())
    floor = Floor(ingested.chunks)
    floor(texts[:2])  # warm-up
    # Warm-up of the stack: questions that none of the measured runs asks.
    warm = [f"warm-up question {n} about cells" for n in range(10)]
    for kind in ("chat", "search"):
        asyncio.run(requests(port, kind, warm, collection, 2))
    runs: dict[str, list[Run]] = {}
    floors: dict[str, list[float]] = {FLOOR: [], HTTP_FLOOR: []}

    for n in range(passes):
        print(f"  pass {n + 1} of {passes}: {len(texts)} questions per run", flush=True)
        for clients in (1, concurrency):
            for kind in ("chat", "search"):
                flush_cache(valkey, "embedding")
                cpu0 = session.stack.cpu_seconds()
                run = asyncio.run(requests(port, kind, texts, collection, clients))
                cpu1 = session.stack.cpu_seconds()
                run.cpu_s = {k: cpu1[k] - cpu0[k] for k in cpu1}
                runs.setdefault(f"{kind}|{clients}", []).append(run)
                lat = Latency.of(run.seconds)
                print(f"    {kind}, {clients} client(s): p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms")
        floors[FLOOR] += floor(texts)
        floors[HTTP_FLOOR] += asyncio.run(http_floor(port, 100))
    cached = asyncio.run(requests(port, "chat", texts, collection, 1, no_cache=False))
    rows: dict[str, dict[str, Any]] = {}
    for key, done in runs.items():
        kind, count = key.split("|")
        name = f"{kind}, sequential" if count == "1" else f"{kind}, {count} concurrent clients"
        seconds = [s for r in done for s in r.seconds]
        rows[name] = {
            **Latency.of(seconds).row(),
            "req_per_s": round(len(seconds) / sum(r.wall_s for r in done), 1),
            "answer_cache_hits": sum(r.cached for r in done),
            "cpu_ms_per_request": {
                k: round(sum(r.cpu_s[k] for r in done) / len(seconds) * 1000, 2) for k in done[0].cpu_s
            },
        }
    rows["chat, answer cache hit, sequential"] = {
        **Latency.of(cached.seconds).row(),
        "req_per_s": round(len(cached.seconds) / cached.wall_s, 1),
        "answer_cache_hits": cached.cached,
    }
    rows.update({name: Latency.of(seconds).row() for name, seconds in floors.items()})
    chat = [t for r in runs["chat|1"] for t in r.timings]
    breakdown = {k: round(statistics.median(t.get(k, 0.0) for t in chat) * 1000, 2) for k in STAGE_TIMINGS}
    p50 = rows["chat, sequential"]["p50_ms"]
    breakdown["rest (HTTP, gateway, hand-off to the waiting GET)"] = round(p50 - sum(breakdown.values()), 2)
    lowest = rows[FLOOR]["p50_ms"]
    return {
        "questions": len(texts),
        "passes": passes,
        "concurrency": concurrency,
        "chunks": ingested.chunks,
        "rows": rows,
        "chat_p50_ms": p50,
        "target_chat_p50_ms": TARGET_CHAT_P50_MS,
        "chat_p50_over_floor": round(p50 / lowest, 2),
        "stack_embedder": floor.embedder.name,
        "chat_sequential_median_ms": breakdown,
        "answer_modes": sorted({m for done in runs.values() for r in done for m in r.modes}),
    }


def table(fig: dict[str, Any]) -> str:
    met = "met" if fig["chat_p50_ms"] < fig["target_chat_p50_ms"] else "NOT met"
    rows = [
        [name, r["n"], r["p50_ms"], r["p99_ms"], r["mean_ms"], r.get("req_per_s"), r.get("answer_cache_hits")]
        for name, r in fig["rows"].items()
    ]
    measured = {name: r["cpu_ms_per_request"] for name, r in fig["rows"].items() if "cpu_ms_per_request" in r}
    cpu_names = list(next(iter(measured.values())))
    cpu_rows = [[name, *(cpu[k] for k in cpu_names)] for name, cpu in measured.items()]
    return "\n".join(
        [
            markdown_table(["", "n", "p50 ms", "p99 ms", "mean ms", "req/s", "cache hits"], rows),
            "",
            f"chat p50 (sequential) **{fig['chat_p50_ms']:.1f} ms** (target < "
            f"{fig['target_chat_p50_ms']:.0f} ms: {met}), {fig['chat_p50_over_floor']:.1f}x the in-process "
            f"floor with the stack's embedder ({fig['stack_embedder']}); {fig['questions']} distinct "
            f"questions x {fig['passes']} passes, "
            f"{fig['chunks']:,} chunks in the collection, answer modes: {', '.join(fig['answer_modes'])}.",
            "",
            "Sequential chat, median per job (ms): "
            + ", ".join(f"{k} {v}" for k, v in fig["chat_sequential_median_ms"].items()),
            "",
            "CPU ms per request of each process (the client is this process, `bench`):",
            "",
            markdown_table(["", *cpu_names], cpu_rows),
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=(__doc__ or "").splitlines()[0])
    add_common_args(p)
    p.add_argument("--passes", type=int, help="passes over the questions (default 2; --quick 1)")
    p.add_argument("--concurrency", type=int, default=16, help="clients of the concurrent runs (default 16)")
    args = p.parse_args(argv)
    if args.passes is None:
        args.passes = 1 if args.quick else 2
    if args.passes < 1 or args.concurrency < 1:
        p.error("--passes and --concurrency must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_one(
        args,
        "bench.latency",
        "latency",
        lambda session: measure(session, args.passes, args.concurrency),
        table,
    )


if __name__ == "__main__":
    sys.exit(main())
