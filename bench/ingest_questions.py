"""Questions of one tenant while another tenant ingests: chat latency with and without the ingest.

    .venv/bin/python -m bench.ingest_questions [--docs 1000] [--small 50] [--alone 40] [--json FILE]

On the embedded stack (``documind up``'s, default settings: the int8 ONNX model),
tenant ``asker`` uploads ``--small`` SciFact abstracts to a collection of its own
and, once they are ready, asks ``--alone`` chat questions, one every 0.5 s (the
next one at once when an answer took longer): its latency alone. Then tenant
``ingester`` uploads ``--docs`` abstracts (multipart uploads of the gateway's
file limit) and ``asker`` goes on asking, every 0.5 s, until every one of them
is ready: its latency during the ingest. Questions are SciFact's claims, each
text asked once (a suffix tells repeats apart), with ``Cache-Control:
no-cache``, so every one is embedded, searched and answered afresh (extractive
answers: no LLM). A question is timed from before its POST to the end of the
job's blocking GET.

Reported: p50, p90 and max of the question latency alone and during the
ingest, their ratio, the median and max embedder stage time of the questions (from
the job's timings: the part a running bulk embedding call delays), and the
ingest rate (documents from the first upload to the last ready, per second).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Iterator
from typing import Any

from bench.client import Http
from bench.common import context_line, loadavg, markdown_table, run_context, sigterm_as_interrupt, write_json
from bench.fairness import reconnect, tenant_client, upload
from bench.stack import BenchStack, files_per_upload, load_scifact
from libs.common.settings import EmbedderSettings

ASK_EVERY_S = 0.5
NO_CACHE = {"Cache-Control": "no-cache"}
SMALL, BIG = "notes", "library"


def questions(claims: list[str]) -> Iterator[str]:
    """Each claim once, then again with a suffix: every text new to the embedding cache."""
    n = 0
    while True:
        for claim in claims:
            yield claim if n == 0 else f"{claim} ({n})"
        n += 1


async def ask(tenant: Http, question: str) -> tuple[float, float]:
    """One chat question, waited on: (seconds, the job's embedder stage seconds).

    Each on a new connection with ``tenant``'s key (the gateway closes one idle past
    its header timeout; a local connect costs well under a millisecond)."""
    started = time.perf_counter()
    http = await reconnect(tenant)
    try:
        status, accepted = await http.call(
            "POST", "/v1/chat", {"question": question, "collection": SMALL}, NO_CACHE
        )
        if status != 202:
            raise RuntimeError(f"POST /v1/chat answered {status}: {accepted}")
        job = await http.wait_job(accepted["job_id"], 120.0)
    finally:
        await http.close()
    seconds = time.perf_counter() - started
    if job["status"] != "done":
        raise RuntimeError(f"chat job {accepted['job_id']} ended {job['status']}: {job}")
    return seconds, float((job.get("timings") or {}).get("embedder", 0.0))


async def asking(
    http: Http, texts: Iterator[str], count: int | None, stop: asyncio.Event | None
) -> list[tuple[float, float]]:
    """Questions every ``ASK_EVERY_S`` until ``count`` are answered or ``stop`` is set."""
    out: list[tuple[float, float]] = []
    next_at = time.perf_counter()
    while (count is None or len(out) < count) and not (stop is not None and stop.is_set()):
        out.append(await ask(http, next(texts)))
        next_at += ASK_EVERY_S
        # Pacing of the load, not a synchronisation: the next question's send time.
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at = max(next_at, time.perf_counter())
    return out


async def ingest(http: Http, collection: str, docs: list[str], per_upload: int) -> tuple[float, int]:
    """Upload ``docs`` to ``collection`` and wait until every one is ready: (seconds, documents)."""
    started = time.perf_counter()
    jobs: list[str] = []
    for first in range(0, len(docs), per_upload):
        files = [
            (f"abstract-{i}.txt", docs[i].encode()) for i in range(first, min(len(docs), first + per_upload))
        ]
        jobs += await upload(http, collection, files)
    for job_id in jobs:
        job = await http.wait_job(job_id, 3600.0)
        if job["status"] != "done":
            raise RuntimeError(f"ingest job {job_id} ended {job['status']}: {job}")
    return time.perf_counter() - started, len(jobs)


def summary(runs: list[tuple[float, float]]) -> dict[str, Any]:
    seconds = sorted(s for s, _ in runs)
    q = statistics.quantiles(seconds, n=10, method="inclusive")
    return {
        "n": len(seconds),
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "p90_ms": round(q[8] * 1000, 1),
        "max_ms": round(seconds[-1] * 1000, 1),
        "embedder_p50_ms": round(statistics.median(e for _, e in runs) * 1000, 1),
        "embedder_max_ms": round(max(e for _, e in runs) * 1000, 1),
    }


async def run(port: int, small: list[str], big: list[str], claims: list[str], alone: int) -> dict[str, Any]:
    asker = await tenant_client(port, "asker")
    ingester: Http | None = None
    texts = questions(claims)
    try:
        await ingest(asker, SMALL, small, files_per_upload())
        await asking(asker, questions([f"warm-up question {n} about cells" for n in range(5)]), 5, None)
        quiet = await asking(asker, texts, alone, None)
        stop = asyncio.Event()
        load_at = loadavg()
        ingester = await tenant_client(port, "ingester")
        during_task = asyncio.create_task(asking(asker, texts, None, stop))
        ingest_s, docs = await ingest(ingester, BIG, big, files_per_upload())
        stop.set()
        during = await during_task
    finally:
        await asker.close()
        if ingester is not None:
            await ingester.close()
    alone_fig, during_fig = summary(quiet), summary(during)
    return {
        "alone": alone_fig,
        "during_ingest": during_fig,
        "p50_ratio": round(during_fig["p50_ms"] / alone_fig["p50_ms"], 2),
        "ingest": {"docs": docs, "seconds": round(ingest_s, 1), "docs_per_s": round(docs / ingest_s, 2)},
        "loadavg_1m_before_ingest": load_at,
    }


def table(fig: dict[str, Any]) -> str:
    rows = [
        [name, r["n"], r["p50_ms"], r["p90_ms"], r["max_ms"], r["embedder_p50_ms"], r["embedder_max_ms"]]
        for name, r in (("alone", fig["alone"]), ("during the other tenant's ingest", fig["during_ingest"]))
    ]
    ingest = fig["ingest"]
    return (
        markdown_table(
            ["questions", "n", "p50 ms", "p90 ms", "max ms", "embedder stage p50 ms", "its max ms"], rows
        )
        + f"\n\np50 during / alone: {fig['p50_ratio']}; the ingest: {ingest['docs']} documents in "
        f"{ingest['seconds']} s ({ingest['docs_per_s']} docs/s)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=1000, help="abstracts the ingester uploads")
    p.add_argument("--small", type=int, default=50, help="abstracts in the asker's own collection")
    p.add_argument("--alone", type=int, default=40, help="questions asked with nothing else running")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--keep-logs", action="store_true", help="keep the stack's data and logs")
    args = p.parse_args()
    config = run_context("bench.ingest_questions")
    config["embeddings"] = EmbedderSettings().embeddings
    corpus = load_scifact(args.docs + args.small)
    docs = list(corpus.docs.values())
    claims = list(corpus.queries.values())
    with sigterm_as_interrupt(), BenchStack(keep=args.keep_logs) as stack:
        config["embedder"] = stack.embedder_model()
        fig = asyncio.run(run(stack.port, docs[: args.small], docs[args.small :], claims, args.alone))
    config["loadavg_1m_end"] = loadavg()
    print("\n" + table(fig) + "\n\n" + context_line(config))
    write_json(args.json, {"config": config, "ingest_questions": fig})


if __name__ == "__main__":
    main()
