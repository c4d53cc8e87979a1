"""Fixtures for the retriever's tests.

``store``: each backend of the VectorStore contract in turn (``test_store_contract_*.py``);
a module that defines its own ``store`` (``test_hybrid.py``, ``test_edge_maintenance.py``)
uses that one instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.retriever.store import VectorStore
from tests.services.retriever.store_contract import FACTORIES


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    backend = FACTORIES[request.param](tmp_path)
    yield backend
    backend.close()
