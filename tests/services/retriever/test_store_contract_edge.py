"""EdgeStore specifics (a kill -9, its directory, its owner, leftovers) and the storage
names and point ids every backend uses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.retriever.edge_store import EdgeStore
from services.retriever.store import point_id, storage_name
from tests.services.retriever.store_contract import DIM, basis, chunk

REPO_ROOT = Path(__file__).resolve().parents[3]


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
