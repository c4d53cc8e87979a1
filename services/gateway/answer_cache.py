"""The answer cache: a question asked again of an unchanged collection is answered at once.

A finished chat result is kept under ``CollectionKeys.answer``: the
collection's epoch (its ``created_at``) and version, and the sha256 of the
normalised request (question casefolded, whitespace collapsed, trailing
punctuation dropped; every other payload field as is: ``top_k``, a
conversation's ``history``, ...). The version moves on whenever what the
collection answers changes (a document ready, deleted or replaced), so an
entry is never served after such a change; it simply expires.

A miss queues the job as usual with the entry's key in its payload; the
generator stores its successful answer there with its completing commit. A
hit creates the job already ``done`` with that result, in one step: it reads
like any finished job through the job API, its waits and its events.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

import redis.asyncio as aioredis
from starlette.datastructures import Headers

from libs.common import metrics
from libs.common.access import Access
from libs.common.constants import (
    ANSWER_CACHE_PAYLOAD_FIELD,
    COLLECTION_VERSION_FIELD,
    DONE_TTL_S,
    EVENTS_MAXLEN,
)
from libs.common.decode import as_text
from libs.common.envelope import Envelope
from libs.common.jobs import job_fields
from libs.common.keys import CollectionKeys, KeySpace
from libs.common.scripts import ServeCachedAnswer
from libs.common.settings import GatewaySettings
from libs.common.status import JobStatus

PAYLOAD_FIELD: Final = ANSWER_CACHE_PAYLOAD_FIELD
# Payload fields normalised like the question (the text that is searched for may differ).
_TEXT_FIELDS: Final = ("question", "query")
# Bumped when the cached result's shape changes: older entries are then never read.
_FORMAT: Final = 1

logger = logging.getLogger(__name__)


def normalise_question(text: str) -> str:
    """Casefolded, whitespace collapsed to single spaces, trailing punctuation removed."""
    collapsed = " ".join(text.casefold().split())
    end = len(collapsed)
    while end and (unicodedata.category(collapsed[end - 1]).startswith("P") or collapsed[end - 1] == " "):
        end -= 1
    return collapsed[:end]


def request_digest(payload: Mapping[str, Any]) -> str:
    """sha256 of the normalised question and every other parameter of a chat payload."""
    params = {k: v for k, v in payload.items() if k != PAYLOAD_FIELD}
    for name in _TEXT_FIELDS:
        if isinstance(params.get(name), str):
            params[name] = normalise_question(params[name])
    canonical = json.dumps([_FORMAT, params], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# A request header asking for a fresh answer ("bypass").
CACHE_BYPASS_HEADER: Final = "X-DocuMind-Cache"


def bypass_requested(headers: Headers) -> bool:
    """``Cache-Control: no-cache`` or ``X-DocuMind-Cache: bypass``: answer afresh."""
    directives = {d.strip().lower() for d in headers.get("cache-control", "").split(",")}
    return "no-cache" in directives or headers.get(CACHE_BYPASS_HEADER, "").strip().lower() == "bypass"


class AnswerCache:
    """The gateway's side: look a chat request up, answer it when found, else name the entry."""

    def __init__(self, client: aioredis.Redis, settings: GatewaySettings) -> None:
        self.r = client
        self.s = settings
        self.space = KeySpace(settings.partitions)
        self._serve = ServeCachedAnswer(client)
        self._hits = metrics.CACHE_REQUESTS.labels("answer", "hit")
        self._misses = metrics.CACHE_REQUESTS.labels("answer", "miss")

    @property
    def enabled(self) -> bool:
        return self.s.answer_cache_ttl_s > 0

    async def lookup(
        self, access: Access, collection: str, payload: dict[str, Any], *, bypass: bool = False
    ) -> Envelope | None:
        """A chat job answered from the cache, already done; None when it must be queued.

        On a miss (or with ``bypass``) ``payload`` gains the entry for the generator
        to fill. Nothing happens with the cache off or for an unknown collection
        (the submit that follows answers 404).
        """
        if not self.enabled or not access.sees(collection):
            return None
        started = time.perf_counter()
        target = self.space.collection(collection, access.tenant)
        key = await self.key(target, payload)
        if key is None:
            return None
        if not bypass:
            env = Envelope.new(
                "chat",
                collection,
                dict(payload),
                self.s.job_timeout_s,
                partition=target.partition,
                tenant=target.tenant,
                key_id=access.key_id,
            )
            if await self.serve(key, env, started):
                self._hits.inc()
                logger.info("job_id=%s stage=gateway answered from the answer cache", env.job_id)
                return env
        self._misses.inc()
        payload[PAYLOAD_FIELD] = {"key": key, "ttl_s": self.s.answer_cache_ttl_s}
        return None

    async def key(self, collection: CollectionKeys, payload: Mapping[str, Any]) -> str | None:
        """The entry for this request in the collection as it is now; None for no such collection."""
        epoch, version = await self.r.hmget(collection.meta, ["created_at", COLLECTION_VERSION_FIELD])
        if epoch is None:
            return None
        return collection.answer(as_text(epoch), as_text(version or "0"), request_digest(payload))

    async def serve(self, key: str, env: Envelope, started: float) -> bool:
        """Create ``env``'s job already done with the entry's result; False on a miss."""
        now = time.time()
        timings = {"cache": round(time.perf_counter() - started, 6)}
        # As a worker's last commit leaves a finished job (see jobflow.finish).
        final = {
            "status": JobStatus.DONE.value,
            "stage": "",
            "timings": json.dumps(timings),
            "updated_at": repr(now),
            "attempts": "0",
        }
        job = {k: v for k, v in job_fields(env).items() if k not in final}
        served = await self._serve(
            key,
            env.job_keys,
            final_fields=final,
            job_fields=job,
            job_ttl_s=self.s.job_ttl_s,
            done_ttl_s=DONE_TTL_S,
            events_ttl_s=self.s.events_ttl_s,
            events_maxlen=EVENTS_MAXLEN,
        )
        return bool(served)
