"""An OpenAI-compatible chat server that streams its answer slowly, for pressing Stop.

Each streamed answer is ``WORDS`` words, one every ``interval_s`` (a model writing at
ten words a second), so a test sees the first words in the page long before the end
and can stop the answer midway. The pace is the server's behaviour, not a test's wait:
tests block on :attr:`SlowLLM.streaming` and :attr:`SlowLLM.abandoned`.

``abandoned`` is set when the client goes away mid-answer: the generator dropped the
call (what cancelling a job must do). A request to rewrite a follow-up as a standalone
question (the generator's condensation) is answered at once with the question itself.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, Final

from tests.integration.fake_llm import LocalServer

FIRST_WORDS: Final = "Slowly streamed answer"
WORDS: Final = 300


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    body = {
        "id": "chatcmpl-slow",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "slow",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class SlowLLM(LocalServer):
    def __init__(self, interval_s: float = 0.1, words: int = WORDS) -> None:
        self.interval_s = interval_s
        self.words = words
        # Set once an answer's first words are sent, and when a client leaves mid-answer.
        self.streaming = threading.Event()
        self.abandoned = threading.Event()
        # Set at the end: every answer still streaming finishes at once.
        self.closing = threading.Event()
        self._serve(self._handler())

    def _closing(self) -> None:
        self.closing.set()

    def pieces(self, request: dict[str, Any]) -> tuple[list[str], bool]:
        """The answer's pieces for ``request``, and whether to send them slowly."""
        messages = request.get("messages") or []
        if any("standalone question" in str(m.get("content", "")) for m in messages):
            users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
            return [users[-1] if users else "?"], False
        words = [f"{FIRST_WORDS} "] + [f"word{i} " for i in range(self.words)] + ["[1]."]
        return words, True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                pieces, slow = llm.pieces(request)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Cache-Control", "no-cache")
                    self.end_headers()
                    for piece in pieces:
                        self.wfile.write(_chunk(piece))
                        self.wfile.flush()
                        if slow:
                            llm.streaming.set()
                            if llm.closing.wait(llm.interval_s):
                                slow = False
                    self.wfile.write(_chunk(None, "stop"))
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except OSError:
                    llm.abandoned.set()  # the generator dropped the call

        return Handler
