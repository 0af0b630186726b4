"""A CSMS and a two-station fleet on a broker that enforces identity, each with its own
credentials (the fleet reads its stations' passwords from its data dir)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pykka

from actors.system import CsmsConfig, CsmsSystem
from gateway.broker_accounts import write_secret
from protocol.mqtt_settings import parse_mqtt_url
from simulator.mqtt_station import password_path
from tests.conftest import SecureBroker
from tests.support import FleetProcess, FleetWatcher

__all__ = ["secure_csms_and_fleet"]


@contextmanager
def secure_csms_and_fleet(
    broker: SecureBroker, tmp_path: Path, prefix: str, watcher: FleetWatcher
) -> Iterator[CsmsSystem]:
    """The CSMS logged in as its own user, then stations ``{prefix}-001`` and ``-002`` (2
    EVSEs each) in a fleet process; all stopped afterwards."""
    fleet_dir = tmp_path / "fleet"
    for n in (1, 2):
        sid = f"{prefix}-{n:03d}"
        write_secret(password_path(fleet_dir, sid), broker.station(sid) + "\n")
    port = broker.broker.port
    settings = parse_mqtt_url(
        f"mqtt://csms@127.0.0.1:{port}", password_file=broker.provisioner.csms_password_file()
    )
    system = CsmsSystem(CsmsConfig(mqtt_url=settings, listeners=(watcher,)))
    fleet = FleetProcess(
        f"mqtt://127.0.0.1:{port}", fleet_dir, stations=2, evses=2, speed=1, prefix=prefix
    )
    try:
        system.start(wait_connected_s=20)
        assert system.mqtt_connected.is_set(), "the CSMS could not log in"
        fleet.start()
        yield system
    finally:
        if fleet.proc is not None:
            fleet.terminate()
        system.stop()
        pykka.ActorRegistry.stop_all()
