"""Each key's requests in progress in one gateway: places, the line, the unverified lane,
and the place given back when a request no longer needs the pool (no Valkey here: the
authentication is a stub; tests/integration/test_key_concurrency.py runs the real one)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.types import Message, Receive, Scope, Send

from libs.common.apikeys import Authenticated, AuthResult, Principal, Refused, Role, bearer_token
from libs.common.ratelimit import RateDecision
from libs.common.watch import Watch
from services.gateway.auth import Authentication, Gate
from services.gateway.errors import headers_of, status_of
from services.gateway.key_concurrency import (
    KeyConcurrency,
    ReleasingWatcher,
    TooManyInProgress,
    current,
)
from services.gateway.lanes import Lane
from services.gateway.openai_errors import openai_body, shape_of

GOOD = "dm_good"
OTHER = "dm_other"


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


# --- the lane ----------------------------------------------------------------------


def test_a_place_given_back_goes_to_the_first_in_line() -> None:
    async def main() -> None:
        lane = Lane(1)
        assert await lane.take(0)
        order: list[str] = []

        async def wait(name: str) -> None:
            assert await lane.take(60)
            order.append(name)

        first = asyncio.create_task(wait("first"))
        await asyncio.sleep(0)  # it joins the line
        second = asyncio.create_task(wait("second"))
        await asyncio.sleep(0)
        assert not lane.take_now()  # a newcomer does not jump the line
        lane.give()
        await first
        assert order == ["first"] and not second.done()
        lane.give()
        await second
        lane.give()
        assert order == ["first", "second"] and lane.idle

    run(main)


def test_a_caller_that_gives_up_or_is_cancelled_holds_no_place() -> None:
    async def main() -> None:
        lane = Lane(1)
        assert await lane.take(0)
        assert not await lane.take(0)  # no wait: refused at once
        assert not await lane.take(0.01)  # gave up
        cancelled = asyncio.create_task(lane.take(60))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        lane.give()
        assert lane.idle and lane.take_now()

    run(main)


# --- the bound ---------------------------------------------------------------------


def refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("documind_key_concurrency_refusals_total", {"reason": reason}) or 0.0


def test_a_key_past_its_places_is_refused_with_429_and_retry_after_while_another_key_gets_in() -> None:
    async def main() -> None:
        bound = KeyConcurrency(per_key=2, unverified=4, wait_s=0.01, retry_after_s=3)
        held = [await bound.admit(GOOD) for _ in range(2)]
        for ticket in held:
            ticket.authenticated(True)
        before = refusals("key")
        with pytest.raises(TooManyInProgress) as refused:
            await bound.admit(GOOD)
        assert refusals("key") == before + 1
        exc = refused.value
        assert status_of(exc) == 429 and headers_of(exc) == {"Retry-After": "3"}
        assert exc.message == (
            "too many requests of this API key in progress at once (limit 2); retry in 3 s"
        )
        assert shape_of(exc).status == 429
        assert openai_body(exc)["error"]["code"] == "rate_limit_exceeded"
        other = await bound.admit(OTHER)  # another key has places of its own
        other.release()
        held[0].release()
        held[0].release()  # twice: harmless
        (await bound.admit(GOOD)).release()  # the place came back
        held[1].release()
        assert bound.keys_in_progress == 0  # idle keys are not kept

    run(main)


def test_a_request_in_line_gets_the_place_its_key_gives_back() -> None:
    async def main() -> None:
        bound = KeyConcurrency(per_key=1, unverified=4, wait_s=60, retry_after_s=1)
        first = await bound.admit(GOOD)
        first.authenticated(True)
        second = asyncio.create_task(bound.admit(GOOD))
        await asyncio.sleep(0)
        assert not second.done()
        first.release()
        (await second).release()

    run(main)


def test_credentials_not_yet_verified_share_a_few_places_and_a_known_key_never_waits_for_them() -> None:
    async def main() -> None:
        bound = KeyConcurrency(per_key=8, unverified=2, wait_s=0.01, retry_after_s=1)
        good = await bound.admit(GOOD)
        good.authenticated(True)  # GOOD is known from now on
        good.release()
        bogus = [await bound.admit(f"dm_bogus{i}") for i in range(2)]  # looked up now
        before = refusals("unverified")
        with pytest.raises(TooManyInProgress) as refused:
            await bound.admit("dm_bogus2")
        assert refusals("unverified") == before + 1
        assert "not yet verified" in refused.value.message
        assert bound.keys_in_progress == 2  # the refused one kept no place of its key
        known = [await bound.admit(GOOD) for _ in range(8)]  # not behind the flood
        with pytest.raises(TooManyInProgress):
            await bound.admit(OTHER)  # a new key is, for now
        bogus[0].authenticated(False)  # its lookup ended: the place is free
        (await bound.admit(OTHER)).release()
        for ticket in [*bogus, *known]:
            ticket.release()
        assert bound.keys_in_progress == 0 and bound.unverified.idle

    run(main)


def test_a_refused_credential_is_forgotten_and_looked_up_in_the_unverified_lane_again() -> None:
    async def main() -> None:
        bound = KeyConcurrency(per_key=4, unverified=1, wait_s=0, retry_after_s=1)
        ticket = await bound.admit(GOOD)
        ticket.authenticated(True)
        ticket.release()
        assert bound.is_known(bound.digest(GOOD))
        ticket = await bound.admit(GOOD)
        ticket.authenticated(False)  # revoked meanwhile
        ticket.release()
        assert not bound.is_known(bound.digest(GOOD))
        looking = await bound.admit(GOOD)
        with pytest.raises(TooManyInProgress):
            await bound.admit(GOOD)  # the one unverified place is taken
        looking.release()

    run(main)


def test_a_request_starting_to_wait_on_a_job_gives_its_place_back() -> None:
    class Watches:
        def __init__(self) -> None:
            self.opened = 0

        @asynccontextmanager
        async def _watch(self) -> AsyncIterator[Watch]:
            self.opened += 1
            yield SimpleNamespace()  # type: ignore[misc]

        def watch(self, key: str, after: str) -> Any:
            return self._watch()

    async def main() -> None:
        bound = KeyConcurrency(per_key=1, unverified=1, wait_s=0, retry_after_s=1)
        inner = Watches()
        watcher = ReleasingWatcher(inner)
        ticket = await bound.admit(GOOD)
        ticket.authenticated(True)
        with current(ticket):
            async with watcher.watch("job:{p0}:j:done", "0-0"):
                assert inner.opened == 1
                (await bound.admit(GOOD)).release()  # the waiter holds no place
        ticket.release()

    run(main)


# --- in the middleware -------------------------------------------------------------


class Store:
    """Authenticates GOOD and refuses anything else, without Valkey; counts lookups."""

    def __init__(self) -> None:
        self.lookups = 0

    async def authenticate_header(self, authorization: str | None) -> AuthResult:
        self.lookups += 1
        await asyncio.sleep(0)
        if bearer_token(authorization) != GOOD:
            return Refused("unknown")
        principal = Principal("k1", "t1", Role.READER, None, 600)
        return Authenticated(principal, RateDecision(True, 600, 599, 1, 0))


def middleware(routes: dict[str, Callable[[Send], Awaitable[None]]]) -> Authentication:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await routes[scope["path"]](send)

    return Authentication(app, openai_paths=[re.compile("^/v1/chat/completions$")])


async def call(
    auth: Authentication, gate: Gate, path: str, token: str = GOOD, started: asyncio.Event | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    scope: dict[str, Any] = {
        "type": "http",
        "path": path,
        "method": "GET",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "app": SimpleNamespace(state=SimpleNamespace(gate=gate)),
    }
    got: dict[str, Any] = {"body": b""}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            got["status"], got["headers"] = message["status"], dict(message.get("headers", []))
            if started is not None:
                started.set()
        else:
            got["body"] += message.get("body", b"")

    await auth(scope, receive, send)
    return got["status"], got["headers"], got["body"]


def test_a_started_response_gives_the_place_back_and_a_key_past_its_places_gets_429_in_either_shape() -> None:
    async def main() -> None:
        bound = KeyConcurrency(per_key=1, unverified=1, wait_s=0, retry_after_s=2)
        store = Store()
        gate = Gate(store, open_rpm=600, retry_after_s=2, concurrency=bound)  # type: ignore[arg-type]
        stream_on, held, entered = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def stream(send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await held.wait()
            await send({"type": "http.response.body", "body": b"done", "more_body": False})

        async def hold(send: Send) -> None:
            entered.set()
            await held.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"held", "more_body": False})

        auth = middleware({"/stream": stream, "/hold": hold, "/v1/chat/completions": hold})
        streaming = asyncio.create_task(call(auth, gate, "/stream", started=stream_on))
        await stream_on.wait()
        holding = asyncio.create_task(call(auth, gate, "/hold"))
        await entered.wait()  # past authentication, holding GOOD's one place
        lookups = store.lookups
        status, headers, body = await call(auth, gate, "/hold")
        assert (status, headers[b"retry-after"]) == (429, b"2"), body
        assert b"too many requests of this API key in progress at once (limit 1)" in body
        status, headers, body = await call(auth, gate, "/v1/chat/completions")
        assert (status, headers[b"retry-after"]) == (429, b"2")
        assert b'"code":"rate_limit_exceeded"' in body
        assert store.lookups == lookups  # refused with no lookup
        # Bogus keys wait on their own lane, never on GOOD's.
        status, _, _ = await call(auth, gate, "/hold", token="dm_bogus")
        assert status == 401
        held.set()
        assert (await streaming)[0] == 200 and (await holding)[0] == 200
        assert bound.keys_in_progress == 0 and bound.unverified.idle

    run(main)
