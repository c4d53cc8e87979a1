"""A circuit breaker for the LLM: stop calling a provider that keeps failing.

::

    closed ──N failures in a row──► open ──cooldown over──► half-open
      ▲                              ▲                          │ one probe call
      └────────── probe succeeds ────┼──── probe fails ─────────┘

One breaker is shared by every call of a process. While it is open, calls fail at
once and learn how long the cooldown still runs; half-open lets a single probe
through and the others fail fast as if it were open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitOpenError(Exception):
    """The breaker refused a call.

    ``retry_in_s`` is the cooldown left; ``probing`` says a probe call is testing the
    LLM right now (half-open), so the answer may come sooner.
    """

    def __init__(self, retry_in_s: float, failures: int, *, probing: bool = False) -> None:
        super().__init__(f"circuit breaker open after {failures} failures in a row")
        self.retry_in_s = retry_in_s
        self.failures = failures
        self.probing = probing


@dataclass
class Permit:
    """One admitted call. Report how it went exactly once."""

    breaker: CircuitBreaker
    probe: bool
    _done: bool = False

    def success(self) -> None:
        if not self._done:
            self._done = True
            self.breaker._success()

    def failure(self) -> None:
        if not self._done:
            self._done = True
            self.breaker._failure(self.probe)

    def release(self) -> None:
        """Neither a success nor a failure (cancelled, out of time): frees a probe's slot."""
        if not self._done:
            self._done = True
            self.breaker._release(self.probe)


class CircuitBreaker:
    def __init__(
        self, failures: int, cooldown_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures < 1 or cooldown_s <= 0:
            raise ValueError("failures must be at least 1 and cooldown_s above 0")
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_since: float | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def failures(self) -> int:
        """Failed calls since the last success."""
        return self._failures

    def admit(self) -> Permit:
        """A permit for one call, or ``CircuitOpenError`` while the breaker is open."""
        now = self._clock()
        if self._state == "closed":
            return Permit(self, probe=False)
        if self._state == "open":
            left = self._opened_at + self.cooldown_s - now
            if left > 0:
                raise CircuitOpenError(left, self._failures)
            self._state = "half-open"
        # Half-open: one probe at a time; a probe that never reported (it cannot happen
        # through Permit, but a lost one must not wedge the breaker) expires after a cooldown.
        if self._probe_since is not None and now - self._probe_since < self.cooldown_s:
            left = self._probe_since + self.cooldown_s - now
            raise CircuitOpenError(left, self._failures, probing=True)
        self._probe_since = now
        return Permit(self, probe=True)

    def _success(self) -> None:
        self._state = "closed"
        self._failures = 0
        self._probe_since = None

    def _failure(self, probe: bool) -> None:
        self._failures += 1
        if probe or (self._state == "closed" and self._failures >= self.threshold):
            self._state = "open"
            self._opened_at = self._clock()
            self._probe_since = None

    def _release(self, probe: bool) -> None:
        if probe and self._state == "half-open":
            self._probe_since = None
