"""The operators' alert log (``storage._alerts``, ``actors.alert_log``, ``/api/v1/alerts``):
stored once per event on the CSMS's clock, "back online" also across a CSMS restart, listed
newest first with filters and pages, acknowledged by an operator (who and when, the first ack
stays), and pushed live as ``alert`` / ``alert_ack`` events carrying the stored alert; with
the gateway in the node and apart from it."""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest.mock import MagicMock

import pykka
import pytest

from actors import node_contract as nc
from actors.alert_log import AlertLog, AlertRecorder, severity_of
from actors.charging import Caller
from actors.clock import ManualClock
from actors.live import LiveEvent, LiveHub, LiveStream
from actors.messages import OperatorAlert, StationChanged
from actors.node_server import NodeRpc
from actors.system import CsmsConfig, CsmsSystem
from protocol import (
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    StationBirth,
    StationDescriptor,
    StationId,
    StationOffline,
    StatusReport,
    encode,
)
from storage import Alert, Storage
from tests.api_fixtures import EVSE_IDS, Running, running
from tests.brokers import MqttClientFactory
from tests.db import database_for_test, open_test_storage
from tests.support import FleetWatcher

if TYPE_CHECKING:  # imported at run time by pytest, as a plugin, so that it is assert-rewritten
    from tests.storage_fixtures import FakeClock

pytest_plugins = ("tests.storage_fixtures",)

__all__ = ["running"]

ALERT_SHAPE = {
    "id",
    "at",
    "kind",
    "severity",
    "station_id",
    "evse_id",
    "message",
    "acked_by",
    "acked_at",
}


def station(sid: str = "al-001", name: str = "Alert depot") -> StationDescriptor:
    return StationDescriptor(
        id=StationId(sid), name=name, lat=45.0, lon=7.6, evses=(EvseDescriptor(id=EvseId("1")),)
    )


def operator_events(hub: LiveHub) -> LiveStream:
    """What an operator's stream is offered (everything with no user)."""
    return hub.subscribe(lambda e: e.user_id is None)


def next_of(stream: LiveStream, kind: str, timeout: float = 20.0) -> LiveEvent:
    while True:
        event = stream.events.get(timeout=timeout)  # queue.Empty fails the test
        if event.kind == kind:
            return event


def next_alert(stream: LiveStream, kind: str = "alert") -> dict[str, Any]:
    data = next_of(stream, kind).data
    assert isinstance(data, dict)
    return data


# -- the store ---------------------------------------------------------------------------------


def test_the_store_pages_newest_first_with_filters_and_keeps_the_first_ack(
    store: Storage, clock: FakeClock
) -> None:
    added = [
        store.alerts.add("station_offline", "bad", "a", at=1_000, station_id="st-1"),
        store.alerts.add("actor_restarted", "warn", "b", at=2_000, station_id="st-2"),
        store.alerts.add("station_online", "good", "c", at=3_000, station_id="st-1"),
        store.alerts.add("evse_faulted", "bad", "d", at=4_000, station_id="st-2", evse_id="st-2.1"),
    ]
    assert [a.id for a in added] == sorted(a.id for a in added)
    newest_first = [a.id for a in reversed(added)]
    assert [a.id for a in store.alerts.page()] == newest_first
    first = store.alerts.page(limit=2)
    rest = store.alerts.page(limit=2, before=first[-1].id)
    assert [a.id for a in first + rest] == newest_first
    assert [a.message for a in store.alerts.page(severities=["bad"])] == ["d", "a"]
    assert [a.message for a in store.alerts.page(station_id="st-1")] == ["c", "a"]
    assert store.alerts.last_liveness() == {"st-1": "station_online"}

    acked = store.alerts.ack(added[0].id, "ops@example.com", at=5_000)
    assert acked is not None
    assert (acked.acked_by, acked.acked_at) == ("ops@example.com", 5_000)
    again = store.alerts.ack(added[0].id, "other@example.com", at=6_000)
    assert again == acked  # the first ack stays
    assert [a.message for a in store.alerts.page(unacked=True)] == ["d", "c", "b"]
    assert store.alerts.ack(10_000, "ops@example.com") is None
    with pytest.raises(ValueError, match="severity"):
        store.alerts.add("x", "fatal", "no such severity", at=1)  # type: ignore[arg-type]


