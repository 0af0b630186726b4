"""The broker killed with SIGKILL under load, and a crowd of stations reconnecting at once.

Real Mosquitto (the embedded broker's production config), ``smartcharge csms`` and the fleet
simulator in their own processes. Only the broker is killed and started again on its port
with its persistence directory, as a supervisor would; the CSMS and the stations must come
back by themselves. What is checked: every message the broker acknowledged (PUBACK) was
applied by the CSMS, every session's energy equals its station's file, the fleet view is
right soon after the broker is back.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from storage import Session
from tests.db import open_test_storage
from tests.driver_client import Api, csms_process, wait_until
from tests.faults.broker_load import AckedPublisher, RestartableBroker, TrafficCounter, closing_all
from tests.faults.test_csms_kill import (
    SESSION_STATUSES,
    connect_api,
    evses_over_http,
    free_port,
    operator_token,
    station_truth,
)
from tests.support import FleetProcess

pytestmark = [pytest.mark.integration]

FLEET_STATIONS, SPEED, METER_S = 80, 60.0, 10.0  # 80 EVSEs x 6 meter values/s
PUB_STATIONS, PUB_EVSES, PUB_RATE = 20, 2, 500.0  # with the fleet: ~1,000 msg/s, 100 stations
FLEET_IDS = [f"bk-{s:03d}.1" for s in range(1, FLEET_STATIONS + 1)]
VIEW_RIGHT_S = 30.0


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    restartable = RestartableBroker(tmp_path / "broker")
    try:
        yield restartable
    finally:
        restartable.stop()


def start_sessions(api: Api, token: str, evse_ids: list[str]) -> dict[str, str]:
    def start(evse_id: str) -> tuple[str, str]:
        status, body = api.post(f"/api/v1/evses/{evse_id}/start", {"target_soc": 100}, token=token)
        assert status == 201, (evse_id, body)
        return evse_id, body["session_id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(start, evse_ids))


def reported_since(evse: dict[str, Any], since: float, asked: float) -> bool:
    """True when the CSMS heard from this EVSE after ``since`` (wall clock): its last report
    is younger than the time between ``since`` and when the view was asked for."""
    return asked - evse["last_report_age_s"] - 0.1 > since


def status_changes(data_dir: Path, evse_ids: list[str]) -> Counter[str]:
    """How many status changes storage recorded per EVSE (``status_events``)."""
    storage = open_test_storage(data_dir, None)
    try:
        with storage.engine.connect() as conn:
            rows = conn.execute(text("SELECT evse_id FROM status_events")).scalars()
            return Counter(e for e in rows if e in set(evse_ids))
    finally:
        storage.close()


def fleet_sessions(data_dir: Path) -> list[Session]:
    storage = open_test_storage(data_dir, None)
    try:
        with storage.engine.connect() as conn:
            ids = list(conn.execute(text("SELECT id FROM sessions")).scalars())
        found = [storage.sessions.get(i) for i in ids]
    finally:
        storage.close()
    return [s for s in found if s is not None and s.evse_id in FLEET_IDS]


@pytest.mark.timeout(150)
def test_a_broker_killed_under_load_loses_no_acknowledged_message_and_no_session(
    broker: RestartableBroker, tmp_path: Path
) -> None:
    began = time.monotonic()
    data_dir, fleet_dir = tmp_path / "csms", tmp_path / "fleet"
    fleet = FleetProcess(
        broker.url,
        fleet_dir,
        stations=FLEET_STATIONS,
        evses=1,
        speed=SPEED,
        prefix="bk",
        meter_interval=METER_S,
    )
    ports = (free_port(), free_port())
    csms = csms_process(
        broker.url, data_dir, *ports, tmp_path / "csms.log", extra=("--demo-users",)
    )
    # The CSMS listens before the stations open hundreds of connections on ephemeral ports
    # (one of which could be the port free_port() picked for it).
    with contextlib.ExitStack() as cleanup, csms as proc:
        api = connect_api(data_dir, *ports)
        wait_until(lambda: evses_over_http(api) is not None, "the CSMS's API", 60)
        fleet.start()
        cleanup.callback(fleet.__exit__)  # killed if still running
        wait_until(
            lambda: (
                (e := evses_over_http(api)) is not None
                and all(e.get(i, {}).get("status") == "Available" for i in FLEET_IDS)
            ),
            "the fleet's EVSEs Available",
            60,
        )
        ratings = {i: float(v["max_power_w"]) for i, v in (evses_over_http(api) or {}).items()}
        operator = operator_token(api, data_dir)
        sessions = start_sessions(api, operator, FLEET_IDS)
        publisher = AckedPublisher(broker.url, stations=PUB_STATIONS, evses_per_station=PUB_EVSES)
        counter = TrafficCounter(broker.url)
        with closing_all(publisher, counter):
            publisher.hello()
            publisher.start(PUB_RATE)
            pub_ids = publisher.stream.keys
            wait_until(
                lambda: (
                    (e := evses_over_http(api)) is not None
                    and all(e[i]["status"] == "Charging" for i in FLEET_IDS)
                    and all(i in e for i in pub_ids)
                ),
                "the fleet charging and the publisher's EVSEs known",
                30,
            )
            load = counter.rate(3.0)
            wait_until(lambda: publisher.acked() >= 6000, "6,000 messages acked", 30)

            # -- kill -9 the broker mid-stream, start it again on its port --------------------
            acked_at_kill = publisher.acked()
            broker.kill()
            killed_at = time.time()
            # down until the clients noticed (the publisher stands for them)
            assert publisher.disconnected.wait(10), "nobody noticed the broker's death"
            back_at = broker.restart()
            before_kill = publisher.last_acked()

            def view_right() -> bool:
                asked = time.time()
                evses = evses_over_http(api, operator)  # the session ids: an operator's read
                if evses is None or not all(v["online"] for v in evses.values()):
                    return False
                if not all(reported_since(v, back_at, asked) for v in evses.values()):
                    return False
                truth = station_truth(fleet_dir)
                for evse_id in FLEET_IDS:
                    session = evses[evse_id]["session"]
                    if truth[evse_id].status in SESSION_STATUSES and (
                        session is None or session["id"] != truth[evse_id].session_id
                    ):
                        return False
                return all(evses[k]["energy_wh"] >= 10 * s for k, s in before_kill.items())

            wait_until(view_right, "the fleet view right after the broker's restart", VIEW_RIGHT_S)
            right_s = time.time() - back_at
            # the load goes on a while on the new broker, then the publisher stops and settles
            target = publisher.acked() + 3000
            wait_until(lambda: publisher.acked() >= target, "3,000 more messages acked", 30)
            publisher.stop()
            assert publisher.settle(30), "the broker never acknowledged some messages"
            sent = publisher.snapshot()
            last = publisher.last_acked()
            wait_until(
                lambda: (
                    (e := evses_over_http(api)) is not None
                    and all(e[k]["energy_wh"] == 10 * s for k, s in last.items())
                ),
                "every acknowledged message applied",
                30,
            )
            assert proc.poll() is None, "the CSMS died"
            assert fleet.proc is not None
            assert fleet.proc.poll() is None, "the fleet died"

        # -- freeze: the stations save and say goodbye, the CSMS stops cleanly -------------
        fleet.terminate(timeout=60)
        wait_until(
            lambda: (
                (e := evses_over_http(api)) is not None
                and all(e[i]["status"] == "Offline" for i in FLEET_IDS)
            ),
            "the fleet Offline after its shutdown",
            60,
        )
    # -- every acknowledged status change is in storage; sessions against the stations ------
    status_msgs = Counter(publisher.stream.keys[s.evse] for s in sent if s.is_status)
    changes = status_changes(data_dir, pub_ids)
    missing = {k: status_msgs[k] - changes[k] for k in pub_ids if changes[k] != status_msgs[k]}
    rows = fleet_sessions(data_dir)
    truth = station_truth(fleet_dir)
    assert {r.id for r in rows} == set(sessions.values()), "sessions lost or invented"
    worst = 0.0
    for row in rows:
        station = truth[row.evse_id]
        assert row.is_open == (
            station.session_id == row.id and station.status in SESSION_STATUSES
        ), (row, station)
        counted = (
            station.session_energy_wh
            if station.session_id == row.id
            else station.energy_wh - row.start_energy_wh
        )
        one_interval_wh = ratings[row.evse_id] * METER_S / 3600
        assert abs(row.energy_wh - counted) <= one_interval_wh + 0.5, (row, station)
        worst = max(worst, abs(row.energy_wh - counted) / one_interval_wh)
    print(
        f"\nbroker kill -9 under {load:.0f} msg/s ({FLEET_STATIONS} fleet + {PUB_STATIONS} "
        f"publisher stations, {len(sessions)} sessions): {acked_at_kill} acked before the kill, "
        f"{len(sent)} published, all acked, all applied (status changes missing: "
        f"{sum(missing.values())}); broker down {back_at - killed_at:.2f} s, "
        f"fleet view right {right_s:.1f} s after; sessions lost 0 of {len(rows)}, worst "
        f"energy error {worst:.2f} of a meter interval; publisher reconnects "
        f"{publisher.connects - 1}; test {time.monotonic() - began:.0f} s"
    )
    assert not missing, f"acknowledged status changes never applied: {missing}"


CROWD, CROWD_PROCESSES = 500, 2
PER_PROCESS = CROWD // CROWD_PROCESSES
CROWD_PREFIXES = [f"c{n}" for n in range(CROWD_PROCESSES)]
CROWD_IDS = [f"{p}-{s:03d}.1" for p in CROWD_PREFIXES for s in range(1, PER_PROCESS + 1)]
CROWD_BACK_S = 60.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def enough_descriptors(needed: int) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` (the broker and fleet inherit it) to
    ``needed`` when the hard limit allows; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and (hard == resource.RLIM_INFINITY or hard >= needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft


@pytest.mark.timeout(150)
def test_five_hundred_stations_are_back_within_a_minute_of_a_broker_restart(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    # Mosquitto has no connection cap by default; a descriptor each is the limit (plus the
    # CSMS, the probe and its persistence): 500 stations need more than a 1,024 soft limit.
    nofile = enough_descriptors(4096)
    assert nofile >= CROWD + 100, f"ulimit -n is {nofile}: too low for {CROWD} stations"
    broker = RestartableBroker(tmp_path / "broker")
    data_dir, fleet_dir = tmp_path / "csms", tmp_path / "fleet"
    # Two fleet processes: one cannot hold ~340 stations or more (paho's select() and its
    # three descriptors per client; the 1,024 descriptors of FD_SETSIZE).
    fleets = [
        FleetProcess(
            broker.url,
            fleet_dir,
            stations=PER_PROCESS,
            evses=1,
            speed=1.0,
            prefix=prefix,
            meter_interval=60,
        )
        for prefix in CROWD_PREFIXES
    ]
    ports = (free_port(), free_port())
    try:
        with csms_process(broker.url, data_dir, *ports, tmp_path / "csms.log") as proc:
            api = connect_api(data_dir, *ports)  # listening before the stations take ports
            wait_until(lambda: evses_over_http(api) is not None, "the CSMS's API", 60)
            for crowd in fleets:
                crowd.start()

            def all_back(since: float) -> bool:
                asked = time.time()
                evses = evses_over_http(api)
                return evses is not None and all(
                    (e := evses.get(i)) is not None
                    and e["online"]
                    and e["status"] == "Available"
                    and reported_since(e, since, asked)
                    for i in CROWD_IDS
                )

            launched = time.time()
            wait_until(lambda: all_back(launched - 60), f"{CROWD} stations online", 90)
            launch_s = time.time() - launched
            pids = [f.proc.pid for f in fleets if f.proc is not None]
            fleet_cpu = sum(cpu_seconds(pid) for pid in pids)

            broker.kill()
            killed_at = time.time()
            back_at = broker.restart()
            wait_until(lambda: all_back(back_at), f"all {CROWD} stations back", CROWD_BACK_S)
            back_s = time.time() - back_at
            fleet_cpu = sum(cpu_seconds(pid) for pid in pids) - fleet_cpu
            broker_cpu = cpu_seconds(broker.pid)
            assert proc.poll() is None, "the CSMS died"
            assert all(f.proc is not None and f.proc.poll() is None for f in fleets), "fleet died"
            truth = station_truth(fleet_dir)
            assert all(truth[i].status == "Available" for i in CROWD_IDS)
    finally:
        for crowd in fleets:
            crowd.__exit__()
        broker.stop()
    print(
        f"\n{CROWD} stations: all online {launch_s:.1f} s after the API was up; broker down "
        f"{back_at - killed_at:.2f} s; all {CROWD} back online and reported "
        f"{back_s:.1f} s after the restart (limit {CROWD_BACK_S:.0f} s); CPU during the "
        f"reconnect: fleet {fleet_cpu:.1f} s, new broker {broker_cpu:.2f} s; load average "
        f"{os.getloadavg()[0]:.1f}; ulimit -n {nofile}; test {time.monotonic() - began:.0f} s"
    )
