"""The job state machine, driven without Valkey: one decision per message."""

from __future__ import annotations

import json
import logging

from libs.common import keys
from libs.common.commit import (
    AddMember,
    AppendEntry,
    AppendEvent,
    Delete,
    Enqueue,
    Guard,
    Increment,
    Join,
    Op,
    RemoveScored,
    Schedule,
    SetFields,
    SetIfExists,
)
from libs.common.envelope import Envelope
from libs.common.errors import JobEnded, PermanentError, RetryableError
from libs.common.jobflow import Message, Settled, StageContext, admit, settle
from libs.common.keys import Partition
from libs.common.stage import Output

P = Partition(2)
NOW = 1_000_000.0


class IngestRule:
    def on_failure(self, env: Envelope, error: str, now: float) -> list[Op]:
        from libs.common.document_ops import ingest_failed

        return ingest_failed(env, error, now)


def ctx(stage: str = "embedder", lane: str = "interactive", **kw: object) -> StageContext:
    return StageContext(stage=stage, lane=lane, partition=P, **kw)  # type: ignore[arg-type]


def message(kind: str = "chat", *, delivered: int = 1, **update: object) -> Message:
    env = Envelope.new(kind, "docs", {"question": "q"}, 60, partition=P, now=NOW - 1)  # type: ignore[arg-type]
    env = env.model_copy(update=update)
    return Message("1-0", env.dumps().encode(), env, delivered, NOW)


def at(**kw: object) -> Settled:
    return Settled(elapsed=0.25, now=NOW, jitter=lambda: 1.0, **kw)  # type: ignore[arg-type]


def of(ops: list[Op], kind: type) -> list[object]:
    return [op for op in ops if isinstance(op, kind)]


def final_fields(ops: list[Op], job_hash: str) -> dict[str, object]:
    [final] = [op for op in of(ops, SetFields) if op.key == job_hash and "status" in op.fields]  # type: ignore[attr-defined]
    return dict(final.fields)  # type: ignore[attr-defined]


def test_a_live_message_is_admitted_and_others_are_decided_before_the_handler() -> None:
    assert admit(ctx(), message(), NOW) is None
    malformed = Message("1-0", b"{not json", None)
    decision = admit(ctx(), malformed, NOW)
    assert decision is not None and decision.outcome == "failed" and decision.dead_lettered
    [dead] = decision.ops
    assert isinstance(dead, AppendEntry) and dead.key == P.dead_letters()
    assert dead.fields["reason"] == "malformed job envelope"


def test_a_message_past_its_deadline_expires_its_job() -> None:
    m = message(deadline=NOW - 3)
    decision = admit(ctx(), m, NOW)
    assert decision is not None and decision.outcome == "expired"
    assert m.env is not None
    job = m.env.job_keys
    assert decision.ops[0] == Guard(job.hash)
    fields = final_fields(decision.ops, job.hash)
    assert fields["status"] == "expired" and "deadline passed 3.0s before embedder" in str(fields["error"])
    assert AppendEntry(job.done, fields) in decision.ops
    [event] = of(decision.ops, AppendEvent)
    assert event.type == "error" and event.data["status"] == "expired"  # type: ignore[attr-defined]


def test_every_final_status_frees_the_tenants_in_flight_slot() -> None:
    m = message(tenant="acme")
    assert m.env is not None
    freed = RemoveScored(P.inflight("acme"), m.env.job_keys.hash)
    last = message(tenant="acme", route=["generator"], job_id=m.env.job_id)
    done = settle(ctx("generator"), last, {}, at())
    expired = admit(ctx(), message(tenant="acme", deadline=NOW - 3, job_id=m.env.job_id), NOW)
    failed = settle(ctx(), m, PermanentError("unreadable"), at())
    for decision in (done, expired, failed):
        assert decision is not None and freed in decision.ops, decision
    # A job moving on to its next stage is still in flight.
    forwarded = settle(ctx(), m, {}, at())
    assert not of(forwarded.ops, RemoveScored)


def test_a_message_delivered_too_often_is_dead_lettered() -> None:
    decision = admit(ctx(max_attempts=3), message(delivered=4), NOW)
    assert decision is not None and decision.dead_lettered and decision.outcome == "failed"
    assert "delivered 3 times without completing" in decision.log[1]  # type: ignore[index]


