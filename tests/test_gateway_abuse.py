"""A gateway worker under abuse keeps answering: streams, slow headers, half TLS handshakes.

A real ``smartcharge csms`` (gunicorn, the ASGI worker of ``gateway/asgi_worker.py``) on a
real broker. The attacker connects from 127.0.0.1; the probe that must still get its answer
comes from 127.0.0.2 (the per-address connection cap applies to the attacker alone).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.asgi import BODY_TIMEOUT_S
from gateway.asgi_worker import HEADER_TIMEOUT_S, MAX_CONNECTIONS_PER_CLIENT
from tests.driver_client import Api, csms_process, wait_until
from tests.faults.test_csms_kill import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROBE_S = 1.0
"""The acceptance bound: /healthz answers within this while the attack is on."""
ATTACKER, PROBE = "127.0.0.1", "127.0.0.2"


@dataclass
class Gateway:
    api: Api
    data_dir: Path
    http_port: int
    https_port: int
    context: ssl.SSLContext

    def driver_token(self) -> str:
        login = json.loads((self.data_dir / "demo-logins.json").read_text())["driver"]
        status, body = wait_until(
            lambda: self.api.post("/api/v1/auth/login", login), "the driver's login", 60
        )
        assert status == 200, body
        token: str = body["access_token"]
        return token

    def healthz_from_probe(self, secure: bool = False) -> float:
        """Seconds /healthz took from the probe's address; fails past :data:`PROBE_S`."""
        conn: http.client.HTTPConnection
        if secure:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, context=self.context, timeout=PROBE_S,
                source_address=(PROBE, 0),
            )  # fmt: skip
        else:
            conn = http.client.HTTPConnection(
                "127.0.0.1", self.http_port, timeout=PROBE_S, source_address=(PROBE, 0)
            )
        began = time.monotonic()
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert response.status == 200
        return time.monotonic() - began


@pytest.fixture
def gateway(mosquitto_url: str, tmp_path: Path) -> Iterator[Gateway]:
    data_dir = tmp_path / "csms"
    http_port, https_port = free_port(), free_port()
    with csms_process(
        mosquitto_url, data_dir, http_port, https_port, tmp_path / "csms.log",
        extra=("--demo-users",),
    ):  # fmt: skip
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the certificate", 60)
        api = Api(http_port, https_port, cert)
        wait_until(lambda: api.get("/healthz", secure=False)[0] == 200, "the gateway", 60)
        yield Gateway(api, data_dir, http_port, https_port, api.context)


def open_stream(gateway: Gateway, token: str) -> tuple[int, http.client.HTTPSConnection]:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", gateway.https_port, context=gateway.context, timeout=10
    )
    conn.request("GET", "/api/v1/me/events", headers={"Authorization": f"Bearer {token}"})
    return conn.getresponse().status, conn


def test_32_streams_from_one_driver_get_8_and_leave_the_api_answering(gateway: Gateway) -> None:
    token = gateway.driver_token()
    with ExitStack() as stack:
        statuses = []
        for _ in range(32):
            status, conn = open_stream(gateway, token)
            stack.callback(conn.close)
            statuses.append(status)
        assert statuses.count(200) == 8  # a driver's phone and laptop need a few
        assert statuses.count(429) == 24
        assert gateway.healthz_from_probe() < PROBE_S
        assert gateway.healthz_from_probe(secure=True) < PROBE_S


def test_200_slow_header_connections_leave_the_api_answering_and_are_closed(
    gateway: Gateway,
) -> None:
    with ExitStack() as stack:
        held = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", gateway.http_port), timeout=5)
            stack.callback(sock.close)
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never ends
            except OSError:
                continue  # over the per-address cap: refused at once
            held.append(sock)
        assert gateway.healthz_from_probe() < PROBE_S
        assert gateway.healthz_from_probe(secure=True) < PROBE_S
        # The server closes a connection whose headers are not complete in time.
        sock = held[0]
        sock.settimeout(HEADER_TIMEOUT_S + 10)
        assert sock.recv(1024) == b""


def test_200_half_tls_handshakes_leave_the_api_answering(gateway: Gateway) -> None:
    with ExitStack() as stack:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", gateway.https_port), timeout=5)
            stack.callback(sock.close)
            try:
                sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello, cut
            except OSError:
                continue
        assert gateway.healthz_from_probe(secure=True) < PROBE_S
        assert gateway.healthz_from_probe() < PROBE_S


def test_one_address_holds_at_most_its_share_of_connections(gateway: Gateway) -> None:
    with ExitStack() as stack:
        socks = []
        for _ in range(MAX_CONNECTIONS_PER_CLIENT):
            sock = socket.create_connection(("127.0.0.1", gateway.http_port), timeout=5)
            stack.callback(sock.close)
            socks.append(sock)
        # Each of those is served (one request on the first proves it), the next one is not.
        socks[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert socks[0].recv(64).startswith(b"HTTP/1.1 200")
        extra = socket.create_connection(("127.0.0.1", gateway.http_port), timeout=5)
        stack.callback(extra.close)
        extra.settimeout(5)
        try:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = extra.recv(64)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # closed unanswered
        assert gateway.healthz_from_probe() < PROBE_S  # another address is not affected


def test_a_body_that_comes_too_slowly_gets_408_and_holds_nothing(gateway: Gateway) -> None:
    raw = socket.create_connection(("127.0.0.1", gateway.https_port), timeout=5)
    with gateway.context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"email": '  # and then nothing
        )
        assert gateway.healthz_from_probe() < PROBE_S
        sock.settimeout(BODY_TIMEOUT_S + 10)
        answer = sock.recv(256)
    assert answer.startswith(b"HTTP/1.1 408")
