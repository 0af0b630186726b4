"""The gateway's gunicorn worker: uvicorn serving the ASGI app, TLS on some ports only, guarded.

An event stream, a slow client or a TLS handshake costs a coroutine and a socket, never a
thread. What one client may hold is bounded at the connection, before the app sees anything:

- **headers** must be complete within :data:`HEADER_TIMEOUT_S` of the connection (or of the
  previous response on a kept-alive one), else the connection is closed (uvicorn itself waits
  for ever: a client trickling a header held its connection indefinitely);
- a **TLS handshake** must finish within :data:`HANDSHAKE_TIMEOUT_S` (asyncio's default is 60 s);
- **idle kept-alive** connections close after gunicorn's ``keepalive`` (uvicorn's
  ``timeout_keep_alive``);
- at most :data:`MAX_CONNECTIONS_PER_CLIENT` connections per client address per worker; the
  next is closed at once (a phone needs two or three; a carrier's NAT puts many behind one);
- request **bodies** are bounded in size and time by the app (``gateway/security.py``).

TLS on some ports (:mod:`gateway.worker`, which once held a gthread worker for this): the ports in
``SMARTCHARGE_TLS_PORTS`` serve HTTPS with gunicorn's certificate and the others plain HTTP,
from the same worker; uvicorn reports each request's scheme from its own connection.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import collections
import os
import signal
import socket
import sys
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import STARTUP_FAILURE, Server
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped,unused-ignore]

from gateway.asgi import close_all_streams
from gateway.worker import TLS_PORTS_ENV, parse_ports

__all__ = [
    "HANDSHAKE_TIMEOUT_S",
    "HEADER_TIMEOUT_S",
    "MAX_CONNECTIONS_PER_CLIENT",
    "GuardedHttpProtocol",
    "TlsOnSomePortsUvicornWorker",
]

TLS_READ_BUFFER: Final = 17 * 1024
"""asyncio gives every TLS connection a read buffer of 256 KiB (``SSLProtocol.max_size``), made
and zero-filled at the connection: 300 KiB of RSS per open event stream (measured,
``python -m bench streams``). A TLS record holds at most 16 KiB: reads of one record and a
bit lose nothing."""
asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER

HEADER_TIMEOUT_S: Final = 10.0
HANDSHAKE_TIMEOUT_S: Final = 10.0
MAX_CONNECTIONS_PER_CLIENT: Final = 256
"""Per worker. High enough for a carrier's NAT sharing one address among many phones (each
needs two or three connections), low enough that one address cannot fill a worker."""

_per_client: collections.Counter[str] = collections.Counter()
"""Open connections by client address, in this worker (one event loop: no lock)."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a per-address connection cap."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    max_per_client: int = MAX_CONNECTIONS_PER_CLIENT
    _header_timer: asyncio.TimerHandle | None = None
    _counted: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else str(peer)
        if _per_client[address] >= self.max_per_client:
            transport.abort()  # refused before any byte is read: costs nothing more
            return
        _per_client[address] += 1
        self._counted = address
        super().connection_made(transport)
        self._arm_header_timer(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted is None:  # refused in connection_made
            return
        _per_client[self._counted] -= 1
        if _per_client[self._counted] <= 0:
            del _per_client[self._counted]
        self._counted = None
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():  # the next request's headers, after the idle time
            self._arm_header_timer(self.timeout_keep_alive + self.header_timeout_s)

    def _arm_header_timer(self, delay: float) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(delay, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def open_connections(address: str) -> int:
    """How many connections ``address`` holds on this worker now (for tests and metrics)."""
    return _per_client[address]


class _TlsOnSomePortsServer(Server):
    """uvicorn's server, TLS only on the sockets whose port is in ``tls_ports``."""

    def __init__(self, config: Any, tls_ports: frozenset[int]) -> None:
        super().__init__(config)
        self.tls_ports = tls_ports

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        loop = asyncio.get_running_loop()
        self.servers = []
        for sock in sockets or []:
            tls = _port(sock) in self.tls_ports
            server = await loop.create_server(
                create_protocol,
                sock=sock,
                ssl=config.ssl if tls else None,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if tls else None,
                backlog=config.backlog,
            )
            self.servers.append(server)
        self.started = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Event streams never end by themselves: end them first, or the shutdown would wait
        out the graceful time-out for them (10 s for every Ctrl-C of ``smartcharge up``)."""
        close_all_streams()
        await super().shutdown(sockets)


def _exit_cleanly(signum: int, frame: Any) -> None:
    sys.exit(0)


def _port(sock: socket.socket) -> int | None:
    name = sock.getsockname()
    return name[1] if isinstance(name, tuple) else None


class TlsOnSomePortsUvicornWorker(UvicornWorker):  # type: ignore[misc,unused-ignore]
    """gunicorn worker: uvicorn with :class:`GuardedHttpProtocol`, TLS on the ports named in
    ``SMARTCHARGE_TLS_PORTS`` (checked as :class:`gateway.worker.TlsOnSomePortsWorker` does)."""

    CONFIG_KWARGS = {"loop": "asyncio", "http": GuardedHttpProtocol, "lifespan": "off"}

    tls_ports: frozenset[int] = frozenset()

    def init_signals(self) -> None:
        """uvicorn raises the signal that stopped it again once it has shut down, and
        uvicorn-worker leaves SIGTERM at its default action: the worker died of it before
        gunicorn's ``worker_exit`` hook ran (the CSMS kept its lease, its clean stop never
        happened). Here the signal ends the worker with ``SystemExit``, so the hook runs."""
        super().init_signals()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _exit_cleanly)

    def init_process(self) -> None:
        """Check the ports before booting: gunicorn then stops with "Worker failed to boot"
        (a typo must not serve a write API in clear text)."""
        raw = self.cfg.env.get(TLS_PORTS_ENV, os.environ.get(TLS_PORTS_ENV, ""))
        self.tls_ports = tls_ports = parse_ports(raw)
        listening = {p for s in self.sockets if (p := _port(s)) is not None}
        if tls_ports and not self.cfg.is_ssl:
            raise RuntimeError(f"{TLS_PORTS_ENV} names TLS ports but no certfile/keyfile is set")
        if self.cfg.is_ssl and not tls_ports:
            raise RuntimeError(f"certfile/keyfile set: name the TLS ports in {TLS_PORTS_ENV}")
        if tls_ports - listening:
            raise RuntimeError(
                f"{TLS_PORTS_ENV} names {sorted(tls_ports - listening)}, "
                f"which gunicorn does not listen on (bound: {sorted(listening)})"
            )
        super().init_process()

    async def _serve(self) -> None:
        tls_ports = self.tls_ports
        listening = {p for s in self.sockets if (p := _port(s)) is not None}
        self.config.app = self.wsgi
        server = _TlsOnSomePortsServer(self.config, tls_ports)
        self._install_sigquit_handler()
        self.log.info(
            "TLS on ports %s, plain HTTP on %s", sorted(tls_ports), sorted(listening - tls_ports)
        )
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(3)  # gunicorn's WORKER_BOOT_ERROR
