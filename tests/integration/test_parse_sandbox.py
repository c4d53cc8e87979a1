"""A slow parse in the real embedder: cancelling its job or deleting its document stops it
within about a second, other jobs carry on meanwhile, an embedder killed outright leaves no
parse behind, and SIGTERM exits 0 within the grace."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import psutil
import pytest

from libs.common.valkey_server import ValkeyServer
from tests import hostile
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(240)

GRACE_S = 2
MEMORY_MB = 512
# 200 pages sharing one stream of a million text moves: about 100 s of parsing, no text.
SLOW_PDF = hostile.shared_stream_pdf(pages=200)
# Cancelling answers at once; the embedder notices within its poll (0.25 s) and kills.
STOP_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("parse-sandbox")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(
            server.url,
            tmp,
            DOCUMIND_PARSE_TIMEOUT_S="120",
            DOCUMIND_PARSE_MEMORY_MB=str(MEMORY_MB),
            DOCUMIND_SHUTDOWN_GRACE_S=str(GRACE_S),
        )
        try:
            s.start_all()
            yield s
        finally:
            s.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=30) as c:
        yield c


def embedder(stack: Stack) -> subprocess.Popen[bytes]:
    """The embedder running now (the last one started)."""
    running = [
        p for p in stack.procs if "services.embedder" in " ".join(map(str, p.args)) and p.poll() is None
    ]
    return running[-1]


def parse_children(stack: Stack) -> list[psutil.Process]:
    """The embedder's running parse processes: the children of its fork server."""
    found = []
    for child in psutil.Process(embedder(stack).pid).children():
        try:
            found += [p for p in child.children() if not gone(p)]
        except psutil.NoSuchProcess:
            continue
    return found


def until(condition: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``condition`` held, checked every 10 ms up to the deadline."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError("condition not met")
        time.sleep(0.01)
    return time.monotonic() - started


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def start_slow_parse(stack: Stack, client: httpx.Client, name: str) -> tuple[dict[str, str], psutil.Process]:
    # A collection of its own: the same content twice in one is a duplicate, not parsed again.
    collection = name.removesuffix(".pdf")
    up = client.post(f"/v1/collections/{collection}/documents", files={"file": (name, SLOW_PDF)})
    assert up.status_code == 202, up.text
    assert up.json()["duplicate"] is False
    until(lambda: bool(parse_children(stack)), timeout_s=30)
    (child,) = parse_children(stack)
    body: dict[str, str] = up.json()
    return body, child


def test_cancelling_an_ingest_stops_its_parse_within_a_second(stack: Stack, client: httpx.Client) -> None:
    up, child = start_slow_parse(stack, client, "cancel-me.pdf")
    assert child.rlimit(psutil.RLIMIT_AS) == (MEMORY_MB * 1024 * 1024, MEMORY_MB * 1024 * 1024)

    # Meanwhile the embedder serves other work: a small upload and a question.
    small = client.post("/v1/collections/other/documents", files={"file": ("note.txt", b"Tea is at five.")})
    assert stack.wait_job(small.json()["job_id"], timeout_s=30)["status"] == "done"
    asked = client.post("/v1/chat", json={"question": "When is tea?", "collection": "other"})
    assert stack.wait_job(asked.json()["job_id"], timeout_s=30)["status"] == "done"
    assert not gone(child)

    resp = client.delete(f"/v1/jobs/{up['job_id']}")
    assert resp.json()["status"] == "cancelled"
    assert until(lambda: gone(child), timeout_s=5) < STOP_WITHIN_S
    doc = client.get(f"/v1/documents/{up['document_id']}").json()
    assert doc["status"] == "failed" and "cancelled" in doc["error"]
    stack.assert_alive()


def test_deleting_the_document_stops_its_parse_within_a_second(stack: Stack, client: httpx.Client) -> None:
    up, child = start_slow_parse(stack, client, "delete-me.pdf")
    assert client.delete(f"/v1/documents/{up['document_id']}").status_code == 200
    assert until(lambda: gone(child), timeout_s=5) < STOP_WITHIN_S
    job = stack.wait_job(up["job_id"], timeout_s=10)
    assert job["status"] == "failed" and "deleted while it was being parsed" in job["error"]
    stack.assert_alive()


def test_an_embedder_killed_outright_leaves_no_parse_running(stack: Stack, client: httpx.Client) -> None:
    _up, child = start_slow_parse(stack, client, "orphan.pdf")
    killed = embedder(stack)
    killed.kill()
    assert until(lambda: gone(child), timeout_s=5) < STOP_WITHIN_S
    assert killed.wait(10) == -signal.SIGKILL
    stack.start("embedder")  # the message is reclaimed and parsed again


def test_sigterm_during_a_parse_exits_0_within_the_grace(stack: Stack, client: httpx.Client) -> None:
    _up, child = start_slow_parse(stack, client, "interrupted.pdf")
    proc = embedder(stack)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(GRACE_S + 8) == 0
    assert time.monotonic() - started < GRACE_S + 3
    assert until(lambda: gone(child), timeout_s=5) < 1
