"""What one presented API key may have in progress in one gateway process.

Every request but the public ones needs a pooled Valkey connection to be
authenticated, and most need more to be answered. Were requests admitted as they
come, one key firing a thousand at once would take every connection of the pool
(``DOCUMIND_VALKEY_POOL_SIZE``) and the other tenants' requests would be refused with
503 before the key's own rate limit (counted in Valkey, hence behind the pool) could
shed anything. So before authenticating, with no Valkey call, :class:`KeyConcurrency`
decides from the credential alone, keyed by its hash (never stored as such):

- each credential has a lane of ``DOCUMIND_KEY_MAX_CONCURRENT`` places: requests it
  has in progress at once in this process;
- a credential this process has not seen authenticate recently (a new key, a wrong
  or unknown one: :data:`REMEMBERED` credentials are kept, least recently used
  dropped first) also needs one of ``DOCUMIND_UNVERIFIED_KEY_MAX_CONCURRENT`` places
  shared by all of them, held while it is looked up. A flood of made-up keys then
  waits on that one lane, never on a known key's. The memory only chooses the lane:
  every request is authenticated in Valkey all the same (a revoked key is refused
  from its next request on, and forgotten here).

A request past its lane's places waits in line (in-process: it holds no connection)
up to ``DOCUMIND_KEY_QUEUE_WAIT_S``, then is refused with 429 and ``Retry-After``
(:class:`TooManyInProgress`), counted in ``documind_key_concurrency_refusals_total``.

A request gives its place back as soon as it no longer needs the pool: when its
response starts (an events stream, a streamed answer, a download), when it starts
waiting on a job through the waiters' fan-out (``?wait=``, a plain OpenAI completion:
:func:`release_current`, called by :class:`ReleasingWatcher`), or when it ends. A key
may therefore hold thousands of waits and streams at once, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Final, Literal

from prometheus_client import Counter

from libs.common.errors import RateLimited
from libs.common.watch import Watch, Watcher
from services.gateway.lanes import Lane

# Credentials that authenticated recently, remembered by hash to choose their lane
# (about 100 bytes each); a deployment with more keys active at once on one gateway
# sends the least recent through the unverified lane again, which costs only a wait.
REMEMBERED: Final = 10_000

RefusalReason = Literal["key", "unverified"]

REFUSALS = Counter(
    "documind_key_concurrency_refusals_total",
    "Requests refused with 429 before authentication, by reason: key (the API key had "
    "DOCUMIND_KEY_MAX_CONCURRENT requests in progress in this gateway), unverified (the "
    "places of credentials this gateway has not verified recently were all taken).",
    ["reason"],
)


class TooManyInProgress(RateLimited):
    """Too many requests in progress for the presented credential's lane: retry after
    ``retry_after_s`` (429, like the key's rate limit, whose subclass it is)."""

    def __init__(self, retry_after_s: int, limit: int, reason: RefusalReason) -> None:
        super().__init__(retry_after_s, limit, retry_after_s)
        whose = "of this API key" if reason == "key" else "with API keys not yet verified"
        self.message = (
            f"too many requests {whose} in progress at once (limit {limit}); retry in {retry_after_s} s"
        )
        self.args = (self.message,)
        self.reason = reason


class Ticket:
    """One request's place in its key's lane (and, until it is authenticated, in the
    unverified lane). Giving it back twice is harmless."""

    __slots__ = ("_lane", "_owner", "_unverified", "digest")

    def __init__(self, owner: KeyConcurrency | None, digest: bytes, lane: Lane | None) -> None:
        self._owner = owner
        self.digest = digest
        self._lane = lane
        self._unverified: Lane | None = None

    def looking_up(self, unverified: Lane) -> None:
        """The ticket also holds a place of ``unverified`` until it is authenticated."""
        self._unverified = unverified

    def authenticated(self, known: bool | None) -> None:
        """The credential proved good (True), bad (False), or could not be checked
        (None: Valkey did not answer); its lookup no longer needs the unverified lane."""
        if self._unverified is not None:
            self._unverified.give()
            self._unverified = None
        if self._owner is not None and known is not None:
            self._owner.learn(self.digest, known)

    def release(self) -> None:
        """The request no longer uses the pool: its place goes to the next in line."""
        self.authenticated(None)
        if self._lane is not None and self._owner is not None:
            self._owner.give(self.digest, self._lane)
            self._lane = None


# A request without a credential (refused with 401 without any Valkey call), or any
# request while authentication is off: no lane.
UNBOUNDED: Final = Ticket(None, b"", None)


class KeyConcurrency:
    """The lanes of this process (see the module's docstring)."""

    def __init__(self, per_key: int, unverified: int, wait_s: float, retry_after_s: int) -> None:
        self.per_key = per_key
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.unverified = Lane(unverified)
        self._lanes: dict[bytes, Lane] = {}
        self._known: OrderedDict[bytes, None] = OrderedDict()
        # Hashes are keyed by a secret of this process: nothing kept here is the key's
        # hash anywhere else.
        self._salt = secrets.token_bytes(16)

    def digest(self, token: str) -> bytes:
        data = token.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, digest_size=16, key=self._salt).digest()

    def is_known(self, digest: bytes) -> bool:
        return digest in self._known

    async def admit(self, token: str | None) -> Ticket:
        """A place for a request presenting ``token`` (None or "": no credential, no
        lane), waiting for one up to ``wait_s``; :class:`TooManyInProgress` when none came."""
        if not token:
            return UNBOUNDED
        digest = self.digest(token)
        lane = self._lanes.get(digest)
        if lane is None:
            lane = self._lanes[digest] = Lane(self.per_key)
        started = asyncio.get_running_loop().time()
        taken = False
        try:
            taken = await lane.take(self.wait_s)
        finally:
            if not taken:  # refused, or cancelled in line
                self._forget_idle(digest, lane)
        if not taken:
            REFUSALS.labels("key").inc()
            raise TooManyInProgress(self.retry_after_s, self.per_key, "key")
        ticket = Ticket(self, digest, lane)
        if digest in self._known:
            self._known.move_to_end(digest)
            return ticket
        left = max(0.0, self.wait_s - (asyncio.get_running_loop().time() - started))
        if not await _take_or_give_back(self.unverified, left, ticket):
            REFUSALS.labels("unverified").inc()
            raise TooManyInProgress(self.retry_after_s, self.unverified.limit, "unverified")
        ticket.looking_up(self.unverified)
        return ticket

    def learn(self, digest: bytes, known: bool) -> None:
        if not known:
            self._known.pop(digest, None)
            return
        self._known[digest] = None
        self._known.move_to_end(digest)
        if len(self._known) > REMEMBERED:
            self._known.popitem(last=False)

    def give(self, digest: bytes, lane: Lane) -> None:
        lane.give()
        self._forget_idle(digest, lane)

    def _forget_idle(self, digest: bytes, lane: Lane) -> None:
        if lane.idle and self._lanes.get(digest) is lane:
            del self._lanes[digest]

    @property
    def keys_in_progress(self) -> int:
        """Credentials with a request in progress or waiting (for tests and logs)."""
        return len(self._lanes)


