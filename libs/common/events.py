"""A job's events: one capped stream per job, written by every stage, read as SSE.

Event types, in the order a chat job writes them:

- ``queued``: the job was accepted (written with it, atomically).
- ``condensing`` (a chat with earlier turns): the generator rewrote the question as a
  standalone one (``standalone_question``), the one retrieved and answered.
- ``embedding``, ``indexing``, ``retrieving`` (with ``hits``), ``deleting``: a
  stage finished its part of the job; ``retrying`` when a stage will try again
  (a client discards any partial answer it has: the tokens start over).
- ``generating``: the generator started the answer; then ``token`` events, each
  with the next piece of the answer text.
- one final event: ``done`` (the result: answer, citations, mode, abstained, answerable), ``error``
  (status failed or expired, and the reason) or ``cancelled``.

An upload's (ingest) job says how its document moves on, each event with the
``document_id``:

- ``queued``; ``parsing`` (``filename``): the embedder started parsing the upload;
- ``parsed`` (``pages``, ``chunks_total``, ``parts``): its text is cut into chunks, to be
  embedded in ``parts`` parts;
- ``embedded`` (``part``, ``parts``, ``chunks_embedded``, ``chunks_total``): one per part
  as it is embedded (at most ``PROGRESS_EVENTS_MAX`` per job: past that, every k-th).
  Parts may be embedded at once on several replicas: ``chunks_embedded`` counts the
  document's embedded chunks when the part was, so take the largest seen;
- ``embedding`` (the stage event: the embedder handed the last part on), then
  ``indexing`` (``chunks_embedded`` = ``chunks_total``): every chunk is embedded; the
  retriever makes the document searchable;
- ``done`` (``pages``, ``chunks``; ``deleted`` when the document went meanwhile) or
  ``error`` with the reason; ``retrying`` may come between any two (a parse retried
  says ``parsing`` again).

Each entry holds ``type`` and ``data`` (a JSON object); its stream id is the
event's id, so a reader resumes after the last id it saw.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis

from libs.common import jsontext, keys
from libs.common.commit import AppendEvent, Expire, Op
from libs.common.constants import EVENT_DATA_FIELD, EVENT_TYPE_FIELD, EVENTS_MAXLEN
from libs.common.decode import as_text
from libs.common.keys import JobKeys
from libs.common.watch import Watcher

# Event types that Lua scripts write too (lua.PRELUDE spells them from here).
QUEUED: Final = "queued"
DONE: Final = "done"
ERROR: Final = "error"
CANCELLED: Final = "cancelled"
TERMINAL: Final = frozenset({DONE, ERROR, CANCELLED})
# An upload's progress (see above).
PARSING: Final = "parsing"
PARSED: Final = "parsed"
EMBEDDED: Final = "embedded"
INDEXING: Final = "indexing"


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL


def event_ops(job: JobKeys, event: str, data: dict[str, Any], ttl_s: int | None = None) -> list[Op]:
    """Commit ops appending one event to a job's stream.

    ``ttl_s`` is given with a job's final event. Events before it need none: the
    stream's TTL, set when the job was queued, outlasts the job's deadline.
    """
    key = job.events
    append = AppendEvent(key, event, data)
    return [append] if ttl_s is None else [append, Expire(key, ttl_s)]


def queued_ttl_s(events_ttl_s: int, timeout_s: float) -> int:
    """The TTL of a job's events stream when the job is queued: past its deadline."""
    return events_ttl_s + int(timeout_s) + 1


async def append(
    r: aioredis.Redis, job_id: str, items: Sequence[tuple[str, dict[str, Any]]], ttl_s: int
) -> None:
    """Append events now, in order, in one round trip (outside a commit: answer tokens)."""
    key = keys.job(job_id).events
    async with r.pipeline(transaction=False) as pipe:
        for event, data in items:
            fields: dict[Any, Any] = {EVENT_TYPE_FIELD: event, EVENT_DATA_FIELD: jsontext.dumps(data)}
            pipe.xadd(key, fields, maxlen=EVENTS_MAXLEN, approximate=True)
        pipe.expire(key, ttl_s)
        await pipe.execute()


def _decode(entry_id: bytes | str, fields: dict[Any, Any]) -> Event:
    f = {as_text(k): as_text(v) for k, v in fields.items()}
    return Event(as_text(entry_id), f.get(EVENT_TYPE_FIELD, ""), json.loads(f.get(EVENT_DATA_FIELD) or "{}"))


async def read(
    source: Watcher, job_id: str, after: str = "0-0", *, block_ms: int = 15_000
) -> AsyncGenerator[Event | None, None]:
    """The job's events after ``after``, as they come, up to its final event.

    Yields None whenever ``block_ms`` passes without a new event (time for a
    keep-alive, or for the caller to check the job). The events come through a watch
    of ``source`` (the gateway's :class:`~libs.common.fanout.Fanout`), which ends
    when the iteration does: close the iterator (``contextlib.aclosing``) when
    leaving it early.
    """
    async with source.watch(keys.job(job_id).events, after) as watch:
        while True:
            entries = await watch.next(block_ms / 1000)
            if not entries:
                yield None
                continue
            for entry_id, fields in entries:
                event = _decode(entry_id, fields)
                yield event
                if event.terminal:
                    return


async def history(r: aioredis.Redis, job_id: str, after: str = "0-0") -> list[Event]:
    """The events the job's stream still holds after ``after``."""
    entries: Any = await r.xrange(keys.job(job_id).events, min=f"({after}")
    return [_decode(i, f) for i, f in entries]
