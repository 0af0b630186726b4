"""Selecting the Firebase backends, and the refusal to start with an emulator outside tests.

The Firebase Auth emulator is real (tests/firebase_emulator.py); the Realtime Database is the
in-memory ``FakeRealtimeDatabase`` (tests/fake_rtdb.py): its emulator cannot run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from actors.system import CsmsConfig
from gateway import firebase_backend
from gateway.auth import LocalAuthenticator
from gateway.broker_probe import free_port as _free_port
from gateway.firebase_auth import (
    EMULATOR_ENV_VARS,
    EmulatorOutsideTests,
    refuse_emulators_outside_tests,
)
from gateway.firebase_backend import FIREBASE_PASSWORD_HASH, FirebaseUserData, MirroredFirebaseAuth
from gateway.server import GatewaySettings, Runtime
from storage import open_storage
from storage.firebase_rtdb import RtdbNotificationStore, RtdbSessionStore
from tests.fake_rtdb import FakeRealtimeDatabase

pytest_plugins = ("tests.firebase_emulator",)
PROJECT_ID = "demo-smartcharge"  # a demo- project: the emulator needs no credentials

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


@pytest.fixture
def no_test_mode(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*EMULATOR_ENV_VARS, "SMARTCHARGE_TEST_MODE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", EMULATOR_ENV_VARS)
def test_an_emulator_variable_is_refused_unless_test_mode_is_on(variable: str) -> None:
    with pytest.raises(EmulatorOutsideTests, match=f"{variable} set: refusing to start"):
        refuse_emulators_outside_tests({variable: "127.0.0.1:9099"})
    with pytest.raises(EmulatorOutsideTests):
        refuse_emulators_outside_tests({variable: "x:1", "SMARTCHARGE_TEST_MODE": "0"})

    refuse_emulators_outside_tests({variable: "x:1", "SMARTCHARGE_TEST_MODE": "1"})
    refuse_emulators_outside_tests({variable: "  ", "SMARTCHARGE_TEST_MODE": ""})
    refuse_emulators_outside_tests({})


@pytest.mark.parametrize("variable", EMULATOR_ENV_VARS)
def test_the_csms_runtime_refuses_to_build_with_an_emulator_variable(
    variable: str, no_test_mode: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Even with the local backends: the variable alone is the danger sign."""
    no_test_mode.setenv(variable, "127.0.0.1:9099")
    data_dir = tmp_path / "csms"

    with pytest.raises(EmulatorOutsideTests, match="SMARTCHARGE_TEST_MODE=1"):
        Runtime.build(CsmsConfig(), GatewaySettings(data_dir=data_dir))

    assert not data_dir.exists()  # refused before touching anything


def test_smartcharge_csms_exits_with_the_auth_emulator_variable_outside_tests(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SMARTCHARGE_TEST_MODE",)}
    env["FIREBASE_AUTH_EMULATOR_HOST"] = "127.0.0.1:9099"
    cmd = [
        sys.executable,
        "-m",
        "gateway.cli",
        "csms",
        "--mqtt-url",
        f"mqtt://127.0.0.1:{_free_port()}",
        "--http-port",
        str(_free_port()),
        "--https-port",
        str(_free_port()),
        "--data-dir",
        str(tmp_path / "csms"),
        "--threads",
        "2",
    ]

    done = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode != 0
    assert "FIREBASE_AUTH_EMULATOR_HOST set: refusing to start" in done.stderr
    assert not (tmp_path / "csms" / "smartcharge.db").exists()


def test_local_backends_are_the_default(tmp_path: Path) -> None:
    runtime = Runtime.build(CsmsConfig(), GatewaySettings(data_dir=tmp_path / "csms"))
    try:
        assert isinstance(runtime.auth, LocalAuthenticator)
        assert type(runtime.storage.sessions).__name__ == "SessionStore"
    finally:
        runtime.storage.close()


def test_firebase_user_data_puts_sessions_and_notifications_on_the_rtdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRealtimeDatabase()
    monkeypatch.setattr(firebase_backend, "rtdb_root", lambda app: fake.root())
    storage = open_storage(None, data_dir=tmp_path)
    try:
        data = FirebaseUserData(storage, app=object())
        assert isinstance(data.sessions, RtdbSessionStore)
        assert isinstance(data.notifications, RtdbNotificationStore)
        assert data.users is storage.users  # accounts and reservations stay in SQL
        assert data.reservations is storage.reservations

        data.sessions.open("s1", evse_id="e1", station_id="st1", started_at=5)
        data.notifications.add("uid-1", "k", "hello", at=6)

        assert fake.root().child("sessions/s1/evse_id").get() == "e1"
        assert storage.sessions.get("s1") is None
    finally:
        storage.close()


def test_firebase_auth_users_get_a_sql_row_for_reservations(
    auth_emulator: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--auth firebase`` on SQL: a Firebase user is mirrored into ``users`` (same id, a hash
    nothing verifies), so the rows that reference ``users.id`` can be written."""
    import firebase_admin

    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", auth_emulator)
    monkeypatch.setenv("SMARTCHARGE_TEST_MODE", "1")
    settings = GatewaySettings(
        data_dir=tmp_path / "csms",
        auth_backend="firebase",
        firebase_project=PROJECT_ID,
        firebase_api_key="fake-api-key",
    )
    storage = open_storage(None, data_dir=settings.data_dir)
    auth, user_data = firebase_backend.firebase_backends(settings, storage)
    try:
        assert isinstance(auth, MirroredFirebaseAuth)
        assert user_data is storage
        email = f"op-{uuid.uuid4().hex[:8]}@example.org"
        operator = auth.create_user(email, PASSWORD, "operator")
        driver = auth.verify(
            auth.register(f"d-{uuid.uuid4().hex[:8]}@example.org", PASSWORD).access_token
        )

        for principal in (operator, driver):
            row = storage.users.get(principal.user_id)
            assert row is not None
            assert (row.email, str(row.role)) == (principal.email, principal.role)
            assert row.password_hash == FIREBASE_PASSWORD_HASH
        reservation = storage.reservations.create(driver.user_id, "e1", expires_at=10**13)
        assert reservation.driver_id == driver.user_id
    finally:
        storage.close()
        if auth is not None:
            auth.close()
            firebase_admin.delete_app(auth.app)
