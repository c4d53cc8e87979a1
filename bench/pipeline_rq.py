"""The RQ side of the pipeline bench: ``rq.SimpleWorker`` (``bench.rq_worker``) running a function
that does nothing, its round trips and a burst worker's throughput."""

from __future__ import annotations

import json
import sys
import time

import redis
from rq import Queue
from rq.results import Result

from bench.children import Children, cpu_seconds
from bench.pipeline_report import Throughput
from bench.rq_worker import RESULT_PREFIX, noop

RQ_QUEUE = "bench"


class RQ:
    def __init__(self, children: Children, url: str, log_level: str) -> None:
        self.children = children
        self.url = url
        self.log_level = log_level
        self.r = redis.Redis.from_url(url)
        self.queue = Queue(RQ_QUEUE, connection=self.r)
        self.rt_queue = Queue(f"{RQ_QUEUE}-rt", connection=self.r)

    def _argv(self, queue: str, *extra: str) -> list[str]:
        argv = [sys.executable, "-m", "bench.rq_worker", self.url, queue]
        return [*argv, "--log-level", self.log_level, *extra]

    def start_worker(self) -> None:
        """A non-burst SimpleWorker on the round-trip queue; the first job waits for its start."""
        self.children.start("rq-worker", self._argv(self.rt_queue.name))
        self.round_trips(1, first_timeout_s=60)

    def round_trips(self, rounds: int, first_timeout_s: int = 5) -> list[float]:
        seconds: list[float] = []
        for i in range(rounds):
            t0 = time.perf_counter()
            job = self.rt_queue.enqueue(noop)
            result = job.latest_result(timeout=first_timeout_s if i == 0 else 5)
            seconds.append(time.perf_counter() - t0)
            if result is None or result.type != Result.Type.SUCCESSFUL:
                self.children.check()
                raise RuntimeError(f"RQ round trip {i}: no successful result: {result}")
        return seconds

    def throughput(self, jobs: int, batch: int) -> Throughput:
        for i in range(0, jobs, batch):
            with self.r.pipeline() as pipe:
                datas = [Queue.prepare_data(noop) for _ in range(min(batch, jobs - i))]
                self.queue.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
        if self.queue.count != jobs:
            raise RuntimeError(f"RQ queue holds {self.queue.count} jobs, expected {jobs}")
        log = self.children.logdir / "rq-burst.log"
        log.unlink(missing_ok=True)
        valkey0 = cpu_seconds(self.children.watched["valkey"])
        proc = self.children.start("rq-burst", self._argv(self.queue.name, "--burst"))
        try:
            proc.wait(timeout=900)
        finally:
            self.children.stop(["rq-burst"])
        valkey_s = cpu_seconds(self.children.watched["valkey"]) - valkey0
        found = [line for line in log.read_text().splitlines() if line.startswith(RESULT_PREFIX)]
        if not found:
            raise RuntimeError(f"RQ burst worker printed no result; see {log}")
        res = json.loads(found[-1][len(RESULT_PREFIX) :])
        if res["jobs"] != jobs:
            raise RuntimeError(f"RQ burst worker finished {res['jobs']} jobs, expected {jobs}")
        cpu = {"valkey": round(valkey_s / jobs * 1e6, 1), "rq-worker": round(res["cpu_s"] / jobs * 1e6, 1)}
        return Throughput(jobs, res["seconds"], cpu)
