"""The extractive answerer's word vectors: closeness in meaning, the file, the fallback."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from libs.common.models import Hit
from libs.common.settings import GeneratorSettings
from services.generator import word_vectors
from services.generator.answerers import build_answerer
from services.generator.extractive import ExtractiveAnswerer
from services.generator.llm import LLMAnswerer
from services.generator.word_vectors import WordVectors, WordVectorsMissingError

# A vocabulary of four meanings: time, colour, storage, and words near none of them.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", ".", "the", "timeout", "delay", "milliseconds", "wait"]
VOCAB += ["blue", "colour", "button", "disk", "drive", "##s", "is", "of"]
AXES = {"timeout": 0, "delay": 0, "milliseconds": 0, "wait": 0, "blue": 1, "colour": 1, "button": 1}
AXES |= {"disk": 2, "drive": 2, "##s": 3, ".": 0, "the": 1, "is": 2, "of": 0}


def tokenizer_json() -> str:
    tokenizer = Tokenizer(WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.normalizer = BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = BertPreTokenizer()
    tokenizer.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    return str(tokenizer.to_str())


def matrix() -> np.ndarray:
    vectors = np.zeros((len(VOCAB), 4), dtype=np.float16)
    for i, word in enumerate(VOCAB):
        if word in AXES:
            vectors[i, AXES[word]] = 1.0
    return vectors


@pytest.fixture(scope="module")
def small() -> WordVectors:
    return WordVectors(matrix(), tokenizer_json())


def test_words_of_one_meaning_are_close_and_others_far(small: WordVectors) -> None:
    near, far = small.closeness(
        "What is the timeout?", ["The delay is 500 milliseconds.", "The button is blue."]
    )
    assert near == pytest.approx(1.0)
    assert far == pytest.approx(0.0)


def test_stopwords_punctuation_and_unknown_words_count_for_nothing(small: WordVectors) -> None:
    # "the", "is", "of" and "." have vectors here, on purpose: they must not be used.
    assert small.closeness("the timeout", ["The delay is of the... ."]) == [pytest.approx(1.0)]
    assert small.closeness("the timeout", ["is of the", "zebra giraffe"]) == [0.0, 0.0]
    assert small.closeness("is of the", ["timeout"]) == [0.0]
    assert small.closeness("timeout", []) == []


def test_a_word_cut_into_pieces_counts_each_piece(small: WordVectors) -> None:
    # "drives" is not in the vocabulary: "drive" + "##s", two pieces of two meanings.
    (score,) = small.closeness("disk", ["drives"])
    assert score == pytest.approx(np.sqrt(0.5), abs=1e-3)


def test_the_file_keeps_the_principal_components_of_the_word_pieces(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    # 40 word-like rows spread along one direction, and special rows far off it.
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(40)]
    matrix = np.zeros((len(pieces), 6), dtype=np.float32)
    matrix[4:, 0] = rng.normal(0, 5, 40)
    matrix[4:, 1:] = rng.normal(0, 0.01, (40, 5))
    matrix[:4, 5] = 100.0
    vocab = {p: i for i, p in enumerate(pieces)}
    rows = word_vectors._wordlike_rows(json.dumps({"model": {"vocab": vocab}}))
    assert rows == list(range(4, len(pieces)))
    reduced = word_vectors._principal(matrix, rows)
    assert reduced.shape == (len(pieces), 6)  # fewer rows than DIMENSIONS: all kept
    # The first component is the word-like rows' direction, not the special rows'.
    first = np.abs(reduced[4:, 0])
    assert np.corrcoef(first, np.abs(matrix[4:, 0] - matrix[4:, 0].mean()))[0, 1] > 0.99


def test_a_tokenizer_past_the_vectors_is_refused() -> None:
    with pytest.raises(ValueError, match="rows"):
        WordVectors(matrix()[:5], tokenizer_json())


def _model_dir(tmp_path: Path) -> Path:
    from safetensors.numpy import save_file

    source = tmp_path / "model"
    source.mkdir()
    save_file(
        {word_vectors.TENSOR: matrix().astype(np.float32), "other": np.zeros(3)}, source / "model.safetensors"
    )
    (source / "tokenizer.json").write_text(tokenizer_json(), encoding="utf-8")
    return source


def test_the_file_round_trips_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "models" / "wv.npz"
    word_vectors.export(target, _model_dir(tmp_path))
    assert target.stat().st_mode & 0o777 == 0o644
    loaded = word_vectors.read(target)
    # Centred and projected on principal components, the meanings keep their order.
    near, far = loaded.closeness("timeout", ["a long delay", "blue button"])
    assert near == pytest.approx(1.0, abs=1e-3)
    assert far < near - 0.5
    assert [p.name for p in target.parent.iterdir()] == ["wv.npz"]  # no temporary file left


def test_a_file_made_another_way_is_stale(tmp_path: Path) -> None:
    target = tmp_path / "wv.npz"
    word_vectors.export(target, _model_dir(tmp_path))
    with np.load(target) as data:
        fields = dict(data)
    np.savez(target, **(fields | {"recipe": np.array("something-else/v0")}))
    with pytest.raises(WordVectorsMissingError, match="another recipe"):
        word_vectors.read(target)
    target.write_bytes(b"not a file of arrays")
    with pytest.raises(WordVectorsMissingError, match="not a word-vector file"):
        word_vectors.read(target)


def test_a_missing_file_that_cannot_be_written_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(word_vectors, "can_export", lambda: False)
    with pytest.raises(
        WordVectorsMissingError, match=r"python -m services\.generator\.word_vectors --output"
    ):
        word_vectors.load(tmp_path / "absent.npz")


def test_a_missing_file_is_written_from_the_weights_package(tmp_path: Path) -> None:
    if not word_vectors.can_export():
        pytest.skip("the weights package (the `local` extra) is not installed")
    target = tmp_path / "wv.npz"
    vectors = word_vectors.load(target)
    assert target.is_file()
    # The real vectors: a sentence about time is closer to a question about waiting.
    near, far = vectors.closeness(
        "How long does it wait before giving up?",
        ["The timeout is 500 milliseconds.", "The button is painted blue."],
    )
    assert near > far + 0.1


def test_the_generator_answers_with_shared_words_alone_when_it_has_no_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(word_vectors, "can_export", lambda: False)
    with caplog.at_level(logging.WARNING):
        answerer = build_answerer(GeneratorSettings(word_vectors_path=tmp_path / "absent.npz"))
    assert isinstance(answerer, ExtractiveAnswerer)
    assert answerer.similarity is None
    assert "without word vectors" in caplog.text
    off = build_answerer(GeneratorSettings(word_vectors=False))
    assert isinstance(off, ExtractiveAnswerer) and off.similarity is None


def test_llm_mode_judges_the_evidence_with_the_same_vectors() -> None:
    if not word_vectors.can_export():
        pytest.skip("the weights package (the `local` extra) is not installed")
    settings = GeneratorSettings(llm_api_key="dummy", llm_base_url="http://127.0.0.1:9")
    answerer = build_answerer(settings)
    assert isinstance(answerer, LLMAnswerer)
    assert isinstance(answerer._assessor.similarity, WordVectors)


class _Prefers:
    """A fake Similarity: texts containing ``word`` are close (1), others not (0)."""

    def __init__(self, word: str) -> None:
        self.word = word

    def closeness(self, question: str, texts: Sequence[str]) -> list[float]:
        del question
        return [1.0 if self.word in t else 0.0 for t in texts]


def _hit(text: str) -> Hit:
    return Hit(document_id="d", filename="manual.pdf", page=3, score=0.6, text=text)


def test_closeness_decides_between_sentences_sharing_as_many_words() -> None:
    text = (
        "The wait setting applies to every ambiguous key sequence read from the terminal. "
        "The value of the wait setting is given in milliseconds by the user."
    )
    question = "What unit is the wait setting in?"
    lexical = ExtractiveAnswerer(min_score=0.0, max_sentences=1).compose(question, [_hit(text)])
    assert lexical.answer.startswith("The wait setting applies")
    with_vectors = ExtractiveAnswerer(min_score=0.0, max_sentences=1, similarity=_Prefers("milliseconds"))
    assert with_vectors.compose(question, [_hit(text)]).answer.startswith("The value of the wait setting")
    # Weight 0 is the lexical answer.
    zero = ExtractiveAnswerer(
        min_score=0.0, max_sentences=1, similarity=_Prefers("milliseconds"), semantic_weight=0
    )
    assert zero.compose(question, [_hit(text)]).answer == lexical.answer


def test_the_setting_defaults_hold_the_cross_validated_choice() -> None:
    from services.generator import extractive

    settings = GeneratorSettings()
    assert settings.word_vectors is True
    assert extractive.SEMANTIC_WEIGHT == 0.2
    # The dump is JSON-able (the CLI prints settings).
    json.dumps(settings.model_dump(mode="json"))