def test_old_alerts_are_pruned_by_age_and_by_count(store: Storage) -> None:
    """The log deletes what is older than its retention and keeps at most its newest rows,
    pruning when it stores its first alert, then after an hour on its clock."""
    hour = 3600 * 1000
    now = [100 * hour]
    log = AlertLog(
        store.alerts, LiveHub(), clock_ms=lambda: now[0], retention_ms=10 * hour, max_alerts=3
    )
    for age_h in (50, 20, 9, 5):  # stored directly: the log has not pruned yet
        store.alerts.add("maintenance", "info", f"{age_h} h old", at=now[0] - age_h * hour)
    log.record("maintenance", "new")  # its first: prunes by age (50 h and 20 h go)
    assert [a.message for a in store.alerts.page()] == ["new", "5 h old", "9 h old"]
    log.record("maintenance", "newer")  # not due yet: four rows for a while
    assert len(store.alerts.page()) == 4
    now[0] += hour
    log.record("maintenance", "an hour later")  # due: the newest three stay
    assert [a.message for a in store.alerts.page()] == ["an hour later", "newer", "new"]
    assert store.alerts.prune(before=0, keep=100) == 0, "nothing left to delete"


# -- the recorder: one entry per event, back online, the CSMS's clock ----------------------------


def test_offline_is_logged_once_and_back_online_also_after_a_restart(store: Storage) -> None:
    hub = LiveHub()
    seen = operator_events(hub)
    now = [1_700_000_000_000]
    log = AlertLog(store.alerts, hub, clock_ms=lambda: now[0])
    recorder = AlertRecorder(log)
    recorder.started()
    st = station()

    recorder.station_changed(StationChanged(station=st, online=True, ts=1))  # a first birth
    offline = OperatorAlert(
        kind="station_offline", message="Station al-001 is offline", ts=now[0], station_id=st.id
    )
    recorder.station_changed(StationChanged(station=st, online=False, ts=1))
    recorder.operator_alert(offline)
    recorder.operator_alert(offline)  # the last will after a clean stop: the same event
    assert [a.kind for a in store.alerts.page()] == ["station_offline"]
    event = next_of(seen, "alert")
    assert event.data == store.alerts.page()[0].to_json()
    assert set(event.data) == ALERT_SHAPE

    # The CSMS restarts: a new log and recorder on the same database.
    now[0] += 60_000
    restarted = AlertRecorder(AlertLog(store.alerts, hub, clock_ms=lambda: now[0]))
    restarted.started()
    restarted.operator_alert(offline)  # the retained offline, delivered again
    restarted.station_changed(StationChanged(station=st, online=True, ts=1))
    restarted.station_changed(StationChanged(station=st, online=True, ts=2))  # a second birth
    alerts = store.alerts.page()
    assert [(a.kind, a.severity) for a in alerts] == [
        ("station_online", "good"),
        ("station_offline", "bad"),
    ]
    assert alerts[0].at == now[0]  # the CSMS's clock, not the birth's stamp (1)
    assert "back online" in alerts[0].message


def test_without_a_database_alerts_still_go_live_with_ids() -> None:
    hub = LiveHub()
    seen = operator_events(hub)
    log = AlertLog(None, hub, clock_ms=lambda: 42)
    first = log.record("actor_restarted", "EVSE x restarted", station_id="s", evse_id="s.1")
    second = log.record("maintenance", "EVSE x in maintenance")
    assert (first.id, second.id) == (1, 2)
    assert next_of(seen, "alert").data == first.to_json()
    assert severity_of("station_offline") == "bad"
    assert severity_of("something_new") == "warn"


# -- a running CSMS on a manual clock, and a station that stamps its messages wrong ---------------


class AlertCsms:
    def __init__(self, url: str, storage: Storage, clock: ManualClock, name: str) -> None:
        self.system = CsmsSystem(
            CsmsConfig(
                mqtt_url=url,
                client_id=f"smartcharge-csms-{name}",
                storage=storage,
                listeners=(FleetWatcher(),),
                mqtt_process=False,
            ),
            clock=clock,
        )
        self.stream = operator_events(self.system.hub)

    def next_alert(self) -> dict[str, Any]:
        return next_alert(self.stream)


