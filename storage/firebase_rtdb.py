"""Sessions and notifications on the Firebase Realtime Database (``--user-data firebase``).

:class:`RtdbSessionStore` and :class:`RtdbNotificationStore` have the methods and return the
records of :class:`storage.SessionStore` and :class:`storage.NotificationStore`, on
``firebase_admin.db`` references::

    /sessions/{session_id}            a session; null fields are absent (RTDB stores no nulls)
    /notifications/{user_id}/{key}    key = "n" + the id zero-padded to 12 digits
    /counters/notification_id         the last notification id (ids are global and increase)

Index fields, written next to the record fields and kept in step by every write:

- ``open_evse``: the EVSE id while the session is open (absent once closed);
- ``open``: ``true`` while open; ``driver_started``: ``"{driver_id}|{started_at:015d}|{id}"``;
- ``unread``: ``true`` on a notification until it is read.

Give the real database these rules (``.indexOn``), or every query downloads the whole node::

    {"rules": {"sessions": {".indexOn": ["open_evse", "open", "driver_started"]},
               "notifications": {"$uid": {".indexOn": ["unread"]}}}}

Writes that must not race (open, progress, close, mark read, the id counter) are RTDB
transactions (compare-and-set on the node's ETag, retried by firebase-admin). ``data`` of a
notification is kept as JSON text, as in SQL: RTDB would drop an empty object.

Only the calls listed in :class:`DbRef` are used, so tests can run the stores on an in-memory
stand-in (``tests/fake_rtdb.py``): the Realtime Database emulator needs Java 21 and downloads
a JAR, and cannot run on the development machines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from storage._engine import Clock, system_clock_ms
from storage._records import Notification, Session

__all__ = [
    "DbQuery",
    "DbRef",
    "RtdbNotificationStore",
    "RtdbSessionStore",
    "rtdb_root",
]

_TIME_DIGITS = 15
_ID_DIGITS = 12


class DbQuery(Protocol):
    """The subset of ``firebase_admin.db.Query`` the stores use."""

    def equal_to(self, value: Any) -> DbQuery: ...
    def start_at(self, value: Any) -> DbQuery: ...
    def end_at(self, value: Any) -> DbQuery: ...
    def limit_to_last(self, limit: int) -> DbQuery: ...
    def get(self) -> Any: ...


class DbRef(Protocol):
    """The subset of ``firebase_admin.db.Reference`` the stores use."""

    def child(self, path: str) -> DbRef: ...
    def get(self) -> Any: ...
    def set(self, value: Any) -> None: ...
    def update(self, value: dict[str, Any]) -> None: ...
    def transaction(self, transaction_update: Callable[[Any], Any]) -> Any: ...
    def order_by_child(self, path: str) -> DbQuery: ...
    def order_by_key(self) -> DbQuery: ...


def rtdb_root(app: Any, path: str = "/") -> DbRef:
    """The root reference of the app's database (its options need ``databaseURL``)."""
    from firebase_admin import db

    ref: DbRef = db.reference(path, app=app)
    return ref


def _children(result: Any) -> list[dict[str, Any]]:
    """The child records of a query result (an OrderedDict, or None when empty)."""
    if not result:
        return []
    values = result.values() if isinstance(result, Mapping) else result
    return [dict(v) for v in values if isinstance(v, Mapping)]


# -- sessions ----------------------------------------------------------------------------


def _session(value: Mapping[str, Any]) -> Session:
    return Session(
        id=value["id"],
        driver_id=value.get("driver_id"),
        evse_id=value["evse_id"],
        station_id=value["station_id"],
        started_at=int(value["started_at"]),
        ended_at=None if value.get("ended_at") is None else int(value["ended_at"]),
        start_energy_wh=float(value.get("start_energy_wh", 0.0)),
        energy_wh=float(value.get("energy_wh", 0.0)),
        peak_power_w=float(value.get("peak_power_w", 0.0)),
        target_soc=None if value.get("target_soc") is None else float(value["target_soc"]),
        end_reason=value.get("end_reason"),
        reservation_id=value.get("reservation_id"),
    )


