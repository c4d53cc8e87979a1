"""The embedded stack's operator key file."""

from __future__ import annotations

import stat
from pathlib import Path

from libs.common.admin_key import ensure_admin_key


def test_the_key_is_created_once_readable_by_its_owner_only_and_never_replaced(tmp_path: Path) -> None:
    key, created = ensure_admin_key(tmp_path / "data")
    assert created and len(key) >= 32
    path = tmp_path / "data" / "admin.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = ensure_admin_key(tmp_path / "data")
    assert (again, created_again) == (key, False)
    assert path.read_text().strip() == key
