"""Every script call and transaction stays in one cluster slot.

``tests/conftest.py`` has every process of the session (this one, and every
service process the integration tests start) note the keys of each script call
and MULTI/EXEC in one audit file. This test runs last (its name sorts last) and
fails on any call whose keys hash to two slots: on a Valkey Cluster that call
would be refused with CROSSSLOT. Slots are computed as Valkey does (CRC16 of the
hash tag); a test below checks that against a real ``valkey-server`` in cluster mode.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis

from libs.common import keys, scripts, slots
from libs.common.keys import KeySpace, Partition
from libs.common.valkey_server import ValkeyServer, free_ports

ROOT = Path(__file__).resolve().parents[1]


def _script_names() -> set[str]:
    return {cls.name for cls in scripts._Script.__subclasses__()}


def _ran_all_integration_tests(session: pytest.Session) -> bool:
    ran = {Path(str(item.path)).name for item in session.items}
    files = {p.name for p in (ROOT / "tests" / "integration").glob("test_*.py")}
    return files <= ran


def test_no_script_call_or_transaction_spans_two_slots(request: pytest.FixtureRequest) -> None:
    path = os.environ.get(slots.AUDIT_ENV)
    if not path or not Path(path).exists():
        pytest.skip("no audit: run it in one session with the integration tests")
    calls = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    seen = {c["call"] for c in calls}
    if "SUBMIT" not in seen:
        pytest.skip("no job was submitted in this session: run it with the integration tests")
    crossing = [c for c in calls if len(c["slots"]) > 1]
    assert not crossing, f"{len(crossing)} calls span two slots, e.g. {crossing[:3]}"
    for c in calls:
        # The audit's own slots are recomputed here, not trusted.
        assert len(slots.slots_of(c["keys"])) == 1, c
    if _ran_all_integration_tests(request.session):
        missing = _script_names() - seen
        assert not missing, f"scripts never called by the integration tests: {sorted(missing)}"
        assert "MULTI hidden" in seen


def test_a_partition_and_everything_in_it_hash_to_one_slot() -> None:
    space = KeySpace(partitions=4)
    for partition in space.all():
        coll = keys.CollectionKeys("acme", "docs", partition)
        job = keys.job(keys.new_id(partition))
        doc = keys.document(keys.new_id(partition))
        names = [
            partition.stream("embedder", "bulk", "acme"),
            partition.delayed("embedder", "bulk", "acme"),
            partition.bulk_tenants("embedder"),
            partition.delayed("retriever", "interactive"),
            partition.dead_letters(),
            coll.registry,
            coll.meta,
            coll.filename("a {weird} name.pdf"),
            coll.answer("1.0", "3", "ab"),
            job.hash,
            job.done,
            job.events,
            doc.hash,
            doc.blob,
        ]
        assert doc.partition == partition and keys.partition_of_id(job.job_id) == partition
        assert slots.slots_of(names) == {slots.key_slot(partition.key("x"))}
    assert len({slots.key_slot(p.key("x")) for p in space.all()}) == 4


def test_slots_are_computed_as_valkey_computes_them(tmp_path: Path) -> None:
    port, bus = free_ports(2)
    cluster = ["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")]
    # The bus port is given: the default (port + 10000) does not exist past 55535.
    cluster += ["--cluster-port", str(bus)]
    with ValkeyServer(tmp_path, port, appendonly=False, extra_args=cluster) as server:
        client = redis.Redis.from_url(server.url)
        samples = [
            Partition(0).key("job", "x"),
            Partition(7).stream("generator", "interactive"),
            keys.embedding_cache("m:384", "ab" * 32),
            "plain",
            "{}empty-tag",
            "a{b}c{d}",
        ]
        try:
            for key in samples:
                assert client.execute_command("CLUSTER", "KEYSLOT", key) == slots.key_slot(key), key
        finally:
            client.close()
