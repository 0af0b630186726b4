"""Users and their refresh tokens.

An account is never removed while anything refers to it: :meth:`UserStore.delete` is a soft
delete (the row stays for the foreign keys of its sessions, reservations and notifications,
with its email and password scrubbed), so a session that is running when its driver is
deleted still gets its row written. Disabling and deleting both bump the user's
``token_version`` and revoke the refresh tokens, in one transaction: the user's access
tokens stop working on the next write request, and nothing is left half-done.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select, update

from storage._engine import Clock, Database
from storage._records import RefreshToken, Role, User

__all__ = ["RefreshTokenStore", "UserStore", "normalize_email"]


def normalize_email(email: str) -> str:
    """How emails are stored and looked up: stripped and lower-cased."""
    normalized = email.strip().lower()
    if not normalized:
        raise ValueError("email must not be empty")
    return normalized


def _user(row: Mapping[str, Any]) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        password_hash=row["password_hash"],
        role=Role(row["role"]),
        created_at=row["created_at"],
        token_version=int(row.get("token_version") or 0),
        disabled_at=row.get("disabled_at"),
        confirmed_at=row.get("confirmed_at"),
    )


class UserStore:
    """The ``users`` table. Ids are uuid4 hex strings; emails are unique after normalizing."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._table = db.table("users")

    def create(
        self,
        email: str,
        password_hash: str,
        role: Role | str,
        *,
        created_at: int | None = None,
        user_id: str | None = None,
        confirmed: bool = True,
    ) -> User:
        """Add a user; raises :class:`DuplicateError` if the email is taken (in any case).
        ``user_id``: keep an id given elsewhere (a Firebase uid mirrored here); default uuid4.
        ``confirmed=False``: the email address still has to be confirmed (a mailed link)."""
        created = self._clock_ms() if created_at is None else created_at
        user = User(
            id=uuid.uuid4().hex if user_id is None else user_id,
            email=normalize_email(email),
            password_hash=password_hash,
            role=Role(role),
            created_at=created,
            confirmed_at=created if confirmed else None,
        )
        with self._db.write():
            self._table.insert(
                {
                    "id": user.id,
                    "email": user.email,
                    "password_hash": user.password_hash,
                    "role": str(user.role),
                    "created_at": user.created_at,
                    "confirmed_at": user.confirmed_at,
                }
            )
        return user

    def get(self, user_id: str) -> User | None:
        with self._db.read():
            row = self._table.find_one(id=user_id)
        return None if row is None else _user(row)

    def by_email(self, email: str) -> User | None:
        try:
            normalized = normalize_email(email)
        except ValueError:
            return None
        with self._db.read():
            row = self._table.find_one(email=normalized)
        return None if row is None else _user(row)

    def set_password_hash(self, user_id: str, password_hash: str) -> bool:
        """Replace the hash (a password change, or a rehash with stronger parameters)."""
        t = self._table.table
        stmt = update(t).where(t.c.id == user_id).values(password_hash=password_hash)
        with self._db.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def token_version(self, user_id: str) -> int | None:
        """The version an access token of this user must carry, or None for an account that
        is gone or disabled (one read by primary key: what every write request costs)."""
        t = self._table.table
        stmt = select(t.c.token_version, t.c.disabled_at).where(t.c.id == user_id)
        with self._db.read() as conn:
            row = conn.execute(stmt).first()
        if row is None or row.disabled_at is not None:
            return None
        return int(row.token_version)

    def disable(self, user_id: str, at: int | None = None) -> bool:
        """Lock an account out now: no login, no refresh, no write with an older token.
        False if there is no such user or it was disabled already."""
        return self._revoke_access(user_id, at, {})

    def enable(self, user_id: str) -> bool:
        """Let a disabled (not deleted) account log in again; its old tokens stay revoked."""
        t = self._table.table
        stmt = (
            update(t)
            .where(
                t.c.id == user_id,
                t.c.disabled_at.is_not(None),
                ~t.c.email.like("%@deleted.invalid"),
            )
            .values(disabled_at=None)
        )
        with self._db.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def confirm(self, user_id: str, at: int) -> bool:
        """Mark the email address confirmed (once: a later call keeps the first time)."""
        t = self._table.table
        stmt = (
            update(t).where(t.c.id == user_id, t.c.confirmed_at.is_(None)).values(confirmed_at=at)
        )
        with self._db.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def delete(self, user_id: str, at: int | None = None) -> bool:
        """Soft delete: disable, and scrub the email (free to sign up again) and the password
        hash. The row stays, so the sessions and reservations of the user keep their driver,
        including a session still running. False if there is no such user (or deleted)."""
        scrub = {"email": f"{user_id}@deleted.invalid", "password_hash": "!deleted"}
        t = self._table.table
        already = t.c.email == scrub["email"]
        return self._revoke_access(user_id, at, scrub, unless=already)

    def _revoke_access(
        self, user_id: str, at: int | None, values: dict[str, Any], unless: Any = None
    ) -> bool:
        when = self._clock_ms() if at is None else at
        t = self._table.table
        tokens = self._db.table("refresh_tokens").table
        which = [t.c.id == user_id]
        if unless is not None:
            which.append(~unless)
        else:
            which.append(t.c.disabled_at.is_(None))
        stmt = (
            update(t)
            .where(*which)
            .values(
                token_version=t.c.token_version + 1,
                disabled_at=func.coalesce(t.c.disabled_at, when),
                **values,
            )
        )
        revoke = (
            update(tokens)
            .where(tokens.c.user_id == user_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=when)
        )
        with self._db.write() as conn:
            if conn.execute(stmt).rowcount != 1:
                return False
            conn.execute(revoke)
            if "email" in values:  # deleted: its RFID tags are free for another account
                tags = self._db.table("id_tags").table
                conn.execute(delete(tags).where(tags.c.driver_id == user_id))
            return True

    def list(self, limit: int = 100, offset: int = 0) -> builtins.list[User]:
        """Oldest first, so that pages stay stable while users sign up."""
        with self._db.read():
            rows = builtins.list(
                self._table.find(_limit=limit, _offset=offset, order_by=["created_at", "id"])
            )
        return [_user(row) for row in rows]

    def count(self) -> int:
        with self._db.read():
            return int(self._table.count())


