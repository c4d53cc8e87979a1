"""API keys: the admin key setting, and the names the Lua scripts share with Python."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from libs.common import apikey_record, lua_apikeys
from libs.common.apikey_record import AuthOutcome
from libs.common.apikeys import (
    ApiKeyStore,
)
from libs.common.settings import GatewaySettings
from tests.libs.common.apikeys_support import ADMIN_KEY

# --- settings, errors, Lua ---------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "short-but-random-9fK2",
        "changeme" * 4,
        "admin" * 7,
        "Your_Admin_Key_Here_Change_Me_123",
        "password" * 4,
        "0" * 40,
        "ab" * 20,
    ],
)
def test_a_weak_or_placeholder_admin_key_is_refused_without_echoing_it(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCUMIND_ADMIN_KEY", value)
    with pytest.raises(ValidationError, match="admin_key") as refused:
        GatewaySettings(_env_file=None)
    if value:
        assert value not in str(refused.value)


def test_the_admin_key_may_be_unset_or_strong(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings(_env_file=None)
    assert (settings.admin_key, settings.rate_limit_per_min, settings.tenant_max_inflight) == (
        None,
        600,
        1000,
    )
    monkeypatch.setenv("DOCUMIND_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("DOCUMIND_RATE_LIMIT_PER_MIN", "30")
    settings = GatewaySettings(_env_file=None)
    assert settings.admin_key is not None and settings.admin_key.get_secret_value() == ADMIN_KEY
    assert ADMIN_KEY not in repr(settings)
    store = ApiKeyStore.from_settings(aioredis.Redis(), settings)
    assert store.default_rpm == 30


def test_the_api_key_names_read_back_from_valkey_match_python(valkey: redis.Redis) -> None:
    probe = lua_apikeys.APIKEY_NAMES + (
        "return {A_OK, A_UNKNOWN, A_REVOKED, A_EXPIRED, K_SECRET, K_TENANT, K_ROLE, K_COLLECTIONS,"
        " K_RPM, K_EXPIRES, K_REVOKED}"
    )
    got = valkey.eval(probe, 0)
    assert got[:4] == [AuthOutcome.OK, AuthOutcome.UNKNOWN, AuthOutcome.REVOKED, AuthOutcome.EXPIRED]
    assert [v.decode() for v in got[4:]] == [
        apikey_record.SECRET_FIELD,
        apikey_record.TENANT_FIELD,
        apikey_record.ROLE_FIELD,
        apikey_record.COLLECTIONS_FIELD,
        apikey_record.RPM_FIELD,
        apikey_record.EXPIRES_FIELD,
        apikey_record.REVOKED_FIELD,
    ]
