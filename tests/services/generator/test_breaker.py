from __future__ import annotations

import pytest

from services.generator.breaker import CircuitBreaker, CircuitOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.admit().failure()


def test_opens_after_n_failures_in_a_row() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    fail(breaker, 2)
    breaker.admit().success()  # a success resets the count
    fail(breaker, 2)
    assert breaker.state == "closed"
    fail(breaker, 1)
    assert breaker.state == "open"
    clock.now += 4
    with pytest.raises(CircuitOpenError) as info:
        breaker.admit()
    assert info.value.retry_in_s == pytest.approx(6.0)
    assert info.value.failures == 3
    assert not info.value.probing


def test_half_open_admits_one_probe_and_its_result_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    fail(breaker, 1)
    clock.now += 10
    probe = breaker.admit()
    assert probe.probe and breaker.state == "half-open"
    with pytest.raises(CircuitOpenError) as info:
        breaker.admit()
    assert info.value.probing
    probe.success()
    assert breaker.state == "closed"
    assert not breaker.admit().probe

    fail(breaker, 1)
    clock.now += 10
    breaker.admit().failure()  # the probe fails: a fresh cooldown
    assert breaker.state == "open"
    clock.now += 9.5
    with pytest.raises(CircuitOpenError) as info:
        breaker.admit()
    assert info.value.retry_in_s == pytest.approx(0.5)


def test_a_released_probe_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    fail(breaker, 1)
    clock.now += 10
    breaker.admit().release()  # cancelled: no verdict
    assert breaker.state == "half-open"
    assert breaker.admit().probe


def test_a_lost_probe_expires_after_a_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    fail(breaker, 1)
    clock.now += 10
    breaker.admit()  # never reports
    clock.now += 10
    assert breaker.admit().probe


def test_a_permit_reports_once() -> None:
    breaker = CircuitBreaker(2, 10.0)
    permit = breaker.admit()
    permit.failure()
    permit.failure()
    assert breaker.failures == 1


@pytest.mark.parametrize(("failures", "cooldown"), [(0, 1.0), (1, 0.0)])
def test_bad_settings_are_refused(failures: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures, cooldown)
