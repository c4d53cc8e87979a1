"""build_store: the configured backend, and what a Qdrant server client is asked for."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import MagicMock

import pytest
from qdrant_client import QdrantClient, models

from libs.common.settings import RetrieverSettings
from services.retriever.edge_store import EdgeStore
from services.retriever.memory_store import MemoryStore
from services.retriever.qdrant_store import QdrantStore
from services.retriever.stores import build_store
from tests.services.retriever.store_contract import DIM, basis, chunk

# -- build_store ----------------------------------------------------------------


def test_build_store_edge(tmp_path: Path) -> None:
    store = build_store(RetrieverSettings(vector_store="edge", data_dir=tmp_path, embedding_dim=DIM))
    try:
        assert isinstance(store, EdgeStore)
        store.upsert("docs", [chunk("doc", 0)], [basis(0)])
        assert (tmp_path / "qdrant" / "docs").is_dir()
    finally:
        store.close()


def test_build_store_edge_path(tmp_path: Path) -> None:
    settings = RetrieverSettings(vector_store="edge", edge_path=tmp_path / "elsewhere")
    store = build_store(settings)
    try:
        store.ensure_collection("docs", 384)
        assert (tmp_path / "elsewhere" / "docs").is_dir()
    finally:
        store.close()


def test_build_store_qdrant() -> None:
    settings = RetrieverSettings(
        vector_store="qdrant",
        qdrant_url="https://127.0.0.1:1",  # https: an api key over http warns
        qdrant_api_key="secret",  # type: ignore[arg-type]
    )
    store = build_store(settings)
    try:
        assert isinstance(store, QdrantStore)
    finally:
        store.close()


def test_build_store_qdrant_needs_a_url() -> None:
    with pytest.raises(ValueError, match="QDRANT_URL"):
        build_store(RetrieverSettings(vector_store="qdrant", qdrant_url=None))


def test_build_store_memory() -> None:
    assert isinstance(build_store(RetrieverSettings(vector_store="memory")), MemoryStore)


def test_build_store_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError, match=r"unknown vector_store 'chroma'.*edge, qdrant, memory"):
        build_store(RetrieverSettings(vector_store="chroma"))


def test_qdrant_server_collections_get_a_document_id_index() -> None:
    # No Qdrant server here: check the calls a server client would receive.
    client = MagicMock(spec=QdrantClient)
    client.init_options = {"location": None, "path": None, "url": "http://qdrant:6333"}
    client.collection_exists.return_value = False
    store = QdrantStore(client, dim_default=DIM)
    store.ensure_collection("docs", DIM)
    client.create_collection.assert_called_once()
    assert client.create_collection.call_args.args[0] == "documind_docs"
    client.create_payload_index.assert_called_once_with(
        "documind_docs",
        field_name="document_id",
        field_schema=models.PayloadSchemaType.KEYWORD,
        wait=True,
    )
    store.upsert("docs", [chunk("doc", 0)], [basis(0)])
    assert client.upsert.call_args.kwargs["wait"] is True
