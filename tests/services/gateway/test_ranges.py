"""``Range`` header values against a representation's size: which bytes, 416, or the
whole (``None``, the header ignored)."""

from __future__ import annotations

import pytest

from services.gateway.ranges import UNSATISFIABLE, ByteRange, byte_range, unsatisfiable_content_range

SIZE = 100


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=10-19", 10, 19),
        ("bytes=99-99", 99, 99),
        # A last position past the end is the last byte.
        ("bytes=10-100", 10, 99),
        ("bytes=10-999999", 10, 99),
        ("bytes=0-" + "9" * 5000, 0, 99),
        # From a position to the end.
        ("bytes=0-", 0, 99),
        ("bytes=42-", 42, 99),
        ("bytes=99-", 99, 99),
        # The last n bytes; all of them when there are fewer.
        ("bytes=-1", 99, 99),
        ("bytes=-10", 90, 99),
        ("bytes=-100", 0, 99),
        ("bytes=-500", 0, 99),
        ("bytes=-" + "9" * 5000, 0, 99),
        # The unit is case-insensitive; leading zeros, spaces around the list and empty
        # list elements are allowed.
        ("Bytes=1-2", 1, 2),
        ("BYTES=1-2", 1, 2),
        ("bytes=007-010", 7, 10),
        ("bytes= 1-2 ", 1, 2),
        ("bytes=1-2,", 1, 2),
        ("bytes=, ,1-2", 1, 2),
        ("bytes=\t1-2", 1, 2),
    ],
)
def test_a_single_range_selects_those_bytes(header: str, start: int, end: int) -> None:
    wanted = byte_range(header, SIZE)
    assert wanted == ByteRange(start, end, SIZE)
    assert isinstance(wanted, ByteRange)
    data = bytes(range(SIZE))
    assert data[wanted.start : wanted.stop] == data[start : end + 1]
    assert wanted.content_range == f"bytes {start}-{end}/{SIZE}"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=100-",
        "bytes=100-200",
        "bytes=100-100",
        "bytes=5000-",
        "bytes=" + "9" * 5000 + "-",
        "bytes=-0",
        "bytes=-000",
    ],
)
def test_a_range_of_no_byte_is_unsatisfiable(header: str) -> None:
    assert byte_range(header, SIZE) is UNSATISFIABLE


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        # Another unit, or none.
        "items=0-1",
        "bit=0-1",
        "0-1",
        "bytes",
        "bytes=",
        "bytes=,",
        # Not a range-spec.
        "bytes=-",
        "bytes=1",
        "bytes=a-b",
        "bytes=1-2-3",
        "bytes=1 - 2",
        "bytes=+1-2",
        "bytes=1_0-20",
        "bytes=-1_0",
        "bytes=\u0663-5",  # an Arabic-Indic three
        "bytes=0x10-20",
        "bytes=1.5-2",
        "bytes=-1-2",
        # Last before first: an invalid range-spec, even past the end.
        "bytes=5-2",
        "bytes=200-150",
        "bytes=" + "9" * 5000 + "-5",
        # Several ranges (no multipart/byteranges answer), even overlapping or one unsatisfiable.
        "bytes=0-1,5-6",
        "bytes=0-1,0-1",
        "bytes=0-1, -5",
        "bytes=0-1,500-600",
    ],
)
def test_anything_else_is_ignored(header: str | None) -> None:
    assert byte_range(header, SIZE) is None


def test_an_empty_representation() -> None:
    # No position is in it.
    assert byte_range("bytes=0-", 0) is UNSATISFIABLE
    assert byte_range("bytes=0-0", 0) is UNSATISFIABLE
    assert byte_range("bytes=-0", 0) is UNSATISFIABLE
    # A suffix of an empty representation: satisfiable by RFC 9110, but no Content-Range
    # can say zero bytes, so the whole (empty) representation.
    assert byte_range("bytes=-5", 0) is None
    assert byte_range("bytes=5-2", 0) is None
    assert unsatisfiable_content_range(0) == "bytes */0"


def test_a_one_byte_representation() -> None:
    assert byte_range("bytes=0-", 1) == ByteRange(0, 0, 1)
    assert byte_range("bytes=-1", 1) == ByteRange(0, 0, 1)
    assert byte_range("bytes=-2", 1) == ByteRange(0, 0, 1)
    assert byte_range("bytes=0-5", 1) == ByteRange(0, 0, 1)
    assert byte_range("bytes=1-", 1) is UNSATISFIABLE
