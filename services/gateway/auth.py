"""Who is asking: every request but the public ones carries an API key.

Two parts, so that no route can forget authentication:

- :class:`Authentication`, an ASGI middleware, authenticates every request to a
  path not in the public set, in one Valkey round trip (``ApiKeyStore``): the key,
  its revocation and expiry, and its rate limit. It answers a refused request
  itself (401, 429, or 503 when Valkey is down) before the body is read, and puts
  ``RateLimit-*`` headers on every response (a route's, an error's, a stream's).
  Before that, with no Valkey call, the presented key must find a place among the
  requests it may have in progress in this process (``key_concurrency``; 429 when
  none comes in time): one key's burst cannot take the pool the lookup needs.
- :func:`authorize`, a dependency the application puts on every route, checks the
  outcome again (a route can never run without it) and hands the route its
  :class:`Principal`. Routes then take their :class:`Access` with :func:`access_of`,
  naming the permission they need.

With ``DOCUMIND_AUTH=off`` (local development on a loopback address only) every
request acts as the operator in the default tenant, with no limit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from re import Pattern
from typing import Annotated, Any, Final

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.access import Access
from libs.common.apikeys import (
    ApiKeyStore,
    Authenticated,
    AuthResult,
    Permission,
    Principal,
    Refused,
    bearer_token,
)
from libs.common.errors import DocuMindError, Forbidden, QueueUnavailable, Unauthorized
from libs.common.keys import DEFAULT_TENANT
from libs.common.logs import bind
from libs.common.ratelimit import RATE_LIMIT_HEADERS
from services.gateway.errors import error_response
from services.gateway.key_concurrency import UNBOUNDED, KeyConcurrency, Ticket, TooManyInProgress, current
from services.gateway.openai_errors import openai_response

logger = logging.getLogger(__name__)

# Paths anyone may read: liveness and readiness probes.
PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz"})
_STATE_KEY: Final = "documind_auth"


@dataclass(frozen=True, slots=True)
class _Public:
    """A public path: no key needed."""


@dataclass(frozen=True, slots=True)
class _Open:
    """Authentication is off: everyone is the operator."""

    principal: Principal


@dataclass(frozen=True, slots=True)
class _Down:
    """Valkey did not answer the authentication: 503, as for any request that needs it."""

    error: QueueUnavailable


_Outcome = AuthResult | _Public | _Open | _Down


class Gate:
    """What the middleware asks: the key store, or nothing when authentication is off;
    and the bound on each key's requests in progress (none when it is off)."""

    def __init__(
        self,
        store: ApiKeyStore | None,
        *,
        open_rpm: int,
        retry_after_s: int,
        concurrency: KeyConcurrency | None = None,
    ) -> None:
        self.store = store
        self._open = _Open(Principal.operator(open_rpm))
        self.retry_after_s = retry_after_s
        self.concurrency = concurrency

    async def admit(self, authorization: str | None) -> Ticket:
        """A place for the request among its key's (:class:`TooManyInProgress` if none came)."""
        if self.concurrency is None:
            return UNBOUNDED
        return await self.concurrency.admit(bearer_token(authorization))

    async def outcome(self, authorization: str | None) -> _Outcome:
        if self.store is None:
            return self._open
        try:
            return await self.store.authenticate_header(authorization)
        except (RedisError, OSError) as exc:
            logger.warning("authentication: valkey did not answer: %s", exc)
            return _Down(QueueUnavailable(self.retry_after_s))


