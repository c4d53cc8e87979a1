"""DocuMind's errors: whether a job should be retried, and why a request is refused.

::

    DocuMindError
    ├── RetryableError      transient: the message is retried with backoff
    │   │                   (``delay_s`` overrides the backoff when set)
    │   └── BlobStoreUnavailable   the blob store (originals, extracted text)
    │                              does not answer, or answers "not now"
    ├── PermanentError      the input is at fault: the job fails at once,
    │   │                   the message goes to the dead-letter stream
    │   └── BlobStoreRefused       the blob store refuses (credentials, no
    │                              such bucket): its configuration is at fault
    ├── BlobStoreError      the base of those two (a mixin beside their bases)
    ├── JobEnded            the job already has a final status (cancelled,
    │                       expired): the message is acknowledged, nothing more
    ├── RequestRefused      a request is not carried out; the message says why
    │   ├── NotFound        what it names does not exist (``name``)
    │   │   ├── CollectionNotFound
    │   │   ├── DocumentNotFound
    │   │   ├── JobNotFound
    │   │   └── ApiKeyNotFound       (or another tenant's key)
    │   ├── Conflict        it clashes with what exists
    │   │   ├── CollectionExists
    │   │   ├── JobAlreadyEnded       (``status``: how it ended)
    │   │   └── DuplicateDocument     the same content is in the collection
    │   │                             (``document_id``)
    │   ├── InvalidRequest  a value no schema caught (``param``: which, if known)
    │   ├── PayloadTooLarge
    │   ├── UnsupportedMediaType
    │   ├── Unavailable     try again in ``retry_after_s`` seconds
    │   │   ├── QueueFull           the first stage is too far behind
    │   │   ├── StoreFull           Valkey is at its memory limit
    │   │   └── QueueUnavailable    Valkey does not answer
    │   ├── Unauthorized    no valid API key (``reason``: missing, malformed,
    │   │                   unknown, revoked or expired)
    │   ├── Forbidden       the key lacks a permission (``permission``)
    │   ├── RateLimited     the key's requests per minute are used up
    │   │                   (``retry_after_s``, ``limit``, ``reset_s``)
    │   └── TooManyJobs     the tenant has its limit of jobs in flight
    │                       (``retry_after_s``, ``limit``)
    └── JobUnanswered       a job ended without an answer (``status``, ``reason``)
        ├── JobFailed
        ├── JobExpired
        └── JobCancelled

Workers raise the first three (the blob store's errors are of them). An exception
of any other type raised by a handler counts as retryable (``is_retryable``): a bug
that always fails still ends in the dead-letter stream after the maximum attempts,
with its message as the reason.

The gateway raises the rest, and only two of its modules turn them into answers
(a :class:`BlobStoreError` too, as 503: nothing is wrong with the request):
``services/gateway/errors.py`` into HTTP responses, ``services/gateway/openai_errors.py``
into OpenAI's error shape. Nothing here knows HTTP.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from libs.common.status import JobStatus


class DocuMindError(Exception):
    """Base of every error DocuMind raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryableError(DocuMindError):
    retryable = True

    def __init__(self, message: str, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class PermanentError(DocuMindError):
    retryable = False


class JobEnded(DocuMindError):
    """Raised only for a job known to be final: its message is simply acknowledged."""


class BlobStoreError(DocuMindError):
    """Either of the blob store's errors (the gateway answers both 503)."""


class BlobStoreUnavailable(BlobStoreError, RetryableError):
    """The blob store did not answer, timed out, or answered with a server error or a
    request to slow down: the same call may succeed later."""


class BlobStoreRefused(BlobStoreError, PermanentError):
    """The blob store refused the call for a reason retrying does not change: invalid
    credentials, a missing bucket, no permission on the directory."""


def is_retryable(exc: BaseException) -> bool:
    return not isinstance(exc, PermanentError | JobEnded)


# --- requests -------------------------------------------------------------------


class RequestRefused(DocuMindError):
    """A request DocuMind does not carry out; ``message`` tells the client why."""


class NotFound(RequestRefused):
    # What is missing, as the message names it.
    kind: ClassVar[str] = "resource"

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"{self.kind} '{name}' not found")
        self.name = name


class CollectionNotFound(NotFound):
    kind = "collection"


class DocumentNotFound(NotFound):
    kind = "document"


class JobNotFound(NotFound):
    kind = "job"


class ApiKeyNotFound(NotFound):
    """No such key, or (asked by a tenant's admin) a key of another tenant."""

    kind = "API key"


class Conflict(RequestRefused):
    """The request clashes with what exists already."""


class CollectionExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection '{name}' already exists")
        self.name = name


