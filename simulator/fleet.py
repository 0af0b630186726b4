"""``smartcharge fleet``: run N simulated stations against an MQTT broker.

Usage::

    python -m simulator.fleet --stations 20 --evses-per-station 2 \\
        --mqtt-url mqtt://localhost:1883 --data-dir var/sim --seed 1 --speed 10

Thread map: the main thread launches the stations, then waits for Ctrl-C or
SIGTERM and shuts them down; each station has its own paho network thread (its
commands); one shared :class:`FleetTicker` thread drives the physics of every
station, so 200 stations cost 201 threads, not 400. Station state survives a
restart in ``<data-dir>/stations/<id>.json``; the fleet's :class:`SimClock`
resumes from the latest saved time so simulated time never goes backwards.
Wire timestamps, boot epochs and command expiry use the real wall clock
(:class:`WallClock`), so ``--speed`` never stamps a report in the CSMS's future.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from protocol import StationDescriptor
from protocol.mqtt_settings import MqttSettings, parse_mqtt_url, read_password_file
from simulator.clock import SimClock, WallClock
from simulator.fleet_config import (
    DEFAULT_CENTRE,
    FleetConfigError,
    generate_fleet,
    load_fleet_config,
    parse_centre,
)
from simulator.mqtt_station import MqttStation, password_path, station_settings
from simulator.ocpp_station import OcppLoop, OcppStation
from simulator.persistence import SnapshotError, StationStore
from simulator.station import StationSimulator

__all__ = ["FleetTicker", "LaunchProgress", "build_parser", "configure_logging", "main"]

log = logging.getLogger("simulator.fleet")


def configure_logging(level: int = logging.INFO) -> None:
    """Log lines like ``[04-01 17:58:42] Evse kkk executing charge`` (unless the caller,
    e.g. the ``smartcharge`` CLI or pytest, has already configured logging)."""
    logging.basicConfig(level=level, format="[%(asctime)s] %(message)s", datefmt="%m-%d %H:%M:%S")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartcharge fleet", description=__doc__.split("\n")[0])
    p.add_argument("--stations", type=int, default=10, help="stations to generate (default 10)")
    p.add_argument("--evses-per-station", type=int, default=2, help="EVSEs each (default 2)")
    p.add_argument(
        "--mqtt-url",
        default="mqtt://localhost:1883",
        help="mqtt://host:port or mqtts://host:8883; each station's user is its id and its"
        " password is read from <data-dir>/stations/<id>.password",
    )
    p.add_argument("--mqtt-ca-file", default=None, help="CA to verify an mqtts:// broker with")
    p.add_argument("--data-dir", default="var/simulator", help="where station state is saved")
    p.add_argument("--config", help="fleet JSON (see simulator.fleet_config); overrides --stations")
    p.add_argument(
        "--seed", type=int, default=0, help="makes positions, cars and delays replayable"
    )
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--keepalive", type=int, default=10, help="MQTT keepalive, seconds")
    p.add_argument("--meter-interval", type=float, default=5.0, help="simulated seconds")
    p.add_argument("--centre", default=f"{DEFAULT_CENTRE[0]},{DEFAULT_CENTRE[1]}", help="LAT,LON")
    p.add_argument("--radius-km", type=float, default=3.0, help="spread around the centre")
    p.add_argument("--station-prefix", default="st", help="generated ids are <prefix>-001...")
    p.add_argument("--connect-timeout", type=float, default=30.0, help="for all connections")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.add_argument(
        "--protocol",
        choices=["mqtt", "ocpp1.6"],
        default="mqtt",
        help="how the stations talk to the CSMS: our MQTT protocol, or OCPP 1.6J over"
        " --ocpp-url (docs/ocpp.md); EVSE ids must then be connector numbers",
    )
    p.add_argument(
        "--ocpp-url", default=None, help="ws[s]://host:port/ocpp (with --protocol ocpp1.6)"
    )
    p.add_argument("--ocpp-ca-file", default=None, help="CA to verify a wss:// endpoint with")
    return p


class LaunchProgress:
    """``launching stations [#####-----] 12/20`` on a TTY, else a log line every 10 %."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self._logged_decile = 0

    def update(self, done: int) -> None:
        if self.tty:
            filled = done * 20 // self.total
            bar = "#" * filled + "-" * (20 - filled)
            end = "\n" if done == self.total else ""
            self.stream.write(f"\rlaunching stations [{bar}] {done}/{self.total}{end}")
            self.stream.flush()
            return
        decile = done * 10 // self.total
        if decile > self._logged_decile:
            self._logged_decile = decile
            log.info("launching stations: %d/%d", done, self.total)


Station = MqttStation | OcppStation


class OcppTarget:
    """Where OCPP stations connect, and the event loop they share."""

    def __init__(self, url: str, data_dir: str, ca_file: str | None) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise FleetConfigError(f"--ocpp-url must be ws[s]://host:port/ocpp, not {url!r}")
        self.url, self.data_dir = url, data_dir
        self.tls = None
        if url.startswith("wss://"):
            self.tls = ssl.create_default_context(cafile=ca_file)
        self.shared = OcppLoop()
        logging.getLogger("ocpp").setLevel(logging.WARNING)  # it logs every frame at INFO

    def station(self, sim: StationSimulator, store: StationStore) -> OcppStation:
        path = password_path(self.data_dir, sim.station_id)
        password = read_password_file(path) if path.exists() else None
        return OcppStation(sim, self.url, password, self.shared, store=store, tls=self.tls)


class FleetTicker(threading.Thread):
    """The one thread that advances every station's physics, every ``period`` real seconds."""

    def __init__(self, stations: Sequence[Station], clock: SimClock, period: float) -> None:
        super().__init__(name="fleet-ticker", daemon=True)
        self._stations = stations
        self._clock = clock
        self._period = period
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self._period):
            now = self._clock.now()  # one instant for the whole fleet per tick
            for station in self._stations:
                station.tick(now)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)


