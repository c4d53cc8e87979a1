"""The embedder embeds each chunk's context and text together; the chunk keeps both apart."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import redis.asyncio as aioredis

from libs.common import keys
from libs.common.envelope import Envelope
from libs.common.settings import EmbedderSettings
from libs.common.stage import Output
from services.embedder.backends import HashEmbedder
from services.embedder.handler import EmbedHandler

NOTE = b"# Tides\n\nThe tide turns at noon in the harbour.\n\n## Ferries\n\nThe ferry leaves at nine."


class RecordingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=8)
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return super().embed(texts)


def test_the_model_reads_title_and_heading_path_before_the_chunk_text(valkey_url: str) -> None:
    embedder = RecordingEmbedder()
    env = Envelope.new("ingest", "docs", {"document_id": "d1", "filename": "harbour-guide.md"}, 60)

    async def main() -> object:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            await r.set(keys.document("d1").blob, NOTE)
            handler = EmbedHandler(r, embedder, EmbedderSettings(_env_file=None))  # type: ignore[call-arg]
            (outcome,) = await handler([env])
            return outcome
        finally:
            await r.aclose()

    outcome = asyncio.run(main())
    assert isinstance(outcome, Output)
    chunks = outcome.payload["chunks"]
    assert [c["context"] for c in chunks] == ["harbour-guide > Tides", "harbour-guide > Tides > Ferries"]
    assert [NOTE.decode()[c["char_start"] : c["char_end"]] for c in chunks] == [c["text"] for c in chunks]
    assert embedder.texts == [
        "harbour-guide > Tides\n# Tides\n\nThe tide turns at noon in the harbour.",
        "harbour-guide > Tides > Ferries\n## Ferries\n\nThe ferry leaves at nine.",
    ]
