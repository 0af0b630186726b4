"""Test helpers: wait on EVSE events (never sleep), run a fleet in its own process."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.evse_state import EvseState
from actors.listeners import EvseListener
from actors.messages import EvseChanged, OperatorAlert, StationChanged
from protocol import EvseDescriptor, EvseId, split_evse_key

REPO_ROOT = Path(__file__).resolve().parent.parent


def wire_id(key: str) -> EvseId:
    """The station's own id of an EVSE the CSMS names ``key`` (``st-001.1`` -> ``1``)."""
    return split_evse_key(key)[1]


def evse_state(key: str, **fields: Any) -> EvseState:
    """The CSMS's state of the EVSE it names ``key`` (``st-001.1``); ``connector`` and
    ``max_power_w`` go to its descriptor, the other ``fields`` to the state."""
    station_id, local_id = split_evse_key(key)
    rating = {name: fields.pop(name) for name in ("connector", "max_power_w") if name in fields}
    return EvseState(
        station_id=station_id, descriptor=EvseDescriptor(id=local_id, **rating), **fields
    )


class FleetWatcher(EvseListener):
    """Keeps the latest state of every EVSE from the events; lets a test wait for a condition.

    Predicates run on the test thread under the watcher's lock, against what the
    events said (``latest``), so a wait wakes exactly when a new event arrives.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.latest: dict[str, EvseState] = {}
        self.history: dict[str, list[EvseState]] = {}
        self.stations_online: dict[str, bool] = {}
        self.alerts: list[OperatorAlert] = []

    def evse_changed(self, event: EvseChanged) -> None:
        with self._cond:
            self.latest[event.state.evse_id] = event.state
            self.history.setdefault(event.state.evse_id, []).append(event.state)
            self._cond.notify_all()

    def station_changed(self, event: StationChanged) -> None:
        with self._cond:
            self.stations_online[event.station.id] = event.online
            self._cond.notify_all()

    def operator_alert(self, alert: OperatorAlert) -> None:
        with self._cond:
            self.alerts.append(alert)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._cond.wait(remaining)

    def state(self, evse_id: str) -> EvseState:
        with self._cond:
            return self.latest[evse_id]

    def has_been(self, evse_id: str, status: str) -> Callable[[], bool]:
        """True once the EVSE was ever in ``status`` (it may have moved on since)."""
        return lambda: any(s.status == status for s in self.history.get(evse_id, ()))

    def status_is(self, evse_id: str, status: str) -> Callable[[], bool]:
        return lambda: evse_id in self.latest and self.latest[evse_id].status == status


class FleetProcess:
    """``python -m simulator.fleet`` in its own process, as an operator would run it."""

    def __init__(
        self,
        url: str,
        data_dir: Path,
        *,
        stations: int,
        evses: int = 2,
        speed: float = 60.0,
        prefix: str = "st",
        keepalive: int = 10,
        seed: int = 1,
        meter_interval: float = 5.0,
        config: Path | None = None,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "simulator.fleet",
            "--mqtt-url",
            url,
            "--data-dir",
            str(data_dir),
            "--stations",
            str(stations),
            "--evses-per-station",
            str(evses),
            "--speed",
            str(speed),
            "--station-prefix",
            prefix,
            "--keepalive",
            str(keepalive),
            "--seed",
            str(seed),
            "--meter-interval",
            str(meter_interval),
            *([] if config is None else ["--config", str(config)]),
        ]
        self.log_path = data_dir.parent / f"fleet-{prefix}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FleetProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> FleetProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


POISON_SEQ = 666_666
"""A status report with this ``seq`` makes an EVSE actor raise (see :func:`poison_evse_logic`)."""


def poison_evse_logic(monkeypatch: Any) -> None:
    """Make ``Evse.apply`` raise on a status report with ``seq == POISON_SEQ``: a bug in the
    EVSE logic, simulated, for the supervision tests."""
    from actors.evse import Evse
    from protocol import StatusReport

    real_apply = Evse.apply

    def apply(self: Any, event: Any) -> Any:
        if isinstance(event, StatusReport) and event.seq == POISON_SEQ:
            raise RuntimeError("simulated bug in the EVSE logic")
        return real_apply(self, event)

    monkeypatch.setattr(Evse, "apply", apply)
