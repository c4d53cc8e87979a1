"""Process wiring for a worker service: logging, metrics endpoint, signals, run."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, cast

import redis.asyncio as aioredis
import uvloop

from libs.common.cluster_client import cluster_client, ready
from libs.common.constants import STAGE_LANES
from libs.common.keys import KeySpace, Stage
from libs.common.logs import configure_logging
from libs.common.metrics import serve_metrics
from libs.common.sentinel import SentinelConfigError, SentinelTarget, sentinel_client
from libs.common.settings import WorkerSettings
from libs.common.stage import Handler
from libs.common.telemetry import setup_tracing
from libs.common.worker import Worker

logger = logging.getLogger(__name__)


def connect(
    url: str,
    longest_block_s: float,
    *,
    max_connections: int | None = None,
    pool_wait_s: float = 0.0,
    client_name: str | None = None,
    cluster: bool = False,
    sentinel: SentinelTarget | None = None,
) -> aioredis.Redis:
    """An async client whose socket timeout outlasts the longest blocking read it makes.

    redis-py's default socket timeout (5 s) would cut a longer XREAD BLOCK short.
    With ``max_connections`` its pool holds at most that many; a command that finds
    none free waits up to ``pool_wait_s`` for one, then raises ``ConnectionError``
    (immediately when 0). ``client_name`` names its connections in CLIENT LIST.

    ``cluster`` (``DOCUMIND_VALKEY_CLUSTER``): ``url`` is any node of a Valkey Cluster
    and the client is redis-py's cluster client, with the same timeouts, credentials
    and TLS (from the URL). It routes each command by its keys' slot; every key of a
    partition shares one slot (``keys.py``), so scripts and transactions stay on one
    node. Its pools are per node: ``max_connections`` bounds each node's, and a
    command that finds none free fails at once (``pool_wait_s`` is not used). It is
    typed as the single-server client, whose commands DocuMind's code calls; see
    :mod:`libs.common.cluster_client` for what it repairs, and call :func:`ready`
    before tasks share it.

    ``sentinel`` (``DOCUMIND_VALKEY_SENTINELS``, :meth:`SentinelTarget.of`): the client
    connects to the primary the Sentinels name and follows it through a failover
    (:mod:`libs.common.sentinel`); ``url`` gives only credentials, database and TLS.
    """
    options: dict[str, Any] = {
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_timeout": longest_block_s + 10,
        "socket_connect_timeout": 5,
        "client_name": client_name,
    }
    if sentinel is not None:
        if cluster:
            raise SentinelConfigError("DOCUMIND_VALKEY_SENTINELS and _CLUSTER exclude each other")
        return sentinel_client(
            sentinel, url, options, max_connections=max_connections, pool_wait_s=pool_wait_s
        )
    if cluster:
        if max_connections is not None:
            options["max_connections"] = max_connections
        return cast(aioredis.Redis, cluster_client(url, **options))
    if max_connections is not None and pool_wait_s > 0:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_wait_s, **options
        )
        return aioredis.Redis.from_pool(pool)
    return aioredis.Redis.from_url(url, max_connections=max_connections, **options)


HandlerFactory = Callable[[aioredis.Redis], Awaitable[Handler]]


def run_worker_service(stage: Stage, settings: WorkerSettings, build_handler: HandlerFactory) -> None:
    """Run one worker process until SIGTERM/SIGINT; exits 0 after a graceful stop."""
    configure_logging(settings.log_level, stage, settings.log_format)
    setup_tracing(f"documind-{stage}", settings.traces_exporter)
    serve_metrics(stage, settings.metrics_port, settings.metrics_host)
    uvloop.run(_serve(stage, settings, build_handler))


async def _serve(stage: Stage, settings: WorkerSettings, build_handler: HandlerFactory) -> None:
    """Run one :class:`Worker` per partition and lane of ``stage`` on one client.

    Connections of a worker process reading ``N`` partitions (``DOCUMIND_PARTITIONS``):
    each Worker holds one while it blocks in ``XREADGROUP`` (up to ``read_block_ms``),
    so ``N x lanes`` are held by reads: ``2N`` for the embedder and the retriever
    (interactive and bulk lanes), ``N`` for the generator. On top, each batch in flight
    (at most ``concurrency`` per Worker) uses one while it commits, and each Worker's
    maintenance one now and then: at its busiest about ``N x lanes x (1 + concurrency)``.
    One ``XREADGROUP`` cannot name two partitions' streams (two slots: a cluster
    refuses it), so a read per partition is the floor; every partition is read by its
    own loop, none starves another. On a Valkey Cluster each connection goes to the
    primary owning its partition's slot (the cluster client keeps a pool per node):
    a node serves the reads of the partitions it owns. Keep ``N`` a small multiple of
    the primaries: 12 partitions on 3 primaries hold 24 blocked reads per embedder,
    8 on each primary.
    """
    client = connect(
        settings.valkey_url,
        settings.read_block_ms / 1000,
        cluster=settings.valkey_cluster,
        sentinel=SentinelTarget.of(settings),
    )
    try:
        await ready(client)
        handler = await build_handler(client)
        # One worker per lane and partition, sharing the handler: a question is read at
        # once even while the bulk lane's stream holds thousands of ingest parts.
        workers = [
            Worker(client, stage, handler, settings, lane, partition=partition)
            for partition in KeySpace(settings.partitions).all()
            for lane in STAGE_LANES[stage]
        ]

        def stop() -> None:
            for w in workers:
                w.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        await asyncio.gather(*(w.run() for w in workers))
        # Release what the handler holds (model clients): async first, else sync.
        aclose = getattr(handler, "aclose", None)
        close = getattr(handler, "close", None)
        if aclose is not None:
            await aclose()
        elif close is not None:
            close()
    finally:
        await client.aclose()
    logger.info("%s stopped", stage)
