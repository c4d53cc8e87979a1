"""The operator key of the embedded stack, and how the CLI finds a key to send.

``documind up`` without ``DOCUMIND_ADMIN_KEY`` creates one on first start in
``DATA_DIR/admin.key`` (mode 0600, never overwritten) and hands it to the
gateway. The CLI sends, as ``Authorization: Bearer``, the first of: its
``--api-key``, ``DOCUMIND_API_KEY``, the data dir's ``admin.key`` (so ``make run``
then ``documind ingest`` needs no extra step).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from libs.common.secret_file import ensure_secret

ADMIN_KEY_FILE: Final = "admin.key"
API_KEY_ENV: Final = "DOCUMIND_API_KEY"


def ensure_admin_key(data_dir: Path) -> tuple[str, bool]:
    """The stack's operator key, created (readable by this user only) when missing;
    whether this call created it."""
    return ensure_secret(data_dir / ADMIN_KEY_FILE)


def resolve_api_key(explicit: str | None, data_dir: Path) -> str | None:
    """The key the CLI sends: ``explicit``, else ``DOCUMIND_API_KEY``, else ``admin.key``."""
    if explicit:
        return explicit
    if os.environ.get(API_KEY_ENV):
        return os.environ[API_KEY_ENV]
    try:
        return (data_dir / ADMIN_KEY_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def auth_headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}
