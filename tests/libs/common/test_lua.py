"""Lua and Python spell the shared constants alike: the scripts' prelude is generated, and checked."""

from __future__ import annotations

import re

import redis

from libs.common import events, lua, scripts
from libs.common.constants import (
    COLLECTION_VERSION_FIELD,
    ENVELOPE_FIELD,
    EVENT_DATA_FIELD,
    EVENT_TYPE_FIELD,
    CollectionMode,
    SubmitAnswer,
)
from libs.common.status import FINAL_STATUSES, DocumentStatus, JobStatus

# Every script, through the typed wrapper that owns it.
SCRIPTS = {cls.name: cls.source for cls in scripts._Script.__subclasses__()}
# Hash field names that happen to equal a shared word ("error" is also an event type).
FIELDS = {"error", "status"}


def test_the_prelude_read_back_from_valkey_matches_python(valkey: redis.Redis) -> None:
    probe = (
        lua.PRELUDE
        + """
local final = {}
for status, _ in pairs(FINAL) do final[#final + 1] = status end
table.sort(final)
return {final, {S_QUEUED, S_EXPIRED, S_CANCELLED, D_FAILED, F_ENVELOPE, F_VERSION, E_TYPE, E_DATA},
  {EV_QUEUED, EV_DONE, EV_ERROR, EV_CANCELLED, M_REQUIRE, M_CREATE, R_OK, R_UNKNOWN, R_FULL, R_DUPLICATE}}
"""
    )
    final, names, more = valkey.eval(probe, 0)
    assert [s.decode() for s in final] == sorted(s.value for s in FINAL_STATUSES)
    assert [s.decode() for s in names] == [
        JobStatus.QUEUED,
        JobStatus.EXPIRED,
        JobStatus.CANCELLED,
        DocumentStatus.FAILED,
        ENVELOPE_FIELD,
        COLLECTION_VERSION_FIELD,
        EVENT_TYPE_FIELD,
        EVENT_DATA_FIELD,
    ]
    assert [s.decode() for s in more] == [
        events.QUEUED,
        events.DONE,
        events.ERROR,
        events.CANCELLED,
        CollectionMode.REQUIRE,
        CollectionMode.CREATE,
        SubmitAnswer.OK,
        SubmitAnswer.UNKNOWN,
        SubmitAnswer.FULL,
        SubmitAnswer.DUPLICATE,
    ]


def test_no_script_spells_a_status_event_or_answer_itself() -> None:
    """Statuses, event types and SUBMIT's answers come from the prelude, never as literals."""
    shared = {s.value for s in JobStatus} | {s.value for s in DocumentStatus}
    shared |= {events.QUEUED, events.DONE, events.ERROR, events.CANCELLED}
    shared |= {m.value for m in CollectionMode} | {a.value for a in SubmitAnswer}
    for name, source in SCRIPTS.items():
        code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
        literals = set(re.findall(r"'([^']*)'", code))
        spelled = (literals - FIELDS) & shared
        assert not spelled, f"{name} spells {sorted(spelled)}"


def test_every_script_compiles_with_the_prelude(valkey: redis.Redis) -> None:
    for name, source in SCRIPTS.items():
        sha = valkey.script_load(lua.with_prelude(source))
        assert valkey.script_exists(sha) == [True], name
