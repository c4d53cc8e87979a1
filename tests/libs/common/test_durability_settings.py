"""Issue 16's settings and pure helpers: WAIT's policy, the Sentinels' addresses,
what VALKEY_URL still gives with Sentinels, and INFO replication's replicas online."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs.common.durability import online_replicas
from libs.common.sentinel import SentinelConfigError, SentinelTarget, url_options
from libs.common.service import connect
from libs.common.settings import CommonSettings


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("AUTO", "auto"), ("0", 0), ("2", 2)])
def test_wait_replicas(value: str, expected: object) -> None:
    assert CommonSettings(valkey_wait_replicas=value).valkey_wait_replicas == expected


def test_wait_replicas_default_and_timeout() -> None:
    settings = CommonSettings()
    assert (settings.valkey_wait_replicas, settings.valkey_wait_timeout_ms) == ("auto", 1000)


@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_wait_replicas_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="VALKEY_WAIT_REPLICAS"):
        CommonSettings(valkey_wait_replicas=value)


def test_wait_timeout_zero_is_refused() -> None:
    # WAIT with timeout 0 blocks for ever.
    with pytest.raises(ValidationError):
        CommonSettings(valkey_wait_timeout_ms=0)


def test_sentinels() -> None:
    settings = CommonSettings(valkey_sentinels=" 10.0.0.1:26379, [::1]:26380 ,", valkey_sentinel_master="m")
    target = SentinelTarget.of(settings)
    assert target == SentinelTarget((("10.0.0.1", 26379), ("::1", 26380)), "m", None)
    assert SentinelTarget.of(CommonSettings()) is None


@pytest.mark.parametrize("value", ["sentinel", "host:", ":26379", "host:0", "host:port"])
def test_sentinels_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="not host:port"):
        CommonSettings(valkey_sentinels=value)


def test_url_gives_credentials_database_and_tls_not_the_address() -> None:
    options = url_options("rediss://documind:s%40cret@ignored.example:6380/2?ssl_cert_reqs=required")
    assert options == {
        "username": "documind",
        "password": "s@cret",
        "db": 2,
        "ssl": True,
        "ssl_cert_reqs": "required",
    }
    assert url_options("redis://127.0.0.1:6379/0") == {"db": 0}


def test_unix_socket_url_is_refused_with_sentinels() -> None:
    with pytest.raises(SentinelConfigError):
        url_options("unix:///tmp/valkey.sock")


def test_sentinel_and_cluster_exclude_each_other() -> None:
    target = SentinelTarget((("127.0.0.1", 26379),))
    with pytest.raises(SentinelConfigError):
        connect("redis://127.0.0.1:6379/0", 1.0, cluster=True, sentinel=target)


def test_online_replicas() -> None:
    info = {
        "role": "master",
        "connected_slaves": 2,
        "slave0": {"ip": "127.0.0.1", "port": 7001, "state": "online", "offset": 10, "lag": 0},
        "slave1": {"ip": "127.0.0.1", "port": 7002, "state": "wait_bgsave", "offset": 0, "lag": 0},
    }
    assert online_replicas(info) == 1
    assert online_replicas({"role": "slave"}) == 0
    assert online_replicas({"role": "master", "connected_slaves": 0}) == 0
