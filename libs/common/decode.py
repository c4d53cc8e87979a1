"""Values read from Valkey arrive as bytes (the clients do not decode: blobs are binary)."""

from __future__ import annotations


def as_text(value: bytes | str) -> str:
    """A reply value as text (UTF-8)."""
    return value.decode() if isinstance(value, bytes) else value
