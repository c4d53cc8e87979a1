"""Valkey Sentinel: one primary with replicas, found and followed through Sentinels (issue 16).

``DOCUMIND_VALKEY_SENTINELS`` (``host:port,host:port``) and
``DOCUMIND_VALKEY_SENTINEL_MASTER`` (the name the Sentinels monitor, ``documind`` by
default) turn every client :func:`libs.common.service.connect` builds, and the
gateway's waiter connections (``fanout_connections.py``), into clients of the primary
the Sentinels name: each new connection asks them where it is (redis-py's
``SentinelConnectionPool``), so after a failover a connection that failed or met
``READONLY`` (the old primary, demoted) reconnects to the promoted replica.

What ``DOCUMIND_VALKEY_URL`` still gives: the username, password, database and TLS
(``rediss://`` and its ``ssl_*`` query options) of the connections to the primary;
its host and port are not used. The Sentinels are asked with the same socket
timeouts and TLS, and with ``DOCUMIND_VALKEY_SENTINEL_PASSWORD`` when the Sentinels
require one (``requirepass`` in sentinel.conf; no username), else none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from libs.common.settings import CommonSettings


class SentinelConfigError(ValueError):
    """A Sentinel setting that cannot work (e.g. a unix:// VALKEY_URL)."""


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """Where the Sentinels are and the primary's name."""

    sentinels: Sequence[tuple[str, int]]
    master: str = "documind"
    password: str | None = None

    @classmethod
    def of(cls, settings: CommonSettings) -> SentinelTarget | None:
        """The settings' Sentinels, or None when ``DOCUMIND_VALKEY_SENTINELS`` is unset."""
        found = settings.sentinel_list
        if not found:
            return None
        secret = settings.valkey_sentinel_password
        password = secret.get_secret_value() if secret else None
        return cls(tuple(found), settings.valkey_sentinel_master, password)


class _SentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool, closing its Sentinels' connections as it closes."""

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


class _BlockingSentinelPool(_SentinelPool, BlockingConnectionPool):
    """A Sentinel pool whose commands wait ``timeout`` for a free connection (the
    gateway's bounded pool), as ``BlockingConnectionPool`` does for one server."""


def url_options(url: str) -> dict[str, Any]:
    """Credentials, database and TLS of ``url`` as connection options (no address)."""
    options: dict[str, Any] = dict(parse_url(url))
    options.pop("host", None)
    options.pop("port", None)
    connection_class = options.pop("connection_class", None)
    if connection_class is not None and connection_class is not SSLConnection:
        raise SentinelConfigError("DOCUMIND_VALKEY_URL: with Sentinels use redis:// or rediss://")
    if connection_class is SSLConnection:
        options["ssl"] = True
    return options


def sentinel_manager(target: SentinelTarget, url: str, options: dict[str, Any]) -> Sentinel:
    """The Sentinels' client: connections it hands out get ``url``'s credentials and
    ``options`` (timeouts, client name); the Sentinels get the socket options and TLS."""
    connection = {**url_options(url), **options}
    asked: dict[str, Any] = {k: v for k, v in connection.items() if k.startswith("socket_")}
    if connection.get("ssl"):
        asked.update({k: v for k, v in connection.items() if k.startswith("ssl")})
    if target.password:
        asked["password"] = target.password
    return Sentinel(list(target.sentinels), sentinel_kwargs=asked, **connection)  # type: ignore[no-untyped-call]


def sentinel_pool(
    target: SentinelTarget,
    url: str,
    options: dict[str, Any],
    *,
    max_connections: int | None = None,
    pool_wait_s: float = 0.0,
) -> SentinelConnectionPool:
    """A pool of connections to the primary the Sentinels name (followed on failover).

    With ``max_connections`` and ``pool_wait_s`` > 0 a command waits that long for a
    free connection, else a full pool raises ``ConnectionError`` at once."""
    manager = sentinel_manager(target, url, options)
    kwargs: dict[str, Any] = {"is_master": True, **manager.connection_kwargs}
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
    if max_connections is not None and pool_wait_s > 0:
        pool = _BlockingSentinelPool(target.master, manager, timeout=pool_wait_s, **kwargs)  # type: ignore[no-untyped-call]
        return cast(SentinelConnectionPool, pool)
    return _SentinelPool(target.master, manager, **kwargs)  # type: ignore[no-untyped-call]


def sentinel_client(
    target: SentinelTarget,
    url: str,
    options: dict[str, Any],
    *,
    max_connections: int | None = None,
    pool_wait_s: float = 0.0,
) -> aioredis.Redis:
    """A client of the Sentinels' primary (see :func:`sentinel_pool`)."""
    pool = sentinel_pool(target, url, options, max_connections=max_connections, pool_wait_s=pool_wait_s)
    return aioredis.Redis.from_pool(pool)
