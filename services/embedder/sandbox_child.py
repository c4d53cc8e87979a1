"""The parse sandbox's child: one upload, within its limits, then exit.

A child is forked by the embedder's fork server (``sandbox.py``), which imported
this module, and so the parsers, once. It ignores SIGINT and SIGTERM (the embedder
decides when it stops) and exits as soon as the embedder's end of its socket closes
(a thread watches it): an embedder killed with SIGKILL leaves no parse running. The
fork server cannot be relied on for that, since every child holds the embedder's
"alive" pipe open for it; ``PR_SET_PDEATHSIG`` still covers the fork server's death.
It caps its own address space (``RLIMIT_AS``) and CPU time (``RLIMIT_CPU``, a last
backstop behind the embedder's wall clock), reads the upload, parses and chunks it, and
writes one JSON reply: ``{"pages", "chunks", "texts"}``, or ``{"error"}`` for a document
that fails (the reason names the limit it passed), or ``{"bug"}`` for anything
else (the message is retried). Every message on the socket is an 8-byte length and
that many bytes. JSON, not pickle: the embedder never unpickles what a process that
read a hostile file sends.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
from typing import Any, Literal

# Loaded once by the fork server, not by every child.
import charset_normalizer  # noqa: F401
import docx  # noqa: F401
import lxml.etree  # noqa: F401
import pypdf  # noqa: F401
import pypdfium2  # noqa: F401
import tokenizers  # noqa: F401

from libs.common.constants import EMBEDDER
from libs.common.errors import PermanentError
from libs.common.logs import bind, configure_logging
from services.embedder.parse_job import ParseJob, ParseLimits, parse_and_chunk

HEADER = struct.Struct("!Q")
# Set aside at start and freed on MemoryError, so the reply can still be written.
_RESERVE_BYTES = 4 * 1024 * 1024
# CPU seconds past the wall-time limit before the kernel stops an orphaned child.
_CPU_SLACK_S = 5
_PR_SET_PDEATHSIG = 1
# Exit status of a child whose embedder went away.
_ABANDONED = 3
# How libxml2 (through lxml) and C libraries report a failed allocation.
_MEMORY_WORDS = ("memory allocation failed", "out of memory", "cannot allocate memory", "err_no_memory")


def serve(
    sock: socket.socket,
    job: ParseJob,
    log_level: str,
    log_format: Literal["json", "text"],
    log_fields: dict[str, str],
) -> None:
    """The child's whole life: limits, one upload in, one reply out. Its log lines
    (the parsers' warnings) look like the embedder's and name the job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(log_level, EMBEDDER, log_format)
    bind(**log_fields)
    _die_with_parent()
    _limit(job.limits)
    reserve: bytearray | None = None
    try:
        reserve = bytearray(_RESERVE_BYTES)
        data = recv(sock)
        _exit_when_abandoned(sock)
        reply = json.dumps(_parse(job, data), ensure_ascii=False).encode()
    except MemoryError:
        reserve = None  # room to answer
        reply = json.dumps({"error": job.limits.over_memory().message}).encode()
    del reserve
    send(sock, reply)
    sock.close()


def _parse(job: ParseJob, data: bytes) -> dict[str, Any]:
    try:
        parsed = parse_and_chunk(job, data)
    except PermanentError as exc:
        out_of_memory = _out_of_memory(exc)
        return {"error": job.limits.over_memory().message if out_of_memory else exc.message}
    except MemoryError:
        raise
    except Exception as exc:  # a bug, not the document's fault: the message is retried
        if _out_of_memory(exc):
            return {"error": job.limits.over_memory().message}
        return {"bug": f"{type(exc).__name__}: {exc}"}
    return {"pages": parsed.pages, "chunks": parsed.chunks, "texts": parsed.texts}


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` or what caused it is a failed allocation (lxml reports some as
    syntax errors, "unknown error" with ERR_NO_MEMORY in its log; the parsers wrap
    what they raise)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        text = f"{seen} {getattr(seen, 'error_log', '')}".lower()
        if isinstance(seen, MemoryError) or any(word in text for word in _MEMORY_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _limit(limits: ParseLimits) -> None:
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = math.ceil(limits.timeout_s) + _CPU_SLACK_S
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + _CPU_SLACK_S))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _exit_when_abandoned(sock: socket.socket) -> None:
    """Exit once the embedder's end of the socket closes: it died, or gave up on this
    parse. It sends nothing after the upload, so the socket turns readable only then."""
    fd = sock.fileno()

    def watch() -> None:
        select.select([fd], [], [])
        os._exit(_ABANDONED)

    threading.Thread(target=watch, name="documind-parse-watch", daemon=True).start()


def _die_with_parent() -> None:
    """SIGKILL when the fork server (which exits with the embedder) goes."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def recv(sock: socket.socket) -> bytes:
    (size,) = HEADER.unpack(_exactly(sock, HEADER.size))
    return _exactly(sock, size)


def send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(HEADER.pack(len(payload)))
    sock.sendall(payload)


def _exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes, received straight into one buffer (the upload is not copied)."""
    data = sock.recv(size, socket.MSG_WAITALL) if size else b""
    parts = [data]
    got = len(data)
    while got < size:  # MSG_WAITALL returns early only on a signal or the end of the stream
        more = sock.recv(size - got)
        if not more:
            raise EOFError("the embedder closed the socket")
        parts.append(more)
        got += len(more)
    return data if len(parts) == 1 else b"".join(parts)
