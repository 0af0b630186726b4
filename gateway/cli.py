"""The ``smartcharge`` command: ``up``, ``csms``, ``fleet`` and ``broker``.

``smartcharge up`` is the zero-setup run: an embedded broker (Mosquitto child
process, or amqtt in its own process), the CSMS with its gateway under gunicorn,
and a simulated fleet, each in its own process (CPU-heavy simulation stays out
of the actor process). Ctrl-C stops them in reverse order: the fleet first (its
stations save their JSON files and say goodbye), then the CSMS, then the broker.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from gateway.broker_accounts import CSMS_PASSWORD_FILE, CSMS_USER

__all__ = ["main"]

log = logging.getLogger("smartcharge")


def _add_csms_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--http-host", default="127.0.0.1", help="address to serve HTTP on")
    p.add_argument("--http-port", type=int, default=8080, help="HTTP port (public reads)")
    p.add_argument(
        "--https-port",
        type=int,
        default=8443,
        help="HTTPS port: writes and every call with a token",
    )
    p.add_argument(
        "--certfile",
        type=Path,
        default=None,
        help="TLS certificate (default: a self-signed one made in the data dir)",
    )
    p.add_argument("--keyfile", type=Path, default=None, help="TLS private key")
    p.add_argument(
        "--db-url",
        default=os.environ.get("SMARTCHARGE_DB_URL"),
        help="postgresql://... (default: SQLite in the data dir; env SMARTCHARGE_DB_URL)",
    )
    p.add_argument(
        "--threads", type=int, default=32, help="gunicorn threads (SSE streams hold one)"
    )
    p.add_argument("--keepalive", type=int, default=10, help="MQTT keepalive in seconds")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    _add_backend_args(p)


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    """Backends (docs/firebase.md): local or Firebase accounts, SQL or RTDB user data."""
    p.add_argument(
        "--auth",
        default="local",
        choices=["local", "firebase"],
        help="accounts: local (argon2 + JWT in the database) or Firebase Authentication",
    )
    p.add_argument(
        "--user-data",
        default="sqlite",
        choices=["sqlite", "firebase"],
        help="sessions and notifications: the SQL database (SQLite or --db-url) or the"
        " Firebase Realtime Database",
    )
    p.add_argument(
        "--firebase-project",
        default=os.environ.get("GOOGLE_CLOUD_PROJECT"),
        help="Firebase project id (env GOOGLE_CLOUD_PROJECT); credentials come from"
        " GOOGLE_APPLICATION_CREDENTIALS",
    )
    p.add_argument(
        "--firebase-api-key",
        default=os.environ.get("FIREBASE_API_KEY"),
        help="web API key, for password sign-in with --auth firebase (env FIREBASE_API_KEY)",
    )
    p.add_argument(
        "--firebase-database-url",
        default=os.environ.get("FIREBASE_DATABASE_URL"),
        help="Realtime Database URL for --user-data firebase (env FIREBASE_DATABASE_URL)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartcharge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run everything on embedded defaults (broker, CSMS, fleet)")
    up.add_argument("--stations", type=int, default=10)
    up.add_argument("--evses-per-station", type=int, default=2)
    up.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    up.add_argument("--seed", type=int, default=1)
    up.add_argument("--data-dir", type=Path, default=Path("./var"))
    up.add_argument(
        "--mqtt-url", default=None, help="use this broker instead of starting an embedded one"
    )
    up.add_argument(
        "--broker",
        default="auto",
        choices=["auto", "mosquitto", "amqtt"],
        help="which embedded broker to start (auto: Mosquitto if installed)",
    )
    _add_csms_args(up)

    csms = sub.add_parser("csms", help="run the CSMS and its gateway against a broker")
    csms.add_argument(
        "--mqtt-url",
        default="mqtt://127.0.0.1:1883",
        help="mqtt[s]://[user@]host:port (never a password: see --mqtt-password-file)",
    )
    csms.add_argument(
        "--mqtt-password-file",
        type=Path,
        default=None,
        help="the broker password (first line); else env SMARTCHARGE_MQTT_PASSWORD",
    )
    csms.add_argument("--mqtt-ca-file", type=Path, default=None, help="CA of an mqtts:// broker")
    csms.add_argument("--data-dir", type=Path, default=Path("./var"))
    csms.add_argument(
        "--demo-users",
        action="store_true",
        help="create a demo driver and operator (logins in the data dir)",
    )
    _add_csms_args(csms)

    sub.add_parser(
        "fleet", help="run a simulated station fleet (see 'smartcharge fleet -h')", add_help=False
    )
    sub.add_parser("broker", help="run the embedded MQTT broker alone", add_help=False)
    sub.add_parser("admin", help="operator commands (see 'smartcharge admin -h')", add_help=False)
    sub.add_parser(
        "stations", help="station credentials: add, list, revoke (see -h)", add_help=False
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # fleet and broker own their arguments: hand the rest over untouched.
    if argv and argv[0] == "fleet":
        from simulator.fleet import main as fleet_main

        return fleet_main(argv[1:])
    if argv and argv[0] == "broker":
        from gateway.broker import main as broker_main

        return broker_main(argv[1:])
    if argv and argv[0] == "stations":
        from gateway.stations import main as stations_main

        return stations_main(argv[1:])
    if argv and argv[0] == "admin":
        from gateway.admin import main as admin_main

        return admin_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="[%(asctime)s] %(name)s %(levelname)s %(message)s",
        datefmt="%m-%d %H:%M:%S",
    )
    if args.command == "csms":
        return run_csms(args)
    return run_up(args)


def run_csms(args: argparse.Namespace) -> int:
    from actors.system import CsmsConfig
    from gateway.firebase_auth import EmulatorOutsideTests, refuse_emulators_outside_tests
    from gateway.lease import CsmsLeaseRefused, take_csms_lease
    from gateway.server import GatewaySettings, serve
    from protocol.mqtt_settings import parse_mqtt_url

    if (args.certfile is None) != (args.keyfile is None):
        raise SystemExit("smartcharge csms: give both --certfile and --keyfile, or neither")
    try:  # before the lease creates the database (the worker checks again)
        refuse_emulators_outside_tests()
    except EmulatorOutsideTests as exc:
        print(f"smartcharge csms: {exc}", file=sys.stderr)
        return 3
    try:  # before anything connects to the broker (gateway/lease.py)
        lease = take_csms_lease(args.db_url, args.data_dir)
    except CsmsLeaseRefused as exc:
        print(f"smartcharge csms: refusing to start: {exc}", file=sys.stderr)
        return 3
    try:
        mqtt = parse_mqtt_url(
            args.mqtt_url, password_file=args.mqtt_password_file, ca_file=args.mqtt_ca_file
        )
    except (ValueError, OSError) as exc:
        raise SystemExit(f"smartcharge csms: {exc}") from None
    config = CsmsConfig(mqtt_url=mqtt, keepalive=args.keepalive)
    serve(
        config,
        GatewaySettings(
            http_host=args.http_host,
            http_port=args.http_port,
            https_port=args.https_port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            data_dir=args.data_dir,
            db_url=args.db_url,
            demo_users=args.demo_users,
            threads=args.threads,
            loglevel=args.log_level,
            auth_backend=args.auth,
            user_data=args.user_data,
            firebase_project=args.firebase_project,
            firebase_api_key=args.firebase_api_key,
            firebase_database_url=args.firebase_database_url,
            lease=lease,
        ),
    )
    return 0


class _Stop:
    """Set by SIGINT/SIGTERM/SIGHUP; the main thread waits on it.

    The children run in their own process groups (see ``_spawn``), so a Ctrl-C or a closed
    terminal reaches only this process, which then stops them in order.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGHUP, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def run_up(args: argparse.Namespace) -> int:
    from gateway.broker import EmbeddedBroker

    data_dir: Path = args.data_dir.resolve()
    for kind, port in (("HTTP", args.http_port), ("HTTPS", args.https_port)):
        if not _can_listen(args.http_host, port):
            # Fail before starting anything (gunicorn alone would retry for 5 s, then exit 1).
            raise SystemExit(
                f"smartcharge up: {kind} port {port} on {args.http_host} is already in use"
                f" (another smartcharge?); pick another one with --{kind.lower()}-port"
            )
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = _Stop()
    broker = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        url = args.mqtt_url
        csms_mqtt: list[str] = []
        if url is None:
            auth_dir = _provision(args, data_dir)
            broker = EmbeddedBroker(
                port=None,
                data_dir=data_dir / "broker",
                prefer=args.broker,
                auth_dir=auth_dir,
                tls_port=_tls_port(args.http_host),
            )
            broker.start()
            url = broker.url
            log.info(
                "embedded %s broker listening at %s and %s (TLS), no anonymous clients",
                broker.kind,
                url,
                broker.tls_url,
            )
            csms_url = f"mqtt://{CSMS_USER}@{broker.host}:{broker.port}"
            csms_mqtt = ["--mqtt-password-file", str(data_dir / "csms" / CSMS_PASSWORD_FILE)]
        else:
            csms_url = url
        children.append(("csms", _spawn_csms(args, csms_url, data_dir, csms_mqtt)))
        base = f"http://{args.http_host}:{args.http_port}"
        if not _wait_http(f"{base}/healthz", children[-1][1], stop.event, timeout_s=60.0):
            return 0  # stopped while the CSMS was starting
        children.append(("fleet", _spawn_fleet(args, url, data_dir)))
        _banner(base, url, args, data_dir)
        while not stop.event.wait(0.5):
            for name, proc in children:
                if proc.poll() is not None:
                    log.error("%s exited with status %s; shutting down", name, proc.returncode)
                    stop.event.set()
        return 0
    finally:
        for name, proc in reversed(children):
            _terminate(name, proc)
        if broker is not None:
            broker.stop()
        log.info("smartcharge stopped")


