"""Fair bulk work against the real services (issue 13, point 2): one tenant's backlog of
uploads does not queue another tenant's small upload behind it.

Tenant ``bulky`` queues hundreds of uploads (each parsed in the sandbox, so the backlog
takes seconds to work off); tenant ``quiet`` then uploads one small file. Its document
must be ready while most of the backlog it was queued behind is still waiting: read
first-in first-out, it would be ready only after the last of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from libs.common.valkey_server import ValkeyServer
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(300)

BACKLOG = 300
PER_REQUEST = 100
TEXT = "The quarterly report lists the freight volumes of every harbour, berth by berth. " * 40


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("fair")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(
            server.url,
            tmp,
            # Every upload goes through the parse sandbox: the backlog costs real time.
            DOCUMIND_PARSE_INLINE_BYTES="0",
            DOCUMIND_READ_COUNT="8",
        )
        try:
            s.start_all()
            yield s
        finally:
            s.stop()


def statuses(c: httpx.Client, collection: str) -> list[str]:
    docs: list[dict[str, Any]] = c.get(f"/v1/collections/{collection}/documents").json()["documents"]
    return [d["status"] for d in docs]


def test_a_small_upload_is_not_queued_behind_another_tenants_backlog(stack: Stack) -> None:
    with stack.tenant_client("bulky", timeout=60) as bulky, stack.tenant_client("quiet", timeout=60) as quiet:
        backlog: list[str] = []
        for first in range(0, BACKLOG, PER_REQUEST):
            files = [
                ("file", (f"report-{i}.txt", f"Report {i}. {TEXT}".encode()))
                for i in range(first, first + PER_REQUEST)
            ]
            resp = bulky.post("/v1/collections/reports/documents", files=files)
            assert resp.status_code == 202, resp.text
            backlog += [d["job_id"] for d in resp.json()["documents"]]

        resp = quiet.post(
            "/v1/collections/notes/documents",
            files={"file": ("note.txt", b"The night ferry to the island leaves at ten past eleven.")},
        )
        assert resp.status_code == 202, resp.text
        behind = sum(1 for s in statuses(bulky, "reports") if s != "ready")
        assert behind > BACKLOG // 3, f"the backlog was worked off while it was queued ({behind} left)"
        job = stack.wait_job(resp.json()["job_id"], timeout_s=120, headers=quiet.headers)
        assert job["status"] == "done", job
        # The moment the small upload is ready, most of what it was queued behind still
        # waits (first in, first out, none would).
        waiting = sum(1 for s in statuses(bulky, "reports") if s != "ready")
        assert waiting > behind // 2, f"only {waiting} of the {behind} it was queued behind still wait"

        # It is searchable at once, and the backlog is worked off all the same.
        question = {"query": "When does the night ferry leave?", "collection": "notes"}
        hits = quiet.post("/v1/search", json=question)
        assert hits.status_code == 202, hits.text
        found = stack.wait_job(hits.json()["job_id"], headers=quiet.headers)["result"]["hits"]
        assert [h["filename"] for h in found] == ["note.txt"]
        for job_id in backlog:
            assert stack.wait_job(job_id, timeout_s=120, headers=bulky.headers)["status"] == "done"
        assert statuses(bulky, "reports") == ["ready"] * BACKLOG
