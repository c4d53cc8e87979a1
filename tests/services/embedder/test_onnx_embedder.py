from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from libs.common.settings import EmbedderSettings
from services.embedder import onnx_embedder, onnx_file
from services.embedder.backends import LOCAL_MODEL_NAME, build_embedder
from services.embedder.cache import model_id
from services.embedder.onnx_embedder import (
    ONNX_MODEL_NAME,
    OnnxEmbedder,
    OnnxModelMissingError,
    available_cpus,
    length_batches,
)


def settings(**values: Any) -> EmbedderSettings:
    return EmbedderSettings(_env_file=None, **values)  # type: ignore[call-arg]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=-1))


# ------------------------------------------------------------------ no model needed


def test_int8_and_fp32_vectors_are_cached_apart() -> None:
    assert ONNX_MODEL_NAME != LOCAL_MODEL_NAME

    class Named:
        dim = 384

        def __init__(self, name: str) -> None:
            self.name = name

    assert model_id(Named(ONNX_MODEL_NAME)) != model_id(Named(LOCAL_MODEL_NAME))  # type: ignore[arg-type]


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings()
    assert (s.embeddings, s.onnx_threads, s.onnx_model_path) == ("local", 0, None)
    monkeypatch.setenv("DOCUMIND_ONNX_THREADS", "1")
    monkeypatch.setenv("DOCUMIND_ONNX_MODEL_PATH", "/models/m.onnx")
    s = settings()
    assert (s.onnx_threads, s.onnx_model_path) == (1, Path("/models/m.onnx"))
    with pytest.raises(ValueError, match="onnx_threads"):
        settings(onnx_threads=-1)


def test_local_torch_with_wrong_dim() -> None:
    with pytest.raises(ValueError, match="local-torch gives 384"):
        build_embedder(settings(embeddings="local-torch", embedding_dim=768))


def test_default_model_path_is_in_the_checkout_not_the_data_dir() -> None:
    root = Path(__file__).resolve().parents[3]
    assert onnx_file.default_model_path() == root / ".documind" / "models" / onnx_file.MODEL_FILENAME
    assert onnx_file.model_path(settings(onnx_model_path=Path("/m.onnx"))) == Path("/m.onnx")


def test_length_batches_sort_and_bound() -> None:
    lengths = [5, 100, 3, 50, 3, 200, 10]
    batches = length_batches(lengths, batch_size=3, batch_tokens=200)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths)
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 200
    # Short texts share batches; one longer than the budget goes alone.
    assert length_batches([1, 1, 1, 1], 16, 256) == [[0, 1, 2, 3]]
    assert length_batches([300, 1], 16, 256) == [[1], [0]]
    assert length_batches([], 16, 256) == []


def test_missing_model_without_torch_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_embedder, "can_export", lambda: False)
    missing = tmp_path / "none.onnx"
    with pytest.raises(OnnxModelMissingError) as info:
        build_embedder(settings(onnx_model_path=missing))
    message = str(info.value)
    assert str(missing) in message
    assert onnx_file.EXPORT_COMMAND in message
    assert "DOCUMIND_ONNX_MODEL_PATH" in message


def test_available_cpus() -> None:
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


# ---------------------------------------------------------------- the exported model


@pytest.fixture(scope="module")
def onnx(onnx_model: Path) -> OnnxEmbedder:
    return OnnxEmbedder(onnx_model, threads=1)


@pytest.mark.slow
def test_build_local_is_onnx_with_pinned_threads(onnx_model: Path) -> None:
    e = build_embedder(settings(embeddings=" Local ", onnx_threads=1))
    assert isinstance(e, OnnxEmbedder)
    assert (e.name, e.dim, e.path, e.threads) == (ONNX_MODEL_NAME, 384, onnx_model, 1)
    options = e._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.execution_mode.name == "ORT_SEQUENTIAL"
    assert OnnxEmbedder(onnx_model, threads=0).threads == available_cpus()


