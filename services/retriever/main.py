"""Retriever process: settings, vector store, handler, worker loop."""

from __future__ import annotations

import redis.asyncio as aioredis

from libs.common.blobstore import build_blob_store
from libs.common.constants import RETRIEVER
from libs.common.service import run_worker_service
from libs.common.settings import RetrieverSettings
from services.retriever.handler import RetrieveHandler, ValkeyRegistry
from services.retriever.stores import build_bm25, build_fusion, build_store


def main() -> None:
    settings = RetrieverSettings()

    async def build(client: aioredis.Redis) -> RetrieveHandler:
        return RetrieveHandler(
            build_store(settings),
            settings.embedding_dim,
            ValkeyRegistry(client),
            job_ttl_s=settings.job_ttl_s,
            delete_timeout_s=settings.job_timeout_s,
            bm25=build_bm25(settings),
            fusion=build_fusion(settings),
            blobs=build_blob_store(settings),
        )

    run_worker_service(RETRIEVER, settings, build)


if __name__ == "__main__":
    main()
