"""The single-use tokens of mailed account links: email confirmation and password reset.

Only SHA-256 digests are stored (whoever reads the table cannot use a link); a token is spent
by one atomic ``UPDATE`` that also checks its purpose and expiry, so two clicks on the same
link cannot both succeed.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select, update

from storage._engine import Clock, Database

__all__ = ["AccountTokenStore", "LinkPurpose"]


class LinkPurpose(StrEnum):
    CONFIRM = "confirm"
    RESET = "reset"


class AccountTokenStore:
    """The ``account_tokens`` table; times are epoch milliseconds."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._table = db.table("account_tokens")

    def add(self, token_hash: str, user_id: str, purpose: LinkPurpose, expires_at: int) -> None:
        """Raises :class:`ConstraintError` for an unknown user."""
        with self._db.write():
            self._table.insert(
                {
                    "token_hash": token_hash,
                    "user_id": user_id,
                    "purpose": str(purpose),
                    "created_at": self._clock_ms(),
                    "expires_at": expires_at,
                }
            )

    def spend(self, token_hash: str, purpose: LinkPurpose, at: int) -> str | None:
        """Use a live token once: its user's id for exactly one caller, else None (unknown,
        another purpose, expired, or used already)."""
        t = self._table.table
        live = (
            t.c.token_hash == token_hash,
            t.c.purpose == str(purpose),
            t.c.used_at.is_(None),
            t.c.expires_at > at,
        )
        with self._db.write() as conn:
            if conn.execute(update(t).where(*live).values(used_at=at)).rowcount != 1:
                return None
            user_id = conn.execute(select(t.c.user_id).where(t.c.token_hash == token_hash))
            return str(user_id.scalar_one())

    def spend_all(self, user_id: str, purpose: LinkPurpose, at: int) -> int:
        """Void the user's unused tokens of ``purpose`` (after a reset, older links die)."""
        t = self._table.table
        stmt = (
            update(t)
            .where(t.c.user_id == user_id, t.c.purpose == str(purpose), t.c.used_at.is_(None))
            .values(used_at=at)
        )
        with self._db.write() as conn:
            return int(conn.execute(stmt).rowcount)