@pytest.mark.slow
def test_shapes_and_norms(onnx: OnnxEmbedder) -> None:
    assert onnx.embed([]).shape == (0, 384)
    vectors = onnx.embed(["hello world", "", "a much longer sentence " * 200])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_tokens_as_the_torch_model(onnx: OnnxEmbedder) -> None:
    assert onnx.max_seq_length == 256
    assert onnx.special_tokens == 2
    assert onnx.max_text_tokens == 254
    assert onnx.count_tokens("") == 0
    assert onnx.count_tokens("hello world") == 2
    assert onnx.count_tokens("word " * 1000) == 1000


@pytest.mark.slow
def test_the_parse_sandbox_counts_tokens_as_the_model(onnx: OnnxEmbedder) -> None:
    from services.embedder.parse_job import token_counter

    counter = token_counter(onnx.tokenizer_json)
    for text in ("", "hello world", "word " * 1000, "Crème brûlée, déjà vu! ÆØÅ 東京 🙂"):
        assert counter(text) == onnx.count_tokens(text)


@pytest.mark.slow
def test_long_texts_are_truncated_to_the_model_input(onnx: OnnxEmbedder) -> None:
    words = [f"w{i % 97}" for i in range(2000)]
    long_text = " ".join(words)
    a, b = onnx.embed([long_text, long_text + " and a different ending entirely"])
    assert float(cosine(a, b)) > 0.9999


@pytest.mark.slow
def test_order_is_kept_whatever_the_lengths(onnx: OnnxEmbedder) -> None:
    texts = [f"{'some words ' * (i * 7 % 23)}text number {i} about documents" for i in range(40)]
    together = onnx.embed(texts)
    # Vectors depend slightly on batch-mates (activations are quantised per batch), so
    # compare by similarity: each text's vector is its own, not a neighbour's.
    alone = np.stack([onnx.embed([t])[0] for t in texts])
    sims = together @ alone.T
    assert (np.argmax(sims, axis=1) == np.arange(len(texts))).all()
    assert cosine(together, alone).min() > 0.98


@pytest.mark.slow
def test_paraphrases_are_closer(onnx: OnnxEmbedder) -> None:
    a, b, c = onnx.embed(
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten password?",
            "The invoice total includes VAT at twenty percent.",
        ]
    )
    assert float(cosine(a, b)) > float(cosine(a, c)) + 0.2


@pytest.mark.slow
def test_from_threads(onnx: OnnxEmbedder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"text number {i} about documents " * (i % 5 + 1) for i in range(8)]
    expected = np.stack([onnx.embed([t])[0] for t in texts])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: onnx.embed([t])[0], texts))
        counts = list(pool.map(onnx.count_tokens, texts))
    np.testing.assert_allclose(np.stack(results), expected, atol=1e-6)
    assert counts == [onnx.count_tokens(t) for t in texts]


@pytest.mark.slow
def test_stale_model_without_torch_names_the_command(
    onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.services.embedder.test_export_onnx import with_metadata

    stale = with_metadata(onnx_model, tmp_path / "stale.onnx", {onnx_file.META_RECIPE: "old"})
    monkeypatch.setattr(onnx_embedder, "can_export", lambda: False)
    with pytest.raises(OnnxModelMissingError, match=r"another export recipe.*python -m services\."):
        build_embedder(settings(onnx_model_path=stale))


def test_unloadable_model_without_torch_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_embedder, "can_export", lambda: False)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(OnnxModelMissingError, match=r"not a model ONNX Runtime can load.*export_onnx"):
        build_embedder(settings(onnx_model_path=garbage))


@pytest.mark.slow
@pytest.mark.parametrize("present", [False, True])
def test_missing_or_broken_model_is_exported_at_start_when_torch_is_there(
    present: bool,
    onnx_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from services.embedder import export_onnx

    exported: list[Path] = []

    def fake_export(path: Path, *, force: bool = False) -> bool:
        exported.append(path)
        shutil.copyfile(onnx_model, path)
        return True

    monkeypatch.setattr(onnx_embedder, "can_export", lambda: True)
    monkeypatch.setattr(export_onnx, "export_model", fake_export)
    target = tmp_path / "models" / "m.onnx"
    target.parent.mkdir()
    if present:
        target.write_bytes(b"half a model")
    e = build_embedder(settings(onnx_model_path=target, onnx_threads=1))
    assert exported == [target]
    assert isinstance(e, OnnxEmbedder) and e.path == target
    assert "exporting it now" in caplog.text
