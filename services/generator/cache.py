"""The generator's side of the answer cache: a successful answer fills the entry its job names.

The gateway puts the entry's key and TTL in a chat job's payload when its
lookup missed (see ``services/gateway/answer_cache.py``). The entry is written
with the job's completing commit, so only an answer that became the job's
result is ever cached: failed, expired and cancelled jobs write nothing.
"Nothing relevant" answers are cached too: they hold only until the collection
changes, and a document becoming ready is such a change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from libs.common.commit import CacheValue
from libs.common.constants import ANSWER_CACHE_PAYLOAD_FIELD
from libs.common.stage import Outcome, Output


def with_cache_entry(payload: Mapping[str, Any], result: dict[str, Any]) -> Outcome:
    """``result``, plus the write of its answer cache entry when the job names one."""
    entry = payload.get(ANSWER_CACHE_PAYLOAD_FIELD)
    if not entry:
        return result
    cached = json.dumps({**result, "cached": True})
    return Output(result, on_complete=[CacheValue(str(entry["key"]), cached, int(entry["ttl_s"]))])
