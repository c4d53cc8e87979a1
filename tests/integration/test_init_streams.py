"""``documind init-streams`` on a real Valkey (one server, and a cluster): every partition's
consumer groups exist before any worker has started."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from libs.common.cli import main
from libs.common.constants import BULK, STAGE_LANES
from libs.common.decode import as_text
from libs.common.keys import KeySpace, Partition, group_name
from libs.common.valkey_server import free_port
from tests.integration.backends import Backend, sync_client


@pytest.fixture
def valkey(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """A client of the backend, whose settings the command reads from the environment."""
    monkeypatch.setenv("DOCUMIND_VALKEY_URL", backend.url)
    for name, value in backend.env.items():
        monkeypatch.setenv(name, value)
    client = sync_client(backend.url, cluster=backend.cluster)
    try:
        yield client
    finally:
        client.close()


def groups_of(valkey: redis.Redis, stream: str) -> dict[str, Any]:
    try:
        groups: Any = valkey.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream
        return {}
    return {as_text(g["name"]): g for g in groups}


def missing_groups(valkey: redis.Redis, partitions: int) -> list[str]:
    """What the gateway's /readyz looks for: each stage's group on each lane's stream."""
    return [
        partition.stream(stage, lane)
        for partition in KeySpace(partitions).all()
        for stage, lanes in STAGE_LANES.items()
        for lane in lanes
        if group_name(stage) not in groups_of(valkey, partition.stream(stage, lane))
    ]


def test_creates_every_group_of_every_partition(
    valkey: redis.Redis, backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(missing_groups(valkey, 4)) == 4 * 5
    assert main(["init-streams", "--partitions", "4"]) == 0
    assert missing_groups(valkey, 4) == []
    assert not groups_of(valkey, Partition(4).stream("embedder", "interactive"))
    out = capsys.readouterr().out
    assert out.rstrip().endswith("20 consumer groups ready in 4 partition(s)")
    assert f"{Partition(3).stream('generator', 'interactive')}\tdocumind:generator" in out
    # Without --partitions: DOCUMIND_PARTITIONS (the cluster backend sets 3; unset, 1).
    assert main(["init-streams"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"in {backend.partitions} partition(s)")


def test_keeps_queued_entries_and_existing_groups(valkey: redis.Redis) -> None:
    stream = Partition(0).stream("embedder", "interactive")
    valkey.xadd(stream, {"data": "queued before the group"})
    assert main(["init-streams"]) == 0
    # The group starts at id 0: a worker that starts later still reads the entry.
    assert groups_of(valkey, stream)["documind:embedder"]["lag"] == 1
    read: Any = valkey.xreadgroup("documind:embedder", "c1", {stream: ">"}, count=10)
    assert len(read[0][1]) == 1
    # Running it again leaves the group (its position, its pending entry) as it is.
    assert main(["init-streams"]) == 0
    group = groups_of(valkey, stream)["documind:embedder"]
    assert (group["pending"], group["lag"]) == (1, 0)


def test_creates_the_groups_of_tenants_already_queued(valkey: redis.Redis) -> None:
    p1 = Partition(1)
    valkey.sadd(p1.bulk_tenants("retriever"), "acme")
    valkey.xadd(p1.stream("retriever", BULK, "acme"), {"data": "x"})
    assert main(["init-streams", "--partitions", "2"]) == 0
    assert groups_of(valkey, p1.stream("retriever", BULK, "acme"))["documind:retriever"]["lag"] == 1
    # Only the stage whose set names the tenant.
    assert not groups_of(valkey, p1.stream("embedder", BULK, "acme"))


@pytest.mark.parametrize("cluster", ["false", "true"])
def test_an_unreachable_valkey_fails_with_its_reason(
    cluster: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCUMIND_VALKEY_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("DOCUMIND_VALKEY_CLUSTER", cluster)
    assert main(["init-streams"]) == 2
    assert "documind: valkey:" in capsys.readouterr().err
