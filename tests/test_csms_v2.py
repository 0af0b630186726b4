"""Protocol version 2 on the CSMS side: EVSEs named by their station, births that describe
the station, commands that cannot run late, and reports the CSMS refuses."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.bridge import MqttBridgeActor
from actors.fleet_view import FleetView, FleetViewWriter
from actors.listeners import ListenerHost, Tick
from actors.messages import GetEvseRef, GetState, Inbound, Publish, SendCommand, VersionRefused
from actors.supervisor import SupervisorActor
from actors.timers import Timers
from protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    CorrelationId,
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    SessionId,
    StartArgs,
    StationBirth,
    StationDescriptor,
    StationId,
    StatusReport,
    command_for,
    encode,
    parse,
    state_topic,
    status_topic,
)
from storage.errors import UnknownEvseError
from tests.driver_client import wait_until
from tests.support import FleetWatcher

WAIT_S = 10.0


class BridgeRecorder(pykka.ThreadingActor):
    """Stands in for the MQTT bridge: every command the CSMS publishes lands in a queue."""

    def __init__(self, published: queue.Queue[Publish]) -> None:
        super().__init__()
        self.published = published

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Publish):
            self.published.put(message)


class Csms:
    def __init__(self) -> None:
        self.watcher = FleetWatcher()
        self.view = FleetView()
        self.published: queue.Queue[Publish] = queue.Queue()
        self.timers = Timers()
        self.host = ListenerHost.start([FleetViewWriter(self.view), self.watcher])
        self.supervisor = SupervisorActor.start(
            bridge=BridgeRecorder.start(self.published),
            subscribers=[self.host],
            timers=self.timers,
        )

    def tell(self, message: Any) -> None:
        self.supervisor.tell(Inbound(message=message))

    def sync_view(self) -> None:
        """The changes of every EVSE actor asked so far are in the read model: this ask queues
        behind the notices their changes sent the listener host."""
        self.host.ask(Tick(), timeout=WAIT_S)

    def sync(self) -> None:
        """Every message told so far has been routed and applied (asks queue behind them)."""
        ref = self.supervisor.ask(GetEvseRef(evse_id=EvseId(next(iter(self.keys())))), timeout=5)
        ref.ask(GetState(), timeout=WAIT_S)

    def keys(self) -> list[str]:
        return [e.state.evse_id for e in self.view.evses()]

    def command(
        self, key: str, command: CommandName, args: Any = None, timeout_s: float = 5.0
    ) -> pykka.Future[Any]:
        ref = self.supervisor.ask(GetEvseRef(evse_id=EvseId(key)), timeout=5)
        reply: pykka.Future[Any] = pykka.ThreadingFuture()
        ref.tell(SendCommand(args=command_for(command, args), reply=reply, timeout_s=timeout_s))
        return reply

    def next_request(self) -> CommandRequest:
        published = self.published.get(timeout=WAIT_S)
        request = parse(published.topic, published.payload)
        assert isinstance(request, CommandRequest)
        return request


@pytest.fixture
def csms() -> Iterator[Csms]:
    system = Csms()
    try:
        yield system
    finally:
        system.timers.stop()
        pykka.ActorRegistry.stop_all()


def station(sid: str, *evses: EvseDescriptor, epoch: int = 1) -> StationBirth:
    descriptor = StationDescriptor(id=StationId(sid), name=sid, lat=45.0, lon=9.0, evses=evses)
    return StationBirth(station=descriptor, ts=1, epoch=epoch)


def evse(local: str, power: float = 22_000.0, connector: str = "Type2") -> EvseDescriptor:
    return EvseDescriptor(id=EvseId(local), max_power_w=power, connector=connector)


def status(sid: str, local: str, st: EvseStatus, seq: int, **info: Any) -> StatusReport:
    return StatusReport(
        station_id=StationId(sid),
        info=EvseInfo(evse_id=EvseId(local), status=st, **info),
        seq=seq,
        ts=seq,
        epoch=1,
    )


def test_two_stations_that_both_name_their_evses_1_and_2_never_collide(csms: Csms) -> None:
    csms.tell(station("ST-A", evse("1"), evse("2")))
    csms.tell(station("ST-B", evse("1"), evse("2")))
    csms.tell(status("ST-A", "1", EvseStatus.AVAILABLE, 1))
    csms.tell(status("ST-B", "1", EvseStatus.FAULTED, 1))
    csms.tell(status("ST-B", "2", EvseStatus.AVAILABLE, 2))
    for key, status_now in (
        ("ST-A.1", "Available"),
        ("ST-B.1", "Faulted"),
        ("ST-B.2", "Available"),
    ):
        csms.watcher.wait_for(csms.watcher.status_is(key, status_now), f"{key} {status_now}")

    # ST-A.2 has had no status yet: its actor comes from the birth, on the supervisor's time
    every = ["ST-A.1", "ST-A.2", "ST-B.1", "ST-B.2"]
    wait_until(lambda: sorted(csms.keys()) == every, "an actor for each of the four EVSEs")
    assert csms.watcher.state("ST-A.1").status is EvseStatus.AVAILABLE
    assert csms.watcher.state("ST-B.1").status is EvseStatus.FAULTED
    # A command to ST-B.1 goes to ST-B, naming the station's own EVSE id.
    csms.command("ST-B.1", CommandName.INFO)
    request = csms.next_request()
    assert (request.station_id, request.evse_id) == ("ST-B", "1")


def test_a_later_birth_updates_adds_and_retires_evses(csms: Csms) -> None:
    csms.tell(station("ST-A", evse("1"), evse("2")))
    csms.tell(status("ST-A", "2", EvseStatus.AVAILABLE, 1))
    csms.watcher.wait_for(csms.watcher.status_is("ST-A.2", "Available"), "ST-A.2 Available")
    retired_ref = csms.supervisor.ask(GetEvseRef(evse_id=EvseId("ST-A.2")), timeout=5)

    csms.tell(station("ST-A", evse("1", power=150_000.0, connector="CCS2"), evse("3"), epoch=2))
    csms.tell(
        StatusReport(
            station_id=StationId("ST-A"),
            info=EvseInfo(evse_id=EvseId("3"), status=EvseStatus.AVAILABLE),
            seq=1,
            ts=1,
            epoch=2,
        )
    )
    csms.watcher.wait_for(csms.watcher.status_is("ST-A.3", "Available"), "ST-A.3 Available")
    latest = csms.watcher.latest
    csms.watcher.wait_for(
        lambda: latest["ST-A.1"].descriptor.connector == "CCS2", "ST-A.1 rebuilt by the birth"
    )

    one = csms.view.evse("ST-A.1")  # the read model's owner ran before the watcher
    assert one is not None
    assert (one.state.descriptor.connector, one.state.descriptor.max_power_w) == ("CCS2", 150_000.0)
    assert csms.view.evse("ST-A.2") is None, "a retired EVSE is gone from the read model"
    with pytest.raises(UnknownEvseError):
        csms.supervisor.ask(GetEvseRef(evse_id=EvseId("ST-A.2")), timeout=5)
    assert retired_ref.actor_stopped.wait(WAIT_S), "its actor ended"
    assert [e.state.evse_id for e in csms.view.stations()[0].evses] == ["ST-A.1", "ST-A.3"]
    assert any(a.kind == "evse_retired" and a.evse_id == "ST-A.2" for a in csms.watcher.alerts)


def test_a_command_to_an_offline_station_is_refused_at_once_and_never_sent(csms: Csms) -> None:
    csms.tell(station("ST-A", evse("1")))
    csms.tell(status("ST-A", "1", EvseStatus.AVAILABLE, 1))
    csms.watcher.wait_for(csms.watcher.status_is("ST-A.1", "Available"), "ST-A.1 Available")
    from protocol import StationOffline

    csms.tell(StationOffline(station_id=StationId("ST-A"), ts=2))
    csms.watcher.wait_for(csms.watcher.status_is("ST-A.1", "Offline"), "ST-A.1 Offline")

    started = time.monotonic()
    outcome = csms.command("ST-A.1", CommandName.START, StartArgs(session_id=SessionId("s-1"))).get(
        timeout=WAIT_S
    )
    assert (outcome.accepted, outcome.reason) == (False, "offline")
    assert time.monotonic() - started < 1.0
    assert csms.published.empty(), "nothing is queued to run when the station reconnects"


def test_a_session_started_after_its_start_timed_out_is_stopped(csms: Csms) -> None:
    csms.tell(station("ST-A", evse("1")))
    csms.tell(status("ST-A", "1", EvseStatus.AVAILABLE, 1))
    csms.watcher.wait_for(csms.watcher.status_is("ST-A.1", "Available"), "ST-A.1 Available")

    reply = csms.command(
        "ST-A.1", CommandName.START, StartArgs(session_id=SessionId("late")), timeout_s=0.2
    )
    start = csms.next_request()
    assert start.expires_at == start.ts + 200
    with pytest.raises(Exception, match="did not answer"):
        reply.get(timeout=WAIT_S)

    # The station started it anyway (its reply was lost): the CSMS stops that session.
    csms.tell(status("ST-A", "1", EvseStatus.PREPARING, 2, session_id=SessionId("late")))
    stop = csms.next_request()
    assert stop.command is CommandName.STOP
    assert stop.args == {"session_id": "late"}
    csms.watcher.wait_for(
        lambda: any(a.kind == "late_session_stopped" for a in csms.watcher.alerts),
        "the operator to be told",
    )


def test_a_version_1_station_is_refused_by_name_and_an_operator_told_once(csms: Csms) -> None:
    for _ in range(3):
        csms.tell(VersionRefused(station_id=StationId("OLD-1"), version=1, why="speaks v1"))
    csms.tell(station("ST-A", evse("1")))
    csms.tell(status("ST-A", "1", EvseStatus.AVAILABLE, 1))
    csms.watcher.wait_for(csms.watcher.status_is("ST-A.1", "Available"), "ST-A.1 Available")
    refused = [a for a in csms.watcher.alerts if a.kind == "protocol_version"]
    assert [a.station_id for a in refused] == ["OLD-1"]
    assert csms.view.station("OLD-1") is None


def _bridge() -> MqttBridgeActor:
    return MqttBridgeActor("mqtt://127.0.0.1:1", process=False)  # never connected: parse only


def test_the_bridge_refuses_a_report_stamped_in_the_future_and_counts_it() -> None:
    bridge = _bridge()
    future = int(time.time() * 1000) + 3600_000
    report = status("ST-A", "1", EvseStatus.FAULTED, 10**9)
    topic, payload, _ = encode(
        StatusReport(
            station_id=report.station_id, info=report.info, seq=report.seq, ts=future, epoch=1
        )
    )
    assert bridge._parse(topic, payload) is None
    assert bridge.stats.future_stamped == 1
    now_topic, now_payload, _ = encode(report)
    assert isinstance(bridge._parse(now_topic, now_payload), StatusReport)


def test_the_bridge_turns_a_version_1_message_into_a_refusal_not_a_malformed_count() -> None:
    bridge = _bridge()
    v1_birth = json.dumps({"v": 1, "online": True, "ts": 1, "station": {}}).encode()
    refused = bridge._parse(state_topic("OLD-1").replace("/v2/", "/v1/"), v1_birth)
    assert isinstance(refused, VersionRefused)
    assert refused.station_id == "OLD-1"
    v1_on_v2 = bridge._parse(status_topic("OLD-2", "1"), b'{"v": 1}')
    assert isinstance(v1_on_v2, VersionRefused)
    assert (bridge.stats.wrong_version, bridge.stats.malformed) == (2, 0)


def test_a_reply_to_no_command_of_ours_changes_nothing(csms: Csms) -> None:
    """A forged reply (or one after its time-out) must not open a session on its EVSE."""
    csms.tell(station("ST-A", evse("1")))
    csms.tell(status("ST-A", "1", EvseStatus.AVAILABLE, 1))
    csms.watcher.wait_for(csms.watcher.status_is("ST-A.1", "Available"), "ST-A.1 Available")
    forged = EvseInfo(
        evse_id=EvseId("1"), status=EvseStatus.CHARGING, session_id=SessionId("forged")
    )
    csms.tell(
        CommandReply(
            station_id=StationId("ST-A"),
            id=CorrelationId("never-sent"),
            command=CommandName.START,
            evse_id=EvseId("1"),
            accepted=True,
            info=forged,
            ts=10**13,
        )
    )
    csms.sync()
    state = csms.view.evse("ST-A.1")
    assert state is not None
    assert (state.state.status, state.state.session_id) == (EvseStatus.AVAILABLE, None)
