"""Submitting a question: the one path that /v1/chat and the OpenAI facade share."""

from __future__ import annotations

from typing import Any

from libs.common.access import Access
from libs.common.constants import CHAT_WITH_HISTORY_ROUTE
from libs.common.envelope import Envelope
from services.gateway.submit import Submitter


async def submit_chat(
    sub: Submitter,
    access: Access,
    collection: str,
    question: str,
    *,
    top_k: int | None = None,
    history: list[dict[str, str]] | None = None,
    bypass_cache: bool = False,
) -> Envelope:
    """Queue a chat job for ``question`` in ``collection``.

    Raises ``CollectionNotFound``, ``InvalidRequest`` (``top_k``) or ``QueueFull``.

    ``history``: earlier turns (``{"role", "content"}``, oldest first). With any, the
    job first goes to the generator, which rewrites ``question`` as a standalone one.

    A question asked before of the collection as it is now is answered from the
    answer cache: the job comes back already done. ``bypass_cache`` skips that
    lookup (the fresh answer still refreshes the cache).
    """
    payload: dict[str, Any] = {"question": question, "query": question, "top_k": sub.top_k(top_k)}
    if history:
        payload["history"] = history
    # A cached answer is a (small) job too: none while Valkey is near its limit.
    await sub.memory.check()
    cached = await sub.answers.lookup(access, collection, payload, bypass=bypass_cache)
    if cached is not None:
        return cached
    route = CHAT_WITH_HISTORY_ROUTE if history else None
    return await sub.submit("chat", collection, payload, access=access, route=route)
