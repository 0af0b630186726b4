"""The station simulator, driven by hand (a ManualClock, no threads, no broker): a station
restarted from its file, the epoch of each start, wire timestamps on the wall clock, and the
expiry of commands."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Any

import pytest

from protocol import (
    CommandName,
    CommandRequest,
    CorrelationId,
    EvseId,
    EvseStatus,
    Message,
    MeterValues,
    StationBirth,
    StatusReport,
    encode,
)
from simulator import ManualClock, SimClock, StationRunner, StationSimulator, StationStore
from tests.simulator_support import (
    EVSE,
    LIFETIME_MS,
    OTHER,
    SID,
    charging,
    command,
    descriptor,
    reply,
    run,
    send,
    station,
    statuses,
)

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