def _provision(args: argparse.Namespace, data_dir: Path) -> Path:
    """First run of ``up``: the CSMS's broker account and every demo station's (their
    passwords in ``<data-dir>/fleet/stations/<id>.password``); later runs reuse them. Returns
    the broker's auth dir."""
    from gateway.stations import StationProvisioner
    from simulator.fleet_config import generate_fleet
    from simulator.mqtt_station import password_path
    from storage import open_storage

    csms_dir = data_dir / "csms"
    stations = generate_fleet(
        stations=args.stations, evses_per_station=args.evses_per_station, seed=args.seed
    )
    with open_storage(args.db_url, data_dir=csms_dir) as storage:
        provisioner = StationProvisioner(storage, csms_dir)
        added = [
            s.id
            for s in stations
            if provisioner.ensure(s.id, password_path(data_dir / "fleet", s.id))
        ]
        provisioner.sync()
    if added:
        log.info("provisioned broker credentials for %d stations", len(added))
    assert provisioner.auth_dir is not None
    return provisioner.auth_dir


def _tls_port(host: str) -> int:
    """8883 when free, else any free port."""
    return 8883 if _can_listen(host, 8883) else 0


def _can_listen(host: str, port: int) -> bool:
    """True when nothing listens on host:port (SO_REUSEADDR, as gunicorn: TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
    # Own process group: a terminal's Ctrl-C (SIGINT to the foreground group) reaches only
    # `smartcharge up`, which stops the fleet first, then the CSMS, then the broker.
    return subprocess.Popen(cmd, process_group=0)


def _spawn_csms(
    args: argparse.Namespace, url: str, data_dir: Path, mqtt_options: list[str]
) -> subprocess.Popen[bytes]:
    return _spawn(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "csms",
            "--mqtt-url",
            url,
            *mqtt_options,
            "--http-host",
            args.http_host,
            "--http-port",
            str(args.http_port),
            "--https-port",
            str(args.https_port),
            "--keepalive",
            str(args.keepalive),
            "--data-dir",
            str(data_dir / "csms"),
            "--log-level",
            args.log_level,
            "--threads",
            str(args.threads),
            "--demo-users",
            *(["--db-url", args.db_url] if args.db_url else []),
            *_backend_argv(args),
            *(
                ["--certfile", str(args.certfile), "--keyfile", str(args.keyfile)]
                if args.certfile and args.keyfile
                else []
            ),
        ]
    )


def _backend_argv(args: argparse.Namespace) -> list[str]:
    """The backend options of ``up``, for its ``csms`` child (the API key goes by argv only
    when given on the command line; the child also reads FIREBASE_API_KEY)."""
    argv = ["--auth", args.auth, "--user-data", args.user_data]
    for option in ("firebase_project", "firebase_api_key", "firebase_database_url"):
        value = getattr(args, option)
        if value:
            argv += [f"--{option.replace('_', '-')}", value]
    return argv


def _spawn_fleet(args: argparse.Namespace, url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    return _spawn(
        [
            sys.executable,
            "-m",
            "simulator.fleet",
            "--stations",
            str(args.stations),
            "--evses-per-station",
            str(args.evses_per_station),
            "--mqtt-url",
            url,
            "--data-dir",
            str(data_dir / "fleet"),
            "--seed",
            str(args.seed),
            "--speed",
            str(args.speed),
            "--keepalive",
            str(args.keepalive),
        ]
    )


def _wait_http(
    url: str, proc: subprocess.Popen[bytes], stop: threading.Event, timeout_s: float
) -> bool:
    """True once ``url`` answers 200; False if ``stop`` is set first (Ctrl-C while starting)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the CSMS exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if stop.wait(0.1):
            return False
    raise SystemExit(f"the CSMS did not answer on {url} within {timeout_s:.0f} s")


def _terminate(name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in 20 s; killing it", name)
            proc.kill()
            proc.wait()


def _banner(base: str, url: str, args: argparse.Namespace, data_dir: Path) -> None:
    secure = f"https://{args.http_host}:{args.https_port}"
    lines = [
        f"\nsmartcharge is up: {args.stations} stations x {args.evses_per_station} EVSEs"
        f" (speed x{args.speed:g})",
        f"  stations  {base}/api/v1/stations",
        f"  API       {secure}/api/v1  (writes and logins; self-signed certificate"
        f" in {data_dir / 'csms' / 'tls'})",
        f"  OpenAPI   {base}/openapi.json",
        f"  health    {base}/healthz",
        f"  MQTT      {url}",
        f"  data      {args.data_dir}",
    ]
    try:
        logins = json.loads((data_dir / "csms" / "demo-logins.json").read_text())
        for role, login in sorted(logins.items()):
            lines.append(f"  demo {role:<9}{login['email']}  password {login['password']}")
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    print("\n".join([*lines, "Press Ctrl-C to stop.\n"]), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
