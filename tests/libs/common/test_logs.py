from __future__ import annotations

import json
import logging

import pytest

from libs.common.envelope import Envelope
from libs.common.logs import JsonFormatter, TextFormatter, bound, job_log

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def record(message: str, **extra: str) -> logging.LogRecord:
    rec = logging.LogRecord("documind.test", logging.WARNING, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_job_lines_carry_job_id_stage_and_trace_id_as_json_fields() -> None:
    env = Envelope.new("chat", "docs", {}, 60, traceparent=TRACEPARENT)
    line = json.loads(JsonFormatter("generator").format(record("retrying", **job_log(env, "generator"))))
    assert line["message"] == "retrying"
    assert line["service"] == "generator" and line["level"] == "WARNING"
    assert (line["job_id"], line["stage"], line["trace_id"]) == (
        env.job_id,
        "generator",
        "0af7651916cd43dd8448eb211c80319c",
    )


def test_bound_context_names_the_job_without_extra() -> None:
    with bound(job_id="j1", stage="embedder", trace_id="t1"):
        line = json.loads(JsonFormatter("embedder").format(record("parsed")))
    assert (line["job_id"], line["stage"], line["trace_id"]) == ("j1", "embedder", "t1")
    outside = json.loads(JsonFormatter("embedder").format(record("idle")))
    assert "job_id" not in outside


@pytest.mark.parametrize("fmt", [TextFormatter("retriever")])
def test_plain_text_keeps_the_fields_at_the_end(fmt: logging.Formatter) -> None:
    text = fmt.format(record("indexed 3 chunks", job_id="j2", stage="retriever"))
    assert "indexed 3 chunks" in text and text.endswith("[job_id=j2 stage=retriever]")