def test_a_forwarded_job_goes_to_the_next_stage_of_its_partition() -> None:
    m = message()
    decision = settle(ctx(), m, Output({"vector": "v"}, event={"n": 1}), at(traceparent="tp"))
    assert decision.outcome == "forwarded"
    [enqueue] = of(decision.ops, Enqueue)
    assert enqueue.stream == P.stream("retriever", "interactive")  # type: ignore[attr-defined]
    forwarded = Envelope.loads(enqueue.envelope)  # type: ignore[attr-defined]
    assert forwarded.route == ["retriever", "generator"] and forwarded.step == 1
    assert forwarded.payload == {"vector": "v"} and forwarded.traceparent == "tp"
    assert forwarded.timings["embedder"] == 0.25
    assert m.env is not None
    status = final_fields(decision.ops, m.env.job_keys.hash)
    assert status["status"] == "retrieving" and status["stage"] == "retriever"
    [event] = of(decision.ops, AppendEvent)
    assert event.type == "embedding" and event.data == {"stage": "embedder", "n": 1}  # type: ignore[attr-defined]


def test_the_last_stage_finishes_the_job_and_completion_ops_come_last() -> None:
    m = message(route=["generator"])
    cache = AddMember(P.key("x"), "1")
    decision = settle(ctx("generator"), m, Output({"answer": "a"}, on_complete=[cache]), at())
    assert decision.outcome == "done"
    assert m.env is not None
    fields = final_fields(decision.ops, m.env.job_keys.hash)
    assert fields["status"] == "done" and json.loads(str(fields["result"])) == {"answer": "a"}
    assert decision.ops[-1] == cache
    [event] = of(decision.ops, AppendEvent)
    assert event.type == "done"  # type: ignore[attr-defined]


def test_a_job_in_parts_completes_only_with_its_last_part() -> None:
    m = message("ingest", route=["retriever"], payload={"document_id": "d1"})
    decision = settle(ctx("retriever", "bulk"), m, Output({"ok": 1}, parts=3), at())
    assert m.env is not None
    job = m.env.job_keys.hash
    assert decision.ops[:2] == [Guard(job), Join(job, "parts:done", 3)]


def test_a_split_continues_at_this_stage_as_bounded_parts() -> None:
    m = message("ingest", payload={"document_id": "d1"})
    parts = [{"part": n} for n in range(3)]
    blob = Delete(keys.document("d1").blob)
    decision = settle(ctx("embedder", "bulk"), m, Output({}, split=parts, ops=[blob]), at())
    assert decision.outcome == "split"
    queued = of(decision.ops, Enqueue)
    assert [Envelope.loads(q.envelope).payload for q in queued] == parts  # type: ignore[attr-defined]
    assert {q.stream for q in queued} == {P.stream("embedder", "bulk")}  # type: ignore[attr-defined]
    assert decision.ops[-1] == blob


def test_a_parts_own_events_come_before_the_join_and_the_jobs_after_its_stage_event() -> None:
    m = message("ingest", route=["embedder", "retriever"], payload={"document_id": "d1"})
    out = Output(
        {"part": 1},
        parts=3,
        part_events=[("embedded", {"part": 1})],
        events=[("indexing", {"document_id": "d1"})],
    )
    decision = settle(ctx("embedder", "bulk"), m, out, at())
    assert m.env is not None
    job = m.env.job_keys
    ops = decision.ops
    join = next(k for k, op in enumerate(ops) if isinstance(op, Join))
    events = [(k, op.type) for k, op in enumerate(ops) if isinstance(op, AppendEvent)]
    # Every part writes its own event; only the last part joined writes the stage's and the job's.
    assert [t for _, t in events] == ["embedded", "embedding", "indexing"]
    assert events[0][0] < join < events[1][0]
    assert AppendEvent(job.events, "embedded", {"part": 1}) in ops


