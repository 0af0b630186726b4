"""The OCPP 1.6J endpoint: ``ws://host:port/ocpp/{charge_point_id}``, subprotocol ``ocpp1.6``.

A protocol *translator*: each connected charge point appears to the CSMS exactly like an MQTT
station of protocol v2 (``gateway.ocpp_link``), so the EVSE actors, sessions, reservations and
smart charging need not know OCPP exists (``docs/ocpp.md``).

``smartcharge csms --ocpp-port PORT`` binds the port itself and hands the listening socket to
this module run as a child process (``python -m gateway.ocpp_server``, its settings as one JSON
line on stdin): a misbehaving charge point can at worst take the translator down, never the
CSMS, and the port accepts connections (into its backlog) before the CSMS is even up. The child
exits when its stdin ends: when the CSMS says so, or dies.

Security profile 1: HTTP Basic authentication at the handshake, user = the charge point id,
password = the station's own (``smartcharge stations add ID --ocpp``), checked against the
stored hash; an unknown, revoked or wrong one is refused with 401 before any WebSocket exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

import ocpp.messages as ocpp_messages
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gateway import broker_accounts as accounts
from gateway import ocpp_translate as tr
from gateway import ocpp_validation
from gateway.mqtt_asyncio import MqttLoopDriver
from gateway.ocpp_auth import TagAuthority
from gateway.ocpp_link import ChargePointLink, StationState
from gateway.ocpp_station import StationMqtt, TransactionStore
from protocol.mqtt_settings import MqttSettings
from storage import open_storage

__all__ = [
    "MAX_FRAME_BYTES",
    "OcppServer",
    "OcppSettings",
    "TranslatorProcess",
    "bind",
    "main",
    "spawn",
]

log = logging.getLogger("gateway.ocpp")

SUBPROTOCOL: Final = "ocpp1.6"
MAX_FRAME_BYTES: Final = 65_536
"""A bigger frame closes the connection (1009): no OCPP 1.6 message needs more."""
MQTT_CONNECT_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OcppSettings:
    mqtt: MqttSettings
    """The broker (host, port, TLS); the user and password are each charge point's own."""
    data_dir: Path
    db_url: str | None = None
    max_sessions_per_driver: int = 1
    """What a driver's badge starts are counted against (``gateway.ocpp_auth``)."""


