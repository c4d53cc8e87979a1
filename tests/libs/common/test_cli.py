"""The ``documind`` commands against a fake gateway on 127.0.0.1, output piped (not a terminal)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from libs.common.cli import main

ROOT = Path(__file__).resolve().parents[3]
Answer = tuple[int, Any]


class FakeGateway:
    """Canned answers by (method, path): each request takes the next one, the last one repeats."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[tuple[str, str]] = []
        # The Authorization header of each request (None without one).
        self.auth: list[str | None] = []
        self.url = ""

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.answers[(method, path)] = list(answers)

    def count(self, method: str, path: str) -> int:
        return self.requests.count((method, path))

    def answer(self, method: str, path: str) -> Answer:
        self.requests.append((method, path))
        queue = self.answers.get((method, path))
        if not queue:
            return 404, {"detail": f"no route {method} {path}"}
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    fake = FakeGateway()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fake.auth.append(self.headers.get("Authorization"))
            status, body = fake.answer(self.command, self.path.split("?")[0])
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def chat_job(gateway: FakeGateway, job: dict[str, Any]) -> None:
    gateway.on("POST", "/v1/chat", (202, {"job_id": "j1", "status": "queued"}))
    gateway.on("GET", "/v1/jobs/j1", (200, {"job_id": "j1", **job}))


def ask(gateway: FakeGateway, *extra: str) -> int:
    return main(["ask", "When is high tide?", "--collection", "port", "--url", gateway.url, *extra])


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("cancelled", "cancelled by the client while generating"),
        ("failed", "the LLM answered 500"),
        ("expired", "no answer within 120s"),
    ],
)
def test_ask_stops_on_a_final_status_other_than_done(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str], status: str, error: str
) -> None:
    # A job cancelled (or failed, or expired) elsewhere: the fake answers at once, whatever
    # ?wait= says, so polling on until the 30 s timeout would show as a slow test.
    chat_job(gateway, {"status": status, "error": error})
    started = time.monotonic()
    assert ask(gateway, "--timeout", "30") == 1
    assert time.monotonic() - started < 5
    assert gateway.count("GET", "/v1/jobs/j1") == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{status}: {error}\n")


def test_ask_prints_the_answer_with_its_citations(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    result = {
        "answer": "High tide on Friday is at 06:40 [1].",
        "citations": [{"n": 1, "filename": "harbour.txt", "page": 1, "snippet": "High tide [Friday] 06:40"}],
        "mode": "extractive",
    }
    gateway.on("POST", "/v1/chat", (202, {"job_id": "j1"}))
    gateway.on(
        "GET",
        "/v1/jobs/j1",
        (200, {"job_id": "j1", "status": "generating"}),
        (200, {"status": "done", "result": result}),
    )
    assert ask(gateway) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        "High tide on Friday is at 06:40 [1].",
        "",
        "[1] harbour.txt, page 1: High tide [Friday] 06:40",
        "",
        "(mode: extractive)",
    ]


