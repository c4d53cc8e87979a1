"""One contract for every VectorStore backend: EdgeStore, QdrantStore (local mode), MemoryStore."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest.mock import MagicMock

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from libs.common.errors import PermanentError
from libs.common.models import Chunk
from libs.common.settings import RetrieverSettings
from services.retriever.edge_store import EdgeStore
from services.retriever.fusion import RELEVANCE
from services.retriever.memory_store import MemoryStore
from services.retriever.qdrant_store import QdrantStore
from services.retriever.store import VectorStore, point_id, storage_name
from services.retriever.stores import build_store

DIM = 8
REPO_ROOT = Path(__file__).resolve().parents[3]

Factory = Callable[[Path], VectorStore]

FACTORIES: dict[str, Factory] = {
    "edge": lambda path: EdgeStore(path / "edge", dim_default=DIM),
    "qdrant-local": lambda _path: QdrantStore.local(":memory:", dim_default=DIM),
    "memory": lambda _path: MemoryStore(dim_default=DIM),
}

# Backends whose data outlives the store object, and how to reopen them.
PERSISTENT: dict[str, Factory] = {
    "edge": lambda path: EdgeStore(path / "edge", dim_default=DIM),
    "qdrant-path": lambda path: QdrantStore.local(path / "qdrant", dim_default=DIM),
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    backend = FACTORIES[request.param](tmp_path)
    yield backend
    backend.close()


def basis(i: int, dim: int = DIM) -> list[float]:
    vector = [0.0] * dim
    vector[i] = 1.0
    return vector


def mix(weights: dict[int, float]) -> list[float]:
    vector = [0.0] * DIM
    for i, weight in weights.items():
        vector[i] = weight
    return vector


def chunk(document_id: str, index: int) -> Chunk:
    return Chunk(
        document_id=document_id,
        filename=f"{document_id}.pdf",
        chunk_index=index,
        text=f"text {document_id} #{index}",
        page=index + 1,
        page_end=index + 2,
        char_start=index * 10,
        char_end=index * 10 + 9,
        heading=f"heading {index}",
    )


def index_docs(store: VectorStore, collection: str = "docs") -> None:
    """doc-a: chunks 0..2 on axes 0..2; doc-b: chunks 0..1 on axes 3..4."""
    store.ensure_collection(collection, DIM)
    store.upsert(collection, [chunk("doc-a", i) for i in range(3)], [basis(i) for i in range(3)])
    store.upsert(collection, [chunk("doc-b", i) for i in range(2)], [basis(3 + i) for i in range(2)])


# -- search -------------------------------------------------------------------


def test_search_returns_hits_best_first_with_cosine_scores(store: VectorStore) -> None:
    index_docs(store)
    # Unnormalised on purpose: cosine ignores length.
    query = mix({0: 3.0, 1: 2.0, 3: 1.0})
    hits = store.search("docs", query, top_k=10)

    norm = math.sqrt(14.0)
    assert [(h.document_id, h.chunk_index) for h in hits[:3]] == [("doc-a", 0), ("doc-a", 1), ("doc-b", 0)]
    assert [h.score for h in hits[:3]] == pytest.approx([3 / norm, 2 / norm, 1 / norm], abs=1e-5)
    assert all(h.score == pytest.approx(0.0, abs=1e-6) for h in hits[3:])
    assert len(hits) == 5

    best = hits[0]
    assert best.filename == "doc-a.pdf"
    assert best.text == "text doc-a #0"
    assert best.page == 1
    assert best.page_end == 2


def test_search_returns_at_most_top_k(store: VectorStore) -> None:
    index_docs(store)
    hits = store.search("docs", mix({0: 1.0, 1: 0.5, 2: 0.25}), top_k=2)
    assert [(h.document_id, h.chunk_index) for h in hits] == [("doc-a", 0), ("doc-a", 1)]
    assert store.search("docs", basis(0), top_k=0) == []


def test_excluded_documents_never_take_a_place_in_the_top_k(store: VectorStore) -> None:
    index_docs(store)
    # doc-a's three chunks are the nearest; excluded, the top 2 are doc-b's two.
    query = mix({0: 1.0, 1: 0.9, 2: 0.8, 3: 0.2, 4: 0.1})
    hits = store.search("docs", query, top_k=2, exclude={"doc-a"})
    assert [(h.document_id, h.chunk_index) for h in hits] == [("doc-b", 0), ("doc-b", 1)]
    assert store.search("docs", query, top_k=5, exclude={"doc-a", "doc-b"}) == []
    assert [h.document_id for h in store.search("docs", query, top_k=1, exclude=set())] == ["doc-a"]


def test_identical_vector_scores_one(store: VectorStore) -> None:
    index_docs(store)
    [hit] = store.search("docs", basis(4), top_k=1)
    assert (hit.document_id, hit.chunk_index) == ("doc-b", 1)
    assert hit.score == pytest.approx(1.0, abs=1e-6)


def test_numpy_vectors_and_query(store: VectorStore) -> None:
    chunks = [chunk("doc-n", i) for i in range(3)]
    store.ensure_collection("np", DIM)
    # The Protocol says Sequence[Sequence[float]]; every backend also takes numpy.
    store.upsert("np", chunks[:2], np.eye(DIM, dtype=np.float32)[:2])  # type: ignore[arg-type]
    store.upsert("np", chunks[2:], [np.eye(DIM, dtype=np.float64)[2]])  # a list of rows
    hits = store.search("np", np.eye(DIM, dtype=np.float32)[2], top_k=1)
    assert [(h.chunk_index, round(h.score, 5)) for h in hits] == [(2, 1.0)]
    assert store.count("np") == 3


def test_payload_holds_every_chunk_field(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    store.upsert("docs", [chunk("doc-p", 7)], [basis(0)])
    [hit] = store.search("docs", basis(0), top_k=1)
    assert hit.model_dump() == {
        "document_id": "doc-p",
        "filename": "doc-p.pdf",
        "page": 8,
        "score": pytest.approx(1.0, abs=1e-6),
        "text": "text doc-p #7",
        "chunk_index": 7,
        "page_end": 9,
        # Where the chunk is in its page's text: a citation marks its passage by them.
        "char_start": 70,
        "char_end": 79,
        # Its evidence score: the first of a dense ranking, and identical to the question.
        "relevance": pytest.approx(RELEVANCE(1.0, 1.0)),
    }


# -- unknown collections --------------------------------------------------------


def test_unknown_collection_is_empty_and_deletes_are_no_ops(store: VectorStore) -> None:
    assert store.search("nope", basis(0), top_k=5) == []
    assert store.count("nope") == 0
    store.delete_document("nope", "doc-a")
    store.delete_collection("nope")
    assert store.count("nope") == 0


def test_delete_of_unknown_document_is_a_no_op(store: VectorStore) -> None:
    index_docs(store)
    store.delete_document("docs", "doc-zzz")
    assert store.count("docs") == 5


def test_ensure_collection_is_idempotent(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    store.ensure_collection("docs", DIM)
    assert store.count("docs") == 0
    assert store.search("docs", basis(0), top_k=3) == []


def test_upsert_creates_a_missing_collection(store: VectorStore) -> None:
    store.upsert("fresh", [chunk("doc-f", 0)], [basis(1)])
    assert store.count("fresh") == 1


def test_collections_are_separate(store: VectorStore) -> None:
    index_docs(store, "one")
    store.upsert("two", [chunk("doc-z", 0)], [basis(0)])
    assert store.count("one") == 5
    assert store.count("two") == 1
    assert [h.document_id for h in store.search("two", basis(0), top_k=5)] == ["doc-z"]


@pytest.mark.parametrize("name", ["Docs", "with space", "../escape", "a/b", "ünïcode", "x" * 200])
def test_odd_collection_names_work(store: VectorStore, name: str) -> None:
    store.upsert(name, [chunk("doc-o", 0)], [basis(2)])
    assert store.count(name) == 1
    assert store.count(name.lower() + "-other") == 0
    assert [h.document_id for h in store.search(name, basis(2), top_k=1)] == ["doc-o"]
    store.delete_collection(name)
    assert store.count(name) == 0


# -- idempotent upserts and deletes --------------------------------------------


def test_replayed_upsert_leaves_count_unchanged(store: VectorStore) -> None:
    index_docs(store)
    store.upsert("docs", [chunk("doc-a", i) for i in range(3)], [basis(i) for i in range(3)])
    assert store.count("docs") == 5


def test_upsert_overwrites_the_same_chunk(store: VectorStore) -> None:
    index_docs(store)
    moved = chunk("doc-a", 0).model_copy(update={"text": "rewritten"})
    store.upsert("docs", [moved], [basis(7)])
    assert store.count("docs") == 5
    [hit] = store.search("docs", basis(7), top_k=1)
    assert (hit.document_id, hit.chunk_index, hit.text) == ("doc-a", 0, "rewritten")


def test_delete_document_removes_only_that_document(store: VectorStore) -> None:
    index_docs(store)
    store.delete_document("docs", "doc-a")
    assert store.count("docs") == 2
    hits = store.search("docs", mix({0: 1.0, 3: 0.5}), top_k=10)
    assert {h.document_id for h in hits} == {"doc-b"}
    assert hits[0].chunk_index == 0


def test_delete_collection_drops_everything(store: VectorStore) -> None:
    index_docs(store)
    index_docs(store, "kept")
    store.delete_collection("docs")
    assert store.count("docs") == 0
    assert store.search("docs", basis(0), top_k=5) == []
    assert store.count("kept") == 5
    # The name can be used again, even with another dimension.
    store.ensure_collection("docs", 4)
    store.upsert("docs", [chunk("doc-q", 0)], [[0.0, 1.0, 0.0, 0.0]])
    assert store.count("docs") == 1


# -- bad input ----------------------------------------------------------------


def test_upsert_with_wrong_dimension_is_permanent(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    with pytest.raises(PermanentError, match="8-d"):
        store.upsert("docs", [chunk("doc-a", 0)], [[1.0, 0.0, 0.0]])
    assert store.count("docs") == 0


def test_upsert_into_new_collection_with_wrong_dimension_creates_nothing(store: VectorStore) -> None:
    with pytest.raises(PermanentError, match="8-d"):
        store.upsert("fresh", [chunk("doc-a", 0)], [basis(0, dim=16)])
    assert store.count("fresh") == 0
    # Creating it explicitly with that dimension is fine.
    store.ensure_collection("fresh", 16)
    store.upsert("fresh", [chunk("doc-a", 0)], [basis(0, dim=16)])
    assert store.count("fresh") == 1


def test_search_with_wrong_dimension_is_permanent(store: VectorStore) -> None:
    index_docs(store)
    with pytest.raises(PermanentError, match="8-d"):
        store.search("docs", [1.0, 0.0], top_k=3)


def test_ensure_collection_with_other_dimension_is_permanent(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    with pytest.raises(PermanentError, match="8-d"):
        store.ensure_collection("docs", 16)


@pytest.mark.parametrize(
    "vectors",
    [
        [basis(0)],  # fewer vectors than chunks
        [basis(0), basis(1), basis(2)],  # more vectors than chunks
        [basis(0), basis(1)[:4]],  # ragged
        [basis(0), [math.nan] * DIM],  # not finite
        [basis(0), [1e300] * DIM],  # overflows float32
        [basis(0), ["a"] * DIM],  # not numbers
    ],
    ids=["fewer", "more", "ragged", "nan", "overflow", "strings"],
)
def test_malformed_vectors_are_permanent(store: VectorStore, vectors: list[list[float]]) -> None:
    store.ensure_collection("docs", DIM)
    with pytest.raises(PermanentError):
        store.upsert("docs", [chunk("doc-a", 0), chunk("doc-a", 1)], vectors)
    assert store.count("docs") == 0


def test_upsert_of_nothing_is_a_no_op(store: VectorStore) -> None:
    store.upsert("docs", [], [])
    assert store.count("docs") == 0


# -- threads ------------------------------------------------------------------


def test_concurrent_upserts_and_searches(store: VectorStore) -> None:
    store.ensure_collection("docs", DIM)
    errors: list[BaseException] = []
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((8, 10, DIM)).astype(np.float32)

    def work(worker: int) -> None:
        try:
            for i in range(10):
                store.upsert("docs", [chunk(f"doc-{worker}", i)], vectors[worker, i : i + 1])  # type: ignore[arg-type]
                store.search("docs", vectors[worker, i], top_k=3)
                store.count("docs")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count("docs") == 80


# -- persistence ---------------------------------------------------------------


@pytest.mark.parametrize("backend", sorted(PERSISTENT))
def test_data_survives_reopening(backend: str, tmp_path: Path) -> None:
    first = PERSISTENT[backend](tmp_path)
    index_docs(first)
    first.delete_document("docs", "doc-b")
    first.close()

    second = PERSISTENT[backend](tmp_path)
    try:
        assert second.count("docs") == 3
        [hit] = second.search("docs", basis(2), top_k=1)
        assert (hit.document_id, hit.chunk_index, hit.page) == ("doc-a", 2, 3)
        # The reopened collection keeps its dimension.
        with pytest.raises(PermanentError):
            second.upsert("docs", [chunk("doc-c", 0)], [[1.0, 2.0]])
    finally:
        second.close()


# -- EdgeStore specifics --------------------------------------------------------


def test_edge_upsert_survives_kill_9(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from libs.common.models import Chunk
        from services.retriever.edge_store import EdgeStore

        store = EdgeStore(Path({str(tmp_path)!r}), dim_default=4)
        chunks = [Chunk(document_id="d", filename="f", chunk_index=i, text="t") for i in range(3)]
        store.upsert("docs", chunks, [[1.0, float(i), 0.0, 0.0] for i in range(3)])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, check=False, timeout=60)
    assert result.returncode == -9

    store = EdgeStore(tmp_path, dim_default=4)
    try:
        assert store.count("docs") == 3
    finally:
        store.close()


def test_edge_keeps_every_collection_inside_its_directory(tmp_path: Path) -> None:
    root = tmp_path / "edge"
    store = EdgeStore(root, dim_default=DIM)
    try:
        for name in ["../escape", "/abs", "a/../../b", "..", ".", "", "C:\\x", "docs"]:
            store.upsert(name, [chunk("doc", 0)], [basis(0)])
        entries = {entry.name for entry in tmp_path.iterdir()}
        assert entries == {"edge"}
        shard_dirs = {entry.name for entry in root.iterdir() if entry.is_dir()}
        assert "docs" in shard_dirs
        assert all(name == "docs" or name.startswith("_") for name in shard_dirs)
        assert len(shard_dirs) == 8
    finally:
        store.close()


def test_edge_directory_has_one_owner(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path, dim_default=DIM)
    try:
        with pytest.raises(RuntimeError, match="in use"):
            EdgeStore(tmp_path, dim_default=DIM)
    finally:
        first.close()
    EdgeStore(tmp_path, dim_default=DIM).close()


def test_edge_sweeps_leftovers_of_interrupted_create_and_delete(tmp_path: Path) -> None:
    (tmp_path / ".tmp-docs-123").mkdir()
    (tmp_path / ".trash-old-456" / "segments").mkdir(parents=True)
    store = EdgeStore(tmp_path, dim_default=DIM)
    try:
        assert not (tmp_path / ".tmp-docs-123").exists()
        assert not (tmp_path / ".trash-old-456").exists()
        assert store.count("docs") == 0
    finally:
        store.close()


def test_storage_name_is_plain_or_hashed() -> None:
    assert storage_name("docs") == "docs"
    assert storage_name("my-docs_2") == "my-docs_2"
    for odd in ["Docs", "../x", "a/b", "", ".", "x" * 65]:
        name = storage_name(odd)
        assert name.startswith("_")
        assert len(name) == 33
        assert os.sep not in name
    assert storage_name("Docs") != storage_name("docs")


def test_point_ids_are_deterministic() -> None:
    assert point_id("doc-a", 1) == point_id("doc-a", 1)
    assert point_id("doc-a", 1) != point_id("doc-a", 2)


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
