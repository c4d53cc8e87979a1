"""Thousands of waiters on one gateway: event streams and ``?wait=`` held at once.

    .venv/bin/python -m bench.waiters [--jobs 2000] [--ordinary 500] [--json out.json]

On the embedded stack (``documind up``'s, default settings): a collection is created,
the embedder is paused (SIGSTOP), ``--jobs`` chats are queued, and for each one an
events stream (``GET /v1/jobs/{id}/events``) and a waiter (``GET /v1/jobs/{id}?wait=30``,
asked again until final) are opened, each on its own connection. Once every stream has
its first event and the gateway follows every stream (its ``documind_waiters`` gauge),
its Valkey connections are counted (CLIENT LIST) and ``--ordinary`` requests (``GET
/v1/collections``, one after another) are timed while all are held. Then the embedder
resumes, and every stream must end with ``done`` and every waiter get ``done``.
Reported: streams and waiters held, 503s met while opening them (asked again after
``Retry-After``), the ordinary requests' p50/p99/max and statuses, the gateway's Valkey
connections, and the time from release to the last final status. The tests run the
same code with a few hundred (``tests/integration/test_waiters.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
import redis.asyncio as aioredis

from bench.client import FINAL_JOB, Http
from bench.common import Latency, context_line, loadavg, run_context, sigterm_as_interrupt, write_json
from bench.stack import BenchStack

COLLECTION = "waiters"
# Connections opened at once (the rest queue here, not in the gateway's accept backlog).
OPENING = 200


@dataclass
class Held:
    """What the streams and waiters got, and what ordinary requests met meanwhile."""

    streams: list[list[str]] = field(default_factory=list)  # each stream's event types
    waits: list[str] = field(default_factory=list)  # each waiter's final status
    ordinary_s: list[float] = field(default_factory=list)
    ordinary_status: Counter[int] = field(default_factory=Counter)
    # 503s met while opening streams and waiters (each asked again after Retry-After).
    refused: Counter[str] = field(default_factory=Counter)
    released_at: float = 0.0
    finished_at: float = 0.0


async def _open(
    port: int, method: str, path: str, headers: dict[str, str]
) -> tuple[Any, Any, int, dict[str, str]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode() + b"\r\n")
    status = int((await reader.readline()).split(b" ", 2)[1])
    found: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        found[name.strip().lower()] = value.strip()
    return reader, writer, status, found


async def follow_events(
    port: int,
    job_id: str,
    headers: dict[str, str],
    opened: Callable[[], None],
    refused: Counter[str] | None = None,
) -> list[str]:
    """The event types of one job's events stream, read to its end (the stream is
    chunked; ``opened`` is called at each event). A 503 (the gateway's pool is full) is
    counted in ``refused`` and asked again after its ``Retry-After``; another refusal:
    ["http <status>"]."""
    while True:
        reader, writer, status, found = await _open(port, "GET", f"/v1/jobs/{job_id}/events", headers)
        if status != 503 or refused is None:
            break
        refused["stream"] += 1
        await _close(writer)
        await asyncio.sleep(float(found.get("retry-after", "1")))  # as the server asked
    types: list[str] = []
    try:
        if status != 200:
            return [f"http {status}"]
        buffered = b""
        while size_line := await reader.readline():
            size = int(size_line.strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            buffered += chunk[:-2]
            while b"\n\n" in buffered:
                block, buffered = buffered.split(b"\n\n", 1)
                for line in block.split(b"\n"):
                    if line.startswith(b"event: "):
                        types.append(line[7:].decode())
                        opened()
        return types
    finally:
        await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the connection and wait until its socket is: a socket still closing when the
    event loop ends is garbage-collected unclosed (a ResourceWarning, an error in tests)."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def wait_final(
    port: int, job_id: str, sent: Callable[[], None], timeout_s: float, refused: Counter[str] | None = None
) -> str:
    """The job's final status, by ``?wait=`` asked again until it is final (``sent`` is
    called as the first request goes out; a 503 is counted and asked again after its
    ``Retry-After``)."""
    http = await Http.connect(port)
    try:
        deadline = time.monotonic() + timeout_s
        sent()
        while time.monotonic() < deadline:
            status, job = await http.call("GET", f"/v1/jobs/{job_id}?wait=30")
            if status == 503 and refused is not None:
                refused["waiter"] += 1
                await asyncio.sleep(1.0)  # the gateway's Retry-After (not kept by Http)
                continue
            if status != 200:
                return f"http {status}"
            if job["status"] in FINAL_JOB:
                return str(job["status"])
        return "timeout"
    finally:
        await http.close()


class _Count:
    def __init__(self, target: int) -> None:
        self.n, self.target, self.all = 0, target, asyncio.Event()

    def __call__(self) -> None:
        self.n += 1
        if self.n >= self.target:
            self.all.set()


async def hold(
    port: int,
    headers: dict[str, str],
    job_ids: Sequence[str],
    release: Callable[[], Awaitable[None]],
    *,
    ordinary: int = 200,
    while_held: Callable[[], Awaitable[None]] | None = None,
    timeout_s: float = 300.0,
) -> Held:
    """Open a stream and a waiter per job, time ``ordinary`` requests while all are held
    (after ``while_held``: checks, and waiting until the gateway follows them all),
    ``release`` the jobs, and collect what came."""
    held, gate = Held(), asyncio.Semaphore(OPENING)
    opened, sent = _Count(len(job_ids)), _Count(len(job_ids))

    def opening(done: _Count) -> Callable[[], None]:
        """Once a connection is open and its request sent: let the next one open."""
        fired = False

        def fire() -> None:
            nonlocal fired
            if not fired:
                fired = True
                gate.release()
                done()

        return fire

    async def stream(job_id: str) -> list[str]:
        await gate.acquire()
        first = opening(opened)
        try:
            return await follow_events(port, job_id, headers, first, held.refused)
        finally:
            first()

    async def waiter(job_id: str) -> str:
        await gate.acquire()
        first = opening(sent)
        try:
            return await wait_final(port, job_id, first, timeout_s, held.refused)
        finally:
            first()

    streams = [asyncio.create_task(stream(j)) for j in job_ids]
    waiters = [asyncio.create_task(waiter(j)) for j in job_ids]
    async with asyncio.timeout(timeout_s):
        await opened.all.wait()
        await sent.all.wait()
        if while_held is not None:
            await while_held()
        http = await Http.connect(port)
        try:
            for _ in range(ordinary):
                start = time.perf_counter()
                status, _ = await http.call("GET", "/v1/collections")
                held.ordinary_s.append(time.perf_counter() - start)
                held.ordinary_status[status] += 1
        finally:
            await http.close()
        early = [w.result() for w in waiters if w.done()]
        assert not early, f"{len(early)} waiters answered before their jobs were released: {Counter(early)}"
        held.released_at = time.perf_counter()
        await release()
        held.streams = list(await asyncio.gather(*streams))
        held.waits = list(await asyncio.gather(*waiters))
        held.finished_at = time.perf_counter()
    return held


def gateway_metrics_port(bench: BenchStack) -> int:
    """The gateway's Prometheus port, as its log says (``bench.metrics()`` would also ask
    the paused embedder, which never answers)."""
    for child in bench.stack.children:
        if child.name == "gateway":
            found = re.findall(
                r"metrics on [^\s:]*:(\d+)/metrics", child.log_path.read_text(errors="replace")
            )
            if found:
                return int(found[-1])
    raise RuntimeError("the gateway's log names no metrics port")


def following(metrics: str) -> float:
    """The gateway's open watches (``documind_waiters``) in its Prometheus text."""
    found = re.search(r"^documind_waiters (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def gateway_connections(valkey_admin_url: str) -> Counter[str]:
    """The Valkey connections of the gateway, by client name (its pool, its waiters)."""
    r = aioredis.Redis.from_url(valkey_admin_url)
    try:
        clients: Any = await r.client_list()
        return Counter(c["name"] for c in clients if str(c.get("name", "")).startswith("documind-gateway"))
    finally:
        await r.aclose()


def summary(held: Held, connections: Counter[str]) -> dict[str, Any]:
    ordinary = Latency.of(held.ordinary_s)
    return {
        "streams_held": len(held.streams),
        "streams_ended_done": sum(1 for s in held.streams if s and s[-1] == "done"),
        "waiters_held": len(held.waits),
        "waiters_done": held.waits.count("done"),
        "refused_while_opening": dict(held.refused),
        "ordinary": {
            **ordinary.row(),
            "max_ms": round(max(held.ordinary_s) * 1000, 2),
            "statuses": dict(held.ordinary_status),
        },
        "gateway_valkey_connections": dict(connections),
        "release_to_last_final_s": round(held.finished_at - held.released_at, 2),
    }


async def run(bench: BenchStack, jobs: int, ordinary: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {os.environ['DOCUMIND_API_KEY']}"}
    http = await Http.connect(bench.port)
    try:
        status, _ = await http.call("POST", "/v1/collections", {"name": COLLECTION})
        assert status == 201, status
        embedder = psutil.Process(bench.pids()["embedder"])
        embedder.send_signal(signal.SIGSTOP)
        job_ids = []
        for i in range(jobs):
            status, body = await http.call(
                "POST", "/v1/chat", {"question": f"question {i}?", "collection": COLLECTION}
            )
            assert status == 202, (status, body)
            job_ids.append(body["job_id"])
    finally:
        await http.close()
    connections: Counter[str] = Counter()

    async def count() -> None:
        # Until the gateway follows every stream (each job's events and done streams).
        port = gateway_metrics_port(bench)
        while True:
            metrics = await Http.connect(port)  # one request per connection: it closes them
            try:
                _status, text = await metrics.request("GET", "/metrics")
            finally:
                await metrics.close()
            if following(text.decode()) >= 2 * jobs:
                break
            await asyncio.sleep(0.1)  # polling the gauge: it has no event to block on
        connections.update(await gateway_connections(bench.stack.valkey.admin_url))

    async def release() -> None:
        embedder.send_signal(signal.SIGCONT)

    try:
        held = await hold(
            bench.port, headers, job_ids, release, ordinary=ordinary, while_held=count, timeout_s=900
        )
    finally:
        embedder.send_signal(signal.SIGCONT)
    return summary(held, connections)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs, each with a stream and a waiter")
    parser.add_argument("--ordinary", type=int, default=500, help="ordinary requests timed while held")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    # A tenant's in-flight caps (1,000 jobs, 32 questions) would refuse the chats this
    # bench queues at once.
    os.environ.setdefault("DOCUMIND_TENANT_MAX_INFLIGHT", str(max(1000, 2 * args.jobs)))
    os.environ.setdefault("DOCUMIND_TENANT_MAX_INTERACTIVE", str(max(1000, 2 * args.jobs)))
    # The paused embedder may have been handed a batch just before it stopped; resumed, its
    # read has timed out by the clock and the batch waits to be reclaimed: soon, not in 30 s.
    os.environ.setdefault("DOCUMIND_VISIBILITY_TIMEOUT_S", "2")
    config = run_context("bench.waiters")
    with sigterm_as_interrupt(), BenchStack() as bench:
        figures = asyncio.run(run(bench, args.jobs, args.ordinary))
    config["loadavg_1m_end"] = loadavg()
    print(json.dumps(figures, indent=2))
    print(context_line(config))
    write_json(args.json, {"config": config, "figures": figures})
    ok = (
        figures["streams_ended_done"] == figures["streams_held"]
        and figures["waiters_done"] == figures["waiters_held"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
