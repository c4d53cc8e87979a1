from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    """A scripted OpenAI-compatible server, its default reply ``DEFAULT_REPLY``."""
    with FakeOpenAI() as server:
        yield server
