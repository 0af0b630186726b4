"""Hostile clients against a running CSMS on a broker that enforces identity (issue 10).

Each test runs on Mosquitto and on amqtt (``secure_broker``). Two stations run in the fleet
simulator with their own credentials (``hx-001``, ``hx-002``); a third identity, ``hx-003``, is
driven by hand (a station that went rogue, or whose password leaked). Every attack below must be
refused or ignored, counted where the CSMS counts it, and leave every EVSE's state as it was:

- clients with no, wrong or borrowed credentials are refused at CONNECT;
- station ``hx-004`` publishing on ``hx-001``'s topics is dropped by the broker's ACL, and
  subscribing to ``hx-001``'s commands gets it nothing;
- a client taking the CSMS's client id does not knock the CSMS off;
- a command reply for a command the CSMS never sent opens no session;
- a report over the size limit and a report stamped a year ahead are refused.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from actors.evse_state import EvseState
from actors.system import CsmsSystem
from gateway.broker_accounts import read_password_file
from protocol import (
    MAX_FUTURE_SKEW_MS,
    MAX_PAYLOAD_BYTES,
    CommandName,
    CommandReply,
    CorrelationId,
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    SessionId,
    StationBirth,
    StationDescriptor,
    StationId,
    StatusReport,
    commands_topic,
    encode,
    replies_topic,
    state_topic,
    status_topic,
)
from simulator.mqtt_station import password_path
from tests.brokers import MqttClientFactory, MqttTestClient
from tests.conftest import SecureBroker
from tests.faults.secure_fleet import secure_csms_and_fleet
from tests.support import FleetWatcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FLEET = ("hx-001", "hx-002")
ROGUE = "hx-003"
ATTACKER = "hx-004"  # provisioned, runs no station: a second connection as hx-00N would kick it
EVSES = ["hx-001.1", "hx-001.2", "hx-002.1", "hx-002.2", f"{ROGUE}.1"]
QUIET_S = 1.0


@dataclass
class Hostile:
    broker: SecureBroker
    system: CsmsSystem
    watcher: FleetWatcher
    passwords: dict[str, str]
    rogue: MqttTestClient
    """Connected as ``hx-003`` with its own credentials; its EVSE ``1`` is Available."""

    def snapshot(self) -> dict[str, EvseState]:
        self.system.evse_ref(EVSES[0])  # barrier: every event seen so far is applied
        states = {}
        for evse_id in EVSES:
            state = self.system.view.evse(evse_id)
            assert state is not None, evse_id
            states[evse_id] = state.state
        return states


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait (on an Event, with a deadline) for a counter another thread moves."""
    tick, deadline = threading.Event(), time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        tick.wait(0.02)


def rogue_birth() -> bytes:
    descriptor = StationDescriptor(
        id=StationId(ROGUE),
        name="rogue",
        lat=45.0,
        lon=9.0,
        evses=(EvseDescriptor(id=EvseId("1"), connector="Type2", max_power_w=22_000.0),),
    )
    return encode(StationBirth(station=descriptor, ts=now_ms(), epoch=1))[1]


def rogue_status(status: EvseStatus, seq: int, ts: int | None = None) -> bytes:
    report = StatusReport(
        station_id=StationId(ROGUE),
        info=EvseInfo(evse_id=EvseId("1"), status=status),
        seq=seq,
        ts=now_ms() if ts is None else ts,
        epoch=1,
    )
    return encode(report)[1]


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def hostile(
    secure_broker: SecureBroker, mqtt_client: MqttClientFactory, tmp_path: Path
) -> Iterator[Hostile]:
    passwords = {sid: secure_broker.station(sid) for sid in (ROGUE, ATTACKER)}
    watcher = FleetWatcher()
    with secure_csms_and_fleet(secure_broker, tmp_path, "hx", watcher) as system:
        for sid in FLEET:  # as the fleet keeps them
            passwords[sid] = read_password_file(password_path(tmp_path / "fleet", sid))
        rogue = mqtt_client(secure_broker.url, ROGUE, username=ROGUE, password=passwords[ROGUE])
        rogue.publish(state_topic(ROGUE), rogue_birth())
        rogue.publish(status_topic(ROGUE, "1"), rogue_status(EvseStatus.AVAILABLE, 1))
        watcher.wait_for(
            lambda: all(watcher.status_is(e, "Available")() for e in EVSES),
            "every EVSE Available",
            30,
        )
        yield Hostile(secure_broker, system, watcher, passwords, rogue)


def attacker(
    hostile: Hostile, mqtt_client: MqttClientFactory, client_id: str = ATTACKER
) -> MqttTestClient:
    """A client logged in as station ``hx-004`` (its own, valid credentials)."""
    password = hostile.passwords[ATTACKER]
    return mqtt_client(hostile.broker.url, client_id, username=ATTACKER, password=password)


def test_clients_without_their_own_credentials_are_refused(
    hostile: Hostile, mqtt_client: MqttClientFactory
) -> None:
    before = hostile.snapshot()
    url = hostile.broker.url
    pw = hostile.passwords
    attempts = {
        "anonymous": dict(),
        "wrong password": dict(username="hx-001", password="guessed"),
        "another station's password": dict(username="hx-001", password=pw["hx-002"]),
        "the CSMS with a station's password": dict(username="csms", password=pw["hx-001"]),
    }
    for what, creds in attempts.items():
        with pytest.raises(ConnectionError, match="refused"):
            mqtt_client(url, f"intruder-{len(what)}", **creds)
    assert hostile.snapshot() == before
    assert hostile.system.mqtt_connected.is_set()


