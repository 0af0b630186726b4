"""``smartcharge admin`` as an operator runs it: subprocesses against a real ``smartcharge csms``
(gunicorn, HTTP + HTTPS), a real Mosquitto and a simulated fleet in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.broker_probe import free_port
from tests.db import child_env, database_for_test
from tests.driver_client import Api, csms_process, wait_until
from tests.support import REPO_ROOT, FleetProcess

pytestmark = [pytest.mark.integration, pytest.mark.needs_db, pytest.mark.timeout(180)]

EVSES = ["ad-001.1", "ad-001.2", "ad-002.1", "ad-002.2"]
PAIR = ("ad-001.1", "ad-001.2")


@dataclass(frozen=True)
class Csms:
    data_dir: Path
    url: str
    api: Api
    logins: dict[str, dict[str, str]]
    db_url: str | None = None

    def admin(
        self, *args: str, login: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m gateway.cli admin ARGS --data-dir DIR [--url URL]``, logged in as
        ``login`` through the environment variables."""
        env = {
            k: v
            for k, v in child_env(self.db_url).items()
            if not k.startswith("SMARTCHARGE_ADMIN_")
        }
        if login is not None:
            env["SMARTCHARGE_ADMIN_EMAIL"] = login["email"]
            env["SMARTCHARGE_ADMIN_PASSWORD"] = login["password"]
        local = args[0] in ("users", "sessions", "create-operator")
        command = [sys.executable, "-m", "gateway.cli", "admin", *args]
        command += ["--data-dir", str(self.data_dir)]
        if not local:
            command += ["--url", self.url]
        return subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def admin_json(self, *args: str, login: dict[str, str] | None = None) -> Any:
        done = self.admin(*args, "--json", login=login)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def statuses(self, evses: tuple[str, ...]) -> list[str]:
        return [self.public_status(evse) for evse in evses]

    def public_status(self, evse: str) -> str:
        status, body = self.api.get(f"/api/v1/evses/{evse}", secure=False, token="")
        assert status == 200, body
        return str(body["status"])


@pytest.fixture(scope="module")
def csms(module_mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Csms]:
    tmp = tmp_path_factory.mktemp("admin")
    http_port, https_port = free_port(), free_port()
    data_dir = tmp / "csms"
    with (
        database_for_test(data_dir) as db_url,
        csms_process(
            module_mosquitto_url,
            data_dir,
            http_port,
            https_port,
            tmp / "csms.log",
            extra=("--demo-users",),
            db_url=db_url,
        ),
        FleetProcess(
            module_mosquitto_url, tmp / "fleet", stations=2, evses=2, speed=60, prefix="ad"
        ),
    ):
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the self-signed certificate")
        api = Api(http_port, https_port, cert)

        def all_available() -> bool:
            status, body = api.get("/api/v1/stations", secure=False)
            evses = [e for s in body["stations"] for e in s["evses"]] if status == 200 else []
            return len(evses) == len(EVSES) and all(e["status"] == "Available" for e in evses)

        wait_until(all_available, "4 EVSEs Available over HTTP")
        logins = json.loads((data_dir / "demo-logins.json").read_text())
        yield Csms(
            data_dir=data_dir,
            url=f"https://127.0.0.1:{https_port}",
            api=api,
            logins=logins,
            db_url=db_url,
        )


@pytest.fixture
def operator(csms: Csms, request: pytest.FixtureRequest) -> dict[str, str]:
    """A fresh operator per test: the CSMS allows only 5 logins a minute per email."""
    login = {"email": f"op-{request.node.name[5:40]}@example.com", "password": "x" * 16}
    done = csms.admin(
        "create-operator", login["email"], "--password-stdin", stdin=login["password"]
    )
    assert done.returncode == 0, done.stderr
    return login


def test_status_is_a_table_of_every_evse_with_its_station_and_status(csms: Csms) -> None:
    done = csms.admin("status")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["STATION", "EVSE", "STATUS", "SOC", "%", "KW", "KWH", "SESSION"]
    assert sorted(row.split()[1] for row in rows) == EVSES
    assert all(row.split()[0] == row.split()[1].split(".", 1)[0] for row in rows)
    assert all("Available" in row for row in rows)


def test_status_as_json_is_the_stations_document(csms: Csms) -> None:
    fleet = csms.admin_json("status")
    assert sorted(e["id"] for s in fleet["stations"] for e in s["evses"]) == EVSES


