"""The station simulator, driven by hand: a ManualClock, no threads, no broker."""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    CorrelationId,
    EvseDescriptor,
    EvseId,
    EvseStatus,
    Message,
    MeterValues,
    StationBirth,
    StationDescriptor,
    StationId,
    StationOffline,
    StatusReport,
    StopReason,
    commands_topic,
    encode,
    state_topic,
)
from simulator import (
    Car,
    ManualClock,
    SimClock,
    StationRunner,
    StationSimulator,
    StationStore,
    charge,
)
from simulator.physics import power_at

SID = StationId("st-1")
EVSE = "st-1-1"
OTHER = "st-1-2"


def descriptor(power: float = 22_000.0, connector: str = "Type2") -> StationDescriptor:
    evses = tuple(
        EvseDescriptor(id=EvseId(f"st-1-{k}"), connector=connector, max_power_w=power)
        for k in (1, 2)
    )
    return StationDescriptor(id=SID, name="Test", lat=44.5, lon=11.3, evses=evses)


def station(seed: int = 1, **kwargs: Any) -> tuple[StationSimulator, ManualClock]:
    clock = ManualClock()
    return StationSimulator(descriptor(), clock=clock, seed=seed, **kwargs), clock


def send(sim: StationSimulator, command: str, evse: str = EVSE, **args: Any) -> list[Message]:
    request = CommandRequest(
        station_id=SID, id=CorrelationId("c-1"), command=CommandName(command),
        evse_id=EvseId(evse), args=args,
    )  # fmt: skip
    return sim.handle_command(request)


def reply(messages: list[Message]) -> CommandReply:
    return next(m for m in messages if isinstance(m, CommandReply))


def statuses(messages: list[Message]) -> list[EvseStatus]:
    return [m.info.status for m in messages if isinstance(m, StatusReport)]


def run(
    sim: StationSimulator, clock: ManualClock, seconds: float, step: float = 5.0
) -> list[Message]:
    out: list[Message] = []
    for _ in range(int(seconds / step)):
        clock.advance(step)
        out += sim.tick()
    return out


def run_until(
    sim: StationSimulator, clock: ManualClock, status: EvseStatus, evse: str = EVSE
) -> list[Message]:
    out: list[Message] = []
    for _ in range(20_000):
        clock.advance(5.0)
        out += sim.tick()
        if sim.evse_info(evse).status is status:
            return out
    raise AssertionError(f"never reached {status}")


def charging(target_soc: float | None = None) -> tuple[StationSimulator, ManualClock]:
    sim, clock = station()
    args: dict[str, Any] = {"session_id": "s-1"}
    if target_soc is not None:
        args["target_soc"] = target_soc
    assert reply(send(sim, "start", **args)).accepted
    run(sim, clock, 5)
    return sim, clock


# --------------------------------------------------------------------------- physics


def test_power_is_flat_up_to_80_percent_then_tapers_to_a_tenth_at_full() -> None:
    assert power_at(10, 50_000) == power_at(80, 50_000) == 50_000
    assert power_at(90, 50_000) == pytest.approx(27_500)
    assert power_at(100, 50_000) == pytest.approx(5_000)


def test_charging_stops_exactly_at_the_target() -> None:
    car = Car(capacity_wh=50_000, max_power_w=100_000)
    step = charge(car, 79.0, 150_000, 3600, target=80.0)
    assert step.reached_target
    assert step.soc == 80.0
    assert step.energy_wh == pytest.approx(500.0)
    assert step.elapsed_s == pytest.approx(18.0)


def test_a_car_charges_at_the_lower_of_evse_and_car_power() -> None:
    car = Car(capacity_wh=60_000, max_power_w=11_000)
    assert charge(car, 20, 150_000, 10, 100).average_power_w == pytest.approx(11_000)


# --------------------------------------------------------------------------- sessions


