"""Faults on the station's side of the link: a cut cable, a station killed mid-session, a
station frozen while a start is on its way, and a start to a station that is gone.

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

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import argon2
import falcon.testing
import pykka
import pytest

from actors.evse_state import EvseState
from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from gateway.auth import LocalAuthenticator
from protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    SessionId,
    StartArgs,
    StationBirth,
    StationDescriptor,
    StationId,
    StationOffline,
    StatusReport,
    StopArgs,
    commands_topic,
    encode,
    parse,
    replies_topic,
)
from protocol.mqtt_settings import BACKOFF_MAX_S
from storage import DuplicateError, Storage, open_storage
from storage.errors import CommandTimeoutError
from tests.brokers import MqttClientFactory, parse_mqtt_url
from tests.faults.proxy import FaultProxy
from tests.support import FleetProcess, FleetWatcher

pytestmark = [pytest.mark.integration]

KEEPALIVE = 2
"""The stations' MQTT keepalive, s: the broker gives up on a silent one after 1.5 x this."""
BROKER_CLOCK_SLACK_S = 3.0
"""What Mosquitto 2.0.11 adds to 1.5 x keepalive before it publishes the will. Its keepalive
check runs on a whole-second clock (``last_msg_in`` and ``now`` are ``time_t`` seconds, a
client expires in the slot ``last_msg_in + keepalive*3/2``, checked once ``now`` has passed
it) and its loop wakes on timers not aligned to those seconds: measured here with a bare
paho client whose last packet left at the moment of the cut, the will came 3.76-5.62 s
after the cut for a 2 s keepalive (6 runs), i.e. up to 1.5 x keepalive + 2.6 s. The
"1.5 x keepalive + 1 s" of the issue does not hold on this broker; this bound does."""
SESSION_STATUSES = {"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE"}


@contextmanager
def running_csms(
    url: str, *, storage: Storage | None = None, command_timeout_s: float = 10.0
) -> Iterator[tuple[CsmsSystem, FleetWatcher]]:
    """An in-process CSMS on ``url`` whose events a :class:`FleetWatcher` keeps."""
    watcher = FleetWatcher()
    system = CsmsSystem(
        CsmsConfig(
            mqtt_url=url,
            storage=storage,
            listeners=(watcher,),
            command_timeout_s=command_timeout_s,
        )
    )
    system.start(wait_connected_s=10)
    assert system.mqtt_connected.is_set()
    try:
        yield system, watcher
    finally:
        system.stop()
        pykka.ActorRegistry.stop_all()


def station_file(fleet_dir: Path, station_id: str) -> dict[str, Any]:
    """The station's own account of itself: ``<data-dir>/stations/<id>.json``."""
    data: dict[str, Any] = json.loads((fleet_dir / "stations" / f"{station_id}.json").read_text())
    return data


def evse_in_file(fleet_dir: Path, evse_key: str) -> dict[str, Any]:
    station, local = evse_key.split(".", 1)
    raw: dict[str, Any] = station_file(fleet_dir, station)["evses"][local]
    return raw


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


# -- 3. no session ever starts from a command the driver was told had failed -------------------


@pytest.mark.timeout(60)
def test_a_start_that_timed_out_at_a_frozen_station_is_refused_as_expired_when_it_thaws(
    mosquitto_url: str, tmp_path: Path, mqtt_client: MqttClientFactory
) -> None:
    began = time.monotonic()
    key, station, timeout_s = "fz-001.1", "fz-001", 1.0
    fleet_dir = tmp_path / "fleet"
    spy = mqtt_client(mosquitto_url, "fz-spy")
    spy.subscribe(replies_topic(station))
    with (
        running_csms(mosquitto_url, command_timeout_s=timeout_s) as (system, watcher),
        FleetProcess(
            mosquitto_url,
            fleet_dir,
            stations=1,
            evses=1,
            speed=1.0,
            prefix="fz",
            keepalive=10,  # the broker must not notice the freeze (15 s)
        ) as fleet,
    ):
        watcher.wait_for(watcher.status_is(key, "Available"), "fz-001.1 Available", 30)
        assert fleet.proc is not None
        session = SessionId("fz-late")
        os.kill(fleet.proc.pid, signal.SIGSTOP)
        try:
            asked_at = time.monotonic()
            with pytest.raises(CommandTimeoutError):
                system.command(key, CommandName.START, StartArgs(session_id=session))
            told_s = time.monotonic() - asked_at
            assert watcher.state(key).station_online, "the broker noticed the freeze: too late"
        finally:
            os.kill(fleet.proc.pid, signal.SIGCONT)
        thawed_at = time.monotonic()

        reply = parse_reply(spy.get(timeout=10))
        reply_s = time.monotonic() - thawed_at
        assert reply.command is CommandName.START
        assert (reply.accepted, reply.reason) == (False, "expired")

        # The station has handled the command (it replied): nothing started, on either side.
        own = evse_in_file(fleet_dir, key)
        assert (own["status"], own.get("session_id")) == ("Available", None)
        system.command(key, CommandName.INFO)  # a round trip: every earlier report applied
        history = watcher.history[key]
        assert all(s.session_id is None for s in history), [s.status for s in history]
        assert watcher.state(key).status is EvseStatus.AVAILABLE
        assert not [a for a in watcher.alerts if a.kind == "late_session_stopped"]
    print(
        f"\nfrozen station: caller told the start failed after {told_s:.2f} s (timeout"
        f" {timeout_s} s); 'expired' reply {reply_s:.2f} s after SIGCONT; no session;"
        f" test {time.monotonic() - began:.1f} s"
    )
    assert told_s <= timeout_s + 1.0


