"""The station simulator, driven by hand: a ManualClock, no threads, no broker (but one
test against a real Mosquitto, for the outbox replay and its PUBACKs)."""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
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
    all_station_topics_filter,
    commands_topic,
    encode,
    parse,
    state_topic,
)
from simulator import (
    Car,
    Keep,
    ManualClock,
    Outbox,
    SimClock,
    StationRunner,
    StationSimulator,
    StationStore,
    charge,
)
from simulator.outbox import keep_levels
from simulator.physics import power_at

SID = StationId("st-1")
EVSE = "1"
OTHER = "2"
LIFETIME_MS = 10_000  # the CSMS's default command time-out


def descriptor(power: float = 22_000.0, connector: str = "Type2") -> StationDescriptor:
    evses = tuple(
        EvseDescriptor(id=EvseId(str(k)), connector=connector, max_power_w=power) for k in (1, 2)
    )
    return StationDescriptor(id=SID, name="Test", lat=44.5, lon=11.3, evses=evses)


def station(seed: int = 1, **kwargs: Any) -> tuple[StationSimulator, ManualClock]:
    clock = ManualClock()
    return StationSimulator(descriptor(), clock=clock, seed=seed, **kwargs), clock


_command_ids = itertools.count(1)


def command(
    name: str, evse: str = EVSE, *, sent: float = 1_700_000_000.0, **args: Any
) -> CommandRequest:
    """A command as the CSMS sends it at ``sent`` (seconds), expiring 10 s later; a new id."""
    return CommandRequest(
        station_id=SID, id=CorrelationId(f"c-{next(_command_ids)}"), command=CommandName(name),
        evse_id=EvseId(evse),
        ts=int(sent * 1000), expires_at=int(sent * 1000) + LIFETIME_MS, args=args,
    )  # fmt: skip


def send(sim: StationSimulator, name: str, evse: str = EVSE, **args: Any) -> list[Message]:
    """A command sent just now (on the station's wall clock, which is its clock here)."""
    return sim.handle_command(command(name, evse, sent=sim_wall_now(sim), **args))


def sim_wall_now(sim: StationSimulator) -> float:
    return sim.offline_message().ts / 1000


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
    answer = reply(send(sim, "info", evse="9"))
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
    sim, clock = station()
    request = replace(command("info", sent=clock.now()), id=CorrelationId("c-9"))
    out = sim.handle_payload(*encode(request)[:2])
    assert reply(out).id == "c-9"
    assert reply(out).accepted


def test_a_command_delivered_twice_runs_and_is_answered_once() -> None:
    sim, clock = station()
    start = command("start", sent=clock.now(), session_id="s-1")
    first = sim.handle_command(start)
    assert reply(first).accepted
    assert sim.handle_command(start) == []  # QoS 1 redelivery: no second run, no second reply
    stop = command("stop", sent=clock.now())
    assert reply(sim.handle_command(stop)).accepted
    assert sim.handle_command(start) == []  # still remembered: the session does not restart
    assert sim.evse_info(EVSE).session_id in (None, "s-1")
    assert sim.evse_info(EVSE).status is not EvseStatus.PREPARING


def test_a_retained_command_is_ignored() -> None:
    sim, clock = station()
    topic, payload, _ = encode(command("start", sent=clock.now(), session_id="s-1"))
    assert sim.handle_payload(topic, payload, retained=True) == []
    assert sim.evse_info(EVSE).status is EvseStatus.AVAILABLE


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=200))
def test_a_malformed_command_payload_is_dropped(payload: bytes) -> None:
    sim, _ = station()
    assert sim.handle_payload(commands_topic(SID), payload) == []


