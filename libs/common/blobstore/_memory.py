"""A blob store in a dict: deterministic, for unit tests.

Its clock is a counter unless one is given, and ``down`` makes every call fail as
an unreachable store does (``BlobStoreUnavailable``), so a test can take it away
and bring it back.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable

from libs.common.blobstore._base import Blob, BlobInfo, check_key, check_prefix
from libs.common.errors import BlobStoreUnavailable


class MemoryBlobStore:
    kind = "memory"

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.blobs: dict[str, tuple[Blob, float]] = {}
        ticks = itertools.count(1)
        self._clock = clock or (lambda: float(next(ticks)))
        #: While true, every call raises BlobStoreUnavailable.
        self.down = False

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        self._check()
        self.blobs[check_key(key)] = (Blob(bytes(data), content_type), self._clock())

    async def get(self, key: str) -> Blob | None:
        self._check()
        found = self.blobs.get(check_key(key))
        return found[0] if found else None

    async def delete(self, key: str) -> None:
        self._check()
        self.blobs.pop(check_key(key), None)

    async def delete_prefix(self, prefix: str) -> int:
        self._check()
        if not check_prefix(prefix):
            raise ValueError("delete_prefix needs a prefix: a tenant's, a document's")
        gone = [k for k in self.blobs if k.startswith(prefix)]
        for key in gone:
            del self.blobs[key]
        return len(gone)

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        self._check()
        check_prefix(prefix)
        for key, (blob, modified) in sorted(self.blobs.items()):
            if key.startswith(prefix):
                yield BlobInfo(key, len(blob.data), modified)

    def _check(self) -> None:
        if self.down:
            raise BlobStoreUnavailable("the in-memory blob store is down (a test took it away)")
