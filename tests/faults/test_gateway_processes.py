"""Gateway workers apart from the CSMS node, each in its own process, killed with SIGKILL.

Real Mosquitto; ``smartcharge csms --serve-gateways`` (the node), ``smartcharge gateway
--workers 2`` and the fleet simulator in processes of their own (``docs/node-protocol.md``).

- A gateway worker killed while starts are in flight is replaced by gunicorn; every start the
  drivers were told about happened, each EVSE ends up with exactly one session (nothing run
  twice), and a start whose answer was lost with the worker either ran (a retry is refused:
  the EVSE is busy) or did not (a retry starts it).
- The node killed while a start is in flight: the driver gets a clear 503 at once, and once the
  node is back nothing starts that the driver was told failed.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import db
from tests.db import open_test_storage
from tests.driver_client import Api, csms_process, gateway_process, wait_until
from tests.faults.test_csms_kill import free_port
from tests.support import FleetProcess

pytestmark = [pytest.mark.integration, pytest.mark.needs_db, pytest.mark.timeout(300)]

db_url = db.db_url

STATIONS, EVSES = 3, 2
PREFIX = "gk"
EVSE_IDS = [f"{PREFIX}-{s:03d}.{e}" for s in range(1, STATIONS + 1) for e in range(1, EVSES + 1)]


def workers_of(master: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True, check=False
    )
    return {int(p) for p in out.stdout.split()}


@dataclass
class Split:
    api: Api
    node: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    data_dir: Path
    db_url: str | None
    node_args: tuple[str, Path, int, Path]

    def operator(self) -> str:
        login = json.loads((self.data_dir / "demo-logins.json").read_text())["operator"]
        status, body = wait_until(
            lambda: self.api.post("/api/v1/auth/login", login), "the operator's login", 60
        )
        assert status == 200, body
        token: str = body["access_token"]
        return token

    def evses(self) -> dict[str, dict[str, object]]:
        status, body = self.api.get("/api/v1/stations", secure=False)
        assert status == 200, body
        return {e["id"]: e for s in body["stations"] for e in s["evses"]}


@pytest.fixture
def split(mosquitto_url: str, tmp_path: Path, db_url: str | None) -> Iterator[Split]:
    data_dir = tmp_path / "csms"
    node_port, http_port, https_port = free_port(), free_port(), free_port()
    node_args = (mosquitto_url, data_dir, node_port, tmp_path / "node.log")
    with (
        csms_process(
            *node_args[:3],
            0,
            node_args[3],
            extra=("--serve-gateways", "--demo-users"),
            db_url=db_url,
        ) as node,
        gateway_process(
            mosquitto_url, data_dir, (http_port, https_port), tmp_path / "gateway.log", db_url
        ) as gateway,
        FleetProcess(
            mosquitto_url,
            tmp_path / "fleet",
            stations=STATIONS,
            evses=EVSES,
            speed=30,
            prefix=PREFIX,
        ),
    ):
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the gateway's certificate", 60)
        api = Api(http_port, https_port, cert)
        wait_until(
            lambda: (
                (e := api.get("/api/v1/stations", secure=False))[0] == 200
                and len(
                    [v for s in e[1]["stations"] for v in s["evses"] if v["status"] == "Available"]
                )
                == len(EVSE_IDS)
            ),
            "every EVSE Available through the gateway",
            90,
        )
        yield Split(api, node, gateway, data_dir, db_url, node_args)


def start(api: Api, token: str, evse_id: str) -> int | str:
    try:
        status, _ = api.post(f"/api/v1/evses/{evse_id}/start", {"target_soc": 100}, token=token)
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__  # the worker died with the request
    return status


def test_a_gateway_worker_killed_mid_command_is_replaced_and_nothing_is_lost_or_run_twice(
    split: Split,
) -> None:
    token = split.operator()
    before = workers_of(split.gateway.pid)
    assert len(before) == 2
    victim = min(before)
    with ThreadPoolExecutor(max_workers=len(EVSE_IDS)) as pool:
        answers = pool.map(lambda e: start(split.api, token, e), EVSE_IDS)
        os.kill(victim, signal.SIGKILL)
        first = dict(zip(EVSE_IDS, answers, strict=True))
    print("answers with a worker killed:", first)

    wait_until(
        lambda: len(now := workers_of(split.gateway.pid)) == 2 and victim not in now,
        "gunicorn to replace the killed worker",
        60,
    )
    for evse_id, answer in first.items():
        if answer != 201:  # lost with the worker (or refused): did it run? a retry tells
            retry = start(split.api, token, evse_id)
            assert retry in (201, 409), (evse_id, answer, retry)
    wait_until(
        lambda: all(e["status"] == "Charging" for e in split.evses().values()),
        "every EVSE charging",
        90,
    )
    with open_test_storage(split.data_dir, split.db_url) as storage:
        for evse_id in EVSE_IDS:
            sessions = [s for s in storage.sessions.open_sessions() if s.evse_id == evse_id]
            assert len(sessions) == 1, (evse_id, sessions)  # one session: nothing ran twice


def test_the_node_killed_mid_command_answers_503_at_once_and_nothing_starts_late(
    split: Split, tmp_path: Path
) -> None:
    token = split.operator()
    evse_id = EVSE_IDS[0]
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(
            split.api.post, f"/api/v1/evses/{evse_id}/start", {"target_soc": 100}, token=token
        )
        os.killpg(split.node.pid, signal.SIGKILL)
        status, body = answer.result(timeout=30)
    split.node.wait(timeout=10)
    print("answer with the node killed:", status, body)
    if status == 201:  # it ran before the node died: a fine answer, and not a late one
        return
    assert status in (503, 504), body
    assert "CSMS node" in body["reason"]
    never_sent = "nothing was sent" in body["reason"]

    mosquitto_url, data_dir, node_port, log_path = split.node_args
    with csms_process(
        mosquitto_url, data_dir, node_port, 0, log_path, extra=("--serve-gateways",),
        db_url=split.db_url,
    ):  # fmt: skip
        wait_until(
            lambda: split.api.get("/healthz", secure=False)[1].get("mqtt_connected") is True,
            "the node back",
            60,
        )
        # Until the new node has heard the station again, a start is refused as offline.
        status, body = wait_until(
            lambda: (
                (
                    r := split.api.post(
                        f"/api/v1/evses/{evse_id}/start", {"target_soc": 100}, token=token
                    )
                )[0]
                != 503
                and "offline" not in str(r[1])
                and r
            ),
            "a start the new node takes or refuses for a reason of its own",
            60,
        )
        if never_sent:  # the driver was told nothing was sent: it must not have run since
            assert status == 201, body
        else:  # it may have reached the station before the node died; not after
            assert status in (201, 409), body
