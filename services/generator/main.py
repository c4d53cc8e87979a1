"""Generator process: settings, answerer (LLM or extractive), handler, worker loop."""

from __future__ import annotations

import redis.asyncio as aioredis

from libs.common.constants import GENERATOR
from libs.common.service import run_worker_service
from libs.common.settings import GeneratorSettings
from services.generator.answerers import build_answerer
from services.generator.events import ValkeyAnswerStream
from services.generator.handler import GenerateHandler


def main() -> None:
    settings = GeneratorSettings()

    async def build(client: aioredis.Redis) -> GenerateHandler:
        stream = ValkeyAnswerStream(client, settings.events_ttl_s)
        return GenerateHandler(build_answerer(settings), stream, client)

    run_worker_service(GENERATOR, settings, build)


if __name__ == "__main__":
    main()
