"""What the embedded broker needs to know about the machine: where Mosquitto is, whether a
port is free, and whether something on a port answers MQTT."""

from __future__ import annotations

import os
import random
import shutil
import socket
from typing import Final

__all__ = ["find_mosquitto", "free_port", "port_is_free"]

_MOSQUITTO_FALLBACK_PATHS: Final = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None (Debian puts it in /usr/sbin, not on every PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _MOSQUITTO_FALLBACK_PATHS:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port.

    Checked by binding it with ``SO_REUSEADDR``, as Mosquitto and amqtt bind their listeners:
    connections left in TIME_WAIT by a broker that just died (or by our own readiness probe)
    do not stop a new broker from listening, so they must not stop us either. Without it a
    broker killed under load could not be started again on its port for ~60 s (TIME_WAIT).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago, below the kernel's ephemeral range where it can.

    The kernel's pick for port 0 lies inside its ephemeral range (32768-60999 on Linux), where
    any outgoing connection on the machine may take it before our server binds it (seen in
    tests: gunicorn "Address already in use", the stack never up). So the port is drawn from
    20000-32000 when that range lies outside the ephemeral one, and from the kernel otherwise.
    """
    low, high = _ephemeral_range()
    if high < _QUIET_LOW or low > _QUIET_HIGH:
        pick = random.SystemRandom()
        for _ in range(200):
            port = pick.randrange(_QUIET_LOW, _QUIET_HIGH)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


_QUIET_LOW: Final = 20_000
_QUIET_HIGH: Final = 32_000


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing ports (Linux); the whole range if unknown."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            low, high = (int(part) for part in f.read().split()[:2])
    except (OSError, ValueError):
        return 1, 65_535
    return low, high


def _mqtt_probe(host: str, port: int, timeout: float) -> bool:
    """Open a TCP connection, send an MQTT 3.1.1 CONNECT, expect a CONNACK (any return code)."""
    client_id = f"smartcharge-probe-{os.getpid()}".encode()
    variable_header = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol 4, clean session, keepalive 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable_header + payload
    packet = b"\x10" + bytes([len(body)]) + body  # remaining length < 128
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(packet)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            # Any CONNACK counts: a secure broker refuses this anonymous probe (return code 5,
            # not authorised), but it is serving.
            if reply[:3] != b"\x20\x02\x00":
                return False
            sock.sendall(b"\xe0\x00")  # DISCONNECT
            return True
    except OSError:
        return False
