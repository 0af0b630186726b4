"""Shared by the station fault tests (tests/faults/test_station_faults_*.py): the stations'
keepalive, an in-process CSMS whose events a :class:`FleetWatcher` keeps, and the station's own
account of an EVSE in its JSON file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pykka

from actors.system import CsmsConfig, CsmsSystem
from storage import Storage
from tests.support import FleetWatcher

KEEPALIVE = 2
"""The stations' MQTT keepalive, s: the broker gives up on a silent one after 1.5 x this."""


@contextmanager
def running_csms(
    url: str, *, storage: Storage | None = None, command_timeout_s: float = 10.0
) -> Iterator[tuple[CsmsSystem, FleetWatcher]]:
    """An in-process CSMS on ``url`` whose events a :class:`FleetWatcher` keeps."""
    watcher = FleetWatcher()
    system = CsmsSystem(
        CsmsConfig(
            mqtt_url=url,
            storage=storage,
            listeners=(watcher,),
            command_timeout_s=command_timeout_s,
        )
    )
    system.start(wait_connected_s=10)
    assert system.mqtt_connected.is_set()
    try:
        yield system, watcher
    finally:
        system.stop()
        pykka.ActorRegistry.stop_all()


def station_file(fleet_dir: Path, station_id: str) -> dict[str, Any]:
    """The station's own account of itself: ``<data-dir>/stations/<id>.json``."""
    data: dict[str, Any] = json.loads((fleet_dir / "stations" / f"{station_id}.json").read_text())
    return data


def evse_in_file(fleet_dir: Path, evse_key: str) -> dict[str, Any]:
    station, local = evse_key.split(".", 1)
    raw: dict[str, Any] = station_file(fleet_dir, station)["evses"][local]
    return raw