@pytest.fixture
def alert_storage(tmp_path: Path) -> Iterator[Storage]:
    with database_for_test(tmp_path / "csms") as url:
        storage = open_test_storage(tmp_path / "csms", url)
        try:
            yield storage
        finally:
            storage.close()


@pytest.mark.integration
@pytest.mark.needs_db
@pytest.mark.timeout(60)
def test_a_running_csms_logs_each_offline_once_on_its_own_clock_and_back_online_after_a_restart(
    mosquitto_url: str, mqtt_client: MqttClientFactory, alert_storage: Storage
) -> None:
    clock = ManualClock(start_s=1_900_000_000.0)  # the CSMS's clock; the station says ts=1
    st = station("al-002", "Clock depot")
    wire = mqtt_client(mosquitto_url, "station-al-002")

    def send(message: Any) -> None:
        topic, payload, retain = encode(message)
        wire.publish(topic, payload, retain=retain)

    birth = StationBirth(station=st, ts=1, epoch=1)
    report = StatusReport(
        station_id=st.id,
        info=EvseInfo(evse_id=EvseId("1"), status=EvseStatus.AVAILABLE, soc=None),
        seq=1,
        ts=1,
        epoch=1,
    )
    first = AlertCsms(mosquitto_url, alert_storage, clock, "a")
    first.system.start()
    try:
        send(birth)
        send(report)
        clock.advance(5)
        send(StationOffline(station_id=st.id, ts=1, reason="connection_lost"))
        offline = first.next_alert()
        assert (offline["kind"], offline["station_id"]) == ("station_offline", "al-002")
        assert offline["at"] == clock.time_ms()  # not the station's stamp
        send(StationOffline(station_id=st.id, ts=2, reason="shutdown"))  # the same event again
        clock.advance(5)
        send(birth)
        online = first.next_alert()  # the next alert is back online: no second offline
        assert (online["kind"], online["at"]) == ("station_online", clock.time_ms())
        send(StationOffline(station_id=st.id, ts=3, reason="connection_lost"))
        assert first.next_alert()["kind"] == "station_offline"
    finally:
        first.system.stop()
        pykka.ActorRegistry.stop_all()

    clock.advance(600)
    second = AlertCsms(mosquitto_url, alert_storage, clock, "b")
    second.system.start()  # the retained offline comes again: already in the log
    try:
        send(birth)
        back = second.next_alert()
        assert (back["kind"], back["at"]) == ("station_online", clock.time_ms())
    finally:
        second.system.stop()
        pykka.ActorRegistry.stop_all()
    assert [a.kind for a in alert_storage.alerts.page()] == [
        "station_online",
        "station_offline",
        "station_online",
        "station_offline",
    ]
    after: list[str] = []
    while not second.stream.events.empty():
        after.append(second.stream.events.get_nowait().kind)
    assert "alert" not in after  # nothing logged twice


# -- the API, with the gateway in the node and apart from it -------------------------------------

modes = pytest.mark.parametrize(
    "gateway",
    [
        pytest.param("in-node"),
        pytest.param("apart", marks=pytest.mark.remote_gateway),
    ],
)


def _record(running: Running, kind: str, station_id: str, message: str) -> Alert:
    return running.system.alerts.record(kind, message, station_id=station_id)


