"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator
from pydantic.config import JsonDict

from libs.common.apikey_record import MAX_NAME_CHARS
from libs.common.constants import COLLECTION_NAME_PATTERN
from libs.common.settings import MAX_REQUESTS_PER_MINUTE

# A text with something in it besides white space, as the document says it: the check
# itself is ``_not_blank`` (str.strip), which JSON Schema's ``pattern`` cannot call.
NOT_BLANK: Final[JsonDict] = {"pattern": r"\S"}
# A key's name: what str.isprintable() accepts (a custom format, described in the
# document; JSON Schema has no pattern for Unicode's printable characters).
PRINTABLE: Final[JsonDict] = {"format": "printable"}


class _Query(BaseModel):
    collection: str = Field(pattern=COLLECTION_NAME_PATTERN)
    # At most DOCUMIND_MAX_TOP_K: the document carries that limit (``openapi.limits``).
    top_k: int | None = Field(default=None, ge=1)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


class ChatRequest(_Query):
    # At most DOCUMIND_MAX_QUESTION_CHARS characters (``openapi.limits``).
    question: str = Field(min_length=1, json_schema_extra=NOT_BLANK)
    # The answer is always written to the job's events; with stream the client
    # says it will read them (the response carries the events URL either way).
    stream: bool = False

    _strip = field_validator("question")(_not_blank)


class SearchRequest(_Query):
    query: str = Field(min_length=1, json_schema_extra=NOT_BLANK)

    _strip = field_validator("query")(_not_blank)


class JobAccepted(BaseModel):
    job_id: str
    # Server-Sent Events of the job: stage changes, answer tokens, the result.
    events_url: str | None = None


class JobCancelled(BaseModel):
    job_id: str
    status: str


class UploadedDocument(BaseModel):
    filename: str
    job_id: str
    document_id: str
    # True when the same content was already in the collection: nothing was added.
    duplicate: bool = False
    # With ?replace=true: the documents under this filename now, which this one
    # replaces in one step once it is ready.
    replaces: list[str] = []


class UploadAccepted(BaseModel):
    # The first file's job and document (the one-file shape), then every file's.
    job_id: str
    document_id: str
    duplicate: bool = False
    documents: list[UploadedDocument]


class CollectionCreate(BaseModel):
    name: str = Field(pattern=COLLECTION_NAME_PATTERN)
    description: str = Field(default="", max_length=2000)


class CollectionView(BaseModel):
    name: str
    description: str
    created_at: float
    documents: int
    chunks: int


class CollectionList(BaseModel):
    collections: list[CollectionView]


class Progress(BaseModel):
    chunks_embedded: int
    chunks_total: int | None


class DocumentView(BaseModel):
    document_id: str
    collection: str
    filename: str
    type: str
    size: int | None
    sha256: str
    pages: int | None
    chunks: int | None
    status: str
    error: str | None = None
    progress: Progress
    job_id: str
    created_at: float


class DocumentList(BaseModel):
    documents: list[DocumentView]


# --- errors ---------------------------------------------------------------------


class ValidationIssue(BaseModel):
    """One reason a request failed validation (pydantic's error, without its context)."""

    type: str
    # Where: "body", "query", "path" or "header", then the field's path.
    loc: list[str | int]
    msg: str
    input: Any = None


class ErrorResponse(BaseModel):
    """Every error of the REST routes (``errors.error_response``)."""

    # What went wrong, in one sentence.
    detail: str
    # A request that failed validation (422): each reason.
    errors: list[ValidationIssue] | None = None


class JobView(BaseModel):
    job_id: str
    status: str
    stage: str | None = None
    result: Any | None = None
    error: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    # The job's trace (when the request was traced): look it up in the trace viewer.
    trace_id: str | None = None


class DocumentDeleted(BaseModel):
    document_id: str
    deleted: bool
    # The job that removes the document's vectors (it is hidden from searches already).
    job_id: str


class CollectionDeleted(BaseModel):
    name: str
    deleted: bool
    # Documents removed, and the jobs removing their vectors (hidden from searches already).
    documents: int
    job_ids: list[str]


# --- API keys -------------------------------------------------------------------


# The key store checks these (``apikey_record.new_record``, with its messages); the
# schema says the same to clients.
class KeyCreate(BaseModel):
    name: str = Field(min_length=1, json_schema_extra={**NOT_BLANK, **PRINTABLE, "maxLength": MAX_NAME_CHARS})
    tenant: str = Field(json_schema_extra={"pattern": COLLECTION_NAME_PATTERN})
    role: Literal["reader", "writer", "admin"]
    # Omitted or null: every collection of the tenant.
    collections: (
        list[Annotated[str, Field(json_schema_extra={"pattern": COLLECTION_NAME_PATTERN})]] | None
    ) = Field(default=None, json_schema_extra={"minItems": 1})
    # Omitted or null: the deployment's default (DOCUMIND_RATE_LIMIT_PER_MIN).
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_REQUESTS_PER_MINUTE)
    # RFC 3339, with a time zone; omitted or null: never.
    expires_at: AwareDatetime | None = None


class KeyView(BaseModel):
    """A key as listed: never its secret."""

    id: str
    name: str
    tenant: str
    role: str
    collections: list[str] | None
    requests_per_minute: int
    created_at: datetime
    expires_at: datetime | None


class KeyCreated(KeyView):
    # The secret token: shown in this response only, stored hashed.
    key: str


class KeyIdentity(BaseModel):
    """The key a request is made with (``GET /v1/me``): never its secret."""

    # "operator" for the operator key (DOCUMIND_ADMIN_KEY).
    id: str
    # The tenant it acts in ("default" for the operator).
    tenant: str
    # reader, writer, admin, or operator.
    role: str
    # None: every collection of the tenant.
    collections: list[str] | None
    requests_per_minute: int
    # What the role allows: read, write, manage_keys, manage_all_keys.
    permissions: list[str]


class KeyList(BaseModel):
    keys: list[KeyView]


class KeyRevoked(BaseModel):
    id: str
    revoked: bool
