"""Prometheus series shared by the worker runtime and the caches. Labels never carry ids."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES = Counter(
    "documind_messages_total",
    "Stream messages handled, by stage and outcome "
    "(forwarded, split: continued as bounded parts, done, retried, failed, expired, stale, "
    "skipped: the job had already ended).",
    ["stage", "outcome"],
)
STAGE_SECONDS = Histogram(
    "documind_stage_seconds",
    "Time a stage's handler spent on one batch.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_WAIT_SECONDS = Histogram(
    "documind_queue_wait_seconds",
    "Time a message waited in its stream before a worker read it.",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
BATCH_SIZE = Histogram(
    "documind_batch_size",
    "Messages per batch handed to a stage's handler.",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
RECLAIMED = Counter("documind_reclaimed_total", "Pending messages reclaimed from idle consumers.", ["stage"])
DEAD_LETTERS = Counter("documind_dead_letters_total", "Messages sent to the dead-letter stream.", ["stage"])
CACHE_REQUESTS = Counter(
    "documind_cache_requests_total",
    "Cache lookups by cache and result: the embedding cache counts each distinct text of a "
    "model call, the answer cache each chat request (a request that bypasses it is a miss).",
    ["cache", "result"],
)
