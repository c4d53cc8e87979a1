"""The error tree: the workers' retry rule, the gateway's errors, the drawing of both."""

from __future__ import annotations

import ast
import inspect
import re

import pytest

from libs.common import errors
from libs.common.errors import (
    CollectionExists,
    CollectionNotFound,
    DocumentNotFound,
    DocuMindError,
    DuplicateDocument,
    JobAlreadyEnded,
    JobCancelled,
    JobEnded,
    JobExpired,
    JobFailed,
    JobNotFound,
    PermanentError,
    QueueFull,
    QueueUnavailable,
    RetryableError,
    is_retryable,
    job_unanswered,
)


def classes() -> list[type[DocuMindError]]:
    return [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, DocuMindError) and obj.__module__ == errors.__name__
    ]


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (RetryableError("busy"), True),
        (RetryableError("busy", delay_s=3), True),
        (PermanentError("bad input"), False),
        (JobEnded("cancelled"), False),
        (DocuMindError("other"), True),
        (ValueError("a bug"), True),
    ],
)
def test_the_workers_retry_rule_is_unchanged(exc: BaseException, retryable: bool) -> None:
    assert is_retryable(exc) is retryable


def test_the_docstring_draws_every_class() -> None:
    drawing = errors.__doc__ or ""
    # The root on a line of its own, then every class after a branch.
    drawn = {root or branch for root, branch in re.findall(r"^ {4}(\w+)|── (\w+)", drawing, re.MULTILINE)}
    missing = [cls.__name__ for cls in classes() if cls.__name__ not in drawn]
    assert not missing, f"add to the tree in libs/common/errors.py: {missing}"


def test_nothing_here_knows_http() -> None:
    tree = ast.parse(inspect.getsource(errors))
    imported = {
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        )
    }
    assert imported <= {"__future__", "typing", "libs.common.status"}


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (CollectionNotFound("docs"), "collection 'docs' not found"),
        (DocumentNotFound("d1"), "document 'd1' not found"),
        (JobNotFound("j1"), "job 'j1' not found"),
        (CollectionNotFound("x", "no model 'x'"), "no model 'x'"),
        (CollectionExists("docs"), "collection 'docs' already exists"),
        (JobAlreadyEnded("j1", "done"), "job 'j1' already ended: done"),
        (
            DuplicateDocument("docs", "d1"),
            "the same content is already in collection 'docs' as document 'd1'",
        ),
        (QueueFull(2), "too many jobs queued; retry later"),
        (QueueFull(2, "full; already accepted: a.txt"), "full; already accepted: a.txt"),
        (QueueUnavailable(2), "the job queue is unavailable; retry later"),
        (JobFailed("LLM down"), "the job failed: LLM down"),
    ],
)
def test_each_error_says_what_is_wrong(exc: DocuMindError, message: str) -> None:
    assert exc.message == message == str(exc)


def test_the_missing_thing_is_named() -> None:
    assert CollectionNotFound("docs").name == "docs"
    assert JobAlreadyEnded("j1", "expired").status == "expired"
    assert DuplicateDocument("docs", "d1").document_id == "d1"
    assert QueueFull(5).retry_after_s == 5


@pytest.mark.parametrize(
    ("status", "cls"),
    [("failed", JobFailed), ("expired", JobExpired), ("cancelled", JobCancelled), ("odd", JobFailed)],
)
def test_a_job_outcome_is_one_class(status: str, cls: type[DocuMindError]) -> None:
    exc = job_unanswered(status, "why")
    assert type(exc) is cls
    assert exc.status == status and exc.reason == "why"
    assert exc.message == f"the job {status}: why"
