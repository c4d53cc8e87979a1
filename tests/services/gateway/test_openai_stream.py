"""A job's events as OpenAI chat.completion.chunk frames."""

from __future__ import annotations

import json
from typing import Any

from libs.common.events import Event
from services.gateway.openai_stream import ChunkStream

CITATION = {"n": 1, "document_id": "d1", "filename": "ferry.txt", "page": 1, "snippet": "s", "score": 0.9}


def ev(type_: str, **data: Any) -> Event:
    return Event("1-0", type_, data)


def done(answer: str, **extra: Any) -> Event:
    return ev("done", answer=answer, citations=[CITATION], mode="extractive", **extra)


def run(events: list[Event], **kwargs: Any) -> tuple[list[dict[str, Any] | str], ChunkStream]:
    """Every frame the events give, decoded; ``[DONE]`` stays a string."""
    stream = ChunkStream(job_id="j1", model="town", created=100, **kwargs)
    frames = [stream.start()]
    for event in events:
        frames.extend(stream.feed(event))
    decoded: list[dict[str, Any] | str] = []
    for f in frames:
        assert f.startswith("data: ") and f.endswith("\n\n"), f
        body = f.removeprefix("data: ").removesuffix("\n\n")
        decoded.append(body if body == "[DONE]" else json.loads(body))
    return decoded, stream


def content(frames: list[dict[str, Any] | str]) -> str:
    return "".join(
        f["choices"][0]["delta"].get("content") or ""
        for f in frames
        if isinstance(f, dict) and f.get("choices")
    )


def test_tokens_become_chunks_and_the_last_one_carries_the_citations() -> None:
    frames, stream = run(
        [
            ev("queued"),
            ev("embedding", stage="embedder"),
            ev("retrieving", stage="retriever", hits=3),
            ev("generating", stage="generator"),
            ev("token", text="The ferry "),
            ev("token", text="leaves at 7:15 [1]."),
            done("The ferry leaves at 7:15 [1]."),
        ]
    )
    first, *middle, final, end = frames
    assert isinstance(first, dict) and first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["object"] == "chat.completion.chunk" and first["id"] == "chatcmpl-j1"
    assert first["model"] == "town" and first["created"] == 100
    # The job's id from the first chunk on (Stop can cancel it at once).
    assert first["documind"] == {"job_id": "j1"}
    assert [m["choices"][0]["delta"] for m in middle if isinstance(m, dict)] == [
        {"content": "The ferry "},
        {"content": "leaves at 7:15 [1]."},
    ]
    assert isinstance(final, dict)
    assert final["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert final["documind"] == {
        "job_id": "j1",
        "mode": "extractive",
        "abstained": False,
        "answerable": True,
        "citations": [CITATION],
    }
    assert end == "[DONE]"
    assert content(frames) == "The ferry leaves at 7:15 [1]."
    assert stream.ended


def test_a_retried_answer_is_not_sent_twice() -> None:
    frames, _ = run(
        [
            ev("generating"),
            ev("token", text="The ferry "),
            ev("token", text="leaves"),
            ev("retrying", stage="generator", attempt=1, error="LLM stream broke off"),
            ev("generating"),
            ev("token", text="The "),
            ev("token", text="ferry leaves at "),
            ev("token", text="7:15 [1]."),
            done("The ferry leaves at 7:15 [1]."),
        ]
    )
    deltas = [f["choices"][0]["delta"].get("content") for f in frames[1:-2] if isinstance(f, dict)]
    # The retried attempt's first pieces repeat what the client has: skipped.
    assert deltas == ["The ferry ", "leaves", " at ", "7:15 [1]."]
    assert content(frames) == "The ferry leaves at 7:15 [1]."
    final = frames[-2]
    assert isinstance(final, dict) and "answer" not in final["documind"]


def test_an_answer_without_tokens_arrives_whole_before_the_last_chunk() -> None:
    frames, _ = run([ev("retrieving", hits=0), done("I could not find anything relevant.")])
    assert content(frames) == "I could not find anything relevant."
    remainder = frames[1]
    assert isinstance(remainder, dict) and remainder["choices"][0]["finish_reason"] is None
    assert frames[-1] == "[DONE]"


def test_the_rest_of_a_partly_streamed_answer_is_sent_before_the_end() -> None:
    frames, _ = run([ev("token", text="The ferry "), done("The ferry leaves at 7:15 [1].")])
    assert content(frames) == "The ferry leaves at 7:15 [1]."


def test_a_retry_that_begins_differently_stops_the_content_and_hands_over_the_answer() -> None:
    frames, stream = run(
        [
            ev("token", text="The ferry leaves"),
            ev("retrying", stage="generator"),
            ev("token", text="Ferries leave at 7:15 [1]."),
            done("Ferries leave at 7:15 [1]."),
        ]
    )
    assert content(frames) == "The ferry leaves"
    final = frames[-2]
    assert isinstance(final, dict) and final["documind"]["answer"] == "Ferries leave at 7:15 [1]."
    assert stream.diverged


def test_errors_end_the_stream_with_an_openai_error() -> None:
    frames, stream = run(
        [ev("token", text="Partial"), ev("error", status="failed", error="generator: LLM down")]
    )
    last = frames[-1]
    assert isinstance(last, dict)
    assert last["error"]["code"] == "job_failed" and "LLM down" in last["error"]["message"]
    assert "[DONE]" not in frames and stream.ended
    assert stream.feed(done("late")) == []

    frames, _ = run([ev("cancelled", status="cancelled", error="cancelled by the client")])
    last = frames[-1]
    assert isinstance(last, dict) and last["error"]["code"] == "job_cancelled"

    frames, _ = run([ev("error", status="expired", error="deadline passed")])
    last = frames[-1]
    assert isinstance(last, dict) and last["error"]["code"] == "job_expired"


def test_usage_comes_last_when_asked_for() -> None:
    frames, _ = run([done("12345678")], include_usage=True, prompt_tokens=5)
    usage = frames[-2]
    assert isinstance(usage, dict) and usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_the_standalone_question_rides_in_the_documind_field() -> None:
    frames, _ = run([done("At 7:15 [1].", standalone_question="ferry: when does it leave?")])
    final = frames[-2]
    assert isinstance(final, dict)
    assert final["documind"]["standalone_question"] == "ferry: when does it leave?"


def test_the_abstained_flag_rides_in_the_documind_field() -> None:
    no = ev("done", answer="Nothing relevant.", citations=[], mode="extractive", abstained=True)
    frames, _ = run([no])
    final = frames[-2]
    assert isinstance(final, dict) and final["documind"]["abstained"] is True
    # A result cached before the flag existed: one citing nothing abstained.
    old = ev("done", answer="Nothing relevant.", citations=[], mode="extractive")
    frames, _ = run([old])
    final = frames[-2]
    assert isinstance(final, dict) and final["documind"]["abstained"] is True


def test_answerable_rides_next_to_abstained() -> None:
    no = ev(
        "done", answer="I could not find it.", citations=[], mode="llm:m", abstained=True, answerable=False
    )
    yes = ev("done", answer="Blue [1].", citations=[CITATION], mode="llm:m", abstained=False, answerable=True)
    for event, answerable in ((no, False), (yes, True)):
        frames, _ = run([event])
        final = frames[-2]
        assert isinstance(final, dict)
        assert final["documind"]["answerable"] is answerable
        assert final["documind"]["abstained"] is (not answerable)
