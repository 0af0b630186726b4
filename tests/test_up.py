"""The front door, end to end: ``smartcharge up`` run as a user runs it, on free ports and a
temporary data dir, then stopped with a signal. Also its failure on a taken port and the
``--help`` of every command.

Every process started here is killed at the end, even when a test fails: ``smartcharge up``
gets its own session (``os.killpg``), and whatever it started (the CSMS and the fleet in their
own process groups, the broker in its own session) is found through /proc and killed too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.broker import find_mosquitto, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
STATIONS, EVSES = 10, 2
READY_S = 30.0
STOP_S = 30.0

pytestmark = pytest.mark.timeout(120)


# -- helpers ---------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Let a redirect surface as an HTTPError, so a test can read where it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def wait_until(fn: Callable[[], tuple[bool, str]], timeout: float, what: str) -> None:
    """Call ``fn`` every 0.1 s until it returns ``(True, _)``; fail with its last detail.

    For polling an HTTP endpoint, where there is no event to wait on. ``fn`` may raise to
    give up at once (e.g. the process under test died).
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    detail = "never called"
    while True:
        done, detail = fn()
        if done:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last: {detail}"
            )
        pause.wait(0.1)


def get_json(url: str) -> tuple[int, Any]:
    """(status, body) of a GET; (0, error text) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, repr(exc)


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, start time in clock ticks) of every process (Linux /proc)."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def descendants(pid: int) -> dict[int, str]:
    """pid -> start time of every living descendant of ``pid``."""
    table = _proc_table()
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, started) in table.items():
            if ppid == parent and child not in found:
                found[child] = started
                todo.append(child)
    return found


def still_running(processes: dict[int, str]) -> list[str]:
    """Those of ``processes`` (pid -> start time) that still exist, with their command lines."""
    table = _proc_table()
    alive = []
    for pid, started in processes.items():
        if pid in table and table[pid][1] == started:
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
                if state != "Z":
                    alive.append(f"{pid}: {cmd.strip()}")
    return alive


def processes_using(directory: Path) -> dict[int, str]:
    """pid -> start time of every process whose command line or cwd mentions ``directory``
    (a Mosquitto broker has its config there; an amqtt broker runs in it)."""
    mark = str(directory)
    table = _proc_table()
    found: dict[int, str] = {}
    for pid, (_, started) in table.items():
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
            if mark in cmd or cwd.startswith(mark):
                found[pid] = started
    return found


def kill_all(processes: dict[int, str]) -> None:
    table = _proc_table()
    for pid, started in processes.items():
        if pid in table and table[pid][1] == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SMARTCHARGE_DB_URL", None)  # `up` keeps SQLite in its own data dir
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SmartchargeUp:
    """``python -m gateway.cli up ...`` in its own session, output in ``log_path``."""

    def __init__(self, tmp_path: Path, http_port: int, *extra: str) -> None:
        self.tmp_path = tmp_path
        self.http_port = http_port
        self.data_dir = tmp_path / "var"
        self.log_path = tmp_path / "smartcharge-up.log"
        self.args = [
            sys.executable,
            "-m",
            "gateway.cli",
            "up",
            "--stations",
            str(STATIONS),
            "--evses-per-station",
            str(EVSES),
            "--http-port",
            str(http_port),
            "--data-dir",
            str(self.data_dir),
            "--speed",
            "1",
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, str] = {}
        """Every descendant seen so far (pid -> start time), to check and to kill at the end."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> SmartchargeUp:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                start_new_session=True,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def remember_children(self) -> None:
        assert self.proc is not None
        self.seen.update(descendants(self.proc.pid))

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"smartcharge up exited early with status {self.proc.returncode}")

    def broker_port(self) -> int:
        found = re.search(r"MQTT\s+mqtt://[\d.]+:(\d+)", self.log())
        assert found, "no MQTT url in the banner"
        return int(found.group(1))

    def cleanup(self) -> None:
        """Kill whatever is left: the session of `up`, its descendants, anything in tmp_path."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.remember_children()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        kill_all(self.seen)
        kill_all(processes_using(self.tmp_path))


@contextlib.contextmanager
def smartcharge_up(tmp_path: Path, http_port: int, *extra: str) -> Iterator[SmartchargeUp]:
    up = SmartchargeUp(tmp_path, http_port, *extra).start()
    try:
        yield up
    finally:
        up.cleanup()
        print(f"---- {up.log_path} ----\n{up.log()}")  # shown by pytest when the test fails


def all_available(up: SmartchargeUp) -> tuple[bool, str]:
    up.check_alive()
    status, body = get_json(f"{up.base}/api/v1/stations")
    if status != 200 or not isinstance(body, dict):
        return False, f"HTTP {status}: {body}"
    stations = body["stations"]
    statuses = [e["status"] for s in stations for e in s["evses"]]
    done = len(stations) == STATIONS and statuses == ["Available"] * (STATIONS * EVSES)
    return done, f"{len(stations)} stations, EVSE statuses {statuses}"


BROKERS = [
    pytest.param(
        "mosquitto",
        marks=pytest.mark.skipif(
            find_mosquitto() is None,
            reason="mosquitto binary not found: apt-get install mosquitto",
        ),
    ),
    "amqtt",
]


# -- smartcharge up --------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("broker", BROKERS)
def test_up_serves_the_whole_fleet_and_stops_cleanly_on_sigterm(
    broker: str, tmp_path: Path
) -> None:
    port = free_port()
    with smartcharge_up(tmp_path, port, "--broker", broker) as up:
        assert up.proc is not None
        started = time.monotonic()

        wait_until(lambda: all_available(up), READY_S, f"{STATIONS * EVSES} EVSEs Available")
        ready_s = time.monotonic() - started

        log = up.log()
        assert f"embedded {broker} broker listening" in log
        # the front door: where to go and with which login, and nothing misleading
        assert re.search(r"^  dashboard https://127\.0\.0\.1:\d+/dashboard ", log, re.M), log
        assert re.search(r"^  app       https://127\.0\.0\.1:\d+/app ", log, re.M), log
        assert re.search(r"^  demo operator +operator@\S+ +password \S+$", log, re.M), log
        assert "alembic" not in log
        assert f"Listening at: http://127.0.0.1:{port}," in log
        assert f"https://127.0.0.1:{port}" not in log
        front = urllib.request.Request(f"{up.base}/", method="GET")
        with pytest.raises(urllib.error.HTTPError) as redirect:
            urllib.request.build_opener(_NoRedirect).open(front, timeout=5)
        assert redirect.value.code == 302
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+/app", redirect.value.headers["Location"])
        broker_port = up.broker_port()
        assert listening(broker_port)
        up.remember_children()
        names = " ".join(still_running(up.seen))
        for part in ("gateway.cli csms", "simulator.fleet", broker):
            assert part in names, f"no {part} process among the children: {names}"
        stations = get_json(f"{up.base}/api/v1/stations")[1]["stations"]
        assert [s["id"] for s in stations] == [f"st-{n:03d}" for n in range(1, STATIONS + 1)]
        assert all(s["online"] for s in stations)

        stopping = time.monotonic()
        up.proc.send_signal(signal.SIGTERM)
        code = up.proc.wait(timeout=STOP_S)
        stop_s = time.monotonic() - stopping
        print(f"[{broker}] all Available after {ready_s:.1f} s, stopped in {stop_s:.1f} s")

        assert code == 0
        files = sorted((up.data_dir / "fleet" / "stations").glob("*.json"))
        assert [f.stem for f in files] == [s["id"] for s in stations]
        for f in files:
            json.loads(f.read_text())  # valid JSON, whole
        assert still_running(up.seen) == []
        assert not listening(port), "something still listens on the HTTP port"
        assert not listening(broker_port), "something still listens on the broker port"
        assert "smartcharge stopped" in up.log()


@pytest.mark.integration
@pytest.mark.slow
def test_up_with_ocpp_stations_runs_them_beside_the_mqtt_ones(tmp_path: Path) -> None:
    """``--ocpp-stations 2``: simulated OCPP 1.6J stations on the CSMS's own endpoint, shown by
    the same API as the MQTT ones (docs/ocpp.md)."""
    port = free_port()
    with smartcharge_up(tmp_path, port, "--ocpp-stations", "2") as up:
        assert up.proc is not None

        def both_kinds() -> tuple[bool, str]:
            up.check_alive()
            status, body = get_json(f"{up.base}/api/v1/stations")
            if status != 200 or not isinstance(body, dict):
                return False, f"HTTP {status}: {body}"
            seen = {s["id"]: [e["status"] for e in s["evses"]] for s in body["stations"]}
            ocpp = {k: v for k, v in seen.items() if k.startswith("oc-")}
            done = len(seen) == STATIONS + 2 and sorted(ocpp) == ["oc-001", "oc-002"]
            done = done and all(v == ["Available"] * EVSES for v in seen.values())
            return done, f"{seen}"

        wait_until(both_kinds, READY_S, "the MQTT and the OCPP stations Available")
        assert re.search(r"^  OCPP      ws://127\.0\.0\.1:\d+/ocpp/\{id\}", up.log(), re.M)
        up.remember_children()
        names = " ".join(still_running(up.seen))
        assert "gateway.ocpp_server" in names, names
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(timeout=STOP_S) == 0
        assert still_running(up.seen) == []


@pytest.mark.integration
@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_the_fleet_before_the_csms(tmp_path: Path) -> None:
    port = free_port()
    with smartcharge_up(tmp_path, port) as up:
        assert up.proc is not None
        wait_until(lambda: all_available(up), READY_S, f"{STATIONS * EVSES} EVSEs Available")
        up.remember_children()

        os.killpg(up.proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        code = up.proc.wait(timeout=STOP_S)

        assert code == 0
        assert still_running(up.seen) == []
        log = up.log()
        # Only `up` got the SIGINT; it stopped the fleet and only then the CSMS (SIGTERM).
        assert "Handling signal: int" not in log
        assert log.index("Fleet stopped") < log.index("Handling signal: term")
        assert len(list((up.data_dir / "fleet" / "stations").glob("*.json"))) == STATIONS


def test_up_on_a_taken_http_port_fails_fast_and_leaves_no_broker(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with smartcharge_up(tmp_path, port) as up:
            assert up.proc is not None
            started = time.monotonic()
            code = up.proc.wait(timeout=30)
            elapsed = time.monotonic() - started
            leftovers = still_running(processes_using(tmp_path))

    assert code != 0
    assert elapsed < 5, f"took {elapsed:.1f} s to fail"
    assert f"HTTP port {port} on 127.0.0.1 is already in use" in up.log()
    assert "Traceback" not in up.log()
    assert leftovers == []


# -- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [[], ["up"], ["csms"], ["fleet"], ["broker"]],
    ids=["smartcharge", "up", "csms", "fleet", "broker"],
)
def test_help_of_every_command_exits_0(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--help"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: smartcharge")
    assert result.stderr == ""
