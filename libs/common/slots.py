"""Cluster slots of the keys a script or transaction touches, and an audit of them.

On a Valkey Cluster every key of one script call or one MULTI/EXEC must hash to
one slot (else CROSSSLOT). The key space gives each partition one hash tag;
this module lets tests prove that every call keeps to it. With
``DOCUMIND_SLOT_AUDIT`` set to a file path, every script call and transaction
(through :mod:`libs.common.scripts` and :func:`transaction`) appends one JSON
line ``{"call": name, "slots": [...], "keys": [...]}`` to that file: the
integration tests set it for every process they start and fail on a call whose
keys span two slots. Unset (production), recording costs one attribute read.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import redis.asyncio as aioredis
from redis.crc import key_slot as _key_slot

AUDIT_ENV: Final = "DOCUMIND_SLOT_AUDIT"


class _Audit:
    """Where calls are recorded (None: nowhere)."""

    path: str | None = os.environ.get(AUDIT_ENV) or None


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key``: CRC16 (XMODEM) of its hash tag, or of the whole key, mod 16384."""
    return int(_key_slot(key.encode() if isinstance(key, str) else key))


def slots_of(keys: Sequence[str]) -> set[int]:
    return {key_slot(k) for k in keys}


def audit_to(path: str | None) -> None:
    """Record calls to ``path`` from now on (None: stop). Tests of this process use it."""
    _Audit.path = path


def record(call: str, keys: Sequence[str]) -> None:
    """Note the keys of one atomic call, when auditing."""
    path = _Audit.path
    if path is None or not keys:
        return
    slots = sorted(slots_of(keys))
    # One example key per call in the usual case keeps lines short (atomic appends).
    shown = list(keys) if len(slots) > 1 else [keys[0]]
    line = json.dumps({"call": call, "slots": slots, "keys": shown}) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


@asynccontextmanager
async def transaction(client: aioredis.Redis, name: str, keys: Sequence[str]) -> AsyncIterator[Any]:
    """A MULTI/EXEC pipeline over ``keys`` (the caller queues commands on those keys only)."""
    record(f"MULTI {name}", keys)
    async with client.pipeline(transaction=True) as pipe:
        yield pipe
