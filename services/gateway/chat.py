"""Submitting a question: the one path that /v1/chat and the OpenAI facade share."""

from __future__ import annotations

from typing import Any

from libs.common.envelope import Envelope
from services.gateway.submit import Submitter


async def submit_chat(
    sub: Submitter,
    collection: str,
    question: str,
    *,
    top_k: int | None = None,
) -> Envelope:
    """Queue a chat job for ``question`` in ``collection`` (404/422/503 as HTTPException)."""
    payload: dict[str, Any] = {"question": question, "query": question, "top_k": sub.top_k(top_k)}
    return await sub.submit("chat", collection, payload)
