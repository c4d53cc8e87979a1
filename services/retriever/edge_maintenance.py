"""When the embedded store's shards are flushed and optimised.

Durability: every update goes to the shard's write-ahead log before ``update``
returns, so an upsert that returned survives the process being killed (the WAL
is replayed when the shard is loaded). ``flush()`` (segments written out, the
WAL trimmed) costs about 0.1 s, more than the update itself: the maintenance
thread flushes a shard within ``FLUSH_S`` of its first unflushed write instead
of after every write, as does ``EdgeStore.close()``; a power cut may lose that
last second.

Optimisation: qdrant-edge runs no background threads, so segments are merged,
HNSW-indexed and vacuumed only when ``optimize()`` is called, and that call holds
the GIL while it works: run in the retriever process, even on another thread,
it stalls every search for the whole index build (12-22 s per 20k 384-d points,
185 s for 100k at once, on the shared 2-core machine). So the store never
optimises in its own process by itself: once a collection has taken
``optimize_points`` points since its last optimisation and the store has gone
``optimize_idle_s`` without a write, the optimiser thread copies the shard's
directory, and a child process (``nice``d, importing only qdrant_edge) loads
the copy, optimises and flushes it. Searches go on meanwhile, on the live shard.
If no write reached the collection since the copy began, the optimised copy
takes the live shard's place (under the store's lock: close, two renames,
load: about 0.35 s at 20k points); otherwise it is dropped and tried again at
the next quiet moment. Until then new points sit in plain segments that
searches scan in full: correct, only slower (7 ms dense at 100k, 30-40 ms with
a 200-document filter, bench/RESULTS.md). The price: while it runs, the copy
doubles the shard's disk space and the child holds it in memory.

Measured (``python -m bench.edge_scale --during-load``, 100k chunks in writes of
32, a search every 50 ms, shared 2-core machine at load 4-5): searches during the
load p50 18 ms, p99 73 ms, max 170 ms (the in-write 20k steps stalled for 12-22 s
each); from the end of the load until the optimised copy was in place (142 s)
p50 33 ms, p99 180 ms, max 409 ms (the swap); load 3,589 chunks/s, no write over 1 s.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qdrant_edge import EdgeShard

from services.retriever import edge_layout

logger = logging.getLogger(__name__)

# Points written since the last optimisation that make one worth running, and how long
# the store must go without a write before it starts (in a child process, see above).
OPTIMIZE_POINTS = 20_000
OPTIMIZE_IDLE_S = 5.0
# A shard is flushed this long after its first unflushed write, at the latest.
FLUSH_S = 1.0
# The child process: optimises a copy of a shard (argv[1]); it imports qdrant_edge alone.
_CHILD = """
import os, sys
os.nice(10)
from qdrant_edge import EdgeShard
shard = EdgeShard.load(sys.argv[1])
shard.optimize()
shard.flush()
shard.close()
"""


@dataclass
class OpenShard:
    """An open shard and what the store keeps about it."""

    shard: EdgeShard
    # Vector size, read from the shard's config; None if it could not be read
    # (the engine's own dimension check still applies then).
    dim: int | None
    # Whether the shard has the sparse vector (False: created before hybrid search).
    sparse: bool = True
    # Points written since the last optimisation.
    unoptimized: int = 0
    # When the first write since the last flush was; None when flushed.
    dirty_since: float | None = None
    # Writes so far: an optimised copy is dropped if a write came after the copy began.
    writes: int = 0
    # ``writes`` when a background optimisation last failed: not tried again before a write.
    failed_at: int | None = None
    told_dense_only: bool = False


class Maintenance:
    """Flushes and optimisations of a store's open shards (see the module docstring).

    Every method but :meth:`stop` is called with ``lock`` held: the store's one lock,
    under which its shards are opened, used and closed. ``shards`` is the store's
    own mapping of open shards (storage name -> shard, each in ``root/<name>``).
    ``optimize_points`` 0 turns background optimisation off.
    """

    def __init__(
        self,
        lock: threading.Lock,
        shards: Mapping[str, OpenShard],
        root: Path,
        *,
        optimize_points: int = OPTIMIZE_POINTS,
        optimize_idle_s: float = OPTIMIZE_IDLE_S,
    ) -> None:
        self._lock = lock
        self._shards = shards
        self._root = root
        self._optimize_points = optimize_points
        self._optimize_idle_s = optimize_idle_s
        self._wake = threading.Condition(lock)
        self._stopped = False
        # When the store was last written: background optimisation waits for quiet.
        self._last_write = time.monotonic()
        # The background optimisation under way (one at a time), and its child process.
        self._job: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name="edge-maintenance", daemon=True)
        self._thread.start()

    def wrote(self, opened: OpenShard, written: int) -> None:
        """Note a write: the thread flushes it, and optimises once enough came in and all is quiet."""
        now = time.monotonic()
        opened.unoptimized += written
        opened.writes += 1
        self._last_write = now
        if opened.dirty_since is None:
            opened.dirty_since = now
            self._wake.notify_all()

    def optimize(self, collection: str, opened: OpenShard) -> bool:
        """Optimise (merge, index, vacuum) and flush one shard now, in this process (it stalls
        every thread meanwhile: benchmarks and tools only); True if anything changed."""
        started = time.monotonic()
        pending, opened.unoptimized = opened.unoptimized, 0
        changed = opened.shard.optimize()
        opened.shard.flush()
        opened.dirty_since = None
        if changed:
            logger.info(
                "edge: optimised %s (%d points written since the last time) in %.1f s",
                collection,
                pending,
                time.monotonic() - started,
            )
        return changed

    def wait_optimised(self, opened: OpenShard, timeout: float) -> bool:
        """Wait (the lock released meanwhile) until no background optimisation is under way
        and ``opened`` has fewer unindexed points than make one worth running."""
        return self._wake.wait_for(
            lambda: self._job is None and not self._due(opened) and opened.dirty_since is None, timeout
        )

    def stop(self) -> None:
        """End the threads and the child (called without the lock; the store flushes its shards)."""
        with self._lock:
            self._stopped = True
            self._wake.notify_all()
            child, job = self._child, self._job
        if child is not None:
            child.kill()
        if job is not None:
            job.join()
        self._thread.join()

    def _due(self, opened: OpenShard) -> bool:
        return (
            bool(self._optimize_points)
            and opened.unoptimized >= self._optimize_points
            and opened.failed_at != opened.writes
        )

    def _run(self) -> None:
        """Flush each shard FLUSH_S after its first unflushed write; start a background
        optimisation of a shard that is due once the store has gone optimize_idle_s without a write."""
        with self._lock:
            while not self._stopped:
                now = time.monotonic()
                wake: list[float] = []
                for slug, opened in self._shards.items():
                    try:
                        if opened.dirty_since is not None:
                            if now - opened.dirty_since >= FLUSH_S:
                                opened.shard.flush()
                                opened.dirty_since = None
                                self._wake.notify_all()
                            else:
                                wake.append(opened.dirty_since + FLUSH_S)
                        if self._job is None and opened.dirty_since is None and self._due(opened):
                            if now - self._last_write >= self._optimize_idle_s:
                                self._start(slug, opened)
                            else:
                                wake.append(self._last_write + self._optimize_idle_s)
                    except Exception:
                        logger.exception("edge: flushing %s failed", slug)
                self._wake.wait(timeout=max(min(wake) - now, 0.01) if wake else None)

    def _start(self, slug: str, opened: OpenShard) -> None:
        self._job = threading.Thread(
            target=self._optimise_copy, args=(slug, opened, opened.writes), name="edge-optimiser", daemon=True
        )
        self._job.start()

    def _optimise_copy(self, slug: str, opened: OpenShard, writes: int) -> None:
        """The optimiser thread: copy, optimise in a child, and swap the copy in if no write came."""
        live = self._root / slug
        staging = edge_layout.staging_for(live)
        old: Path | None = None
        started = time.monotonic()
        try:
            shutil.copytree(live, staging)  # without the lock: a write meanwhile drops the copy
            optimised = self._run_child(staging)
            with self._lock:
                current = not self._stopped and self._shards.get(slug) is opened and opened.writes == writes
                if optimised and current:
                    old = self._swap(live, staging, opened)
                    logger.info(
                        "edge: optimised %s in a child process (%d points since the last time) in %.1f s",
                        slug,
                        opened.unoptimized,
                        time.monotonic() - started,
                    )
                    opened.unoptimized = 0
                elif optimised:
                    logger.info("edge: dropped the optimised copy of %s: written meanwhile", slug)
                else:
                    opened.failed_at = writes
        except Exception:
            logger.exception("edge: optimising %s in the background failed", slug)
            opened.failed_at = writes
        finally:
            for leftover in (staging, old):
                if leftover is not None:
                    shutil.rmtree(leftover, ignore_errors=True)
            with self._lock:
                self._job = None
                self._wake.notify_all()

    def _run_child(self, staging: Path) -> bool:
        """Optimise the copy at ``staging`` in a child process; True if it succeeded."""
        with self._lock:
            if self._stopped:
                return False
            child = subprocess.Popen([sys.executable, "-c", _CHILD, str(staging)])
            self._child = child
        try:
            code = child.wait()
        finally:
            with self._lock:
                self._child = None
        if code != 0:
            logger.error("edge: the optimiser child process for %s exited with %d", staging, code)
        return code == 0

    def _swap(self, live: Path, staging: Path, opened: OpenShard) -> Path:
        """Put the optimised copy in the live shard's place (under the lock); the old one's path."""
        opened.shard.close()
        old = edge_layout.replace_shard(live, staging)
        try:
            opened.shard = EdgeShard.load(str(live))
        except Exception:
            edge_layout.put_back(live, old)
            opened.shard = EdgeShard.load(str(live))
            raise
        return old
