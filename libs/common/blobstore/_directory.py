"""A blob store in a directory: the embedded stack's (``DATA_DIR/originals``).

Each blob is a plain file at its key's path, so an operator can open an original
as it was uploaded; its content type is in a hidden file beside it
(``.<name>.type``). Keys never start a segment with a dot (``check_key``), so hidden
files are never blobs, and no key reaches outside the root. A put writes a
temporary file in the same directory and renames it over the blob: a reader
sees the old file or the new one, never half of one. File system calls run in a
worker thread, off the event loop.

Every service of a stack must see the same directory (one machine, or one shared
volume); across machines use the S3 store.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from libs.common.blobstore._base import MAX_SEGMENTS, SEGMENT, Blob, BlobInfo, check_key, check_prefix
from libs.common.errors import BlobStoreRefused, BlobStoreUnavailable

T = TypeVar("T")
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Errors that are the directory's configuration, not a passing state (full disk, I/O).
_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})


class DirectoryBlobStore:
    kind = "dir"

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # The type first: a reader that finds the new bytes finds their type.
            _write_atomically(_type_path(path), content_type.encode())
            _write_atomically(path, data)

        await self._run(write, key)

    async def get(self, key: str) -> Blob | None:
        path = self._path(key)

        def read() -> Blob | None:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return None
            try:
                content_type = _type_path(path).read_text().strip() or DEFAULT_CONTENT_TYPE
            except FileNotFoundError:
                content_type = DEFAULT_CONTENT_TYPE
            return Blob(data, content_type)

        return await self._run(read, key)

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            for each in (path, _type_path(path)):
                with contextlib.suppress(FileNotFoundError):
                    each.unlink()
            # The document's directory goes with its last blob.
            with contextlib.suppress(OSError):
                path.parent.rmdir()

        await self._run(remove, key)

    async def delete_prefix(self, prefix: str) -> int:
        if not check_prefix(prefix):
            raise ValueError("delete_prefix needs a prefix: a tenant's, a document's")
        top = self.root.joinpath(*prefix.split("/")[:-1])

        def remove() -> int:
            found = len(_walk(top, prefix))
            shutil.rmtree(top, onerror=_missing_is_fine)
            return found

        return await self._run(remove, prefix)

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        check_prefix(prefix)
        top = self.root.joinpath(*prefix.split("/")[:-1])
        deeper = len(prefix.split("/")) < MAX_SEGMENTS
        # One directory at a time (a tenant's documents, a document's blobs).
        files, children = await self._run(lambda: (_files(top, prefix), _children(top)), prefix)
        for info in files:
            yield info
        for child in children if deeper else []:
            async for info in self.list(f"{prefix}{child.name}/"):
                yield info

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    async def _run(self, call: Callable[[], T], key: str) -> T:
        try:
            return await asyncio.to_thread(call)
        except OSError as exc:
            where = f"blob directory {self.root}"
            if exc.errno in _REFUSED:
                raise BlobStoreRefused(f"{where}: {exc.strerror} ({key})") from exc
            raise BlobStoreUnavailable(f"{where}: {exc.strerror or exc} ({key})") from exc


def _type_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.type")


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _children(top: Path) -> list[Path]:
    """The directories in ``top`` that are a key's segment (hidden names are not)."""
    try:
        return [p for p in top.iterdir() if p.is_dir() and SEGMENT.fullmatch(p.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _files(top: Path, prefix: str) -> list[BlobInfo]:
    """The blobs directly in ``top``."""
    found = []
    try:
        entries = list(os.scandir(top))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not SEGMENT.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        with contextlib.suppress(FileNotFoundError):
            stat = entry.stat(follow_symlinks=False)
            found.append(BlobInfo(prefix + entry.name, stat.st_size, stat.st_mtime))
    return found


def _walk(top: Path, prefix: str) -> list[BlobInfo]:
    """Every blob under ``top``."""
    found = _files(top, prefix)
    for child in _children(top):
        found += _walk(child, f"{prefix}{child.name}/")
    return found


def _missing_is_fine(function: object, path: str, exc_info: object) -> None:
    error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if not isinstance(error, FileNotFoundError):
        raise error if isinstance(error, BaseException) else OSError(str(error))