def test_start_goes_preparing_then_charging_with_the_given_session() -> None:
    sim, clock = station()
    out = send(sim, "start", session_id="s-1")
    assert reply(out).accepted
    assert reply(out).info == sim.evse_info(EVSE)
    assert sim.evse_info(EVSE).status is EvseStatus.PREPARING
    assert statuses(out) == [EvseStatus.PREPARING]
    clock.advance(0.5)
    ticked = sim.tick()
    assert statuses(ticked) == [EvseStatus.CHARGING]
    info = sim.evse_info(EVSE)
    assert info.session_id == "s-1"
    assert 10 <= (info.soc or 0) <= 60


def test_meter_values_come_every_interval_with_monotonic_energy_and_seq() -> None:
    sim, clock = charging()
    meters = [m for m in run(sim, clock, 60) if isinstance(m, MeterValues)]
    assert len(meters) == 12
    assert all(b.ts - a.ts == 5000 for a, b in itertools.pairwise(meters))
    assert all(b.energy_wh > a.energy_wh and b.seq > a.seq for a, b in itertools.pairwise(meters))
    assert {m.session_id for m in meters} == {"s-1"}


def test_power_tapers_above_80_percent_and_the_session_ends_at_full() -> None:
    sim, clock = charging()
    out = run_until(sim, clock, EvseStatus.FINISHING)
    meters = [m for m in out if isinstance(m, MeterValues)]
    high = [m for m in meters if (m.soc or 0) > 85]
    assert high
    assert all(b.power_w <= a.power_w for a, b in itertools.pairwise(high))
    assert high[-1].power_w < high[0].power_w / 2
    assert meters[-1].soc == 100.0
    finishing = [m for m in out if isinstance(m, StatusReport)][-1]
    assert finishing.info.stop_reason is StopReason.SOC_REACHED
    energies = [m.energy_wh for m in meters]
    assert energies == sorted(energies)


def test_session_stops_at_the_drivers_target_then_the_car_leaves() -> None:
    sim, clock = charging(target_soc=65)
    finish_at = clock.now()
    run_until(sim, clock, EvseStatus.FINISHING)
    assert sim.evse_info(EVSE).soc == 65.0
    finish_at = clock.now()
    out = run_until(sim, clock, EvseStatus.AVAILABLE)
    assert 10 <= clock.now() - finish_at <= 65
    available = [m for m in out if isinstance(m, StatusReport)][-1].info
    assert available.session_id is None
    assert available.session_energy_wh == 0
    assert available.energy_wh > 0  # the register keeps counting across sessions


def test_stop_finishes_remotely_and_the_evse_frees_up_after_the_unplug_delay() -> None:
    sim, clock = charging()
    run(sim, clock, 30)
    before = sim.evse_info(EVSE).energy_wh
    clock.advance(2)
    out = send(sim, "stop", session_id="s-1")
    assert reply(out).accepted
    assert isinstance(out[1], MeterValues)
    assert out[1].energy_wh > before
    assert statuses(out) == [EvseStatus.FINISHING]
    assert sim.evse_info(EVSE).stop_reason is StopReason.REMOTE
    run_until(sim, clock, EvseStatus.AVAILABLE)


# --------------------------------------------------------------------------- commands


def test_info_is_always_accepted_and_every_reply_carries_the_evse_info() -> None:
    sim, _ = station()
    for command in ("info", "stop", "start", "cancel_reservation", "maintenance"):
        answer = reply(send(sim, command))
        assert answer.info is not None
        assert answer.info.evse_id == EVSE
    assert reply(send(sim, "info")).accepted


def test_reserve_then_start_with_the_reservation() -> None:
    sim, _ = station()
    assert statuses(send(sim, "reserve", reservation_id="r-1")) == [EvseStatus.RESERVED]
    assert not reply(send(sim, "start", session_id="s-1")).accepted
    out = send(sim, "start", session_id="s-1", reservation_id="r-1")
    assert reply(out).accepted
    assert statuses(out) == [EvseStatus.PREPARING]
    assert sim.evse_info(EVSE).reservation_id is None