@pytest.mark.integration
@pytest.mark.needs_db
@pytest.mark.timeout(120)
@modes
def test_operators_list_filter_page_and_ack_alerts(running: Running, gateway: str) -> None:
    ops = running.operator()
    stream = operator_events(running.hub)
    made = [
        _record(running, "station_offline", "ap-001", "Station ap-001 is offline"),
        _record(running, "actor_restarted", "ap-002", "EVSE ap-002.1 restarted"),
        _record(running, "station_online", "ap-001", "Station ap-001 is back online"),
    ]
    live = next_of(stream, "alert")  # the stored alert, id and all, also through the broker
    assert live.data == made[0].to_json()

    listed = running.call("GET", "/api/v1/alerts", ops)
    assert listed.status_code == 200, listed.json
    assert [a["id"] for a in listed.json["alerts"]] == [a.id for a in reversed(made)]
    assert listed.json["next"] is None
    assert all(set(a) == ALERT_SHAPE for a in listed.json["alerts"])

    page = running.call("GET", "/api/v1/alerts", ops, params={"limit": "2"}).json
    assert [a["id"] for a in page["alerts"]] == [made[2].id, made[1].id]
    assert page["next"] == made[1].id
    rest = running.call(
        "GET", "/api/v1/alerts", ops, params={"limit": "2", "before": str(page["next"])}
    ).json
    assert [a["id"] for a in rest["alerts"]] == [made[0].id]
    assert rest["next"] is None
    bad = running.call("GET", "/api/v1/alerts", ops, params={"severity": "bad"}).json
    assert [a["id"] for a in bad["alerts"]] == [made[0].id]
    at_1 = running.call("GET", "/api/v1/alerts", ops, params={"station": "ap-001"}).json
    assert [a["id"] for a in at_1["alerts"]] == [made[2].id, made[0].id]

    before = running.system.clock.time_ms()
    acked = running.call("POST", f"/api/v1/alerts/{made[0].id}/ack", ops)
    assert acked.status_code == 200, acked.json
    assert acked.json["acked_by"] == "ops@example.com"
    assert before <= acked.json["acked_at"] <= running.system.clock.time_ms()
    ack_event = next_of(stream, "alert_ack")
    assert ack_event.data == acked.json

    other = running.operator("second@example.com")
    twice = running.call("POST", f"/api/v1/alerts/{made[0].id}/ack", other)
    assert (twice.status_code, twice.json) == (200, acked.json)  # the first ack stays
    unacked = running.call("GET", "/api/v1/alerts", ops, params={"unacked": "1"}).json
    assert [a["id"] for a in unacked["alerts"]] == [made[2].id, made[1].id]
    assert running.call("POST", "/api/v1/alerts/999999/ack", ops).status_code == 404
    assert running.call("POST", "/api/v1/alerts/abc/ack", ops).status_code == 404


@pytest.mark.integration
@pytest.mark.needs_db
@pytest.mark.timeout(120)
def test_alerts_are_for_operators_only_and_inputs_are_checked(running: Running) -> None:
    alert = _record(running, "station_offline", "ap-001", "Station ap-001 is offline")
    driver, _ = running.driver("drv@example.com")
    assert running.call("GET", "/api/v1/alerts").status_code == 401
    assert running.call("GET", "/api/v1/alerts", driver).status_code == 403
    assert running.call("POST", f"/api/v1/alerts/{alert.id}/ack").status_code == 401
    assert running.call("POST", f"/api/v1/alerts/{alert.id}/ack", driver).status_code == 403
    assert running.storage.alerts.get(alert.id) == alert  # not acked
    ops = running.operator()
    for params in (
        {"severity": "fatal"},
        {"station": "no/such"},
        {"limit": "0"},
        {"limit": "201"},
        {"before": "x"},
        {"unacked": "maybe"},
    ):
        refused = running.call("GET", "/api/v1/alerts", ops, params=params)
        assert refused.status_code == 400, (params, refused.json)
        assert refused.json["reason"]
    assert running.call("GET", "/api/v1/alerts", ops, https=False).status_code != 200