def _token(row: Mapping[str, Any]) -> RefreshToken:
    return RefreshToken(
        token_hash=row["token_hash"],
        user_id=row["user_id"],
        family_id=row["family_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        revoked_at=row["revoked_at"],
    )


class RefreshTokenStore:
    """The ``refresh_tokens`` table: hashes only, never the tokens themselves.

    Rotation: each refresh marks the presented token used (:meth:`mark_used`, atomic) and adds
    its successor to the same family; presenting a used token again means it leaked, and the
    caller revokes the whole family.
    """

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._table = db.table("refresh_tokens")

    def add(
        self,
        token_hash: str,
        user_id: str,
        family_id: str,
        expires_at: int,
        *,
        created_at: int | None = None,
    ) -> RefreshToken:
        """Raises :class:`DuplicateError` for a known hash, :class:`ConstraintError` for an
        unknown user."""
        token = RefreshToken(
            token_hash=token_hash,
            user_id=user_id,
            family_id=family_id,
            created_at=self._clock_ms() if created_at is None else created_at,
            expires_at=expires_at,
        )
        with self._db.write():
            self._table.insert(
                {
                    "token_hash": token.token_hash,
                    "user_id": token.user_id,
                    "family_id": token.family_id,
                    "created_at": token.created_at,
                    "expires_at": token.expires_at,
                }
            )
        return token

    def get(self, token_hash: str) -> RefreshToken | None:
        with self._db.read():
            row = self._table.find_one(token_hash=token_hash)
        return None if row is None else _token(row)

    def mark_used(self, token_hash: str, at: int) -> bool:
        """Use the token once: True for exactly one caller, False if it was used or revoked
        (or is unknown). Expiry is the caller's check."""
        t = self._table.table
        stmt = (
            update(t)
            .where(t.c.token_hash == token_hash, t.c.used_at.is_(None), t.c.revoked_at.is_(None))
            .values(used_at=at)
        )
        with self._db.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def revoke_family(self, family_id: str, at: int) -> int:
        """Revoke the family's tokens not revoked yet; return how many."""
        t = self._table.table
        return self._revoke(t.c.family_id == family_id, at)

    def revoke_user(self, user_id: str, at: int) -> int:
        """Revoke all of a user's tokens not revoked yet (logout everywhere); return how many."""
        t = self._table.table
        return self._revoke(t.c.user_id == user_id, at)

    def _revoke(self, which: Any, at: int) -> int:
        t = self._table.table
        stmt = update(t).where(which, t.c.revoked_at.is_(None)).values(revoked_at=at)
        with self._db.write() as conn:
            return int(conn.execute(stmt).rowcount)
