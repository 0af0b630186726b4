"""Helpers shared by the process-level benchmarks: ports, brokers, child processes, HTTP waits.

Not a benchmark itself (the leading underscore keeps :func:`bench.common.discover` away).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import BenchmarkError
from gateway.broker_probe import free_port

__all__ = [
    "REPO_ROOT",
    "csms_process",
    "fleet_process",
    "free_port",
    "gateway_process",
    "loadavg",
    "mosquitto",
    "seed_accounts",
    "stop_process",
    "wait_for",
    "wait_http_ok",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one live process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_cpu_s(sid: int) -> float:
    """CPU seconds of every live process in session ``sid`` (a server started by
    :func:`_spawn` with its workers and children: gunicorn, uvicorn workers, MQTT child)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == sid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@contextlib.contextmanager
def mosquitto(data_dir: Path) -> Iterator[Any]:
    """A private Mosquitto on a free loopback port (the production config of EmbeddedBroker)."""
    from gateway.broker import BrokerNotFoundError, EmbeddedBroker

    try:
        broker = EmbeddedBroker(port=0, data_dir=data_dir, prefer="mosquitto").start()
    except BrokerNotFoundError as exc:
        raise BenchmarkError(f"this benchmark needs Mosquitto: {exc}") from None
    try:
        yield broker
    finally:
        broker.stop()


def wait_for(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def wait_http_ok(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    def ok() -> bool:
        if proc.poll() is not None:
            raise BenchmarkError(f"the server exited with {proc.returncode} while starting")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    wait_for(ok, f"http://127.0.0.1:{port}{path}", timeout)


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the child's process group (it was started in its own session), then kill."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def csms_process(
    mqtt_url: str,
    data_dir: Path,
    http_port: int,
    https_port: int,
    log_path: Path,
    extra: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``smartcharge csms`` (gunicorn, production options, HTTP + HTTPS; ``https_port`` 0:
    none) in its own session."""
    proc = _spawn(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "csms",
            "--mqtt-url",
            mqtt_url,
            "--http-port",
            str(http_port),
            "--https-port",
            str(https_port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            *extra,
        ],
        log_path,
    )
    try:
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def gateway_process(
    mqtt_url: str, data_dir: Path, http_port: int, https_port: int, log_path: Path, workers: int
) -> Iterator[subprocess.Popen[bytes]]:
    """``smartcharge gateway --workers N`` (apart from the node) in its own session."""
    proc = _spawn(
        [
            sys.executable, "-m", "gateway.cli", "gateway",
            "--mqtt-url", mqtt_url,
            "--workers", str(workers),
            "--http-port", str(http_port),
            "--https-port", str(https_port),
            "--data-dir", str(data_dir),
            "--log-level", "warning",
        ],
        log_path,
    )  # fmt: skip
    try:
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def fleet_process(
    mqtt_url: str,
    data_dir: Path,
    *,
    stations: int,
    evses: int,
    speed: float,
    meter_interval: float,
    prefix: str,
    log_path: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m simulator.fleet`` in its own process (CPU-heavy simulation stays out)."""
    proc = _spawn(
        [
            sys.executable,
            "-m",
            "simulator.fleet",
            "--mqtt-url",
            mqtt_url,
            "--data-dir",
            str(data_dir),
            "--stations",
            str(stations),
            "--evses-per-station",
            str(evses),
            "--speed",
            str(speed),
            "--meter-interval",
            str(meter_interval),
            "--station-prefix",
            prefix,
            "--seed",
            "1",
        ],
        log_path,
    )
    try:
        yield proc
    finally:
        stop_process(proc)


def seed_accounts(data_dir: Path, n: int, role: str = "driver") -> list[str]:
    """``n`` accounts of ``role`` straight in the CSMS's database (the HTTP sign-up is rate
    limited per address), with its JWT secret; their access tokens (valid 15 min)."""
    import argon2

    from gateway.auth import LocalAuthenticator, load_or_create_secret
    from storage import DuplicateError, open_storage

    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_storage(None, data_dir=data_dir)
    try:
        auth = LocalAuthenticator(
            store.users,
            store.refresh_tokens,
            secret=load_or_create_secret(data_dir / "secret.key"),
            duplicate_error=DuplicateError,
            # Seeding only: the server never checks these passwords (the clients use tokens).
            hasher=argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
        )
        tokens = []
        for i in range(n):
            email = f"{role}{i}@bench.local"
            auth.create_user(email, SEEDED_PASSWORD, role)  # type: ignore[arg-type]
            tokens.append(auth.login(email, SEEDED_PASSWORD).access_token)
        return tokens
    finally:
        store.close()


SEEDED_PASSWORD = "correct horse battery staple"
