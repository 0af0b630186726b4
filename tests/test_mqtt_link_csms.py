"""The whole CSMS with the MQTT client in a child process (MqttLink) and in-process, against a
real Mosquitto: stations are seen, commands go out and come back, malformed payloads are
counted and dropped.

Every wait is on a condition, a queue or a polling helper with a deadline; nothing sleeps.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pykka
import pytest

from actors.system import CsmsConfig, CsmsSystem
from protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    EvseDescriptor,
    EvseInfo,
    EvseStatus,
    StationBirth,
    StationDescriptor,
    StatusReport,
    commands_topic,
    encode,
    evse_key,
    parse,
    status_topic,
)
from tests.brokers import MqttClientFactory
from tests.mqtt_link_support import EID, SID, TOPIC, WAIT_S, now_ms, wait_until
from tests.support import FleetWatcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = evse_key(SID, EID)  # the CSMS's


def station_birth() -> tuple[str, bytes, bool]:
    station = StationDescriptor(
        id=SID, name="Link test", lat=45.0, lon=9.0, evses=(EvseDescriptor(id=EID),)
    )
    return encode(StationBirth(station=station, ts=now_ms()))


def status_report(status: EvseStatus, seq: int) -> tuple[str, bytes, bool]:
    info = EvseInfo(evse_id=EID, status=status)
    return encode(StatusReport(station_id=SID, info=info, seq=seq, ts=now_ms()))


def link_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mqtt-link-")]


@pytest.fixture(params=[True, False], ids=["process", "in-process"])
def csms(
    request: pytest.FixtureRequest, mosquitto_url: str
) -> Iterator[tuple[CsmsSystem, FleetWatcher]]:
    watcher = FleetWatcher()
    system = CsmsSystem(
        CsmsConfig(
            mqtt_url=mosquitto_url,
            client_id="lk-csms",
            listeners=(watcher,),
            mqtt_process=request.param,
            command_timeout_s=10,
        )
    )
    try:
        system.start(wait_connected_s=WAIT_S)
        yield system, watcher
    finally:
        system.stop()
        pykka.ActorRegistry.stop_all()
    assert not link_threads(), "the MQTT link's reader outlived the CSMS"


def test_csms_sees_stations_answers_commands_and_drops_malformed_payloads(
    csms: tuple[CsmsSystem, FleetWatcher], mqtt_client: MqttClientFactory, mosquitto_url: str
) -> None:
    system, watcher = csms
    assert system.mqtt_connected.is_set(), "the CSMS did not connect to Mosquitto"
    assert system.config.mqtt_process == bool(link_threads()), link_threads()

    station = mqtt_client(mosquitto_url)
    station.subscribe(commands_topic(SID))
    for topic, payload, retain in (station_birth(), status_report(EvseStatus.AVAILABLE, 1)):
        station.publish(topic, payload, retain=retain)
    watcher.wait_for(watcher.status_is(KEY, "Available"), f"{KEY} Available")
    view = system.view.evse(KEY)
    assert view is not None
    assert view.state.status == EvseStatus.AVAILABLE

    # A command goes out through the bridge and its reply comes back in.
    outcome: queue.Queue[object] = queue.Queue()

    def ask() -> None:
        try:
            outcome.put(system.command(KEY, CommandName.INFO))
        except Exception as exc:  # reported on the test thread
            outcome.put(exc)

    asker = threading.Thread(target=ask, name="lk-ask", daemon=True)
    asker.start()
    request = parse(commands_topic(SID), station.get_on(commands_topic(SID)).payload)
    assert isinstance(request, CommandRequest)
    assert (request.command, request.evse_id) == (CommandName.INFO, EID)
    reply = CommandReply(
        station_id=SID,
        id=request.id,
        command=request.command,
        evse_id=EID,
        accepted=True,
        info=EvseInfo(evse_id=EID, status=EvseStatus.AVAILABLE),
        ts=now_ms(),
    )
    topic, payload, retain = encode(reply)
    station.publish(topic, payload, retain=retain)
    result = outcome.get(timeout=WAIT_S)
    assert not isinstance(result, Exception), result
    assert result.accepted  # type: ignore[attr-defined]
    assert system.bridge_stats.messages_out >= 1

    # Malformed payloads are counted and dropped; nothing stops.
    malformed_before = system.bridge_stats.malformed
    bad = [
        (status_topic(SID, EID), b"{not json"),
        (status_topic(SID, EID), b"\xff\xfe\x00"),
        (TOPIC, b'{"v":2,"evse_id":"1","seq":"one"}'),
    ]
    for topic, payload in bad:
        station.publish(topic, payload)
    wait_until(
        lambda: system.bridge_stats.malformed - malformed_before >= len(bad),
        f"{len(bad)} malformed messages counted",
    )
    assert system.bridge_stats.malformed - malformed_before == len(bad)

    topic, payload, retain = status_report(EvseStatus.UNAVAILABLE, 2)
    station.publish(topic, payload, retain=retain)
    watcher.wait_for(watcher.status_is(KEY, "Unavailable"), f"{KEY} Unavailable after the garbage")
    view = system.view.evse(KEY)
    assert view is not None
    assert view.state.status == EvseStatus.UNAVAILABLE
    assert system.supervisor is not None
    assert system.supervisor.is_alive()
    assert system.mqtt_connected.is_set()
    assert system.bridge_stats.connects == 1
    assert system.config.mqtt_process == bool(link_threads())
