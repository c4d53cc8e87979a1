from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import numpy as np
import pytest
from pydantic import SecretStr

from libs.common.errors import PermanentError, RetryableError
from libs.common.settings import EmbedderSettings
from services.embedder.backends import (
    Embedder,
    HashEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    build_embedder,
)


def settings(**values: Any) -> EmbedderSettings:
    return EmbedderSettings(_env_file=None, **values)  # type: ignore[call-arg]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def assert_unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------- hash


def test_hash_embedder_is_deterministic_and_normalised() -> None:
    texts = ["The cat sat on the mat", "", "!!!", "Ünïcode wörds ok"]
    a = HashEmbedder().embed(texts)
    b = HashEmbedder().embed(texts)
    assert_unit_rows(a, 4, 384)
    np.testing.assert_array_equal(a, b)
    assert HashEmbedder().name == "hash-384"


def test_hash_embedder_shared_words_are_similar() -> None:
    e = HashEmbedder(dim=256)
    cat, cat2, stocks = e.embed(["the cat sat on the mat", "The CAT sat.", "quarterly stock prices fell"])
    assert cosine(cat, cat2) > cosine(cat, stocks)
    assert cosine(cat, cat2) > 0.5
    np.testing.assert_allclose(cosine(cat, e.embed(["THE CAT SAT ON THE MAT!"])[0]), 1.0, atol=1e-6)


def test_hash_embedder_empty_batch_and_dims() -> None:
    assert HashEmbedder(dim=16).embed([]).shape == (0, 16)
    assert_unit_rows(HashEmbedder(dim=7).embed(["a b c d e f g h"]), 1, 7)
    with pytest.raises(ValueError, match="dim"):
        HashEmbedder(dim=0)


def test_hash_embedder_satisfies_protocol() -> None:
    embedder: Embedder = HashEmbedder()
    assert embedder.dim == 384


# -------------------------------------------------------------------------- openai

Handler = Callable[[httpx2.Request], httpx2.Response]


def openai_embedder(handler: Handler, model: str = "text-embedding-3-small", dim: int = 3) -> OpenAIEmbedder:
    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    return OpenAIEmbedder(model, "http://embeddings.test/v1", "key", dim, http_client=client)


def embeddings_response(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    data = [
        {"object": "embedding", "index": i, "embedding": [float(i + 1), 0.0, 2.0 * (i + 1)]}
        for i, _ in enumerate(body["input"])
    ]
    data.reverse()  # the client must order by index
    usage = {"prompt_tokens": 1, "total_tokens": 1}
    return httpx2.Response(200, json={"object": "list", "data": data, "model": body["model"], "usage": usage})


def test_openai_embedder_normalises_and_orders() -> None:
    requests: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        requests.append(json.loads(request.content))
        return embeddings_response(request)

    e = openai_embedder(handler)
    vectors = e.embed(["one", "", "three"])
    assert_unit_rows(vectors, 3, 3)
    np.testing.assert_allclose(vectors[0], np.array([1.0, 0.0, 2.0]) / np.sqrt(5), rtol=1e-6)
    assert requests[0]["input"] == ["one", " ", "three"]
    assert requests[0]["dimensions"] == 3
    assert e.embed([]).shape == (0, 3)
    assert len(requests) == 1


def test_openai_embedder_batches_requests() -> None:
    sizes: list[int] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sizes.append(len(json.loads(request.content)["input"]))
        return embeddings_response(request)

    e = openai_embedder(handler, model="nomic-embed-text")
    e.batch_size = 2
    assert_unit_rows(e.embed(["a", "b", "c", "d", "e"]), 5, 3)
    assert sizes == [2, 2, 1]


def test_openai_embedder_wrong_dimension_is_permanent() -> None:
    e = openai_embedder(embeddings_response, dim=384)
    with pytest.raises(PermanentError, match="expected"):
        e.embed(["x"])


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, RetryableError),
        (500, RetryableError),
        (503, RetryableError),
        (408, RetryableError),
        (400, PermanentError),
        (401, PermanentError),
        (403, PermanentError),
        (404, PermanentError),
        (422, PermanentError),
    ],
)
def test_openai_embedder_maps_status_errors(status: int, error: type[Exception]) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json={"error": {"message": "nope", "type": "x"}})

    with pytest.raises(error, match=str(status)):
        openai_embedder(handler).embed(["x"])