def parse_reply(received: Any) -> CommandReply:
    message = parse(received.topic, received.payload)
    assert isinstance(message, CommandReply), message
    return message


def _fake_status(station: str, status: EvseStatus, seq: int, session: str | None) -> StatusReport:
    now = int(time.time() * 1000)
    info = EvseInfo(
        evse_id=EvseId("1"),
        status=status,
        session_id=None if session is None else SessionId(session),
    )
    return StatusReport(station_id=StationId(station), info=info, seq=seq, ts=now, epoch=1)


@pytest.mark.timeout(60)
def test_a_station_that_starts_a_timed_out_session_anyway_is_stopped_by_the_csms(
    mosquitto_url: str, mqtt_client: MqttClientFactory
) -> None:
    """A station that ignores ``expires_at`` (played here by a test client speaking the
    protocol): the CSMS stops the session the caller was told had not started."""
    began = time.monotonic()
    station, key, timeout_s = "rg-001", "rg-001.1", 1.0
    will_topic, will, _ = encode(StationOffline(station_id=StationId(station), ts=1))
    rogue = mqtt_client(
        mosquitto_url,
        station,
        clean_session=False,
        keepalive=KEEPALIVE,
        will=(will_topic, will, 1, True),
    )
    rogue.subscribe(commands_topic(StationId(station)))
    descriptor = StationDescriptor(
        id=StationId(station),
        name="rogue",
        lat=45.0,
        lon=9.0,
        evses=(EvseDescriptor(id=EvseId("1"), max_power_w=22_000.0),),
    )
    with running_csms(mosquitto_url, command_timeout_s=timeout_s) as (system, watcher):
        for message in (
            StationBirth(station=descriptor, ts=int(time.time() * 1000), epoch=1),
            _fake_status(station, EvseStatus.AVAILABLE, 1, None),
        ):
            rogue.publish(*encode(message)[:2], retain=True)
        watcher.wait_for(watcher.status_is(key, "Available"), "rg-001.1 Available")

        session = SessionId("rg-late")
        with ThreadPoolExecutor(max_workers=1) as pool:
            asked_at = time.monotonic()
            caller = pool.submit(
                system.command, key, CommandName.START, StartArgs(session_id=session)
            )
            start = parse(*_next_command(rogue, station))
            assert isinstance(start, CommandRequest)
            assert start.command is CommandName.START
            with pytest.raises(CommandTimeoutError):
                caller.result(timeout=timeout_s + 5)
            told_s = time.monotonic() - asked_at

        # Late and regardless of expires_at, the station starts the session.
        rogue.publish(*encode(_fake_status(station, EvseStatus.CHARGING, 2, session))[:2])
        reported_at = time.monotonic()
        stop = parse(*_next_command(rogue, station))
        stop_s = time.monotonic() - reported_at
        assert isinstance(stop, CommandRequest), stop
        assert stop.command is CommandName.STOP
        assert stop.args.get("session_id") == session
        watcher.wait_for(
            lambda: any(a.kind == "late_session_stopped" for a in watcher.alerts),
            "the operator's alert",
        )
    print(
        f"\nrogue station: caller told the start failed after {told_s:.2f} s; the CSMS sent"
        f" stop {stop_s * 1000:.0f} ms after the late Charging report;"
        f" test {time.monotonic() - began:.1f} s"
    )


def _next_command(client: Any, station: str) -> tuple[str, bytes]:
    received = client.get_on(commands_topic(StationId(station)), timeout=10)
    return received.topic, received.payload


# -- 4. a start to a station that is gone ------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_start_to_an_offline_station_is_refused_with_409_offline_at_once(
    mosquitto_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    key = "of-001.1"
    storage = open_storage(None, data_dir=tmp_path / "csms")
    try:
        with running_csms(mosquitto_url, storage=storage) as (system, watcher):
            auth = LocalAuthenticator(
                storage.users,
                storage.refresh_tokens,
                secret=b"s" * 32,
                duplicate_error=DuplicateError,
                hasher=argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
            )
            https = "https://127.0.0.1:8443"
            client = falcon.testing.TestClient(
                create_app(system, auth=auth, storage=storage, https_base=https)
            )
            registered = client.simulate_post(
                "/api/v1/auth/register",
                json={"email": "late@example.com", "password": "correct horse battery"},
                protocol="https",
            )
            assert registered.status_code == 201, registered.json
            bearer = {"Authorization": f"Bearer {registered.json['access_token']}"}

            with FleetProcess(
                mosquitto_url,
                tmp_path / "fleet",
                stations=1,
                evses=1,
                prefix="of",
                keepalive=KEEPALIVE,
            ) as fleet:
                watcher.wait_for(watcher.status_is(key, "Available"), "of-001.1 Available", 30)
                fleet.kill()
            watcher.wait_for(watcher.status_is(key, "Offline"), "Offline after the kill", 10)

            asked_at = time.monotonic()
            refused = client.simulate_post(
                f"/api/v1/evses/{key}/start",
                json={"target_soc": 80},
                headers=bearer,
                protocol="https",
            )
            refused_ms = (time.monotonic() - asked_at) * 1000
            assert refused.status_code == 409, refused.json
            assert refused.json["reason"].startswith("offline"), refused.json
            state: EvseState = watcher.state(key)
            assert state.status is EvseStatus.OFFLINE
            assert state.session_id is None
    finally:
        storage.close()
    print(
        f"\noffline station: start refused with 409 offline in {refused_ms:.1f} ms;"
        f" test {time.monotonic() - began:.1f} s"
    )
    assert refused_ms < 100
