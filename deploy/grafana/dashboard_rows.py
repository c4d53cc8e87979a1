"""The DocuMind Grafana dashboard's rows and panels, and the PromQL each panel queries.

``ROWS`` is the dashboard: a row is a title and its panels; a panel is a title, a
description and its PromQL queries. To add a panel, add a ``Panel`` to a row (or a
new row) and run ``python deploy/grafana/dashboard.py``, which lays the rows out
and writes the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

# Grafana fills these in before a query reaches Prometheus.
RATE = "$__rate_interval"
RANGE = "$__range"
# The "stage" dashboard variable (``templating`` in dashboard.py): All or some stages.
STAGE = 'stage=~"$stage"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    # "timeseries" (a graph, 8 high) or "stat" (one number over the time range, 4 high).
    kind: str = "timeseries"
    width: int = 12
    # A stat turns red at this value or above (e.g. 1 for "any dead letter").
    red_at: float | None = None
    # Draw bars instead of lines (counts per interval read better that way).
    bars: bool = False


def quantiles(metric: str, by: str, where: str = "") -> tuple[Query, ...]:
    """p50 and p95 of a histogram, one series per ``by`` label value."""
    selector = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({selector}[{RATE}])))",
            f"{{{{{by}}}}} p{round(q * 100)}",
        )
        for q in (0.5, 0.95)
    )


def backlog(gauge: str, what: str) -> Query:
    """A backlog gauge per stage and lane. Every replica of a stage reports the same figure
    for each partition: the max over replicas, added up over partitions."""
    return Query(
        f"sum by (stage, lane) (max by (stage, lane, partition) ({gauge}{{{STAGE}}}))",
        f"{{{{stage}}}} {{{{lane}}}} {what}",
    )


ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Overview (over the dashboard's time range)",
        [
            Panel(
                "Jobs done",
                "Jobs that reached status done (their last stage finished them).",
                (Query(f'sum(increase(documind_messages_total{{outcome="done"}}[{RANGE}]))'),),
                kind="stat",
                width=6,
            ),
            Panel(
                "Jobs failed or expired",
                "Messages whose job ended failed (permanent error or retries exhausted) or expired "
                "(deadline passed before a stage could start).",
                (Query(f'sum(increase(documind_messages_total{{outcome=~"failed|expired"}}[{RANGE}]))'),),
                kind="stat",
                width=6,
                red_at=1,
            ),
            Panel(
                "Dead letters",
                "Messages moved to the documind:{p<N>}:dead stream. See docs/operations.md, 'Dead letters'.",
                (Query(f"sum(increase(documind_dead_letters_total[{RANGE}]))"),),
                kind="stat",
                width=6,
                red_at=1,
            ),
            Panel(
                "HTTP 5xx",
                "Gateway answers with a 5xx status (503 is backpressure or Valkey unavailable).",
                (Query(f'sum(increase(documind_http_requests_total{{status=~"5.."}}[{RANGE}]))'),),
                kind="stat",
                width=6,
                red_at=1,
            ),
        ],
    ),
    (
        "Throughput",
        [
            Panel(
                "Messages handled per stage",
                "Stream messages each stage handled per second, whatever the outcome "
                "(all replicas of a stage added up).",
                (Query(f"sum by (stage) (rate(documind_messages_total{{{STAGE}}}[{RATE}]))", "{{stage}}"),),
                unit="ops",
            ),
            Panel(
                "Jobs finished per second",
                "Jobs that ended done, failed or expired, per second, by kind (chat, search, "
                "ingest, delete).",
                (
                    Query(
                        "sum by (kind, outcome) (rate(documind_messages_total"
                        f'{{outcome=~"done|failed|expired"}}[{RATE}]))',
                        "{{kind}} {{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Outcomes per stage",
                "forwarded: handed to the next stage; split: continued as bounded parts; done: job "
                "finished; retried: retryable error, backing off; failed: dead-lettered; expired: "
                "deadline passed; stale/skipped: the job had already ended.",
                (
                    Query(
                        f"sum by (stage, outcome) (rate(documind_messages_total{{{STAGE}}}[{RATE}]))",
                        "{{stage}} {{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Batch size (mean)",
                "Messages per batch handed to a stage's handler (one XREADGROUP read). Close to "
                "DOCUMIND_READ_COUNT means the stage is reading a backlog.",
                (
                    Query(
                        f"sum by (stage) (rate(documind_batch_size_sum{{{STAGE}}}[{RATE}]))"
                        f" / sum by (stage) (rate(documind_batch_size_count{{{STAGE}}}[{RATE}]))",
                        "{{stage}}",
                    ),
                ),
            ),
        ],
    ),
    (
        "Latency per stage",
        [
            Panel(
                "Handler time per batch (p50, p95)",
                "Time a stage's handler spent on one batch.",
                quantiles("documind_stage_seconds", "stage", STAGE),
                unit="s",
            ),
            Panel(
                "Queue wait (p50, p95)",
                "Time a message waited in its stream before a worker read it: the queue lag a job "
                "sees at each stage. Rising wait with flat throughput means the stage needs replicas.",
                quantiles("documind_queue_wait_seconds", "stage", STAGE),
                unit="s",
            ),
        ],
    ),
    (
        "LLM",
        [
            Panel(
                "LLM time to first token (p50, p95)",
                "From sending an LLM request to the first piece of its answer.",
                tuple(
                    Query(
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(documind_llm_time_to_first_token_seconds_bucket[{RATE}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95)
                ),
                unit="s",
            ),
            Panel(
                "LLM request time (p50, p95)",
                "Whole LLM requests, to the end of the answer.",
                (
                    *(
                        Query(
                            f"histogram_quantile({q}, sum by (le) "
                            f"(rate(documind_llm_request_seconds_bucket[{RATE}])))",
                            f"request p{round(q * 100)}",
                        )
                        for q in (0.5, 0.95)
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Generator batch time (p50, p95)",
                "Time the generator spent on one batch, LLM calls included.",
                quantiles("documind_stage_seconds", "stage", 'stage="generator"'),
                unit="s",
            ),
            Panel(
                "LLM tokens/s",
                "Answer pieces (about one token each) streamed by the LLM per second.",
                (Query(f"sum(rate(documind_llm_completion_tokens_total[{RATE}]))", "tokens/s"),),
                unit="ops",
            ),
        ],
    ),
    (
        "Backlog",
        [
            Panel(
                "Stream length, group lag and pending per stage",
                "length: the stage's live backlog; lag: entries its group has not read yet; pending: "
                "read and not yet acknowledged (in flight, or held by a crashed worker until reclaimed). "
                "Every partition (and on the bulk lane every tenant) added up.",
                (
                    backlog("documind_stream_length", "length"),
                    backlog("documind_consumer_group_lag", "lag"),
                    backlog("documind_pending_messages", "pending"),
                ),
            ),
            Panel(
                "Delayed retries and dead-letter stream",
                "Messages waiting out a retry backoff per stage, and entries kept in the dead-letter "
                "streams documind:{p<N>}:dead (every partition added up).",
                (
                    backlog("documind_delayed_retries", "delayed"),
                    Query("sum(max by (partition) (documind_dead_letter_stream_length))", "dead letters"),
                ),
            ),
            Panel(
                "Embedding texts/s and batch size",
                "Texts the model embedded per second (cache misses), and texts per model call (p50).",
                (
                    Query(f"sum(rate(documind_embedding_texts_total[{RATE}]))", "texts/s"),
                    Query(
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(documind_embedding_batch_texts_bucket[{RATE}])))",
                        "batch p50",
                    ),
                ),
            ),
        ],
    ),
    (
        "Failures",
        [
            Panel(
                "Dead letters per stage",
                "Messages moved to the documind:{p<N>}:dead stream per interval, by the stage that gave up.",
                (
                    Query(
                        f"sum by (stage) (increase(documind_dead_letters_total{{{STAGE}}}[{RATE}]))",
                        "{{stage}}",
                    ),
                ),
                bars=True,
            ),
            Panel(
                "Retried, failed and expired messages",
                "retried: a retryable error, the message waits out its backoff in the delayed set; "
                "failed: dead-lettered; expired: the job's deadline passed.",
                (
                    Query(
                        "sum by (stage, outcome) (rate(documind_messages_total"
                        f'{{{STAGE}, outcome=~"retried|failed|expired"}}[{RATE}]))',
                        "{{stage}} {{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Reclaimed messages",
                "Pending messages taken over from a consumer idle longer than "
                "DOCUMIND_VISIBILITY_TIMEOUT_S (a crashed or stuck replica).",
                (
                    Query(
                        f"sum by (stage) (increase(documind_reclaimed_total{{{STAGE}}}[{RATE}]))",
                        "{{stage}}",
                    ),
                ),
                bars=True,
            ),
            Panel(
                "HTTP errors",
                "Gateway 4xx and 5xx answers per second, by route and status.",
                (
                    Query(
                        "sum by (route, status) (rate(documind_http_requests_total"
                        f'{{status=~"[45].."}}[{RATE}]))',
                        "{{route}} {{status}}",
                    ),
                ),
                unit="reqps",
            ),
        ],
    ),
    (
        "HTTP (gateway)",
        [
            Panel(
                "Requests by route and status",
                "Gateway requests per second (all gateway replicas added up).",
                (
                    Query(
                        f"sum by (route, status) (rate(documind_http_requests_total[{RATE}]))",
                        "{{route}} {{status}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Request time by route (p50, p95)",
                "Time the gateway took to answer, by route. GET /v1/jobs/{job_id}?wait= blocks by design.",
                quantiles("documind_http_request_seconds", "route"),
                unit="s",
            ),
        ],
    ),
    (
        "Caches",
        [
            Panel(
                "Cache hit ratio",
                "Share of lookups answered from a cache: embedding (distinct texts of each model call, "
                "the embedder) and answer (chat requests, the gateway; a bypassed lookup is a miss). "
                "The answer cache's ratio drops after every change to a collection.",
                (
                    Query(
                        f'sum by (cache) (rate(documind_cache_requests_total{{result="hit"}}[{RATE}])) '
                        f"/ sum by (cache) (rate(documind_cache_requests_total[{RATE}]))",
                        "{{cache}}",
                    ),
                ),
                unit="percentunit",
            ),
            Panel(
                "Cache lookups by result",
                "Cache lookups per second by cache and result (hit, miss).",
                (
                    Query(
                        f"sum by (cache, result) (rate(documind_cache_requests_total[{RATE}]))",
                        "{{cache}} {{result}}",
                    ),
                ),
                unit="ops",
            ),
        ],
    ),
]
