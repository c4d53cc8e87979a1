"""The job state machine: what each message's outcome writes, as plain functions over data.

For every message a worker read, exactly one :class:`Decision` is made: its commit
ops (applied atomically with the message's ack, see ``commit.py``), the outcome
counted in metrics, and what to log. Nothing here talks to Valkey, so unit tests
drive every transition directly.

::

    admit ─┬─ malformed envelope ───────────────► dead_letter (failed)
           ├─ past its deadline ────────────────► expire
           ├─ delivered too often (crashes) ────► dead_letter (failed)
           └─ live ─► handler ─► settle ─┬─ JobEnded ─► skip (guard only)
                                         ├─ error ──► retry (backoff) or dead_letter
                                         ├─ split ──► split (parts at this stage)
                                         ├─ more route ─► forward (next stage)
                                         └─ last stage ─► finish (done)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from libs.common import jsontext
from libs.common.commit import (
    AppendEntry,
    Expire,
    Guard,
    Increment,
    Join,
    Op,
    RemoveScored,
    Schedule,
    SetFields,
)
from libs.common.constants import DEAD_LETTER_MAXLEN, DONE_TTL_S
from libs.common.envelope import Envelope, enqueue, stage_status
from libs.common.errors import DocuMindError, JobEnded, RetryableError, is_retryable
from libs.common.events import event_ops
from libs.common.keys import Lane, Partition, Stage
from libs.common.stage import FailureRule, Outcome, Output, failure_ops
from libs.common.status import JobStatus


@dataclass(slots=True)
class Message:
    """One stream entry as read: its envelope, or None when it could not be decoded."""

    id: str
    raw: bytes
    env: Envelope | None
    delivered: int = 1
    read_at: float = 0.0
    # The stream it was read from (the bulk lane reads one per tenant).
    stream: str = ""


def job_ids(messages: Sequence[Message]) -> str:
    """The jobs of a batch, for a log line ("job_id=a,b")."""
    return "job_id=" + ",".join(m.env.job_id if m.env else f"?({m.id})" for m in messages)


@dataclass(slots=True)
class StageContext:
    """The stage, lane and partition a worker serves, and the runtime's limits."""

    stage: Stage
    lane: Lane
    partition: Partition
    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 30.0
    job_ttl_s: int = 86400
    events_ttl_s: int = 3600
    rule: FailureRule | None = None

    @property
    def stream(self) -> str:
        return self.partition.stream(self.stage, self.lane)

    def delayed_of(self, env: Envelope) -> str:
        """Where a retry of ``env`` waits out its backoff (on the bulk lane, its tenant's)."""
        return self.partition.delayed(self.stage, self.lane, env.tenant)


@dataclass(slots=True)
class Decision:
    """A message's commit ops, the outcome to count, and a log line (level, message)."""

    ops: list[Op]
    outcome: str
    log: tuple[int, str] | None = None
    # Set when the message goes to the dead letters (a metric of its own).
    dead_lettered: bool = False


@dataclass(slots=True)
class Settled:
    """Context for one outcome: handling time, when it happened, the span's trace context."""

    elapsed: float
    now: float
    traceparent: str | None = None
    jitter: Callable[[], float] = field(default=lambda: random.uniform(0.8, 1.2))


def admit(ctx: StageContext, m: Message, now: float) -> Decision | None:
    """A decision made before the handler runs, or None for a live message."""
    if m.env is None:
        return dead_letter(ctx, m, "malformed job envelope", now=now)
    if m.env.partition != ctx.partition:
        # Its job's keys live in another slot: only the dead letter can be written here.
        reason = f"job {m.env.job_id} belongs to partition {m.env.partition.index}, not {ctx.partition.index}"
        return dead_letter(ctx, m, reason, now=now, job_keys=False)
    if m.env.deadline < now:
        return expire(ctx, m, now)
    if m.delivered > ctx.max_attempts:
        reason = (
            f"{ctx.stage}: delivered {m.delivered - 1} times without completing "
            "(the worker crashed or timed out)"
        )
        return dead_letter(ctx, m, reason, now=now)
    return None


def timings_after(ctx: StageContext, m: Message, elapsed: float) -> dict[str, float]:
    """The job's timings with this stage's handling and queue wait added."""
    assert m.env is not None
    timings = dict(m.env.timings)
    timings[ctx.stage] = round(timings.get(ctx.stage, 0.0) + elapsed, 6)
    timings[f"{ctx.stage}.wait"] = round(max(0.0, m.read_at - m.env.enqueued_at), 6)
    return timings