def test_cancel_reservation_and_reservation_expiry_free_the_evse() -> None:
    sim, clock = station()
    send(sim, "reserve", reservation_id="r-1")
    assert statuses(send(sim, "cancel_reservation", reservation_id="r-1")) == [EvseStatus.AVAILABLE]
    expires = int((clock.now() + 60) * 1000)
    send(sim, "reserve", reservation_id="r-2", expires_at=expires)
    assert statuses(run(sim, clock, 55)) == []
    assert statuses(run(sim, clock, 10)) == [EvseStatus.AVAILABLE]


def _on_maintenance(sim: StationSimulator, clock: ManualClock) -> None:
    send(sim, "maintenance", enabled=True)


def _charging_now(sim: StationSimulator, clock: ManualClock) -> None:
    send(sim, "start", session_id="s-1")
    run(sim, clock, 5)


def _finishing(sim: StationSimulator, clock: ManualClock) -> None:
    _charging_now(sim, clock)
    send(sim, "stop")


def _reserved(sim: StationSimulator, clock: ManualClock) -> None:
    send(sim, "reserve", reservation_id="r-1")


def _nothing(sim: StationSimulator, clock: ManualClock) -> None:
    pass


@pytest.mark.parametrize(
    ("setup", "command", "args", "reason"),
    [
        (_on_maintenance, "start", {"session_id": "s-2"}, "maintenance"),
        (_charging_now, "start", {"session_id": "s-2"}, "busy"),
        (_finishing, "start", {"session_id": "s-2"}, "finishing"),
        (_reserved, "start", {"session_id": "s-2"}, "reserved"),
        (_reserved, "start", {"session_id": "s-2", "reservation_id": "r-9"}, "reserved"),
        (_nothing, "stop", {}, "no_session"),
        (_finishing, "stop", {}, "no_session"),
        (_charging_now, "stop", {"session_id": "s-9"}, "session_mismatch"),
        (_reserved, "reserve", {"reservation_id": "r-2"}, "reserved"),
        (_charging_now, "reserve", {"reservation_id": "r-2"}, "busy"),
        (_nothing, "cancel_reservation", {}, "not_reserved"),
        (_reserved, "cancel_reservation", {"reservation_id": "r-2"}, "reservation_mismatch"),
        (_nothing, "start", {}, "invalid_command"),
        (_nothing, "start", {"session_id": "s-1", "target_soc": 101}, "invalid_command"),
        (_nothing, "maintenance", {"enabled": "yes"}, "invalid_command"),
        (_nothing, "reserve", {}, "invalid_command"),
    ],
)
def test_commands_are_refused_with_the_protocol_reason(
    setup: Any, command: str, args: dict[str, Any], reason: str
) -> None:
    sim, clock = station()
    setup(sim, clock)
    before = sim.evse_state(EVSE)
    answer = reply(send(sim, command, **args))
    assert (answer.accepted, answer.reason) == (False, reason)
    assert answer.info == sim.evse_info(EVSE)
    assert sim.evse_state(EVSE) == before


def test_a_command_for_an_unknown_evse_is_refused_without_info() -> None:
    sim, _ = station()
    answer = reply(send(sim, "info", evse="st-1-9"))
    assert (answer.accepted, answer.reason, answer.info) == (False, "unknown_evse", None)


def test_maintenance_takes_an_idle_or_reserved_evse_out_and_back() -> None:
    sim, _ = station()
    send(sim, "reserve", reservation_id="r-1")
    assert statuses(send(sim, "maintenance", enabled=True)) == [EvseStatus.UNAVAILABLE]
    info = sim.evse_info(EVSE)
    assert info.maintenance
    assert info.reservation_id is None
    assert statuses(send(sim, "maintenance", enabled=False)) == [EvseStatus.AVAILABLE]


