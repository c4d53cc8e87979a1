"""What every blob store is: the protocol, its values, and the keys DocuMind writes.

A key is a path of ``/``-separated segments, each of letters, digits, ``_``, ``.``
and ``-`` starting with a letter or digit (so never ``.`` or ``..``, never empty, never
absolute). DocuMind builds every key from ids it minted or checked itself (a
tenant's name, a document id), never from a filename a user sent::

    <tenant>/<document_id>/original     the uploaded bytes, with their content type
    <tenant>/<document_id>/text.json    the extracted text: [{"page": n, "text": ...}]

Everything of one document shares the prefix ``<tenant>/<document_id>/``, which is
what deleting the document removes. Collections are not in the key: a collection
dropped and created again under its name must not share its old documents' prefix,
and a document is always deleted as itself (``DELETE /v1/collections/{name}``
deletes each of its documents).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Protocol

ORIGINAL: Final = "original"
TEXT: Final = "text.json"
# One segment of a key: a tenant's name, a document id, a blob's name.
SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# The most segments a key has (tenant, document, name).
MAX_SEGMENTS: Final = 3


@dataclass(frozen=True, slots=True)
class Blob:
    """A stored blob: its bytes and the content type it was stored with."""

    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A listed blob: its key, size in bytes, and when it was written (Unix time)."""

    key: str
    size: int
    modified: float


class BlobStore(Protocol):
    """Where originals and extracted text are kept. Every call may raise
    :class:`~libs.common.errors.BlobStoreUnavailable` (retry later) or
    :class:`~libs.common.errors.BlobStoreRefused` (its configuration is at fault),
    and :class:`ValueError` for a key that is not one (see :func:`check_key`)."""

    #: What it is, for logs: "dir", "s3", "memory".
    kind: str

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (replacing what was there) all at once: a reader
        sees the old blob or the new one, never part of one."""
        ...

    async def get(self, key: str) -> Blob | None:
        """The blob, or None when there is none under ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob; nothing there is fine (deletes are retried)."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every blob whose key starts with ``prefix`` (which ends with ``/``);
        how many there were."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Every blob under ``prefix`` ("" or ending with ``/``), in no set order."""
        ...


def check_key(key: str) -> str:
    """``key`` when it is a safe key (see the module's docstring), else :class:`ValueError`."""
    segments = key.split("/")
    if len(segments) > MAX_SEGMENTS or not all(SEGMENT.fullmatch(s) for s in segments):
        raise ValueError(f"not a blob key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """``prefix`` when it is "" or safe segments each followed by ``/``, else :class:`ValueError`."""
    if prefix and (not prefix.endswith("/") or len(prefix.split("/")) > MAX_SEGMENTS):
        raise ValueError(f"not a blob prefix: {prefix!r}")
    if prefix:
        check_key(prefix[:-1])
    return prefix


def document_prefix(tenant: str, document_id: str) -> str:
    """What every blob of one document starts with: ``<tenant>/<document_id>/``."""
    return check_prefix(f"{tenant}/{document_id}/")


def original_key(tenant: str, document_id: str) -> str:
    """The key of a document's uploaded bytes."""
    return document_prefix(tenant, document_id) + ORIGINAL


def text_key(tenant: str, document_id: str) -> str:
    """The key of a document's extracted text (JSON, a list of pages)."""
    return document_prefix(tenant, document_id) + TEXT


def document_of(key: str) -> tuple[str, str] | None:
    """(tenant, document id) of a document's blob key, or None for another key."""
    segments = key.split("/")
    return (segments[0], segments[1]) if len(segments) == MAX_SEGMENTS else None
