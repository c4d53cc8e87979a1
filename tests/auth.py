"""How tests authenticate to the gateway: as the operator, like a user with its key.

Every route but ``/healthz``, ``/readyz`` and the docs needs ``Authorization: Bearer``
(issue 12). Tests give the gateway ``ADMIN_KEY`` (``DOCUMIND_ADMIN_KEY``, or
``GatewaySettings(admin_key=admin_secret())``) and send ``admin_headers()``;
``operator_client(create_app(settings))`` is a TestClient that does so.
"""

from __future__ import annotations

import secrets
from typing import Any, Final

from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.types import ASGIApp

from libs.common.admin_key import auth_headers
from libs.common.settings import admin_key_problem


def _new_key() -> str:
    """A key as `documind up` creates one, not starting with "-" (``--api-key KEY`` works)."""
    while (key := secrets.token_urlsafe(32)).startswith("-"):
        pass
    assert admin_key_problem(key) is None, "the test operator key must be acceptable"
    return key


# One strong operator key per test process.
ADMIN_KEY: Final = _new_key()
# A Host the gateway serves by default (DOCUMIND_ALLOWED_HOSTS), unlike TestClient's "testserver".
LOCAL_URL: Final = "http://localhost"


def admin_headers() -> dict[str, str]:
    """``Authorization: Bearer <ADMIN_KEY>``."""
    return auth_headers(ADMIN_KEY)


def admin_secret() -> SecretStr:
    """``ADMIN_KEY`` as ``GatewaySettings.admin_key`` takes it."""
    return SecretStr(ADMIN_KEY)


def operator_client(app: ASGIApp, **kwargs: Any) -> TestClient:
    """A TestClient of ``app`` (a gateway given ``admin_key=admin_secret()``) that sends
    ``admin_headers()`` to ``LOCAL_URL``; ``kwargs`` go to :class:`TestClient`."""
    headers = {**admin_headers(), **kwargs.pop("headers", {})}
    return TestClient(app, base_url=kwargs.pop("base_url", LOCAL_URL), headers=headers, **kwargs)
