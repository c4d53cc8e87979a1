"""Where files derived from the shipped model weights live by default."""

from __future__ import annotations

import os
from pathlib import Path


def models_dir() -> Path:
    """``.documind/models/`` at the root of a source checkout (the editable install
    ``make`` makes), whatever the working or data directory of a process; installed
    elsewhere, the user's cache directory."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / ".documind" / "models"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "documind" / "models"
