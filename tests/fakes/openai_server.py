"""A deterministic OpenAI-compatible chat server for tests, scripted request by request.

::

    with FakeOpenAI() as llm:
        llm.script(status(429, retry_after_ms=300), ok("Refunds take 14 days [1]."))
        ...  # point a client at llm.base_url
        assert len(llm.requests) == 2

``POST /v1/chat/completions`` answers each request with the next scripted behaviour
(the default reply once the script is used up): a whole JSON completion, or with
``"stream": true`` server-sent events (``data: {chunk}`` lines, then
``data: [DONE]``). ``GET /v1/models`` lists one model. Every request is recorded
with the monotonic time it arrived, so tests can measure the gaps between retries.

It runs in a thread of the test process (``http.server``); streams are sent with
chunked transfer encoding and each event is flushed at once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

MODEL = "fake-model"
DEFAULT_REPLY = "The answer is in the sources [1]."
# Longest a gated stream waits for the test to open the gate.
GATE_TIMEOUT_S = 5.0
# A word and the whitespace after it: how the default stream cuts a reply.
_WORD = re.compile(r"\s*\S+\s*|\s+")


@dataclass(frozen=True)
class Ok:
    """A successful answer; streamed as ``chunks`` (default: word by word)."""

    text: str = DEFAULT_REPLY
    chunks: Sequence[str] | None = None
    # Pause before each chunk after the first (slow tokens).
    chunk_delay_s: float = 0.0
    finish_reason: str = "stop"
    # Answer with one JSON completion even when a stream was asked for.
    as_json: bool = False
    # After the first chunk, wait until the test sets this before sending the rest.
    gate: threading.Event | None = None

    def pieces(self) -> list[str]:
        return list(self.chunks) if self.chunks is not None else _WORD.findall(self.text)


@dataclass(frozen=True)
class Status:
    """An HTTP error with an OpenAI-style error body."""

    code: int
    message: str = "scripted failure"
    # Raw header values; retry_after_ms is what OpenAI itself sends.
    retry_after: str | None = None
    retry_after_ms: int | None = None


@dataclass(frozen=True)
class Hang:
    """Accept the request, send nothing for ``seconds``, then close the connection."""

    seconds: float


@dataclass(frozen=True)
class Malformed:
    """A broken answer after ``after`` good chunks.

    ``bad_json``: a chunk that is not JSON; ``no_content``: a stream with no text at
    all; ``error_event``: an error object inside the stream; ``drop``: the connection
    closes in the middle of the stream.
    """

    kind: Literal["bad_json", "no_content", "error_event", "drop"] = "bad_json"
    after: Sequence[str] = ()


Behaviour = Ok | Status | Hang | Malformed


def ok(text: str = DEFAULT_REPLY, **options: Any) -> Ok:
    return Ok(text, **options)


def slow_tokens(chunks: Sequence[str], delay_s: float) -> Ok:
    return Ok("".join(chunks), chunks=chunks, chunk_delay_s=delay_s)


def status(
    code: int,
    message: str = "scripted failure",
    *,
    retry_after: float | str | None = None,
    retry_after_ms: int | None = None,
) -> Status:
    return Status(code, message, None if retry_after is None else str(retry_after), retry_after_ms)


def hang(seconds: float) -> Hang:
    return Hang(seconds)


def malformed_stream(
    kind: Literal["bad_json", "no_content", "error_event", "drop"] = "bad_json", after: Sequence[str] = ()
) -> Malformed:
    return Malformed(kind, after)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    # time.monotonic() when the request arrived.
    at: float
    # For a gated stream: whether the test opened the gate in time.
    gate_opened: bool | None = None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


@dataclass
class _Shared:
    script: deque[Behaviour] = field(default_factory=deque)
    requests: list[Request] = field(default_factory=list)
    default: Behaviour = field(default_factory=Ok)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    # server_close() waits for the handler threads: none outlives its test.
    daemon_threads = False
    block_on_close = True

    def __init__(self, shared: _Shared) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.shared = shared


def _chunk(
    content: str | None = None, *, role: str | None = None, finish: str | None = None
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(text: str, finish: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        models = {
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}],
        }
        self._json(200, models)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        shared = self.server.shared
        request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
        with shared.lock:
            shared.requests.append(request)
            behaviour = shared.script.popleft() if shared.script else shared.default
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        # OSError: the client gave up (a timeout test) or hung up.
        with contextlib.suppress(OSError):
            self._respond(behaviour, request)

    def _respond(self, behaviour: Behaviour, request: Request) -> None:
        if isinstance(behaviour, Status):
            headers = {}
            if behaviour.retry_after is not None:
                headers["Retry-After"] = behaviour.retry_after
            if behaviour.retry_after_ms is not None:
                headers["retry-after-ms"] = str(behaviour.retry_after_ms)
            error = {"message": behaviour.message, "type": "scripted", "code": behaviour.code}
            self._json(behaviour.code, {"error": error}, headers)
        elif isinstance(behaviour, Hang):
            self.server.shared.stopping.wait(behaviour.seconds)
            self.close_connection = True
        elif isinstance(behaviour, Ok) and (behaviour.as_json or not request.stream):
            self._json(200, _completion(behaviour.text, behaviour.finish_reason))
        elif isinstance(behaviour, Ok):
            self._stream_ok(behaviour, request)
        elif not request.stream:
            self._raw(200, b'{"id": "chatcmpl-fake", "choices": [', "application/json")
        else:
            self._stream_malformed(behaviour)

    def _stream_ok(self, behaviour: Ok, request: Request) -> None:
        self._start_stream()
        self._event(_chunk("", role="assistant"))
        for i, piece in enumerate(behaviour.pieces()):
            if i == 1 and behaviour.gate is not None:
                request.gate_opened = behaviour.gate.wait(GATE_TIMEOUT_S)
            if i > 0 and behaviour.chunk_delay_s:
                self.server.shared.stopping.wait(behaviour.chunk_delay_s)
            self._event(_chunk(piece))
        self._event(_chunk(finish=behaviour.finish_reason))
        self._send_chunk(b"data: [DONE]\n\n")
        self._send_chunk(b"")

    def _stream_malformed(self, behaviour: Malformed) -> None:
        self._start_stream()
        self._event(_chunk("", role="assistant"))
        for piece in behaviour.after:
            self._event(_chunk(piece))
        if behaviour.kind == "drop":
            self.wfile.flush()
            return  # no last chunk: the body ends too early
        if behaviour.kind == "bad_json":
            self._send_chunk(b'data: {"id": "chatcmpl-fake", "choices": [{"delta": \n\n')
        elif behaviour.kind == "error_event":
            self._event({"error": {"message": "upstream model crashed", "type": "server_error"}})
        self._send_chunk(b"data: [DONE]\n\n")
        self._send_chunk(b"")

    # --- HTTP plumbing -----------------------------------------------------------------------

    def _json(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._raw(code, json.dumps(payload).encode(), "application/json", headers)

    def _raw(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _event(self, payload: dict[str, Any]) -> None:
        self._send_chunk(f"data: {json.dumps(payload)}\n\n".encode())

    def _send_chunk(self, data: bytes) -> None:
        """One piece of a chunked body; ``b""`` ends the body."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class FakeOpenAI:
    """The server; use it as a context manager (or ``start()``/``close()``)."""

    def __init__(self, default: Behaviour | None = None) -> None:
        self._shared = _Shared(default=default or Ok())
        self._server = _Server(self._shared)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    @property
    def requests(self) -> list[Request]:
        with self._shared.lock:
            return list(self._shared.requests)

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._shared.lock:
            self._shared.script.extend(behaviours)

    def gaps(self) -> list[float]:
        """Seconds between consecutive requests."""
        times = [r.at for r in self.requests]
        return [b - a for a, b in itertools.pairwise(times)]

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._shared.stopping.set()  # ends hangs and slow streams at once
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