@pytest.mark.integration
@pytest.mark.needs_db
@pytest.mark.timeout(120)
@modes
def test_a_real_station_offline_is_one_alert_and_its_return_is_back_online(
    running: Running, gateway: str, mosquitto_url: str, mqtt_client: MqttClientFactory
) -> None:
    """The fleet's station ap-001 loses its connection (its last will says offline, stamped by
    the station); the log has one offline entry on the CSMS's clock, then back online."""
    ops = running.operator()
    stream = operator_events(running.hub)
    sid = StationId("ap-001")
    wire = mqtt_client(mosquitto_url, "ap-001-impostor-test")
    topic, payload, retain = encode(StationOffline(station_id=sid, ts=1, reason="connection_lost"))
    wire.publish(topic, payload, retain=retain)
    wire.publish(topic, payload, retain=retain)  # twice: the same offline
    offline = next_alert(stream)
    assert (offline["kind"], offline["station_id"]) == ("station_offline", "ap-001")
    assert offline["at"] > 1_000_000_000_000  # the CSMS's clock, not the station's ts=1
    st = running.system.view.station(sid)
    assert st is not None
    topic, payload, retain = encode(StationBirth(station=st.station, ts=1, epoch=99))
    wire.publish(topic, payload, retain=retain)
    online = next_alert(stream)
    assert (online["kind"], online["station_id"]) == ("station_online", "ap-001")
    listed = running.call("GET", "/api/v1/alerts", ops, params={"station": "ap-001"}).json
    assert [a["kind"] for a in listed["alerts"]] == ["station_online", "station_offline"]
    assert EVSE_IDS  # the fleet's other station is untouched


# -- the node-gateway op ack_alert -----------------------------------------------------------


def test_the_node_acks_an_alert_for_an_operator_only_and_refuses_malformed_requests(
    store: Storage,
) -> None:
    hub = LiveHub()
    seen = operator_events(hub)
    log = AlertLog(store.alerts, hub, clock_ms=lambda: 7_000)
    alert = log.record("evse_faulted", "EVSE x faulted", station_id="s", evse_id="s.1")
    replies: queue.Queue[dict[str, Any]] = queue.Queue()
    rpc = NodeRpc(MagicMock(), log, reply=lambda _topic, payload: replies.put(json.loads(payload)))

    def ask(caller: Caller | None, **args: Any) -> None:
        rpc.on_request(
            nc.Request(
                id=uuid.uuid4().hex,
                reply_to=nc.replies_topic("test"),
                expires_at=int(time.time() * 1000) + 10_000,
                op="ack_alert",
                caller=caller,
                args=args,
            ).to_json()
        )

    try:
        ask(Caller(user_id="u-1"), alert_id=alert.id, by="driver@example.com")
        assert replies.get(timeout=10)["error"]["type"] == "Forbidden"
        ask(Caller(user_id="u-2", operator=True), alert_id=alert.id, by="ops@example.com")
        done = replies.get(timeout=10)
        acked = nc.decode_result(done["result"])
        assert isinstance(acked, Alert)
        assert (acked.id, acked.acked_by, acked.acked_at) == (alert.id, "ops@example.com", 7_000)
        assert next_of(seen, "alert_ack").data == acked.to_json()
        ask(Caller(user_id="u-2", operator=True), alert_id=10**9, by="ops@example.com")
        assert replies.get(timeout=10)["error"]["type"] == "NotFound"
        for bad in (
            {"alert_id": True, "by": "ops@example.com"},
            {"alert_id": alert.id},
            {"alert_id": "1", "by": "ops@example.com"},
            {"evse_id": "s.1", "alert_id": alert.id, "by": "ops@example.com"},
        ):
            ask(Caller(user_id="u-2", operator=True), **bad)
        ask(None, alert_id=alert.id, by="ops@example.com")
        assert rpc.stats.counts["malformed"] == 5
        assert replies.empty()
    finally:
        rpc.stop()


@pytest.mark.integration
@pytest.mark.needs_db
@pytest.mark.timeout(120)
@modes
def test_an_operators_maintenance_switch_is_logged(running: Running, gateway: str) -> None:
    ops = running.operator()
    stream = operator_events(running.hub)
    evse = EVSE_IDS[0]
    switched = running.call("PUT", f"/api/v1/evses/{evse}/maintenance", ops, {"enabled": True})
    assert switched.status_code == 200, switched.json
    logged = next_alert(stream)
    assert (logged["kind"], logged["severity"]) == ("maintenance", "info")
    assert (logged["station_id"], logged["evse_id"]) == ("ap-001", evse)
    assert "put into maintenance" in logged["message"]
    listed = running.call("GET", "/api/v1/alerts", ops, params={"severity": "info"}).json
    assert [a["id"] for a in listed["alerts"]] == [logged["id"]]