def test_ask_rejected_or_forgotten(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    gateway.on("POST", "/v1/chat", (404, {"detail": "collection 'port' not found"}))
    assert ask(gateway) == 1
    assert capsys.readouterr().err == "rejected (404): collection 'port' not found\n"

    # The job's record is gone (its TTL ran out): say so rather than poll until the timeout.
    gateway.on("POST", "/v1/chat", (202, {"job_id": "j1"}))
    gateway.on("GET", "/v1/jobs/j1", (404, {"detail": "job 'j1' not found"}))
    assert ask(gateway, "--timeout", "30") == 1
    assert capsys.readouterr().err == "failed (404): job 'j1' not found\n"


def test_a_gateway_not_running_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    assert main(["collections", "--url", url]) == 2
    assert capsys.readouterr().err.startswith(f"documind: cannot reach {url}: ")


def test_piped_tables_are_plain_one_line_rows(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal size must not wrap a piped row
    monkeypatch.setenv("FORCE_COLOR", "1")  # as CI systems set: still no escape codes in a pipe
    long = "Tide tables, buoys and lights of the harbour, " * 4
    gateway.on(
        "GET",
        "/v1/collections",
        (200, {"collections": [{"name": "port", "documents": 3, "chunks": 12, "description": long.strip()}]}),
    )
    assert main(["collections", "--url", gateway.url]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].split() == ["collection", "documents", "chunks", "description"]
    assert lines[1].startswith("port        3          12      Tide tables")
    assert lines[1].endswith("of the harbour,")  # whole, and no trailing blanks

    doc = {"document_id": "d1", "pages": 2, "chunks": 5, "status": "ready", "error": None}
    bad = {
        "document_id": "d2",
        "pages": None,
        "chunks": None,
        "status": "failed",
        "error": "[bold]no text[/]",
    }
    docs = [{**doc, "filename": "a [draft].pdf"}, {**bad, "filename": "scan.pdf"}]
    gateway.on("GET", "/v1/collections/port/documents", (200, {"documents": docs}))
    assert main(["documents", "port", "--url", gateway.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "document_id", "pages", "chunks", "status", "reason"]
    assert lines[1].split() == ["a", "[draft].pdf", "d1", "2", "5", "ready"]
    assert lines[2].split() == ["scan.pdf", "d2", "failed", "[bold]no", "text[/]"]  # not read as markup

    assert main(["documents", "nope", "--url", gateway.url]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "failed (404): no route GET /v1/collections/nope/documents\n")


def test_ingest_piped_prints_status_lines_then_the_summary(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good, bad = tmp_path / "harbour.txt", tmp_path / "tool.exe"
    good.write_text("High tide on Friday is at 06:40.")
    bad.write_bytes(b"MZ")
    gateway.on(
        "POST",
        "/v1/collections/port/documents",
        (202, {"document_id": "d1", "job_id": "j1", "status": "queued"}),
        (415, {"detail": "tool.exe: unsupported file type"}),
    )
    doc = {"document_id": "d1", "pages": 1, "chunks": 2, "error": None}
    gateway.on(
        "GET",
        "/v1/documents/d1",
        (200, {**doc, "status": "embedding", "progress": {"chunks_embedded": 1}}),
        (200, {**doc, "status": "ready", "progress": {"chunks_embedded": 2}}),
    )
    gateway.on("GET", "/v1/jobs/j1", (200, {"job_id": "j1", "status": "embedding"}))
    args = ["ingest", str(good), str(bad), "--collection", "port", "--url", gateway.url]
    assert main(args) == 1  # one file was refused
    out = capsys.readouterr().out
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[:3] == ["harbour.txt: embedding", "tool.exe: rejected", "harbour.txt: ready"]
    assert [line.split() for line in lines[3:]] == [
        ["file", "pages", "chunks", "status", "reason"],
        [str(good), "1", "2", "ready"],
        [str(bad), "rejected", "415:", "tool.exe:", "unsupported", "file", "type"],
    ]
    assert lines[-1].endswith("  rejected  415: tool.exe: unsupported file type")


def test_ingest_ends_when_the_ingest_job_is_cancelled(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("x")
    gateway.on("POST", "/v1/collections/port/documents", (202, {"document_id": "d1", "job_id": "j1"}))
    gateway.on(
        "GET",
        "/v1/documents/d1",
        (200, {"pages": None, "chunks": None, "status": "cancelled", "error": "cancelled by the client"}),
    )
    started = time.monotonic()
    assert (
        main(["ingest", str(tmp_path), "--collection", "port", "--url", gateway.url, "--timeout", "30"]) == 1
    )
    assert time.monotonic() - started < 5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "a.txt: cancelled"
    assert lines[-1].split()[1:] == ["cancelled", "cancelled", "by", "the", "client"]


def test_the_command_in_a_pipe(gateway: FakeGateway) -> None:
    """``documind ask`` as a user runs it, stdout and stderr piped: a cancelled job ends it at once."""
    chat_job(gateway, {"status": "cancelled", "error": "cancelled by the client while retrieving"})
    env = {**os.environ, "FORCE_COLOR": "1", "DOCUMIND_URL": gateway.url}
    cmd = [sys.executable, "-m", "libs.common.cli", "ask", "tide?", "--collection", "port", "--timeout", "30"]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    assert (done.stdout, done.stderr) == ("", "cancelled: cancelled by the client while retrieving\n")


def test_commands_send_the_key_from_the_flag_then_the_environment_then_the_data_dir(
    gateway: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.on("GET", "/v1/collections", (200, {"collections": []}))
    monkeypatch.delenv("DOCUMIND_API_KEY", raising=False)
    listing = ["collections", "--url", gateway.url, "--data-dir", str(tmp_path)]
    assert main(listing) == 0  # no key anywhere: nothing sent
    (tmp_path / "admin.key").write_text("from-the-data-dir\n")
    assert main(listing) == 0
    monkeypatch.setenv("DOCUMIND_API_KEY", "from-the-environment")
    assert main(listing) == 0
    assert main([*listing, "--api-key", "from-the-flag"]) == 0
    assert gateway.auth == [
        None,
        "Bearer from-the-data-dir",
        "Bearer from-the-environment",
        "Bearer from-the-flag",
    ]
