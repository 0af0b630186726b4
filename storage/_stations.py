"""Station credentials: who may connect to the broker as which station.

One row per station id: its name, the hash of its MQTT password (in the format of the broker's
password file, e.g. Mosquitto's ``$7$...``: the caller hashes, this store only keeps it, so the
broker's password file can be written again from the database at any time), when it was made
and when it was revoked. Provisioning a revoked station again replaces its row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from storage._engine import Clock, Database
from storage.errors import DuplicateError

__all__ = ["StationCredential", "StationCredentialStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StationCredential:
    station_id: str
    name: str
    password_hash: str
    created_at: int
    revoked_at: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _credential(row: Mapping[str, Any]) -> StationCredential:
    return StationCredential(
        station_id=row["station_id"],
        name=row["name"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class StationCredentialStore:
    """The ``station_credentials`` table (written by ``smartcharge stations`` and the API)."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._table = db.table("station_credentials")

    def add(self, station_id: str, name: str, password_hash: str) -> StationCredential:
        """Provision a station; :class:`DuplicateError` if it already has active credentials.
        A revoked station is provisioned again (its row is replaced)."""
        credential = StationCredential(
            station_id=station_id,
            name=name,
            password_hash=password_hash,
            created_at=self._clock_ms(),
        )
        row: dict[str, Any] = {
            "station_id": credential.station_id,
            "name": credential.name,
            "password_hash": credential.password_hash,
            "created_at": credential.created_at,
            "revoked_at": None,
        }
        with self._db.write():
            existing = self._table.find_one(station_id=station_id)
            if existing is not None and existing["revoked_at"] is None:
                raise DuplicateError(f"station {station_id!r} already has credentials")
            if existing is None:
                self._table.insert(row)
            else:
                self._table.update(row, ["station_id"])
        return credential

    def get(self, station_id: str) -> StationCredential | None:
        with self._db.read():
            row = self._table.find_one(station_id=station_id)
        return None if row is None else _credential(row)

    def list(self, *, include_revoked: bool = True) -> list[StationCredential]:
        """Every station, by id."""
        with self._db.read():
            rows = list(self._table.find(order_by=["station_id"]))
        found = [_credential(row) for row in rows]
        return found if include_revoked else [c for c in found if c.active]

    def revoke(self, station_id: str) -> bool:
        """Revoke a station's credentials; ``False`` if it has none or they already are."""
        t = self._table.table
        stmt = (
            update(t)
            .where(t.c.station_id == station_id, t.c.revoked_at.is_(None))
            .values(revoked_at=self._clock_ms())
        )
        with self._db.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)
