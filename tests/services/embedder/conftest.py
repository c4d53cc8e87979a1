"""The exported int8 model, shared by the ONNX tests (``make install`` exports it once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.embedder.onnx_embedder import default_model_path


@pytest.fixture(scope="session")
def onnx_model() -> Path:
    """The default model file, exported first when absent or stale (about a minute)."""
    from services.embedder.export_onnx import export_model

    path = default_model_path()
    export_model(path)
    return path
