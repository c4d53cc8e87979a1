"""The key space: every key names its partition, ids carry theirs, no other module formats keys."""

from __future__ import annotations

import re
from pathlib import Path

from libs.common import keys
from libs.common.envelope import Envelope
from libs.common.keys import CollectionKeys, KeySpace, Partition

ROOT = Path(__file__).resolve().parents[3]


def test_keys_carry_their_partitions_hash_tag() -> None:
    p = Partition(3)
    assert p.stream("embedder", "interactive") == "documind:{p3}:stream:embedder"
    # The bulk lane: a stream (and a delayed set) per tenant, and the set of those tenants.
    assert p.stream("embedder", "bulk", "acme") == "documind:{p3}:stream:embedder:bulk:t:acme"
    assert p.delayed("retriever", "bulk", "acme") == "documind:{p3}:delayed:retriever:bulk:t:acme"
    assert p.bulk_tenants("embedder") == "documind:{p3}:bulk:embedder:tenants"
    assert p.dead_letters() == "documind:{p3}:dead"
    coll = CollectionKeys("acme", "docs", p)
    assert coll.meta == "documind:{p3}:t:acme:collection:docs"
    assert coll.registry == "documind:{p3}:t:acme:collections"
    assert coll.filename("a.pdf") == "documind:{p3}:t:acme:collection:docs:filename:a.pdf"


def test_ids_name_their_partition_and_old_ids_belong_to_partition_zero() -> None:
    job_id = keys.new_id(Partition(5))
    assert re.fullmatch(r"p5-[0-9a-f]{32}", job_id)
    assert keys.partition_of_id(job_id) == Partition(5)
    assert keys.job(job_id).hash == f"documind:{{p5}}:job:{job_id}"
    assert keys.partition_of_id(" p5-abc") == Partition(0)
    assert keys.partition_of_id("0123456789abcdef0123456789abcdef") == Partition(0)
    assert keys.document("d1").blob == "documind:{p0}:blob:d1"


def test_a_collection_always_maps_to_the_same_partition_and_they_spread() -> None:
    space = KeySpace(partitions=8)
    assert space.collection("docs", "acme") == space.collection("docs", "acme")
    found = {space.collection(f"c{i}", "acme").partition for i in range(200)}
    assert found == set(space.all())
    assert KeySpace().collection("anything", "t").partition == Partition(0)


def test_a_job_minted_for_a_collection_finds_the_collections_keys() -> None:
    space = KeySpace(partitions=4)
    target = space.collection("manuals", "acme")
    env = Envelope.new("chat", "manuals", {}, 60, partition=target.partition, tenant="acme")
    assert env.collection_keys == target
    assert env.stream == target.partition.stream("embedder", "interactive")
    ingest = Envelope.new("ingest", "manuals", {}, 60, partition=target.partition, tenant="acme")
    assert ingest.stream == target.partition.stream("embedder", "bulk", "acme")


def test_no_module_but_the_key_space_formats_a_key() -> None:
    """Key literals ("documind:..." or f"{PREFIX}:...") appear only in libs/common/keys.py."""
    pattern = re.compile(r"""["']documind:[a-z{]|\{PREFIX\}:|\{keys\.PREFIX\}:""")
    offenders = []
    for path in [*ROOT.glob("libs/**/*.py"), *ROOT.glob("services/**/*.py")]:
        if path.name == "keys.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
