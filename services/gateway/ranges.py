"""A request's ``Range`` header (RFC 9110 §14), for a representation held whole in memory.

:func:`byte_range` reads one header value against the representation's size and says
what to answer: ``None`` the whole representation (200), a :class:`ByteRange` those
bytes (206), :data:`UNSATISFIABLE` 416. Only a single range of the ``bytes`` unit is
served; anything else a server may ignore (§14.2) and is ignored: another unit, a
value that does not parse (``a > b`` included: such a range-spec is invalid, §14.1.1)
and several ranges (a ``multipart/byteranges`` answer is not worth it for the clients
that send Range: PDF viewers, ``curl -r``, download managers ask for one range).
Nothing here knows HTTP beyond the header's grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# ``first-pos "-" [ last-pos ]`` or ``"-" suffix-length``: ASCII digits only (``int``
# alone would take "+1", " 1", "1_0" and other scripts' digits).
_SPEC: Final = re.compile(r"([0-9]*)-([0-9]*)")
# List elements are separated by commas with optional spaces and tabs (RFC 9110 §5.6.1).
_OWS: Final = " \t"
# A number of more digits than this (leading zeros aside) is past any size held in
# memory: it is read as this bound instead, so a huge one costs no int() of it (which
# refuses over 4300 digits).
_MAX_DIGITS: Final = 19


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` of a representation of ``size`` bytes, both included
    (``0 <= start <= end < size``)."""

    start: int
    end: int
    size: int

    @property
    def stop(self) -> int:
        """The slice's stop: ``data[r.start : r.stop]``."""
        return self.end + 1

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` of a 206 with these bytes."""
        return f"bytes {self.start}-{self.end}/{self.size}"


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """A range of the representation's unit that selects none of its bytes (416)."""


UNSATISFIABLE: Final = Unsatisfiable()


def unsatisfiable_content_range(size: int) -> str:
    """The ``Content-Range`` of a 416 for a representation of ``size`` bytes."""
    return f"bytes */{size}"


def byte_range(header: str | None, size: int) -> ByteRange | Unsatisfiable | None:
    """What a ``Range`` header value asks of a representation of ``size`` bytes.

    - ``None`` (the whole representation, 200): no header, a unit other than
      ``bytes`` (the unit is case-insensitive), a value that does not parse, a range
      whose last position is before its first (``bytes=5-2``), more than one range
      (``bytes=0-1,5-6``), and a suffix range of an empty representation
      (``bytes=-5`` of 0 bytes: satisfiable by RFC 9110, but no ``Content-Range``
      can say zero bytes, so the empty 200 is the answer).
    - A :class:`ByteRange`: ``bytes=a-b`` (``b`` past the end is the last byte),
      ``bytes=a-`` (to the end), ``bytes=-n`` (the last ``n`` bytes, all of them when
      there are fewer).
    - :data:`UNSATISFIABLE` (416): a first position at or past the end (``bytes=0-``
      of an empty representation included), or a zero-length suffix (``bytes=-0``).

    Empty list elements are skipped (``bytes=0-1,`` is one range), as RFC 9110 §5.6.1
    asks of a list.
    """
    if header is None:
        return None
    unit, sep, ranges = header.partition("=")
    if not sep or unit.strip(_OWS).lower() != "bytes":
        return None
    specs = [s for s in (part.strip(_OWS) for part in ranges.split(",")) if s]
    if len(specs) != 1:
        return None
    match = _SPEC.fullmatch(specs[0])
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return None  # "bytes=-"
        suffix = _number(last)
        if suffix == 0:
            return UNSATISFIABLE
        if size == 0:
            return None
        return ByteRange(max(size - suffix, 0), size - 1, size)
    start = _number(first)
    if last:
        end = _number(last)
        if end < start:
            return None
    else:
        end = size - 1
    if start >= size:
        return UNSATISFIABLE
    return ByteRange(start, min(end, size - 1), size)


def _number(digits: str) -> int:
    """``digits`` (ASCII, at least one) as a number, at most ``10**_MAX_DIGITS - 1``."""
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return 10**_MAX_DIGITS - 1
    return int(significant or "0")
