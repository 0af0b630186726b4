"""Local authentication (gateway/auth.py): access tokens, refresh tokens and the signing secret.

The repositories are small thread-safe in-memory stand-ins for the storage layer
(tests/auth_support.py), and the clock is a :class:`FakeClock` the tests move by hand; one test
runs the flows on the real SQLite storage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.auth import REFRESH_REUSE_GRACE_S, LocalAuthenticator, Tokens, load_or_create_secret
from storage.errors import EmailTaken, InvalidToken
from tests import auth_support
from tests.auth_support import (
    PASSWORD,
    SECRET,
    FakeClock,
    MemoryRefreshTokens,
    MemoryUsers,
    cheap_hasher,
)


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


auth = auth_support.auth
clock = auth_support.clock
make_auth = auth_support.make_auth
users = auth_support.users


# -- access tokens -----------------------------------------------------------------------


def test_access_token_expires_after_fifteen_minutes(
    auth: LocalAuthenticator, clock: FakeClock
) -> None:
    token = auth.register("ada@example.com", PASSWORD).access_token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900
    assert {"sub", "email", "role", "iat", "nbf", "exp", "iss", "aud", "jti"} <= claims.keys()
    clock.advance(899)
    auth.verify(token)
    clock.advance(1)
    with pytest.raises(InvalidToken, match="expired"):
        auth.verify(token)


def test_access_token_from_the_future_is_not_yet_valid(
    auth: LocalAuthenticator, clock: FakeClock
) -> None:
    token = auth.register("ada@example.com", PASSWORD).access_token
    clock.advance(-60)
    with pytest.raises(InvalidToken, match="not yet valid"):
        auth.verify(token)


def test_tampered_signature_is_refused(auth: LocalAuthenticator) -> None:
    header, payload, signature = auth.register("ada@example.com", PASSWORD).access_token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidToken, match="invalid access token"):
        auth.verify(f"{header}.{payload}.{flipped}")


def test_tampered_claims_are_refused(auth: LocalAuthenticator) -> None:
    token = auth.register("ada@example.com", PASSWORD).access_token
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = b64url({**claims, "role": "operator"})
    with pytest.raises(InvalidToken):
        auth.verify(f"{header}.{forged}.{signature}")


def test_unsigned_alg_none_token_is_refused(auth: LocalAuthenticator) -> None:
    token = auth.register("ada@example.com", PASSWORD).access_token
    claims = jwt.decode(token, options={"verify_signature": False})
    unsigned = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}."
    with pytest.raises(InvalidToken):
        auth.verify(unsigned)


def test_token_signed_with_another_secret_is_refused(
    auth: LocalAuthenticator, make_auth: Callable[..., LocalAuthenticator]
) -> None:
    auth.register("ada@example.com", PASSWORD)
    other = make_auth(secret=b"o" * 32)
    with pytest.raises(InvalidToken):
        auth.verify(other.login("ada@example.com", PASSWORD).access_token)


@pytest.mark.parametrize(
    ("issuer", "audience"), [("someone-else", "smartcharge-api"), ("smartcharge", "other-api")]
)
def test_wrong_issuer_or_audience_is_refused(
    auth: LocalAuthenticator,
    make_auth: Callable[..., LocalAuthenticator],
    issuer: str,
    audience: str,
) -> None:
    auth.register("ada@example.com", PASSWORD)
    foreign = make_auth(issuer=issuer, audience=audience)
    with pytest.raises(InvalidToken):
        auth.verify(foreign.login("ada@example.com", PASSWORD).access_token)


def test_token_without_required_claims_is_refused(auth: LocalAuthenticator) -> None:
    token = jwt.encode({"sub": "u1", "role": "driver"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        auth.verify(token)


def test_garbage_is_an_invalid_token(auth: LocalAuthenticator) -> None:
    with pytest.raises(InvalidToken):
        auth.verify("not.a.jwt")


def test_short_secret_is_refused(users: MemoryUsers) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LocalAuthenticator(users, MemoryRefreshTokens(), secret=b"short", hasher=cheap_hasher())


# -- refresh tokens ----------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token(auth: LocalAuthenticator) -> None:
    first = auth.register("ada@example.com", PASSWORD)
    second = auth.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert auth.verify(second.access_token) == auth.verify(first.access_token)
    third = auth.refresh(second.refresh_token)
    auth.verify(third.access_token)


def test_refresh_tokens_are_stored_only_as_digests() -> None:
    tokens = MemoryRefreshTokens()
    auth = LocalAuthenticator(MemoryUsers(), tokens, secret=SECRET, hasher=cheap_hasher())
    issued = auth.register("ada@example.com", PASSWORD).refresh_token
    assert len(issued) >= 43
    (stored,) = tokens.rows
    assert issued not in stored
    assert stored == hashlib.sha256(issued.encode()).hexdigest()


def test_reusing_a_spent_refresh_token_after_the_grace_window_revokes_the_whole_family(
    auth: LocalAuthenticator, clock: FakeClock
) -> None:
    first = auth.register("ada@example.com", PASSWORD)
    other_login = auth.login("ada@example.com", PASSWORD)
    second = auth.refresh(first.refresh_token)  # the thief, say
    clock.advance(REFRESH_REUSE_GRACE_S + 1)
    with pytest.raises(InvalidToken, match="already used"):
        auth.refresh(first.refresh_token)  # the victim, with the old copy
    with pytest.raises(InvalidToken, match="revoked"):
        auth.refresh(second.refresh_token)  # the thief is out too
    auth.refresh(other_login.refresh_token)  # another login is a separate family


def test_a_spent_refresh_token_again_within_the_grace_window_gets_the_same_pair(
    auth: LocalAuthenticator, clock: FakeClock
) -> None:
    first = auth.register("ada@example.com", PASSWORD)
    other = auth.register("bob@example.com", PASSWORD)
    second = auth.refresh(first.refresh_token)  # one tab
    clock.advance(REFRESH_REUSE_GRACE_S - 1)
    again = auth.refresh(first.refresh_token)  # the other tab, with the same stored token
    assert again == second
    assert auth.verify(again.access_token).email == "ada@example.com"
    third = auth.refresh(second.refresh_token)  # the family lives on
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)
    auth.verify(auth.refresh(other.refresh_token).access_token)  # a third party: unaffected


def test_the_grace_window_ends_with_a_revoked_family_and_spares_other_families(
    auth: LocalAuthenticator, clock: FakeClock
) -> None:
    first = auth.register("ada@example.com", PASSWORD)
    other = auth.register("bob@example.com", PASSWORD)
    second = auth.refresh(first.refresh_token)
    clock.advance(REFRESH_REUSE_GRACE_S - 1)
    assert auth.refresh(first.refresh_token) == second
    clock.advance(2)  # now past the window, counted from the first use
    with pytest.raises(InvalidToken, match="already used"):
        auth.refresh(first.refresh_token)
    with pytest.raises(InvalidToken, match="revoked"):
        auth.refresh(second.refresh_token)
    auth.refresh(other.refresh_token)


def test_the_grace_window_can_be_turned_off(
    make_auth: Callable[..., LocalAuthenticator],
) -> None:
    auth = make_auth(refresh_reuse_grace_s=0)
    first = auth.register("ada@example.com", PASSWORD)
    auth.refresh(first.refresh_token)
    with pytest.raises(InvalidToken, match="already used"):
        auth.refresh(first.refresh_token)


def test_a_revoked_family_is_not_revived_by_the_grace_window(auth: LocalAuthenticator) -> None:
    first = auth.register("ada@example.com", PASSWORD)
    auth.refresh(first.refresh_token)
    auth.logout(first.refresh_token)
    with pytest.raises(InvalidToken, match="revoked"):
        auth.refresh(first.refresh_token)


def test_two_authenticators_on_one_store_agree_on_the_successor(
    make_auth: Callable[..., LocalAuthenticator],
) -> None:
    """Two gateway workers: nothing in memory, the second computes the first's answer."""
    one, two = make_auth(), make_auth()
    first = one.register("ada@example.com", PASSWORD)
    assert two.refresh(first.refresh_token) == one.refresh(first.refresh_token)


