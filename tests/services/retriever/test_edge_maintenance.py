"""The embedded store's background optimisation (services/retriever/edge_maintenance.py):
a copy optimised in a child process takes the live shard's place if no write came meanwhile."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from libs.common.models import Chunk
from services.retriever import edge_layout
from services.retriever.edge_store import EdgeStore

DIM = 8


def chunk(i: int) -> Chunk:
    return Chunk(document_id=f"doc-{i}", filename="f.txt", chunk_index=0, text=f"text {i}")


def put(store: EdgeStore, first: int, count: int) -> None:
    rows = np.eye(DIM, dtype=np.float32)[[i % DIM for i in range(first, first + count)]]
    rows += np.float32(0.01) * np.arange(first, first + count, dtype=np.float32)[:, None]
    store.upsert("docs", [chunk(i) for i in range(first, first + count)], rows)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    edge = EdgeStore(tmp_path, dim_default=DIM, optimize_points=5, optimize_idle_s=0)
    yield edge
    edge.close()


def gate(store: EdgeStore) -> tuple[threading.Event, threading.Event]:
    """Hold each background optimisation before its child process: (started, go)."""
    started, go = threading.Event(), threading.Event()
    run: Callable[[Path], bool] = store._maintenance._run_child

    def held(staging: Path) -> bool:
        started.set()
        assert go.wait(60)
        return run(staging)

    store._maintenance._run_child = held  # type: ignore[method-assign]
    return started, go


def test_a_due_collection_is_optimised_in_a_child_and_swapped_in(
    store: EdgeStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="services.retriever"):
        put(store, 0, 6)
        assert store.wait_optimised("docs", 120)
    assert any("in a child process" in r.getMessage() for r in caplog.records)
    assert store._shards["docs"].unoptimized == 0
    assert store.count("docs") == 6
    assert [h.document_id for h in store.search("docs", np.eye(DIM)[2].tolist(), 1)] == ["doc-2"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["docs"]  # no copy left


def test_searches_go_on_while_the_child_optimises(store: EdgeStore) -> None:
    started, go = gate(store)
    put(store, 0, 6)
    assert started.wait(60)
    found: list[str] = []
    search = threading.Thread(
        target=lambda: found.extend(h.document_id for h in store.search("docs", np.eye(DIM)[1].tolist(), 1))
    )
    search.start()
    search.join(60)
    assert found == ["doc-1"]  # answered while the optimisation is held
    go.set()
    assert store.wait_optimised("docs", 120)


def test_a_write_during_the_optimisation_drops_the_copy(
    store: EdgeStore, caplog: pytest.LogCaptureFixture
) -> None:
    started, go = gate(store)
    with caplog.at_level(logging.INFO, logger="services.retriever"):
        put(store, 0, 6)
        assert started.wait(60)
        put(store, 6, 1)  # after the copy was taken
        go.set()
        assert store.wait_optimised("docs", 120)  # the next attempt lands
    messages = [r.getMessage() for r in caplog.records]
    assert any("dropped the optimised copy" in m for m in messages)
    assert any("in a child process" in m for m in messages)
    assert store.count("docs") == 7
    assert [h.document_id for h in store.search("docs", np.eye(DIM)[6].tolist(), 1)] == ["doc-6"]


def test_writes_below_the_threshold_are_left_unindexed(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, dim_default=DIM, optimize_points=50, optimize_idle_s=0)
    try:
        put(store, 0, 6)
        assert store.wait_optimised("docs", 60)  # nothing due: returns once flushed
        assert store._shards["docs"].unoptimized == 6
    finally:
        store.close()


def test_sweep_puts_back_a_shard_left_between_the_two_renames(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, dim_default=DIM, optimize=False)
    put(store, 0, 3)
    store.close()
    (tmp_path / "docs").rename(tmp_path / f"{edge_layout.OLD_PREFIX}docs-0123abcd")
    reopened = EdgeStore(tmp_path, dim_default=DIM, optimize=False)
    try:
        assert reopened.count("docs") == 3
        assert not any(p.name.startswith(edge_layout.OLD_PREFIX) for p in tmp_path.iterdir())
    finally:
        reopened.close()


def test_sweep_drops_an_old_shard_whose_replacement_is_in_place(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, dim_default=DIM, optimize=False)
    put(store, 0, 3)
    store.close()
    (tmp_path / f"{edge_layout.OLD_PREFIX}docs-0123abcd" / "segments").mkdir(parents=True)
    reopened = EdgeStore(tmp_path, dim_default=DIM, optimize=False)
    try:
        assert reopened.count("docs") == 3
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["docs"]
    finally:
        reopened.close()
