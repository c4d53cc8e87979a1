"""Fixtures of the end-to-end tests: Chromium under Playwright against the real stack.

The stack is the integration tests' (``Stack``: every service a child process, a real
Valkey server, the real embedding model), started once for these tests, its gateway
serving the built web app at ``/``. Without ``/usr/bin/chromium`` every test here is
skipped with the reason; without a build of the web app too (``make test`` builds it).
The stack and the browser live as long as this package's tests (package scope), not for
the rest of the session.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from libs.common.admin_key import auth_headers
from libs.common.valkey_server import ValkeyServer
from tests.e2e.browser import AXE, CHROMIUM, DIST_INDEX, FLAGS, NO_CHROMIUM, NOT_BUILT, VIEWPORT, Complaints
from tests.e2e.documents import write_documents
from tests.e2e.slow_llm import SlowLLM
from tests.integration.harness import Stack

# Playwright's own waits (expect, clicks): uploads and answers on a loaded 2-core machine.
EXPECT_TIMEOUT_MS = 30_000
GENERATOR_STOP_S = 15


@pytest.fixture(scope="package")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    if not DIST_INDEX.exists() or not AXE.exists():
        pytest.skip(NOT_BUILT)
    return CHROMIUM


@pytest.fixture(scope="package")
def playwright(chromium: Path) -> Iterator[Playwright]:
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=list(FLAGS))
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="package")
def stack(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e-stack")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp, DOCUMIND_EMBEDDINGS="local")
        try:
            s.start_all()
            yield s
        finally:
            s.stop()


@pytest.fixture(scope="package")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The PDF and the Markdown note, as uploaded."""
    return write_documents(tmp_path_factory.mktemp("e2e-files"))


LIBRARY = "harbour-library"


@pytest.fixture(scope="package")
def library(stack: Stack, files: tuple[Path, Path]) -> str:
    """A collection holding both documents, uploaded through the API and ready."""
    upload_ready(stack, LIBRARY, files)
    return LIBRARY


def make_key(stack: Stack, role: str, name: str) -> str:
    """A new key of ``role`` in the operator's tenant (``default``), made with POST /v1/keys."""
    with stack.client(timeout=10) as client:
        resp = client.post("/v1/keys", json={"name": name, "tenant": "default", "role": role})
    assert resp.status_code == 201, resp.text
    key: str = resp.json()["key"]
    return key


@pytest.fixture(scope="package")
def writer_key(stack: Stack) -> str:
    return make_key(stack, "writer", "e2e-writer")


@pytest.fixture(scope="package")
def reader_key(stack: Stack) -> str:
    return make_key(stack, "reader", "e2e-reader")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile with axe-core in every page (before the app's scripts,
    so the page's Content-Security-Policy stays as served)."""
    ctx = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC", color_scheme="light")
    ctx.set_default_timeout(EXPECT_TIMEOUT_MS)
    ctx.add_init_script(path=str(AXE))
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def complaints() -> Complaints:
    return Complaints()


@pytest.fixture
def page(context: BrowserContext, complaints: Complaints) -> Iterator[Page]:
    page = context.new_page()
    complaints.watch(page)
    yield page
    assert not complaints.errors, "the page complained:\n" + "\n".join(complaints.errors)


class Generators:
    """The stack's generator, swapped for one answering with an LLM and back."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def _running(self) -> list[subprocess.Popen[bytes]]:
        command = [sys.executable, "-m", "services.generator"]
        return [p for p in self.stack.procs if p.poll() is None and p.args == command]

    def replace(self, **env: str) -> None:
        for proc in self._running():
            proc.send_signal(signal.SIGTERM)
            proc.wait(GENERATOR_STOP_S)
        self.stack.start("generator", **env)
        self.stack.wait_ready()


@pytest.fixture
def slow_llm_generator(stack: Stack) -> Iterator[SlowLLM]:
    """The generator answers with :class:`SlowLLM` until the test ends, then extractively again."""
    generators = Generators(stack)
    with SlowLLM() as llm:
        generators.replace(
            DOCUMIND_LLM_BASE_URL=llm.base_url, DOCUMIND_LLM_API_KEY="e2e", DOCUMIND_LLM_MODEL="slow"
        )
        try:
            yield llm
        finally:
            llm.closing.set()
            generators.replace()


def upload_ready(stack: Stack, collection: str, paths: tuple[Path, ...]) -> dict[str, str]:
    """Uploads ``paths`` to ``collection`` through the API (as the operator) and waits until
    each is ready; returns each file's document id."""
    ids: dict[str, str] = {}
    with stack.client(timeout=30) as client:
        files = [("file", (p.name, p.read_bytes())) for p in paths]
        resp = client.post(f"/v1/collections/{collection}/documents", files=files)
        assert resp.status_code == 202, resp.text
        for doc in resp.json()["documents"]:
            job = stack.wait_job(doc["job_id"])
            assert job["status"] == "done", job
            ids[doc["filename"]] = doc["document_id"]
    return ids


def api_get(stack: Stack, path: str, key: str | None = None) -> httpx.Response:
    headers = auth_headers(key) if key else stack.headers
    return httpx.get(f"{stack.url}{path}", headers=headers, timeout=10)
