"""The gateway refuses to start open to the world: no operator key, or auth off off-loopback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from libs.common.settings import GatewaySettings
from services.gateway.app import StartupError, create_app
from tests.auth import admin_secret
from tests.integration.harness import ROOT


def settings(**values: object) -> GatewaySettings:
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_auth_needs_an_operator_key() -> None:
    with pytest.raises(StartupError, match="DOCUMIND_ADMIN_KEY is not set"):
        create_app(settings())
    create_app(settings(admin_key=admin_secret()))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_auth_off_is_allowed_on_loopback(host: str) -> None:
    create_app(settings(auth="off", host=host))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "docs.example.com"])
def test_auth_off_is_refused_off_loopback(host: str) -> None:
    with pytest.raises(StartupError, match="DOCUMIND_AUTH=off is for local development"):
        create_app(settings(auth="off", host=host))


def test_an_empty_host_list_serves_nobody() -> None:
    with pytest.raises(StartupError, match="DOCUMIND_ALLOWED_HOSTS is empty"):
        create_app(settings(admin_key=admin_secret(), allowed_hosts=" , "))


def test_the_gateway_process_exits_with_the_reason() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCUMIND_")}
    env.update(DOCUMIND_AUTH="off", DOCUMIND_HOST="0.0.0.0", DOCUMIND_PORT="1")
    done = subprocess.run(
        [sys.executable, "-m", "services.gateway"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "DOCUMIND_AUTH=off is for local development" in done.stderr


def test_with_auth_off_a_page_of_another_origin_is_refused(valkey_url: str) -> None:
    app = create_app(settings(auth="off", valkey_url=valkey_url))
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/v1/collections").status_code == 200
        cross = client.post("/v1/collections", json={"name": "x"}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        assert "requests from https://evil.example are refused" in cross.json()["detail"]
        assert client.get("/v1/collections").json()["collections"] == []
