"""The settings every process shares, and the stream runtime's knobs every worker adds.

``CommonSettings`` (env prefix ``DOCUMIND_``) is the base of every service's settings;
``WorkerSettings`` that of the worker services'. ``libs/common/settings.py`` re-exports both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def csv_items(value: str) -> list[str]:
    """The non-empty items of a comma-separated setting, stripped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"DOCUMIND_VALKEY_SENTINELS: {item!r} is not host:port")
    return host.strip("[]"), int(port)


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
        return [_host_port(item) for item in csv_items(self.valkey_sentinels)]

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
        for item in csv_items(value):
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
    # A bulk tenant whose stream at a stage has been empty, with nothing pending or
    # waiting out a retry, since its last job was queued this long ago leaves the
    # stage's set of bulk tenants, its stream deleted, until its next job
    # (libs/common/lua.py PRUNE_TENANT); 0: as soon as it is drained.
    bulk_tenant_idle_s: float = Field(default=600.0, ge=0)
    # Attempts (handler failures or crashed deliveries) before dead-lettering.
    max_attempts: int = Field(default=3, ge=1)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    retry_backoff_max_s: float = Field(default=30.0, ge=0)
    # A batch at its first stage that takes longer than this shows that stage's
    # status (e.g. "embedding") while it works; quicker ones skip the write.
    status_delay_s: float = Field(default=0.005, ge=0)
    # On SIGTERM, in-flight batches get this long to finish.
    shutdown_grace_s: float = Field(default=20.0, ge=0)
