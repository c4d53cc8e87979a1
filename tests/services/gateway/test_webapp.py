"""The web app is served at / and /assets/ without a key, under a strict
Content-Security-Policy, with its hashed assets cached; without a build, / says how to
make one. Nothing else becomes public."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from libs.common.settings import GatewaySettings
from services.gateway import webapp
from services.gateway.app import create_app
from tests.auth import admin_headers, admin_secret


def settings(**values: object) -> GatewaySettings:
    return GatewaySettings(_env_file=None, admin_key=admin_secret(), **values)  # type: ignore[call-arg, arg-type]


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    built = tmp_path / "dist"
    (built / "assets").mkdir(parents=True)
    (built / "index.html").write_text(
        '<!doctype html><script type="module" src="/assets/index-1a2b.js"></script>'
    )
    (built / "assets" / "index-1a2b.js").write_text("console.log('app')")
    (built / "assets" / "pdf.worker.min-9f8e.mjs").write_text("self.onmessage = () => {}")
    (built / "assets" / "index-3c4d.css").write_text("body{}")
    (tmp_path / "secret.txt").write_text("outside the build")
    monkeypatch.setattr(webapp, "DIST", built)
    return built


@pytest.fixture
def client() -> TestClient:
    # No lifespan, so no Valkey: the app's files need none.
    return TestClient(create_app(settings()), base_url="http://localhost")


def test_the_page_is_public_never_cached_stale_and_under_a_strict_policy(
    dist: Path, client: TestClient
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    policy = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["worker-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("index-1a2b.js", "text/javascript; charset=utf-8"),
        # A module worker must come as JavaScript, whatever the platform's mimetypes say.
        ("pdf.worker.min-9f8e.mjs", "text/javascript; charset=utf-8"),
        ("index-3c4d.css", "text/css; charset=utf-8"),
    ],
)
def test_hashed_assets_are_cached_for_a_year(
    dist: Path, client: TestClient, name: str, media_type: str
) -> None:
    asset = client.get(f"/assets/{name}")
    assert asset.status_code == 200
    assert asset.headers["content-type"] == media_type
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "content-security-policy" in asset.headers


@pytest.mark.parametrize(
    "path", ["/assets/missing.js", "/assets/%2e%2e/secret.txt", "/assets/..%2fsecret.txt", "/assets/"]
)
def test_nothing_outside_the_build_is_served(dist: Path, client: TestClient, path: str) -> None:
    found = client.get(path)
    assert found.status_code == 404, path
    assert "outside the build" not in found.text


def test_without_a_build_the_page_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: TestClient
) -> None:
    monkeypatch.setattr(webapp, "DIST", tmp_path / "never-built")
    page = client.get("/")
    assert page.status_code == 503
    assert "make web" in page.text
    assert client.get("/assets/index.js").status_code == 404


def test_the_app_is_not_in_the_api_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not [p for p in paths if p.startswith("/assets")]


def test_only_the_app_is_public_and_the_key_says_what_it_may_do(dist: Path, valkey_url: str) -> None:
    with TestClient(create_app(settings(valkey_url=valkey_url)), base_url="http://localhost") as client:
        assert client.get("/").status_code == 200
        assert client.get("/assets/index-1a2b.js").status_code == 200
        assert client.get("/assets-evil/x").status_code == 401
        assert client.get("/index.html").status_code == 401
        assert client.get("/v1/me").status_code == 401
        me = client.get("/v1/me", headers=admin_headers())
        assert me.status_code == 200
        assert me.json() == {
            "id": "operator",
            "tenant": "default",
            "role": "operator",
            "collections": None,
            "requests_per_minute": 600,
            "permissions": ["manage_all_keys", "manage_keys", "read", "write"],
        }
