"""The ONNX backend takes a short call while a long one runs (the batcher's question calls)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from services.embedder.onnx_embedder import OnnxEmbedder

CHUNKS = [f"Chunk {i} of a long report on the tides of the northern coast." for i in range(40)]


class HeldSession:
    """The real session, but a run of more than one text waits until ``release`` is set."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.release = threading.Event()
        self.held = threading.Event()

    def run(self, outputs: Any, feed: dict[str, np.ndarray]) -> Any:
        if len(feed["input_ids"]) > 1:
            self.held.set()
            assert self.release.wait(30)
        return self.session.run(outputs, feed)


def test_a_question_is_embedded_while_a_long_call_runs_and_vectors_are_unchanged(onnx_model: Path) -> None:
    embedder = OnnxEmbedder(onnx_model, threads=1)
    alone_chunks = embedder.embed(CHUNKS)
    alone_question = embedder.embed(["when is high tide?"])
    held = HeldSession(embedder._session)
    embedder._session = held
    with ThreadPoolExecutor(2) as pool:
        long_call = pool.submit(embedder.embed, CHUNKS)
        assert held.held.wait(30)  # the long call is inside the model, held there
        # Nothing releases the long call until the question is back: a question
        # waiting for it would wait 10 s and fail.
        question = pool.submit(embedder.embed, ["when is high tide?"]).result(timeout=10)
        assert not long_call.done()
        held.release.set()
        chunks = long_call.result(timeout=60)
    np.testing.assert_allclose(question, alone_question, atol=1e-6)
    np.testing.assert_allclose(chunks, alone_chunks, atol=1e-6)