def test_openai_embedder_rate_limit_delay() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, headers={"retry-after": "7"}, json={"error": {"message": "slow down"}})

    with pytest.raises(RetryableError) as info:
        openai_embedder(handler).embed(["x"])
    assert info.value.delay_s == 7.0


@pytest.mark.parametrize("exc", [httpx2.ConnectError("refused"), httpx2.ReadTimeout("slow")])
def test_openai_embedder_network_errors_are_retryable(exc: Exception) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc

    with pytest.raises(RetryableError, match="unreachable"):
        openai_embedder(handler).embed(["x"])


# --------------------------------------------------------------------------- build


def test_build_hash() -> None:
    e = build_embedder(settings(embeddings="hash", embedding_dim=64))
    assert isinstance(e, HashEmbedder)
    assert e.dim == 64


def test_build_openai() -> None:
    e = build_embedder(
        settings(
            embeddings=" OpenAI ",
            embedding_model="bge-small",
            embedding_dim=8,
            openai_base_url="http://localhost:9/v1",
            openai_api_key=SecretStr("sk-test"),
        )
    )
    assert isinstance(e, OpenAIEmbedder)
    assert (e.name, e.dim) == ("bge-small", 8)


@pytest.mark.parametrize("key", [None, ""])
def test_build_openai_without_key(key: str | None) -> None:
    values: dict[str, Any] = {"embeddings": "openai", "openai_base_url": "http://localhost:9/v1"}
    if key is not None:
        values["openai_api_key"] = SecretStr(key)
    with pytest.raises(ValueError, match="DOCUMIND_OPENAI_API_KEY"):
        build_embedder(settings(**values))


def test_build_unknown() -> None:
    with pytest.raises(ValueError, match=r"unknown DOCUMIND_EMBEDDINGS='bert'.*local, openai, hash"):
        build_embedder(settings(embeddings="bert"))


def test_build_local_with_wrong_dim() -> None:
    with pytest.raises(ValueError, match="384"):
        build_embedder(settings(embeddings="local", embedding_dim=768))


# --------------------------------------------------------------------------- local


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.mark.slow
def test_local_embedder_shapes_and_norms(local: LocalEmbedder) -> None:
    assert (local.name, local.dim) == ("all-MiniLM-L6-v2", 384)
    assert local.embed([]).shape == (0, 384)
    assert_unit_rows(local.embed(["hello world", "", "a much longer sentence " * 200]), 3, 384)


@pytest.mark.slow
def test_local_embedder_paraphrases_are_closer(local: LocalEmbedder) -> None:
    a, b, c = local.embed(
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten password?",
            "The invoice total includes VAT at twenty percent.",
        ]
    )
    assert cosine(a, b) > cosine(a, c) + 0.2


@pytest.mark.slow
def test_local_embedder_batch_matches_single(local: LocalEmbedder) -> None:
    texts = ["first text", "second, somewhat longer text about documents"]
    batch = local.embed(texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(batch[i], local.embed([text])[0], atol=1e-5)


@pytest.mark.slow
def test_local_embedder_tokens(local: LocalEmbedder) -> None:
    assert local.max_seq_length == 256
    assert local.max_text_tokens == 254
    assert local.count_tokens("") == 0
    assert local.count_tokens("hello world") == 2
    assert local.count_tokens("word " * 1000) == 1000


@pytest.mark.slow
def test_local_embedder_threads() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        LocalEmbedder(threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_local_embedder_from_threads(local: LocalEmbedder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"text number {i} about documents" * (i % 5 + 1) for i in range(8)]
    expected = local.embed(texts)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: local.embed([t])[0], texts))
        counts = list(pool.map(local.count_tokens, texts))
    np.testing.assert_allclose(np.stack(results), expected, atol=1e-5)
    assert counts == [local.count_tokens(t) for t in texts]
