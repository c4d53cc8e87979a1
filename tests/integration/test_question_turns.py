"""Questions take turns between tenants against the real services: one tenant's queued
questions do not queue another tenant's question behind them (``fair_read.py``).

With the generator stopped, tenant ``evil`` queues a dozen chats and tenant ``victim``
one after them; a generator that reads two questions a batch, one batch at a time, is
then started. The victim's answer must come before most of the questions it was queued
behind: read first in, first out, it would come last.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from libs.common import constants, keys
from libs.common.envelope import Envelope
from libs.common.valkey_server import ValkeyServer
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(240)

FLOOD = 12
DOC = "The night ferry to the island leaves at ten past eleven from the north pier."


@pytest.fixture
def stack(tmp_path: Any) -> Iterator[Stack]:
    with ValkeyServer(tmp_path / "valkey") as server:
        s = Stack(server.url, tmp_path)
        try:
            yield s
        finally:
            s.stop()


def upload(stack: Stack, c: httpx.Client) -> None:
    resp = c.post("/v1/collections/docs/documents", files={"file": ("ferry.txt", DOC.encode())})
    assert resp.status_code == 202, resp.text
    assert stack.wait_job(resp.json()["job_id"], headers=c.headers)["status"] == "done"


def ask(c: httpx.Client, n: int, tenant: str) -> list[str]:
    ids = []
    for i in range(n):
        body = {"question": f"When does the ferry of {tenant} leave? #{i}", "collection": "docs"}
        resp = c.post("/v1/chat", json=body)
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["job_id"])
    return ids


def wait_queued_at_generator(stack: Stack, tenant: str, job_ids: list[str]) -> None:
    """Until every job of ``job_ids`` is queued on ``tenant``'s generator stream."""
    stream = stack.partition_of("docs", tenant).stream(constants.GENERATOR, constants.INTERACTIVE, tenant)
    missing, last = set(job_ids), "0-0"
    while missing:
        reply: Any = stack.r.xread({stream: last}, block=60_000)
        assert reply, f"{sorted(missing)} never reached the generator; logs in {stack.tmp}"
        for mid, fields in reply[0][1]:
            last = mid
            missing.discard(Envelope.loads(fields[constants.ENVELOPE_FIELD.encode()]).job_id)


def done_id(stack: Stack, job_id: str) -> tuple[int, int]:
    """Where the job's final write falls in the server's order (its done entry's id)."""
    entries: Any = stack.r.xrange(keys.job(job_id).done)
    ms, seq = entries[0][0].decode().split("-")
    return int(ms), int(seq)


def test_a_question_is_answered_before_another_tenants_queued_questions(stack: Stack) -> None:
    for name in ("embedder", "retriever", "gateway"):
        stack.start(name)
    generator = stack.start("generator")
    stack.wait_ready()
    with stack.tenant_client("evil") as evil, stack.tenant_client("victim") as victim:
        upload(stack, evil)
        upload(stack, victim)
        generator.send_signal(signal.SIGTERM)
        assert generator.wait(30) == 0

        flood = ask(evil, FLOOD, "evil")
        wait_queued_at_generator(stack, "evil", flood)
        (question,) = ask(victim, 1, "victim")
        wait_queued_at_generator(stack, "victim", [question])

        stack.start("generator", DOCUMIND_READ_COUNT="2", DOCUMIND_CONCURRENCY="1")
        answer = stack.wait_job(question, headers=victim.headers)
        assert answer["status"] == "done", answer
        assert answer["result"]["answer"]
        for job_id in flood:
            assert stack.wait_job(job_id, headers=evil.headers)["status"] == "done"

    # Answered in the generator's first batch, beside one of the flood's: the rest of the
    # flood, queued before it, is answered after it.
    after = sum(done_id(stack, job_id) > done_id(stack, question) for job_id in flood)
    assert after >= FLOOD - 2, (
        f"only {after} of the {FLOOD} questions queued before it were answered after it"
    )
