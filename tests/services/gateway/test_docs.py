"""The API's docs work offline: their pages load nothing from another host, and every
asset they name is served here, without a key."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from libs.common.settings import GatewaySettings
from services.gateway.app import create_app
from tests.auth import admin_secret


@pytest.fixture
def client() -> TestClient:
    # No lifespan, so no Valkey: the docs need neither.
    settings = GatewaySettings(_env_file=None, admin_key=admin_secret())  # type: ignore[call-arg]
    return TestClient(create_app(settings), base_url="http://localhost")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_loads_only_assets_served_here(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    referenced = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
    assert referenced, html.text
    elsewhere = [u for u in referenced if re.match(r"(?:https?:)?//", u)]
    assert not elsewhere, f"{page} loads {elsewhere}"
    for url in referenced:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url


def test_the_openapi_document_is_public_and_declares_the_bearer_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]


def test_only_the_docs_assets_are_public(valkey_url: str) -> None:
    settings = GatewaySettings(_env_file=None, admin_key=admin_secret(), valkey_url=valkey_url)  # type: ignore[call-arg]
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        assert client.get("/docs-assets/swagger-ui.css").status_code == 200
        assert client.get("/docs-assets-evil/x").status_code == 401
        assert client.get("/docs/x").status_code == 401
