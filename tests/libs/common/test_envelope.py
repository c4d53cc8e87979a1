from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs.common.envelope import Envelope, stage_status
from libs.common.vectors import decode_vector, encode_vector


def test_new_envelope_takes_the_route_of_its_kind() -> None:
    env = Envelope.new("chat", "docs", {"question": "q"}, timeout_s=30, now=100.0)
    assert env.route == ["embedder", "retriever", "generator"]
    assert env.stage == "embedder"
    assert (env.created_at, env.deadline, env.attempt) == (100.0, 130.0, 0)
    assert Envelope.new("search", "docs", {}, 1).route == ["embedder", "retriever"]
    assert Envelope.new("ingest", "docs", {}, 1).route == ["embedder", "retriever"]


def test_envelope_round_trips_through_json() -> None:
    env = Envelope.new(
        "search",
        "docs",
        {"query": "ü", "top_k": 3},
        10,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    assert Envelope.loads(env.dumps()) == env
    assert Envelope.loads(env.dumps().encode()) == env


def test_unknown_version_or_kind_is_rejected() -> None:
    raw = Envelope.new("chat", "docs", {}, 10).model_dump()
    with pytest.raises(ValidationError):
        Envelope.model_validate({**raw, "v": 2})
    with pytest.raises(ValidationError):
        Envelope.model_validate({**raw, "kind": "delete-everything"})


@pytest.mark.parametrize(
    ("kind", "stage", "status"),
    [
        ("chat", "embedder", "embedding"),
        ("chat", "retriever", "retrieving"),
        ("ingest", "retriever", "indexing"),
        ("chat", "generator", "generating"),
    ],
)
def test_stage_status(kind: str, stage: str, status: str) -> None:
    assert stage_status(kind, stage) == status


def test_a_generator_step_before_the_last_condenses() -> None:
    assert stage_status("chat", "generator", last=False) == "condensing"
    assert stage_status("chat", "embedder", last=False) == "embedding"


def test_a_route_can_be_given() -> None:
    env = Envelope.new("chat", "docs", {}, 1, route=("generator", "embedder", "retriever", "generator"))
    assert env.route == ["generator", "embedder", "retriever", "generator"]
    assert env.stage == "generator"


def test_vectors_survive_transport_as_float32() -> None:
    vec = [0.1, -2.5, 3.25, 0.0]
    assert decode_vector(encode_vector(vec)) == pytest.approx(vec, rel=1e-6)
    assert len(encode_vector([0.0] * 384)) == 2048  # 1,536 bytes, base64
