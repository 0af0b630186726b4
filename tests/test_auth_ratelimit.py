"""Login rate limits (gateway/ratelimit.py): the sliding window limiter and the login throttle
per email and per address, on a :class:`FakeClock` the tests move by hand.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.ratelimit import LoginThrottle, SlidingWindowLimiter
from tests import auth_support
from tests.auth_support import FakeClock

clock = auth_support.clock


# -- rate limits -------------------------------------------------------------------------


def test_limiter_allows_the_limit_then_says_how_long_to_wait(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(3, 60.0, clock=clock)
    for _ in range(3):
        assert limiter.hit("ip") is None
        clock.advance(10)
    assert limiter.hit("ip") == pytest.approx(30.0)  # the first hit leaves the window at 60
    assert limiter.hit("other-ip") is None


def test_limiter_window_slides_rather_than_resets(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(2, 60.0, clock=clock)
    assert limiter.hit("k") is None  # t=0
    clock.advance(50)
    assert limiter.hit("k") is None  # t=50
    clock.advance(10)
    assert limiter.hit("k") is None  # t=60: the t=0 hit has left
    assert limiter.hit("k") == pytest.approx(50.0)  # the t=50 hit leaves at 110
    clock.advance(50)
    assert limiter.hit("k") is None


def test_refused_hits_do_not_extend_the_wait(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(1, 60.0, clock=clock)
    assert limiter.hit("k") is None
    for _ in range(5):
        clock.advance(10)
        assert limiter.hit("k") is not None
    clock.advance(10)
    assert limiter.hit("k") is None


def test_limiter_reset_forgets_a_key(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(1, 60.0, clock=clock)
    limiter.hit("k")
    limiter.reset("k")
    assert limiter.hit("k") is None


def test_limiter_memory_is_bounded(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(1, 60.0, clock=clock, max_keys=100)
    for n in range(1000):
        limiter.hit(n)
    assert len(limiter) <= 100
    clock.advance(61)
    limiter.hit("late")
    assert len(limiter) == 1  # the expired keys went


def test_limiter_is_exact_under_concurrent_hits() -> None:
    limiter = SlidingWindowLimiter(50, 60.0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: limiter.hit("k"), range(400)))
    assert results.count(None) == 50


def test_login_throttle_limits_per_email_and_per_ip(clock: FakeClock) -> None:
    throttle = LoginThrottle(
        per_email=SlidingWindowLimiter(5, 60.0, clock=clock),
        per_ip=SlidingWindowLimiter(20, 60.0, clock=clock),
    )
    for _ in range(5):
        assert throttle.attempt("10.0.0.1", "ada@example.com") is None
    assert throttle.attempt("10.0.0.2", "ADA@example.com") == pytest.approx(60.0)
    for n in range(15):
        assert throttle.attempt("10.0.0.1", f"user{n}@example.com") is None
    assert throttle.attempt("10.0.0.1", "new@example.com") is not None  # the IP's 21st
    throttle.succeeded("ada@example.com")
    assert throttle.attempt("10.0.0.3", "ada@example.com") is None
