"""``HEAD`` answered as ``GET`` without its body (RFC 9110 §9.3.2), on every path.

FastAPI's routes take only the methods they name, so a ``HEAD`` (``curl -I``, a
download manager or a link checker asking a file's size and type first) was 405. This
middleware passes a ``HEAD`` on as a ``GET``, so it goes through the same host check,
authentication, rate limit and route, and sends the ``GET``'s status and headers
(``Content-Length``, ``Content-Type``, ``Accept-Ranges``...) with no body: a path that
takes no ``GET`` still answers 405 with its ``Allow``, one that does not exist 404.

The empty end of the body goes out right after the headers, so a streamed answer (a
job's events) ends there: the server then reports the client gone, which stops the
stream. What the route sends after that is dropped.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """A plain ASGI middleware (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def headers_only(message: Message) -> None:
            nonlocal ended
            if ended or message["type"] != "http.response.start":
                return
            await send(message)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            ended = True

        await self.app({**scope, "method": "GET"}, receive, headers_only)
