"""The DocuMind side of the pipeline bench: the real gateway and no-op stage workers, driven
by submitting, POSTing and round-tripping chat jobs and timed to the last job's final write."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from bench.children import Children, cpu_us_per_job
from bench.pipeline_report import Throughput
from libs.common import constants, keys
from libs.common.admin_key import API_KEY_ENV, auth_headers
from libs.common.envelope import Envelope
from libs.common.jobs import JobStore
from libs.common.keys import Partition
from libs.common.valkey_server import free_port

P0 = Partition(0)

COLLECTION = "bench"
QUESTION = "What does the benchmark measure?"
# The gateway's default job timeout: a job not done by then would expire and fail the run.
JOB_TIMEOUT_S = 120.0
# A cap on a tenant's questions in flight that a benchmark never reaches.
NO_CAP = 10**9


class DocuMind:
    """The gateway and no-op workers (one per stage, or ``replicas``), against ``url``."""

    def __init__(self, children: Children, url: str) -> None:
        self.children = children
        self.url = url
        self.r = redis.Redis.from_url(url)
        self.port = 0
        self.replicas = 1

    def start_gateway(self) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "services.gateway"]
        # One client floods the interactive lane on purpose: the per-tenant cap on
        # questions in flight (DOCUMIND_TENANT_MAX_INTERACTIVE) would refuse it.
        self.children.start(
            "gateway", argv, DOCUMIND_PORT=str(self.port), DOCUMIND_TENANT_MAX_INTERACTIVE=str(NO_CAP)
        )

    def replica_names(self, stage: str) -> list[str]:
        """The processes of a stage: ``embedder``, then ``embedder-2``, ... for more replicas."""
        return [stage if n == 1 else f"{stage}-{n}" for n in range(1, self.replicas + 1)]

    @property
    def workers(self) -> list[str]:
        return [name for stage in constants.STAGES for name in self.replica_names(stage)]

    def start_workers(self, profile_dir: Path | None = None, replicas: int = 1, **env: str) -> None:
        """Start ``replicas`` processes per stage.

        Replicas read the stage's stream through its one consumer group; each
        needs its own consumer name, and gets ``bench-<process name>``. (The
        default name, hostname-pid, is distinct per process too; explicit
        names make the group's consumers readable in XINFO.)
        """
        self.replicas = replicas
        for stage in constants.STAGES:
            for name in self.replica_names(stage):
                argv = [sys.executable, "-m", "bench.noop_stage", stage]
                if profile_dir is not None:
                    argv += ["--profile", str(profile_dir / f"{name}.prof")]
                consumer = {"DOCUMIND_CONSUMER": f"bench-{name}"} if replicas > 1 else {}
                self.children.start(name, argv, **consumer, **env)

    def stop_workers(self) -> None:
        self.children.stop(self.workers)

    def reset(self) -> None:
        """Forget DocuMind's jobs and streams (workers must be stopped); keep the collection."""
        names = list(self.r.scan_iter(match=f"{keys.PREFIX}:*", count=10_000))
        for i in range(0, len(names), 10_000):
            self.r.unlink(*names[i : i + 10_000])
        self.r.sadd(P0.collections("default"), COLLECTION)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every stage's group has its consumers reading and the gateway answers /readyz."""
        deadline = time.monotonic() + timeout_s
        while not (self._consumers_ready() and self._gateway_ready()):
            self.children.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"DocuMind not ready; logs in {self.children.logdir}")
            time.sleep(0.05)  # process start-up: nothing to block on yet

    def _consumers_ready(self) -> bool:
        for stage in constants.STAGES:
            try:
                groups = self.r.xinfo_groups(P0.stream(stage, constants.INTERACTIVE))
            except redis.ResponseError:
                return False
            if not any(int(g["consumers"]) >= self.replicas for g in groups):
                return False
        return True

    def _gateway_ready(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def _batch_totals(self) -> dict[str, tuple[float, float]]:
        """(messages, batches) handled so far by each stage (all its replicas), from their /metrics."""
        out: dict[str, tuple[float, float]] = {}
        for stage in constants.STAGES:
            messages = batches = 0.0
            for name in self.replica_names(stage):
                log = (self.children.logdir / f"{name}.log").read_text()
                ports = re.findall(r"metrics on [^\s:]*:(\d+)/metrics", log)
                conn = http.client.HTTPConnection("127.0.0.1", int(ports[-1]), timeout=5)
                try:
                    conn.request("GET", "/metrics")
                    text = conn.getresponse().read().decode()
                finally:
                    conn.close()
                pattern = rf'^documind_batch_size_(sum|count){{stage="{stage}"}} (\S+)$'
                series = {m[0]: float(m[1]) for m in re.findall(pattern, text, re.M)}
                messages += series.get("sum", 0.0)
                batches += series.get("count", 0.0)
            out[stage] = (messages, batches)
        return out

    def _blocking_client(self) -> aioredis.Redis:
        """A client whose reads may block as long as :meth:`_wait_all` does (redis-py's default
        socket timeout, 5 s, would cut off the wait for a run that a busy machine slows)."""
        return aioredis.Redis.from_url(self.url, socket_timeout=JOB_TIMEOUT_S + 10)

    # -- throughput --

    def throughput(self, jobs: int, batch: int, *, drain: bool = False) -> Throughput:
        return asyncio.run(self._throughput(jobs, batch, drain))

    async def _throughput(self, jobs: int, batch: int, drain: bool) -> Throughput:
        names = ["valkey", *self.workers]
        r = self._blocking_client()
        try:
            b0 = self._batch_totals()
            if drain:
                self.children.signal(self.workers, signal.SIGSTOP)
            cpu0 = self.children.cpu(names)
            start, ids = await _submit_pipelined(r, jobs, batch)
            if drain:
                cpu0 = self.children.cpu(names)
                start = time.time()
                self.children.signal(self.workers, signal.SIGCONT)
            end = await self._wait_all(r, ids)
            cpu1 = self.children.cpu(names)
        finally:
            if drain:
                self.children.signal(self.workers, signal.SIGCONT)
            await r.aclose()
        cpu = cpu_us_per_job(cpu0, cpu1, jobs)
        if drain:
            del cpu["bench"]  # queued before the clock started
        return Throughput(jobs, end - start, cpu, self._mean_batches(b0))

    def _mean_batches(self, before: dict[str, tuple[float, float]]) -> dict[str, float]:
        after = self._batch_totals()
        return {
            s: round((after[s][0] - before[s][0]) / max(1.0, after[s][1] - before[s][1]), 1)
            for s in constants.STAGES
        }

    def throughput_http(self, jobs: int, concurrency: int) -> Throughput:
        return asyncio.run(self._throughput_http(jobs, concurrency))

    async def _throughput_http(self, jobs: int, concurrency: int) -> Throughput:
        names = ["valkey", "gateway", *self.workers]
        r = self._blocking_client()
        ids: list[str] = []
        try:
            b0 = self._batch_totals()
            share, rest = divmod(jobs, concurrency)
            cpu0 = self.children.cpu(names)
            start = time.time()
            await asyncio.gather(*(self._post_chats(share + (i < rest), ids) for i in range(concurrency)))
            end = await self._wait_all(r, ids)
            cpu1 = self.children.cpu(names)
        finally:
            await r.aclose()
        return Throughput(jobs, end - start, cpu_us_per_job(cpu0, cpu1, jobs), self._mean_batches(b0))

    async def _post_chats(self, n: int, ids: list[str]) -> None:
        """POST /v1/chat ``n`` times on one keep-alive connection.

        A minimal HTTP/1.1 client on asyncio streams: a load generator that
        shares 2 cores with the service must cost little (httpx spends more CPU
        per request than the gateway does).
        """
        body = json.dumps({"collection": COLLECTION, "question": QUESTION}).encode()
        auth = "".join(f"{k}: {v}\r\n" for k, v in auth_headers(os.environ.get(API_KEY_ENV)).items())
        request = (
            f"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for _ in range(n):
                writer.write(request)
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                answer = await reader.readexactly(length)
                if status.split(b" ", 2)[1:2] != [b"202"]:
                    raise RuntimeError(f"POST /v1/chat answered {status!r}: {answer!r}")
                ids.append(json.loads(answer)["job_id"])
        finally:
            writer.close()
            await writer.wait_closed()

    async def _wait_all(self, r: aioredis.Redis, ids: list[str], timeout_s: float = JOB_TIMEOUT_S) -> float:
        """Block until every job is final; return the time of the last job's final write.

        Blocks on the last job's done stream (jobs finish roughly in order),
        then checks all done streams, a thousand per XREAD, and blocks on the
        last straggler if any are left. Every job must end ``done``.
        """
        deadline = time.monotonic() + timeout_s
        pending = list(ids)
        while pending:
            ms = int((deadline - time.monotonic()) * 1000)
            if ms <= 0:
                raise TimeoutError(
                    f"{len(pending)} of {len(ids)} jobs not final; logs in {self.children.logdir}"
                )
            await r.xread({keys.job(pending[-1]).done: "0-0"}, count=1, block=ms)
            still: list[str] = []
            for i in range(0, len(pending), 1000):
                chunk = pending[i : i + 1000]
                reply: Any = await r.xread({keys.job(j).done: "0-0" for j in chunk}, count=1)
                seen = {key.decode() for key, _entries in reply or []}
                still += [j for j in chunk if keys.job(j).done not in seen]
            pending = still
        end = 0.0
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            async with r.pipeline(transaction=False) as pipe:
                for j in chunk:
                    pipe.hmget(keys.job(j).hash, "status", "updated_at")
                replies = await pipe.execute()
            for job_id, (status, updated_at) in zip(chunk, replies, strict=True):
                if status != b"done":
                    raise RuntimeError(f"job {job_id} ended {status!r}; logs in {self.children.logdir}")
                end = max(end, float(updated_at))
        return end

    # -- round trip --

    def round_trips(self, rounds: int) -> list[float]:
        """Sequential POST /v1/chat + GET /v1/jobs/{id}?wait=5 on one keep-alive connection.

        The client is the standard library's ``http.client``, which is lean:
        the figure is the service's more than the client's (httpx would add
        about 0.7 ms to each round trip here).
        """
        seconds: list[float] = []
        body = json.dumps({"collection": COLLECTION, "question": QUESTION})
        headers = {"Content-Type": "application/json", **auth_headers(os.environ.get(API_KEY_ENV))}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            for i in range(rounds):
                t0 = time.perf_counter()
                conn.request("POST", "/v1/chat", body, headers)
                resp = conn.getresponse()
                accepted = resp.read()
                if resp.status != 202:
                    raise RuntimeError(f"POST /v1/chat answered {resp.status}: {accepted!r}")
                conn.request("GET", f"/v1/jobs/{json.loads(accepted)['job_id']}?wait=5", headers=headers)
                resp = conn.getresponse()
                job = resp.read()
                seconds.append(time.perf_counter() - t0)
                if resp.status != 200 or json.loads(job)["status"] != "done":
                    raise RuntimeError(f"round trip {i}: job not done: {resp.status} {job!r}")
        finally:
            conn.close()
        return seconds


async def _submit_pipelined(r: aioredis.Redis, jobs: int, batch: int) -> tuple[float, list[str]]:
    """Queue ``jobs`` chat jobs with ``JobStore.submit`` on non-transactional pipelines.

    The store is bound to the pipeline, so each submit (the gateway's own code:
    the SUBMIT script, with the same job hash and envelope) is queued and sent
    ``batch`` at a time. Returns the wall time of the first submit and the ids.
    """
    ids: list[str] = []
    payload = {"question": QUESTION, "query": QUESTION, "top_k": 5}
    start = time.time()
    for i in range(0, jobs, batch):
        async with r.pipeline(transaction=False) as pipe:
            store = JobStore(pipe)
            for _ in range(min(batch, jobs - i)):
                env = Envelope.new("chat", COLLECTION, dict(payload), JOB_TIMEOUT_S)
                await store.submit(env, max_backlog=jobs + 1)
                ids.append(env.job_id)
            entries = await pipe.execute()
        if not all(entries):
            raise RuntimeError("a submit was refused (backlog full)")
    return start, ids
