from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs.common.settings import EmbedderSettings, GatewaySettings, WorkerSettings


def test_settings_read_the_documind_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUMIND_VALKEY_URL", "redis://valkey:6379/2")
    monkeypatch.setenv("DOCUMIND_READ_COUNT", "7")
    monkeypatch.setenv("DOCUMIND_EMBEDDINGS", "hash")
    monkeypatch.setenv("READ_COUNT", "99")  # no prefix: ignored
    s = EmbedderSettings(_env_file=None)
    assert (s.valkey_url, s.read_count, s.embeddings) == ("redis://valkey:6379/2", 7, "hash")


def test_defaults_are_documented_values() -> None:
    s = WorkerSettings(_env_file=None)
    assert (s.read_count, s.read_block_ms, s.max_attempts, s.job_ttl_s) == (32, 1000, 3, 86400)
    assert GatewaySettings(_env_file=None).max_upload_bytes == 50 * 1024 * 1024


def test_nonsense_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUMIND_READ_COUNT", "0")
    with pytest.raises(ValidationError, match="read_count"):
        WorkerSettings(_env_file=None)