def settle(ctx: StageContext, m: Message, outcome: Outcome, at: Settled) -> Decision:
    """The decision for a handler's outcome."""
    env = m.env
    assert env is not None
    timings = timings_after(ctx, m, at.elapsed)
    if isinstance(outcome, JobEnded):
        # Cancelled or expired meanwhile: acknowledge; the guard reports it as skipped.
        return Decision([Guard(env.job_keys.hash)], "skipped")
    if isinstance(outcome, BaseException):
        return fail_or_retry(ctx, m, outcome, timings, at)
    out = outcome if isinstance(outcome, Output) else Output(outcome)
    if out.split:
        return split(ctx, m, out, timings, at.now)
    if env.route[1:]:
        return forward(ctx, m, out, timings, at)
    fields: dict[str, str | int] = {"result": jsontext.dumps(out.payload), "attempts": env.failures}
    return finish(
        ctx,
        m,
        JobStatus.DONE,
        timings,
        at.now,
        fields=fields,
        parts=out.parts,
        extra=[*out.ops],
        after=[*out.on_complete],
        result=out.payload,
        events=_event_ops(env, out.events),
        part=_event_ops(env, out.part_events),
    )


def _event_ops(env: Envelope, items: Sequence[tuple[str, dict[str, Any]]]) -> list[Op]:
    return [op for kind, data in items for op in event_ops(env.job_keys, kind, data)]


def forward(ctx: StageContext, m: Message, out: Output, timings: dict[str, float], at: Settled) -> Decision:
    """Hand the output on to the next stage of the route."""
    env = m.env
    assert env is not None
    nxt = env.route[1:]
    forwarded = env.model_copy(
        update={
            "route": nxt,
            "step": env.step + 1,
            "attempt": 0,
            "timings": timings,
            "payload": out.payload,
            "enqueued_at": at.now,
            "traceparent": at.traceparent or env.traceparent,
        }
    )
    job_keys = env.job_keys
    job = job_keys.hash
    # Of a job split into parts, the last part forwarded moves the job's status on.
    join: list[Op] = [Join(job, f"parts:{ctx.stage}", out.parts)] if out.parts > 1 else []
    status = {
        "status": stage_status(env.kind, nxt[0], last=len(nxt) == 1),
        "stage": nxt[0],
        "timings": jsontext.dumps(timings),
        "updated_at": repr(at.now),
    }
    finished = stage_status(env.kind, ctx.stage, last=False)
    ops: list[Op] = [
        Guard(job),
        *enqueue(forwarded),
        Expire(job, ctx.job_ttl_s),
        *out.ops,
        *_event_ops(env, out.part_events),
        *join,
        SetFields(job, status),
        *event_ops(job_keys, finished, {"stage": ctx.stage, **out.event}),
        *_event_ops(env, out.events),
    ]
    return Decision(ops, "forwarded")


def split(ctx: StageContext, m: Message, out: Output, timings: dict[str, float], now: float) -> Decision:
    """Continue the job at this stage as several bounded messages."""
    env = m.env
    assert env is not None
    job = env.job_keys.hash
    parts = [
        env.model_copy(update={"attempt": 0, "timings": timings, "payload": p, "enqueued_at": now})
        for p in out.split
    ]
    status = {
        "status": stage_status(env.kind, ctx.stage, last=len(env.route) == 1),
        "stage": ctx.stage,
        "timings": jsontext.dumps(timings),
        "updated_at": repr(now),
    }
    ops: list[Op] = [
        Guard(job),
        *[op for p in parts for op in enqueue(p)],
        SetFields(job, status),
        Expire(job, ctx.job_ttl_s),
        *out.ops,
        *_event_ops(env, out.part_events),
    ]
    return Decision(ops, "split")


def fail_or_retry(
    ctx: StageContext, m: Message, exc: BaseException, timings: dict[str, float], at: Settled
) -> Decision:
    """Retry with backoff while attempts remain and the error allows it; else dead-letter."""
    env = m.env
    assert env is not None
    reason = exc.message if isinstance(exc, DocuMindError) else f"{type(exc).__name__}: {exc}"
    attempts = env.attempt + 1
    job = env.job_keys.hash
    if is_retryable(exc) and attempts < ctx.max_attempts:
        delay = exc.delay_s if isinstance(exc, RetryableError) and exc.delay_s is not None else None
        if delay is None:
            base = min(ctx.retry_backoff_s * 2**env.attempt, ctx.retry_backoff_max_s)
            delay = base * at.jitter()
        retry = env.model_copy(
            update={
                "attempt": attempts,
                "failures": env.failures + 1,
                "timings": timings,
                "enqueued_at": at.now,
            }
        )
        event = {"stage": ctx.stage, "attempt": attempts, "error": reason, "delay_s": round(delay, 3)}
        ops: list[Op] = [
            Guard(job),
            Schedule(ctx.delayed_of(env), at.now + delay, retry.dumps()),
            Increment(job, "attempts"),
            SetFields(job, {"last_error": reason, "updated_at": repr(at.now)}),
            Expire(job, ctx.job_ttl_s),
            *event_ops(env.job_keys, "retrying", event),
        ]
        log = (logging.WARNING, f"attempt {attempts} failed, retrying in {delay:.2f}s: {reason}")
        return Decision(ops, "retried", log)
    if is_retryable(exc):
        reason = f"{ctx.stage} failed after {attempts} attempts: {reason}"
    else:
        reason = f"{ctx.stage}: {reason}"
    return dead_letter(ctx, m, reason, now=at.now, attempts=attempts, timings=timings)


