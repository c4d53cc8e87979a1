"""The workers' healthcheck reads the heartbeat of every worker loop from /metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from libs.common.healthcheck import check, main


@pytest.fixture
def metrics() -> Iterator[tuple[str, list[str]]]:
    """A /metrics endpoint serving whatever text the test puts in the list."""
    body: list[str] = [""]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body[0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", body
    finally:
        server.shutdown()
        server.server_close()


def beats(**lanes: float) -> str:
    lines = ["# TYPE documind_worker_heartbeat_timestamp_seconds gauge"]
    lines += [
        f'documind_worker_heartbeat_timestamp_seconds{{stage="embedder",lane="{lane}"}} {value}'
        for lane, value in lanes.items()
    ]
    return "\n".join(lines) + "\n"


def test_healthy_when_every_loop_beat_recently(metrics: tuple[str, list[str]]) -> None:
    url, body = metrics
    body[0] = beats(interactive=1000.0, bulk=995.0)
    assert check(url, max_age_s=30, now=1010.0) is None


def test_one_silent_loop_makes_the_process_unhealthy(metrics: tuple[str, list[str]]) -> None:
    url, body = metrics
    body[0] = beats(interactive=1000.0, bulk=900.0)
    reason = check(url, max_age_s=30, now=1010.0)
    assert reason is not None and "embedder/bulk: 110s" in reason


def test_no_loop_yet_or_no_server_is_unhealthy(metrics: tuple[str, list[str]]) -> None:
    url, body = metrics
    body[0] = "# nothing here\n"
    assert check(url, max_age_s=30) == "no worker loop is running yet"
    port = url.split(":")[2].split("/")[0]
    assert main([port]) == 1
    assert "unreachable" in (check("http://127.0.0.1:9/metrics", max_age_s=30) or "")
