"""HTTP and HTTPS from one gunicorn worker (gateway/worker.py, gateway/asgi_worker.py), and
the self-signed certificate it serves (gateway/tls.py).

The server tests run a real gunicorn in a subprocess (``serve_scheme_app`` below, started
with ``python -c``): one uvicorn worker bound to a plain port and a TLS port, serving a tiny
Falcon ASGI app that answers with the request's scheme.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import falcon
import falcon.asgi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from gunicorn.app.base import BaseApplication

from gateway.broker_probe import free_port
from gateway.tls import ensure_self_signed_cert
from gateway.worker import TLS_PORTS_ENV, gunicorn_options, parse_ports

REPO_ROOT = Path(__file__).resolve().parent.parent


# -- the server under test (runs in the subprocess) -------------------------------------


class SchemeResource:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"scheme": req.scheme, "url_scheme": req.scope["scheme"]}


class SchemeServer(BaseApplication):  # type: ignore[misc,unused-ignore]
    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> falcon.App:
        app = falcon.asgi.App()
        app.add_route("/scheme", SchemeResource())
        return app


def serve_scheme_app() -> None:
    """Entry point of the subprocess: ``sys.argv[1]`` is the JSON of gunicorn options."""
    options = json.loads(sys.argv[1])
    options.update(workers=1, loglevel="debug", graceful_timeout=2)
    SchemeServer(options).run()


# -- helpers -----------------------------------------------------------------------------


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not ready():
        assert proc.poll() is None, f"gunicorn exited with status {proc.returncode}"
        assert time.monotonic() < deadline, "gunicorn did not answer in time"
        pause.wait(0.05)


def get_json(conn: http.client.HTTPConnection, path: str = "/scheme") -> tuple[int, Any]:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, json.loads(body) if resp.status == 200 else body


def answers_http(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        return get_json(conn)[0] == 200
    except OSError:
        return False
    finally:
        conn.close()


def client_context(cafile: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default: stay compatible
    return ctx


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], plain: int, tls: int, cert: Path) -> None:
        self.proc, self.plain_port, self.tls_port, self.cert = proc, plain, tls, cert


def start_gunicorn(options: dict[str, Any], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tests.test_tls_worker import serve_scheme_app; serve_scheme_app()",
                json.dumps(options),
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    cert, key = ensure_self_signed_cert(tmp_path)
    plain, tls = free_port(), free_port()
    options = gunicorn_options(
        plain_binds=[f"127.0.0.1:{plain}"],
        tls_binds=[f"127.0.0.1:{tls}"],
        certfile=str(cert),
        keyfile=str(key),
    )
    proc = start_gunicorn(options, tmp_path / "gunicorn.log")
    try:
        wait_until(lambda: answers_http(plain), proc, timeout=30)
        yield Server(proc, plain, tls, cert)
    finally:
        stop(proc)


# -- one worker, two schemes -------------------------------------------------------------


def test_plain_port_serves_http_and_reports_scheme_http(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.plain_port, timeout=10)
    try:
        for _ in range(2):  # the second request reuses the kept-alive connection
            assert get_json(conn) == (200, {"scheme": "http", "url_scheme": "http"})
    finally:
        conn.close()


def test_tls_port_serves_https_trusted_by_the_generated_cert(server: Server) -> None:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", server.tls_port, timeout=10, context=client_context(server.cert)
    )
    try:
        for _ in range(2):
            assert get_json(conn) == (200, {"scheme": "https", "url_scheme": "https"})
        assert conn.sock is not None
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        conn.close()


def test_plain_http_to_the_tls_port_gets_no_answer_from_the_app(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.tls_port, timeout=10)
    try:
        status, body = get_json(conn)
    except (OSError, http.client.HTTPException):
        return  # refused outright: fine
    finally:
        conn.close()
    assert status == 400, body  # gunicorn's answer to a failed TLS handshake


def test_tls_to_the_plain_port_fails_the_handshake(server: Server) -> None:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", server.plain_port, timeout=10, context=client_context(server.cert)
    )
    try:
        with pytest.raises(ssl.SSLError):
            get_json(conn)
    finally:
        conn.close()
    assert answers_http(server.plain_port)  # and the worker is still serving


def test_worker_refuses_to_boot_when_a_tls_port_is_not_bound(tmp_path: Path) -> None:
    cert, key = ensure_self_signed_cert(tmp_path)
    plain, unbound = free_port(), free_port()
    options = gunicorn_options(
        plain_binds=[f"127.0.0.1:{plain}"], tls_binds=[], certfile=str(cert), keyfile=str(key)
    )
    options["raw_env"] = [f"{TLS_PORTS_ENV}={unbound}"]
    proc = start_gunicorn(options, tmp_path / "gunicorn.log")
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        stop(proc)
    assert f"names [{unbound}]" in (tmp_path / "gunicorn.log").read_text()


def test_gunicorn_options_name_the_tls_ports() -> None:
    options = gunicorn_options(
        plain_binds=["0.0.0.0:8080"], tls_binds=["0.0.0.0:8443"], certfile="c", keyfile="k"
    )
    assert options["bind"] == ["0.0.0.0:8080", "0.0.0.0:8443"]
    assert options["worker_class"] == "gateway.asgi_worker.TlsOnSomePortsUvicornWorker"
    assert options["raw_env"] == [f"{TLS_PORTS_ENV}=8443"]
    with pytest.raises(ValueError, match="both"):
        gunicorn_options(plain_binds=[":8443"], tls_binds=[":8443"], certfile="c", keyfile="k")


def test_parse_ports_accepts_commas_and_spaces_and_rejects_nonsense() -> None:
    assert parse_ports("8443, 9443 10443") == {8443, 9443, 10443}
    assert parse_ports("") == frozenset()
    with pytest.raises(ValueError, match="70000 is not a TCP port"):
        parse_ports("70000")
    with pytest.raises(ValueError, match="https is not a TCP port"):
        parse_ports("https")


# -- the self-signed certificate ---------------------------------------------------------


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificate_is_ec_p256_for_localhost_with_a_private_key(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed_cert(tmp_path)
    assert (cert_path, key_path) == (tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    cert = load_cert(cert_path)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "smartcharge"
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=825) <= lifetime <= dt.timedelta(days=826)


def test_certificate_is_reused_on_later_calls(tmp_path: Path) -> None:
    first = load_cert(ensure_self_signed_cert(tmp_path)[0])
    assert load_cert(ensure_self_signed_cert(tmp_path)[0]) == first


def test_unreadable_certificate_is_regenerated(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed_cert(tmp_path)
    cert_path.write_text("not a certificate")
    ensure_self_signed_cert(tmp_path)
    load_cert(cert_path)  # parses again


def test_expired_certificate_is_regenerated(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed_cert(tmp_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    old = load_cert(cert_path)
    now = dt.datetime.now(dt.UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(
            old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, False
        )
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    ensure_self_signed_cert(tmp_path)
    assert load_cert(cert_path).not_valid_after_utc > now + dt.timedelta(days=800)


def test_new_names_get_a_new_certificate(tmp_path: Path) -> None:
    ensure_self_signed_cert(tmp_path)
    cert_path, _ = ensure_self_signed_cert(tmp_path, hostnames=("localhost", "csms.local"))
    san = load_cert(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "csms.local" in san.value.get_values_for_type(x509.DNSName)
