"""The refresh grace window through the HTTP API (gateway/auth.py, docs/auth.md): a refresh
token presented again within ``REFRESH_REUSE_GRACE_S`` of its first use gets the same new
pair (two tabs, a reload racing its own refresh); after the window its reuse revokes the
family; other families are never touched. The authenticator runs on a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.auth import REFRESH_REUSE_GRACE_S
from tests.account_support import PASSWORD, Gateway, gateway_app

pytestmark = [pytest.mark.needs_db, pytest.mark.timeout(60)]

ADA, BOB = "ada@example.com", "bob@example.com"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with gateway_app(tmp_path / "csms", auth_clock=True) as gw:
        gw.auth.create_user(ADA, PASSWORD, "driver")
        gw.auth.create_user(BOB, PASSWORD, "driver")
        yield gw


def login(gateway: Gateway, email: str) -> dict[str, str]:
    result = gateway.login(email, PASSWORD, "10.0.0.1")
    assert result.status_code == 200, result.json
    return dict(result.json)


def refresh(gateway: Gateway, token: str) -> tuple[int, dict[str, str]]:
    result = gateway.post("refresh", {"refresh_token": token})
    return result.status_code, dict(result.json)


def me(gateway: Gateway, access_token: str) -> int:
    result = gateway.client.simulate_get(
        "/api/v1/me/sessions",
        protocol="https",
        headers={"Authorization": f"Bearer {access_token}"},
    )
    return result.status_code


def test_the_same_refresh_token_twice_within_the_window_gets_the_same_pair(
    gateway: Gateway,
) -> None:
    ada, bob = login(gateway, ADA), login(gateway, BOB)
    status, first = refresh(gateway, ada["refresh_token"])
    assert status == 200, first
    gateway.clock.advance(REFRESH_REUSE_GRACE_S - 1)
    status, second = refresh(gateway, ada["refresh_token"])
    assert status == 200, second
    assert second == first
    assert me(gateway, second["access_token"]) == 200
    status, third = refresh(gateway, second["refresh_token"])  # the family lives on
    assert status == 200, third
    assert refresh(gateway, bob["refresh_token"])[0] == 200


def test_after_the_window_a_reuse_revokes_the_family_and_only_that_family(
    gateway: Gateway,
) -> None:
    ada, bob = login(gateway, ADA), login(gateway, BOB)
    ada_elsewhere = login(gateway, ADA)  # another device of ada's: its own family
    status, rotated = refresh(gateway, ada["refresh_token"])
    assert status == 200, rotated
    gateway.clock.advance(REFRESH_REUSE_GRACE_S + 1)
    status, reused = refresh(gateway, ada["refresh_token"])
    assert status == 401, reused
    assert "already used" in reused["reason"]
    status, dead = refresh(gateway, rotated["refresh_token"])
    assert status == 401, dead
    assert "revoked" in dead["reason"]
    assert refresh(gateway, bob["refresh_token"])[0] == 200  # a third party: unaffected
    assert refresh(gateway, ada_elsewhere["refresh_token"])[0] == 200