def test_concurrent_refreshes_with_one_token_all_get_the_same_pair(
    auth: LocalAuthenticator,
) -> None:
    token = auth.register("ada@example.com", PASSWORD).refresh_token

    def attempt(_: int) -> Tokens | None:
        try:
            return auth.refresh(token)
        except InvalidToken:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attempt, range(8)))
    assert None not in answers
    assert len(set(answers)) == 1  # one successor, whoever won the race
    winner = answers[0]
    assert winner is not None
    auth.refresh(winner.refresh_token)  # and the family still works


def test_expired_refresh_token_is_refused(auth: LocalAuthenticator, clock: FakeClock) -> None:
    tokens = auth.register("ada@example.com", PASSWORD)
    clock.advance(30 * 86400)
    with pytest.raises(InvalidToken, match="expired"):
        auth.refresh(tokens.refresh_token)


def test_refresh_token_lives_thirty_days(auth: LocalAuthenticator, clock: FakeClock) -> None:
    tokens = auth.register("ada@example.com", PASSWORD)
    clock.advance(30 * 86400 - 1)
    auth.refresh(tokens.refresh_token)


def test_unknown_refresh_token_is_refused(auth: LocalAuthenticator) -> None:
    with pytest.raises(InvalidToken, match="unknown"):
        auth.refresh("made-up")
    with pytest.raises(InvalidToken, match="unknown"):
        auth.logout("made-up")


