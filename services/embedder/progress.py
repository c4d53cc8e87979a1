"""An upload's progress on its job's events: parsing, parsed, embedded (per part), indexing.

``parsing`` and ``parsed`` are written as they happen, all of a read's uploads in one
commit per partition (without an ack: the message itself goes on later, with its
stage's commit); ``parsed`` goes with the page and chunk counts on the document. The
``embedded`` event of a part and the ``indexing`` event ride on the part's own commit
(``Output.part_events``, ``Output.events``). None is written once the job is final.
The event types and their data are listed in ``libs.common.events``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common import keys
from libs.common.commit import AppendEvent, CommitBatch, Guard, IfExists, Op, SetIfExists
from libs.common.constants import EMBEDDED_PART_FIELD, PROGRESS_EVENTS_MAX
from libs.common.decode import as_text
from libs.common.envelope import Envelope
from libs.common.events import EMBEDDED, INDEXING, PARSED, PARSING
from libs.common.payloads import IngestPart, IngestUpload, view
from libs.common.scripts import Commit

Events = list[tuple[str, dict[str, Any]]]


def _event(env: Envelope, kind: str, data: dict[str, Any]) -> list[Op]:
    """One event on the job's stream, unless the job is final or its stream is gone
    (an event must never make a stream without its TTL)."""
    job = env.job_keys
    return [Guard(job.hash), IfExists(job.events), AppendEvent(job.events, kind, data)]


def parsing_ops(env: Envelope) -> list[Op]:
    upload = view(env, IngestUpload)
    return _event(env, PARSING, {"document_id": upload["document_id"], "filename": upload["filename"]})


def parsed_ops(env: Envelope, pages: int, chunks: int, part_chunks: int) -> list[Op]:
    """The counts on the document (it now shows "embedding" and progress), and the event."""
    document_id = view(env, IngestUpload)["document_id"]
    parts = -(-chunks // part_chunks)
    counts = {"pages": pages, "chunks": chunks, "parts": parts}
    return [
        SetIfExists(keys.document(document_id).hash, counts),
        *_event(
            env, PARSED, {"document_id": document_id, "pages": pages, "chunks_total": chunks, "parts": parts}
        ),
    ]


def reports(part: int, parts: int) -> bool:
    """Whether part ``part`` (from 0) of ``parts`` writes its ``embedded`` event: every
    part, or past ``PROGRESS_EVENTS_MAX`` parts every k-th and the last."""
    stride = math.ceil(parts / PROGRESS_EVENTS_MAX)
    return stride <= 1 or (part + 1) % stride == 0 or part == parts - 1


def embedded(p: IngestPart, chunks_embedded: int) -> Events:
    """The part's own event: its document's chunks embedded so far, of the total."""
    part, parts, total = p["part"], p["parts"], p["chunks_total"]
    if not reports(part, parts):
        return []
    data = {
        "document_id": p["document_id"],
        "part": part,
        "parts": parts,
        "chunks_embedded": min(max(chunks_embedded, len(p["chunks"])), total),
        "chunks_total": total,
    }
    return [(EMBEDDED, data)]


def indexing(p: IngestPart) -> Events:
    """Written by the last part handed on (the parts' join): every chunk is embedded."""
    total = p["chunks_total"]
    return [(INDEXING, {"document_id": p["document_id"], "chunks_embedded": total, "chunks_total": total})]


def embedded_count(fields: Mapping[Any, Any]) -> int:
    """Chunks embedded so far, from a document hash: its parts' counts summed."""
    total = 0
    for k, v in fields.items():
        value = as_text(v)
        if as_text(k).startswith(EMBEDDED_PART_FIELD) and value.isdigit():
            total += int(value)
    return total


class ProgressWriter:
    """Writes progress ops now, outside any message's commit."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._commit = Commit(client)

    async def write(self, items: Sequence[tuple[Envelope, list[Op]]]) -> None:
        """Each item's ops (one job's), in one commit per partition."""
        batches: dict[int, CommitBatch] = {}
        for env, ops in items:
            index = env.partition.index
            if index not in batches:
                batches[index] = CommitBatch(env.job_keys.events)
            batches[index].add("", ops)
        for batch in batches.values():
            await self._commit(batch, group="")
