"""How a client reaches the broker: one settings type for the CSMS, the stations and the tests.

``parse_mqtt_url("mqtts://csms@broker.example:8883", password_file=...)`` ->
:class:`MqttSettings`. The URL carries the scheme, the user name, the host and the port, never
a password: a command line is visible to every local user (``ps``), so a password inside the
URL is refused. The password comes from a file (``--mqtt-password-file``) or from the
environment (:data:`PASSWORD_ENV`).

It imports only the standard library: the CSMS, its MQTT child process and the simulator
share it, so it lives in :mod:`protocol`, the one package the simulator may import
(``setup.cfg``'s import-linter contracts).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

__all__ = [
    "BACKOFF_MAX_S",
    "BACKOFF_MIN_S",
    "PASSWORD_ENV",
    "MqttSettings",
    "parse_mqtt_url",
    "read_password_file",
]

PASSWORD_ENV: Final = "SMARTCHARGE_MQTT_PASSWORD"
DEFAULT_PORTS: Final = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}
TLS_SCHEMES: Final = frozenset({"mqtts", "ssl"})

BACKOFF_MIN_S: Final = 0.25
"""The first reconnect attempt after a lost connection (paho doubles it on each failure)."""
BACKOFF_MAX_S: Final = 2.0
"""The longest wait between reconnect attempts: a client is back within ~2 s of the broker."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    """Where and how to connect; ``repr`` never shows the password."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    client_id: str | None = None

    @property
    def url(self) -> str:
        """The URL again, without the password (for logs and banners)."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def with_client_id(self, client_id: str) -> MqttSettings:
        return replace(self, client_id=client_id)

    def with_password(self, password: str | None) -> MqttSettings:
        return replace(self, password=password)

    def apply_to(self, client: Any) -> None:
        """Configure a paho client: credentials, and TLS (1.2 or later, host name checked)."""
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set_context(self.ssl_context())

    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2 or later, the broker's certificate and host name checked against
        ``ca_file`` (or the system's CAs)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def to_json(self) -> dict[str, Any]:
        """Every field, password included: only for a pipe to a child process, never a log."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "tls": self.tls,
            "ca_file": self.ca_file,
            "client_id": self.client_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MqttSettings:
        return cls(
            host=str(data["host"]),
            port=int(data["port"]),
            username=data.get("username"),
            password=data.get("password"),
            tls=bool(data.get("tls", False)),
            ca_file=data.get("ca_file"),
            client_id=data.get("client_id"),
        )

    def __repr__(self) -> str:
        secret = "'***'" if self.password is not None else "None"
        return (
            f"MqttSettings(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={secret}, tls={self.tls}, ca_file={self.ca_file!r}, "
            f"client_id={self.client_id!r})"
        )

    __str__ = __repr__


def read_password_file(path: str | os.PathLike[str]) -> str:
    """The first line of ``path``, without its line ending (an empty password is refused)."""
    text = Path(path).read_text(encoding="utf-8")
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ValueError(f"the MQTT password file {path} is empty")
    return password


def parse_mqtt_url(
    url: str,
    *,
    password: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> MqttSettings:
    """``mqtt[s]://[user@]host[:port]`` -> :class:`MqttSettings` (ports 1883 / 8883).

    The password is ``password`` if given, else the first line of ``password_file``, else
    ``$SMARTCHARGE_MQTT_PASSWORD`` (only when the URL names a user). ``ca_file`` is the CA to
    verify the broker with (``mqtts://`` only; ``None`` uses the system's CAs).
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"unsupported MQTT URL scheme {parts.scheme!r} (use mqtt://host:port or "
            "mqtts://user@host:8883)"
        )
    if not parts.hostname:
        raise ValueError(f"no host in MQTT URL {url!r} (use mqtt://host:port)")
    if parts.password is not None:
        raise ValueError(
            "an MQTT URL must not carry a password (command lines are visible to every user): "
            f"use --mqtt-password-file or ${PASSWORD_ENV}"
        )
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ValueError(f"bad port in MQTT URL {url!r}: {exc}") from None
    username = unquote(parts.username) if parts.username else None
    tls = scheme in TLS_SCHEMES
    if ca_file is not None and not tls:
        raise ValueError("--mqtt-ca-file needs an mqtts:// URL")
    if password is None and password_file is not None:
        password = read_password_file(password_file)
    if password is None and username is not None:
        password = (os.environ if env is None else env).get(PASSWORD_ENV) or None
    if password is not None and username is None:
        raise ValueError("an MQTT password needs a user name in the URL (mqtt://user@host:port)")
    return MqttSettings(
        host=parts.hostname,
        port=port,
        username=username,
        password=password,
        tls=tls,
        ca_file=None if ca_file is None else str(ca_file),
    )