def test_maintenance_while_charging_waits_for_the_session_to_end() -> None:
    sim, clock = charging(target_soc=40)
    out = send(sim, "maintenance", enabled=True)
    assert reply(out).accepted
    assert statuses(out) == [EvseStatus.CHARGING]
    assert sim.evse_info(EVSE).maintenance_pending
    out = run_until(sim, clock, EvseStatus.UNAVAILABLE)
    assert statuses(out) == [EvseStatus.FINISHING, EvseStatus.UNAVAILABLE]
    info = sim.evse_info(EVSE)
    assert info.maintenance
    assert not info.maintenance_pending


def test_disabling_maintenance_while_charging_clears_the_pending_flag() -> None:
    sim, clock = charging(target_soc=40)
    send(sim, "maintenance", enabled=True)
    send(sim, "maintenance", enabled=False)
    assert not sim.evse_info(EVSE).maintenance_pending
    out = run_until(sim, clock, EvseStatus.AVAILABLE)
    assert statuses(out) == [EvseStatus.FINISHING, EvseStatus.AVAILABLE]


# --------------------------------------------------------------------------- wire


def test_online_messages_are_the_birth_then_every_evse_status() -> None:
    sim, clock = station()
    out = sim.online_messages()
    assert isinstance(out[0], StationBirth)
    assert out[0].station == descriptor()
    assert [m.info.evse_id for m in out[1:] if isinstance(m, StatusReport)] == [EVSE, OTHER]
    assert all(m.ts == int(clock.now() * 1000) for m in out if isinstance(m, StatusReport))
    topic, _, retain = encode(sim.last_will())
    assert (topic, retain) == (state_topic(SID), True)
    assert sim.offline_message() == StationOffline(station_id=SID, ts=out[0].ts, reason="shutdown")


def test_a_command_on_the_commands_topic_is_handled_from_raw_bytes() -> None:
    sim, _ = station()
    request = CommandRequest(station_id=SID, id=CorrelationId("c-9"), command=CommandName.INFO,
                             evse_id=EvseId(EVSE))  # fmt: skip
    out = sim.handle_payload(*encode(request)[:2])
    assert reply(out).id == "c-9"
    assert reply(out).accepted


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=200))
def test_a_malformed_command_payload_is_dropped(payload: bytes) -> None:
    sim, _ = station()
    assert sim.handle_payload(commands_topic(SID), payload) == []


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        ("smartcharge/v1/stations/st-1/commands", {"v": 1, "id": "c", "command": "dance",
                                                   "evse_id": EVSE}),
        ("smartcharge/v1/stations/st-1/commands", {"v": 2, "id": "c", "command": "info",
                                                   "evse_id": EVSE}),
        ("smartcharge/v1/stations/st-2/commands", {"v": 1, "id": "c", "command": "info",
                                                   "evse_id": EVSE}),
        ("smartcharge/v1/stations/st-1/evses/st-1-1/status", {"v": 1}),
    ],
)  # fmt: skip
def test_foreign_topics_and_bad_commands_are_ignored(topic: str, body: dict[str, Any]) -> None:
    sim, _ = station()
    assert sim.handle_payload(topic, json.dumps(body).encode()) == []


# --------------------------------------------------------------------------- determinism


def _scripted_run(seed: int) -> list[tuple[str, bytes, bool]]:
    sim, clock = station(seed=seed)
    out = sim.online_messages() + send(sim, "start", session_id="s-1", target_soc=90)
    out += send(sim, "start", evse=OTHER, session_id="s-2")
    out += run(sim, clock, 600)
    out += send(sim, "stop", evse=OTHER) + run_until(sim, clock, EvseStatus.AVAILABLE, OTHER)
    return [encode(m) for m in out]


def test_the_same_seed_and_clock_replay_the_same_messages() -> None:
    first = _scripted_run(7)
    assert _scripted_run(7) == first
    assert _scripted_run(8) != first


