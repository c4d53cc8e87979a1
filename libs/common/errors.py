"""Typed errors that say whether a job should be retried.

::

    DocuMindError
    ├── RetryableError      transient: the message is retried with backoff
    │                       (``delay_s`` overrides the backoff when set)
    ├── PermanentError      the input is at fault: the job fails at once,
    │                       the message goes to the dead-letter stream
    └── JobEnded            the job already has a final status (cancelled,
                            expired): the message is acknowledged, nothing more

An exception of any other type raised by a handler counts as retryable: a bug
that always fails still ends in the dead-letter stream after the maximum
attempts, with its message as the reason.
"""

from __future__ import annotations


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


def is_retryable(exc: BaseException) -> bool:
    return not isinstance(exc, PermanentError | JobEnded)
