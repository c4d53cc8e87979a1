"""`documind up` supervises its valkey-server: kill -9 it and the stack carries on.

The stack is started the supervisor's way (:class:`libs.common.supervisor.Stack`:
Valkey with its ACL users and AOF, the four services as child processes). The
test kills valkey-server with SIGKILL, sees the API refuse work with 503 and
``Retry-After`` while it is away, then lets the supervisor run: a new
valkey-server comes up on the same port with the same data, the services (the
same processes) reconnect, and the work goes on.

What it can honestly assert about data: every job the gateway accepted before
the kill finishes. Valkey hands each write to the kernel (the AOF file's page
cache) before it replies, so killing the process loses nothing it acknowledged;
``appendfsync everysec`` only risks the last second on a crash of the machine,
which this test does not simulate. Batches a worker was handling at the kill
could not be committed; they stay pending and are reclaimed after the
visibility timeout (2 s here).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.common.admin_key import auth_headers
from libs.common.settings import MAX_REQUESTS_PER_MINUTE
from libs.common.supervisor import Stack
from libs.common.valkey_server import ValkeyServer, free_port
from tests.integration.harness import Stack as Services

pytestmark = pytest.mark.timeout(240)

DOC = "The harbour master keeps the tide tables. High tide on Friday is at 06:40."
OUTAGE_LINE = "valkey unavailable"
BACK_LINE = "valkey answers again"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, threading.Thread]]:
    """The embedded stack, started; its supervise() loop is the test's to start."""
    started = Stack(
        tmp_path / "data",
        port=free_port(),
        extra_env={
            "DOCUMIND_EMBEDDINGS": "hash",
            # A batch whose commit the kill cut short is reclaimed soon.
            "DOCUMIND_VISIBILITY_TIMEOUT_S": "2",
            "DOCUMIND_MAINTENANCE_INTERVAL_S": "0.2",
            "DOCUMIND_RATE_LIMIT_PER_MIN": str(MAX_REQUESTS_PER_MINUTE),
        },
    )
    supervisor = threading.Thread(target=started.supervise, name="supervise", daemon=True)
    try:
        started.start()
        yield started, supervisor
    finally:
        started.stopping.set()
        if supervisor.is_alive():
            supervisor.join(150)
        started.stop()


def wait_until(what: str, condition: Any, timeout_s: float = 60) -> Any:
    """Poll ``condition()`` until it returns something truthy, within a deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)  # a process start-up or a socket closing: nothing to block on
    raise TimeoutError(f"not within {timeout_s}s: {what}")


def readyz(client: httpx.Client, status: int) -> httpx.Response | None:
    """The readiness answer if it has ``status``, else None."""
    try:
        resp = client.get("/readyz")
    except httpx.TransportError:
        return None
    return resp if resp.status_code == status else None


def ask(client: httpx.Client, question: str) -> str:
    resp = client.post("/v1/chat", json={"question": question, "collection": "port"})
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


def finished(client: httpx.Client, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """The job once final: long-polls ``?wait=`` (the gateway blocks on its done stream)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        resp = client.get(f"/v1/jobs/{job_id}", params={"wait": 5})
        if resp.status_code == 200 and resp.json()["status"] in ("done", "failed", "expired", "cancelled"):
            job: dict[str, Any] = resp.json()
            return job
    raise TimeoutError(f"job {job_id} not final within {timeout_s}s")


def log_lines(stack: Stack, name: str, text: str) -> list[str]:
    log = (stack.data_dir / "logs" / f"{name}.log").read_text(errors="replace")
    return [line for line in log.splitlines() if text in line]


