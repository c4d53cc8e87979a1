"""A job's events as an OpenAI ``chat.completion.chunk`` stream.

:class:`ChunkStream` turns the events of a chat job (see ``libs.common.events``) into
Server-Sent Events frames, OpenAI's way:

- first a chunk whose delta has ``role: "assistant"`` (and empty content), with
  ``documind: {"job_id"}``: the job can be cancelled from the first chunk on (the
  response's ``X-DocuMind-Job-Id`` header says it too);
- one chunk per ``token`` event, its text as ``delta.content``;
- on ``done``: whatever of the answer the client does not have yet (an answer that
  streamed no tokens arrives whole here), then a chunk with ``finish_reason: "stop"``
  and the ``documind`` field (job id, mode, abstained, answerable, citations), a usage chunk when
  asked for, and ``data: [DONE]``;
- on ``error`` or ``cancelled``: one ``{"error": {...}}`` frame, and the stream ends
  (the ``openai`` client raises ``APIError``).

Retries: a ``retrying`` (or a new ``generating``) event means the next tokens start the
answer over from its beginning. The client never gets text twice: new text is
skipped up to the length already sent, and only what goes beyond it is sent. The
retried attempt is expected to begin as the first did (extractive answers and
temperature-0 LLMs repeat themselves); when it begins differently, nothing more is
streamed (the sent text cannot be taken back) and the final chunk's
``documind.answer`` holds the answer as stored. In every other case the streamed
content equals the final answer.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from libs.common import events
from libs.common.errors import job_unanswered
from libs.common.events import Event
from libs.common.status import JobStatus
from services.gateway.openai_errors import openai_body

# The response header naming the job that answers a completion (streamed or not).
JOB_ID_HEADER: Final = "X-DocuMind-Job-Id"


def estimate_tokens(text: str) -> int:
    """About four characters a token: usage figures are estimates."""
    return math.ceil(len(text) / 4)


def frame(data: dict[str, Any] | str) -> str:
    """One SSE frame; ``data`` as JSON (or ``[DONE]`` as is)."""
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {body}\n\n"


def documind_extra(job_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """The ``documind`` field from a job's result."""
    citations = result.get("citations") or []
    # A result cached before answers said it: one citing nothing abstained.
    abstained = bool(result.get("abstained", not citations))
    extra: dict[str, Any] = {
        "job_id": job_id,
        "mode": result.get("mode", ""),
        "abstained": abstained,
        "answerable": not abstained,
        "citations": citations,
    }
    if result.get("standalone_question"):
        extra["standalone_question"] = result["standalone_question"]
    return extra


class ChunkStream:
    """The frames of one streamed completion, fed with the job's events in order."""

    def __init__(
        self,
        *,
        job_id: str,
        model: str,
        created: int,
        prompt_tokens: int = 0,
        include_usage: bool = False,
    ) -> None:
        self.job_id = job_id
        self.id = f"chatcmpl-{job_id}"
        self.model = model
        self.created = created
        self.prompt_tokens = prompt_tokens
        self.include_usage = include_usage
        # The content the client has, and the text of the answer attempt under way.
        self.sent = ""
        self.attempt = ""
        # A retried attempt began differently from what was sent: stream no more of it.
        self.diverged = False
        self.ended = False

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return frame(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
                **extra,
            }
        )

    def start(self) -> str:
        """The first frame: the assistant's role, and the job's id."""
        return self._chunk({"role": "assistant", "content": ""}, documind={"job_id": self.job_id})

    def feed(self, event: Event) -> list[str]:
        """The frames ``event`` gives (none for stage changes)."""
        if self.ended:
            return []
        if event.type in ("retrying", "generating"):
            # The next tokens begin the answer again.
            self.attempt = ""
            return []
        if event.type == "token":
            self.attempt += str(event.data.get("text", ""))
            return self._catch_up(self.attempt)
        if event.type == events.DONE:
            return self._done(event.data)
        if event.type in (events.ERROR, events.CANCELLED):
            ended = JobStatus.CANCELLED if event.type == events.CANCELLED else JobStatus.FAILED
            status = str(event.data.get("status") or ended)
            return self.fail(openai_body(job_unanswered(status, str(event.data.get("error") or status))))
        return []

    def fail(self, body: dict[str, Any]) -> list[str]:
        """An error frame that ends the stream."""
        self.ended = True
        return [frame(body)]

    def _catch_up(self, text: str) -> list[str]:
        """A chunk with what ``text`` (an answer so far) has beyond what was sent."""
        if self.diverged:
            return []
        if len(text) <= len(self.sent):
            self.diverged = not self.sent.startswith(text)
            return []
        if not text.startswith(self.sent):
            self.diverged = True
            return []
        new = text[len(self.sent) :]
        self.sent = text
        return [self._chunk({"content": new})]

    def _done(self, result: dict[str, Any]) -> list[str]:
        self.ended = True
        answer = str(result.get("answer", ""))
        frames = self._catch_up(answer)
        extra = documind_extra(self.job_id, result)
        if self.sent != answer:
            extra["answer"] = answer
        frames.append(self._chunk({}, "stop", documind=extra))
        if self.include_usage:
            completion = estimate_tokens(answer)
            usage = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion,
            }
            frames.append(
                frame(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        frames.append(frame("[DONE]"))
        return frames
