"""The OCPP translator's MQTT connections (``gateway/ocpp_station.py`` on
``gateway/mqtt_asyncio.py``): every charge point its own broker identity, all of them driven by
one event loop with no network thread each, reconnecting by themselves, and a clean stop
leaving the station's retained offline state; and the journal of its transactions."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import ocpp_station
from gateway import ocpp_translate as tr
from gateway.broker import EmbeddedBroker
from gateway.broker_accounts import CSMS_USER
from gateway.mqtt_asyncio import MqttLoopDriver
from gateway.ocpp_station import StationMqtt, TransactionStore
from protocol import (
    CommandName,
    CommandRequest,
    CorrelationId,
    EvseId,
    StationBirth,
    StationId,
    StationOffline,
    encode,
    parse,
    station_topic_filter,
)
from protocol.mqtt_settings import MqttSettings, parse_mqtt_url
from tests.account_support import free_port
from tests.brokers import MqttClientFactory, MqttTestClient
from tests.conftest import SecureBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_S = 15.0


def _command(station_id: str, n: int) -> CommandRequest:
    return CommandRequest(
        station_id=StationId(station_id),
        id=CorrelationId(f"c-{station_id}-{n}"),
        command=CommandName.INFO,
        evse_id=EvseId("1"),
        expires_at=time.time_ns() // 1_000_000 + 30_000,
    )


def _send(csms: MqttTestClient, request: CommandRequest) -> None:
    topic, payload, retain = encode(request)
    csms.publish(topic, payload, qos=1, retain=retain)


def _paho_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("paho-mqtt-client-cp-")]


def test_stations_share_one_loop_each_with_its_own_broker_identity(
    secure_broker: SecureBroker, mqtt_client: MqttClientFactory
) -> None:
    ids = [f"cp-{i}" for i in range(12)]
    passwords = {sid: secure_broker.station(sid) for sid in ids}
    broker = secure_broker.broker
    assert broker.tls_url is not None
    settings = parse_mqtt_url(broker.tls_url, ca_file=broker.ca_file, env={})
    csms = mqtt_client(
        broker.url, CSMS_USER, username=CSMS_USER, password=secure_broker.csms_password
    )
    csms.subscribe(station_topic_filter())
    received: dict[str, CommandRequest] = {}

    async def scenario() -> tuple[int, list[str]]:
        driver = MqttLoopDriver(asyncio.get_running_loop())
        all_in = asyncio.Event()

        def on_command(request: CommandRequest) -> None:
            received[request.station_id] = request
            if len(received) == len(ids):
                all_in.set()

        stations = [StationMqtt(settings, sid, passwords[sid], driver, on_command) for sid in ids]
        wrong = StationMqtt(settings, "cp-0", "not its password", driver, on_command)
        assert await asyncio.gather(*(s.start(WAIT_S) for s in stations)) == [True] * len(ids)
        assert not await wrong.start(2.0)  # the broker refuses it, and goes on refusing
        await wrong.stop("connection_lost")
        threads = _paho_threads()
        for sid, station in zip(ids, stations, strict=True):
            station.publish(tr.birth(StationId(sid), sid, [1], epoch=1, ts=1))
        for n, sid in enumerate(ids):
            await asyncio.to_thread(_send, csms, _command(sid, n))
        await asyncio.wait_for(all_in.wait(), WAIT_S)
        await asyncio.gather(*(s.stop("shutdown") for s in stations))
        return driver.open_sockets, threads

    open_after, threads = asyncio.run(scenario())
    assert threads == []
    assert open_after == 0
    assert sorted(received) == sorted(ids)
    assert all(received[sid].id == f"c-{sid}-{n}" for n, sid in enumerate(ids))
    births: set[str] = set()
    offline: set[str] = set()
    deadline = time.monotonic() + WAIT_S
    while (births != set(ids) or offline != set(ids)) and time.monotonic() < deadline:
        got = csms.get(deadline - time.monotonic())
        message = parse(got.topic, got.payload)
        if isinstance(message, StationBirth):
            births.add(message.station.id)
        elif isinstance(message, StationOffline):
            assert message.reason == "shutdown"
            offline.add(message.station_id)
    assert births == set(ids)
    assert offline == set(ids)


def test_a_station_reconnects_after_the_broker_restarts_and_gets_its_commands(
    tmp_path: Path, mqtt_client: MqttClientFactory
) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port, data_dir=tmp_path / "broker", prefer="mosquitto")
    broker.start()
    try:
        settings = MqttSettings(host=broker.host, port=port)

        async def scenario() -> CommandRequest:
            driver = MqttLoopDriver(asyncio.get_running_loop())
            commands: asyncio.Queue[CommandRequest] = asyncio.Queue()
            station = StationMqtt(settings, "cp-r", "unused", driver, commands.put_nowait)
            assert await station.start(WAIT_S)
            await asyncio.to_thread(broker.stop)
            await _until(lambda: not station.connected, "the connection is lost")
            await asyncio.to_thread(broker.start)
            await _until(lambda: station.connected, "the station is connected again")
            csms = await asyncio.to_thread(mqtt_client, broker.url, "csms-r")
            await asyncio.to_thread(_send, csms, _command("cp-r", 1))
            request = await asyncio.wait_for(commands.get(), WAIT_S)
            await station.stop("shutdown")
            return request

        assert asyncio.run(scenario()).id == "c-cp-r-1"
    finally:
        broker.stop()


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------- the transactions


def test_transactions_survive_a_restart_from_their_journal(tmp_path: Path) -> None:
    path = tmp_path / "ocpp" / "transactions.jsonl"
    store = TransactionStore(path)
    first = store.new("cp-1", 1, "s-1", 10.0)
    second = store.new("cp-1", 2, "s-2", 20.0)
    store.mark_stopped(first)
    assert len(path.read_text().splitlines()) == 3  # appended, not rewritten
    with path.open("a") as f:
        f.write('{"next": 9, "transaction_id": 3, "stat')  # a crash mid-write
    again = TransactionStore(path)
    one, two = again.get("cp-1", first.transaction_id), again.get("cp-1", second.transaction_id)
    assert one is not None
    assert one.stopped
    assert one.meter_start == 10.0
    assert two is not None
    assert not two.stopped
    assert two.session_id == "s-2"
    assert again.get("cp-2", second.transaction_id) is None  # another station's
    assert again.new("cp-1", 1, "s-3", 0.0).transaction_id == second.transaction_id + 1


def test_the_journal_is_compacted_and_keeps_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ocpp_station, "MAX_TRANSACTIONS_KEPT", 3)
    path = tmp_path / "transactions.jsonl"
    store = TransactionStore(path)
    made = []
    for n in range(20):
        made.append(store.new("cp-1", 1, f"s-{n}", float(n)))
        store.mark_stopped(made[-1])
        assert len(path.read_text().splitlines()) <= 2 * 3
    again = TransactionStore(path)
    kept = [r.session_id for r in made if again.get("cp-1", r.transaction_id) is not None]
    assert kept == ["s-17", "s-18", "s-19"]
    assert again.new("cp-1", 1, "s-20", 0.0).transaction_id == made[-1].transaction_id + 1


def test_the_older_single_file_is_read_once_and_replaced(tmp_path: Path) -> None:
    legacy = tmp_path / "transactions.json"
    record = {
        "transaction_id": 41,
        "station_id": "cp-1",
        "connector_id": 1,
        "session_id": "s-41",
        "meter_start": 5.0,
        "stopped": False,
    }
    legacy.write_text(json.dumps({"next": 42, "transactions": [record]}))
    store = TransactionStore(tmp_path / "transactions.jsonl")
    assert not legacy.exists()
    found = store.get("cp-1", 41)
    assert found is not None
    assert found.session_id == "s-41"
    assert store.new("cp-1", 1, "s-42", 0.0).transaction_id == 42
    assert TransactionStore(tmp_path / "transactions.jsonl").get("cp-1", 42) is not None
