from __future__ import annotations

from pathlib import Path

import redis

from libs.common.valkey_server import ValkeyServer


def test_runs_a_real_valkey_9_with_its_append_only_file(tmp_path: Path) -> None:
    with ValkeyServer(tmp_path / "v", appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert str(client.info("server")["valkey_version"]).startswith("9.")
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            client.set("k", "v")
        finally:
            client.close()
    # Data survives a restart on the same directory.
    with ValkeyServer(tmp_path / "v", appendonly=True) as again:
        client = redis.Redis.from_url(again.url)
        try:
            assert client.get("k") == b"v"
        finally:
            client.close()
