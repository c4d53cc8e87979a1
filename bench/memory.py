"""Benchmark 5: resident memory of each process of the embedded stack, idle and under load.

    .venv/bin/python -m bench.memory [--quick] [--docs N] [--concurrency C] [--json FILE]

The processes are the four services and valkey-server, as ``documind up``
runs them. Figures (MiB):

* idle after start: RSS once the stack is ready (models loaded);
* peak during ingestion of the SciFact abstracts (HTTP uploads until ready);
* idle after ingestion: RSS with the collection indexed;
* peak during queries: ``--concurrency`` (16) clients asking every judged
  question once as chat (extractive) and once as search.

``python -m bench.memory valkey [--chats 100000]`` measures Valkey's memory instead:
after that many chats, and what one finished job keeps (``bench/valkey_memory.py``).

A peak is the kernel's high-water mark of the process's RSS (``VmHWM``),
reset just before the phase through ``/proc/PID/clear_refs``: exact, with no
sampling. Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench.common import markdown_table
from bench.latency import requests
from bench.stack import Session, add_common_args, run_one

IDLE = "idle after start"
INGEST = "peak during ingestion"
IDLE_INGESTED = "idle after ingestion"
MIB = 1024 * 1024


class MemoryWatch:
    """RSS of the stack's processes now (psutil), and peaks over phases (VmHWM)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.phases: dict[str, dict[str, int]] = {}

    def snapshot(self, phase: str) -> None:
        self.phases[phase] = {name: psutil.Process(pid).memory_info().rss for name, pid in self.pids.items()}

    @contextmanager
    def peak(self, phase: str) -> Iterator[None]:
        """The highest RSS of each process while the block runs."""
        for pid in self.pids.values():
            # "5" resets the peak RSS (VmHWM) to the current RSS (Linux 4.0 and later).
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        yield
        self.phases[phase] = {name: _high_water_mark(pid) for name, pid in self.pids.items()}

    def figures(self) -> dict[str, dict[str, float]]:
        """MiB per phase and process, with the total of all of them."""
        out = {}
        for phase, sizes in self.phases.items():
            row = {name: round(size / MIB, 1) for name, size in sizes.items()}
            row["total"] = round(sum(sizes.values()) / MIB, 1)
            out[phase] = row
        return out


def _high_water_mark(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def queries_phase(concurrency: int) -> str:
    return f"peak during queries ({concurrency} clients)"


def measure(session: Session, concurrency: int = 16) -> dict[str, Any]:
    watch = MemoryWatch(session.stack.pids())
    watch.snapshot(IDLE)
    with watch.peak(INGEST):
        session.ensure_ingested()
    watch.snapshot(IDLE_INGESTED)
    texts = list(session.corpus.queries.values())
    port, collection = session.stack.port, session.collection
    with watch.peak(queries_phase(concurrency)):
        for kind in ("chat", "search"):
            asyncio.run(requests(port, kind, texts, collection, concurrency))
    return watch.figures()


def table(fig: dict[str, dict[str, float]]) -> str:
    phases = list(fig)
    names = list(next(iter(fig.values())))
    rows = [[name, *(fig[p][name] for p in phases)] for name in names]
    return markdown_table(["RSS MiB", *phases], rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=(__doc__ or "").splitlines()[0])
    add_common_args(p)
    p.add_argument("--concurrency", type=int, default=16, help="clients of the query phase (default 16)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["valkey"]:
        from bench import valkey_memory

        return valkey_memory.main(given[1:])
    args = parse_args(given)
    return run_one(args, "bench.memory", "memory", lambda session: measure(session, args.concurrency), table)


if __name__ == "__main__":
    sys.exit(main())
