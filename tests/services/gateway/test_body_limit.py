"""BodyLimit as an ASGI middleware around a route that reads the whole body, and the
filenames an upload is stored under."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from starlette.types import Message, Receive, Scope, Send

from libs.common.settings import GatewaySettings
from services.gateway.body_limit import MAX_JSON_BODY_BYTES, BodyLimit, upload_body_bound
from services.gateway.uploads import safe_filename
from tests.auth import admin_secret

UPLOAD = "/v1/collections/docs/documents"
SETTINGS = GatewaySettings(  # type: ignore[call-arg]
    _env_file=None, admin_key=admin_secret(), max_upload_bytes=1000, max_files_per_upload=2
)
BOUND = upload_body_bound(SETTINGS)
Header = tuple[bytes, bytes]


async def read_all(scope: Scope, receive: Receive, send: Send) -> None:
    """A route that reads the body to its end, and answers 400 if reading fails (as
    FastAPI answers a form it could not parse)."""
    size = 0
    try:
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
    except Exception:
        status, body = 400, b'{"detail": "There was an error parsing the body"}'
    else:
        status, body = 200, json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(
    path: str, chunks: Sequence[bytes], headers: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[int, str, int]:
    """The status and detail of a POST of ``chunks``, and how many were read."""
    pending = list(chunks)
    read = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal read
        body = pending.pop(0) if pending else b""
        read += bool(body)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": list(headers)}
    asyncio.run(BodyLimit(read_all, SETTINGS)(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    assert len(sent) == 2, sent
    payload = json.loads(body)
    return start["status"], str(payload.get("detail", payload)), read


def test_a_body_within_its_bound_reaches_the_route() -> None:
    assert call(UPLOAD, [b"a" * 1000] * 2) == (200, "{'size': 2000}", 2)
    assert call("/v1/chat", [b"{}"]) == (200, "{'size': 2}", 1)


def test_an_announced_length_over_the_bound_is_refused_unread() -> None:
    status, detail, read = call(UPLOAD, [b"a"], [(b"content-length", str(BOUND + 1).encode())])
    assert (status, read) == (413, 0)
    assert detail == (
        f"the request body is {BOUND + 1:,} bytes; at most {BOUND:,}: 2 files "
        "(DOCUMIND_MAX_FILES_PER_UPLOAD) of 1,000 bytes (DOCUMIND_MAX_UPLOAD_BYTES) and their framing"
    )


def test_a_streamed_body_is_cut_off_once_over_the_bound() -> None:
    chunk = b"a" * 10_000
    status, detail, read = call(UPLOAD, [chunk] * (BOUND // len(chunk) + 50))
    assert (status, read) == (413, BOUND // len(chunk) + 1)
    assert detail.startswith(f"the request body is more than {BOUND:,} bytes; at most {BOUND:,}: 2 files")


def test_other_requests_are_bound_to_a_megabyte_of_json() -> None:
    status, detail, _ = call("/v1/chat", [b" " * MAX_JSON_BODY_BYTES, b"{}"])
    assert status == 413
    assert detail == (
        "the request body is more than 1,048,576 bytes; at most 1,048,576 for a request that is not an upload"
    )


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("C:\\evil\\x.txt", "x.txt"),
        ("/abs/name.md", "name.md"),
        ("  spaced.txt  ", "spaced.txt"),
        ("a\x00b\x1f\x7f\x85c.txt", "abc.txt"),
        ("invoice\u202etxt.md", "invoicetxt.md"),
        ("Ünïcödé 報告.pdf", "Ünïcödé 報告.pdf"),
        ("..", ".."),
        (None, ""),
    ],
)
def test_safe_filename(raw: str | None, stored: str) -> None:
    assert safe_filename(raw) == stored
