"""When the embedded store's shards are flushed and optimised.

Durability: every update goes to the shard's write-ahead log before ``update``
returns, so an upsert that returned survives the process being killed (the WAL
is replayed when the shard is loaded). ``flush()`` (segments written out, the
WAL trimmed) costs about 0.1 s, more than the update itself: the maintenance
thread flushes a shard within ``FLUSH_S`` of its first unflushed write instead
of after every write, as does ``EdgeStore.close()``; a power cut may lose that
last second.

Optimisation: qdrant-edge runs no background threads, so segments are merged,
HNSW-indexed and vacuumed only when ``optimize()`` is called, and it holds the
GIL while it works (the whole process stalls for an index build). The store
calls it when a collection has taken ``optimize_points`` points since its last
run (a bulk load is indexed in steps, each stall bounded), and once the store
has gone ``optimize_idle_s`` seconds without a write or a search (from the
maintenance thread), so what a load leaves behind is indexed when nobody waits.
Until then new points sit in plain segments that searches scan in full: correct,
only slower (about 7 ms for 100k 384-d points, bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from qdrant_edge import EdgeShard

logger = logging.getLogger(__name__)

# Written points that trigger an optimisation inside the write (each such step took
# 12-22 s for 20k 384-d points on a busy 2-core machine), and how long the store must go
# without a write or a search before the maintenance thread optimises what is left.
OPTIMIZE_POINTS = 20_000
OPTIMIZE_IDLE_S = 5.0
# A shard is flushed this long after its first unflushed write, at the latest.
FLUSH_S = 1.0


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
    told_dense_only: bool = False


class Maintenance:
    """Flushes and optimisations of a store's open shards (see the module docstring).

    Every method but :meth:`stop` is called with ``lock`` held: the store's one lock,
    under which its shards are opened, used and closed. ``shards`` is the store's
    own mapping of open shards (storage name -> shard), read by the thread.
    """

    def __init__(
        self,
        lock: threading.Lock,
        shards: Mapping[str, OpenShard],
        *,
        optimize_points: int = OPTIMIZE_POINTS,
        optimize_idle_s: float = OPTIMIZE_IDLE_S,
    ) -> None:
        self._lock = lock
        self._shards = shards
        self._optimize_points = optimize_points
        self._optimize_idle_s = optimize_idle_s
        self._wake = threading.Condition(lock)
        self._stopped = False
        # When the store was last written or searched: idle optimisation waits for quiet.
        self._last_used = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="edge-maintenance", daemon=True)
        self._thread.start()

    def used(self) -> None:
        """A search: idle optimisation waits for quiet."""
        self._last_used = time.monotonic()

    def wrote(self, collection: str, opened: OpenShard, written: int) -> None:
        """Note a write (the thread flushes it); optimise once enough points came in."""
        now = time.monotonic()
        opened.unoptimized += written
        self._last_used = now
        if opened.dirty_since is None:
            opened.dirty_since = now
            self._wake.notify_all()
        if self._optimize_points and opened.unoptimized >= self._optimize_points:
            self.optimize(collection, opened)

    def optimize(self, collection: str, opened: OpenShard) -> bool:
        """Optimise (merge, index, vacuum) and flush one shard now; True if anything changed."""
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

    def stop(self) -> None:
        """End the thread (called without the lock; the store flushes its shards itself)."""
        with self._lock:
            self._stopped = True
            self._wake.notify_all()
        self._thread.join()

    def _run(self) -> None:
        """Flush each shard FLUSH_S after its first unflushed write, and optimise what was
        written once the store has gone optimize_idle_s unused (if that is on)."""
        with self._lock:
            while not self._stopped:
                now = time.monotonic()
                wake: list[float] = []
                for slug, opened in self._shards.items():
                    try:
                        if self._optimize_idle_s and opened.unoptimized:
                            if now - self._last_used >= self._optimize_idle_s:
                                self.optimize(slug, opened)
                            else:
                                wake.append(self._last_used + self._optimize_idle_s)
                        if opened.dirty_since is not None:
                            if now - opened.dirty_since >= FLUSH_S:
                                opened.shard.flush()
                                opened.dirty_since = None
                            else:
                                wake.append(opened.dirty_since + FLUSH_S)
                    except Exception:
                        logger.exception("edge: flushing or optimising %s failed", slug)
                self._wake.wait(timeout=max(min(wake) - now, 0.01) if wake else None)