def test_seq_is_monotonic_across_all_evses() -> None:
    sim, clock = charging()
    out = send(sim, "start", evse=OTHER, session_id="s-2") + run(sim, clock, 120)
    seqs = [m.seq for m in out if isinstance(m, StatusReport | MeterValues)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


# --------------------------------------------------------------------------- persistence


def test_a_restarted_station_resumes_from_its_file(tmp_path: Any) -> None:
    sim, clock = charging(target_soc=90)
    send(sim, "maintenance", evse=OTHER, enabled=True)
    run(sim, clock, 60)
    store = StationStore(tmp_path, SID)
    store.save(sim.checkpoint())
    assert json.loads(store.path.read_text())["station_id"] == SID
    assert [p.name for p in store.directory.iterdir()] == ["st-1.json"]

    again = StationSimulator(descriptor(), clock=clock, seed=1, snapshot=store.load())
    assert again.evse_info(EVSE) == sim.evse_info(EVSE)
    assert again.evse_info(OTHER) == sim.evse_info(OTHER)
    clock.advance(5)
    meters = [m for m in again.tick() if isinstance(m, MeterValues)]
    assert meters
    assert meters[0].seq > sim.seq
    assert meters[0].energy_wh > sim.evse_info(EVSE).energy_wh


def test_a_finishing_evse_still_unplugs_after_a_restart(tmp_path: Any) -> None:
    sim, clock = charging()
    send(sim, "stop")
    store = StationStore(tmp_path, SID)
    store.save(sim.checkpoint())
    again = StationSimulator(descriptor(), clock=clock, seed=1, snapshot=store.load())
    assert statuses(run(again, clock, 65)) == [EvseStatus.AVAILABLE]


def test_the_runner_saves_before_it_publishes_and_fsyncs_progress_lazily(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, clock = station()
    published: list[Message] = []
    real_time = [0.0]
    store = StationStore(tmp_path, SID)
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])

    def publish(message: Message) -> None:
        if isinstance(message, MeterValues):  # write-ahead: the file already has this value
            saved = store.load()["evses"][EVSE]  # type: ignore[index]
            assert saved["energy_wh"] == pytest.approx(message.energy_wh, abs=0.05)
        published.append(message)

    runner = StationRunner(sim, publish, store=store, save_every=2.0,
                           monotonic=lambda: real_time[0])  # fmt: skip
    runner.connected()
    assert store.load() is not None
    request = CommandRequest(station_id=SID, id=CorrelationId("c"), command=CommandName.START,
                             evse_id=EvseId(EVSE), args={"session_id": "s-1"})  # fmt: skip
    runner.received(*encode(request)[:2])
    assert store.load()["evses"][EVSE]["status"] == "Preparing"  # type: ignore[index]
    runner.tick(clock.advance(5))
    runner.tick(clock.advance(5))
    fsynced = len(fsyncs)
    runner.tick(clock.advance(5))
    assert len(fsyncs) == fsynced  # a meter sample alone is saved, but not fsynced
    real_time[0] = 3.0
    runner.tick(clock.advance(5))
    assert len(fsyncs) > fsynced  # ... until save_every has passed
    assert any(isinstance(m, MeterValues) for m in published)
    assert isinstance(published[0], StationBirth)


def test_a_reservation_lasts_as_long_in_real_time_whatever_the_speed() -> None:
    fast = SimClock(speed=60.0, start=1_700_000_000.0)
    sim = StationSimulator(descriptor(), clock=fast, seed=1)
    sent = 1_800_000_000_000  # the CSMS's clock, far from the station's simulated one
    args = {"reservation_id": "res-1", "expires_at": sent + 900_000}
    request = CommandRequest(
        station_id=SID, id=CorrelationId("r"), command=CommandName.RESERVE,
        evse_id=EvseId(EVSE), ts=sent, args=args,
    )  # fmt: skip
    sim.handle_command(request)
    assert sim.evse_state(EVSE).status is EvseStatus.RESERVED
    expires = sim.evse_state(EVSE).reservation_expires_at
    assert expires is not None
    # 15 real minutes are 15 x 60 simulated minutes at speed 60, from the station's own now.
    assert expires / 1000 - fast.now() == pytest.approx(900 * 60, abs=5)
