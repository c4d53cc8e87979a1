"""The typed payloads name what the stages really write."""

from __future__ import annotations

from libs.common.models import Chunk
from libs.common.payloads import IngestPart, IngestUpload
from services.embedder.handler import _parts


def test_a_parsed_upload_becomes_parts_with_exactly_the_typed_fields() -> None:
    chunks = [
        Chunk(document_id="d1", filename="a.txt", chunk_index=i, text=f"t{i}", page=1) for i in range(5)
    ]
    upload = IngestUpload(document_id="d1", filename="a.txt", size=10, replace=True)
    parts = _parts(upload, pages=1, chunks=chunks, size=2)
    assert [p["part"] for p in parts] == [0, 1, 2] and {p["parts"] for p in parts} == {3}
    assert [len(p["chunks"]) for p in parts] == [2, 2, 1]
    for p in parts:
        assert set(p) == set(IngestPart.__annotations__)
        assert p["replace"] is True and p["chunks_total"] == 5
    plain = _parts(IngestUpload(document_id="d1", filename="a.txt", size=10), 1, chunks, 8)
    assert set(plain[0]) == set(IngestPart.__annotations__) - {"replace"}
