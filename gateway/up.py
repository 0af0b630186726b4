"""``smartcharge up``: the embedded broker, the CSMS with its gateway and a simulated fleet,
each in its own process, on embedded defaults; Ctrl-C stops them in reverse order (the fleet
first, so its stations save their JSON files and say goodbye, then the CSMS, then the broker).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from gateway.broker_accounts import (
    CSMS_PASSWORD_FILE,
    CSMS_USER,
    GATEWAY_PASSWORD_FILE,
    GATEWAY_USER,
)
from gateway.broker_probe import free_port, port_is_free
from gateway.ocpp_cli import ocpp_banner, provision_ocpp, spawn_ocpp_fleet
from storage import SiteRecord, private_dir

__all__ = ["run_up"]

log = logging.getLogger("smartcharge")


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
        if not port_is_free(port, args.http_host):
            # Fail before starting anything (gunicorn alone would retry for 5 s, then exit 1).
            raise SystemExit(
                f"smartcharge up: {kind} port {port} on {args.http_host} is already in use"
                f" (another smartcharge?); pick another one with --{kind.lower()}-port"
            )
    private_dir(data_dir)  # 0700: the database, keys and demo logins live below
    if args.ocpp_stations > 0:
        if not args.ocpp_port:
            args.ocpp_port = free_port(args.http_host)
        provision_ocpp(args, data_dir)
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
            gateway_url = f"mqtt://{GATEWAY_USER}@{broker.host}:{broker.port}"
            gateway_mqtt = [
                "--mqtt-password-file",
                str(data_dir / "csms" / GATEWAY_PASSWORD_FILE),
            ]
        else:
            csms_url = gateway_url = url
            gateway_mqtt = []
        base = f"http://{args.http_host}:{args.http_port}"
        if args.workers == 0:  # the gateway in the node's own process
            children.append(("csms", _spawn_csms(args, csms_url, data_dir, csms_mqtt)))
        else:
            node_port = free_port(args.http_host)
            node = _spawn_csms(
                args, csms_url, data_dir, [*csms_mqtt, "--serve-gateways"], ports=(node_port, 0)
            )
            children.append(("csms", node))
            node_health = f"http://{args.http_host}:{node_port}/healthz"
            if not _wait_http(node_health, node, stop.event, timeout_s=60.0):
                return 0  # stopped while the node was starting
            children.append(("gateway", _spawn_gateway(args, gateway_url, data_dir, gateway_mqtt)))
        if not _wait_http(f"{base}/healthz", children[-1][1], stop.event, timeout_s=60.0):
            return 0  # stopped while the CSMS was starting
        children.append(("fleet", _spawn_fleet(args, url, data_dir)))
        if args.ocpp_stations > 0:
            children.append(("ocpp fleet", spawn_ocpp_fleet(args, url, data_dir)))
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
        if not storage.sites.all():  # first run: the demo stations in two sites
            for site in demo_sites(stations):
                storage.sites.put(site)
                log.info(
                    "demo site %s: %d stations, %.0f kW",
                    site.id,
                    len(site.station_ids),
                    site.limit_w / 1000,
                )
    if added:
        log.info("provisioned broker credentials for %d stations", len(added))
    assert provisioner.auth_dir is not None
    return provisioner.auth_dir


def demo_sites(stations: Sequence[Any]) -> list[SiteRecord]:
    """Smart charging in the demo: the first half of the stations behind one grid connection
    of a third of their EVSEs' power, 07:00-19:00 (twice that at night), the rest behind one
    of half their power."""
    half = (len(stations) + 1) // 2
    groups = [
        ("depot", "Depot (day/night limit)", stations[:half]),
        ("mall", "Mall", stations[half:]),
    ]
    out = []
    for site_id, name, members in groups:
        if not members:
            continue
        total = sum(e.max_power_w for s in members for e in s.evses)
        if site_id == "depot":
            day = round(total / 3, -3) or 1_000.0
            schedule: tuple[tuple[int, float], ...] = ((7 * 60, day), (19 * 60, 2 * day))
            limit = day
        else:
            schedule, limit = (), round(total / 2, -3) or 1_000.0
        out.append(
            SiteRecord(
                id=site_id,
                name=name,
                limit_w=limit,
                schedule=schedule,
                station_ids=tuple(s.id for s in members),
            )
        )
    return out


def _tls_port(host: str) -> int:
    """8883 when free, else any free port."""
    return 8883 if port_is_free(8883, host) else 0


def _spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
    # Own process group: a terminal's Ctrl-C (SIGINT to the foreground group) reaches only
    # `smartcharge up`, which stops the fleet first, then the CSMS, then the broker.
    return subprocess.Popen(cmd, process_group=0)


def _spawn_csms(
    args: argparse.Namespace,
    url: str,
    data_dir: Path,
    mqtt_options: list[str],
    ports: tuple[int, int] | None = None,
) -> subprocess.Popen[bytes]:
    """The CSMS node; ``ports``: its HTTP and HTTPS ports (0: none) instead of the public ones
    (the node's own, for its health and metrics, when gateways serve the public ones)."""
    http_port, https_port = ports or (args.http_port, args.https_port)
    return _spawn(
        _server_argv(
            "csms",
            args,
            url,
            data_dir,
            [
                *mqtt_options,
                "--max-sessions-per-driver",
                str(args.max_sessions_per_driver),
                "--demo-users",
                *(["--ocpp-port", str(args.ocpp_port)] if args.ocpp_port else []),
                *(["--ocpp-tls"] if args.ocpp_tls else []),
            ],
            (http_port, https_port),
        )
    )


def _spawn_gateway(
    args: argparse.Namespace, url: str, data_dir: Path, mqtt_options: list[str]
) -> subprocess.Popen[bytes]:
    return _spawn(
        _server_argv(
            "gateway",
            args,
            url,
            data_dir,
            [*mqtt_options, "--workers", str(args.workers)],
            (args.http_port, args.https_port),
        )
    )


def _server_argv(
    command: str,
    args: argparse.Namespace,
    url: str,
    data_dir: Path,
    options: list[str],
    ports: tuple[int, int],
) -> list[str]:
    """``smartcharge csms`` or ``smartcharge gateway`` with ``up``'s shared options."""
    return [
        sys.executable,
        "-m",
        "gateway.cli",
        command,
        "--mqtt-url",
        url,
        *options,
        "--http-host",
        args.http_host,
        "--http-port",
        str(ports[0]),
        "--https-port",
        str(ports[1]),
        "--keepalive",
        str(args.keepalive),
        "--data-dir",
        str(data_dir / "csms"),
        "--log-level",
        args.log_level,
        "--threads",
        str(args.threads),
        *(["--db-url", args.db_url] if args.db_url else []),
        *_backend_argv(args),
        *(
            ["--certfile", str(args.certfile), "--keyfile", str(args.keyfile)]
            if args.certfile and args.keyfile
            else []
        ),
    ]


def _backend_argv(args: argparse.Namespace) -> list[str]:
    """The backend options of ``up``, for its ``csms`` child (the API key goes by argv only
    when given on the command line; the child also reads FIREBASE_API_KEY)."""
    argv = ["--auth", args.auth, "--user-data", args.user_data]
    for option in (
        "firebase_project",
        "firebase_api_key",
        "firebase_database_url",
        "smtp_url",
        "public_url",
        "map_tiles",
        "map_attribution",
    ):
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
        f"  dashboard {secure}/dashboard  (operators; self-signed certificate: accept it once)",
        f"  app       {secure}/app  (drivers, phone first; {base}/ leads there too)",
        f"  stations  {base}/api/v1/stations",
        f"  API       {secure}/api/v1  (writes and logins; self-signed certificate"
        f" in {data_dir / 'csms' / 'tls'})",
        f"  OpenAPI   {base}/openapi.json",
        f"  health    {base}/healthz",
        f"  MQTT      {url}",
        *ocpp_banner(args),
        f"  data      {args.data_dir}",
    ]
    try:
        logins = json.loads((data_dir / "csms" / "demo-logins.json").read_text())
        for role, login in sorted(logins.items()):
            lines.append(f"  demo {role:<9}{login['email']}  password {login['password']}")
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    print("\n".join([*lines, "Press Ctrl-C to stop.\n"]), flush=True)
