"""StateRecorder: every EVSE's last known state, kept in storage so a restarted CSMS resumes.

The recorder is a listener on the storage :class:`~actors.listeners.ListenerHost` and the
only writer of the ``evse_state`` and ``status_events`` rows. Writes are coalesced: the
latest state of each EVSE waits in memory and goes out in one batched write on the first
host tick ``flush_every_s`` after it changed (meter progress), at the end of the hand-over
when a status changes (the changes a restart must not miss; a burst of them is one write),
and when the host stops. The session's driver is stored with the state, so a restart
can still attribute a session whose row was not written yet.

On start, :func:`last_known_fleet` turns the stored rows back into :class:`LastKnownEvse`
values; the supervisor rebuilds its EVSE actors from them and the station's reports (and
one ``info`` round trip) reconcile them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from actors.evse_state import EvseState
from actors.evse_transition import StateChanged
from actors.listeners import EvseListener
from actors.messages import EvseChanged, StationChanged
from protocol import (
    EvseDescriptor,
    EvseId,
    EvseStatus,
    SessionId,
    StationDescriptor,
    StationId,
    StopReason,
    evse_key,
)
from storage import EvseStateRow, StatusEvent
from storage.protocols import EvseStates, StatusEvents

__all__ = [
    "LastKnownEvse",
    "StateRecorder",
    "descriptor_from_json",
    "descriptor_to_json",
    "last_known_fleet",
    "state_from_json",
    "state_to_json",
]

log = logging.getLogger(__name__)

_DRIVER_KEY: Final = "session_driver_id"
"""Stored next to the state's fields: the session's driver, for a restart."""
_MAX_UNWRITTEN_EVENTS: Final = 100_000
"""Status events kept for a retry while storage is down; beyond that the oldest are dropped."""


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- JSON


_STORED_FIELDS: Final = tuple(f.name for f in fields(EvseState) if f.name != "descriptor")


def state_to_json(state: EvseState) -> dict[str, Any]:
    """Every field of the state, JSON-able (enums as their strings), with the descriptor's
    flat beside them (``evse_id`` is the CSMS-wide id). The fields are flat values, so no
    ``asdict`` (a deep copy, the recorder's main cost under load)."""
    data = {key: getattr(state, key) for key in _STORED_FIELDS}
    for key in ("status", "status_before_offline", "stop_reason"):
        value = data[key]
        if value is not None:
            data[key] = str(value)
    descriptor = state.descriptor
    data.update(
        evse_id=state.evse_id,
        connector=descriptor.connector,
        max_power_w=descriptor.max_power_w,
        min_power_w=descriptor.min_power_w,
    )
    return data


def state_from_json(data: Mapping[str, Any], evse_id: str | None = None) -> EvseState:
    """The inverse of :func:`state_to_json` (``evse_id``, if given, wins over the stored
    one); unknown keys are ignored, missing ones default (but for the descriptor's)."""
    values = {k: v for k, v in data.items() if k in _STORED_FIELDS}
    station_id = values["station_id"] = StationId(str(values["station_id"]))
    key = str(data["evse_id"] if evse_id is None else evse_id)
    values["descriptor"] = _evse_descriptor(key.removeprefix(f"{station_id}."), data)
    for name in ("status", "status_before_offline"):
        if values.get(name) is not None:
            values[name] = EvseStatus(values[name])
    if values.get("stop_reason") is not None:
        values["stop_reason"] = StopReason(values["stop_reason"])
    if values.get("session_id") is not None:
        values["session_id"] = SessionId(str(values["session_id"]))
    return EvseState(**values)


def _evse_descriptor(evse_id: str, data: Mapping[str, Any]) -> EvseDescriptor:
    """An EVSE's descriptor from a stored ``connector``, ``max_power_w`` and (stored since
    smart charging; older rows get the protocol's default) ``min_power_w``."""
    extra = {} if data.get("min_power_w") is None else {"min_power_w": float(data["min_power_w"])}
    return EvseDescriptor(
        id=EvseId(evse_id),
        connector=str(data["connector"]),
        max_power_w=float(data["max_power_w"]),
        **extra,
    )


def descriptor_to_json(station: StationDescriptor) -> dict[str, Any]:
    return asdict(station)


def descriptor_from_json(data: Mapping[str, Any]) -> StationDescriptor:
    return StationDescriptor(
        id=StationId(str(data["id"])),
        name=str(data["name"]),
        lat=float(data["lat"]),
        lon=float(data["lon"]),
        evses=tuple(_evse_descriptor(str(e["id"]), e) for e in data["evses"]),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LastKnownEvse:
    """What the CSMS knew of one EVSE when it last wrote it down."""

    state: EvseState
    station: StationDescriptor | None
    updated_at_ms: int
    session_driver_id: str | None = None
    """Who started the session in ``state`` (the owner lives only in memory otherwise)."""


def last_known_fleet(rows: Iterable[EvseStateRow]) -> list[LastKnownEvse]:
    """The stored rows as states; a row that cannot be read back is logged and skipped."""
    out = []
    for row in rows:
        try:
            state = state_from_json(row.state, evse_id=row.evse_id)
            station = None if row.station is None else descriptor_from_json(row.station)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring the stored state of EVSE %s: %s", row.evse_id, exc)
            continue
        driver = row.state.get(_DRIVER_KEY)
        out.append(
            LastKnownEvse(
                state=state,
                station=station,
                updated_at_ms=row.updated_at,
                session_driver_id=None if driver is None else str(driver),
            )
        )
    return out


# --------------------------------------------------------------------------- the listener


class StateRecorder(EvseListener):
    """Persists each EVSE's latest state (coalesced) and appends its status changes.

    Every method runs on its host's thread.
    """

    def __init__(
        self,
        evse_states: EvseStates,
        status_events: StatusEvents,
        *,
        flush_every_s: float = 0.5,
        last_known: Iterable[LastKnownEvse] = (),
        clock_ms: Callable[[], int] = _now_ms,
        monotonic: Callable[[], float] = time.monotonic,
        driver_of: Callable[[str | None], str | None] | None = None,
    ) -> None:
        """``driver_of(session_id)``: the session's driver, stored with the state."""
        self._driver_of = driver_of
        self._evse_states = evse_states
        self._status_events = status_events
        self._every = flush_every_s
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self._pending_since: float | None = None
        self._latest: dict[EvseId, EvseState] = {}
        self._stations: dict[StationId, StationDescriptor] = {}
        self._station_cache: dict[StationId, tuple[StationDescriptor, dict[str, Any]]] = {}
        for known in last_known:
            self._latest[known.state.evse_id] = known.state
            if known.station is not None:
                self._stations[known.station.id] = known.station
        self._pending: dict[EvseId, EvseState] = {}
        self._events: list[StatusEvent] = []
        self._soon = False
        self.flushes = 0

    def evse_changed(self, event: EvseChanged) -> None:
        state = event.state
        self._latest[state.evse_id] = state
        self._mark(state)
        status_changed = False
        for effect in event.effects:
            if isinstance(effect, StateChanged) and effect.before.status != effect.after.status:
                status_changed = True
                self._events.append(
                    StatusEvent(
                        evse_id=state.evse_id,
                        ts=self._clock_ms(),
                        from_status=str(effect.before.status),
                        to_status=str(effect.after.status),
                        session_id=effect.after.session_id or effect.before.session_id,
                    )
                )
        if status_changed:
            self._soon = True

    def station_changed(self, event: StationChanged) -> None:
        if self._stations.get(event.station.id) == event.station:
            return
        station = event.station
        self._stations[station.id] = station
        keys: set[EvseId] = {evse_key(station.id, evse.id) for evse in station.evses}
        for key in keys:  # write the new descriptor along with their states
            latest = self._latest.get(key)
            if latest is not None:
                self._mark(latest)
        retired = [
            key
            for key, state in self._latest.items()
            if state.station_id == station.id and key not in keys
        ]
        if retired:  # the station no longer announces them: a restart must not bring them back
            for gone in retired:
                self._latest.pop(gone, None)
                self._pending.pop(gone, None)
            try:
                self._evse_states.remove(retired)
            except Exception:
                log.exception("could not forget retired EVSEs %s", retired)

    def batch_done(self) -> None:
        """A status changed in this hand-over: write now (the whole burst at once)."""
        if self._soon:
            self._soon = False
            self.flush()

    def tick(self) -> None:
        since = self._pending_since
        if since is not None and self._monotonic() - since >= self._every:
            self.flush()

    def stopped(self) -> None:
        self.flush()

    def _mark(self, state: EvseState) -> None:
        self._pending[state.evse_id] = state
        if self._pending_since is None:
            self._pending_since = self._monotonic()

    def flush(self) -> None:
        """Write what is pending in one batch per table; on a storage error keep it for later."""
        if not self._pending and not self._events:
            return
        now = self._clock_ms()
        rows = [
            EvseStateRow(
                evse_id=s.evse_id,
                station_id=s.station_id,
                state=self._state_json(s),
                station=self._station_json(s.station_id),
                updated_at=now,
            )
            for s in self._pending.values()
        ]
        try:
            self._evse_states.put_many(rows)
            self._pending.clear()
            self._pending_since = None
            self._status_events.add_many(self._events)
            self._events.clear()
        except Exception:
            log.exception("could not write %d EVSE states; retrying on a tick", len(rows))
            del self._events[:-_MAX_UNWRITTEN_EVENTS]
            if self._pending_since is None:
                self._pending_since = self._monotonic()
            return
        self.flushes += 1

    def _state_json(self, state: EvseState) -> dict[str, Any]:
        data = state_to_json(state)
        if self._driver_of is not None and state.session_id is not None:
            data[_DRIVER_KEY] = self._driver_of(state.session_id)
        return data

    def _station_json(self, station_id: StationId) -> dict[str, Any] | None:
        """Each station's descriptor, converted once per change (not once per row)."""
        station = self._stations.get(station_id)
        if station is None:
            return None
        cached = self._station_cache.get(station_id)
        if cached is None or cached[0] is not station:
            cached = self._station_cache[station_id] = (station, descriptor_to_json(station))
        return cached[1]