def dead_letter(
    ctx: StageContext,
    m: Message,
    reason: str,
    *,
    now: float,
    attempts: int | None = None,
    timings: dict[str, float] | None = None,
    job_keys: bool = True,
) -> Decision:
    """Move the message to the partition's dead letters; its job fails with the reason
    (unless ``job_keys`` is false: a message whose job lives in another partition)."""
    dead = AppendEntry(
        ctx.partition.dead_letters(),
        {
            "job_id": m.env.job_id if m.env else "",
            "stage": ctx.stage,
            "reason": reason,
            "attempts": attempts if attempts is not None else m.delivered,
            "data": m.raw.decode(errors="replace"),
        },
        maxlen=DEAD_LETTER_MAXLEN,
    )
    log = (logging.ERROR, f"dead-lettered: {reason}")
    if m.env is None or not job_keys:
        return Decision([dead], "failed", log, dead_lettered=True)
    fields: dict[str, str | int] = {"error": reason, "attempts": m.env.failures + 1}
    done = finish(ctx, m, JobStatus.FAILED, timings or m.env.timings, now, fields=fields, extra=[dead])
    return Decision(done.ops, "failed", log, dead_lettered=True)


def expire(ctx: StageContext, m: Message, now: float) -> Decision:
    """The job's deadline passed before this stage could start it."""
    assert m.env is not None
    reason = f"deadline passed {now - m.env.deadline:.1f}s before {ctx.stage} could start"
    fields: dict[str, str | int] = {"error": reason, "attempts": m.env.failures}
    done = finish(ctx, m, JobStatus.EXPIRED, m.env.timings, now, fields=fields)
    return Decision(done.ops, "expired", (logging.WARNING, f"expired: {reason}"))


def finish(
    ctx: StageContext,
    m: Message,
    status: JobStatus,
    timings: dict[str, float],
    now: float,
    *,
    fields: dict[str, str | int],
    extra: list[Op] | None = None,
    parts: int = 1,
    after: list[Op] | None = None,
    result: dict[str, Any] | None = None,
    events: list[Op] | None = None,
    part: list[Op] | None = None,
) -> Decision:
    """Write a final status and notify waiters on the job's done stream.

    Of a job in ``parts`` parts only the last part's commit goes on to ``extra``,
    the final status and ``after``; the others are only counted (and write ``part``,
    their own events, as the last one does).
    """
    env = m.env
    assert env is not None
    job = env.job_keys
    error = str(fields.get("error", status))
    if status != JobStatus.DONE:
        extra = [*(extra or []), *failure_ops(ctx.rule, env, error, now)]
    final: dict[str, str | int] = {
        "status": status,
        "stage": "",
        "timings": jsontext.dumps(timings),
        "updated_at": repr(now),
        **fields,
    }
    if result is not None:
        event = event_ops(env.job_keys, "done", result, ctx.events_ttl_s)
    else:
        event = event_ops(env.job_keys, "error", {"status": status, "error": error}, ctx.events_ttl_s)
    ops: list[Op] = [
        Guard(job.hash),
        *(part or []),
        *([Join(job.hash, "parts:done", parts)] if parts > 1 else []),
        *(extra or []),
        SetFields(job.hash, final),
        Expire(job.hash, ctx.job_ttl_s),
        # Waiters get the final fields with the notification: no extra read.
        AppendEntry(job.done, final),
        Expire(job.done, DONE_TTL_S),
        # No longer in flight: it stops counting against its tenant's limit.
        RemoveScored(env.partition.inflight(env.tenant), job.hash),
        RemoveScored(env.partition.interactive_inflight(env.tenant), job.hash),
        *(events or []),
        *event,
        *(after or []),
    ]
    return Decision(ops, status.value)
