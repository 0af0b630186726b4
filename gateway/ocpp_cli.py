"""The OCPP endpoint on the command line: the options of ``smartcharge csms`` and ``up``, the
translator started by ``csms``, and the simulated OCPP stations of ``up --ocpp-stations``
(``docs/ocpp.md``)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "OCPP_PREFIX",
    "add_ocpp_args",
    "ocpp_banner",
    "provision_ocpp",
    "spawn_ocpp_fleet",
    "start_ocpp",
]


def add_ocpp_args(p: argparse.ArgumentParser, *, simulated: bool = False) -> None:
    """``--ocpp-port``, ``--ocpp-tls`` (``csms`` and ``up``); ``--ocpp-stations`` (``up``)."""
    p.add_argument(
        "--ocpp-port",
        type=int,
        default=0,
        help="serve OCPP 1.6J charge points at ws://HOST:PORT/ocpp/{id} (0: no OCPP; docs/ocpp.md)",
    )
    p.add_argument(
        "--ocpp-tls",
        action="store_true",
        help="OCPP over TLS only (wss://, security profile 2) with the HTTPS certificate"
        " (--certfile/--keyfile, or the self-signed one in the data dir)",
    )
    if simulated:
        p.add_argument(
            "--ocpp-stations",
            type=int,
            default=0,
            help="also simulate N stations speaking OCPP 1.6J (ids oc-001...) on --ocpp-port"
            " (a free port if not given)",
        )


def start_ocpp(args: argparse.Namespace, mqtt: Any) -> Any:
    """The OCPP translator (``gateway.ocpp_server``) as a child on a port bound here,
    started again if it dies."""
    from gateway.ocpp_server import TranslatorProcess, bind, spawn

    try:
        sock = bind(args.http_host, args.ocpp_port)
    except OSError as exc:
        raise SystemExit(f"smartcharge csms: --ocpp-port {args.ocpp_port}: {exc}") from None
    tls = None
    if args.ocpp_tls:
        from gateway.tls import ensure_self_signed_cert

        if args.certfile is not None and args.keyfile is not None:
            tls = (args.certfile, args.keyfile)
        else:
            args.data_dir.mkdir(parents=True, exist_ok=True)
            tls = ensure_self_signed_cert(args.data_dir)
    sessions = getattr(args, "max_sessions_per_driver", 1)
    return TranslatorProcess(
        sock,
        lambda: spawn(
            sock, mqtt, args.data_dir, args.db_url, tls=tls, max_sessions_per_driver=sessions
        ),
    )


OCPP_PREFIX = "oc"


def provision_ocpp(args: argparse.Namespace, data_dir: Path) -> None:
    """The simulated OCPP stations' credentials (``oc-001``...; passwords in
    ``<data-dir>/fleet-ocpp/stations/<id>.password``): the same as an MQTT station's."""
    from gateway.stations import StationProvisioner
    from simulator.fleet_config import generate_fleet
    from simulator.mqtt_station import password_path
    from storage import open_storage

    csms_dir = data_dir / "csms"
    stations = generate_fleet(
        stations=args.ocpp_stations,
        evses_per_station=args.evses_per_station,
        seed=args.seed + 1,
        prefix=OCPP_PREFIX,
    )
    with open_storage(args.db_url, data_dir=csms_dir) as storage:
        provisioner = StationProvisioner(storage, csms_dir)
        for station in stations:
            provisioner.ensure(station.id, password_path(data_dir / "fleet-ocpp", station.id))
        provisioner.sync()


def spawn_ocpp_fleet(args: argparse.Namespace, url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    """``smartcharge fleet --protocol ocpp1.6`` against the CSMS's own OCPP endpoint."""
    scheme = "wss" if args.ocpp_tls else "ws"
    tls = []
    if args.ocpp_tls:
        tls = ["--ocpp-ca-file", str(args.certfile or data_dir / "csms" / "tls" / "cert.pem")]
    # its own process group, as up's other children: Ctrl-C reaches only `smartcharge up`
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.fleet",
            "--protocol",
            "ocpp1.6",
            "--ocpp-url",
            f"{scheme}://{args.http_host}:{args.ocpp_port}/ocpp",
            *tls,
            "--stations",
            str(args.ocpp_stations),
            "--evses-per-station",
            str(args.evses_per_station),
            "--station-prefix",
            OCPP_PREFIX,
            "--mqtt-url",
            url,
            "--data-dir",
            str(data_dir / "fleet-ocpp"),
            "--seed",
            str(args.seed + 1),
            "--speed",
            str(args.speed),
        ],
        process_group=0,
    )


def ocpp_banner(args: argparse.Namespace) -> list[str]:
    """``up``'s banner line for the OCPP endpoint, if it runs one."""
    if not args.ocpp_port:
        return []
    scheme = "wss" if args.ocpp_tls else "ws"
    return [
        f"  OCPP      {scheme}://{args.http_host}:{args.ocpp_port}/ocpp/{{id}}"
        f"  ({args.ocpp_stations} simulated OCPP stations)"
    ]
