"""With a Docker engine, the tests' Valkey is the official image run by testcontainers."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import HAS_DOCKER

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        not HAS_DOCKER, reason="no Docker engine: the tests use the local valkey-server binary"
    ),
]


def test_container_serves_valkey_9(valkey: redis.Redis) -> None:
    info = valkey.info("server")
    assert str(info["valkey_version"]).startswith("9.")
    assert valkey.xadd("s", {"k": "v"})