def test_the_last_stage_and_a_split_write_a_parts_own_events_too() -> None:
    m = message("ingest", route=["retriever"], payload={"document_id": "d1"})
    done = settle(ctx("retriever", "bulk"), m, Output({}, parts=2, part_events=[("noted", {})]), at())
    assert m.env is not None
    job = m.env.job_keys.hash
    assert done.ops[:2] == [Guard(job), AppendEvent(m.env.job_keys.events, "noted", {})]
    assert done.ops[2] == Join(job, "parts:done", 2)
    split = settle(ctx(), message("ingest"), Output({}, split=[{}], part_events=[("noted", {})]), at())
    assert [e.type for e in of(split.ops, AppendEvent)] == ["noted"]  # type: ignore[attr-defined]


def test_a_retryable_error_schedules_a_retry_with_backoff() -> None:
    m = message()
    decision = settle(ctx(retry_backoff_s=0.5), m, RetryableError("busy"), at())
    assert decision.outcome == "retried"
    [scheduled] = of(decision.ops, Schedule)
    assert scheduled.key == P.delayed("embedder", "interactive") and scheduled.due == NOW + 0.5  # type: ignore[attr-defined]
    retry = Envelope.loads(scheduled.envelope)  # type: ignore[attr-defined]
    assert (retry.attempt, retry.failures) == (1, 1)
    assert m.env is not None
    assert Increment(m.env.job_keys.hash, "attempts") in decision.ops
    [event] = of(decision.ops, AppendEvent)
    assert event.type == "retrying" and event.data["delay_s"] == 0.5  # type: ignore[attr-defined]
    assert decision.log is not None and decision.log[0] == logging.WARNING
    # A delay the error asks for wins over the backoff.
    asked = settle(ctx(), m, RetryableError("later", delay_s=7.0), at())
    [later] = of(asked.ops, Schedule)
    assert later.due == NOW + 7.0  # type: ignore[attr-defined]


def test_retries_end_in_the_dead_letters_and_a_permanent_error_goes_at_once() -> None:
    last = settle(ctx(max_attempts=2), message(attempt=1), ValueError("boom"), at())
    assert last.dead_lettered and last.outcome == "failed"
    [dead] = of(last.ops, AppendEntry)[:1]
    assert dead.fields["reason"] == "embedder failed after 2 attempts: ValueError: boom"  # type: ignore[attr-defined]
    permanent = settle(ctx(), message(), PermanentError("bad input"), at())
    assert permanent.dead_lettered and not of(permanent.ops, Schedule)
    fields = [op for op in of(permanent.ops, SetFields) if "error" in op.fields]  # type: ignore[attr-defined]
    assert fields[0].fields["error"] == "embedder: bad input"  # type: ignore[attr-defined]


def test_a_failed_ingest_fails_its_document_by_the_stages_rule() -> None:
    m = message("ingest", payload={"document_id": "d1"}, route=["embedder", "retriever"])
    decision = settle(ctx("embedder", "bulk", rule=IngestRule()), m, PermanentError("no text"), at())
    doc = keys.document("d1")
    [failed] = of(decision.ops, SetIfExists)
    assert failed.key == doc.hash and failed.fields["status"] == "failed"  # type: ignore[attr-defined]
    assert failed.fields["error"] == "embedder: no text"  # type: ignore[attr-defined]
    assert Delete(doc.blob) in decision.ops
    # Without the rule (or for another kind) the runtime writes nothing about documents.
    plain = settle(ctx("embedder", "bulk"), m, PermanentError("no text"), at())
    assert not of(plain.ops, SetIfExists)


def test_a_job_that_ended_meanwhile_is_only_guarded() -> None:
    m = message()
    decision = settle(ctx(), m, JobEnded("cancelled"), at())
    assert m.env is not None
    assert decision.ops == [Guard(m.env.job_keys.hash)] and decision.outcome == "skipped"


def test_a_message_of_another_partition_is_dead_lettered_without_touching_its_job() -> None:
    env = Envelope.new("chat", "docs", {"question": "q"}, 60, partition=Partition(5), now=NOW - 1)
    m = Message("1-0", env.dumps().encode(), env, 1, NOW)
    decision = admit(ctx(), m, NOW)
    assert decision is not None and decision.dead_lettered
    [dead] = decision.ops
    assert isinstance(dead, AppendEntry) and dead.key == P.dead_letters()
    assert "belongs to partition 5, not 2" in str(dead.fields["reason"])