FAR = 4_000_000_000_000  # an expires_at far in the future


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        ("smartcharge/v2/stations/st-1/commands", {"v": 2, "id": "c", "command": "dance",
                                                   "evse_id": EVSE, "expires_at": FAR}),
        ("smartcharge/v2/stations/st-1/commands", {"v": 1, "id": "c", "command": "info",
                                                   "evse_id": EVSE, "expires_at": FAR}),
        ("smartcharge/v2/stations/st-1/commands", {"v": 2, "id": "c", "command": "info",
                                                   "evse_id": EVSE}),  # no expires_at
        ("smartcharge/v1/stations/st-1/commands", {"v": 1, "id": "c", "command": "info",
                                                   "evse_id": EVSE}),
        ("smartcharge/v2/stations/st-2/commands", {"v": 2, "id": "c", "command": "info",
                                                   "evse_id": EVSE, "expires_at": FAR}),
        ("smartcharge/v2/stations/st-1/evses/1/status", {"v": 2}),
    ],
)  # fmt: skip
def test_foreign_topics_and_bad_commands_are_ignored(topic: str, body: dict[str, Any]) -> None:
    sim, _ = station()
    assert sim.handle_payload(topic, json.dumps(body).encode()) == []


# --------------------------------------------------------------------------- determinism


def _scripted_run(seed: int) -> list[tuple[str, bytes, bool]]:
    global _command_ids
    _command_ids = itertools.count(1)  # the same command ids in every run
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
    assert again.epoch > sim.epoch
    assert again.evse_info(EVSE) == sim.evse_info(EVSE)
    assert again.evse_info(OTHER) == sim.evse_info(OTHER)
    clock.advance(5)
    meters = [m for m in again.tick() if isinstance(m, MeterValues)]
    assert meters
    assert meters[0].seq > sim.seq
    assert meters[0].epoch == again.epoch
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

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)

    def publish(message: Message) -> None:
        if isinstance(message, MeterValues):  # write-ahead: the file already has this value
            saved = store.load()["evses"][EVSE]  # type: ignore[index]
            assert saved["energy_wh"] == pytest.approx(message.energy_wh, abs=0.05)
        published.append(message)

    runner = StationRunner(sim, publish, store=store, save_every=2.0,
                           monotonic=lambda: real_time[0])  # fmt: skip
    runner.connected()
    assert store.load() is not None
    runner.received(*encode(command("start", sent=clock.now(), session_id="s-1"))[:2])
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
    sent = 1_800_000_000_000  # the CSMS's clock, far from the station's simulated one
    args = {"reservation_id": "res-1", "expires_at": sent + 900_000}
    request = CommandRequest(
        station_id=SID, id=CorrelationId("r"), command=CommandName.RESERVE,
        evse_id=EvseId(EVSE), ts=sent, expires_at=sent + LIFETIME_MS, args=args,
    )  # fmt: skip
    sim = StationSimulator(descriptor(), clock=fast, wall_clock=ManualClock(sent / 1000), seed=1)
    sim.handle_command(request)
    assert sim.evse_state(EVSE).status is EvseStatus.RESERVED
    expires = sim.evse_state(EVSE).reservation_expires_at
    assert expires is not None
    # 15 real minutes are 15 x 60 simulated minutes at speed 60, from the station's own now.
    assert expires / 1000 - fast.now() == pytest.approx(900 * 60, abs=5)


# --------------------------------------------------------------------------- version 2: epochs


def test_every_start_takes_an_epoch_greater_than_the_last_saved_one(tmp_path: Any) -> None:
    sim, clock = station()
    store = StationStore(tmp_path, SID)
    store.save(sim.checkpoint())
    assert sim.epoch == int(clock.now() * 1000)  # the wall clock in ms, on a first start
    again = StationSimulator(descriptor(), clock=clock, seed=1, snapshot=store.load())
    assert again.epoch == sim.epoch + 1  # the clock did not move: still greater
    store.save(again.checkpoint())
    later = ManualClock(clock.now() + 3600)
    third = StationSimulator(descriptor(), clock=later, seed=1, snapshot=store.load())
    assert third.epoch == int(later.now() * 1000)
    behind = ManualClock(clock.now() - 86_400)  # a wall clock set back a day
    store.save(third.checkpoint())
    fourth = StationSimulator(descriptor(), clock=behind, seed=1, snapshot=store.load())
    assert fourth.epoch == third.epoch + 1


