"""A worker's container healthcheck: its read loops are alive, not just its metrics server.

``python -m libs.common.healthcheck [PORT]`` reads the worker's ``/metrics`` and
exits 0 only when every worker loop of the process (one per lane) ran its
maintenance within ``--max-age`` seconds; otherwise it prints why and exits 1.
A blocked event loop, or a process whose workers never started, fails it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

HEARTBEAT = "documind_worker_heartbeat_timestamp_seconds"


def check(url: str, max_age_s: float, now: float | None = None) -> str | None:
    """None when healthy, else the reason."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            text = resp.read().decode()
    except OSError as exc:
        return f"metrics unreachable at {url}: {exc}"
    beats = [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == HEARTBEAT
        for sample in family.samples
    ]
    if not beats:
        return "no worker loop is running yet"
    now = time.time() if now is None else now
    stale = [f"{labels.get('stage')}/{labels.get('lane')}: {now - value:.0f}s" for labels, value in beats
             if now - value > max_age_s]  # fmt: skip
    if stale:
        return f"worker loops silent longer than {max_age_s:g}s: " + ", ".join(stale)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", nargs="?", default=os.environ.get("DOCUMIND_METRICS_PORT", "9100"))
    parser.add_argument("--max-age", type=float, default=30.0, help="seconds (default 30)")
    args = parser.parse_args(argv)
    reason = check(f"http://127.0.0.1:{args.port}/metrics", args.max_age)
    if reason:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
