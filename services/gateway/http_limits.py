"""uvicorn's httptools protocol with bounds a hostile client cannot stretch.

uvicorn bounds neither a request's header block nor how long a client may take to
send it: httptools buffers a header's value whole before handing it on (one 300 MB
header took minutes and gigabytes), and a client trickling one byte every few seconds
keeps its connection, so a few such clients exhaust the process's file descriptors
(slowloris). ``limited_http_protocol`` returns a subclass that adds:

- a header block of more than ``max_header_bytes`` or ``max_headers`` fields is
  refused with 431 and the connection closed, before any app code runs;
- a header block not complete ``header_timeout_s`` after the connection opened, or
  after the previous response ended, closes the connection (408 when some of it came);
- a request body with no bytes for ``body_timeout_s`` (while the app is ready to read
  it) ends the request: 408 when no response has started, then the connection closes.

Once a request's headers are complete the header timer stops: a long (SSE) response
is never cut by it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout_s: float = 20.0
    body_timeout_s: float = 30.0


class _HeaderLimitExceeded(Exception):
    """Raised from a parser callback: stops httptools there, then answered with 431."""


# Bytes around each header field besides its name and value: ": " and CRLF.
_FIELD_OVERHEAD = 4


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HttpLimits] = HttpLimits()

    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    # True while a header block is being read (from the connection's start or the
    # previous request's end until its headers are complete).
    _in_header_block = True
    # Whole chunks received inside the current header block: bounds what httptools
    # buffers while one huge field is still incomplete (it calls on_header only at
    # the field's end).
    _block_bytes = 0
    # The header block parsed so far (request target and fields), and its fields.
    _parsed_bytes = 0
    _fields = 0
    _reading_body = False
    _last_data = 0.0
    # Header blocks completed on this connection: tells a read that ended one.
    _completed = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the header limits answered by 431.
        self._unset_keepalive_if_required()
        counting, completed = self._in_header_block, self._completed
        if self._reading_body:
            self._last_data = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeaderLimitExceeded):
                self._refuse(431, str(exc.__context__))
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self._refuse(400, msg)
            return
        except httptools.HttpParserUpgrade:
            self._cancel_timers()  # the connection is another protocol's now
            self._in_header_block = self._reading_body = False
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # Only while one header block is still unfinished: a read that finished it also
        # holds the body (and maybe the next request), which are no part of it.
        if counting and self._in_header_block and self._completed == completed:
            self._block_bytes += len(data)
            if self._block_bytes > self.limits.max_header_bytes:
                self._refuse(431, "Request header fields too large.")

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_bytes = 0
        self._fields = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url), fields=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + _FIELD_OVERHEAD, fields=1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._completed += 1
        self._in_header_block = False
        self._block_bytes = 0
        self._cancel(self._header_timer)
        self._header_timer = None
        self._reading_body = True
        self._last_data = self.loop.time()
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_header_block = True
        self._reading_body = False
        self._cancel(self._body_timer)
        self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Every request read so far is answered: the client's next header block is due.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()

    # Limits
    def _count(self, size: int, fields: int) -> None:
        self._parsed_bytes += size
        self._fields += fields
        if self._parsed_bytes > self.limits.max_header_bytes:
            raise _HeaderLimitExceeded("Request header fields too large.")
        if self._fields > self.limits.max_headers:
            raise _HeaderLimitExceeded("Too many request header fields.")

    def _arm_header_timer(self) -> None:
        self._cancel(self._header_timer)
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._in_header_block:
            return
        if self._block_bytes or self._parsed_bytes:
            self._refuse(408, "Request header timeout.")
        else:  # an idle connection: nothing to answer
            self.transport.close()

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or not self._reading_body:
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            self._last_data = now  # the app has not asked for (more of) it: no client's wait
        idle = now - self._last_data
        if idle < self.limits.body_timeout_s:
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s - idle, self._body_timeout)
            return
        self._refuse(408, "Request body timeout.")

    def _refuse(self, status: int, msg: str) -> None:
        """Answer ``status`` with ``msg`` unless a response is under way, and close
        (uvicorn's send_400_response, any status)."""
        self._cancel_timers()
        self._in_header_block = self._reading_body = False
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            body = msg.encode("ascii")
            content = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend(
                [
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n",
                    b"\r\n",
                    body,
                ]
            )
            self.transport.write(b"".join(content))
        self.transport.close()
        if cycle is not None and not cycle.response_complete:
            # As connection_lost will: the app's receive() sees http.disconnect, its
            # send() writes nothing.
            cycle.disconnected = True
            cycle.message_event.set()

    def _cancel_timers(self) -> None:
        self._cancel(self._header_timer)
        self._cancel(self._body_timer)
        self._header_timer = self._body_timer = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


def limited_http_protocol(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to pass as uvicorn's ``http=``, with these limits."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
