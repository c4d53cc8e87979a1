"""Several partitions, on one Valkey and on a Valkey Cluster: every collection lives in
its own partition's slot.

The real services run with ``DOCUMIND_PARTITIONS=3``, on one server and on the
cluster (``module_backend``); collections spread over the
partitions, and uploads, questions, replaces, cancels and deletes work in each of
them. Every key the stack wrote carries a partition tag, and a job's keys, its
collection's and its document's share one (the slot audit of the session checks
every script call on top).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.common import keys, slots
from libs.common.keys import KeySpace
from tests.integration.backends import Backend
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(240)

PARTITIONS = 3
SPACE = KeySpace(PARTITIONS)
TEXT = "The {name} ferry leaves at {hour}. Tickets are sold at the pier office of {name}."


def collections_over_every_partition() -> list[str]:
    """Collection names chosen so that each partition holds at least one."""
    found: dict[int, str] = {}
    for n in range(100):
        name = f"port{n}"
        found.setdefault(SPACE.collection(name).partition.index, name)
        if len(found) == PARTITIONS:
            return [found[i] for i in range(PARTITIONS)]
    raise AssertionError("no spread over the partitions")


@pytest.fixture(scope="module")
def stack(module_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("partitions")
    s = Stack(module_backend.url, tmp, **{**module_backend.env, "DOCUMIND_PARTITIONS": str(PARTITIONS)})
    try:
        s.start_all()
        yield s
    finally:
        s.stop()


def test_every_partition_serves_uploads_questions_replaces_and_deletes(stack: Stack) -> None:
    names = collections_over_every_partition()
    with stack.client(timeout=30) as client:
        uploaded = {}
        for hour, name in enumerate(names, start=6):
            body = TEXT.format(name=name, hour=f"{hour} o'clock").encode()
            resp = client.post(f"/v1/collections/{name}/documents", files={"file": ("ferry.txt", body)})
            assert resp.status_code == 202, resp.text
            accepted = resp.json()
            partition = SPACE.collection(name).partition
            assert keys.partition_of_id(accepted["job_id"]) == partition
            assert keys.partition_of_id(accepted["document_id"]) == partition
            assert stack.wait_job(accepted["job_id"])["status"] == "done"
            uploaded[name] = accepted
        listed = {c["name"] for c in client.get("/v1/collections").json()["collections"]}
        assert set(names) <= listed

        for hour, name in enumerate(names, start=6):
            asked = client.post(
                "/v1/chat", json={"collection": name, "question": "When does the ferry leave?"}
            )
            assert asked.status_code == 202
            job = stack.wait_job(asked.json()["job_id"])
            assert job["status"] == "done", job
            assert f"{hour} o'clock" in job["result"]["answer"]
            assert {c["document_id"] for c in job["result"]["citations"]} == {uploaded[name]["document_id"]}

        # A replace in one partition, a delete in another, a cancel in the third.
        first, second, third = names
        body = TEXT.format(name=first, hour="noon").encode()
        replaced = client.post(
            f"/v1/collections/{first}/documents",
            params={"replace": "true"},
            files={"file": ("ferry.txt", body)},
        ).json()
        assert replaced["documents"][0]["replaces"] == [uploaded[first]["document_id"]]
        assert stack.wait_job(replaced["job_id"])["status"] == "done"
        assert client.get(f"/v1/documents/{uploaded[first]['document_id']}").status_code == 404

        gone = client.delete(f"/v1/documents/{uploaded[second]['document_id']}")
        assert gone.status_code == 200
        assert stack.wait_job(gone.json()["job_id"])["status"] == "done"
        assert client.get(f"/v1/collections/{second}/documents").json()["documents"] == []

        dropped = client.delete(f"/v1/collections/{third}")
        assert dropped.status_code == 200 and dropped.json()["documents"] == 1
        assert client.get(f"/v1/collections/{third}").status_code == 404


def test_every_key_the_stack_wrote_is_in_a_partition_or_a_cache(stack: Stack) -> None:
    found = [k.decode() for k in stack.r.scan_iter(match=f"{keys.PREFIX}:*", count=1000)]
    assert found
    tags = {SPACE.all()[i].tag for i in range(PARTITIONS)}
    outside = [k for k in found if k.split(":")[1] not in tags and not k.startswith(f"{keys.PREFIX}:cache:")]
    assert not outside, outside[:5]
    used = {k.split(":")[1] for k in found} & tags
    assert used == tags  # every partition got work
    # A partition's keys all hash to its slot.
    for tag in used:
        assert len(slots.slots_of([k for k in found if k.split(":")[1] == tag])) == 1
