"""A real Firebase Auth emulator for the tests (a pytest plugin: ``pytest_plugins``).

``auth_emulator`` (session scope) yields ``host:port``. It runs firebase-tools installed in
``.cache/firebase-tools`` (``.ci/run`` installs it: ``npm install --prefix .cache/firebase-tools
firebase-tools@VERSION``; ~4 min and ~310 MB once, nothing is downloaded when it starts) with
``emulators:start --only auth --project demo-smartcharge`` from a temp dir holding a generated
``firebase.json`` (auth, hub and logging on free loopback ports, no UI). Readiness: its port
accepts connections (polled with a deadline). Without Node or the installed firebase-tools the
fixture skips, saying what to install (CI turns skips into failures).

The fixture does not set ``FIREBASE_AUTH_EMULATOR_HOST``: tests set it (with
``SMARTCHARGE_TEST_MODE=1``) through ``monkeypatch``, for themselves only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker_probe import free_port as _free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
FIREBASE_TOOLS_DIR = REPO_ROOT / ".cache" / "firebase-tools"
FIREBASE_BIN = FIREBASE_TOOLS_DIR / "node_modules" / ".bin" / "firebase"
PROJECT_ID = "demo-smartcharge"
EMULATOR_START_S = 100.0  # ~10 s idle; 40-60 s seen on 2 busy cores; under the 120 s test timeout


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def auth_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Firebase Auth emulator running for the whole session."""
    if shutil.which("node") is None:
        pytest.skip("node not found: install Node.js >= 20 (Debian: apt-get install nodejs npm)")
    if not FIREBASE_BIN.exists():
        pytest.skip(
            f"firebase-tools not installed in {FIREBASE_TOOLS_DIR}: run"
            f" npm install --prefix {FIREBASE_TOOLS_DIR} firebase-tools@<version> (see .ci/run)"
        )
    workdir = tmp_path_factory.mktemp("firebase-emulator")
    port = _free_port()
    config = {
        "emulators": {
            "auth": {"port": port, "host": "127.0.0.1"},
            "hub": {"port": _free_port(), "host": "127.0.0.1"},
            "logging": {"port": _free_port(), "host": "127.0.0.1"},
            "ui": {"enabled": False},
        }
    }
    (workdir / "firebase.json").write_text(json.dumps(config))
    log_path = workdir / "emulator.log"
    (workdir / "tmp").mkdir()
    # A private TMPDIR: firebase-tools finds other running emulator suites of the same project
    # through a locator file in the temp dir (and then stalls for tens of seconds).
    env = {**os.environ, "CI": "true", "NO_UPDATE_NOTIFIER": "1", "TMPDIR": str(workdir / "tmp")}
    for name in ("FIREBASE_AUTH_EMULATOR_HOST", "FIREBASE_DATABASE_EMULATOR_HOST"):
        env.pop(name, None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(FIREBASE_BIN), "emulators:start", "--only", "auth", "--project", PROJECT_ID],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            process_group=0,  # its own group: teardown stops node and anything it started
        )
    try:
        deadline = time.monotonic() + EMULATOR_START_S
        while not _listening(port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Auth emulator did not listen on {port} within {EMULATOR_START_S:.0f} s:"
                    f"\n{log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                proc.wait(timeout=0.1)  # doubles as the pause between two polls
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(
                f"the Auth emulator exited with status {proc.returncode}:"
                f"\n{log_path.read_text(errors='replace')[-3000:]}"
            )
        yield f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
