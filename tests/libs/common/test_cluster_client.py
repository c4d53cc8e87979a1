"""The cluster client's repairs that need no cluster: stream keys read locally, and which
transport errors count as a closed connection (the cluster tests run the rest)."""

from __future__ import annotations

from libs.common.cluster_client import _closed_transport, stream_read_keys


def test_the_stream_keys_of_xreadgroup_and_xread_are_the_first_half_after_streams() -> None:
    group = ["GROUP", "g", "c", "COUNT", 32, "BLOCK", 1000, "STREAMS", "a{p0}", "b{p0}", ">", ">"]
    assert stream_read_keys(group) == ["a{p0}", "b{p0}"]
    assert stream_read_keys([b"COUNT", 1, b"streams", b"k{p1}", b"0-0"]) == [b"k{p1}"]
    assert stream_read_keys(["COUNT", 1]) == []


def test_only_errors_of_a_closed_transport_become_connection_errors() -> None:
    assert _closed_transport(AttributeError("'NoneType' object has no attribute 'writelines'"))
    assert _closed_transport(RuntimeError("unable to perform operation on <TCPTransport closed=True>"))
    assert _closed_transport(TypeError("'NoneType' object is not callable"))
    assert not _closed_transport(TypeError("unsupported operand"))
    assert not _closed_transport(ValueError("'NoneType' object is not callable"))
