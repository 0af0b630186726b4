"""Faults on the station's side of the link around commands: a station frozen while a start
is on its way (no session ever starts from a command the driver was told had failed), and a
start to a station that is gone (409 offline at once).

Real Mosquitto; the CSMS runs in this process (its actors, its MQTT link in a child process),
connected straight to the broker; each station is ``python -m simulator.fleet`` in its own
process, so it can be killed or frozen, and, where a network fault is the point, it reaches
the broker through :class:`~tests.faults.proxy.FaultProxy`. Every figure a test measures is
printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import argon2
import falcon.testing
import pytest

from actors.evse_state import EvseState
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
    commands_topic,
    encode,
    parse,
    replies_topic,
)
from storage import DuplicateError, open_storage
from storage.errors import CommandTimeoutError
from tests.brokers import MqttClientFactory
from tests.faults.station_faults_support import KEEPALIVE, evse_in_file, running_csms
from tests.support import FleetProcess

pytestmark = [pytest.mark.integration]


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
