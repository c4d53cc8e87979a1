"""URLs printed or logged show no password (``documind up`` prints its Valkey's)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from libs.common.urls import mask_credentials
from libs.common.valkey_acl import ValkeyUsers


def test_the_embedded_valkeys_url_keeps_all_but_the_password() -> None:
    password = "s3cr/t:@%?#"  # every character that needs quoting in a URL
    url = ValkeyUsers(password, "admin-pw").url("127.0.0.1", 6390)
    assert quote(password, safe="") in url
    masked = mask_credentials(url)
    assert masked == "redis://documind:***@127.0.0.1:6390/0"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "rediss://user:pw@[::1]:6380/2?ssl_cert_reqs=none",
            "rediss://user:***@[::1]:6380/2?ssl_cert_reqs=none",
        ),
        # Unencoded '@', ':' or '/' in a password are masked with it, never shown in part.
        ("redis://user:p@ss:w/rd@valkey:6379/1", "redis://user:***@valkey:6379/1"),
        ("redis://valkey:6379/0?password=pw&db=1", "redis://valkey:6379/0?password=***&db=1"),
        ("unix:///run/valkey.sock?password=pw", "unix:///run/valkey.sock?password=***"),
        ("redis://user:pw@valkey/0?password=pw", "redis://user:***@valkey/0?password=***"),
    ],
)
def test_passwords_are_masked_wherever_a_url_carries_one(url: str, masked: str) -> None:
    assert mask_credentials(url) == masked
    assert "pw" not in masked


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "redis://documind@valkey:6379/0", "redis://valkey/0?db=1#x", "valkey"],
)
def test_a_url_without_a_password_is_unchanged(url: str) -> None:
    assert mask_credentials(url) == url
