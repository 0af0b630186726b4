"""The operators' alert log: every alert stored once, on the CSMS's clock, then pushed live.

:class:`AlertLog` stores an alert (``storage._alerts``) and publishes the stored row as the
live ``alert`` event (with its id); an operator's acknowledgement is stored and published as
``alert_ack``. Times are the CSMS's clock: an :class:`~actors.messages.OperatorAlert`'s ``ts``
(stamped by the actor that raised it) or the log's own clock, never a station's stamp.

:class:`AlertRecorder` is the listener that feeds it, on a host of its own (a write per alert
must not hold up the live feed): each operator alert once, and a station's liveness as a
sequence that alternates. A station's ``station_offline`` is logged only if the log last said
it was online (the last will and a redelivered retained ``offline`` after a CSMS restart are
the same event), and a birth logs ``station_online`` ("back online") only if the log last
said it was offline, also across a CSMS restart (the log's last word per station is read back
when the recorder starts). A station's first birth logs nothing.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from actors.listeners import EvseListener
from actors.live import LiveHub
from actors.messages import OperatorAlert, StationChanged
from storage import Alert, Severity
from storage.errors import Forbidden, NotFound
from storage.protocols import Alerts

if TYPE_CHECKING:
    from actors.charging import Caller

__all__ = ["SEVERITY_BY_KIND", "AlertLog", "AlertRecorder", "severity_of"]

log = logging.getLogger(__name__)

SEVERITY_BY_KIND: Final[dict[str, Severity]] = {
    "station_offline": "bad",
    "station_online": "good",
    "evse_faulted": "bad",
    "protocol_version": "bad",
    "actor_restarted": "warn",
    "reservation_interrupted": "warn",
    "late_session_stopped": "warn",
    "inconsistent_report": "warn",
    "meter_reset": "warn",
    "evse_retired": "info",
    "maintenance": "info",
}
RETENTION_MS: Final = 90 * 24 * 3600 * 1000
"""Alerts older than this (90 days) are deleted."""
MAX_ALERTS: Final = 100_000
"""At most this many alerts are kept (the newest): a flapping station cannot grow the table."""
PRUNE_EVERY_MS: Final = 3600 * 1000
PRUNE_EVERY_ALERTS: Final = 1_000
"""The log prunes when it stores its first alert, then after an hour or 1,000 alerts."""
OFFLINE: Final = "station_offline"
ONLINE: Final = "station_online"


def severity_of(kind: str) -> Severity:
    """How bad an alert of ``kind`` is (an unknown kind is a warning)."""
    return SEVERITY_BY_KIND.get(kind, "warn")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AlertLog:
    """Stores and publishes alerts and their acks; safe from any thread. Without a store the
    alerts are published with ids of this process only (nothing to list or ack)."""

    def __init__(
        self,
        store: Alerts | None,
        hub: LiveHub,
        clock_ms: Callable[[], int] = _now_ms,
        *,
        retention_ms: int = RETENTION_MS,
        max_alerts: int = MAX_ALERTS,
    ) -> None:
        self._store = store
        self._hub = hub
        self._clock_ms = clock_ms
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._retention_ms = retention_ms
        self._max_alerts = max_alerts
        self._prune_at: int | None = None  # due now
        self._stored_since_prune = 0

    @property
    def store(self) -> Alerts | None:
        return self._store

    def record(
        self,
        kind: str,
        message: str,
        *,
        station_id: str | None = None,
        evse_id: str | None = None,
        at: int | None = None,
    ) -> Alert:
        """Store the alert (at ``at`` on the CSMS's clock, default now) and publish it."""
        when = self._clock_ms() if at is None else at
        severity = severity_of(kind)
        alert: Alert | None = None
        if self._store is not None:
            try:
                alert = self._store.add(
                    kind, severity, message, at=when, station_id=station_id, evse_id=evse_id
                )
            except Exception:  # the operators must still see it
                log.exception("could not store the alert %s: %s", kind, message)
            else:
                self._prune_if_due()
        if alert is None:
            with self._lock:
                local_id = next(self._ids)
            alert = Alert(
                id=-local_id if self._store is not None else local_id,  # never a stored id
                at=when,
                kind=kind,
                severity=severity,
                station_id=station_id,
                evse_id=evse_id,
                message=message,
            )
        self._hub.publish("alert", alert.to_json())
        return alert

    def _prune_if_due(self) -> None:
        """Old alerts go (:data:`RETENTION_MS`, :data:`MAX_ALERTS`), at most every
        :data:`PRUNE_EVERY_MS` or :data:`PRUNE_EVERY_ALERTS` stored alerts."""
        now = self._clock_ms()
        with self._lock:
            self._stored_since_prune += 1
            due = self._prune_at is None or now >= self._prune_at
            if not due and self._stored_since_prune < PRUNE_EVERY_ALERTS:
                return
            self._prune_at, self._stored_since_prune = now + PRUNE_EVERY_MS, 0
        assert self._store is not None
        try:
            gone = self._store.prune(before=now - self._retention_ms, keep=self._max_alerts)
        except Exception:
            log.exception("could not prune the alert log")
            return
        if gone:
            log.info("alert log: deleted %d old alerts", gone)

    def ack(self, alert_id: int, by: str, *, operator: bool = True) -> Alert:
        """Acknowledge ``alert_id`` as ``by`` (an operator's email) now; the first ack stays.
        Raises :class:`NotFound` for an unknown id, :class:`Forbidden` for a non-operator."""
        if not operator:
            raise Forbidden("only operators acknowledge alerts")
        if self._store is None:
            raise NotFound(f"no alert {alert_id}")
        at = self._clock_ms()
        alert = self._store.ack(alert_id, by, at)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert.acked_at == at and alert.acked_by == by:  # this call acked it
            self._hub.publish("alert_ack", alert.to_json())
        return alert

    def ack_alert(self, caller: Caller, alert_id: int, by: str) -> Alert:
        """:meth:`ack` as a gateway asks for it (the node-gateway op ``ack_alert``)."""
        return self.ack(alert_id, by, operator=caller.operator)


class AlertRecorder(EvseListener):
    """Operator alerts and station liveness into the :class:`AlertLog` (see the module)."""

    def __init__(self, alerts: AlertLog) -> None:
        self._alerts = alerts
        self._liveness: dict[str, str] = {}
        """Station id -> the log's last word on it (``station_offline``/``station_online``)."""

    def started(self) -> None:
        store = self._alerts.store
        if store is not None:
            try:
                self._liveness = store.last_liveness()
            except Exception:
                log.exception("could not read the alert log's last word on the stations")

    def operator_alert(self, alert: OperatorAlert) -> None:
        sid = alert.station_id
        if alert.kind == OFFLINE and sid is not None:
            if self._liveness.get(sid) == OFFLINE:
                return  # the same offline again (last will, redelivered retained state)
            self._liveness[sid] = OFFLINE
        self._alerts.record(
            alert.kind,
            alert.message,
            station_id=sid,
            evse_id=alert.evse_id,
            at=alert.ts,  # the CSMS's clock, where the actor raised it
        )

    def station_changed(self, event: StationChanged) -> None:
        sid = event.station.id
        if not event.online or self._liveness.get(sid) != OFFLINE:
            return
        self._liveness[sid] = ONLINE
        name = event.station.name
        self._alerts.record(  # stamped now on the CSMS's clock, not with the birth's ts
            ONLINE,
            f"Station {sid} ({name}) is back online" if name else f"Station {sid} is back online",
            station_id=sid,
        )
