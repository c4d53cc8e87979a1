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

Baselines in the same run:

* the floor the pipeline adds to: in this process, the raw model's ``encode``
  of the one question plus a brute-force top-k over as many unit vectors as
  the collection has chunks, with torch's default threads (one per core) and
  with one thread (on a loaded 2-core machine, one thread is several times
  faster for a single short text: the second waits for a core at every step).
  Each question's floors are taken right after its sequential chat request,
  so that the two alternate: a process that runs the model back to back
  competes for the cores differently from one that wakes for each request;
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.common import Latency, context_line, markdown_table, sigterm_as_interrupt, write_json
from bench.stack import Http, Session, add_common_args, encode, flush_cache, open_session

TARGET_CHAT_P50_MS = 30.0
NO_CACHE = {"Cache-Control": "no-cache"}
RAW_FLOOR = "floor: raw model embed + brute-force top-k, in process"
RAW_FLOOR_1 = "floor: the same with 1 torch thread"
HTTP_FLOOR = "floor: HTTP GET /healthz"
STAGE_TIMINGS = ("embedder.wait", "embedder", "retriever.wait", "retriever", "generator.wait", "generator")


@dataclass
class Run:
    seconds: list[float] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)
    cached: int = 0
    wall_s: float = 0.0
    modes: set[str] = field(default_factory=set)


async def requests(
    port: int,
    kind: str,
    texts: Sequence[str],
    collection: str,
    clients: int,
    *,
    no_cache: bool = True,
    after: Callable[[str], None] | None = None,
) -> Run:
    """Each text once, as ``kind`` ("chat" or "search") jobs, from ``clients`` connections;
    ``after`` is called with each text once its job is done (blocking its client)."""
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
                if after is not None:
                    after(text)
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
    """The in-process floor of one question: the raw model's embedding of it and a brute-force
    top-k over as many unit vectors as the collection has chunks."""

    def __init__(self, model: Any, chunks: int, top_k: int = 5) -> None:
        import torch

        self.torch = torch
        self.model = model
        matrix = np.random.default_rng(0).standard_normal((max(1, chunks), 384)).astype(np.float32)
        self.matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        self.k = min(top_k, len(matrix))
        self.default_threads = torch.get_num_threads()

    def __call__(self, text: str, threads: int = 0) -> float:
        """Seconds for ``text`` with ``threads`` torch threads (0: torch's default, one per core)."""
        self.torch.set_num_threads(threads or self.default_threads)
        try:
            started = time.perf_counter()
            scores = self.matrix @ encode(self.model, [text])[0]
            top = np.argpartition(-scores, self.k - 1)[: self.k]
            top = top[np.argsort(-scores[top])]
            return time.perf_counter() - started
        finally:
            self.torch.set_num_threads(self.default_threads)


def measure(session: Session, passes: int = 2, concurrency: int = 16) -> dict[str, Any]:
    ingested = session.ensure_ingested()
    port, collection, valkey = session.stack.port, session.collection, session.stack.valkey_url
    texts = list(session.corpus.queries.values())
    model = session.model
    encode(model, texts[:2])  # warm-up
    # Warm-up of the stack: questions that none of the measured runs asks.
    warm = [f"warm-up question {n} about cells" for n in range(10)]
    for kind in ("chat", "search"):
        asyncio.run(requests(port, kind, warm, collection, 2))
    runs: dict[str, list[Run]] = {}
    floors: dict[str, list[float]] = {RAW_FLOOR: [], RAW_FLOOR_1: [], HTTP_FLOOR: []}
    floor = Floor(model, ingested.chunks)

    def after_chat(text: str) -> None:
        """The floors of each question right after its sequential chat: they alternate with the
        stack's requests, so both meet the same load and the same idle gaps."""
        floors[RAW_FLOOR].append(floor(text))
        floors[RAW_FLOOR_1].append(floor(text, threads=1))

    for n in range(passes):
        print(f"  pass {n + 1} of {passes}: {len(texts)} questions per run", flush=True)
        for clients in (1, concurrency):
            for kind in ("chat", "search"):
                flush_cache(valkey, "embedding")
                after = after_chat if (kind, clients) == ("chat", 1) else None
                run = asyncio.run(requests(port, kind, texts, collection, clients, after=after))
                runs.setdefault(f"{kind}|{clients}", []).append(run)
                lat = Latency.of(run.seconds)
                print(f"    {kind}, {clients} client(s): p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms")
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
    lowest = min(rows[RAW_FLOOR]["p50_ms"], rows[RAW_FLOOR_1]["p50_ms"])
    return {
        "questions": len(texts),
        "passes": passes,
        "concurrency": concurrency,
        "chunks": ingested.chunks,
        "rows": rows,
        "chat_p50_ms": p50,
        "target_chat_p50_ms": TARGET_CHAT_P50_MS,
        "chat_p50_over_floor": round(p50 / lowest, 2),
        "chat_sequential_median_ms": breakdown,
        "answer_modes": sorted({m for done in runs.values() for r in done for m in r.modes}),
    }


def table(fig: dict[str, Any]) -> str:
    met = "met" if fig["chat_p50_ms"] < fig["target_chat_p50_ms"] else "NOT met"
    rows = [
        [name, r["n"], r["p50_ms"], r["p99_ms"], r["mean_ms"], r.get("req_per_s"), r.get("answer_cache_hits")]
        for name, r in fig["rows"].items()
    ]
    return "\n".join(
        [
            markdown_table(["", "n", "p50 ms", "p99 ms", "mean ms", "req/s", "cache hits"], rows),
            "",
            f"chat p50 (sequential) **{fig['chat_p50_ms']:.1f} ms** (target < "
            f"{fig['target_chat_p50_ms']:.0f} ms: {met}), {fig['chat_p50_over_floor']:.1f}x the in-process "
            f"floor (the lower of its two p50s); {fig['questions']} distinct questions x "
            f"{fig['passes']} passes, "
            f"{fig['chunks']:,} chunks in the collection, answer modes: {', '.join(fig['answer_modes'])}.",
            "",
            "Sequential chat, median per job (ms): "
            + ", ".join(f"{k} {v}" for k, v in fig["chat_sequential_median_ms"].items()),
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
    try:
        with sigterm_as_interrupt(), open_session(args, "bench.latency") as session:
            fig = measure(session, args.passes, args.concurrency)
    except KeyboardInterrupt:
        print("interrupted; the stack was stopped", file=sys.stderr)
        return 130
    print("\n" + table(fig) + "\n\n" + context_line(session.config))
    write_json(args.json, {"config": session.config, "latency": fig})
    return 0


if __name__ == "__main__":
    sys.exit(main())
