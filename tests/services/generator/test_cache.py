"""The generator's side of the answer cache."""

from __future__ import annotations

import json

from libs.common import constants
from libs.common.stage import Output
from services.generator.cache import with_cache_entry

RESULT = {"answer": "Hold the button [1].", "citations": [], "mode": "extractive"}


def test_an_answer_fills_the_entry_its_job_names_with_its_completing_commit() -> None:
    entry = {"key": "documind:cache:answer:x", "ttl_s": 60}
    out = with_cache_entry({"question": "q", constants.ANSWER_CACHE_PAYLOAD_FIELD: entry}, RESULT)
    assert isinstance(out, Output) and out.payload == RESULT
    [(cmd, key, value, ex, ttl)] = [op.encode() for op in out.on_complete]
    assert (cmd, key, ex, ttl) == ("SET", "documind:cache:answer:x", "EX", 60)
    assert json.loads(value) == {**RESULT, "cached": True}


def test_a_job_without_an_entry_is_answered_as_before() -> None:
    assert with_cache_entry({"question": "q"}, RESULT) == RESULT
