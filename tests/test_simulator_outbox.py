"""The station simulator's outbox: what a disconnected station keeps and replays first on
reconnect, driven by hand against a fake broker, and once against a real Mosquitto for the
replay and its PUBACKs."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from protocol import (
    CommandReply,
    EvseStatus,
    Message,
    MeterValues,
    StationBirth,
    StatusReport,
    StopReason,
    all_station_topics_filter,
    encode,
    parse,
)
from simulator import Keep, ManualClock, Outbox, StationRunner, StationSimulator, StationStore
from simulator.outbox import keep_levels
from tests.simulator_support import (
    EVSE,
    SID,
    charging,
    command,
    descriptor,
    run,
    run_until,
    send,
    station,
)

# --------------------------------------------------------------------------- version 2: outbox


def test_only_session_ends_and_status_changes_during_a_session_are_kept() -> None:
    sim, clock = station()
    assert keep_levels(send(sim, "reserve", reservation_id="r-1")) == [None, None]
    out = send(sim, "start", session_id="s-1", reservation_id="r-1")
    assert keep_levels(out) == [None, Keep.SESSION]  # the reply, then Preparing
    out = run(sim, clock, 30)
    assert [type(m) for m in out] == [StatusReport] + [MeterValues] * (len(out) - 1)
    assert keep_levels(out) == [Keep.SESSION] + [None] * (len(out) - 1)  # plain meters
    clock.advance(2)
    out = send(sim, "stop")
    assert [type(m) for m in out] == [CommandReply, MeterValues, StatusReport]
    assert keep_levels(out) == [None, Keep.SESSION_END, Keep.SESSION_END]
    out = run_until(sim, clock, EvseStatus.AVAILABLE)
    assert keep_levels(out) == [None]  # the EVSE is free again: not a session's business


def test_a_full_outbox_drops_the_oldest_status_change_before_any_session_end() -> None:
    sim, clock = charging()
    out = run_until(sim, clock, EvseStatus.FINISHING)
    end = [m for m in out if isinstance(m, StatusReport)][-1]
    charging_report = StatusReport(
        station_id=SID, info=replace(end.info, status=EvseStatus.CHARGING), seq=1, ts=1, epoch=1
    )
    box = Outbox(limit=3)
    box.add(end, Keep.SESSION_END)
    for seq in (2, 3, 4):
        box.add(replace(charging_report, seq=seq), Keep.SESSION)
    assert [m.seq for m in box.messages()] == [end.seq, 3, 4]
    assert box.dropped == 1
    box.delivered((end.epoch, end.seq))
    box.add(replace(end, seq=end.seq + 10), Keep.SESSION_END)
    box.add(replace(end, seq=end.seq + 11), Keep.SESSION_END)
    assert [m.seq for m in box.messages()] == [4, end.seq + 10, end.seq + 11]


class FakeDelivery:
    """A paho ``MQTTMessageInfo`` stand-in: the test decides when the PUBACK arrives."""

    def __init__(self) -> None:
        self.acked = False

    def is_published(self) -> bool:
        return self.acked

    def wait_for_publish(self, timeout: float | None = None) -> None:
        pass


class FakeBroker:
    """Records what a runner publishes, with one delivery handle per message."""

    def __init__(self) -> None:
        self.sent: list[tuple[Message, FakeDelivery]] = []
        self._taken = 0

    def publish(self, message: Message) -> FakeDelivery:
        delivery = FakeDelivery()
        self.sent.append((message, delivery))
        return delivery

    def take(self) -> list[Message]:
        """What was published since the last call."""
        messages = [m for m, _ in self.sent[self._taken :]]
        self._taken = len(self.sent)
        return messages

    def ack(self, message: Message) -> None:
        """The PUBACK of the last publication of ``message``."""
        next(d for m, d in reversed(self.sent) if m == message).acked = True

    def ack_all(self) -> None:
        for _, delivery in self.sent:
            delivery.acked = True


def test_what_a_disconnected_station_kept_goes_first_on_reconnect_and_leaves_at_its_puback(
    tmp_path: Any,
) -> None:
    sim, clock = station()
    broker, store = FakeBroker(), StationStore(tmp_path, SID)
    runner = StationRunner(sim, broker.publish, store=store)
    runner.connected()
    runner.received(
        *encode(command("start", sent=clock.now(), session_id="s-1", target_soc=40))[:2]
    )
    runner.tick(clock.advance(5))
    broker.ack_all()
    runner.tick(clock.advance(5))
    assert len(sim.outbox) == 0  # Preparing and Charging were acknowledged
    broker.take()

    runner.disconnected()
    while sim.evse_info(EVSE).status is not EvseStatus.AVAILABLE:  # the session ends offline
        runner.tick(clock.advance(5))
    assert broker.take() == []  # nothing is published while disconnected
    kept = sim.outbox.messages()
    assert [type(m) for m in kept] == [MeterValues, StatusReport]
    assert kept[1].info.stop_reason is StopReason.SOC_REACHED  # type: ignore[union-attr]
    assert len(store.load()["outbox"]) == 2  # type: ignore[index]

    runner.connected()
    replay = broker.take()
    assert replay[:2] == kept  # first, in order, with their own seq
    assert isinstance(replay[2], StationBirth)
    assert [m.info.status for m in replay[3:]] == [EvseStatus.AVAILABLE] * 2  # type: ignore[union-attr]
    assert all(m.seq > kept[1].seq for m in replay[3:])  # type: ignore[union-attr]
    runner.tick(clock.now())
    assert sim.outbox.messages() == kept  # no PUBACK yet: still kept
    broker.ack(kept[0])  # the final meter values' PUBACK
    runner.tick(clock.now())
    assert sim.outbox.messages() == kept[1:]
    broker.ack_all()
    runner.tick(clock.now())
    assert len(sim.outbox) == 0
    assert store.load()["outbox"] == []  # type: ignore[index]


def test_plain_meter_values_and_replies_are_dropped_while_disconnected() -> None:
    sim, clock = charging()
    broker = FakeBroker()
    runner = StationRunner(sim, broker.publish)
    before = len(sim.outbox)
    runner.tick(clock.advance(60))  # never connected
    assert broker.take() == []
    assert len(sim.outbox) == before


def test_a_station_killed_during_the_replay_replays_again(tmp_path: Any) -> None:
    sim, clock = charging(target_soc=40)
    store = StationStore(tmp_path, SID)
    runner = StationRunner(sim, FakeBroker().publish, store=store)
    while sim.evse_info(EVSE).status is not EvseStatus.FINISHING:  # offline from the start
        runner.tick(clock.advance(5))
    kept = sim.outbox.messages()
    assert kept[-1].info.status is EvseStatus.FINISHING  # type: ignore[union-attr]
    runner.connected()  # replayed, no PUBACK: then kill -9 (no save, no shutdown)

    broker = FakeBroker()
    again = StationSimulator(descriptor(), clock=clock, seed=1, snapshot=store.load())
    StationRunner(again, broker.publish, store=store).connected()
    replay = broker.take()
    assert replay[: len(kept)] == kept  # the same messages, same epoch and seq
    birth = replay[len(kept)]
    assert isinstance(birth, StationBirth)
    assert birth.epoch > sim.epoch


def test_a_station_killed_mid_session_resumes_with_its_own_register(tmp_path: Any) -> None:
    sim, clock = charging(target_soc=60)
    store = StationStore(tmp_path, SID)
    broker = FakeBroker()
    runner = StationRunner(sim, broker.publish, store=store, save_every=1e9)
    runner.connected()
    run(sim, clock, 0)
    for _ in range(12):
        runner.tick(clock.advance(5))
    last = [m for m in broker.take() if isinstance(m, MeterValues)][-1]
    # kill -9: the file is whatever the last batch left (not fsynced, but renamed)
    again = StationSimulator(descriptor(), clock=clock, seed=1, snapshot=store.load())
    assert again.evse_info(EVSE).energy_wh == last.energy_wh
    assert again.evse_info(EVSE).session_energy_wh == last.energy_wh - 0  # one session so far
    out = run_until(again, clock, EvseStatus.FINISHING)
    end = [m for m in out if isinstance(m, StatusReport)][-1].info
    assert end.session_id == "s-1"
    assert end.session_energy_wh == end.energy_wh  # nothing lost, nothing counted twice
    assert end.soc == 60.0


def test_an_old_state_file_keeps_its_evse_ids(tmp_path: Any) -> None:
    sim, clock = charging()
    snapshot = sim.checkpoint()
    snapshot["evses"] = {f"st-1-{k}": v for k, v in snapshot["evses"].items()}
    del snapshot["epoch"], snapshot["outbox"]  # written by a version 1 simulator
    again = StationSimulator(descriptor(), clock=clock, seed=1, snapshot=snapshot)
    birth = again.online_messages()[0]
    assert isinstance(birth, StationBirth)
    assert [e.id for e in birth.station.evses] == ["st-1-1", "st-1-2"]
    assert again.evse_info("st-1-1").session_id == "s-1"
    fresh = StationSimulator(descriptor(), clock=clock, seed=1)
    assert [e.id for e in fresh.descriptor.evses] == ["1", "2"]


@pytest.mark.timeout(60)
def test_a_restarted_station_replays_its_outbox_before_its_birth_through_mosquitto(
    tmp_path: Any, mosquitto_url: str, mqtt_client: Any
) -> None:
    from simulator.mqtt_station import BrokerAddress, MqttStation

    csms = mqtt_client(mosquitto_url)
    csms.subscribe(all_station_topics_filter(SID))
    address = BrokerAddress.from_url(mosquitto_url)
    clock = ManualClock(time.time())
    store = StationStore(tmp_path, SID)
    first = MqttStation(StationSimulator(descriptor(), clock=clock, seed=1), address, store=store)
    first.start()
    assert first.wait_connected(10)
    first.runner.received(
        *encode(command("start", sent=clock.now(), session_id="s-1", target_soc=30))[:2]
    )
    first.runner.disconnected()  # as paho's on_disconnect would: the session ends offline
    while first.runner.simulator.evse_info(EVSE).status is not EvseStatus.FINISHING:
        first.tick(clock.advance(5))
    kept = first.runner.simulator.outbox.messages()
    assert kept[-1].info.stop_reason is StopReason.SOC_REACHED  # type: ignore[union-attr]
    first._client.loop_stop()  # kill -9: no offline message, no final save
    first._client.socket().close()  # type: ignore[union-attr]

    second = MqttStation(
        StationSimulator(descriptor(), clock=clock, seed=1, snapshot=store.load()),
        address,
        store=store,
    )
    second.start()
    try:
        assert second.wait_connected(10)
        assert second.runner.wait_delivered(10)  # every kept message got its PUBACK
        seen: list[Message] = []
        while not any(isinstance(m, StationBirth) and m.epoch == second.runner.simulator.epoch
                      for m in seen):  # fmt: skip
            received = csms.get(timeout=10)
            seen.append(parse(received.topic, received.payload))
        birth_at = len(seen) - 1
        replayed = [m for m in seen[:birth_at] if isinstance(m, StatusReport | MeterValues)]
        assert replayed[-len(kept) :] == kept  # the kept messages, just before the birth
        second.tick(clock.now())
        assert len(second.runner.simulator.outbox) == 0
        assert store.load()["outbox"] == []  # type: ignore[index]
    finally:
        second.stop()
