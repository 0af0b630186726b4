"""The ``smartcharge`` command: ``up``, ``csms``, ``fleet`` and ``broker``.

``smartcharge up`` is the zero-setup run: an embedded broker (Mosquitto child
process, or amqtt in its own process), the CSMS with its gateway under gunicorn,
and a simulated fleet, each in its own process (CPU-heavy simulation stays out
of the actor process). Ctrl-C stops them in reverse order: the fleet first (its
stations save their JSON files and say goodbye), then the CSMS, then the broker.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.broker_accounts import GATEWAY_SLOTS, NODE_USER
from gateway.ocpp_cli import add_ocpp_args, start_ocpp

__all__ = ["main"]

log = logging.getLogger("smartcharge")


def _add_csms_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--http-host", default="127.0.0.1", help="address to serve HTTP on")
    p.add_argument("--http-port", type=int, default=8080, help="HTTP port (public reads)")
    p.add_argument(
        "--https-port",
        type=int,
        default=8443,
        help="HTTPS port: writes and every call with a token (0: none, reads only)",
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
        "--threads",
        type=int,
        default=128,
        help="threads per gateway worker for blocking work (storage, commands); an event"
        " stream holds none",
    )
    p.add_argument("--keepalive", type=int, default=10, help="MQTT keepalive in seconds")
    p.add_argument(
        "--max-sessions-per-driver",
        type=_at_least_one,
        default=1,
        metavar="N",
        help="sessions one driver may run at once (default 1; operators are not limited)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--smtp-url",
        default=os.environ.get("SMARTCHARGE_SMTP_URL"),
        help="mail sign-up confirmations and password resets through this SMTP server:"
        " smtp[s|+starttls]://[user@]host:port[?from=addr] (password: env"
        " SMARTCHARGE_SMTP_PASSWORD; env SMARTCHARGE_SMTP_URL)",
    )
    p.add_argument(
        "--public-url",
        default=os.environ.get("SMARTCHARGE_PUBLIC_URL"),
        help="where people reach the gateway, for mailed links (default: the HTTPS URL;"
        " env SMARTCHARGE_PUBLIC_URL)",
    )
    p.add_argument(
        "--map-tiles",
        default=os.environ.get("SMARTCHARGE_MAP_TILES"),
        metavar="URL",
        help="tile URL template of the pages' maps, http(s) with {z}, {x} and {y}; 'none': no"
        " tiles, stations only (default: https://tile.openstreetmap.org/{z}/{x}/{y}.png;"
        " env SMARTCHARGE_MAP_TILES)",
    )
    p.add_argument(
        "--map-attribution",
        default=os.environ.get("SMARTCHARGE_MAP_ATTRIBUTION"),
        metavar="TEXT",
        help="the tiles' attribution shown on the maps (default for OpenStreetMap's tiles:"
        " '© OpenStreetMap contributors'; env SMARTCHARGE_MAP_ATTRIBUTION)",
    )
    _add_backend_args(p)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


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
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="gateway worker processes apart from the CSMS node (default: the number of"
        " cores; 0: the gateway in the node's own process)",
    )
    up.add_argument(
        "--broker",
        default="auto",
        choices=["auto", "mosquitto", "amqtt"],
        help="which embedded broker to start (auto: Mosquitto if installed)",
    )
    _add_csms_args(up)
    add_ocpp_args(up, simulated=True)

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
    csms.add_argument(
        "--serve-gateways",
        action="store_true",
        help="publish the read model and answer requests for 'smartcharge gateway' workers"
        " (docs/node-protocol.md); on a broker with accounts the node connects as csms-node",
    )
    _add_csms_args(csms)
    add_ocpp_args(csms)

    gateway = sub.add_parser(
        "gateway", help="run gateway workers apart from the CSMS node (docs/node-protocol.md)"
    )
    gateway.add_argument(
        "--mqtt-url",
        default="mqtt://127.0.0.1:1883",
        help="mqtt[s]://[csms-gw@]host:port; with a user, each worker connects as csms-gw-<n>",
    )
    gateway.add_argument(
        "--mqtt-password-file",
        type=Path,
        default=None,
        help="the gateway accounts' password (first line; <node data dir>/gateway.password)",
    )
    gateway.add_argument("--mqtt-ca-file", type=Path, default=None, help="CA of an mqtts:// broker")
    gateway.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./var"),
        help="the node's data dir (secret.key signs tokens; SQLite; the TLS certificate)",
    )
    gateway.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="gateway worker processes (default: the number of cores)",
    )
    _add_csms_args(gateway)

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
        from gateway.broker_cli import main as broker_main

        return broker_main(argv[1:])
    if argv and argv[0] == "stations":
        from gateway.stations import main as stations_main

        return stations_main(argv[1:])
    if argv and argv[0] == "admin":
        from gateway.admin import main as admin_main

        return admin_main(argv[1:])
    args = build_parser().parse_args(argv)
    map_tiles_setting(args)  # a bad --map-tiles stops here, before anything starts
    logging.basicConfig(
        level=args.log_level.upper(),
        format="[%(asctime)s] %(name)s %(levelname)s %(message)s",
        datefmt="%m-%d %H:%M:%S",
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # alembic (which dataset runs on every connect) logs each of its plugins at INFO:
        # start-up chatter that says nothing about this system
        logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command == "csms":
        return run_csms(args)
    if args.command == "gateway":
        return run_gateway(args)
    from gateway.up import run_up

    return run_up(args)


def run_csms(args: argparse.Namespace) -> int:
    from actors.system import CsmsConfig
    from gateway.firebase_auth import EmulatorOutsideTests, refuse_emulators_outside_tests
    from gateway.lease import CsmsLeaseRefused, take_csms_lease
    from gateway.server import serve
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
    node_mqtt = None
    if args.serve_gateways and mqtt.username is not None:
        node_mqtt = replace(mqtt, username=NODE_USER, client_id=NODE_USER)
    config = CsmsConfig(
        mqtt_url=mqtt,
        keepalive=args.keepalive,
        serve_gateways=args.serve_gateways,
        node_mqtt=node_mqtt,
        max_sessions_per_driver=args.max_sessions_per_driver,
    )
    settings = _settings(args, lease=lease, demo_users=args.demo_users)
    ocpp = start_ocpp(args, mqtt) if args.ocpp_port else None
    try:
        serve(config, settings)
    finally:
        if ocpp is not None:
            ocpp.stop()
    return 0


def run_gateway(args: argparse.Namespace) -> int:
    from gateway.gateway_server import serve_gateways
    from protocol.mqtt_settings import parse_mqtt_url

    if (args.certfile is None) != (args.keyfile is None):
        raise SystemExit("smartcharge gateway: give both --certfile and --keyfile, or neither")
    if not 1 <= args.workers <= GATEWAY_SLOTS:
        raise SystemExit(f"smartcharge gateway: --workers must be 1 to {GATEWAY_SLOTS}")
    try:
        mqtt = parse_mqtt_url(
            args.mqtt_url, password_file=args.mqtt_password_file, ca_file=args.mqtt_ca_file
        )
    except (ValueError, OSError) as exc:
        raise SystemExit(f"smartcharge gateway: {exc}") from None
    serve_gateways(_settings(args, lease=None, demo_users=False), mqtt, workers=args.workers)
    return 0


def map_tiles_setting(args: argparse.Namespace) -> Any:
    """The checked ``--map-tiles``/``--map-attribution`` (a clear error and exit if bad)."""
    from gateway.map_tiles import parse_map_tiles

    try:
        return parse_map_tiles(args.map_tiles, args.map_attribution)
    except ValueError as exc:
        raise SystemExit(f"smartcharge {args.command}: --map-tiles: {exc}") from None


def _settings(args: argparse.Namespace, *, lease: Any, demo_users: bool) -> Any:
    from gateway.mail import parse_smtp_url
    from gateway.server import GatewaySettings

    if args.smtp_url is not None:  # refuse a bad one before starting anything
        if args.auth != "local":
            raise SystemExit(f"smartcharge {args.command}: --smtp-url needs --auth local")
        try:
            parse_smtp_url(args.smtp_url)
        except ValueError as exc:
            raise SystemExit(f"smartcharge {args.command}: --smtp-url: {exc}") from None
    return GatewaySettings(
        http_host=args.http_host,
        http_port=args.http_port,
        https_port=args.https_port or None,
        certfile=args.certfile,
        keyfile=args.keyfile,
        data_dir=args.data_dir,
        db_url=args.db_url,
        demo_users=demo_users,
        threads=args.threads,
        loglevel=args.log_level,
        auth_backend=args.auth,
        user_data=args.user_data,
        firebase_project=args.firebase_project,
        firebase_api_key=args.firebase_api_key,
        firebase_database_url=args.firebase_database_url,
        lease=lease,
        smtp_url=args.smtp_url,
        public_url=args.public_url,
        map_tiles=map_tiles_setting(args),
    )


if __name__ == "__main__":
    raise SystemExit(main())