class Authentication:
    """Authenticates each non-public HTTP request (see the module's docstring).

    A request refused here (no valid key, over its limit, Valkey down) is answered
    at once, before its body is read: an unauthenticated upload costs nothing.
    ``public`` holds the paths that need no key: the probes and the API's docs
    (``public_prefixes``: their static assets);
    requests to ``openai_paths`` (patterns) are refused in OpenAI's error shape.
    With authentication off, a request from a web page of another origin (not in
    ``cors_origins``) is refused: no site a developer visits acts as the operator.
    The gate is read from ``app.state.gate`` at each request (built at start-up).
    """

    def __init__(
        self,
        app: ASGIApp,
        public: Iterable[str] = PUBLIC_PATHS,
        openai_paths: Iterable[Pattern[str]] = (),
        cors_origins: Iterable[str] = (),
        public_prefixes: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.public = frozenset(public)
        self.public_prefixes = tuple(public_prefixes)
        self.openai_paths = tuple(openai_paths)
        self.cors_origins = frozenset(cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        path: str = scope["path"]
        if path in self.public or (self.public_prefixes and path.startswith(self.public_prefixes)):
            state[_STATE_KEY] = _Public()
            await self.app(scope, receive, send)
            return
        gate: Gate = scope["app"].state.gate
        authorization = _header(scope, b"authorization")
        try:
            ticket = await gate.admit(authorization)
        except TooManyInProgress as exc:
            await self._response(path, exc)(scope, receive, send)
            return
        try:
            with current(ticket):
                outcome = await gate.outcome(authorization)
                ticket.authenticated(_known(outcome))
                state[_STATE_KEY] = outcome
                await self._answer(scope, receive, send, outcome, ticket)
        finally:
            ticket.release()

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, outcome: _Outcome, ticket: Ticket
    ) -> None:
        """Refuse the request, or hand it on with its rate headers; the key's place is
        given back as its response starts."""
        rate = getattr(outcome, "rate", None)
        extra: list[tuple[bytes, bytes]] = []
        if rate is not None:
            limits = rate.headers()
            extra = [(k.lower().encode(), limits[k].encode()) for k in RATE_LIMIT_HEADERS]
        refusal = self._refusal(scope, outcome)
        if refusal is not None:
            response = self._response(scope["path"], refusal)
            response.raw_headers.extend(extra)
            await response(scope, receive, send)
            return
        principal = getattr(outcome, "principal", None)
        if principal is not None:
            # Log lines about this request name the tenant and the key (never its secret).
            bind(tenant=principal.tenant or DEFAULT_TENANT, key_id=principal.key_id)

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A response that starts needs no more of the pool (a stream's later
                # reads, the fan-out's): the key's place goes to its next request.
                ticket.release()
                if extra:
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_limits)

    def _refusal(self, scope: Scope, outcome: _Outcome) -> DocuMindError | None:
        if isinstance(outcome, _Down):
            return outcome.error
        if isinstance(outcome, _Open):
            origin = _header(scope, b"origin")
            if origin is not None and origin not in self.cors_origins:
                return Forbidden("origin", f"requests from {origin} are refused while DOCUMIND_AUTH=off")
            return None
        if isinstance(outcome, _Public):
            return None
        try:
            outcome.check()
        except DocuMindError as exc:
            return exc
        return None

    def _response(self, path: str, exc: DocuMindError) -> Response:
        if any(p.match(path) for p in self.openai_paths):
            return openai_response(exc)
        return error_response(exc)


def _known(outcome: _Outcome) -> bool | None:
    """Whether the credential proved good or bad (None: not checked)."""
    if isinstance(outcome, Authenticated):
        return True
    if isinstance(outcome, Refused):
        return False
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


# Declares the scheme in the OpenAPI document (the docs' "Authorize" button, generated
# clients); the middleware has already read the header.
_BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer dm_...`")


async def authorize(request: Request, _scheme: Annotated[object, Depends(_BEARER)] = None) -> None:
    """The dependency on every route: a public path passes; any other needs a valid
    key within its rate limit (else 401 or 429, or 503 when Valkey is down)."""
    outcome: _Outcome | None = request.scope.get("state", {}).get(_STATE_KEY)
    if isinstance(outcome, _Public):
        return
    if outcome is None:
        raise Unauthorized("missing")
    if isinstance(outcome, _Down):
        raise outcome.error
    if isinstance(outcome, _Open):
        request.state.principal = outcome.principal
        return
    request.state.principal = outcome.check().principal


def principal_of(request: Request) -> Principal:
    """The request's principal (set by :func:`authorize`)."""
    found: Principal | None = getattr(request.state, "principal", None)
    if found is None:
        raise Unauthorized("missing")
    return found


def access_of(request: Request, permission: Permission) -> Access:
    """What the request may reach, once its key is known to have ``permission`` (else 403).

    The operator acts in the default tenant.
    """
    principal = principal_of(request)
    principal.require(permission)
    return Access(principal.tenant or DEFAULT_TENANT, principal.key_id, principal.collections)
