"""Benchmarks 2 to 5 on one embedded stack: ingestion, latency, quality, memory.

    .venv/bin/python -m bench.scifact [--quick] [--docs N] [--repeat R] [--passes P] [--json FILE]

One stack (``documind up``'s supervisor, default settings, a temporary data
dir) and one corpus for all four, in this order:

1. ``bench.ingest``: the abstracts through the stack against the raw model
   (its embeddings are reused by the quality bench's dense baseline);
2. ``bench.latency``: chat and search, sequential and concurrent;
3. ``bench.quality``: nDCG@10 / Recall@10 of /v1/search, BM25, dense only;
4. ``bench.memory``: each process's RSS idle after start, its peak during the
   ingestion and during the latency runs, and idle after ingestion.

Each is also a command of its own (``python -m bench.ingest`` ...), which
starts its own stack. ``--json FILE`` writes every figure; the printout is
markdown to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench import ingest, latency, memory, quality
from bench.common import context_line, sigterm_as_interrupt, write_json
from bench.stack import add_common_args, open_session


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scifact", description=(__doc__ or "").splitlines()[0])
    add_common_args(p)
    p.add_argument("--repeat", type=int, default=1, help="ingestion runs, each between raw runs (default 1)")
    p.add_argument("--passes", type=int, help="latency passes over the questions (default 2; --quick 1)")
    p.add_argument("--concurrency", type=int, default=16, help="clients of the concurrent runs (default 16)")
    args = p.parse_args(argv)
    if args.passes is None:
        args.passes = 1 if args.quick else 2
    if min(args.repeat, args.passes, args.concurrency) < 1:
        p.error("--repeat, --passes and --concurrency must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with sigterm_as_interrupt(), open_session(args, "bench.scifact") as session:
            watch = memory.MemoryWatch(session.stack.pids())
            watch.snapshot(memory.IDLE)
            print("ingestion", flush=True)
            with watch.peak(memory.INGEST):
                figures = {"ingest": ingest.measure(session, args.repeat)}
            watch.snapshot(memory.IDLE_INGESTED)
            print("latency", flush=True)
            with watch.peak(f"peak during the latency runs (1 and {args.concurrency} clients)"):
                figures["latency"] = latency.measure(session, args.passes, args.concurrency)
            print("quality", flush=True)
            figures["quality"] = quality.measure(session)
            figures["memory"] = watch.figures()
    except KeyboardInterrupt:
        print("interrupted; the stack was stopped", file=sys.stderr)
        return 130
    print()
    for title, text in (
        ("Ingestion", ingest.table(figures["ingest"])),
        ("Query latency", latency.table(figures["latency"])),
        ("Retrieval quality", quality.table(figures["quality"])),
        ("Memory", memory.table(figures["memory"])),
    ):
        print(f"### {title}\n\n{text}\n")
    print(context_line(session.config))
    write_json(args.json, {"config": session.config, **figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
