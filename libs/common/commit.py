"""Typed commit operations: what a stage's outcome writes, applied atomically with its ack.

Handlers and the job state machine return these; :class:`CommitBatch` encodes
a batch of messages' operations for the ``COMMIT`` script (``lua.py``), which
applies them in order. Nothing outside this module spells a raw command list.

Conditions stop the rest of a message's operations:

- :class:`Guard`: the job already has a final status; the message counts as skipped;
- :class:`Join`: count this part and go on only at the last of ``total`` parts;
- :class:`IfExists`: go on only while a key exists;
- :class:`Require`: as ``IfExists``, but the message reports that it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from libs.common import jsontext
from libs.common.constants import ENVELOPE_FIELD, EVENT_DATA_FIELD, EVENT_TYPE_FIELD, EVENTS_MAXLEN

Scalar = str | int | float


def _flat(fields: Mapping[str, Scalar]) -> list[Scalar]:
    return [x for kv in fields.items() for x in kv]


@dataclass(slots=True)
class SetFields:
    """HSET fields on a hash."""

    key: str
    fields: Mapping[str, Scalar]

    def encode(self) -> list[Any]:
        return ["HSET", self.key, *_flat(self.fields)]


@dataclass(slots=True)
class SetIfExists:
    """HSET fields only on a hash that exists (never resurrects a deleted document)."""

    key: str
    fields: Mapping[str, Scalar]

    def encode(self) -> list[Any]:
        return ["HSETXX", self.key, *_flat(self.fields)]


@dataclass(slots=True)
class Increment:
    """HINCRBY a hash field; with ``if_exists``, only on a hash that exists."""

    key: str
    field: str
    by: int = 1
    if_exists: bool = False

    def encode(self) -> list[Any]:
        return ["HINCRBYXX" if self.if_exists else "HINCRBY", self.key, self.field, self.by]


@dataclass(slots=True)
class DeleteFieldIf:
    """HDEL a field only while its value is still ``value``."""

    key: str
    field: str
    value: str

    def encode(self) -> list[Any]:
        return ["HDELEQ", self.key, self.field, self.value]


@dataclass(slots=True)
class Delete:
    key: str

    def encode(self) -> list[Any]:
        return ["DEL", self.key]


@dataclass(slots=True)
class Expire:
    key: str
    ttl_s: int

    def encode(self) -> list[Any]:
        return ["EXPIRE", self.key, self.ttl_s]


@dataclass(slots=True)
class AddMember:
    """SADD one member."""

    key: str
    member: str

    def encode(self) -> list[Any]:
        return ["SADD", self.key, self.member]


@dataclass(slots=True)
class RemoveMember:
    """SREM one member."""

    key: str
    member: str

    def encode(self) -> list[Any]:
        return ["SREM", self.key, self.member]


@dataclass(slots=True)
class RemoveScored:
    """ZREM one member of a sorted set."""

    key: str
    member: str

    def encode(self) -> list[Any]:
        return ["ZREM", self.key, self.member]


@dataclass(slots=True)
class Enqueue:
    """A job envelope (JSON) onto a stage's stream."""

    stream: str
    envelope: str

    def encode(self) -> list[Any]:
        return ["XADD", self.stream, "*", ENVELOPE_FIELD, self.envelope]


@dataclass(slots=True)
class Schedule:
    """A message due again at ``due`` (unix time): a retry waiting out its backoff."""

    key: str
    due: float
    envelope: str

    def encode(self) -> list[Any]:
        return ["ZADD", self.key, self.due, self.envelope]


@dataclass(slots=True)
class AppendEvent:
    """One event on a job's events stream (capped at about ``EVENTS_MAXLEN``)."""

    key: str
    type: str
    data: Mapping[str, Any]

    def encode(self) -> list[Any]:
        data = jsontext.dumps(self.data)
        return ["XADD", self.key, "MAXLEN", "~", EVENTS_MAXLEN, "*", EVENT_TYPE_FIELD, self.type,
                EVENT_DATA_FIELD, data]  # fmt: skip


@dataclass(slots=True)
class AppendEntry:
    """An entry of plain fields on a stream, optionally capped at about ``maxlen``."""

    key: str
    fields: Mapping[str, Scalar]
    maxlen: int | None = None

    def encode(self) -> list[Any]:
        cap: list[Any] = ["MAXLEN", "~", self.maxlen] if self.maxlen is not None else []
        return ["XADD", self.key, *cap, "*", *_flat(self.fields)]


@dataclass(slots=True)
class CacheValue:
    """SET a string with a TTL (a cached answer)."""

    key: str
    value: str
    ttl_s: int

    def encode(self) -> list[Any]:
        return ["SET", self.key, self.value, "EX", self.ttl_s]


@dataclass(slots=True)
class Guard:
    """Skip the message's remaining ops when the job (its hash) already has a final status."""

    key: str

    def encode(self) -> list[Any]:
        return ["GUARD", self.key]


@dataclass(slots=True)
class Join:
    """Count this part (HINCRBY field 1); go on only when it is the ``total``-th."""

    key: str
    field: str
    total: int

    def encode(self) -> list[Any]:
        return ["JOIN", self.key, self.field, self.total]


@dataclass(slots=True)
class IfExists:
    """Skip the remaining ops when the key is gone."""

    key: str

    def encode(self) -> list[Any]:
        return ["IFEXISTS", self.key]


@dataclass(slots=True)
class Require:
    """Skip the remaining ops when the key is gone, and report it (result ``STOPPED``)."""

    key: str

    def encode(self) -> list[Any]:
        return ["REQUIRE", self.key]


Op = (
    SetFields | SetIfExists | Increment | DeleteFieldIf | Delete | Expire | AddMember | RemoveMember
    | RemoveScored | Enqueue | Schedule | AppendEvent | AppendEntry | CacheValue | Guard | Join | IfExists
    | Require
)  # fmt: skip

# What COMMIT reports per message.
STALE: Final = 0
APPLIED: Final = 1
SKIPPED: Final = 2
STOPPED: Final = 3


@dataclass
class CommitBatch:
    """The ops of a batch's messages, with the keys they name gathered into one KEYS list.

    ``first_key`` is KEYS[1]: the input stream the messages are acknowledged on.
    """

    first_key: str
    keys: list[str] = field(init=False)
    messages: list[dict[str, Any]] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = [self.first_key]
        self._index = {self.first_key: 1}

    def add(self, message_id: str, ops: Sequence[Op], stream: str = "") -> None:
        """One message's ops; ``message_id`` '' applies them without an ack.

        ``stream``: the message's input stream, when it is not ``first_key``.
        """
        encoded: list[list[Any]] = []
        index, keys = self._index, self.keys
        entry: dict[str, Any] = {"id": message_id, "ops": encoded}
        if stream and stream != self.first_key:
            position = index.get(stream)
            if position is None:
                keys.append(stream)
                position = index[stream] = len(keys)
            entry["s"] = position
        for op in ops:
            command = op.encode()
            key = command[1]
            position = index.get(key)
            if position is None:
                keys.append(key)
                position = index[key] = len(keys)
            command[1] = position
            encoded.append(command)
        self.messages.append(entry)

    @property
    def ids(self) -> list[str]:
        return [m["id"] for m in self.messages]

    def payload(self) -> str:
        return jsontext.dumps(self.messages)
