"""A lean keep-alive HTTP/1.1 client on asyncio streams, and multipart bodies.

A load generator that shares 2 cores with the stack must cost them little:
httpx spends more CPU per request than the gateway does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

from libs.common.admin_key import API_KEY_ENV, auth_headers

FINAL_JOB = frozenset({"done", "failed", "expired", "cancelled"})


class Http:
    """One keep-alive HTTP/1.1 connection on asyncio streams (httpx costs more CPU per request)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        self.reader, self.writer, self.port = reader, writer, port
        # As the CLI does: the key in DOCUMIND_API_KEY (the bench stacks set it).
        self.auth = "".join(f"{k}: {v}\r\n" for k, v in auth_headers(os.environ.get(API_KEY_ENV)).items())

    @classmethod
    async def connect(cls, port: int) -> Http:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, port)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += self.auth
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(head.encode() + b"\r\n" + body)
        status = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise RuntimeError(f"{method} {path}: chunked responses are not handled here")
        parts = status.split(b" ", 2)
        if len(parts) < 2:
            raise ConnectionError(f"{method} {path}: the connection closed")
        return int(parts[1]), await self.reader.readexactly(length)

    async def call(
        self, method: str, path: str, payload: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A JSON request (when ``payload`` is given) and its JSON answer."""
        body = b"" if payload is None else json.dumps(payload).encode()
        if payload is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        status, data = await self.request(method, path, body, headers)
        return status, json.loads(data) if data else None

    async def wait_job(self, job_id: str, timeout_s: float = 600.0) -> dict[str, Any]:
        """Block on ``GET /v1/jobs/{id}?wait=`` until the job is final (the server caps each wait)."""
        deadline = time.monotonic() + timeout_s
        while True:
            wait = max(0.0, min(30.0, deadline - time.monotonic()))
            status, job = await self.call("GET", f"/v1/jobs/{job_id}?wait={wait:.3f}")
            if status != 200:
                raise RuntimeError(f"GET /v1/jobs/{job_id} answered {status}: {job}")
            if job["status"] in FINAL_JOB:
                return dict(job)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:.0f}s")


def multipart(files: Sequence[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one ``file`` field per file, and its content type."""
    boundary = f"documind-bench-{uuid.uuid4().hex}"
    out = bytearray()
    for name, data in files:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
