"""The storage contract for users, refresh tokens and notifications, run on every backend:
SQLite (a file in tmp_path) and PostgreSQL (a fresh database per test; see
tests/storage_fixtures.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from storage import ConstraintError, DuplicateError, Role, Storage
from tests.storage_support import HOUR_MS, all_at_once, driver

if TYPE_CHECKING:  # imported at run time by pytest, as a plugin, so that it is assert-rewritten
    from tests.storage_fixtures import FakeClock


pytest_plugins = ("tests.storage_fixtures",)


# -- users -----------------------------------------------------------------------------------


def test_a_created_user_is_found_by_id_and_by_email(store: Storage, clock: FakeClock) -> None:
    user = store.users.create("ada@example.org", "hash", "operator")

    assert len(user.id) == 32
    assert user.role is Role.OPERATOR
    assert user.created_at == clock.now_ms
    assert store.users.get(user.id) == user
    assert store.users.by_email("ada@example.org") == user


def test_emails_are_stored_stripped_and_lower_cased_and_found_in_any_case(store: Storage) -> None:
    user = store.users.create("  Ada@Example.ORG ", "hash", Role.DRIVER)

    assert user.email == "ada@example.org"
    assert store.users.by_email("ADA@example.org ") == user


def test_an_email_already_taken_in_another_case_is_a_duplicate(store: Storage) -> None:
    store.users.create("ada@example.org", "hash", Role.DRIVER)

    with pytest.raises(DuplicateError):
        store.users.create("ADA@example.org", "other", Role.OPERATOR)
    assert store.users.count() == 1


def test_an_unknown_role_or_an_empty_email_is_refused(store: Storage) -> None:
    with pytest.raises(ValueError, match="root"):
        store.users.create("ada@example.org", "hash", "root")
    with pytest.raises(ValueError, match="empty"):
        store.users.create("  ", "hash", Role.DRIVER)
    assert store.users.count() == 0


def test_a_users_password_hash_can_be_replaced(store: Storage) -> None:
    user = driver(store)

    assert store.users.set_password_hash(user.id, "stronger-hash")
    assert not store.users.set_password_hash("nobody", "hash")
    stored = store.users.get(user.id)
    assert stored is not None
    assert stored.password_hash == "stronger-hash"


def test_unknown_users_are_none(store: Storage) -> None:
    assert store.users.get("nobody") is None
    assert store.users.by_email("nobody@example.org") is None
    assert store.users.by_email("") is None


def test_users_are_listed_oldest_first_in_pages_and_counted(
    store: Storage, clock: FakeClock
) -> None:
    created = []
    for i in range(5):
        created.append(store.users.create(f"u{i}@example.org", "hash", Role.DRIVER))
        clock.advance(1)

    assert store.users.list(limit=2, offset=0) == created[:2]
    assert store.users.list(limit=2, offset=2) == created[2:4]
    assert store.users.list(limit=10, offset=4) == created[4:]
    assert store.users.count() == 5


# -- refresh tokens --------------------------------------------------------------------------


def test_an_added_refresh_token_reads_back_unused(store: Storage, clock: FakeClock) -> None:
    user = driver(store)
    token = store.refresh_tokens.add("h1", user.id, "fam", expires_at=clock.now_ms + HOUR_MS)

    assert store.refresh_tokens.get("h1") == token
    assert token.created_at == clock.now_ms
    assert (token.used_at, token.revoked_at) == (None, None)
    assert store.refresh_tokens.get("unknown") is None


def test_a_token_hash_is_unique_and_its_user_must_exist(store: Storage) -> None:
    user = driver(store)
    store.refresh_tokens.add("h1", user.id, "fam", expires_at=1)

    with pytest.raises(DuplicateError):
        store.refresh_tokens.add("h1", user.id, "fam", expires_at=1)
    with pytest.raises(ConstraintError):  # foreign keys are enforced on SQLite too
        store.refresh_tokens.add("h2", "no-such-user", "fam", expires_at=1)


def test_a_refresh_token_can_be_used_only_once(store: Storage) -> None:
    user = driver(store)
    store.refresh_tokens.add("h1", user.id, "fam", expires_at=99)

    assert store.refresh_tokens.mark_used("h1", at=10) is True
    assert store.refresh_tokens.mark_used("h1", at=11) is False
    assert store.refresh_tokens.mark_used("unknown", at=11) is False
    token = store.refresh_tokens.get("h1")
    assert token is not None
    assert token.used_at == 10


def test_two_threads_racing_to_use_one_token_exactly_one_wins(store: Storage) -> None:
    user = driver(store)
    for round_ in range(5):
        store.refresh_tokens.add(f"race{round_}", user.id, "fam", expires_at=99)
        wins = all_at_once(4, lambda i, r=round_: store.refresh_tokens.mark_used(f"race{r}", i))
        assert sorted(wins) == [False, False, False, True]


def test_revoking_a_family_revokes_only_that_family_once(store: Storage) -> None:
    user = driver(store)
    for hash_, family in (("a1", "A"), ("a2", "A"), ("b1", "B")):
        store.refresh_tokens.add(hash_, user.id, family, expires_at=99)

    assert store.refresh_tokens.revoke_family("A", at=20) == 2
    assert store.refresh_tokens.revoke_family("A", at=30) == 0
    a1, b1 = store.refresh_tokens.get("a1"), store.refresh_tokens.get("b1")
    assert a1 is not None
    assert a1.revoked_at == 20
    assert b1 is not None
    assert b1.revoked_at is None
    assert store.refresh_tokens.mark_used("a2", at=40) is False
    assert store.refresh_tokens.mark_used("b1", at=40) is True


def test_revoking_a_user_revokes_all_their_tokens_and_no_one_elses(store: Storage) -> None:
    ada, bob = driver(store, "ada@example.org"), driver(store, "bob@example.org")
    store.refresh_tokens.add("a1", ada.id, "A", expires_at=99)
    store.refresh_tokens.add("a2", ada.id, "A2", expires_at=99)
    store.refresh_tokens.add("b1", bob.id, "B", expires_at=99)

    assert store.refresh_tokens.revoke_user(ada.id, at=5) == 2
    assert store.refresh_tokens.mark_used("a1", at=6) is False
    assert store.refresh_tokens.mark_used("b1", at=6) is True


# -- notifications ---------------------------------------------------------------------------


def test_notifications_come_back_newest_first_with_their_data(
    store: Storage, clock: FakeClock
) -> None:
    user = driver(store)
    first = store.notifications.add(user.id, "session_started", "Charging", {"evse_id": "e1"})
    clock.advance(1000)
    second = store.notifications.add(user.id, "session_ended", "Done", {"kwh": 7.5, "n": [1]})
    third = store.notifications.add(user.id, "note", "Plain", at=42)

    assert store.notifications.for_user(user.id) == [third, second, first]
    assert first.id < second.id < third.id
    assert first.created_at == clock.now_ms - 1000
    assert second.data == {"kwh": 7.5, "n": [1]}
    assert (third.data, third.created_at, third.read_at) == ({}, 42, None)


def test_notifications_after_an_id_are_only_the_newer_ones(store: Storage) -> None:
    user = driver(store)
    notes = [store.notifications.add(user.id, "k", f"m{i}") for i in range(4)]

    assert store.notifications.for_user(user.id, after_id=notes[1].id) == [notes[3], notes[2]]
    assert store.notifications.for_user(user.id, limit=1) == [notes[3]]


def test_marking_read_touches_only_the_users_own_unread_notifications(
    store: Storage, clock: FakeClock
) -> None:
    ada, bob = driver(store, "ada@example.org"), driver(store, "bob@example.org")
    a1, a2 = (store.notifications.add(ada.id, "k", m) for m in ("a1", "a2"))
    b1 = store.notifications.add(bob.id, "k", "b1")

    assert store.notifications.mark_read(ada.id, [a1.id, b1.id]) == 1
    assert store.notifications.mark_read(ada.id, [a1.id]) == 0
    assert store.notifications.mark_read(ada.id, []) == 0

    read_at = {n.id: n.read_at for n in store.notifications.for_user(ada.id)}
    assert read_at == {a1.id: clock.now_ms, a2.id: None}
    assert store.notifications.for_user(bob.id)[0].read_at is None
    assert store.notifications.unread_count(ada.id) == 1
