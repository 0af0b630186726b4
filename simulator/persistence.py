"""Each station's state in its own JSON file, written atomically.

Why one file per station: stations are independent (a fleet of 200 writes 200
small files, never one big one under a shared lock), and a restarted station
needs nothing but its own file. Why atomic: a crash mid-write must leave the
previous version, never half a JSON document (temp file in the same directory,
flush, fsync, ``os.replace``, fsync the directory).

File format (``format`` 1)::

    {"format": 1, "station_id": "st-001", "seed": 42, "seq": 11000,
     "epoch": 1735689600000, "saved_at": 1712000000.0,
     "outbox": [{"level": "session_end", "topic": "smartcharge/v2/stations/st-001/evses/1/status",
                 "payload": "{\"v\":2,\"epoch\":1735689600000,\"seq\":10412,...}"}],
     "evses": {"1": {"status": "Charging", "soc": 54.21,
                            "car": {"capacity_wh": 62000.0, "max_power_w": 11000.0},
                            "power_w": 11000.0, "energy_wh": 123456.7,
                            "session_id": "s-1", "session_energy_wh": 4321.0,
                            "target_soc": 80.0, "reservation_id": null,
                            "reservation_expires_at": null, "maintenance": false,
                            "maintenance_pending": false, "stop_reason": null,
                            "unplug_in": null, "draws": 3, "limit_w": 7400.0,
                            "limit_expires_at": 1712000300000, "fallback_w": null}}}

Times that the simulation schedules are stored relative to ``saved_at``
(``unplug_in``), so a restart resumes them whatever the clock says then; times the CSMS set
(``reservation_expires_at``, ``limit_expires_at``: a power limit's lapse, epoch ms) are
absolute, so a limit that lapsed while the station was down is its fallback at restart.
``limit_w``, ``limit_expires_at`` and ``fallback_w`` are absent from files written before
``set_limit``: no limit.
``epoch`` is the boot epoch of the process that saved the file (the next one
uses a greater one) and ``outbox`` the session-critical messages not yet
acknowledged by the broker (:mod:`simulator.outbox`). Both are absent from
files written before protocol version 2, and so are local EVSE ids: such a file
names its EVSEs ``st-001-1``, and :func:`adopt_saved_evse_ids` keeps those names.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from protocol import EvseId, EvseStatus, SessionId, StationDescriptor, StopReason
from simulator.evse import IN_SESSION, EvseState
from simulator.physics import Car

__all__ = [
    "FORMAT",
    "SnapshotError",
    "StationStore",
    "adopt_saved_evse_ids",
    "state_from_json",
    "state_to_json",
]

FORMAT: Final = 1


class SnapshotError(ValueError):
    """A station file that cannot be read back."""


class StationStore:
    """``<data_dir>/stations/<station_id>.json``. Not thread-safe: its runner holds a lock."""

    def __init__(self, data_dir: str | os.PathLike[str], station_id: str) -> None:
        self.directory = Path(data_dir) / "stations"
        self.path = self.directory / f"{station_id}.json"

    def load(self) -> dict[str, Any] | None:
        """The last saved snapshot, or ``None`` if the station never saved one."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"{self.path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SnapshotError(f"{self.path} is not a format {FORMAT} station file")
        return data

    def save(self, snapshot: dict[str, Any], *, durable: bool = True) -> None:
        """Replace the file atomically; ``durable`` also fsyncs (survives power loss)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(snapshot, separators=(",", ":"), sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide it from other tools
                f.write(payload)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if durable:
            _fsync_directory(self.directory)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX only; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def adopt_saved_evse_ids(
    descriptor: StationDescriptor, snapshot: Mapping[str, Any]
) -> StationDescriptor:
    """The saved file wins for an existing EVSE: keep the name it was saved under.

    Before protocol version 2 generated and example EVSE ids repeated the station id
    (``st-001-1``); now they are local (``1``). A station whose file still has
    ``st-001-1`` but not ``1`` keeps ``st-001-1``, with its session, register and
    random draws, instead of losing them to a fresh EVSE ``1``.
    """
    saved = snapshot.get("evses")
    if not isinstance(saved, dict):
        return descriptor
    ids = {e.id for e in descriptor.evses}

    def legacy(evse_id: str) -> str | None:
        old = f"{descriptor.id}-{evse_id}"
        return old if evse_id not in saved and old in saved and old not in ids else None

    evses = tuple(
        e if (old := legacy(e.id)) is None else replace(e, id=EvseId(old)) for e in descriptor.evses
    )
    return descriptor if evses == descriptor.evses else replace(descriptor, evses=evses)


def state_to_json(state: EvseState, now: float) -> dict[str, Any]:
    car = state.car
    return {
        "status": str(state.status),
        "soc": state.soc,
        "car": None
        if car is None
        else {"capacity_wh": car.capacity_wh, "max_power_w": car.max_power_w},
        "power_w": state.power_w,
        "energy_wh": state.energy_wh,
        "session_id": state.session_id,
        "session_energy_wh": state.session_energy_wh,
        "target_soc": state.target_soc,
        "reservation_id": state.reservation_id,
        "reservation_expires_at": state.reservation_expires_at,
        "maintenance": state.maintenance,
        "maintenance_pending": state.maintenance_pending,
        "stop_reason": None if state.stop_reason is None else str(state.stop_reason),
        "unplug_in": None if state.unplug_at is None else max(0.0, state.unplug_at - now),
        "draws": state.draws,
        "limit_w": state.limit_w,
        "limit_expires_at": state.limit_expires_at,
        "fallback_w": state.fallback_w,
    }


def state_from_json(evse_id: EvseId, raw: Any, now: float) -> EvseState:
    """Rebuild an EVSE's state; a charging EVSE resumes metering from ``now``."""
    try:
        car = raw["car"]
        state = EvseState(
            evse_id=evse_id,
            status=EvseStatus(raw["status"]),
            soc=_opt_float(raw["soc"]),
            car=None
            if car is None
            else Car(capacity_wh=float(car["capacity_wh"]), max_power_w=float(car["max_power_w"])),
            power_w=float(raw["power_w"]),
            energy_wh=float(raw["energy_wh"]),
            session_id=None if raw["session_id"] is None else SessionId(str(raw["session_id"])),
            session_energy_wh=float(raw["session_energy_wh"]),
            target_soc=_opt_float(raw["target_soc"]),
            reservation_id=raw["reservation_id"],
            reservation_expires_at=raw["reservation_expires_at"],
            maintenance=bool(raw["maintenance"]),
            maintenance_pending=bool(raw["maintenance_pending"]),
            stop_reason=None if raw["stop_reason"] is None else StopReason(raw["stop_reason"]),
            unplug_at=None if raw["unplug_in"] is None else now + float(raw["unplug_in"]),
            draws=int(raw["draws"]),
            limit_w=_opt_watts(raw.get("limit_w")),  # absent from files of before set_limit
            limit_expires_at=_opt_int(raw.get("limit_expires_at")),
            fallback_w=_opt_watts(raw.get("fallback_w")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"bad state for EVSE {evse_id}: {exc!r}") from None
    if state.status in IN_SESSION and (state.car is None or state.soc is None):
        raise SnapshotError(f"EVSE {evse_id} is {state.status} without a car")
    if state.status in (EvseStatus.CHARGING, EvseStatus.SUSPENDED_EVSE):
        state = replace(state, last_sample_at=now)  # the car was paused while the station was down
    if state.status is EvseStatus.FINISHING and state.unplug_at is None:
        state = replace(state, unplug_at=now)
    return state


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_watts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number of W, not {value!r}")
    if not 0.0 <= value <= 1e7:  # also refuses NaN
        raise ValueError(f"power {value!r} W out of range")
    return float(value)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, not {value!r}")
    return value