def test_logout_revokes_the_family_and_is_idempotent(auth: LocalAuthenticator) -> None:
    first = auth.register("ada@example.com", PASSWORD)
    second = auth.refresh(first.refresh_token)
    auth.logout(first.refresh_token)  # any token of the family ends the session
    with pytest.raises(InvalidToken, match="revoked"):
        auth.refresh(second.refresh_token)
    auth.logout(second.refresh_token)


def test_refresh_of_a_deleted_user_is_refused(auth: LocalAuthenticator, users: MemoryUsers) -> None:
    tokens = auth.register("ada@example.com", PASSWORD)
    users.rows.clear()
    with pytest.raises(InvalidToken, match="no longer exists"):
        auth.refresh(tokens.refresh_token)


def test_flows_work_on_the_real_sqlite_storage(tmp_path: Path, clock: FakeClock) -> None:
    from storage import DuplicateError as StorageDuplicateError
    from storage import open_storage

    store = open_storage(data_dir=tmp_path, clock_ms=lambda: int(clock() * 1000))
    try:
        auth = LocalAuthenticator(
            store.users,
            store.refresh_tokens,
            secret=SECRET,
            clock=clock,
            hasher=cheap_hasher(),
            duplicate_error=StorageDuplicateError,
        )
        first = auth.register("ada@example.com", PASSWORD)
        with pytest.raises(EmailTaken):
            auth.register("Ada@Example.com", PASSWORD)
        assert auth.verify(first.access_token).role == "driver"
        second = auth.refresh(first.refresh_token)
        assert auth.refresh(first.refresh_token) == second  # within the grace window
        clock.advance(REFRESH_REUSE_GRACE_S + 1)
        with pytest.raises(InvalidToken, match="already used"):
            auth.refresh(first.refresh_token)
        with pytest.raises(InvalidToken, match="revoked"):
            auth.refresh(second.refresh_token)
        operator = auth.create_user("ops@example.com", PASSWORD, "operator")
        assert auth.verify(auth.login("ops@example.com", PASSWORD).access_token) == operator
        assert type(operator.role) is str
    finally:
        store.close()


def test_two_workers_on_one_sqlite_file_give_racing_tabs_one_pair(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Two gateway workers (two authenticators, two storage handles on one database file)
    and a refresh token presented to both at once: one successor, the family alive."""
    from storage import DuplicateError as StorageDuplicateError
    from storage import open_storage

    stores = [open_storage(data_dir=tmp_path, clock_ms=lambda: int(clock() * 1000)) for _ in "ab"]
    try:
        workers = [
            LocalAuthenticator(
                store.users,
                store.refresh_tokens,
                secret=SECRET,
                clock=clock,
                hasher=cheap_hasher(),
                duplicate_error=StorageDuplicateError,
            )
            for store in stores
        ]
        token = workers[0].register("ada@example.com", PASSWORD).refresh_token
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda i: workers[i % 2].refresh(token), range(4)))
        assert len(set(answers)) == 1
        clock.advance(REFRESH_REUSE_GRACE_S + 1)
        workers[1].refresh(answers[0].refresh_token)  # the family is alive
        with pytest.raises(InvalidToken, match="already used"):
            workers[0].refresh(token)  # and a reuse after the window is still caught
    finally:
        for store in stores:
            store.close()


# -- the signing secret ------------------------------------------------------------------


def test_secret_file_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "jwt.secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == secret
    assert [p.name for p in path.parent.iterdir()] == ["jwt.secret"]  # no temp file left


def test_truncated_secret_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "jwt.secret"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="5 bytes"):
        load_or_create_secret(path)