class JobAlreadyEnded(Conflict):
    """The job is final already (``status``): too late to cancel it."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job '{job_id}' already ended: {status}")
        self.job_id = job_id
        self.status = status


class DuplicateDocument(Conflict):
    """The uploaded content is already in ``collection`` as ``document_id``.

    An upload takes it as success (the existing document, nothing added)."""

    def __init__(self, collection: str, document_id: str) -> None:
        super().__init__(
            f"the same content is already in collection '{collection}' as document '{document_id}'"
        )
        self.collection = collection
        self.document_id = document_id


class InvalidRequest(RequestRefused):
    """A value the request schemas let through but DocuMind refuses."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        # The field at fault (e.g. ``messages.2.content``), when one is known.
        self.param = param


class PayloadTooLarge(RequestRefused):
    """Too many files, or a file over the size limit."""


class UnsupportedMediaType(RequestRefused):
    """A file of a type DocuMind cannot read."""


class Unavailable(RequestRefused):
    """Nothing is wrong with the request: send it again after ``retry_after_s``."""

    default_message: ClassVar[str] = "unavailable; retry later"

    def __init__(self, retry_after_s: int, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.retry_after_s = retry_after_s


class QueueFull(Unavailable):
    """The first stage's backlog is over its limit: no job was queued."""

    default_message = "too many jobs queued; retry later"


class StoreFull(Unavailable):
    """Valkey is at its memory limit (``maxmemory``, no eviction): it refuses writes."""

    default_message = (
        "the job store is full (Valkey reached its memory limit): new work is refused until "
        "finished jobs expire; retry later"
    )


class QueueUnavailable(Unavailable):
    """Valkey, which holds the queues and the jobs, does not answer."""

    default_message = "the job queue is unavailable; retry later"


# --- API keys ---------------------------------------------------------------------

# Why a request has no principal. Clients are told only what they can act on:
# a malformed token and an unknown key are both "invalid API key".
UnauthorizedReason = Literal["missing", "malformed", "unknown", "revoked", "expired"]
_UNAUTHORIZED_MESSAGES: dict[str, str] = {
    "missing": "missing API key: send 'Authorization: Bearer <key>'",
    "malformed": "invalid API key",
    "unknown": "invalid API key",
    "revoked": "API key revoked",
    "expired": "API key expired",
}


class Unauthorized(RequestRefused):
    """The request carries no valid API key; ``reason`` is for logs, the message for clients."""

    def __init__(self, reason: UnauthorizedReason) -> None:
        super().__init__(_UNAUTHORIZED_MESSAGES[reason])
        self.reason: UnauthorizedReason = reason


class Forbidden(RequestRefused):
    """The key is valid but lacks ``permission`` (a ``Permission`` value, or a scope)."""

    def __init__(self, permission: str, message: str | None = None) -> None:
        super().__init__(message or f"this API key lacks the '{permission}' permission")
        self.permission = permission


class RateLimited(RequestRefused):
    """The key used up its ``limit`` requests per minute: retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: int, limit: int, reset_s: int) -> None:
        super().__init__(f"rate limit of {limit} requests per minute exceeded; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.limit = limit
        self.reset_s = reset_s


class TooManyJobs(RequestRefused):
    """The tenant has ``limit`` jobs queued or running: none more until some end."""

    def __init__(self, retry_after_s: int, limit: int, what: str = "jobs") -> None:
        super().__init__(
            f"this tenant has {limit} {what} queued or running, its limit; retry in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s
        self.limit = limit


# --- job outcomes -----------------------------------------------------------------


class JobUnanswered(DocuMindError):
    """A job ended (``status``) without an answer, because of ``reason``."""

    # The final status this class stands for.
    ended: ClassVar[str] = JobStatus.FAILED

    def __init__(self, reason: str, status: str | None = None) -> None:
        self.status = status or self.ended
        super().__init__(f"the job {self.status}: {reason}")
        self.reason = reason


class JobFailed(JobUnanswered):
    ended = JobStatus.FAILED


class JobExpired(JobUnanswered):
    ended = JobStatus.EXPIRED


class JobCancelled(JobUnanswered):
    ended = JobStatus.CANCELLED


# Final statuses other than done, and the error each is.
JOB_OUTCOMES: dict[str, type[JobUnanswered]] = {c.ended: c for c in (JobFailed, JobExpired, JobCancelled)}


def job_unanswered(status: str, reason: str) -> JobUnanswered:
    """The error for a job that ended ``status`` (not done); an unknown status counts as failed."""
    return JOB_OUTCOMES.get(status, JobFailed)(reason, status)
