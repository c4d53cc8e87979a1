"""A DocuMind stage whose handler does no work: ``python -m bench.noop_stage <stage>``.

It is the real worker process (``run_worker_service`` and the real ``Worker``:
XREADGROUP batches, MARK_RUNNING, one COMMIT per batch) with a handler that
returns each envelope's payload unchanged. Settings come from the ``DOCUMIND_*``
environment like any worker. ``--profile FILE`` writes cProfile stats of the
whole process to FILE when it stops (SIGTERM).
"""

from __future__ import annotations

import argparse
import cProfile
from collections.abc import Sequence

import redis.asyncio as aioredis

from libs.common import constants
from libs.common.envelope import Envelope
from libs.common.service import run_worker_service
from libs.common.settings import WorkerSettings
from libs.common.stage import Outcome


class NoopHandler:
    """Hands every envelope's payload on unchanged."""

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        return [env.payload for env in batch]


async def build_handler(_client: aioredis.Redis) -> NoopHandler:
    return NoopHandler()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=constants.STAGES)
    parser.add_argument("--profile", metavar="FILE", help="write cProfile stats here on exit")
    args = parser.parse_args(argv)
    settings = WorkerSettings()
    if not args.profile:
        run_worker_service(args.stage, settings, build_handler)
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run_worker_service(args.stage, settings, build_handler)
    finally:
        profiler.disable()
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