def test_the_birth_and_every_status_and_meter_carry_the_epoch() -> None:
    sim, clock = station()
    out = sim.online_messages() + send(sim, "start", session_id="s-1") + run(sim, clock, 30)
    stamped = [m for m in out if isinstance(m, StationBirth | StatusReport | MeterValues)]
    assert {type(m) for m in stamped} == {StationBirth, StatusReport, MeterValues}
    assert {m.epoch for m in stamped} == {sim.epoch}


def test_the_epoch_is_saved_before_any_message_carries_it(tmp_path: Any) -> None:
    sim, _ = station()
    store = StationStore(tmp_path, SID)
    epochs: list[int] = []

    def publish(message: Message) -> None:
        epochs.append(store.load()["epoch"])  # type: ignore[index]

    StationRunner(sim, publish, store=store).connected()
    assert len(epochs) == 3  # the birth and two statuses
    assert set(epochs) == {sim.epoch}


# --------------------------------------------------------------------------- version 2: time


def test_wire_timestamps_follow_the_wall_clock_not_the_accelerated_one() -> None:
    simulated, wall = ManualClock(), ManualClock()
    sim = StationSimulator(descriptor(), clock=simulated, wall_clock=wall, seed=1)
    started = wall.now()
    sim.handle_command(command("start", sent=started, session_id="s-1"))
    out: list[Message] = []
    for _ in range(60):  # 10 simulated minutes in 10 real seconds: --speed 60
        simulated.advance(10)
        wall.advance(10 / 60)
        out += sim.tick()
    meters = [m for m in out if isinstance(m, MeterValues)]
    assert len(meters) >= 100  # the physics ran on the simulated clock
    assert all(int(started * 1000) <= m.ts <= int(wall.now() * 1000) for m in out)
    birth = next(m for m in sim.online_messages() if isinstance(m, StationBirth))
    assert birth.ts == int(wall.now() * 1000)


def test_a_fleet_at_speed_stamps_real_time_even_when_its_simulation_runs_ahead(
    tmp_path: Any,
) -> None:
    from simulator.fleet import _build_stations, build_parser
    from simulator.mqtt_station import BrokerAddress

    ahead = StationStore(tmp_path, SID)
    ahead.save({**station()[0].checkpoint(), "saved_at": time.time() + 86_400})
    args = build_parser().parse_args(["--speed", "60", "--data-dir", str(tmp_path)])
    before = int(time.time() * 1000)
    stations, clock = _build_stations(
        args, [descriptor()], BrokerAddress("127.0.0.1", 1).settings()
    )
    birth = stations[0].runner.simulator.online_messages()[0]
    after = int(time.time() * 1000)
    assert clock.now() > time.time() + 86_000  # simulated time resumed a day ahead
    assert isinstance(birth, StationBirth)
    assert before <= birth.ts <= after
    assert before <= birth.epoch <= after


# --------------------------------------------------------------------------- version 2: expiry


def test_an_expired_command_is_not_carried_out_and_is_answered_expired() -> None:
    sim, clock = station()
    late = command("start", sent=clock.now() - 11, session_id="s-1")  # expired 1 s ago
    out = sim.handle_command(late)
    answer = reply(out)
    assert (answer.accepted, answer.reason) == (False, "expired")
    assert answer.info == sim.evse_info(EVSE)
    assert statuses(out) == []
    assert sim.evse_info(EVSE).status is EvseStatus.AVAILABLE


def test_a_command_runs_up_to_its_expiry_on_the_wall_clock() -> None:
    simulated, wall = ManualClock(), ManualClock()
    sim = StationSimulator(descriptor(), clock=simulated, wall_clock=wall, seed=1)
    simulated.advance(3600)  # the simulation may run far ahead: it does not count
    request = command("start", sent=wall.now(), session_id="s-1")
    wall.advance(LIFETIME_MS / 1000)  # exactly at expires_at: still in time
    assert reply(sim.handle_command(request)).accepted
    wall.advance(0.001)
    stale = replace(command("stop", sent=wall.now() - 10.001), id=CorrelationId("c-2"))
    assert reply(sim.handle_command(stale)).reason == "expired"
    assert sim.evse_info(EVSE).status is EvseStatus.CHARGING  # not stopped


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