def _driver_started(driver_id: str, started_at: int, session_id: str) -> str:
    return f"{driver_id}|{started_at:0{_TIME_DIGITS}d}|{session_id}"


def _by_newest(session: Session) -> tuple[int, str]:
    return session.started_at, session.id


class RtdbSessionStore:
    """:class:`storage.SessionStore` on ``/sessions``: same lifecycle, same idempotence."""

    def __init__(self, root: DbRef, clock_ms: Clock = system_clock_ms) -> None:
        self._ref = root.child("sessions")
        self._clock_ms = clock_ms

    def open(
        self,
        session_id: str,
        *,
        evse_id: str,
        station_id: str,
        started_at: int | None = None,
        start_energy_wh: float = 0.0,
        driver_id: str | None = None,
        target_soc: float | None = None,
        reservation_id: str | None = None,
    ) -> Session:
        """Record a session; for a known ``session_id``, return it unchanged (first open wins)."""
        started = self._clock_ms() if started_at is None else started_at
        record: dict[str, Any] = {
            "id": session_id,
            "driver_id": driver_id,
            "evse_id": evse_id,
            "station_id": station_id,
            "started_at": started,
            "start_energy_wh": float(start_energy_wh),
            "energy_wh": 0.0,
            "peak_power_w": 0.0,
            "target_soc": target_soc,
            "reservation_id": reservation_id,
            "open": True,
            "open_evse": evse_id,
        }
        if driver_id is not None:
            record["driver_started"] = _driver_started(driver_id, started, session_id)
        record = {k: v for k, v in record.items() if v is not None}
        stored = self._node(session_id).transaction(
            lambda current: current if current is not None else record
        )
        return _session(stored)

    def update_progress(self, session_id: str, energy_wh: float, power_w: float) -> bool:
        """Raise energy and peak power if higher; False for an unknown or closed session."""
        energy, power = float(energy_wh), float(power_w)
        changed = False

        def raise_values(current: Any) -> Any:
            nonlocal changed
            changed = isinstance(current, Mapping) and current.get("ended_at") is None
            if not changed:
                return current
            new = dict(current)
            new["energy_wh"] = max(float(new.get("energy_wh", 0.0)), energy)
            new["peak_power_w"] = max(float(new.get("peak_power_w", 0.0)), power)
            return new

        self._node(session_id).transaction(raise_values)
        return changed

    def close(self, session_id: str, ended_at: int, energy_wh: float, end_reason: str) -> bool:
        """End an open session; True only for the call that closed it."""
        energy = float(energy_wh)
        closed = False

        def end(current: Any) -> Any:
            nonlocal closed
            closed = isinstance(current, Mapping) and current.get("ended_at") is None
            if not closed:
                return current
            new = {k: v for k, v in current.items() if k not in ("open", "open_evse")}
            new.update(
                ended_at=ended_at,
                end_reason=end_reason,
                energy_wh=max(float(current.get("energy_wh", 0.0)), energy),
            )
            return new

        self._node(session_id).transaction(end)
        return closed

    def get(self, session_id: str) -> Session | None:
        try:
            node = self._node(session_id)
        except ValueError:
            return None  # no such key can exist
        value = node.get()
        return _session(value) if isinstance(value, Mapping) else None

    def open_for_evse(self, evse_id: str) -> Session | None:
        """The newest open session on the EVSE, if any."""
        found = self._ref.order_by_child("open_evse").equal_to(evse_id).get()
        sessions = [_session(v) for v in _children(found)]
        return max(sessions, key=_by_newest) if sessions else None

    def by_driver(
        self, driver_id: str, limit: int = 50, before: int | None = None
    ) -> list[Session]:
        """The driver's sessions, newest first; ``before`` (a ``started_at``) pages back."""
        if limit <= 0:
            return []
        query = self._ref.order_by_child("driver_started").start_at(f"{driver_id}|")
        if before is None:
            query = query.end_at(f"{driver_id}|\uf8ff")
        elif before <= 0:
            return []
        else:
            query = query.end_at(f"{driver_id}|{before - 1:0{_TIME_DIGITS}d}|\uf8ff")
        found = query.limit_to_last(limit).get()
        sessions = [_session(v) for v in _children(found) if v.get("driver_id") == driver_id]
        return sorted(sessions, key=_by_newest, reverse=True)[:limit]

    def _node(self, session_id: str) -> DbRef:
        return self._ref.child(_checked_key(session_id, "session id"))

    def open_sessions(self) -> list[Session]:
        """Every session not closed yet, oldest first."""
        found = self._ref.order_by_child("open").equal_to(True).get()
        return sorted((_session(v) for v in _children(found)), key=_by_newest)