class OcppServer:
    def __init__(self, settings: OcppSettings) -> None:
        self.settings = settings
        self._storage = open_storage(settings.db_url, data_dir=settings.data_dir)
        self._storage_lock = threading.Lock()
        self.tags = TagAuthority(
            self._storage, self._storage_lock, max_sessions=settings.max_sessions_per_driver
        )
        self.transactions = TransactionStore(settings.data_dir / "ocpp" / "transactions.jsonl")
        self._states: dict[str, StationState] = {}
        self._links: dict[str, tuple[ServerConnection, ChargePointLink | None]] = {}
        self._station_locks: dict[str, asyncio.Lock] = {}
        self._mqtt_driver: MqttLoopDriver | None = None  # every station's MQTT, on our loop
        # until the handler takes it (weak: a handshake that fails after the check leaks none)
        self._passwords: weakref.WeakKeyDictionary[ServerConnection, str] = (
            weakref.WeakKeyDictionary()
        )

    def close(self) -> None:
        self._storage.close()

    # ------------------------------------------------------------------ handshake

    def _check(self, station_id: str, password: str) -> str | None:
        """The station's name if ``password`` is its active one (blocking: storage)."""
        with self._storage_lock:
            credential = self._storage.station_credentials.get(station_id)
        if credential is None or not credential.active:
            return None
        if not accounts.verify_password(password, credential.password_hash):
            return None
        return credential.name

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        station_id = tr.charge_point_id(request.path)
        if station_id is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "no such OCPP endpoint\n")
        credentials = tr.basic_credentials(request.headers.get("Authorization"))
        name = None
        if credentials is not None and credentials[0] == station_id:
            name = await asyncio.to_thread(self._check, station_id, credentials[1])
        if name is None:
            log.info("OCPP %s: refused at the handshake (credentials)", station_id)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="smartcharge OCPP"'
            return response
        assert credentials is not None
        self._passwords[connection] = credentials[1]
        state = self._states.get(station_id)
        if state is None:
            state = self._states[station_id] = StationState(station_id=station_id, name=name)
        return None

    # ------------------------------------------------------------------ connections

    async def handler(self, connection: ServerConnection) -> None:
        password = self._passwords.pop(connection, None)
        station_id = tr.charge_point_id(connection.request.path if connection.request else "")
        if password is None or station_id is None:
            await connection.close(1008, "not authenticated")
            return
        if connection.subprotocol != SUBPROTOCOL:
            await connection.close(1002, "subprotocol ocpp1.6 required")
            return
        older = self._links.get(station_id)
        self._links[station_id] = (connection, None)
        if older is not None:
            log.info("OCPP %s: a new connection replaces the older one", station_id)
            await older[0].close(1000, "replaced by a newer connection")
        lock = self._station_locks.setdefault(station_id, asyncio.Lock())
        async with lock:  # the older connection's clean-up (its MQTT client) finishes first
            if self._links.get(station_id, (None,))[0] is not connection:
                return  # replaced again meanwhile
            await self._serve(connection, station_id, password)

    async def _serve(self, connection: ServerConnection, station_id: str, password: str) -> None:
        state = self._states[station_id]
        state.epoch = max(state.epoch + 1, time.time_ns() // 1_000_000)
        state.seq = 0
        link_holder: list[ChargePointLink] = []
        if self._mqtt_driver is None:
            self._mqtt_driver = MqttLoopDriver(asyncio.get_running_loop())
        mqtt = StationMqtt(
            self.settings.mqtt,
            station_id,
            password,
            self._mqtt_driver,
            lambda request: link_holder[0].command(request) if link_holder else None,
        )

        async def still_allowed() -> bool:
            return await asyncio.to_thread(self._check, station_id, password) is not None

        link = ChargePointLink(
            connection, state, mqtt, self.transactions, still_allowed, tags=self.tags
        )
        link_holder.append(link)
        self._links[station_id] = (connection, link)
        waiting: asyncio.Future[None] | None = None
        try:
            if await mqtt.start(MQTT_CONNECT_TIMEOUT_S):
                log.info("OCPP %s: connected", station_id)
                link.accept()  # a reconnection need not boot again (chargers do not)
            else:  # Pending until the broker takes the station (docs/ocpp.md)
                log.warning("OCPP %s: the broker did not take the station yet", station_id)
                waiting = asyncio.ensure_future(link.await_broker())
            with contextlib.suppress(ConnectionClosed):
                await link.start()
        finally:
            if waiting is not None:
                waiting.cancel()
            link.cancel_commands()
            with contextlib.suppress(Exception):
                await mqtt.stop("connection_lost")
            if self._links.get(station_id, (None,))[0] is connection:
                del self._links[station_id]
            log.info("OCPP %s: disconnected", station_id)

    async def run(
        self, sock: socket.socket, stop: asyncio.Event, tls: ssl.SSLContext | None = None
    ) -> None:
        async with serve(
            self.handler,
            sock=sock,
            ssl=tls,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            process_request=self.process_request,
            max_size=MAX_FRAME_BYTES,
            compression=None,
            ping_interval=30,
            ping_timeout=30,
        ):
            await stop.wait()


# ---------------------------------------------------------------------- the child process


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (``SO_REUSEADDR``), bound by the CSMS before it starts."""
    sock = socket.create_server((host, port), reuse_port=False, backlog=1024)
    sock.set_inheritable(True)
    return sock


def spawn(
    sock: socket.socket,
    mqtt: MqttSettings,
    data_dir: Path,
    db_url: str | None,
    *,
    tls: tuple[Path, Path] | None = None,
    max_sessions_per_driver: int = 1,
) -> subprocess.Popen[bytes]:
    """Start the translator as a child process on the bound ``sock``; ``tls``: the
    certificate and key files to serve ``wss://`` only (security profile 2)."""
    config = {
        "tls": None if tls is None else [str(Path(f).resolve()) for f in tls],
        "fd": sock.fileno(),
        "mqtt": {
            "host": mqtt.host,
            "port": mqtt.port,
            "tls": mqtt.tls,
            "ca_file": None if mqtt.ca_file is None else str(mqtt.ca_file),
        },
        "data_dir": str(Path(data_dir).resolve()),
        "db_url": db_url,
        "max_sessions_per_driver": max_sessions_per_driver,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.ocpp_server"],
        stdin=subprocess.PIPE,
        pass_fds=(sock.fileno(),),
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(config).encode() + b"\n")
    proc.stdin.flush()  # and kept open: the child runs until it reads the end of it
    return proc


class TranslatorProcess:
    """The translator child on ``sock``, started again if it dies (after 1 s, doubling to
    30 s), so a charge point that crashes it only disconnects the charge points for a while.
    The CSMS keeps ``sock`` open meanwhile: connections wait in its backlog."""

    def __init__(self, sock: socket.socket, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self._sock, self._start = sock, start
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.proc = start()
        self._thread = threading.Thread(target=self._watch, name="ocpp-translator", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        delay = 1.0
        while True:
            proc = self.proc
            began = time.monotonic()
            # poll, never a blocking wait: a thread blocked in waitpid() held gunicorn's master
            # (which reaps its workers with waitpid(-1)) for 10 s at every shutdown
            while proc.poll() is None:
                if self._stop.wait(0.5):
                    return
            if self._stop.is_set():
                return
            if time.monotonic() - began > 60:
                delay = 1.0
            log.error(
                "the OCPP translator exited (status %s); starting it again in %.0f s",
                proc.returncode,
                delay,
            )
            if self._stop.wait(delay):
                return
            with self._lock:
                if self._stop.is_set():
                    return
                self.proc = self._start()
            delay = min(delay * 2, 30.0)

    def stop(self) -> None:
        """Close the child's stdin (it stops), wait for it, kill it after 10 s."""
        self._stop.set()
        with self._lock:
            proc = self.proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        self._sock.close()


async def _main_async(config: dict[str, Any]) -> None:
    m = config["mqtt"]
    settings = OcppSettings(
        mqtt=MqttSettings(
            host=m["host"],
            port=int(m["port"]),
            tls=bool(m["tls"]),
            ca_file=m["ca_file"],
        ),
        data_dir=Path(config["data_dir"]),
        db_url=config["db_url"],
        max_sessions_per_driver=int(config.get("max_sessions_per_driver", 1)),
    )
    sock = socket.socket(fileno=int(config["fd"]))
    server = OcppServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The CSMS says when to stop by closing our stdin (or by dying): a SIGTERM or SIGINT sent
    # to its whole process group must not look like a crash it would start us again after.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: None)

    def readable() -> None:
        if not os.read(0, 4096):
            loop.remove_reader(0)
            stop.set()

    loop.add_reader(0, readable)
    tls = None
    if config.get("tls"):
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(config["tls"][0], config["tls"][1])
    try:
        host, port = sock.getsockname()[:2]
        scheme = "ws" if tls is None else "wss"
        log.info("OCPP 1.6J endpoint on %s://%s:%d/ocpp/{charge_point_id}", scheme, host, port)
        await server.run(sock, stop, tls)
    finally:
        loop.remove_reader(0)
        server.close()


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("ocpp").setLevel(logging.WARNING)  # it logs every frame at INFO
    logging.getLogger("websockets").setLevel(logging.WARNING)
    # Validate on the event loop: a thread-pool round trip per message (the library's default)
    # cost more CPU than the validation of a frame of at most 64 KiB.
    ocpp_messages.ASYNC_VALIDATION = False
    ocpp_validation.install()  # the same validation, compiled (about 0.3 ms less a message)
    config = json.loads(sys.stdin.readline())
    asyncio.run(_main_async(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