def test_maintenance_on_then_off_takes_evses_out_of_service_and_back(
    csms: Csms, operator: dict[str, str]
) -> None:
    done = csms.admin("maintenance", *PAIR, "on", login=operator)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("ad-001.1: maintenance on")
    assert done.stdout.splitlines()[1].startswith("ad-001.2: maintenance on")
    wait_until(lambda: csms.statuses(PAIR) == ["Unavailable"] * 2, "both EVSEs Unavailable")

    done = csms.admin("maintenance", *PAIR, "off", login=operator)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: csms.statuses(PAIR) == ["Available"] * 2, "both EVSEs Available")


def test_info_asks_the_station_for_the_live_state_of_an_evse(
    csms: Csms, operator: dict[str, str]
) -> None:
    outcome = csms.admin_json("info", "ad-002.2", login=operator)
    assert outcome["accepted"] is True
    assert outcome["evse"]["id"] == "ad-002.2"


def test_a_drivers_login_is_refused_on_operator_commands_with_the_reason(csms: Csms) -> None:
    for command in (["maintenance", "ad-001.2", "on"], ["stop", "ad-001.2"], ["info", "ad-001.2"]):
        done = csms.admin(*command, login=csms.logins["driver"])
        assert done.returncode == 1
        assert "is a driver account: admin commands need an operator" in done.stderr
        assert done.stdout == ""
    assert csms.public_status("ad-001.2") == "Available"


def test_a_wrong_password_fails_with_the_servers_reason(csms: Csms) -> None:
    done = csms.admin(
        "info",
        "ad-001.2",
        "--email",
        csms.logins["operator"]["email"],
        "--password",
        "not the password",
    )
    assert done.returncode == 1
    assert "wrong email or password (HTTP 401)" in done.stderr


def test_an_unknown_evse_fails_with_the_servers_reason(
    csms: Csms, operator: dict[str, str]
) -> None:
    done = csms.admin("maintenance", "nope-1", "on", login=operator)
    assert done.returncode == 1
    assert "unknown EVSE 'nope-1' (HTTP 404)" in done.stderr


def test_operator_commands_without_a_login_say_how_to_give_one(csms: Csms) -> None:
    done = csms.admin("stop", "ad-001.2")
    assert done.returncode == 1
    assert "--email/--password, or SMARTCHARGE_ADMIN_EMAIL/SMARTCHARGE_ADMIN_PASSWORD" in (
        done.stderr
    )


def test_create_operator_makes_an_account_that_can_run_operator_commands(csms: Csms) -> None:
    password = "a long enough secret"
    done = csms.admin("create-operator", "Ops@Example.com", "--password-stdin", stdin=password)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("created operator ops@example.com")

    users = {u["email"]: u["role"] for u in csms.admin_json("users")}
    assert users["ops@example.com"] == "operator"

    done = csms.admin(
        "info", "ad-002.1", "--email", "ops@example.com", "--password", password, "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["evse"]["id"] == "ad-002.1"


def test_create_operator_refuses_a_taken_email_and_a_weak_password(csms: Csms) -> None:
    taken = csms.logins["driver"]["email"]
    done = csms.admin("create-operator", taken, "--password-stdin", stdin="long enough pass")
    assert done.returncode == 1
    assert f"an account already exists for {taken}" in done.stderr

    done = csms.admin("create-operator", "new@example.com", "--password-stdin", stdin="short")
    assert done.returncode == 1
    assert "a password needs 10 to 128 characters" in done.stderr


def test_users_lists_every_account_with_its_role(csms: Csms) -> None:
    done = csms.admin("users")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["EMAIL", "ROLE", "CREATED", "ID"]
    listed = {row.split()[0]: row.split()[1] for row in rows}
    for role, login in csms.logins.items():
        assert listed[login["email"]] == role


def test_an_operator_starts_and_stops_a_session_that_sessions_then_lists(
    csms: Csms, operator: dict[str, str]
) -> None:
    started = csms.admin_json("start", "ad-002.1", "--target-soc", "90", login=operator)
    session_id = started["session_id"]

    def listed(*flags: str) -> dict[str, Any] | None:
        sessions = csms.admin_json("sessions", *flags)
        return next((s for s in sessions if s["id"] == session_id), None)

    running = wait_until(lambda: listed("--open"), "the session among the open ones")
    assert running["evse_id"] == "ad-002.1"
    assert running["driver"] == operator["email"]

    done = csms.admin("stop", "ad-002.1", login=operator)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ad-002.1: stopped")

    ended = wait_until(
        lambda: (s := listed()) is not None and not s["open"] and s, "the session ended"
    )
    assert ended["end_reason"] == "Remote"
    done = csms.admin("sessions")
    assert done.returncode == 0, done.stderr
    assert session_id[:12] in done.stdout