# -- notifications -----------------------------------------------------------------------


def _key(notification_id: int) -> str:
    return f"n{notification_id:0{_ID_DIGITS}d}"


def _notification(value: Mapping[str, Any]) -> Notification:
    return Notification(
        id=int(value["id"]),
        user_id=value["user_id"],
        kind=value["kind"],
        message=value["message"],
        data=json.loads(value.get("data", "{}")),
        created_at=int(value["created_at"]),
        read_at=None if value.get("read_at") is None else int(value["read_at"]),
    )


class RtdbNotificationStore:
    """:class:`storage.NotificationStore` on ``/notifications/{user_id}``. Ids come from one
    counter (a transaction), so they increase with insertion across all users, as in SQL."""

    def __init__(self, root: DbRef, clock_ms: Clock = system_clock_ms) -> None:
        self._ref = root.child("notifications")
        self._counter = root.child("counters").child("notification_id")
        self._clock_ms = clock_ms

    def add(
        self,
        user_id: str,
        kind: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        at: int | None = None,
    ) -> Notification:
        """Store a notification; ``data`` must be JSON-serializable (raises ``TypeError``)."""
        payload = dict(data or {})
        encoded = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        created_at = self._clock_ms() if at is None else at
        new_id = int(self._counter.transaction(lambda current: int(current or 0) + 1))
        self._user(user_id).child(_key(new_id)).set(
            {
                "id": new_id,
                "user_id": user_id,
                "kind": kind,
                "message": message,
                "data": encoded,
                "created_at": created_at,
                "unread": True,
            }
        )
        return Notification(
            id=new_id,
            user_id=user_id,
            kind=kind,
            message=message,
            data=payload,
            created_at=created_at,
        )

    def for_user(
        self, user_id: str, limit: int = 50, after_id: int | None = None
    ) -> list[Notification]:
        """Newest first; with ``after_id`` only those newer than it."""
        if limit <= 0:
            return []
        query = self._user(user_id).order_by_key()
        if after_id is not None:
            query = query.start_at(_key(max(after_id + 1, 0)))
        found = query.limit_to_last(limit).get()
        notes = [_notification(v) for v in _children(found)]
        return sorted(notes, key=lambda n: n.id, reverse=True)[:limit]

    def unread_count(self, user_id: str) -> int:
        return len(_children(self._user(user_id).order_by_child("unread").equal_to(True).get()))

    def mark_read(self, user_id: str, ids: Iterable[int], at: int | None = None) -> int:
        """Mark the user's own unread notifications among ``ids`` read; return how many.
        Ids of other users' notifications are ignored (they are not under this user)."""
        wanted = sorted({int(i) for i in ids})
        read_at = self._clock_ms() if at is None else at
        return sum(self._mark_one(user_id, i, read_at) for i in wanted if i > 0)

    def _mark_one(self, user_id: str, notification_id: int, read_at: int) -> bool:
        marked = False

        def mark(current: Any) -> Any:
            nonlocal marked
            marked = isinstance(current, Mapping) and current.get("read_at") is None
            if not marked:
                return current
            new = {k: v for k, v in current.items() if k != "unread"}
            new["read_at"] = read_at
            return new

        self._user(user_id).child(_key(notification_id)).transaction(mark)
        return marked

    def _user(self, user_id: str) -> DbRef:
        return self._ref.child(_checked_key(user_id, "user id"))


def _checked_key(key: str, what: str) -> str:
    """RTDB keys cannot be empty nor contain ``. # $ [ ] /``."""
    if not key or any(c in key for c in ".#$[]/"):
        raise ValueError(f"not a usable {what} for the Realtime Database: {key!r}")
    return key
