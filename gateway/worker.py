"""HTTP and HTTPS from one gunicorn worker: the settings both sides read.

The CSMS node's worker (and each gateway worker) serves HTTP (public reads) and HTTPS (driver
and operator writes) from one process, so two gunicorn servers are not an option; gunicorn's
own TLS switch is global (every listener, every connection). The worker
(:class:`gateway.asgi_worker.TlsOnSomePortsUvicornWorker`) serves TLS on the listeners whose
port is in ``SMARTCHARGE_TLS_PORTS`` and plain HTTP on the others; each request reports the
scheme of its own connection.

Configuration (see :func:`gunicorn_options`)::

    bind = ["127.0.0.1:8080", "127.0.0.1:8443"]
    worker_class = "gateway.asgi_worker.TlsOnSomePortsUvicornWorker"
    certfile, keyfile = ensure_self_signed_cert(data_dir)
    raw_env = ["SMARTCHARGE_TLS_PORTS=8443"]

The ports come from gunicorn's ``raw_env`` (``-e``), falling back to the process
environment, so the same works from the ``gunicorn`` command line. The worker refuses to
boot (gunicorn then stops with "Worker failed to boot") when TLS ports are named without a
certificate, when a certificate is set but no TLS port is named, or when a named port has
no listener: a typo must not silently serve a write API in clear text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from gunicorn import glogging

__all__ = ["ASGI_WORKER", "TLS_PORTS_ENV", "SchemeLogger", "gunicorn_options", "parse_ports"]

TLS_PORTS_ENV = "SMARTCHARGE_TLS_PORTS"
ASGI_WORKER: Final = "gateway.asgi_worker.TlsOnSomePortsUvicornWorker"


def parse_ports(raw: str) -> frozenset[int]:
    """``"8443, 9443"`` -> ``{8443, 9443}``; a ValueError names a bad entry."""
    ports: set[int] = set()
    for item in raw.replace(",", " ").split():
        if not item.isdigit() or not 0 < (port := int(item)) < 65536:
            raise ValueError(f"{TLS_PORTS_ENV}: {item} is not a TCP port")
        ports.add(port)
    return frozenset(ports)


class SchemeLogger(glogging.Logger):  # type: ignore[misc,unused-ignore]
    """gunicorn's logger, but its "Listening at" line names each listener's real scheme:
    gunicorn writes ``https://`` for every bind once a certificate is set, although only the
    ``SMARTCHARGE_TLS_PORTS`` serve TLS."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if msg.startswith("Listening at:") and args and isinstance(args[0], str):
            args = (self._with_schemes(args[0]), *args[1:])
        super().info(msg, *args, **kwargs)

    def _with_schemes(self, listeners: str) -> str:
        try:
            tls_ports = parse_ports(self.cfg.env.get(TLS_PORTS_ENV, ""))
        except ValueError:
            return listeners  # the worker refuses to boot and says why
        fixed = []
        for url in listeners.split(","):
            _, _, address = url.rpartition("://")
            port = address.rsplit(":", 1)[-1]
            secure = port.isdigit() and int(port) in tls_ports
            fixed.append(f"{'https' if secure else 'http'}://{address}" if address else url)
        return ",".join(fixed)


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
        "worker_class": ASGI_WORKER,
        "certfile": certfile,
        "keyfile": keyfile,
        "raw_env": [f"{TLS_PORTS_ENV}={','.join(str(p) for p in sorted(tls_ports))}"],
        "logger_class": "gateway.worker.SchemeLogger",
    }
