"""One trace per job across all four services, configured by the standard OTEL_* variables."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(180)


def spans_in(log: Path) -> list[dict[str, Any]]:
    """The spans a service printed (OTEL_TRACES_EXPORTER=console: one JSON object a line)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and "context" in item and "resource" in item:
            found.append(item)
    return found


def test_one_jobs_spans_come_from_all_four_services_under_one_trace(valkey_url: str, tmp_path: Path) -> None:
    stack = Stack(valkey_url, tmp_path, OTEL_TRACES_EXPORTER="console", DOCUMIND_LOG_FORMAT="json")
    try:
        stack.start_all()
        with stack.client(timeout=30) as client:
            up = client.post(
                "/v1/collections/traced/documents",
                files={"file": ("ferry.txt", b"The ferry to Inishmore leaves at nine from the pier.")},
            )
            assert stack.wait_job(up.json()["job_id"])["status"] == "done"
            job_id = client.post("/v1/chat", json={"question": "When does the ferry leave?",
                                                  "collection": "traced"}).json()["job_id"]  # fmt: skip
            job = stack.wait_job(job_id)
        assert job["status"] == "done"
        trace_id = job["trace_id"]
        assert len(trace_id) == 32
    finally:
        stack.stop()  # flushes: every service exits after its spans are written

    by_service: dict[str, list[dict[str, Any]]] = {}
    for log in tmp_path.glob("*.log"):
        for span in spans_in(log):
            if span["context"]["trace_id"] == f"0x{trace_id}":
                by_service.setdefault(span["resource"]["attributes"]["service.name"], []).append(span)
    assert set(by_service) == {
        "documind-gateway", "documind-embedder", "documind-retriever", "documind-generator",
    }, sorted(by_service)  # fmt: skip
    # The gateway's server span for the request is the root; each stage's span records
    # how long the message waited in its stream.
    gateway = by_service["documind-gateway"]
    assert any(s["kind"] == "SpanKind.SERVER" and s["parent_id"] is None for s in gateway)
    for stage in ("embedder", "retriever", "generator"):
        work = [s for s in by_service[f"documind-{stage}"] if s["name"] == f"{stage} chat"]
        assert len(work) == 1, [s["name"] for s in by_service[f"documind-{stage}"]]
        attributes = work[0]["attributes"]
        assert attributes["documind.job_id"] == job_id
        assert attributes["documind.queue_wait_s"] >= 0
        assert work[0]["parent_id"] is not None
    # Valkey calls made for the job are traced too (redis instrumentation).
    assert any(s["name"].startswith("EVAL") or "redis" in json.dumps(s["attributes"]) for s in gateway)


class Blackhole:
    """A "collector" that accepts connections and never answers: the worst case for an
    exporter (a refused connection fails fast; this one hangs until its timeout)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_collector_that_never_answers_neither_slows_nor_breaks_requests(
    valkey_url: str, tmp_path: Path
) -> None:
    hole = Blackhole()
    # The exporter's own timeout: a request that waited on an export would take this long.
    stack = Stack(
        valkey_url,
        tmp_path,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{hole.port}",
        OTEL_EXPORTER_OTLP_TIMEOUT="10",
        OTEL_BSP_SCHEDULE_DELAY="50",  # export attempts start at once, during the requests
    )
    try:
        stack.start_all()
        with stack.client(timeout=30) as client:
            up = client.post(
                "/v1/collections/dark/documents", files={"file": ("ferry.txt", b"The ferry leaves at nine.")}
            )
            assert stack.wait_job(up.json()["job_id"])["status"] == "done"
            slowest = 0.0
            for i in range(10):
                started = time.perf_counter()
                resp = client.post("/v1/chat", json={"question": f"When does the ferry leave? ({i})",
                                                     "collection": "dark"})  # fmt: skip
                assert resp.status_code == 202, resp.text
                job = client.get(f"/v1/jobs/{resp.json()['job_id']}", params={"wait": 20}).json()
                slowest = max(slowest, time.perf_counter() - started)
                assert job["status"] == "done", job
                assert len(job["trace_id"]) == 32  # traced, though no span reaches a collector
        # Far below the exporter's 10 s timeout: nothing on a request's path waited on it.
        assert slowest < 5, slowest
        assert hole.accepted, "the exporters never tried the collector"
    finally:
        stack.stop()
        hole.close()
    # Every service still stopped on SIGTERM (stop() kills what outlasts 15 s; uvicorn
    # re-raises the signal once it has shut down, hence -15 for the gateway).
    assert all(p.returncode in (0, -signal.SIGTERM) for p in stack.procs), stack.logs()
