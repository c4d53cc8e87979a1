"""Tenants against the real services: two tenants' things never meet, a key scoped to
some collections sees only those, one tenant cannot fill the queues, and the edge
(Host, CORS, metrics) is closed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from libs.common.admin_key import auth_headers
from libs.common.valkey_server import ValkeyServer
from tests.integration.harness import Stack

CORS_ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("tenants")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp, DOCUMIND_CORS_ORIGINS=CORS_ORIGIN)
        try:
            s.start_all()
            yield s
        finally:
            s.stop()


def key_for(stack: Stack, tenant: str, role: str = "writer", **extra: Any) -> httpx.Client:
    """A client of the gateway with a new key of ``tenant``."""
    with stack.client(timeout=30) as operator:
        body = {"name": f"{tenant}-{role}", "tenant": tenant, "role": role, **extra}
        resp = operator.post("/v1/keys", json=body)
    assert resp.status_code == 201, resp.text
    return httpx.Client(base_url=stack.url, headers=auth_headers(resp.json()["key"]), timeout=30)


def upload(stack: Stack, c: httpx.Client, collection: str, name: str, text: str) -> dict[str, Any]:
    resp = c.post(f"/v1/collections/{collection}/documents", files={"file": (name, text.encode())})
    assert resp.status_code == 202, resp.text
    accepted: dict[str, Any] = resp.json()
    assert stack.wait_job(accepted["job_id"], headers=c.headers)["status"] == "done"
    return accepted


def answer_of(c: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = c.post(path, json=body)
    assert resp.status_code == 202, resp.text
    job = c.get(f"/v1/jobs/{resp.json()['job_id']}", params={"wait": 30}).json()
    assert job["status"] == "done", job
    result: dict[str, Any] = job["result"]
    return result


def test_two_tenants_with_a_collection_of_one_name_never_meet(stack: Stack) -> None:
    with key_for(stack, "acme") as acme, key_for(stack, "globex") as globex:
        mine = upload(stack, acme, "docs", "acme.txt", "The acme warehouse opens at seven in the morning.")
        theirs = upload(stack, globex, "docs", "globex.txt", "The globex warehouse opens at noon sharp.")
        secret = upload(stack, globex, "secret", "plans.txt", "Globex plans a moon base.")
        question = "When does the warehouse open?"

        # Collections and documents: each sees its own.
        assert [c["name"] for c in acme.get("/v1/collections").json()["collections"]] == ["docs"]
        assert [c["name"] for c in globex.get("/v1/collections").json()["collections"]] == ["docs", "secret"]
        listed = acme.get("/v1/collections/docs/documents").json()["documents"]
        assert [d["document_id"] for d in listed] == [mine["document_id"]]
        for path in ("/v1/collections/secret", "/v1/collections/secret/documents"):
            assert acme.get(path).status_code == 404
        assert acme.get(f"/v1/documents/{theirs['document_id']}").status_code == 404
        assert acme.get(f"/v1/documents/{mine['document_id']}").status_code == 200

        # Jobs and their events.
        for path in (f"/v1/jobs/{theirs['job_id']}", f"/v1/jobs/{theirs['job_id']}/events"):
            assert acme.get(path).status_code == 404, path
        assert acme.get(f"/v1/jobs/{mine['job_id']}").status_code == 200

        # Search, chat and the OpenAI facade answer from the asker's documents only.
        hits = answer_of(acme, "/v1/search", {"query": question, "collection": "docs"})["hits"]
        assert {h["document_id"] for h in hits} == {mine["document_id"]}
        chat = answer_of(acme, "/v1/chat", {"question": question, "collection": "docs"})
        assert {c["document_id"] for c in chat["citations"]} <= {mine["document_id"]}
        assert "globex" not in chat["answer"].lower()
        completion = acme.post(
            "/v1/chat/completions",
            json={"model": "docs", "messages": [{"role": "user", "content": question}]},
        )
        assert completion.status_code == 200, completion.text
        cited = {c["document_id"] for c in completion.json()["documind"]["citations"]}
        assert cited <= {mine["document_id"]}
        assert [m["id"] for m in acme.get("/v1/models").json()["data"]] == ["docs"]
        assert acme.get("/v1/models/secret").status_code == 404
        assert acme.post("/v1/chat", json={"question": "q", "collection": "secret"}).status_code == 404

        # Cancel and delete: another tenant's things are not found, and stay.
        pending = globex.post("/v1/chat", json={"question": "slow?", "collection": "secret"}).json()
        assert acme.delete(f"/v1/jobs/{pending['job_id']}").status_code == 404
        assert acme.delete(f"/v1/documents/{theirs['document_id']}").status_code == 404
        assert acme.delete("/v1/collections/secret").status_code == 404
        assert globex.get(f"/v1/documents/{theirs['document_id']}").json()["status"] == "ready"
        assert globex.get("/v1/collections/secret").json()["documents"] == 1
        assert secret["document_id"]

        # Deleting one's own collection leaves the other tenant's namesake whole.
        assert acme.delete("/v1/collections/docs").status_code == 200
        hits = answer_of(globex, "/v1/search", {"query": question, "collection": "docs"})["hits"]
        assert {h["document_id"] for h in hits} == {theirs["document_id"]}


def test_a_scoped_key_sees_only_its_collections(stack: Stack) -> None:
    with key_for(stack, "scoped") as owner:
        upload(stack, owner, "open", "open.txt", "Open notes about tides.")
        hidden = upload(stack, owner, "closed", "closed.txt", "Closed notes about salaries.")
        with key_for(stack, "scoped", "writer", collections=["open"]) as scoped:
            assert [c["name"] for c in scoped.get("/v1/collections").json()["collections"]] == ["open"]
            assert [m["id"] for m in scoped.get("/v1/models").json()["data"]] == ["open"]
            assert scoped.get("/v1/collections/closed").status_code == 404
            assert scoped.get(f"/v1/documents/{hidden['document_id']}").status_code == 404
            assert scoped.get(f"/v1/jobs/{hidden['job_id']}").status_code == 404
            assert scoped.post("/v1/search", json={"query": "q", "collection": "closed"}).status_code == 404
            assert scoped.post("/v1/search", json={"query": "q", "collection": "open"}).status_code == 202
            refused = scoped.post("/v1/collections/closed/documents", files={"file": ("x.txt", b"x")})
            assert refused.status_code == 403
            # Its keys cannot reach further than itself either.
            assert scoped.post("/v1/collections", json={"name": "new"}).status_code == 403


def test_the_host_header_is_checked(stack: Stack) -> None:
    ok = httpx.get(f"{stack.url}/v1/collections", headers={**stack.headers, "Host": "localhost"}, timeout=10)
    assert ok.status_code == 200
    rebound = httpx.get(f"{stack.url}/v1/collections", headers={**stack.headers, "Host": "evil.example"})
    assert rebound.status_code == 400
    assert httpx.get(f"{stack.url}/healthz", headers={"Host": "evil.example"}).status_code == 400


def test_cors_only_for_the_listed_origins(stack: Stack) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = httpx.options(f"{stack.url}/v1/chat", headers={"Origin": CORS_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == CORS_ORIGIN
    other = httpx.options(f"{stack.url}/v1/chat", headers={"Origin": "https://evil.example", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    plain = httpx.get(
        f"{stack.url}/v1/collections", headers={**stack.headers, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in plain.headers


def test_cors_is_off_by_default_and_a_cross_site_upload_is_refused(tmp_path_factory: Any) -> None:
    tmp = tmp_path_factory.mktemp("nocors")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp)
        try:
            s.start("gateway")
            s.wait_healthy()
            origin = {"Origin": "https://evil.example"}
            preflight = httpx.options(
                f"{s.url}/v1/collections/docs/documents",
                headers={**origin, "Access-Control-Request-Method": "POST"},
            )
            assert "access-control-allow-origin" not in preflight.headers
            # A form post from another site carries no key: refused, nothing stored.
            form = httpx.post(
                f"{s.url}/v1/collections/docs/documents", headers=origin, files={"file": ("a.txt", b"a")}
            )
            assert form.status_code == 401
            assert s.r.dbsize() == 0
        finally:
            s.stop()


def test_metrics_listen_on_loopback_off_the_api_port(stack: Stack) -> None:
    logs = {p.name: p.read_text(errors="replace") for p in stack.tmp.glob("*.log")}
    for name in ("gateway", "embedder", "retriever", "generator"):
        text = next(v for k, v in logs.items() if k.startswith(name))
        (host, port) = re.findall(r"metrics on ([^\s:]+):(\d+)/metrics", text)[0]
        assert host == "127.0.0.1", name
        assert int(port) != stack.port
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "# TYPE" in body
    gateway = next(v for k, v in logs.items() if k.startswith("gateway"))
    port = re.findall(r"metrics on [^\s:]+:(\d+)/metrics", gateway)[0]
    assert "documind_http_requests_total" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def test_a_tenants_jobs_in_flight_are_capped_across_gateways(tmp_path_factory: Any) -> None:
    tmp = tmp_path_factory.mktemp("inflight")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp, DOCUMIND_TENANT_MAX_INFLIGHT="2")
        try:
            # Two gateways and, for now, no worker: jobs stay queued.
            s.start("gateway")
            s.wait_healthy()
            first = s.url
            s.start("gateway")
            s.wait_healthy()
            urls = [first, s.url]
            with s.client() as operator:
                keys = [
                    operator.post("/v1/keys", json={"name": t, "tenant": t, "role": "writer"}).json()["key"]
                    for t in ("busy", "calm")
                ]
            busy = [httpx.Client(base_url=u, headers=auth_headers(keys[0]), timeout=30) for u in urls]
            calm = httpx.Client(base_url=first, headers=auth_headers(keys[1]), timeout=30)
            for c in (busy[0], calm):
                assert c.post("/v1/collections", json={"name": "q"}).status_code == 201

            def ask(c: httpx.Client) -> httpx.Response:
                return c.post("/v1/chat", json={"question": "anyone?", "collection": "q"})

            accepted = [ask(busy[0]), ask(busy[1])]
            assert [a.status_code for a in accepted] == [202, 202]
            refused = ask(busy[1])
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            assert "2 jobs queued or running" in refused.json()["detail"]
            assert ask(busy[0]).status_code == 429
            # Another tenant is not held up by this one.
            assert ask(calm).status_code == 202
            # A cancelled job no longer counts.
            assert busy[0].delete(f"/v1/jobs/{accepted[0].json()['job_id']}").status_code == 200
            third = ask(busy[1])
            assert third.status_code == 202
            assert ask(busy[0]).status_code == 429
            # Workers finish the queued jobs: finished jobs no longer count either.
            for name in ("embedder", "retriever", "generator"):
                s.start(name)
            for job in (accepted[1], third):
                assert s.wait_job(job.json()["job_id"], headers=busy[0].headers)["status"] == "done"
            assert [ask(busy[0]).status_code, ask(busy[1]).status_code] == [202, 202]
            for c in (*busy, calm):
                c.close()
        finally:
            s.stop()


def test_a_tenants_questions_in_flight_have_their_own_cap(tmp_path_factory: Any) -> None:
    # One tenant's flood of questions must not queue every other tenant's behind it:
    # the interactive lane (questions) is shared, so each tenant may have only
    # TENANT_MAX_INTERACTIVE questions in it, while its uploads count only against
    # TENANT_MAX_INFLIGHT.
    tmp = tmp_path_factory.mktemp("interactive")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp, DOCUMIND_TENANT_MAX_INTERACTIVE="2")
        try:
            s.start("gateway")  # and, for now, no worker: jobs stay queued
            s.wait_healthy()
            with s.client() as operator:
                keys = [
                    operator.post("/v1/keys", json={"name": t, "tenant": t, "role": "writer"}).json()["key"]
                    for t in ("busy", "calm")
                ]
            busy = httpx.Client(base_url=s.url, headers=auth_headers(keys[0]), timeout=30)
            calm = httpx.Client(base_url=s.url, headers=auth_headers(keys[1]), timeout=30)
            for c in (busy, calm):
                assert c.post("/v1/collections", json={"name": "q"}).status_code == 201

            def ask(c: httpx.Client) -> httpx.Response:
                return c.post("/v1/chat", json={"question": "anyone?", "collection": "q"})

            accepted = [ask(busy), ask(busy)]
            assert [a.status_code for a in accepted] == [202, 202]
            refused = ask(busy)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            assert "2 questions queued or running" in refused.json()["detail"]
            # Its uploads and the other tenant's questions go on.
            upload = busy.post("/v1/collections/q/documents", files={"file": ("f.txt", b"Ferry at 9.")})
            assert upload.status_code == 202, upload.text
            assert ask(calm).status_code == 202
            # A cancelled question no longer counts.
            assert busy.delete(f"/v1/jobs/{accepted[0].json()['job_id']}").status_code == 200
            third = ask(busy)
            assert third.status_code == 202
            assert ask(busy).status_code == 429
            # Answered questions no longer count either.
            for name in ("embedder", "retriever", "generator"):
                s.start(name)
            for job in (accepted[1], third):
                assert s.wait_job(job.json()["job_id"], headers=busy.headers)["status"] == "done"
            assert [ask(busy).status_code, ask(busy).status_code] == [202, 202]
            for c in (busy, calm):
                c.close()
        finally:
            s.stop()
