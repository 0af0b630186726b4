"""Wrong passwords per (account, client address), in the database: every gateway worker
counts the same failures (``gateway.login_guard``; in memory, a guesser got one allowance
per worker).

Times are epoch milliseconds. Rows older than a day are pruned as failures come in.
"""

from __future__ import annotations

from sqlalchemy import text

from storage._engine import Clock, Database
from storage.errors import DuplicateError

__all__ = ["LoginFailureStore"]

KEEP_MS = 24 * 3600 * 1000


class LoginFailureStore:
    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms

    def get(self, account: str, address: str) -> tuple[int, int] | None:
        """``(failures, last_at)`` of the pair, or ``None``."""
        with self._db.read() as conn:
            row = conn.execute(
                text(
                    "SELECT failures, last_at FROM login_failures"
                    " WHERE account = :account AND address = :address"
                ),
                {"account": account, "address": address},
            ).first()
        return None if row is None else (int(row.failures), int(row.last_at))

    def record(self, account: str, address: str, at: int) -> None:
        """One more failure of the pair, at ``at``."""
        params = {"account": account, "address": address, "at": at}
        update = text(
            "UPDATE login_failures SET failures = failures + 1, last_at = :at"
            " WHERE account = :account AND address = :address"
        )
        for _ in range(2):  # two workers inserting the same new pair: the loser updates
            try:
                with self._db.write() as conn:
                    if conn.execute(update, params).rowcount == 1:
                        return
                    conn.execute(
                        text(
                            "INSERT INTO login_failures (account, address, failures, last_at)"
                            " VALUES (:account, :address, 1, :at)"
                        ),
                        params,
                    )
                    conn.execute(
                        text("DELETE FROM login_failures WHERE last_at < :old"),
                        {"old": at - KEEP_MS},
                    )
                    return
            except DuplicateError:
                continue

    def forgive(self, account: str, address: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                text("DELETE FROM login_failures WHERE account = :account AND address = :address"),
                {"account": account, "address": address},
            )

    def account_failures(self, account: str, since: int) -> int:
        """Failures on the account, from every address whose last failure is at ``since`` or
        later (a pair's older failures count with it: the slowdown starts a little early)."""
        with self._db.read() as conn:
            total = conn.execute(
                text(
                    "SELECT COALESCE(SUM(failures), 0) FROM login_failures"
                    " WHERE account = :account AND last_at >= :since"
                ),
                {"account": account, "since": since},
            ).scalar()
        return int(total or 0)
