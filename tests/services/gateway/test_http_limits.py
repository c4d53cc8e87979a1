"""The gateway's uvicorn protocol against hostile clients, over real sockets: header
blocks too large or too many fields, partial headers (slowloris), stalled bodies; and
ordinary clients, keep-alive and long responses, unaffected."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

import services.gateway.main as gateway_main
from services.gateway.http_limits import HttpLimits, LimitedHttpToolsProtocol, limited_http_protocol
from tests.integration.harness import Stack

LIMITS = HttpLimits(max_header_bytes=8192, max_headers=20, header_timeout_s=0.5, body_timeout_s=0.5)
# How long a long response takes: well past the header timeout.
LONG_S = 3 * LIMITS.header_timeout_s

pytestmark = pytest.mark.timeout(30)


class App:
    """Records each request's path; /long answers in three parts over LONG_S, /echo
    answers the size of the body it read (or records 'disconnect'), /late the same
    after LONG_S."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        if scope["path"] == "/long":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"one ", b"two ", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                await asyncio.sleep(LONG_S / 3)
            await send({"type": "http.response.body", "body": b""})
            return
        body = b"ok"
        if scope["path"] == "/late":  # slow to ask for the body
            await asyncio.sleep(LONG_S)
        if scope["path"] in ("/echo", "/late"):
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.paths.append("disconnect")
                    return
                size += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = str(size).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def served() -> Iterator[tuple[App, int]]:
    """The app behind the limited protocol on a free port, until the test ends."""
    app = App()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue until the server accepts them: no start wait
    config = uvicorn.Config(
        app, http=limited_http_protocol(LIMITS), lifespan="off", log_config=None, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        yield app, sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_to_close(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def request(*headers: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\nhost: x\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def test_a_header_block_over_the_limit_is_refused_and_closed(served: tuple[App, int]) -> None:
    app, port = served
    with connect(port) as conn:
        conn.sendall(request(b"x-big: " + b"a" * LIMITS.max_header_bytes))
        reply = read_to_close(conn)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in reply
    assert app.paths == []


def test_a_huge_header_is_refused_before_it_ends(served: tuple[App, int]) -> None:
    # No end of line ever comes: the server answers once the limit is passed, not at
    # the header's end (httptools would buffer all of it).
    app, port = served
    with connect(port) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nx-big: " + b"a" * (2 * LIMITS.max_header_bytes))
        reply = read_to_close(conn)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert app.paths == []


def test_a_header_block_just_under_the_limit_is_served(served: tuple[App, int]) -> None:
    app, port = served
    raw = request(b"x-big: ")
    with connect(port) as conn:
        conn.sendall(request(b"x-big: " + b"a" * (LIMITS.max_header_bytes - len(raw) - 8)))
        reply = conn.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert app.paths == ["/"]


def test_too_many_header_fields_are_refused(served: tuple[App, int]) -> None:
    app, port = served
    fields = [b"x-%d: 1" % i for i in range(LIMITS.max_headers)]  # plus host: one too many
    with connect(port) as conn:
        conn.sendall(request(*fields))
        reply = read_to_close(conn)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert app.paths == []
    with connect(port) as conn:  # one fewer is served
        conn.sendall(request(*fields[1:]))
        assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_partial_headers_are_closed_after_the_header_timeout(served: tuple[App, int]) -> None:
    app, port = served
    with connect(port) as conn:
        opened = time.monotonic()
        conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
        reply = read_to_close(conn)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - opened >= LIMITS.header_timeout_s
    assert app.paths == []


def test_a_trickling_client_is_closed_at_the_header_timeout(served: tuple[App, int]) -> None:
    # One byte a fifth of the timeout apart: each byte used to cancel every timer.
    app, port = served
    pending = iter(request(b"x-a: " + b"a" * 100))
    with connect(port) as conn:
        conn.settimeout(LIMITS.header_timeout_s / 5)
        reply = b""
        while True:
            conn.sendall(bytes([next(pending)]))
            try:
                reply = read_to_close(conn)
            except TimeoutError:
                continue
            break
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert app.paths == []


def test_an_idle_connection_is_closed_without_an_answer(served: tuple[App, int]) -> None:
    _, port = served
    with connect(port) as conn:
        assert read_to_close(conn) == b""


def test_a_stalled_body_ends_the_request_with_408(served: tuple[App, int]) -> None:
    app, port = served
    with connect(port) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
        reply = read_to_close(conn)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert app.paths == ["/echo", "disconnect"]


@pytest.mark.parametrize("requests", [1, 2])
def test_a_body_in_the_same_read_as_its_headers_is_no_part_of_them(
    served: tuple[App, int], requests: int
) -> None:
    # An upload's headers and its body (past the header limit) sent at once, then the
    # next request on the same connection: every byte after the header block is body.
    app, port = served
    size = 4 * LIMITS.max_header_bytes
    one = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % size + b"a" * size
    with connect(port) as conn:
        conn.sendall(one * requests)
        replies = b""
        while replies.count(b"\r\n\r\n%d" % size) < requests:
            chunk = conn.recv(65536)
            assert chunk, replies
            replies += chunk
    assert replies.count(b"HTTP/1.1 200 ") == requests
    assert app.paths == ["/echo"] * requests


def test_a_slow_but_steady_body_is_read(served: tuple[App, int]) -> None:
    # Ten bytes a fifth of the body timeout apart: twice the timeout in all.
    app, port = served
    with connect(port) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")
        for _ in range(10):
            time.sleep(LIMITS.body_timeout_s / 5)  # the slow client's pace
            conn.sendall(b"a")
        reply = conn.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"\r\n\r\n10")
    assert app.paths == ["/echo"]


def test_a_body_the_app_has_not_asked_for_yet_is_no_stall(served: tuple[App, int]) -> None:
    # Expect: 100-continue: the client waits for the app's first receive(), past the
    # body timeout; that wait is not the client's.
    app, port = served
    with connect(port) as conn:
        conn.sendall(b"POST /late HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n")
        assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(b"ab")
        reply = conn.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"\r\n\r\n2")
    assert app.paths == ["/late"]


def test_keep_alive_requests_and_long_responses_are_not_cut(served: tuple[App, int]) -> None:
    # A response lasting three header timeouts, then more requests on the same
    # connection: the timer stops at each request's headers and restarts at its end.
    app, port = served
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request("GET", "/long")
        response = client.getresponse()
        assert (response.status, response.read()) == (200, b"one two three")
        first = client.sock
        for _ in range(3):
            client.request("GET", "/")
            response = client.getresponse()
            assert (response.status, response.read()) == (200, b"ok")
        assert client.sock is first
    finally:
        client.close()
    assert app.paths == ["/long", "/", "/", "/"]


def test_the_gateway_serves_with_its_settings_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() hands uvicorn the limited protocol built from DOCUMIND_* settings."""
    run_kwargs: dict[str, object] = {}
    monkeypatch.setenv("DOCUMIND_AUTH", "off")
    monkeypatch.setenv("DOCUMIND_MAX_HEADER_BYTES", "4096")
    monkeypatch.setenv("DOCUMIND_MAX_HEADERS", "7")
    monkeypatch.setenv("DOCUMIND_HEADER_TIMEOUT_S", "3")
    monkeypatch.setenv("DOCUMIND_BODY_TIMEOUT_S", "4")
    monkeypatch.setattr(gateway_main, "create_app", lambda settings: object())
    monkeypatch.setattr(gateway_main, "serve_metrics", lambda *args: None)
    monkeypatch.setattr(gateway_main, "setup_tracing", lambda *args: None)
    monkeypatch.setattr(gateway_main, "configure_logging", lambda *args: None)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: run_kwargs.update(kwargs))
    gateway_main.main()
    protocol = run_kwargs["http"]
    assert isinstance(protocol, type) and issubclass(protocol, LimitedHttpToolsProtocol)
    assert protocol.limits == HttpLimits(
        max_header_bytes=4096, max_headers=7, header_timeout_s=3, body_timeout_s=4
    )


def test_the_real_gateway_refuses_hostile_clients(valkey_url: str, tmp_path: Path) -> None:
    """``python -m services.gateway`` with small limits: 431, 408, and ordinary requests served."""
    stack = Stack(
        valkey_url,
        tmp_path,
        DOCUMIND_MAX_HEADER_BYTES="8192",
        DOCUMIND_HEADER_TIMEOUT_S="0.5",
    )
    try:
        stack.start("gateway")
        stack.wait_healthy()
        healthz = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n"
        with connect(stack.port) as conn:
            conn.sendall(healthz + b"x-big: " + b"a" * 8192 + b"\r\n\r\n")
            assert read_to_close(conn).startswith(b"HTTP/1.1 431 ")
        with connect(stack.port) as conn:
            conn.sendall(healthz)
            assert read_to_close(conn).startswith(b"HTTP/1.1 408 ")
        with stack.client(timeout=10) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        stack.stop()
