"""The CSMS and a simulated station on a broker that enforces identity: each with its own
credentials, the CSMS's password never on a command line nor in a log."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from actors.mqtt_link import CHILD_MODULE
from actors.system import CsmsConfig, CsmsSystem
from gateway.broker_accounts import write_secret
from protocol import EvseDescriptor, EvseId, StationDescriptor, StationId
from protocol.mqtt_settings import parse_mqtt_url
from simulator.clock import SimClock
from simulator.mqtt_station import MqttStation, password_path, station_settings
from simulator.station import StationSimulator
from tests.conftest import SecureBroker
from tests.support import FleetWatcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SID = "sec-001"


def mqtt_children() -> dict[int, bytes]:
    """pid -> command line of our MQTT child processes (``python -m actors.mqtt_child``)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and CHILD_MODULE.encode() in cmdline:
            found[int(entry.name)] = cmdline
    return found


@pytest.fixture
def station(secure_broker: SecureBroker, tmp_path: Path) -> Iterator[MqttStation]:
    """A simulated station whose password sits in its data dir, as the fleet keeps it."""
    data_dir = tmp_path / "fleet"
    write_secret(password_path(data_dir, SID), secure_broker.station(SID) + "\n")
    evses = (EvseDescriptor(id=EvseId("1"), connector="Type2", max_power_w=11_000.0),)
    descriptor = StationDescriptor(id=StationId(SID), name="S", lat=44.5, lon=11.3, evses=evses)
    sim = StationSimulator(descriptor, clock=SimClock(1.0), seed=1)
    settings = station_settings(parse_mqtt_url(secure_broker.url, env={}), SID, data_dir)
    assert settings.username == SID
    assert settings.password
    mqtt_station = MqttStation(sim, settings)
    try:
        yield mqtt_station
    finally:
        mqtt_station.stop()


def test_csms_and_station_meet_on_a_secure_broker_and_the_password_stays_hidden(
    secure_broker: SecureBroker,
    station: MqttStation,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password_file = tmp_path / "csms" / "mqtt.password"
    settings = parse_mqtt_url(
        f"mqtt://csms@127.0.0.1:{secure_broker.broker.port}", password_file=password_file
    )
    secret = settings.password
    assert secret
    watcher = FleetWatcher()
    system = CsmsSystem(CsmsConfig(mqtt_url=settings, listeners=(watcher,), mqtt_process=True))
    try:
        system.start(wait_connected_s=20)
        assert system.mqtt_connected.is_set(), "the CSMS could not log in to the broker"
        children = mqtt_children()
        assert children, "no MQTT child process found"
        for cmdline in children.values():
            assert secret.encode() not in cmdline

        station.start()
        assert station.wait_connected(20), "the station could not log in to the broker"
        watcher.wait_for(lambda: f"{SID}.1" in watcher.latest, "the station's EVSE")
    finally:
        system.stop()
        pykka.ActorRegistry.stop_all()
    assert secret not in caplog.text
    assert secret not in secure_broker.broker.log_path.read_text(errors="replace")
