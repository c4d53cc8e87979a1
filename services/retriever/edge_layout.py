"""The embedded store's directory: its owner lock, and shard directories that are
always either complete or absent.

Layout under the store's path::

    .lock                 flock-ed by the one process that has the store open; holds its pid
    <storage name>/       one EdgeShard per DocuMind collection
    .tmp-* / .trash-*     half-created / half-deleted shards, swept at start-up
    .old-<name>-*         a shard being replaced by its optimised copy: put back at
                          start-up if <name> is missing, else deleted

A shard is created in a temporary directory and renamed into place, and dropped by
renaming it away before deleting it, so whatever moment the process dies a
collection directory is complete or absent.

One process owns a directory: qdrant-edge keeps no cross-process coordination, and
two retriever processes writing one shard would corrupt it. :class:`DirectoryLock`
takes an exclusive ``flock`` on ``.lock`` for as long as the store is open (the
retriever's lifetime; the kernel drops it when the process dies, even by SIGKILL),
and a second opener fails at once with :class:`EdgeStoreInUse`, naming the path and
the holder's pid. Several retriever replicas need the ``qdrant`` backend.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger(__name__)

CONFIG_FILE = "edge_config.json"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
OLD_PREFIX = ".old-"


class EdgeStoreInUse(RuntimeError):
    """Another EdgeStore (in this process or another) has the directory open."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"the edge vector store at {path} is in use by {holder} (it holds {path / LOCK_FILE}): "
            "the embedded store allows one retriever process per directory; stop that one, or use "
            "DOCUMIND_VECTOR_STORE=qdrant for several retriever replicas"
        )


class DirectoryLock:
    """An exclusive ``flock`` on ``<root>/.lock``, with the holder's pid written in it."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if sys.platform != "win32":
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise EdgeStoreInUse(root, _holder(self.path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock; the stale pid is overwritten by the next owner
            self._fd = None


def _holder(lock_file: Path) -> int | None:
    """The pid the lock's holder wrote; None if it has not written it yet."""
    try:
        return int(lock_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def sweep(root: Path) -> None:
    """Remove what an interrupted create, delete or replacement left behind."""
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.startswith(OLD_PREFIX):
            live = root / entry.name.removeprefix(OLD_PREFIX).rsplit("-", 1)[0]
            if live.exists():
                shutil.rmtree(entry, ignore_errors=True)
            else:  # died between the two renames of replace_shard
                logger.warning("edge: restoring %s from %s", live, entry)
                os.replace(entry, live)
                fsync_directory(root)
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
            logger.info("edge: removing leftover %s", entry)
            shutil.rmtree(entry, ignore_errors=True)


def is_shard(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file()


def staging_for(directory: Path) -> Path:
    """A fresh temporary directory name beside ``directory`` (swept at start-up)."""
    return directory.parent / f"{TMP_PREFIX}{directory.name}-{uuid.uuid4().hex}"


def create_atomically(directory: Path, build: Callable[[Path], None]) -> None:
    """Run ``build`` on a staging directory, then rename it to ``directory``."""
    staging = staging_for(directory)
    build(staging)
    os.replace(staging, directory)
    fsync_directory(directory.parent)


def move_to_trash(directory: Path) -> Path | None:
    """Rename a shard directory away (the collection is gone from then on); the trash to delete."""
    if not directory.exists():
        return None
    trash = directory.parent / f"{TRASH_PREFIX}{directory.name}-{uuid.uuid4().hex}"
    os.replace(directory, trash)
    fsync_directory(directory.parent)
    return trash


def replace_shard(directory: Path, replacement: Path) -> Path:
    """Put ``replacement`` (a complete, closed shard) in place of ``directory`` (closed too);
    returns where the old shard went, to delete. A crash between the two renames leaves
    the old shard as ``.old-*``, which :func:`sweep` puts back."""
    old = directory.parent / f"{OLD_PREFIX}{directory.name}-{uuid.uuid4().hex}"
    os.replace(directory, old)
    os.replace(replacement, directory)
    fsync_directory(directory.parent)
    return old


def put_back(directory: Path, old: Path) -> None:
    """Undo :func:`replace_shard` (the replacement could not be opened)."""
    os.replace(directory, staging_for(directory))
    os.replace(old, directory)
    fsync_directory(directory.parent)


def read_config(directory: Path, sparse_vector: str) -> tuple[int | None, bool]:
    """The shard's vector size (None if unreadable) and whether it has the sparse vector."""
    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("edge: cannot read %s", directory / CONFIG_FILE)
        return None, False
    sparse = isinstance(config, dict) and sparse_vector in (config.get("sparse_vectors") or {})
    try:
        return int(config["vectors"][""]["size"]), sparse
    except (KeyError, TypeError, ValueError):
        logger.warning("edge: cannot read the vector size from %s", directory / CONFIG_FILE)
        return None, sparse


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (best effort, POSIX only)."""
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
