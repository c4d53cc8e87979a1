"""Embedder process: settings, model, handler, worker loop."""

from __future__ import annotations

import redis.asyncio as aioredis

from libs.common.blobstore import build_blob_store
from libs.common.constants import EMBEDDER
from libs.common.service import run_worker_service
from libs.common.settings import EmbedderSettings
from services.embedder.backends import build_embedder
from services.embedder.handler import EmbedHandler


def main() -> None:
    settings = EmbedderSettings()

    async def build(client: aioredis.Redis) -> EmbedHandler:
        handler = EmbedHandler(client, build_embedder(settings), settings, build_blob_store(settings))
        handler.sandbox.warm()  # the parse sandbox's fork server imports the parsers now
        return handler

    run_worker_service(EMBEDDER, settings, build)


if __name__ == "__main__":
    main()
