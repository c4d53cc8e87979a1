"""Fixtures for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.llm_server import LlamaServer, llama_server


@pytest.fixture(scope="session")
def real_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct, for the whole
    session; the test is skipped when the ``llm`` extra is not installed (``make llm``)."""
    with llama_server(tmp_path_factory.mktemp("llama")) as server:
        yield server
