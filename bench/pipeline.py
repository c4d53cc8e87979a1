"""DocuMind's four stages with no-op handlers against the seed's RQ queue, in one run.

    .venv/bin/python -m bench.pipeline [--jobs N] [--rounds M] [--repeat R] [--replicas K] [--aof] [--quick]

``--help`` lists every option.

One valkey-server serves both systems.

DocuMind: the real gateway (uvicorn, ``python -m services.gateway``) and one
process per stage (embedder, retriever, generator), each the real ``Worker``
with a handler that hands every payload on unchanged (``bench.noop_stage``).

* throughput: N chat jobs submitted with ``JobStore.submit`` (the gateway's own
  call, bound to non-transactional pipelines of ``--submit-batch`` jobs) while
  the stages run; timed from the first submit to the last job's final write
  (the ``updated_at`` the generator stamps on the job hash).
* drain: the same N queued while the stage processes are stopped (SIGSTOP),
  timed from SIGCONT: a full queue drained, the way RQ's figure is taken.
* http-ingress: jobs POSTed to /v1/chat by ``--http-concurrency`` keep-alive
  connections, timed to the last job's final write.
* round trip: ``POST /v1/chat`` + ``GET /v1/jobs/{id}?wait=5`` on one keep-alive
  connection, sequential, through all four stages.
* replicas: the end-to-end throughput again with ``--replicas`` processes per
  stage (one consumer group, distinct consumer names) against one process per
  stage, the two alternated.

RQ: ``rq.SimpleWorker`` (``bench.rq_worker``) running a module-level function
that does nothing.

* throughput: ``--rq-jobs`` jobs (default N/5, so that a run takes about as
  long as DocuMind's) enqueued with ``enqueue_many`` on pipelines, then a burst
  worker drains them (timed around ``work()``, in the worker process).
* round trip: ``enqueue`` + ``job.latest_result(timeout=5)`` (a blocking XREAD
  on the job's result stream) with a non-burst SimpleWorker running.

Both systems' round trips are measured in alternating blocks, and their
throughput runs alternate ``--repeat`` times (medians reported), so that load
from other processes on the machine falls on both alike. Every child process
is stopped on exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from rq import Queue
from rq.results import Result

from bench.common import Latency, loadavg, sigterm_as_interrupt
from bench.rq_worker import RESULT_PREFIX, noop
from bench.stack import use_bench_key
from libs.common import constants, keys
from libs.common.admin_key import API_KEY_ENV, auth_headers
from libs.common.envelope import Envelope
from libs.common.jobs import JobStore
from libs.common.keys import Partition
from libs.common.valkey_server import ValkeyServer, free_port

P0 = Partition(0)

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "bench"
RQ_QUEUE = "bench"
QUESTION = "What does the benchmark measure?"
# The gateway's default job timeout: a job not done by then would expire and fail the run.
JOB_TIMEOUT_S = 120.0
THROUGHPUT_TARGET = 15.0  # DocuMind jobs/s at least 15x RQ's
LATENCY_TARGET = 1.0  # DocuMind round-trip p50 at most RQ's
BLOCK = 50  # round trips per alternating block


# --- figures ------------------------------------------------------------------------


@dataclass
class Throughput:
    jobs: int
    seconds: float
    # CPU microseconds per job that each process spent during the run (Linux only).
    cpu_us: dict[str, float] = field(default_factory=dict)
    # Mean messages per handler batch, by stage (from the workers' /metrics).
    batch: dict[str, float] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.jobs / self.seconds


def median_run(runs: Sequence[Throughput]) -> Throughput:
    """The run with the median rate (the lower middle one for an even count)."""
    return sorted(runs, key=lambda t: t.per_s)[(len(runs) - 1) // 2]


@dataclass
class Report:
    config: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(
        self,
        name: str,
        tput: Throughput | None = None,
        lat: Latency | None = None,
        runs: Sequence[Throughput] = (),
    ) -> None:
        row = self.rows.setdefault(name, {})
        if tput is not None:
            row.update(jobs=tput.jobs, seconds=round(tput.seconds, 3), jobs_per_s=round(tput.per_s, 1))
            if tput.cpu_us:
                row["cpu_us_per_job"] = tput.cpu_us
            if tput.batch:
                row["mean_batch"] = tput.batch
            if len(runs) > 1:
                row["jobs_per_s_runs"] = [round(t.per_s, 1) for t in runs]
        if lat is not None:
            row.update(rounds=lat.rounds, rt_p50_ms=round(lat.p50_ms, 3), rt_p99_ms=round(lat.p99_ms, 3))
            row["rt_mean_ms"] = round(lat.mean_ms, 3)
        print(f"  {name}: {_describe(tput, lat, runs)}", flush=True)


def _describe(tput: Throughput | None, lat: Latency | None, runs: Sequence[Throughput]) -> str:
    parts = []
    if tput is not None:
        text = f"{tput.per_s:,.0f} jobs/s ({tput.jobs} in {tput.seconds:.2f}s)"
        if len(runs) > 1:
            text += " median of " + ", ".join(f"{t.per_s:,.0f}" for t in runs)
        parts.append(text)
        if tput.cpu_us:
            cpu = ", ".join(f"{k} {v:.0f}" for k, v in tput.cpu_us.items())
            parts.append(f"CPU us/job: {cpu} (sum {sum(tput.cpu_us.values()):.0f})")
        if tput.batch:
            parts.append("mean batch: " + ", ".join(f"{k} {v:.1f}" for k, v in tput.batch.items()))
    if lat is not None:
        parts.append(f"round trip p50 {lat.p50_ms:.2f} ms, p99 {lat.p99_ms:.2f} ms ({lat.rounds} rounds)")
    return "; ".join(parts)


# --- child processes --------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc); 0.0 where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Children:
    """Child processes with their output in ``logdir``; :meth:`stop_all` stops them all."""

    def __init__(self, logdir: Path, env: dict[str, str]) -> None:
        self.logdir = logdir
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # Processes not started here whose CPU time is reported too (valkey-server).
        self.watched: dict[str, int] = {}

    def start(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        with (self.logdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs[name] = proc
        return proc

    def signal(self, names: Sequence[str], sig: signal.Signals) -> None:
        for name in names:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.logdir}/{name}.log")

    def stop(self, names: Sequence[str], timeout_s: float = 15.0) -> None:
        names = [n for n in names if n in self.procs]
        # A stopped process would keep SIGTERM pending: continue it first.
        self.signal(names, signal.SIGCONT)
        self.signal(names, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name in names:
            proc = self.procs.pop(name)
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        self.stop(list(self.procs))

    def cpu(self, names: Sequence[str]) -> dict[str, float]:
        """CPU seconds so far of the named children / watched processes, and of this one ("bench")."""
        pids = {**self.watched, **{n: p.pid for n, p in self.procs.items()}}
        out = {n: _cpu_seconds(pids[n]) for n in names if n in pids}
        out["bench"] = time.process_time()
        return out


def _cpu_us_per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    return {k: round((after[k] - before[k]) / jobs * 1e6, 1) for k in after if k in before}


# --- DocuMind -----------------------------------------------------------------------------


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
        self.children.start("gateway", argv, DOCUMIND_PORT=str(self.port))

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
        cpu = _cpu_us_per_job(cpu0, cpu1, jobs)
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
        return Throughput(jobs, end - start, _cpu_us_per_job(cpu0, cpu1, jobs), self._mean_batches(b0))

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


# --- RQ ------------------------------------------------------------------------------------


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
        valkey0 = _cpu_seconds(self.children.watched["valkey"])
        proc = self.children.start("rq-burst", self._argv(self.queue.name, "--burst"))
        try:
            proc.wait(timeout=900)
        finally:
            self.children.stop(["rq-burst"])
        valkey_s = _cpu_seconds(self.children.watched["valkey"]) - valkey0
        found = [line for line in log.read_text().splitlines() if line.startswith(RESULT_PREFIX)]
        if not found:
            raise RuntimeError(f"RQ burst worker printed no result; see {log}")
        res = json.loads(found[-1][len(RESULT_PREFIX) :])
        if res["jobs"] != jobs:
            raise RuntimeError(f"RQ burst worker finished {res['jobs']} jobs, expected {jobs}")
        cpu = {"valkey": round(valkey_s / jobs * 1e6, 1), "rq-worker": round(res["cpu_s"] / jobs * 1e6, 1)}
        return Throughput(jobs, res["seconds"], cpu)


def alternate_round_trips(dm: DocuMind, rq: RQ, rounds: int) -> tuple[Latency, Latency]:
    """Round trips of both systems in alternating blocks of ``BLOCK``."""
    mine: list[float] = []
    theirs: list[float] = []
    while len(mine) < rounds:
        n = min(BLOCK, rounds - len(mine))
        mine += dm.round_trips(n)
        theirs += rq.round_trips(n)
    return Latency.of(mine), Latency.of(theirs)


# --- the run ----------------------------------------------------------------------------------


def parse_variant(text: str) -> dict[str, str]:
    """``read_count=128,concurrency=4`` -> DOCUMIND_* environment."""
    env = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"expected key=value[,key=value], got {text!r}")
        env[f"DOCUMIND_{key.strip().upper()}"] = value.strip()
    return env


def variant_name(env: dict[str, str]) -> str:
    return ",".join(f"{k.removeprefix('DOCUMIND_').lower()}={v}" for k, v in env.items())


DEFAULT_VARIANTS = ("read_count=128,concurrency=4", "read_count=8")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput run (default 20000)")
    p.add_argument("--rounds", type=int, default=500, help="round trips measured per system (default 500)")
    p.add_argument("--repeat", type=int, default=3, help="throughput runs per system, alternated (default 3)")
    p.add_argument("--rq-jobs", type=int, help="jobs per RQ throughput run (default: --jobs / 5)")
    p.add_argument("--warmup", type=int, default=50, help="round trips (and 20x jobs) run first")
    p.add_argument("--submit-batch", type=int, default=500, help="jobs per submit pipeline (default 500)")
    p.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        metavar="KEY=V[,KEY=V]",
        help="other DocuMind worker settings to measure, e.g. read_count=128,concurrency=4 "
        f"(repeatable; default: {' and '.join(DEFAULT_VARIANTS)})",
    )
    p.add_argument("--no-variants", action="store_true", help="measure the default worker settings only")
    p.add_argument("--http-jobs", type=int, default=5000, help="jobs of the HTTP-ingress run (0: skip it)")
    p.add_argument("--http-concurrency", type=int, default=16, help="connections of the HTTP-ingress run")
    p.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="also measure end-to-end throughput with this many processes per stage against one, "
        "alternated --repeat times (default 2; 0 or 1: skip)",
    )
    p.add_argument("--aof", action="store_true", help="valkey with appendonly yes (appendfsync everysec)")
    p.add_argument("--rq-log-level", default="WARNING", help="RQ worker logging (RQ's own default is INFO)")
    p.add_argument("--profile", metavar="DIR", help="cProfile each stage of the default settings into DIR")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--quick", action="store_true", help="a smoke run: 3000 jobs, 200 rounds, no variants")
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.rounds, args.repeat, args.http_jobs, args.no_variants = 3000, 200, 1, 1000, True
    if args.rq_jobs is None:
        args.rq_jobs = max(1, args.jobs // 5)
    if args.variant is None:
        args.variant = [] if args.no_variants else [parse_variant(v) for v in DEFAULT_VARIANTS]
    if min(args.jobs, args.rq_jobs, args.repeat, args.submit_batch) < 1 or args.rounds < 2:
        p.error("--jobs, --rq-jobs, --repeat and --submit-batch must be positive, --rounds at least 2")
    return args


def run(args: argparse.Namespace) -> Report:
    report = Report(
        config={
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "command": " ".join(["python -m bench.pipeline", *sys.argv[1:]]),
            "jobs": args.jobs,
            "rq_jobs": args.rq_jobs,
            "rounds": args.rounds,
            "repeat": args.repeat,
            "replicas": args.replicas,
            "valkey_appendonly": "yes (appendfsync everysec)" if args.aof else "no",
            "rq_log_level": args.rq_log_level,
            "loadavg_1m_start": loadavg(),
        }
    )
    tmp = Path(tempfile.mkdtemp(prefix="documind-bench-"))
    ok = False
    use_bench_key()
    server = ValkeyServer(tmp / "valkey", appendonly=args.aof)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DOCUMIND_DATA_DIR": str(tmp / "data")}
    children = Children(tmp, env)
    try:
        server.start()
        assert server.proc is not None
        children.watched["valkey"] = server.proc.pid
        env["DOCUMIND_VALKEY_URL"] = server.url
        aof = report.config["valkey_appendonly"]
        print(f"valkey-server on {server.url}, appendonly {aof}; logs in {tmp}")
        dm = DocuMind(children, server.url)
        rq = RQ(children, server.url, args.rq_log_level)
        dm.reset()
        dm.start_gateway()
        rq.start_worker()
        rq.round_trips(args.warmup)
        rq_lat: list[Latency] = []
        rq_runs: list[Throughput] = []
        for n, cfg in enumerate([{}, *args.variant]):
            name = variant_name(cfg) or "default"
            label = "documind" if n == 0 else f"documind[{name}]"
            print(f"DocuMind, worker settings: {name}", flush=True)
            profile_dir = Path(args.profile) if args.profile and n == 0 else None
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
            dm.reset()
            dm.start_workers(profile_dir, **cfg)
            dm.wait_ready()
            dm.round_trips(args.warmup)
            dm.throughput(args.warmup * 20, args.submit_batch)
            lat, rq_l = alternate_round_trips(dm, rq, args.rounds)
            rq_lat.append(rq_l)
            report.add(label, lat=lat)
            report.rows[label]["rq_rt_p50_ms_alongside"] = round(rq_l.p50_ms, 3)
            if n == 0:
                # The headline throughputs, DocuMind's and RQ's runs alternated: RQ runs
                # ``--rq-jobs`` (~ as long as a DocuMind run), so both meet the same load.
                e2e: list[Throughput] = []
                drains: list[Throughput] = []
                for _ in range(args.repeat):
                    e2e.append(dm.throughput(args.jobs, args.submit_batch))
                    drains.append(dm.throughput(args.jobs, args.submit_batch, drain=True))
                    rq_runs.append(rq.throughput(args.rq_jobs, args.submit_batch))
                report.add(label, tput=median_run(e2e), runs=e2e)
                report.add(f"{label} drain", tput=median_run(drains), runs=drains)
                if args.http_jobs:
                    http_tput = dm.throughput_http(args.http_jobs, args.http_concurrency)
                    report.add(f"{label} http-ingress", tput=http_tput)
            else:
                report.add(label, tput=dm.throughput(args.jobs, args.submit_batch))
            dm.stop_workers()
        if args.replicas > 1:
            measure_replicas(dm, report, args)
        children.stop(["gateway", "rq-worker"])
        dm.reset()
        # RQ's round trips alternated with the default settings' give the headline p50.
        report.add("rq", tput=median_run(rq_runs), runs=rq_runs, lat=rq_lat[0])
        ok = True
    finally:
        children.stop_all()
        server.stop()
        report.config["loadavg_1m_end"] = loadavg()
        if ok and not args.profile:
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def measure_replicas(dm: DocuMind, report: Report, args: argparse.Namespace) -> None:
    """End-to-end throughput with one and with ``--replicas`` processes per stage (default
    settings), the two alternated ``--repeat`` times; each start is warmed up first."""
    print(f"DocuMind, 1 and {args.replicas} processes per stage, alternated", flush=True)
    runs: dict[int, list[Throughput]] = {1: [], args.replicas: []}
    for _ in range(args.repeat):
        for count, done in runs.items():
            dm.reset()
            dm.start_workers(replicas=count)
            try:
                dm.wait_ready()
                dm.throughput(args.warmup * 20, args.submit_batch)
                done.append(dm.throughput(args.jobs, args.submit_batch))
            finally:
                dm.stop_workers()
    for count, done in runs.items():
        report.add(f"documind replicas={count}", tput=median_run(done), runs=done)


def summary(report: Report) -> str:
    rows = report.rows
    rq, dm = rows["rq"], rows["documind"]
    width = max(len(n) for n in rows) + 2
    lines = ["", f"{'':{width}}{'jobs/s':>10}{'rt p50 ms':>11}{'rt p99 ms':>11}"]
    for name, row in rows.items():
        tput = f"{row['jobs_per_s']:,.0f}" if "jobs_per_s" in row else "-"
        p50 = f"{row['rt_p50_ms']:.2f}" if "rt_p50_ms" in row else "-"
        p99 = f"{row['rt_p99_ms']:.2f}" if "rt_p99_ms" in row else "-"
        lines.append(f"{name:{width}}{tput:>10}{p50:>11}{p99:>11}")
    t_ratio = dm["jobs_per_s"] / rq["jobs_per_s"]
    l_ratio = dm["rt_p50_ms"] / rq["rt_p50_ms"]
    ratios: dict[str, float] = {"throughput": round(t_ratio, 2), "rt_p50": round(l_ratio, 3)}
    lines += [
        "",
        f"throughput   DocuMind / RQ         = {t_ratio:5.1f}x  (target >= {THROUGHPUT_TARGET:.0f}x): "
        + ("MET" if t_ratio >= THROUGHPUT_TARGET else "NOT MET"),
        f"round trip   DocuMind p50 / RQ p50 = {l_ratio:5.2f}   (target <= {LATENCY_TARGET:.0f}):  "
        + ("MET" if l_ratio <= LATENCY_TARGET else "NOT MET"),
    ]
    for name, key in (("documind drain", "drain"), ("documind http-ingress", "http_ingress")):
        if name in rows:
            ratios[f"throughput_{key}"] = round(rows[name]["jobs_per_s"] / rq["jobs_per_s"], 2)
            lines.append(f"  {name} / RQ = {ratios[f'throughput_{key}']:.1f}x")
    replicas = [n for n in rows if n.startswith("documind replicas=") and n != "documind replicas=1"]
    for name in replicas:
        ratio = rows[name]["jobs_per_s"] / rows["documind replicas=1"]["jobs_per_s"]
        ratios[f"throughput_{name.split()[-1]}_vs_1"] = round(ratio, 2)
        lines.append(f"  {name} / replicas=1 = {ratio:.2f}x (per-stage processes on the same cores)")
    report.config["ratios"] = ratios
    load = (report.config.get("loadavg_1m_start"), report.config.get("loadavg_1m_end"))
    lines.append(f"1-minute load average at start / end: {load[0]} / {load[1]} (other work skews figures)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with sigterm_as_interrupt():
            report = run(args)
    except KeyboardInterrupt:
        print("interrupted; child processes stopped", file=sys.stderr)
        return 130
    print(summary(report))
    if args.json:
        data = {"config": report.config, "rows": report.rows}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