def test_a_station_on_another_stations_topics_changes_nothing_and_hears_nothing(
    hostile: Hostile, mqtt_client: MqttClientFactory
) -> None:
    before = hostile.snapshot()
    malformed_before = hostile.system.bridge_stats.malformed
    y = attacker(hostile, mqtt_client)
    for wanted in (commands_topic("hx-001"), "smartcharge/#"):
        y.subscribe(wanted)  # Mosquitto grants and delivers nothing; amqtt refuses
    faulted = {"v": 2, "epoch": 2**62, "evse_id": "1", "status": "Faulted", "seq": 2**62}
    forged = [
        (status_topic("hx-001", "1"), json.dumps({**faulted, "ts": now_ms()}).encode(), False),
        (state_topic("hx-001"), b'{"v": 2, "online": false}', True),
        (replies_topic("hx-001"), b'{"v": 2, "id": "x", "accepted": true}', False),
        (commands_topic("hx-001"), b'{"v": 2, "command": "stop"}', False),
    ]
    for topic, payload, retain in forged:
        try:
            y.publish(topic, payload, retain=retain)
        except (ConnectionError, TimeoutError):
            y = attacker(hostile, mqtt_client)  # amqtt may drop a client that breaks the ACL
            for wanted in (commands_topic("hx-001"), "smartcharge/#"):
                y.subscribe(wanted)
    # The CSMS sends hx-001 a command: hx-004 must not see it.
    outcome = hostile.system.command("hx-001.1", CommandName.INFO)
    assert outcome.accepted
    y.assert_nothing(QUIET_S)
    assert hostile.snapshot() == before
    # The broker dropped them: nothing reached the CSMS, not even as a malformed message.
    assert hostile.system.bridge_stats.malformed == malformed_before


def test_a_client_taking_the_csms_client_id_does_not_knock_it_off(
    hostile: Hostile, mqtt_client: MqttClientFactory
) -> None:
    before = hostile.snapshot()
    connects = hostile.system.bridge_stats.connects
    for _ in range(5):
        try:  # Mosquitto renames it to its user name (hx-004); amqtt refuses it
            intruder = attacker(hostile, mqtt_client, client_id="csms")
            intruder.close()
        except ConnectionError:
            pass
    # The CSMS still hears its stations and commands them over the connection it had.
    outcome = hostile.system.command("hx-001.2", CommandName.INFO)
    assert outcome.accepted
    assert hostile.system.bridge_stats.connects == connects
    assert hostile.snapshot() == before


def test_a_forged_command_reply_opens_no_session(hostile: Hostile) -> None:
    before = hostile.snapshot()
    rogue_id = f"{ROGUE}.1"
    with hostile.watcher._cond:
        start = len(hostile.watcher.history[rogue_id])
    for n in range(4):
        reply = CommandReply(
            station_id=StationId(ROGUE),
            id=CorrelationId(f"never-sent-{n}"),
            command=CommandName.START,
            evse_id=EvseId("1"),
            accepted=True,
            info=EvseInfo(
                evse_id=EvseId("1"), status=EvseStatus.CHARGING, session_id=SessionId(f"f{n}")
            ),
            ts=now_ms(),
        )
        hostile.rogue.publish(replies_topic(ROGUE), encode(reply)[1])
    # A real report after the forgeries: once it is applied, so are they (one EVSE, in order).
    hostile.rogue.publish(status_topic(ROGUE, "1"), rogue_status(EvseStatus.AVAILABLE, 2))

    def applied() -> bool:
        state = hostile.system.view.evse(rogue_id)
        return state is not None and state.state.seq == 2

    wait_until(applied, "the real report applied")
    after = hostile.snapshot()
    # Only the real report's sequence number and stamp moved...
    after[rogue_id] = replace(after[rogue_id], seq=1, ts=before[rogue_id].ts)
    assert after == before
    # ... and at no point in between did the EVSE show a forged session or leave Available.
    with hostile.watcher._cond:
        seen = [(s.status, s.session_id) for s in hostile.watcher.history[rogue_id][start:]]
    assert set(seen) == {(EvseStatus.AVAILABLE, None)}, seen


def test_a_huge_or_future_stamped_report_is_refused_and_counted(hostile: Hostile) -> None:
    before = hostile.snapshot()
    stats = hostile.system.bridge_stats
    malformed, future = stats.malformed, stats.future_stamped
    huge = json.dumps(
        {
            "v": 2,
            "epoch": 1,
            "evse_id": "1",
            "status": "Faulted",
            "seq": 3,
            "ts": now_ms(),
            "pad": "x" * MAX_PAYLOAD_BYTES,
        }
    ).encode()
    hostile.rogue.publish(status_topic(ROGUE, "1"), huge)
    year_ms = 365 * 24 * 3600 * 1000
    for n, ahead in enumerate((MAX_FUTURE_SKEW_MS + 60_000, year_ms, 100 * year_ms)):
        stamped = rogue_status(EvseStatus.FAULTED, 10 + n, ts=now_ms() + ahead)
        hostile.rogue.publish(status_topic(ROGUE, "1"), stamped)
    wait_until(lambda: stats.malformed > malformed, "the huge report counted as malformed")
    wait_until(lambda: stats.future_stamped >= future + 3, "3 future-stamped reports counted")
    assert hostile.snapshot() == before
    # And the EVSE is not frozen: the next honest report still applies.
    hostile.rogue.publish(status_topic(ROGUE, "1"), rogue_status(EvseStatus.UNAVAILABLE, 20))
    hostile.watcher.wait_for(
        hostile.watcher.status_is(f"{ROGUE}.1", "Unavailable"), "the honest report after"
    )
