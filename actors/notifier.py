"""Driver notifications (stored, then pushed live); operator alerts go to the alert log
(:mod:`actors.alert_log`: stored, then pushed live)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.alert_log import AlertLog
from actors.live import LiveHub
from protocol.ids import split_evse_key, valid_evse_key
from storage.protocols import Notifications

__all__ = ["DriverNote", "Notifier"]

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverNote:
    """A notification for one driver, not stored or pushed yet."""

    user_id: str
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class Notifier:
    """Stores a driver's notification and pushes it live; operator alerts go to ``alerts``
    (default: an alert log that only publishes them)."""

    def __init__(
        self,
        store: Notifications | None,
        hub: LiveHub,
        clock_ms: Callable[[], int] = _now_ms,
        alerts: AlertLog | None = None,
    ) -> None:
        self._store = store
        self._hub = hub
        self._clock_ms = clock_ms
        self._alerts = alerts if alerts is not None else AlertLog(None, hub, clock_ms)

    def notify(
        self, user_id: str, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        """Store and push; a storage error is logged and the note is pushed anyway."""
        note = DriverNote(user_id=user_id, kind=kind, message=message, data=data or {})
        try:
            payload = self.save(note)
        except Exception:
            log.exception("could not store a notification for %s", user_id)
            payload = self._payload(note, self._clock_ms())
        self.push(note, payload)

    def save(self, note: DriverNote) -> dict[str, Any]:
        """Store ``note`` (a storage error propagates); the payload :meth:`push` sends."""
        payload = self._payload(note, self._clock_ms())
        if self._store is not None:
            stored = self._store.add(
                note.user_id, note.kind, note.message, note.data, at=payload["created_at"]
            )
            payload["id"] = stored.id
        return payload

    def push(self, note: DriverNote, payload: dict[str, Any]) -> None:
        self._hub.publish("notification", payload, user_id=note.user_id)

    @staticmethod
    def _payload(note: DriverNote, at: int) -> dict[str, Any]:
        return {"kind": note.kind, "message": note.message, "data": note.data, "created_at": at}

    def alert_operators(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Into the alert log (stored, then pushed live) at the CSMS's clock's now."""
        data = data or {}
        station_id, evse_id = data.get("station_id"), data.get("evse_id")
        if station_id is None and isinstance(evse_id, str) and valid_evse_key(evse_id):
            station_id = split_evse_key(evse_id)[0]
        self._alerts.record(kind, message, station_id=station_id, evse_id=evse_id)
