"""The embedder's dynamic batcher: coalescing across callers, questions beside bulk calls, order kept."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from services.embedder.batcher import EmbeddingBatcher, Priority

DIM = 4


def vector(text: str) -> np.ndarray:
    """A deterministic vector per text, so results can be checked against their texts."""
    return np.array([len(text), sum(map(ord, text)) % 97, text.count("q"), 1.0], dtype=np.float32)


class Model:
    """Records each call's texts; a call can be held until released."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.fail_on: str | None = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.entered.set()
        assert self.hold.wait(10)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model exploded")
        return np.stack([vector(t) for t in texts])


async def until(condition: threading.Event) -> None:
    assert await asyncio.to_thread(condition.wait, 10)


def test_a_long_request_is_split_into_calls_and_its_vectors_come_back_in_order() -> None:
    async def body() -> None:
        model = Model()
        batcher = EmbeddingBatcher(model, DIM, max_texts=8, max_wait_s=0)
        texts = [f"chunk {i}" for i in range(20)]
        out = await batcher.embed(texts)
        assert [len(c) for c in model.calls] == [8, 8, 4]
        np.testing.assert_array_equal(out, np.stack([vector(t) for t in texts]))
        await batcher.aclose()

    asyncio.run(body())


def test_texts_of_concurrent_callers_share_one_model_call() -> None:
    async def body() -> None:
        model = Model()
        batcher = EmbeddingBatcher(model, DIM, max_texts=64, max_wait_s=0)
        model.hold.clear()
        first = asyncio.create_task(batcher.embed(["warm-up"]))
        await until(model.entered)  # the model is busy: the next callers queue up
        others = [
            asyncio.create_task(batcher.embed([f"job {j} text {i}" for i in range(3)])) for j in range(5)
        ]
        await asyncio.sleep(0)
        model.hold.set()
        results = await asyncio.gather(first, *others)
        assert [len(c) for c in model.calls] == [1, 15]  # five jobs' texts in one call
        for j, out in enumerate(results[1:]):
            np.testing.assert_array_equal(out, np.stack([vector(f"job {j} text {i}") for i in range(3)]))
        await batcher.aclose()

    asyncio.run(body())


def test_a_question_overtakes_a_queued_bulk_ingest() -> None:
    async def body() -> None:
        model = Model()
        batcher = EmbeddingBatcher(model, DIM, max_texts=16, max_wait_s=0)
        model.hold.clear()
        bulk = asyncio.create_task(batcher.embed([f"chunk {i}" for i in range(160)]))
        await until(model.entered)  # the first 16 chunks are in the model
        question = asyncio.create_task(batcher.embed(["the question"], Priority.QUERY))
        await asyncio.sleep(0)
        model.hold.set()
        await question
        # The question went into the very next call, ahead of the 144 chunks still queued.
        assert model.calls[1][0] == "the question"
        assert not bulk.done()
        out = await bulk
        assert sum(len(c) for c in model.calls) == 161
        np.testing.assert_array_equal(out[-1], vector("chunk 159"))
        await batcher.aclose()

    asyncio.run(body())


def test_a_bulk_call_waits_briefly_to_fill_but_a_question_never_waits() -> None:
    async def body() -> None:
        model = Model()
        batcher = EmbeddingBatcher(model, DIM, max_texts=64, max_wait_s=0.5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.embed(["q1"], Priority.QUERY)
        assert loop.time() - started < 0.4  # not held for the 0.5 s bulk wait
        a = asyncio.create_task(batcher.embed(["a1", "a2"]))
        await asyncio.sleep(0.05)  # well inside the wait: joins the same call
        b = asyncio.create_task(batcher.embed(["b1"]))
        await asyncio.gather(a, b)
        assert model.calls[1:] == [["a1", "a2", "b1"]]
        await batcher.aclose()

    asyncio.run(body())


def test_a_failed_model_call_fails_the_requests_in_it_and_the_batcher_goes_on() -> None:
    async def body() -> None:
        model = Model()
        model.fail_on = "poison"
        batcher = EmbeddingBatcher(model, DIM, max_texts=64, max_wait_s=0)
        with pytest.raises(RuntimeError, match="model exploded"):
            await batcher.embed(["fine", "poison"])
        out = await batcher.embed(["fine again"])
        np.testing.assert_array_equal(out[0], vector("fine again"))
        await batcher.aclose()

    asyncio.run(body())


def test_a_cancelled_caller_is_dropped_and_an_empty_call_needs_no_model() -> None:
    async def body() -> None:
        model = Model()
        batcher = EmbeddingBatcher(model, DIM, max_texts=4, max_wait_s=0)
        assert (await batcher.embed([])).shape == (0, DIM)
        model.hold.clear()
        first = asyncio.create_task(batcher.embed(["busy"]))
        await until(model.entered)
        gone = asyncio.create_task(batcher.embed([f"gone {i}" for i in range(8)]))
        await asyncio.sleep(0)
        gone.cancel()
        kept = asyncio.create_task(batcher.embed(["kept"]))
        await asyncio.sleep(0)
        model.hold.set()
        await asyncio.gather(first, kept)
        assert all(not t.startswith("gone") for c in model.calls for t in c)
        assert model.calls == [["busy"], ["kept"]]
        await batcher.aclose()

    asyncio.run(body())


class BulkGate(Model):
    """Calls of chunk texts are held until ``release`` is set; calls of questions run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.bulk_running = threading.Event()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if any(t.startswith("chunk") for t in texts):
            self.bulk_running.set()
            assert self.release.wait(10)
        return super().__call__(texts)


def test_a_question_is_embedded_while_a_bulk_call_is_still_running() -> None:
    async def body() -> None:
        model = BulkGate()
        batcher = EmbeddingBatcher(model, DIM, max_texts=64, max_wait_s=0)
        bulk = asyncio.create_task(batcher.embed([f"chunk {i}" for i in range(100)]))
        await until(model.bulk_running)  # 64 chunks are in the model, held there
        question = asyncio.create_task(batcher.embed(["the question"], Priority.QUERY))
        # The question's vector comes back while the bulk call still runs: nothing
        # releases it until then (a question queued behind it would wait 10 s and fail).
        done, _ = await asyncio.wait({question, bulk}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert done == {question}
        np.testing.assert_array_equal(question.result(), vector("the question")[None, :])
        assert not model.release.is_set() and not bulk.done()
        model.release.set()
        out = await bulk
        # The chunks still came in full calls, after the question's own call.
        assert [len(c) for c in model.calls] == [1, 64, 36]
        np.testing.assert_array_equal(out, np.stack([vector(f"chunk {i}") for i in range(100)]))
        await batcher.aclose()

    asyncio.run(body())


def test_closing_fails_the_waiting_callers_of_both_priorities() -> None:
    async def body() -> None:
        model = Model()
        batcher = EmbeddingBatcher(model, DIM, max_texts=4, max_wait_s=0)
        model.hold.clear()
        running = asyncio.create_task(batcher.embed([f"chunk {i}" for i in range(6)]))
        await until(model.entered)
        queued = asyncio.create_task(batcher.embed(["chunk queued"]))
        question = asyncio.create_task(batcher.embed(["q"], Priority.QUERY))
        await asyncio.sleep(0)
        await batcher.aclose()
        for task in (running, queued, question):
            with pytest.raises(RuntimeError, match="shutting down"):
                await task
        model.hold.set()

    asyncio.run(body())
