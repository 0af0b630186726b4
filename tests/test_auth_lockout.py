"""Logins that cannot lock someone else out (gateway/login_guard.py): wrong passwords are
counted per (account, client address), an account-wide slowdown only touches addresses that
failed on it, and sign-ups are limited per address. Over the in-process app on real storage,
and once over a real gunicorn with two real source addresses (127.0.0.1 and 127.0.0.2)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.login_guard import LoginGuard
from gateway.ratelimit import SlidingWindowLimiter
from tests.account_support import PASSWORD, Gateway, gateway_app, real_csms
from tests.auth_support import FakeClock
from tests.db import database_for_test, open_test_storage

pytestmark = pytest.mark.timeout(120)

ALICE = "alice@example.com"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with gateway_app(tmp_path / "csms") as gw:  # the default limits
        gw.auth.create_user(ALICE, PASSWORD, "driver")
        yield gw


def guard(clock: FakeClock, **kw: Any) -> LoginGuard:
    return LoginGuard(SlidingWindowLimiter(10_000, 60.0, clock=clock), clock=clock, **kw)


# -- over the app ----------------------------------------------------------------------------


@pytest.mark.needs_db
def test_fifty_wrong_passwords_from_one_address_do_not_stop_the_owner_elsewhere(
    gateway: Gateway,
) -> None:
    statuses = {gateway.login(ALICE, f"wrong password {n}", "10.0.0.66").status_code
                for n in range(50)}  # fmt: skip
    assert statuses == {401, 429}

    owner = gateway.login(ALICE, PASSWORD, "10.0.0.7")

    assert owner.status_code == 200, owner.json
    assert gateway.auth.verify(owner.json["access_token"]).email == ALICE


@pytest.mark.needs_db
def test_the_guessing_address_waits_even_with_the_right_password(gateway: Gateway) -> None:
    for n in range(6):
        assert gateway.login(ALICE, f"wrong password {n}", "10.0.0.66").status_code == 401
    refused = gateway.login(ALICE, PASSWORD, "10.0.0.66")
    assert refused.status_code == 429, refused.json
    assert int(refused.headers["Retry-After"]) >= 1


@pytest.mark.needs_db
def test_a_forwarded_header_cannot_put_failures_on_someone_elses_address(
    gateway: Gateway,
) -> None:
    for n in range(20):
        gateway.client.simulate_post(
            "/api/v1/auth/login",
            json={"email": ALICE, "password": f"wrong password {n}"},
            protocol="https",
            remote_addr="10.0.0.66",
            headers={"X-Forwarded-For": "10.0.0.7", "Forwarded": "for=10.0.0.7"},
        )
    assert gateway.login(ALICE, PASSWORD, "10.0.0.7").status_code == 200
    assert gateway.login(ALICE, PASSWORD, "10.0.0.66").status_code == 429


@pytest.mark.needs_db
def test_sign_ups_without_mail_are_limited_per_address(gateway: Gateway) -> None:
    def sign_up(n: int, address: str) -> int:
        body = {"email": f"new{n}@example.com", "password": PASSWORD}
        return gateway.post("register", body, address).status_code

    statuses = [sign_up(n, "10.0.0.66") for n in range(12)]
    assert statuses[:10] == [201] * 10
    assert statuses[10:] == [429, 429]
    assert sign_up(99, "10.0.0.7") == 201
    taken = gateway.post("register", {"email": ALICE, "password": PASSWORD}, "10.0.0.8")
    assert taken.status_code == 409  # without mail, today's answer (but limited, above)


# -- the guard on its own, on a clock the test moves -----------------------------------------


def test_the_backoff_doubles_after_the_free_failures_and_caps() -> None:
    clock = FakeClock()
    g = guard(clock, free_failures=3)
    waits = []
    for _ in range(12):
        wait = g.check(ALICE, "x")
        waits.append(wait)
        clock.advance(wait or 0)
        g.failed(ALICE, "x")
    assert waits[:4] == [None] * 4
    assert waits[4:] == [1, 2, 4, 8, 16, 32, 64, 128]
    for _ in range(3):
        g.failed(ALICE, "x")
    assert g.check(ALICE, "x") == 300  # at most max_delay_s


def test_a_guesser_spread_over_many_addresses_is_slowed_after_one_failure_each() -> None:
    clock = FakeClock()
    g = guard(clock, account_failures=20)
    for n in range(21):
        assert g.check(ALICE, f"10.1.0.{n}") is None
        g.failed(ALICE, f"10.1.0.{n}")
    assert g.check(ALICE, "10.1.0.3") == pytest.approx(1.0)  # hot: backoff from failure one
    assert g.check(ALICE, "10.9.9.9") is None  # an address that never failed: no wait
    assert g.check("bob@example.com", "10.1.0.3") is None  # other accounts: untouched
    clock.advance(601)
    assert g.check(ALICE, "10.1.0.4") is None  # the account cooled down


def test_the_right_password_forgives_that_address_only() -> None:
    clock = FakeClock()
    g = guard(clock, free_failures=1)
    for address in ("x", "y"):
        g.failed(ALICE, address)
        g.failed(ALICE, address)
    g.succeeded(ALICE, "x")
    assert g.check(ALICE, "x") is None
    assert g.check(ALICE, "y") is not None


# -- over a real gunicorn: two real source addresses -----------------------------------------


def login_from(source: str, port: int, context: object, body: dict[str, str]) -> int:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port, context=context, timeout=30, source_address=(source, 0)
    )
    try:
        conn.request(
            "POST",
            "/api/v1/auth/login",
            body=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.integration
@pytest.mark.needs_db
def test_a_real_gateway_lets_the_owner_in_from_another_source_address(
    module_mosquitto_url: str, tmp_path: Path
) -> None:
    with real_csms(module_mosquitto_url, tmp_path) as csms:
        driver = csms.logins["driver"]
        port, context = csms.api.https_port, csms.api.context
        wrong = {"email": driver["email"], "password": "not the password"}
        statuses = {login_from("127.0.0.2", port, context, wrong) for _ in range(50)}
        assert 429 in statuses

        assert login_from("127.0.0.1", port, context, driver) == 200
        assert login_from("127.0.0.2", port, context, driver) == 429


# -- several gateway workers -------------------------------------------------------------------


@pytest.mark.needs_db
def test_two_workers_count_the_same_failures(tmp_path: Path) -> None:
    """Each gateway worker has its own guard; the failures live in the database they share,
    so a guesser spread over the workers gets one allowance, not one per worker."""
    with database_for_test(tmp_path / "db") as url:
        storage = open_test_storage(tmp_path / "db", url)
        try:
            clock = FakeClock()
            first = guard(clock, free_failures=5, shared=storage.login_failures)
            second = guard(clock, free_failures=5, shared=storage.login_failures)
            for n in range(6):  # spread over both workers
                worker = first if n % 2 else second
                assert worker.check(ALICE, "10.0.0.66") is None
                worker.failed(ALICE, "10.0.0.66")
            assert first.check(ALICE, "10.0.0.66") is not None  # the 7th waits, everywhere
            assert second.check(ALICE, "10.0.0.66") is not None
            assert first.check(ALICE, "10.0.0.7") is None  # the owner elsewhere never does
            second.succeeded(ALICE, "10.0.0.66")
            assert first.check(ALICE, "10.0.0.66") is None  # a success forgives, everywhere
        finally:
            storage.close()


@pytest.mark.needs_db
def test_an_account_under_attack_from_many_addresses_slows_them_all_in_every_worker(
    tmp_path: Path,
) -> None:
    with database_for_test(tmp_path / "db") as url:
        storage = open_test_storage(tmp_path / "db", url)
        try:
            clock = FakeClock()
            workers = [
                guard(clock, account_failures=20, shared=storage.login_failures) for _ in range(2)
            ]
            for n in range(21):  # 21 addresses, one failure each, over both workers
                workers[n % 2].failed(ALICE, f"10.1.0.{n}")
            assert workers[0].check(ALICE, "10.1.0.3") is not None  # backoff from the first
            assert workers[1].check(ALICE, "10.9.9.9") is None  # a new address is not slowed
            clock.advance(3600)
            assert workers[1].check(ALICE, "10.1.0.3") is None  # and it passes in time
        finally:
            storage.close()
