"""A small OpenAI-compatible chat server for tests: it can hold requests until released."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LocalServer:
    """An HTTP server on a free loopback port, serving from a thread while entered."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing()
        self.server.shutdown()
        self.server.server_close()

    def _closing(self) -> None:
        """Let the requests still being answered end (before the server shuts down)."""


class FakeLLM(LocalServer):
    def __init__(self, reply: str = "The answer is in the sources [1].", hold: bool = False) -> None:
        self.reply = reply
        self.received = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.requests = 0
        self.answered = 0
        self._lock = threading.Lock()
        self._serve(self._handler())

    def _closing(self) -> None:
        self.release.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake._lock:
                    fake.requests += 1
                fake.received.set()
                fake.release.wait()
                body = json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "fake",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": fake.reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    return  # the client was killed while we held its request
                with fake._lock:
                    fake.answered += 1

        return Handler
