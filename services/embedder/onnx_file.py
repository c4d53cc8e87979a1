"""The exported model file: its name, where it lives, the metadata it carries and
whether a file is current.

Shared by the runtime (:mod:`.onnx_embedder`) and the exporter (:mod:`.export_onnx`),
and importing neither: the runtime imports the exporter to export a missing model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from libs.common.model_files import SOURCE_PACKAGE, models_dir, source_version

if TYPE_CHECKING:
    from libs.common.settings import EmbedderSettings

ONNX_MODEL_DIM = 384
#: The file's name in its directory (see default_model_path).
MODEL_FILENAME = "all-MiniLM-L6-v2-int8.onnx"
#: How the file was made; a file with another recipe is exported again (or refused).
#: Bump it whenever export_onnx changes what it writes.
RECIPE = "torchscript-opset17+meanpool/dynamic-int8-per-channel-s8w-u8a/layer0-ffn-out-fp32/v1"
EXPORT_COMMAND = "python -m services.embedder.export_onnx"

# Keys of the model file's metadata (metadata_props).
META_RECIPE = "documind.recipe"
META_SOURCE = "documind.source"
META_MAX_SEQ_LENGTH = "documind.max_seq_length"
META_DIM = "documind.dim"
META_TOKENIZER = "documind.tokenizer_json"


def default_model_path() -> Path:
    """Where the exported model lives unless ``DOCUMIND_ONNX_MODEL_PATH`` says otherwise
    (``libs.common.model_files.models_dir``)."""
    return models_dir() / MODEL_FILENAME


def model_path(settings: EmbedderSettings) -> Path:
    return settings.onnx_model_path or default_model_path()


def stale_reason(meta: dict[str, str]) -> str | None:
    """Why a model file with this metadata must not be used, or None when it is current."""
    if meta.get(META_RECIPE) != RECIPE:
        return f"made by another export recipe ({meta.get(META_RECIPE)!r}, expected {RECIPE!r})"
    installed = source_version()
    expected = f"{SOURCE_PACKAGE}=={installed}"
    if installed is not None and meta.get(META_SOURCE) != expected:
        return f"exported from {meta.get(META_SOURCE)!r}, but {expected} is installed"
    missing = [k for k in (META_MAX_SEQ_LENGTH, META_DIM, META_TOKENIZER) if not meta.get(k)]
    if missing:
        return f"metadata lacks {', '.join(missing)}"
    return None