async def _take_or_give_back(unverified: Lane, wait_s: float, ticket: Ticket) -> bool:
    """A place in the unverified lane; without one (or when cancelled) the ticket's place
    in its key's lane is given back."""
    try:
        taken = await unverified.take(wait_s)
    except BaseException:
        ticket.release()
        raise
    if not taken:
        ticket.release()
    return taken


# The request whose task (or a task it started) is running: its ticket.
_CURRENT: ContextVar[Ticket] = ContextVar("documind_key_ticket", default=UNBOUNDED)


@contextmanager
def current(ticket: Ticket) -> Iterator[None]:
    """``ticket`` is the current request's within the block (and in the tasks it starts)."""
    token = _CURRENT.set(ticket)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def release_current() -> None:
    """The current request starts waiting without the pool: give its place back."""
    _CURRENT.get().release()


class ReleasingWatcher:
    """A :class:`Watcher` whose watches first give the waiting request's place back."""

    def __init__(self, inner: Watcher) -> None:
        self._inner = inner

    def watch(self, key: str, after: str) -> AbstractAsyncContextManager[Watch]:
        return self._watch(key, after)

    @asynccontextmanager
    async def _watch(self, key: str, after: str) -> AsyncIterator[Watch]:
        release_current()
        async with self._inner.watch(key, after) as watch:
            yield watch
