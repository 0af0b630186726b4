"""The station simulator, driven by hand (a ManualClock, no threads, no broker): the charging
physics, a session from start to the car leaving, and every command with its refusals."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from protocol import EvseStatus, MeterValues, StatusReport, StopReason
from simulator import Car, ManualClock, StationSimulator, charge
from simulator.physics import power_at
from tests.simulator_support import EVSE, charging, reply, run, run_until, send, station, statuses

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
