"""API keys against the real services: every route needs one, roles, scopes, expiry,
revocation and the rate limit across two gateway processes, the openai client and
the CLI with a tenant's key."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from libs.common import keys
from libs.common.admin_key import auth_headers
from libs.common.valkey_server import ValkeyServer
from tests.integration.harness import ROOT, Stack

# A well-formed key no gateway ever made.
BOGUS_KEY = "dm_0123456789abcdef_" + "A" * 43


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("auth")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp)
        try:
            s.start_all()
            yield s
        finally:
            s.stop()


@pytest.fixture(scope="module")
def second(stack: Stack) -> str:
    """The URL of a second gateway process on the same Valkey: what one knows, the other must."""
    first = stack.port
    stack.start("gateway")
    url = stack.url
    stack.wait_ready()
    stack.port = first
    return url


@pytest.fixture
def operator(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=30) as c:
        yield c


def new_key(operator: httpx.Client, tenant: str, role: str, **extra: Any) -> dict[str, Any]:
    resp = operator.post(
        "/v1/keys", json={"name": f"{tenant}-{role}", "tenant": tenant, "role": role, **extra}
    )
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def as_key(stack: Stack, key: str, url: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=url or stack.url, headers=auth_headers(key), timeout=30)


def concrete(path: str) -> str:
    """An OpenAPI path with its parameters filled in."""
    return path.replace("{", "").replace("}", "")


def test_every_route_in_the_openapi_document_needs_a_key(stack: Stack) -> None:
    spec = httpx.get(f"{stack.url}/openapi.json", timeout=10).json()
    routes = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]
    assert {("POST", "/v1/keys"), ("POST", "/v1/chat"), ("POST", "/v1/chat/completions")} <= set(routes)
    public = {("GET", "/healthz"), ("GET", "/readyz")}
    for method, path in routes:
        if (method, path) in public:
            assert httpx.request(method, f"{stack.url}{path}", timeout=10).status_code == 200
            continue
        for headers in ({}, auth_headers(BOGUS_KEY), {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            resp = httpx.request(method, f"{stack.url}{concrete(path)}", headers=headers, timeout=10)
            assert resp.status_code == 401, (method, path, headers, resp.text)
            assert resp.headers["www-authenticate"] == "Bearer", (method, path)


def test_a_request_without_a_key_is_refused_before_its_body_is_read(stack: Stack) -> None:
    head = (
        "POST /v1/collections/big/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", stack.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"--b\r\n" + b"x" * 1000)
        # The answer comes while almost all of the declared gigabyte is still unsent.
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401"), answer


def test_the_docs_are_public_and_no_route_serves_metrics(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/docs", timeout=10).status_code == 200
    # Metrics live on the metrics port, not on the API's.
    assert httpx.get(f"{stack.url}/metrics", headers=stack.headers, timeout=10).status_code == 404


def test_roles(stack: Stack, operator: httpx.Client) -> None:
    operator.post("/v1/collections", json={"name": "roles"})
    reader = new_key(operator, "default", "reader")
    writer = new_key(operator, "default", "writer")
    admin = new_key(operator, "default", "admin")
    with as_key(stack, reader["key"]) as c:
        assert c.post("/v1/search", json={"query": "q", "collection": "roles"}).status_code == 202
        assert c.get("/v1/collections/roles").status_code == 200
        refused = c.post("/v1/collections", json={"name": "nope"})
        assert refused.status_code == 403 and "'write'" in refused.json()["detail"]
        upload = c.post("/v1/collections/roles/documents", files={"file": ("a.txt", b"text")})
        assert upload.status_code == 403
        assert c.delete("/v1/collections/roles").status_code == 403
        assert c.get("/v1/keys").status_code == 403
    with as_key(stack, writer["key"]) as c:
        assert c.post("/v1/collections", json={"name": "roles-w"}).status_code == 201
        job = c.post("/v1/chat", json={"question": "q", "collection": "roles-w"}).json()["job_id"]
        assert c.delete(f"/v1/jobs/{job}").status_code in (200, 409)
        refused = c.post("/v1/keys", json={"name": "k", "tenant": "default", "role": "reader"})
        assert refused.status_code == 403 and "'manage_keys'" in refused.json()["detail"]
    with as_key(stack, admin["key"]) as c:
        mine = c.post("/v1/keys", json={"name": "k", "tenant": "default", "role": "reader"})
        assert mine.status_code == 201 and mine.json()["key"].startswith("dm_")
        assert c.post("/v1/keys", json={"name": "k", "tenant": "other", "role": "reader"}).status_code == 403
        listed = c.get("/v1/keys").json()["keys"]
        assert {k["tenant"] for k in listed} == {"default"}
        assert all("key" not in k for k in listed)
        elsewhere = new_key(operator, "other", "reader")
        assert c.delete(f"/v1/keys/{elsewhere['id']}").status_code == 404


def test_an_admin_grants_no_more_than_it_has(stack: Stack, operator: httpx.Client) -> None:
    wide = new_key(operator, "grants", "admin")
    narrow = new_key(
        operator,
        "grants",
        "admin",
        collections=["a"],
        requests_per_minute=60,
        expires_at="2098-01-01T00:00:00Z",
    )
    hidden = new_key(operator, "grants", "reader", collections=["secret-project"])
    with as_key(stack, narrow["key"]) as c:
        listed = {k["id"] for k in c.get("/v1/keys").json()["keys"]}
        assert narrow["id"] in listed and not listed & {wide["id"], hidden["id"]}
        # Keys out of its reach are not found: it cannot lock out a wider admin.
        assert c.delete(f"/v1/keys/{wide['id']}").status_code == 404
        grant = {"name": "g", "tenant": "grants", "role": "reader", "collections": ["a"]}
        faster = c.post("/v1/keys", json={**grant, "requests_per_minute": 61})
        assert faster.status_code == 403 and "at most 60 requests per minute" in faster.json()["detail"]
        later = c.post("/v1/keys", json={**grant, "expires_at": "2099-01-01T00:00:00Z"})
        assert later.status_code == 403
        made = c.post("/v1/keys", json=grant)
        assert made.status_code == 201, made.text
        assert made.json()["requests_per_minute"] == 60
        assert made.json()["expires_at"].startswith("2098-01-01")
        assert c.delete(f"/v1/keys/{made.json()['id']}").status_code == 200


def test_a_key_is_created_as_asked_and_its_secret_shown_once(operator: httpx.Client) -> None:
    created = new_key(
        operator,
        "acme",
        "reader",
        collections=["a"],
        requests_per_minute=30,
        expires_at="2099-01-01T00:00:00Z",
    )
    assert created["tenant"] == "acme" and created["role"] == "reader"
    assert created["collections"] == ["a"] and created["requests_per_minute"] == 30
    assert created["expires_at"].startswith("2099-01-01")
    listed = {k["id"]: k for k in operator.get("/v1/keys").json()["keys"]}
    assert "key" not in listed[created["id"]]
    assert listed[created["id"]]["collections"] == ["a"]
    bad = operator.post("/v1/keys", json={"name": "x", "tenant": "acme", "role": "root"})
    assert bad.status_code == 422


def test_an_expired_key_is_refused(stack: Stack, operator: httpx.Client) -> None:
    created = new_key(operator, "default", "reader", expires_at="2099-01-01T00:00:00Z")
    with as_key(stack, created["key"]) as c:
        assert c.get("/v1/collections").status_code == 200
        # Time passes: the record now says it expired a second ago.
        stack.r.hset(keys.api_key(created["id"]).record, "expires_at", repr(time.time() - 1))
        refused = c.get("/v1/collections")
        assert refused.status_code == 401 and refused.json()["detail"] == "API key expired"


def test_a_revoked_key_is_refused_by_every_gateway_at_once(
    stack: Stack, second: str, operator: httpx.Client
) -> None:
    created = new_key(operator, "default", "reader")
    with as_key(stack, created["key"]) as one, as_key(stack, created["key"], second) as two:
        assert one.get("/v1/collections").status_code == 200
        assert two.get("/v1/collections").status_code == 200
        assert operator.delete(f"/v1/keys/{created['id']}").json() == {"id": created["id"], "revoked": True}
        for c in (two, one):
            refused = c.get("/v1/collections")
            assert refused.status_code == 401 and refused.json()["detail"] == "API key revoked"
    assert created["id"] not in {k["id"] for k in operator.get("/v1/keys").json()["keys"]}


def test_the_rate_limit_is_shared_by_two_gateways(stack: Stack, second: str, operator: httpx.Client) -> None:
    created = new_key(operator, "default", "reader", requests_per_minute=4)
    with as_key(stack, created["key"]) as one, as_key(stack, created["key"], second) as two:
        answers = [c.get("/v1/collections") for c in (one, two, one, two, one)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["3", "2", "1", "0", "0"]
    assert all(a.headers["ratelimit-limit"] == "4" for a in answers)
    refused = answers[-1]
    assert int(refused.headers["retry-after"]) >= 1 and int(refused.headers["ratelimit-reset"]) >= 1
    assert "rate limit of 4 requests per minute" in refused.json()["detail"]


def test_the_openai_client_and_the_cli_work_with_a_tenant_key(stack: Stack, operator: httpx.Client) -> None:
    writer = new_key(operator, "clitenant", "writer")
    doc = stack.tmp / "otters.txt"
    doc.write_text("Sea otters hold hands while they sleep so they do not drift apart.")
    cli = [sys.executable, "-m", "libs.common.cli"]
    env = {k: v for k, v in stack.env.items() if k != "DOCUMIND_API_KEY"}
    ingest = subprocess.run(
        [*cli, "ingest", str(doc), "--collection", "notes", "--url", stack.url, "--api-key", writer["key"]],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ingest.returncode == 0, ingest.stderr
    asked = subprocess.run(
        [*cli, "ask", "What do sea otters hold?", "--collection", "notes", "--url", stack.url],
        check=False,
        cwd=ROOT,
        env={**env, "DOCUMIND_API_KEY": writer["key"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert asked.returncode == 0, asked.stderr
    assert "otters.txt" in asked.stdout
    # The operator's default tenant has no such collection: it is the tenant's own.
    assert operator.get("/v1/collections/notes").status_code == 404

    reader = new_key(operator, "clitenant", "reader")
    client = openai.OpenAI(api_key=reader["key"], base_url=f"{stack.url}/v1", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["notes"]
    reply = client.chat.completions.create(model="notes", messages=[{"role": "user", "content": "otters?"}])
    assert reply.choices[0].message.content
    bogus = openai.OpenAI(api_key=BOGUS_KEY, base_url=f"{stack.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bogus.models.list()


def test_no_secret_in_the_logs_and_jobs_name_their_key(stack: Stack, operator: httpx.Client) -> None:
    writer = new_key(operator, "logtenant", "writer")
    with as_key(stack, writer["key"]) as c:
        upload = c.post("/v1/collections/logs/documents", files={"file": ("l.txt", b"log lines tell")})
        assert upload.status_code == 202, upload.text
        job = c.get(f"/v1/jobs/{upload.json()['job_id']}", params={"wait": 30}).json()
        assert job["status"] == "done", job
    record = stack.r.hgetall(keys.job(upload.json()["job_id"]).hash)
    assert record[b"tenant"] == b"logtenant" and record[b"key_id"] == writer["id"].encode()
    logs = "".join(p.read_text(errors="replace") for p in Path(stack.tmp).glob("*.log"))
    assert writer["key"] not in logs
    secret = writer["key"].rsplit("_", 1)[1]
    assert secret not in logs
    assert f'"key_id": "{writer["id"]}"' in logs
