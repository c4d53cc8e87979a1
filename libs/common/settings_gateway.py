"""The gateway's settings, and the rules its operator key and rate limits follow."""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from libs.common.constants import ANSWER_CACHE_TTL_S
from libs.common.settings_base import CommonSettings, csv_items

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


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class GatewaySettings(CommonSettings):
    # A refused value is not echoed in the error (the admin key is a secret).
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = 8000
    # New jobs get 503 when the first stage's backlog is above this.
    max_backlog: int = Field(default=10_000, ge=1)
    retry_after_s: int = Field(default=2, ge=1)
    # A request's header block (request target and header fields) past either bound
    # is refused with 431 before any app code runs.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=1)
    # A connection whose next header block is not complete this long after it opened
    # (or after its previous response ended) is closed (slowloris).
    header_timeout_s: float = Field(default=20.0, gt=0)
    # A request body with no bytes for this long (while the app waits for them) ends
    # the request with 408 and the connection.
    body_timeout_s: float = Field(default=30.0, gt=0)
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
    # Requests one presented API key may have in progress at once in this gateway
    # process, decided before authentication without any Valkey call (see
    # services/gateway/key_concurrency.py): from arrival until its response starts, it
    # starts waiting on a job (?wait=), or it ends. Waits and streams hold no place, so a
    # key may hold thousands. Keep it well under valkey_pool_size: one key's burst then
    # leaves the other tenants most of the pool (16 of 100: six keys flooding at once to
    # fill it). A request past it waits in line up to key_queue_wait_s, then gets 429.
    # Not applied with auth off (one user, on loopback).
    key_max_concurrent: int = Field(default=16, ge=1)
    # Of requests whose key this gateway has not seen authenticate recently (a new key, a
    # wrong or unknown one), how many may be looked up at once, all keys together: a flood
    # of made-up keys waits on these places, never on a known key's.
    unverified_key_max_concurrent: int = Field(default=8, ge=1)
    # How long a request past either bound waits for a place before it is refused with
    # 429 and Retry-After (0: refused at once). It holds no Valkey connection meanwhile.
    key_queue_wait_s: float = Field(default=1.0, ge=0)
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
    # Of those, questions (jobs on the interactive lane, which every tenant's questions
    # share): past it, 429. Keeps one tenant's flood of questions from queueing the
    # others' behind it for more than this many questions' time.
    tenant_max_interactive: int = Field(default=32, ge=1)

    @property
    def allowed_host_list(self) -> list[str]:
        return csv_items(self.allowed_hosts)

    @property
    def cors_origin_list(self) -> list[str]:
        return csv_items(self.cors_origins)

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
