"""Whether the embedder's next piece of work is still wanted, for many jobs in one round trip.

Parsing an upload and embedding a part cost CPU that every tenant shares. A job can
stop being wanted meanwhile: cancelled or expired (its status is final), or its
document deleted (``DELETE /v1/documents/{id}``, a dropped collection, a replace:
each removes the document's hash at once, ``document_ops.delete_document``). The
handler asks before each model call of chunks, and a running parse asks every
quarter second (``sandbox.py``), so such work stops within one model call or poll.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common import keys
from libs.common.decode import as_text
from libs.common.envelope import Envelope
from libs.common.payloads import IngestUpload, view
from libs.common.status import is_final


@dataclass(frozen=True, slots=True)
class Liveness:
    """One job's answer: its final status if it has one, and whether its document is gone."""

    ended: str | None = None
    deleted: bool = False

    @property
    def wanted(self) -> bool:
        return self.ended is None and not self.deleted


WANTED = Liveness()


async def of_uploads(client: aioredis.Redis, envs: Sequence[Envelope]) -> list[Liveness]:
    """Before and while parsing: an upload's document is deleted once neither its hash nor
    its bytes queued in Valkey (by an older gateway) exist: a delete removes both."""

    def probe(pipe: Any, k: int) -> None:
        document = keys.document(view(envs[k], IngestUpload)["document_id"])
        pipe.exists(document.hash, document.blob)

    return await _read(client, envs, probe, deleted=lambda reply: not reply)


async def of_parts(client: aioredis.Redis, parts: Sequence[tuple[Envelope, str]]) -> list[Liveness]:
    """Before a model call, per (job, document id): the document is deleted once it is in
    its collection's set of deleted documents, the tombstone a delete leaves (and the
    retriever reads)."""

    def probe(pipe: Any, k: int) -> None:
        env, document_id = parts[k]
        pipe.sismember(env.collection_keys.deleted, document_id)

    return await _read(client, [env for env, _ in parts], probe, deleted=bool)


async def _read(
    client: aioredis.Redis,
    envs: Sequence[Envelope],
    probe: Callable[[Any, int], None],
    *,
    deleted: Callable[[Any], bool],
) -> list[Liveness]:
    """Each job's status and ``probe``'s reply about its document (which ``deleted``
    reads), in one pipelined round trip. A Valkey that does not answer says every job
    is wanted (the work goes on, its commit will find out)."""
    if not envs:
        return []
    try:
        async with client.pipeline(transaction=False) as pipe:
            for k, env in enumerate(envs):
                pipe.hget(env.job_keys.hash, "status")
                probe(pipe, k)
            replies = await pipe.execute()
    except (RedisConnectionError, RedisTimeoutError):
        return [WANTED] * len(envs)
    found = []
    for status, reply in zip(replies[::2], replies[1::2], strict=True):
        text = as_text(status) if status is not None else None
        found.append(Liveness(text if text is not None and is_final(text) else None, deleted(reply)))
    return found
