"""The seed's queue: an RQ ``SimpleWorker`` running a job that does no work.

``python -m bench.rq_worker URL QUEUE [--burst]``. In burst mode it drains the
queue and prints one line, ``RESULT {"jobs": n, "seconds": s, "cpu_s": c}``, timed around
``work()`` only (interpreter start-up and imports are excluded). Without
``--burst`` it serves until SIGTERM (RQ's warm shutdown).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import redis
from rq import Queue, SimpleWorker
from rq.registry import FinishedJobRegistry

RESULT_PREFIX = "RESULT "


def noop() -> None:
    """The job: does nothing."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="RQ SimpleWorker for the benchmark")
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--log-level", default="WARNING", help="worker logging level (RQ's default: INFO)")
    args = parser.parse_args(argv)
    conn = redis.Redis.from_url(args.url)
    queue = Queue(args.queue, connection=conn)
    worker = SimpleWorker([queue], connection=conn)
    if not args.burst:
        worker.work(logging_level=args.log_level)
        return
    finished_before = FinishedJobRegistry(queue=queue).count
    t0, cpu0 = time.perf_counter(), time.process_time()
    worker.work(burst=True, logging_level=args.log_level)
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    jobs = FinishedJobRegistry(queue=queue).count - finished_before
    result = {"jobs": jobs, "seconds": seconds, "cpu_s": round(cpu_s, 3)}
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
