"""Leases with an epoch: one owner at a time for a named piece of work (a CSMS partition).

A row ``leases(name, holder, epoch, expires_at)``. Today one CSMS holds the lease
``csms/partition/0`` for a broker and database; later several nodes share the partitions
the same way, each holding the leases of its own.

- :meth:`LeaseStore.acquire` inserts the row, or takes over an expired one (or one whose
  holder ``stale(holder)`` says is dead) with ``epoch + 1``, in one transaction; a live
  lease of another holder raises :class:`LeaseHeldError` naming it.
- :meth:`LeaseStore.renew` pushes ``expires_at`` on, only while the row still has our
  holder and epoch; otherwise it raises :class:`LeaseLostError`: the holder must stop
  (someone took over after our lease expired; the higher epoch fences us out).
- :meth:`LeaseStore.release` expires our lease at once (a clean stop), so the next holder
  does not wait for the time-to-live.

Times are epoch milliseconds from the store's injected clock, so tests move time by hand.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from storage._engine import Clock, Database
from storage.errors import DuplicateError, LeaseHeldError, LeaseLostError, StorageError

__all__ = ["Lease", "LeaseKeeper", "LeaseStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    name: str
    holder: str
    epoch: int
    expires_at: int


def _lease(row: Any) -> Lease:
    return Lease(
        name=row.name, holder=row.holder, epoch=int(row.epoch), expires_at=int(row.expires_at)
    )


class LeaseStore:
    """The ``leases`` table (see the module docstring)."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
        self._select = text(
            f"SELECT name, holder, epoch, expires_at FROM leases WHERE name = :name{lock}"
        )

    def get(self, name: str) -> Lease | None:
        with self._db.read() as conn:
            row = conn.execute(self._select, {"name": name}).first()
        return None if row is None else _lease(row)

    def acquire(
        self,
        name: str,
        holder: str,
        ttl_ms: int,
        *,
        stale: Callable[[str], bool] | None = None,
    ) -> Lease:
        """Our lease on ``name`` (see the module docstring); raises :class:`LeaseHeldError`."""
        try:
            return self._acquire(name, holder, ttl_ms, stale)
        except DuplicateError:  # PostgreSQL: another acquirer inserted the row first
            return self._acquire(name, holder, ttl_ms, stale)

    def _acquire(
        self, name: str, holder: str, ttl_ms: int, stale: Callable[[str], bool] | None
    ) -> Lease:
        now = self._clock_ms()
        with self._db.write() as conn:
            row = conn.execute(self._select, {"name": name}).first()
            if row is None:
                lease = Lease(name=name, holder=holder, epoch=1, expires_at=now + ttl_ms)
                conn.execute(
                    text(
                        "INSERT INTO leases (name, holder, epoch, expires_at, acquired_at)"
                        " VALUES (:name, :holder, :epoch, :expires_at, :now)"
                    ),
                    {**_params(lease), "now": now},
                )
                return lease
            current = _lease(row)
            live = current.expires_at > now and current.holder != holder
            if live and not (stale is not None and stale(current.holder)):
                raise LeaseHeldError(current)
            lease = Lease(
                name=name, holder=holder, epoch=current.epoch + 1, expires_at=now + ttl_ms
            )
            conn.execute(
                text(
                    "UPDATE leases SET holder = :holder, epoch = :epoch,"
                    " expires_at = :expires_at, acquired_at = :now WHERE name = :name"
                ),
                {**_params(lease), "now": now},
            )
            return lease

    def renew(self, lease: Lease, ttl_ms: int) -> Lease:
        """``lease`` for ``ttl_ms`` more from now; :class:`LeaseLostError` if it is not ours."""
        renewed = Lease(
            name=lease.name,
            holder=lease.holder,
            epoch=lease.epoch,
            expires_at=self._clock_ms() + ttl_ms,
        )
        with self._db.write() as conn:
            result = conn.execute(
                text(
                    "UPDATE leases SET expires_at = :expires_at"
                    " WHERE name = :name AND holder = :holder AND epoch = :epoch"
                ),
                _params(renewed),
            )
            if result.rowcount == 1:
                return renewed
            row = conn.execute(self._select, {"name": lease.name}).first()
        now_held = "nobody" if row is None else f"{row.holder} (epoch {row.epoch})"
        raise LeaseLostError(
            f"lease {lease.name!r} of {lease.holder} (epoch {lease.epoch}) is now held by "
            f"{now_held}"
        )

    def release(self, lease: Lease) -> bool:
        """Expire our lease now (the row stays: the next holder takes epoch + 1)."""
        with self._db.write() as conn:
            result = conn.execute(
                text(
                    "UPDATE leases SET expires_at = :now"
                    " WHERE name = :name AND holder = :holder AND epoch = :epoch"
                ),
                {**_params(lease), "now": self._clock_ms()},
            )
            return bool(result.rowcount == 1)


def _params(lease: Lease) -> dict[str, Any]:
    return {
        "name": lease.name,
        "holder": lease.holder,
        "epoch": lease.epoch,
        "expires_at": lease.expires_at,
    }


class LeaseKeeper:
    """Renews a lease every ``every_s`` on a thread of its own until :meth:`stop`.

    ``on_lost(error)`` runs once on the keeper's thread when a renewal finds the lease taken
    (:class:`LeaseLostError`), or when renewals have failed (database unreachable) until the
    lease has expired: past that point another holder may own it. ``clock_ms`` is the
    store's clock (for the expiry check); tests call :meth:`renew_once` themselves instead
    of starting the thread.
    """

    def __init__(
        self,
        store: LeaseStore,
        lease: Lease,
        *,
        ttl_ms: int,
        every_s: float,
        on_lost: Callable[[StorageError], None],
        clock_ms: Clock,
    ) -> None:
        self.lease = lease
        self._store = store
        self._ttl_ms = ttl_ms
        self._every_s = every_s
        self._on_lost = on_lost
        self._clock_ms = clock_ms
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0

    def start(self) -> LeaseKeeper:
        self._thread = threading.Thread(
            target=self._run, name=f"lease-{self.lease.name}", daemon=True
        )
        self._thread.start()
        return self

    def renew_once(self) -> bool:
        """One renewal (on the caller's thread); ``False`` once the lease is lost."""
        try:
            self.lease = self._store.renew(self.lease, self._ttl_ms)
        except LeaseLostError as exc:
            self._on_lost(exc)
            return False
        except StorageError as exc:
            if self._clock_ms() < self.lease.expires_at:
                return True  # still ours until it expires: try again next time
            self._on_lost(exc)
            return False
        self.renewals += 1
        return True

    def _run(self) -> None:
        while not self._stopped.wait(self._every_s):
            if not self.renew_once():
                return

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing and (``release``) hand the lease back so a successor starts at once."""
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if release:
            with contextlib.suppress(StorageError):  # else it expires within the TTL
                self._store.release(self.lease)
