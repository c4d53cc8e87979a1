"""What every benchmark shares: percentiles, the run's context (date, machine, load), signals, output."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import signal
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Latency:
    rounds: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        q = statistics.quantiles(seconds, n=100, method="inclusive")
        return cls(len(seconds), q[49] * 1000, q[98] * 1000, statistics.fmean(seconds) * 1000)

    def row(self) -> dict[str, float]:
        return {
            "n": self.rounds,
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "mean_ms": round(self.mean_ms, 2),
        }


def loadavg() -> float | None:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_context(module: str) -> dict[str, Any]:
    """Date, machine, the command as typed and the load at the start of a run."""
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join([f"python -m {module}", *sys.argv[1:]]),
        "loadavg_1m_start": loadavg(),
    }


def context_line(config: dict[str, Any]) -> str:
    """When, where, under what load and with which command a run's figures were taken."""
    return (
        f"{config['date']}, {config['machine']}, DOCUMIND_EMBEDDINGS={config.get('embeddings')} "
        f"({config.get('embedder') or 'its log says nothing'}); 1-minute load "
        f"average {config['loadavg_1m_start']} at start, {config.get('loadavg_1m_end')} at end; "
        f"command: `{config['command']}`"
    )


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every child is stopped on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A table to paste into RESULTS.md."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
