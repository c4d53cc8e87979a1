"""Process logging: one JSON object per line (or plain text), with the job in context.

Every line about a job carries ``job_id``, ``stage``, ``trace_id``, ``tenant`` and
``key_id`` (the API key that asked; never its secret): pass
``extra=job_log(env, stage)`` or run the code inside ``bound(...)``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from libs.common.envelope import Envelope
from libs.common.telemetry import trace_id_of

JOB_FIELDS = ("job_id", "stage", "trace_id", "tenant", "key_id")
_CONTEXT: ContextVar[dict[str, str]] = ContextVar("documind_log_context", default={})  # noqa: B039


def job_log(env: Envelope | None, stage: str) -> dict[str, str]:
    """The fields that identify a job in a log line (as ``extra=``); just the stage
    for a message whose envelope could not be read."""
    if env is None:
        return {"stage": stage}
    fields = {
        "job_id": env.job_id,
        "stage": stage,
        "trace_id": trace_id_of(env.traceparent),
        "tenant": env.tenant,
    }
    if env.key_id:
        fields["key_id"] = env.key_id
    return fields


@contextmanager
def bound(**fields: str) -> Iterator[None]:
    """Log lines in this context (task, thread) carry these fields."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: str) -> None:
    """Like ``bound``, for the rest of the current task."""
    _CONTEXT.set({**_CONTEXT.get(), **fields})


def _job_fields(record: logging.LogRecord) -> dict[str, str]:
    context = _CONTEXT.get()
    found = {}
    for key in JOB_FIELDS:
        value = getattr(record, key, None) or context.get(key)
        if value:
            found[key] = str(value)
    return found


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            **_job_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _job_fields(record)
        if not fields:
            return text
        return text + " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"


def configure_logging(level: str, service: str, fmt: Literal["json", "text"] = "json") -> None:
    """Log to stderr in ``fmt`` at ``level``; replaces any handlers set before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
