"""Cleans a streamed answer: no leading ``<think>…</think>`` block, no outer whitespace.

Reasoning models served through OpenAI-compatible servers may prefix their answer
with their thoughts. The tags can arrive split across deltas (``"<th"``, ``"ink>"``),
so the filter holds back text until it knows which side of the block it is on.
Whitespace at the end of what it has seen is held back too, until more text follows:
the joined output is exactly the stripped answer.
"""

from __future__ import annotations

from typing import Literal

OPEN = "<think>"
CLOSE = "</think>"

_Phase = Literal["start", "thinking", "lead", "answer"]


class ThinkFilter:
    def __init__(self) -> None:
        self._phase: _Phase = "start"
        self._buffer = ""
        self._trailing = ""
        # True once a <think> block opened; with ``in_thought`` this tells an answer
        # cut off while still thinking from an empty one.
        self.thought = False

    @property
    def in_thought(self) -> bool:
        return self._phase == "thinking"

    def feed(self, delta: str) -> str:
        """The part of the answer ``delta`` completes (often all of it, maybe nothing)."""
        if self._phase == "answer":
            return self._emit(delta)
        if self._phase == "start":
            self._buffer += delta
            head = self._buffer.lstrip()
            if not head or OPEN.startswith(head):
                return ""  # whitespace, or maybe the start of "<think>"
            if not head.startswith(OPEN):
                self._buffer = ""
                self._phase = "answer"
                return self._emit(head)
            self._buffer = head[len(OPEN) :]
            self._phase = "thinking"
            self.thought = True
            delta = ""
        if self._phase == "thinking":
            self._buffer += delta
            end = self._buffer.find(CLOSE)
            if end < 0:
                # Keep only what could be the start of "</think>".
                self._buffer = self._buffer[-(len(CLOSE) - 1) :]
                return ""
            delta = self._buffer[end + len(CLOSE) :]
            self._buffer = ""
            self._phase = "lead"
        text = delta.lstrip()
        if not text:
            return ""
        self._phase = "answer"
        return self._emit(text)

    def finish(self) -> str:
        """What is left at the end of the stream (trailing whitespace is dropped)."""
        if self._phase == "start":
            self._phase = "answer"
            return self._emit(self._buffer.strip())
        return ""

    def _emit(self, text: str) -> str:
        text = self._trailing + text
        body = text.rstrip()
        self._trailing = text[len(body) :]
        return body