def test_a_killed_valkey_is_restarted_on_its_port_with_its_data_and_the_services_carry_on(
    stack: tuple[Stack, threading.Thread], caplog: pytest.LogCaptureFixture
) -> None:
    s, supervisor = stack
    caplog.set_level(logging.WARNING, logger="libs.common.supervisor")
    gateway_env = next(c.env for c in s.children if c.name == "gateway")
    headers = auth_headers(gateway_env["DOCUMIND_ADMIN_KEY"])
    with httpx.Client(base_url=s.url, headers=headers, timeout=30) as client:
        resp = client.post("/v1/collections/port/documents", files={"file": ("harbour.txt", DOC.encode())})
        assert resp.status_code == 202, resp.text
        assert finished(client, resp.json()["job_id"])["status"] == "done"
        answered = finished(client, ask(client, "When is high tide on Friday?"))
        assert answered["status"] == "done" and "06:40" in answered["result"]["answer"]
        # Accepted, then Valkey is killed while (some of) them are on their way.
        accepted = [ask(client, f"When is high tide on Friday? ({n})") for n in range(30)]

        service_pids = {c.name: c.proc.pid for c in s.children if c.proc is not None}
        assert s.valkey.proc is not None
        old_pid, port, url = s.valkey.proc.pid, s.valkey.port, s.valkey.url
        os.kill(old_pid, signal.SIGKILL)

        # Until the supervisor runs, Valkey stays away: the API says so and refuses work.
        down = wait_until("readyz says valkey is away", lambda: readyz(client, 503))
        assert down.json() == {"status": "unavailable", "reason": "valkey does not answer"}
        refused = client.post("/v1/chat", json={"question": "Anyone there?", "collection": "port"})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "2", refused.text
        assert str(port) not in refused.text + down.text

        # Every worker process has noticed (and said so) before Valkey comes back.
        for name in ("embedder", "retriever", "generator"):
            wait_until(f"{name} logs the outage", lambda name=name: log_lines(s, name, OUTAGE_LINE))

        supervisor.start()
        wait_until("readyz is 200 again", lambda: readyz(client, 200), timeout_s=90)
        # A new valkey-server on the same port, for the URL the services were given; the
        # killed one was reaped (no zombie).
        assert s.valkey.proc is not None and s.valkey.proc.pid != old_pid and s.valkey.proc.poll() is None
        assert (s.valkey.port, s.valkey.url) == (port, url) == (port, gateway_env["DOCUMIND_VALKEY_URL"])
        assert not Path(f"/proc/{old_pid}").exists()
        restarted = f"valkey-server exited with -9; restarting it on port {port}"
        assert any(restarted in r.getMessage() for r in caplog.records)

        # Its data came back from the AOF: the answer before the kill, every job accepted.
        again = client.get(f"/v1/jobs/{answered['job_id']}").json()
        assert again["status"] == "done" and again["result"] == answered["result"]
        for job_id in accepted:
            job = finished(client, job_id)
            assert job["status"] == "done" and "06:40" in job["result"]["answer"], job
        # And a new question goes through all three workers.
        fresh = finished(client, ask(client, "Who keeps the tide tables?"))
        assert fresh["status"] == "done" and "harbour master" in fresh["result"]["answer"], fresh

    # The same service processes all along: none died, none was restarted.
    assert {c.name: c.proc.pid for c in s.children if c.proc is not None} == service_pids
    assert all(c.proc is not None and c.proc.poll() is None and not c.restarts.times for c in s.children)
    # Each worker process logged the outage once, and its end once.
    for name in ("embedder", "retriever", "generator"):
        assert len(log_lines(s, name, OUTAGE_LINE)) == 1, log_lines(s, name, OUTAGE_LINE)
        assert len(log_lines(s, name, BACK_LINE)) == 1, log_lines(s, name, BACK_LINE)


def reason(client: httpx.Client) -> str:
    resp = client.get("/readyz")
    assert resp.status_code == 503, resp.text
    found: str = resp.json()["reason"]
    return found


def test_readiness_says_why_it_is_not_ready(tmp_path: Path) -> None:
    """No worker yet, Valkey away, Valkey still loading its data: three reasons, no addresses."""
    server = ValkeyServer(tmp_path / "valkey", appendonly=False).start()
    # The same data dir and port, loading each key 1 ms slower and answering clients
    # every KB meanwhile (debug settings of Valkey's): a few seconds of LOADING.
    slow = ValkeyServer(
        server.data_dir,
        port=server.port,
        appendonly=False,
        extra_args=["--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024"],
    )
    services = Services(server.url, tmp_path)
    try:
        services.start("gateway")
        services.wait_healthy()
        with httpx.Client(base_url=services.url, timeout=10) as client:
            no_group = (
                "no consumer group yet for: embedder, embedder:bulk, retriever, retriever:bulk, generator"
            )
            assert reason(client) == no_group
            # Enough keys for a few seconds of loading.
            services.r.mset({f"key-{n}": "x" for n in range(3000)})
            services.r.save()
            server.stop()
            assert reason(client) == "valkey does not answer"
            loader = threading.Thread(target=slow.start, name="valkey loading")
            loader.start()
            wait_until(
                "readyz says valkey is loading", lambda: reason(client) == "valkey is loading its data"
            )
            loader.join(60)
            assert slow.proc is not None and slow.proc.poll() is None
            assert reason(client) == no_group
    finally:
        services.stop()
        slow.stop()
        server.stop()
