"""Request bodies within a bound, refused before they are read.

An upload's route checks each file's size, but only once the whole multipart body
has been received (Starlette spools its files to disk), and a JSON route reads its
body into memory. :class:`BodyLimit`, an ASGI middleware, bounds what is received
in the first place:

- a request whose ``Content-Length`` is over its bound gets 413 before a byte of
  its body is read;
- a body without one (chunked) is cut off as soon as it passes the bound, and the
  route's answer to the body it could not finish is replaced by the 413.

An upload may be ``MAX_FILES_PER_UPLOAD`` files of ``MAX_UPLOAD_BYTES`` each plus
the multipart framing (:func:`upload_body_bound`); any other request is JSON of at
most :data:`MAX_JSON_BODY_BYTES`. The refusal says which bound and which settings,
and closes the connection (a client still sending is cut off, not drained). It sits
inside :class:`~services.gateway.auth.Authentication`: a request without a valid key
is refused there first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.errors import PayloadTooLarge
from libs.common.settings import GatewaySettings
from services.gateway.errors import error_response
from services.gateway.openai_compat import router as openai_router
from services.gateway.openai_errors import openai_response
from services.gateway.uploads import router as uploads_router

# Questions, searches, OpenAI chat messages, keys: a megabyte is far more than any
# of them needs (a question is at most MAX_QUESTION_CHARS).
MAX_JSON_BODY_BYTES: Final = 1024 * 1024
# Multipart framing around the files: per file a boundary line and part headers (the
# filename at most 255 characters, escaped), and a little for the whole body.
UPLOAD_OVERHEAD_BYTES: Final = 64 * 1024
UPLOAD_OVERHEAD_PER_FILE: Final = 4 * 1024


def upload_body_bound(settings: GatewaySettings) -> int:
    """The largest body an upload request may send."""
    per_file = settings.max_upload_bytes + UPLOAD_OVERHEAD_PER_FILE
    return settings.max_files_per_upload * per_file + UPLOAD_OVERHEAD_BYTES


class _BodyTooLarge(Exception):
    """Raised from ``receive`` once the body passes its bound."""


class BodyLimit:
    """Refuses request bodies over their bound with 413 (see the module's docstring)."""

    def __init__(self, app: ASGIApp, settings: GatewaySettings) -> None:
        self.app = app
        self.upload_bound = upload_body_bound(settings)
        self.upload_reason = (
            f"{settings.max_files_per_upload:,} files (DOCUMIND_MAX_FILES_PER_UPLOAD) "
            f"of {settings.max_upload_bytes:,} bytes (DOCUMIND_MAX_UPLOAD_BYTES) and their framing"
        )
        self.upload_paths = _path_patterns(uploads_router.routes)
        self.openai_paths = _path_patterns(openai_router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bound, reason = self._bound(scope["path"])
        length = _content_length(scope)
        if length is not None and length > bound:
            await self._refuse(scope, receive, send, f"the request body is {length:,} bytes; {reason}")
            return
        received = 0
        refused = started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > bound:
                    refused = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # the route's answer to a body it could not finish: ours goes instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if started:
                raise
        if refused and not started:
            too_long = f"the request body is more than {bound:,} bytes; {reason}"
            await self._refuse(scope, receive, send, too_long)

    def _bound(self, path: str) -> tuple[int, str]:
        """The path's bound on bodies, and what it is (for the refusal)."""
        if any(p.match(path) for p in self.upload_paths):
            return self.upload_bound, f"at most {self.upload_bound:,}: {self.upload_reason}"
        return MAX_JSON_BODY_BYTES, f"at most {MAX_JSON_BODY_BYTES:,} for a request that is not an upload"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, message: str) -> None:
        exc = PayloadTooLarge(message)
        path: str = scope["path"]
        response: Response = (
            openai_response(exc) if any(p.match(path) for p in self.openai_paths) else error_response(exc)
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _path_patterns(routes: Iterable[BaseRoute]) -> tuple[re.Pattern[str], ...]:
    return tuple(route.path_regex for route in routes if isinstance(route, APIRoute))


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
