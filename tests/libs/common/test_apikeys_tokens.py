"""API key tokens: minting and parsing, the bearer token of a header, and refusing a
malformed or missing one without a round trip to Valkey."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from libs.common import apikey_record
from libs.common.apikey_record import parse_token
from libs.common.apikeys import (
    ApiKeyStore,
    Refused,
    bearer_token,
)
from tests.libs.common.apikeys_support import ADMIN_KEY, T0, secret_of

# --- tokens -----------------------------------------------------------------------


def test_a_minted_token_parses_to_its_id_and_the_hash_of_its_secret() -> None:
    token, parsed = apikey_record.mint_token()
    assert token.startswith(f"dm_{parsed.key_id}_") and len(parsed.key_id) == 16
    assert parse_token(token) == parsed
    assert parsed.secret_sha256 == hashlib.sha256(secret_of(token).encode()).hexdigest()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "dm_",
        "Bearer dm_0123456789abcdef_" + "a" * 43,
        "dm_0123456789ABCDEF_" + "a" * 43,  # upper-case id
        "dm_0123456789abcde_" + "a" * 44,  # short id
        "dm_0123456789abcdef_" + "a" * 42,  # short secret
        "dm_0123456789abcdef_" + "a" * 42 + "=",  # not base64url
        "dm_0123456789abcdef_" + "a" * 43 + "\n",
        "xx_0123456789abcdef_" + "a" * 43,
        "dm_0123456789abcdef-" + "a" * 43,
    ],
)
def test_a_malformed_token_is_refused_by_the_parser(token: str) -> None:
    assert parse_token(token) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", ""),
    ],
)
def test_the_bearer_token_of_an_authorization_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_a_malformed_or_missing_token_is_refused_without_touching_valkey() -> None:
    async def main() -> None:
        # Nothing listens there: any round trip would fail.
        client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
        store = ApiKeyStore(client, default_rpm=10, admin_key=SecretStr(ADMIN_KEY))
        try:
            assert await store.authenticate("dm_nothex_x", T0) == Refused("malformed")
            assert await store.authenticate(None, T0) == Refused("missing")
            assert await store.authenticate_header(None, T0) == Refused("missing")
            assert await store.authenticate_header(f"Basic {ADMIN_KEY}", T0) == Refused("malformed")
            assert await store.authenticate_header("Bearer ", T0) == Refused("malformed")
        finally:
            await client.aclose()

    asyncio.run(main())
