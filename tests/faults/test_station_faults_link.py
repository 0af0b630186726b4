"""Faults on the station's side of the link: a cut cable, and a station killed mid-session.

Real Mosquitto; the CSMS runs in this process (its actors, its MQTT link in a child process),
connected straight to the broker; each station is ``python -m simulator.fleet`` in its own
process, so it can be killed or frozen, and, where a network fault is the point, it reaches
the broker through :class:`~tests.faults.proxy.FaultProxy`. Every figure a test measures is
printed (run with ``-s`` to see them).

What the simulator does after ``kill -9`` (test 2): it resumes from its JSON file (status,
session, energy registers), takes a new boot epoch, and carries the session on with the same
session id; the energy it had counted but not yet saved when it died is lost to both sides,
since it saves before it publishes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from protocol import CommandName, EvseStatus, SessionId, StartArgs, StopArgs
from protocol.mqtt_settings import BACKOFF_MAX_S
from storage import open_storage
from tests.brokers import parse_mqtt_url
from tests.faults.proxy import FaultProxy
from tests.faults.station_faults_support import KEEPALIVE, evse_in_file, running_csms
from tests.support import FleetProcess, FleetWatcher

pytestmark = [pytest.mark.integration]
BROKER_CLOCK_SLACK_S = 3.0
"""What Mosquitto 2.0.11 adds to 1.5 x keepalive before it publishes the will. Its keepalive
check runs on a whole-second clock (``last_msg_in`` and ``now`` are ``time_t`` seconds, a
client expires in the slot ``last_msg_in + keepalive*3/2``, checked once ``now`` has passed
it) and its loop wakes on timers not aligned to those seconds: measured here with a bare
paho client whose last packet left at the moment of the cut, the will came 3.76-5.62 s
after the cut for a 2 s keepalive (6 runs), i.e. up to 1.5 x keepalive + 2.6 s. The
"1.5 x keepalive + 1 s" of the issue does not hold on this broker; this bound does."""
SESSION_STATUSES = {"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE"}


def charging_in(watcher: FleetWatcher, evse_key: str, session_id: str) -> bool:
    state = watcher.latest.get(evse_key)
    return (
        state is not None
        and state.station_online
        and state.status is EvseStatus.CHARGING
        and state.session_id == session_id
    )


def energy_rises_past(watcher: FleetWatcher, evse_key: str, wh: float) -> bool:
    state = watcher.latest.get(evse_key)
    return state is not None and state.energy_wh > wh


# -- 1. a cut cable ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_blackholed_station_goes_offline_within_the_keepalive_rule_and_reconciles_after(
    mosquitto_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    keys = ["bh-001.1", "bh-001.2"]
    fleet_dir = tmp_path / "fleet"
    with (
        running_csms(mosquitto_url) as (system, watcher),
        FaultProxy(*parse_mqtt_url(mosquitto_url)) as proxy,
        FleetProcess(
            proxy.url,
            fleet_dir,
            stations=1,
            evses=2,
            speed=1.0,
            prefix="bh",
            keepalive=KEEPALIVE,
            meter_interval=1.0,
        ),
    ):
        watcher.wait_for(
            lambda: all(watcher.status_is(k, "Available")() for k in keys), "bh-001 Available", 30
        )
        session = SessionId("bh-session")
        outcome = system.command(
            keys[0], CommandName.START, StartArgs(session_id=session, target_soc=100)
        )
        assert outcome.accepted, outcome.reason
        watcher.wait_for(lambda: charging_in(watcher, keys[0], session), "bh-001.1 Charging")
        charged_before = watcher.state(keys[0]).energy_wh

        proxy.blackhole()
        cut_at = time.monotonic()
        watcher.wait_for(
            lambda: all(watcher.status_is(k, "Offline")() for k in keys),
            "both EVSEs Offline behind the cut cable",
            1.5 * KEEPALIVE + 10,
        )
        offline_s = time.monotonic() - cut_at
        seen_station = system.view.station("bh-001")
        assert seen_station is not None
        assert not seen_station.online

        proxy.pass_through()
        restored_at = time.monotonic()
        watcher.wait_for(
            lambda: (
                charging_in(watcher, keys[0], session)
                and watcher.status_is(keys[1], "Available")()
                and watcher.state(keys[0]).energy_wh >= charged_before
            ),
            "the CSMS to show the station's own state again",
            2 * KEEPALIVE + BACKOFF_MAX_S + 15,
        )
        reconcile_s = time.monotonic() - restored_at

        # The CSMS says what the station says (its file is saved before anything is published).
        for key in keys:
            seen, own = watcher.state(key), evse_in_file(fleet_dir, key)
            assert (seen.status, seen.session_id) == (own["status"], own.get("session_id")), key
        reconnections = proxy.accepted - 1

    print(
        f"\nblackhole: keepalive {KEEPALIVE} s; Offline at the CSMS {offline_s:.2f} s after the"
        f" cut (bound {1.5 * KEEPALIVE + BROKER_CLOCK_SLACK_S:.1f} s); reconciled"
        f" {reconcile_s:.2f} s after the cable came back ({reconnections} reconnection(s));"
        f" test {time.monotonic() - began:.1f} s"
    )
    assert offline_s <= 1.5 * KEEPALIVE + BROKER_CLOCK_SLACK_S
    assert reconcile_s <= 2 * KEEPALIVE + BACKOFF_MAX_S + 2.0


# -- 2. kill -9 mid-session --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_station_killed_mid_session_resumes_it_and_the_csms_records_the_energy_it_counted(
    mosquitto_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    key = "kl-001.1"
    fleet_dir, meter_s = tmp_path / "fleet", 5.0
    storage = open_storage(None, data_dir=tmp_path / "csms")
    interval_wh = 22_000.0 * meter_s / 3600  # at most, at the simulator's default 22 kW

    def fleet() -> FleetProcess:  # the same station, on the same data dir, each time
        return FleetProcess(
            mosquitto_url,
            fleet_dir,
            stations=1,
            evses=1,
            speed=10.0,
            prefix="kl",
            keepalive=KEEPALIVE,
            meter_interval=meter_s,
        )

    try:
        with running_csms(mosquitto_url, storage=storage) as (system, watcher):
            session = SessionId("kl-session")
            with fleet() as first:
                watcher.wait_for(watcher.status_is(key, "Available"), "kl-001.1 Available", 30)
                outcome = system.command(
                    key, CommandName.START, StartArgs(session_id=session, target_soc=100)
                )
                assert outcome.accepted, outcome.reason
                watcher.wait_for(lambda: charging_in(watcher, key, session), "Charging")
                started_wh = watcher.state(key).energy_wh
                watcher.wait_for(
                    lambda: energy_rises_past(watcher, key, started_wh + 3 * interval_wh),
                    "three meter intervals counted",
                )
                seen_before_kill = watcher.state(key)
                killed_at = time.monotonic()
                first.kill()  # SIGKILL: no goodbye, no last save
            watcher.wait_for(watcher.status_is(key, "Offline"), "Offline after the kill", 10)
            offline_s = time.monotonic() - killed_at
            saved = evse_in_file(fleet_dir, key)
            # Saved before published: the file holds at least what the CSMS was told (which
            # the station rounds to 0.1 Wh on the wire).
            assert saved["session_id"] == session
            assert round(float(saved["energy_wh"]), 1) >= seen_before_kill.energy_wh

            with fleet() as second:
                restarted_at = time.monotonic()
                watcher.wait_for(
                    lambda: charging_in(watcher, key, session), "the session resumed", 30
                )
                resumed_s = time.monotonic() - restarted_at
                resumed = watcher.state(key)
                watcher.wait_for(
                    lambda: energy_rises_past(watcher, key, resumed.energy_wh + 3 * interval_wh),
                    "three more meter intervals counted after the restart",
                )
                outcome = system.command(key, CommandName.STOP, StopArgs(session_id=session))
                assert outcome.accepted, outcome.reason
                watcher.wait_for(
                    lambda: watcher.state(key).status.value not in SESSION_STATUSES,
                    "the session ended",
                )
                assert second.terminate() == 0  # a clean shutdown: the final save
            watcher.wait_for(watcher.status_is(key, "Offline"), "Offline after the shutdown")
            max_power_w = watcher.state(key).descriptor.max_power_w
        # the CSMS stopped: its recorders have flushed
        row = storage.sessions.get(session)
    finally:
        storage.close()

    own = evse_in_file(fleet_dir, key)
    assert row is not None
    assert not row.is_open, row
    assert row.end_reason == "Remote", row
    if own.get("session_id") == session:  # Finishing: the station still shows the session
        counted = float(own["session_energy_wh"])
    else:  # unplugged since: the register has not moved after the session
        counted = float(own["energy_wh"]) - row.start_energy_wh
    one_interval_wh = max_power_w * meter_s / 3600
    error_wh = abs(row.energy_wh - counted)
    print(
        f"\nstation kill -9: Offline at the CSMS {offline_s:.2f} s after the kill; the restarted"
        f" station resumed session {session} in {resumed_s:.2f} s (epoch"
        f" {seen_before_kill.epoch} -> {resumed.epoch}); energy CSMS {row.energy_wh:.1f} Wh vs"
        f" station {counted:.1f} Wh (error {error_wh:.2f} Wh, one interval {one_interval_wh:.1f}"
        f" Wh); test {time.monotonic() - began:.1f} s"
    )
    assert resumed.epoch > seen_before_kill.epoch
    # it went on charging after the restart, and nothing counted before the kill was lost
    assert row.energy_wh >= seen_before_kill.session_energy_wh + 3 * one_interval_wh - 0.5
    assert error_wh <= one_interval_wh + 0.5
