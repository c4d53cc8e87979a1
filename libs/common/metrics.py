"""Prometheus series shared by the worker runtime and the caches. Labels never carry ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

MESSAGES = Counter(
    "documind_messages_total",
    "Stream messages handled, by job kind (chat, search, ingest, delete), stage and outcome "
    "(forwarded, split: continued as bounded parts, done, retried, failed, expired, stale, "
    "skipped: the job had already ended).",
    ["kind", "stage", "outcome"],
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
# The backlog gauges: one series per stage, lane and partition (``Partition.index``: "0"
# for the keys tagged {p0}). A worker process serves every partition, and every replica of
# a stage reports the same figures: sum over partitions the max over replicas, e.g.
# sum by (stage, lane) (max by (stage, lane, partition) (documind_stream_length)).
BACKLOG_LABELS = ("stage", "lane", "partition")
STREAM_LENGTH = Gauge(
    "documind_stream_length",
    "Entries in a stage's streams of one lane and partition (interactive: chat and search; "
    "bulk: ingest and delete, summed over the partition's tenants): its live backlog, waiting "
    "or in flight (acknowledged entries are deleted).",
    BACKLOG_LABELS,
)
GROUP_LAG = Gauge(
    "documind_consumer_group_lag",
    "Entries in a stage's streams of one lane and partition not yet read by its group. "
    "Valkey's own lag where it reports one; where it reports none (NULL, whenever an entry "
    "was acknowledged, hence deleted, while an older one is still pending) the stream's length "
    "minus the group's pending entries, exact since acknowledged entries are deleted; a stream "
    "the group has not been created on yet counts whole.",
    BACKLOG_LABELS,
)
PENDING = Gauge(
    "documind_pending_messages",
    "Messages of one lane and partition a stage's workers have read and not yet acknowledged.",
    BACKLOG_LABELS,
)
DELAYED = Gauge(
    "documind_delayed_retries",
    "A stage's messages of one lane and partition waiting out a retry backoff.",
    BACKLOG_LABELS,
)
HEARTBEAT = Gauge(
    "documind_worker_heartbeat_timestamp_seconds",
    "When a worker's maintenance loop (one per stage, lane and partition) last ran (Unix "
    "time): the healthcheck's liveness signal.",
    BACKLOG_LABELS,
)
DEAD_LETTER_SIZE = Gauge(
    "documind_dead_letter_stream_length", "Entries in a partition's dead-letter stream.", ["partition"]
)
EMBEDDED_TEXTS = Counter(
    "documind_embedding_texts_total", "Texts the embedding model embedded (cache misses); rate() is texts/s."
)
EMBEDDING_BATCH = Histogram(
    "documind_embedding_batch_texts",
    "Texts per embedding model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
LLM_FIRST_TOKEN_SECONDS = Histogram(
    "documind_llm_time_to_first_token_seconds",
    "From sending an LLM request to its first answer text.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
LLM_SECONDS = Histogram(
    "documind_llm_request_seconds",
    "Whole LLM requests, to the end of the answer.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)
LLM_TOKENS = Counter(
    "documind_llm_completion_tokens_total", "Answer pieces (about one token each) streamed by the LLM."
)


def serve_metrics(service: str, port: int, host: str) -> int:
    """Serve this process's /metrics on ``host``:``port`` (0: a free port) in a thread.

    Prints the port, so operators (and `documind up`) find each replica's metrics.
    """
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_port)
    print(f"{service}: metrics on {host}:{bound}/metrics", flush=True)
    return bound
