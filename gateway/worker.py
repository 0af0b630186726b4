"""A gunicorn gthread worker serving TLS on some listeners and plain HTTP on the others.

The CSMS actors live in one worker process, so HTTP (public reads) and HTTPS (driver and
operator writes) must come from the same worker: two gunicorn servers are not an option.
gunicorn's own switch is global: with ``certfile``/``keyfile`` set, ``cfg.is_ssl`` is true
and every accepted connection is wrapped in TLS (``gthread.TConn.init``), and every request
reports ``wsgi.url_scheme == "https"`` (``http.message.Message``).

:class:`TlsOnSomePortsWorker` keeps gunicorn's TLS configuration for the listeners whose
port is in ``SMARTCHARGE_TLS_PORTS`` and gives the connections accepted on the other
listeners a view of the configuration whose ``is_ssl`` is false. That one value is what
decides, per connection, whether ``TConn.init`` wraps the socket, which scheme the request
parser reports, and whether HTTP/2 comes from ALPN (TLS) or cleartext prior knowledge
(plain, only if ``http2_cleartext`` allows it). ``Upgrade: h2c`` is never honoured on the
plain port: gunicorn checks it against the worker's own (TLS) configuration.

Configuration (see :func:`gunicorn_options`)::

    bind = ["127.0.0.1:8080", "127.0.0.1:8443"]
    worker_class = "gateway.worker.TlsOnSomePortsWorker"
    certfile, keyfile = ensure_self_signed_cert(data_dir)
    raw_env = ["SMARTCHARGE_TLS_PORTS=8443"]

The ports come from gunicorn's ``raw_env`` (``-e``), falling back to the process
environment, so the same works from the ``gunicorn`` command line. The worker refuses to
boot (gunicorn then stops with "Worker failed to boot") when TLS ports are named without a
certificate, when a certificate is set but no TLS port is named, or when a named port has
no listener: a typo must not silently serve a write API in clear text.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

__all__ = ["TLS_PORTS_ENV", "TlsOnSomePortsWorker", "gunicorn_options", "parse_ports"]

TLS_PORTS_ENV = "SMARTCHARGE_TLS_PORTS"


class _PlainConfig:
    """gunicorn's ``Config`` as seen by a plain-HTTP connection: identical but for TLS."""

    is_ssl = False

    def __init__(self, cfg: Any) -> None:
        self._cfg = cfg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cfg, name)


class TlsOnSomePortsWorker(ThreadWorker):  # type: ignore[misc,unused-ignore]
    """gthread worker: TLS on the ports named in ``SMARTCHARGE_TLS_PORTS``, HTTP elsewhere.

    Runs in the worker process, after the fork; :meth:`enqueue_req` runs on the worker's
    main (poller) thread, before a pool thread initialises the connection.
    """

    tls_ports: frozenset[int] = frozenset()

    def init_process(self) -> None:
        raw = self.cfg.env.get(TLS_PORTS_ENV, os.environ.get(TLS_PORTS_ENV, ""))
        self.tls_ports = parse_ports(raw)
        listening = self._listener_ports()
        self._check_ports(listening)
        self._plain_cfg = _PlainConfig(self.cfg)
        # The master's "Listening at: https://..." line says https for every listener.
        self.log.info(
            "TLS on ports %s, plain HTTP on the others %s",
            sorted(self.tls_ports),
            sorted(listening - self.tls_ports),
        )
        super().init_process()  # runs the worker until it stops

    def _listener_ports(self) -> set[int]:
        return {
            s.getsockname()[1]
            for s in self.sockets
            if s.family in (socket.AF_INET, socket.AF_INET6)
        }

    def _check_ports(self, listening: set[int]) -> None:
        if self.tls_ports and not self.cfg.is_ssl:
            raise RuntimeError(f"{TLS_PORTS_ENV} names TLS ports but no certfile/keyfile is set")
        if self.cfg.is_ssl and not self.tls_ports:
            raise RuntimeError(f"certfile/keyfile set: name the TLS ports in {TLS_PORTS_ENV}")
        if self.tls_ports - listening:
            raise RuntimeError(
                f"{TLS_PORTS_ENV} names {sorted(self.tls_ports - listening)}, "
                f"which gunicorn does not listen on (bound: {sorted(listening)})"
            )

    def enqueue_req(self, conn: Any) -> None:
        # Every new connection passes here right after gthread's accept() builds its TConn,
        # and before TConn.init() reads conn.cfg (in a pool thread). Later calls for the
        # same (initialised) connection change nothing. conn.server is the listener's
        # sockname: (host, port[, flow, scope]) for TCP, a path for a unix socket.
        if not conn.initialized and _port(conn.server) not in self.tls_ports:
            conn.cfg = self._plain_cfg
        super().enqueue_req(conn)


def _port(sockname: object) -> int | None:
    return sockname[1] if isinstance(sockname, tuple) else None


def parse_ports(raw: str) -> frozenset[int]:
    """``"8443, 9443"`` -> ``{8443, 9443}``; a ValueError names a bad entry."""
    ports: set[int] = set()
    for item in raw.replace(",", " ").split():
        if not item.isdigit() or not 0 < (port := int(item)) < 65536:
            raise ValueError(f"{TLS_PORTS_ENV}: {item} is not a TCP port")
        ports.add(port)
    return frozenset(ports)


def gunicorn_options(
    *, plain_binds: Iterable[str], tls_binds: Iterable[str], certfile: str, keyfile: str
) -> dict[str, Any]:
    """The gunicorn settings for HTTP on ``plain_binds`` and HTTPS on ``tls_binds``.

    Binds are ``"host:port"`` with explicit, distinct ports (not 0); merge ``raw_env`` with
    any environment of your own rather than overwriting it.
    """
    plain, tls = list(plain_binds), list(tls_binds)
    tls_ports = {int(b.rsplit(":", 1)[1]) for b in tls}
    if tls_ports & {int(b.rsplit(":", 1)[1]) for b in plain}:
        raise ValueError("a port cannot serve both HTTP and HTTPS")
    return {
        "bind": plain + tls,
        "worker_class": f"{__name__}.{TlsOnSomePortsWorker.__name__}",
        "certfile": certfile,
        "keyfile": keyfile,
        "raw_env": [f"{TLS_PORTS_ENV}={','.join(str(p) for p in sorted(tls_ports))}"],
    }
