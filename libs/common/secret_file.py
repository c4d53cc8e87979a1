"""Files that hold secrets in the data dir: readable and writable by their owner only (0600).

``ensure_secret`` creates a random secret once and returns the same one ever after
(the operator key, the embedded Valkey's passwords); ``write_private`` replaces a
file's content atomically, never leaving it readable by others, even for an instant.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600


def ensure_secret(path: Path, nbytes: int = 32) -> tuple[str, bool]:
    """The secret in ``path``, created (URL-safe, ``nbytes`` random bytes) when missing;
    whether this call created it. A file with a secret in it is never replaced; an
    empty one (a start that died between creating and writing it) is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing, False
        write_private(path, value + "\n")
        return value, True
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value, True


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (mode 0600): written beside it, then renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