def _descriptors(args: argparse.Namespace) -> tuple[StationDescriptor, ...]:
    if args.config:
        return load_fleet_config(args.config)
    return generate_fleet(
        stations=args.stations,
        evses_per_station=args.evses_per_station,
        seed=args.seed,
        centre=parse_centre(args.centre),
        radius_km=args.radius_km,
        prefix=args.station_prefix,
    )


def _load_snapshot(store: StationStore) -> dict[str, Any] | None:
    try:
        return store.load()
    except SnapshotError as exc:
        aside = store.path.with_suffix(".json.bad")
        store.path.replace(aside)
        log.error("%s; moved it to %s and starting the station afresh", exc, aside)
        return None


def _build_stations(
    args: argparse.Namespace,
    descriptors: Sequence[StationDescriptor],
    broker: MqttSettings,
    ocpp: OcppTarget | None = None,
) -> tuple[list[Station], SimClock]:
    stores = [StationStore(args.data_dir, d.id) for d in descriptors]
    snapshots = [_load_snapshot(s) for s in stores]
    saved_at = [float(s["saved_at"]) for s in snapshots if s and "saved_at" in s]
    clock = SimClock(args.speed, start=max([time.time(), *saved_at]))
    wall = WallClock()
    stations: list[Station] = []
    for descriptor, store, snapshot in zip(descriptors, stores, snapshots, strict=True):
        try:
            sim = StationSimulator(
                descriptor,
                clock=clock,
                wall_clock=wall,
                seed=args.seed,
                meter_interval=args.meter_interval,
                snapshot=snapshot,
            )
        except SnapshotError as exc:
            log.error("Station %s cannot resume (%s): starting afresh", descriptor.id, exc)
            sim = StationSimulator(
                descriptor,
                clock=clock,
                wall_clock=wall,
                seed=args.seed,
                meter_interval=args.meter_interval,
            )
        if ocpp is not None:
            stations.append(ocpp.station(sim, store))
            continue
        settings = station_settings(broker, descriptor.id, args.data_dir)
        stations.append(MqttStation(sim, settings, store=store, keepalive=args.keepalive))
    return stations, clock


def _launch(stations: Sequence[Station], timeout: float, stopping: threading.Event) -> None:
    """Start each station, waiting for its connection up to a shared deadline."""
    progress = LaunchProgress(len(stations))
    deadline = time.monotonic() + timeout
    late = []
    for n, station in enumerate(stations, 1):
        if stopping.is_set():
            return
        station.start()
        if not station.wait_connected(max(0.0, deadline - time.monotonic())):
            late.append(station.station_id)
        progress.update(n)
    if late:
        log.warning(
            "%d stations not connected yet (still retrying): %s",
            len(late),
            ", ".join(late[:10]) + (" ..." if len(late) > 10 else ""),
        )


def _ocpp_target(
    args: argparse.Namespace, descriptors: Sequence[StationDescriptor]
) -> OcppTarget | None:
    if args.protocol != "ocpp1.6":
        return None
    if args.ocpp_url is None:
        raise FleetConfigError("--protocol ocpp1.6 needs --ocpp-url ws[s]://host:port/ocpp")
    for d in descriptors:
        if not all(e.id.isdigit() and 1 <= int(e.id) <= 64 for e in d.evses):
            raise FleetConfigError(f"station {d.id}: OCPP connector ids are 1 to 64")
    return OcppTarget(args.ocpp_url, args.data_dir, args.ocpp_ca_file)


def _install_signals(stopping: threading.Event) -> dict[int, Any]:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("Received %s, shutting down", signal.Signals(signum).name)
        stopping.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    return previous


def main(argv: list[str] | None = None) -> int:
    """Run the fleet until Ctrl-C or SIGTERM; 0 on a clean shutdown, 2 on bad arguments."""
    args = build_parser().parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        if not args.speed > 0 or not args.meter_interval > 0:
            raise FleetConfigError("--speed and --meter-interval must be positive")
        broker = parse_mqtt_url(args.mqtt_url, ca_file=args.mqtt_ca_file, env={})
        descriptors = _descriptors(args)
        ocpp = _ocpp_target(args, descriptors)
    except (FleetConfigError, ValueError, OSError) as exc:
        log.error("%s", exc)
        return 2
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    stations, clock = _build_stations(args, descriptors, broker, ocpp)
    stopping = threading.Event()
    previous = _install_signals(stopping)
    period = min(1.0, max(0.05, args.meter_interval / args.speed / 2))
    ticker = FleetTicker(stations, clock, period)
    try:
        log.info(
            "Launching %d stations on %s:%d (speed %sx)",
            len(stations),
            broker.host,
            broker.port,
            args.speed,
        )
        ticker.start()
        _launch(stations, args.connect_timeout, stopping)
        stopping.wait()
    finally:
        ticker.stop()
        for station in reversed(stations):
            station.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
        if ocpp is not None:
            ocpp.shared.stop()
        log.info("Fleet stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
