"""Who may use the embedded broker, and on which topics: the files both brokers read.

The database (``storage.station_credentials``) is the source of truth; the broker reads files
that are written again from it after every change, in the *auth directory*
(``<csms data dir>/mqtt``, see :func:`auth_dir_for`):

- ``passwd``: ``user:$7$101$<salt>$<hash>`` lines, Mosquitto's own password-file format
  (PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt, base64), what ``mosquitto_passwd`` writes;
  our amqtt plugin (``gateway.amqtt_acl``) reads the same file;
- ``acl``: the Mosquitto ACL. It never changes with provisioning: a station's rights follow from
  its user name (``%u`` = its station id); the CSMS's user reads and writes ``smartcharge/#``;
- ``broker.pid``: written by the running broker, so that a change can be signalled to it
  (``SIGHUP``: Mosquitto and our amqtt runner reload ``passwd``).

The CSMS has its own account (:data:`CSMS_USER`), its password generated on first run into
``<csms data dir>/mqtt.password`` (mode 0600). The node-gateway contract
(``docs/node-protocol.md``) has accounts of its own, as the broker ties a client id to its
account: the node's client :data:`NODE_USER` (the CSMS's password; ``smartcharge/node/#``),
and one per gateway worker, :data:`GATEWAY_USER` ``-1`` to ``-64`` (one shared password in
``<csms data dir>/gateway.password``: they read ``smartcharge/node/#`` and write only
requests). Everything here imports only the standard
library (the amqtt process imports it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import signal
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from protocol import (
    ALL_TOPICS_FILTER,
    ANY_VERSION_ROOT,
    NODE_REQUESTS_TOPIC,
    TOPIC_NAMESPACE,
    station_commands_filter,
    station_publish_filters,
    valid_station_id,
)

__all__ = [
    "ACL_PATTERNS",
    "CSMS_USER",
    "GATEWAY_PASSWORD_FILE",
    "GATEWAY_SLOTS",
    "GATEWAY_USER",
    "INTERNAL_USERS",
    "NODE_FILTER",
    "NODE_REQUESTS",
    "NODE_USER",
    "acl_text",
    "auth_dir_for",
    "check_station_id",
    "ensure_csms_password",
    "ensure_gateway_password",
    "hash_password",
    "internal_users",
    "new_password",
    "read_password_file",
    "signal_broker",
    "verify_password",
    "write_auth_files",
    "write_pid_file",
    "write_secret",
]

CSMS_USER: Final = "csms"
PASSWD: Final = "passwd"
ACL: Final = "acl"
PID_FILE: Final = "broker.pid"
CSMS_PASSWORD_FILE: Final = "mqtt.password"
NODE_USER: Final = "csms-node"
GATEWAY_USER: Final = "csms-gw"
"""Gateway worker accounts are ``csms-gw-1`` .. ``csms-gw-<GATEWAY_SLOTS>``."""
GATEWAY_SLOTS: Final = 64
GATEWAY_PASSWORD_FILE: Final = "gateway.password"
NODE_FILTER: Final = f"{TOPIC_NAMESPACE}/node/#"
NODE_REQUESTS: Final = NODE_REQUESTS_TOPIC
INTERNAL_USERS: Final = frozenset(
    {CSMS_USER, NODE_USER, *(f"{GATEWAY_USER}-{k}" for k in range(1, GATEWAY_SLOTS + 1))}
)

_ITERATIONS: Final = 101  # what mosquitto_passwd 2.0 uses
_SALT_BYTES: Final = 12

ACL_PATTERNS: Final = (
    *(("write", topic) for topic in station_publish_filters("%u", root=ANY_VERSION_ROOT)),
    ("read", station_commands_filter("%u", root=ANY_VERSION_ROOT)),
)
"""A station's rights, ``%u`` its user name (= its station id). The ``+`` version level lets
the CSMS hear stations of an older protocol version, so it can refuse them clearly."""


def check_station_id(station_id: str) -> str:
    """A station id usable as a user name and a topic level (no ``+ # /``), not the CSMS's."""
    if not valid_station_id(station_id) or station_id in INTERNAL_USERS:
        raise ValueError(
            f"invalid station id {station_id!r}: 1-64 of A-Z a-z 0-9 _ -, starting with a "
            f"letter or digit, and not one of the CSMS's own ({CSMS_USER!r}, {NODE_USER!r}, "
            f"{GATEWAY_USER}-<n>)"
        )
    return station_id


def new_password() -> str:
    return secrets.token_urlsafe(24)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``$7$101$<b64 salt>$<b64 PBKDF2-HMAC-SHA512>``, as ``mosquitto_passwd`` writes it."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    b64 = base64.b64encode
    return f"$7${_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash (any iteration count)."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt, validate=True), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def auth_dir_for(csms_data_dir: Path) -> Path:
    return csms_data_dir / "mqtt"


def acl_text(csms_user: str = CSMS_USER) -> str:
    lines = [
        "# Generated by smartcharge (gateway/broker_accounts.py).",
        "# The CSMS reads and writes every smartcharge topic.",
        f"user {csms_user}",
        f"topic readwrite {ALL_TOPICS_FILTER}",
        "",
        "# The node-gateway contract (docs/node-protocol.md).",
        f"user {NODE_USER}",
        f"topic readwrite {NODE_FILTER}",
        *(
            line
            for k in range(1, GATEWAY_SLOTS + 1)
            for line in (
                f"user {GATEWAY_USER}-{k}",
                f"topic read {NODE_FILTER}",
                f"topic write {NODE_REQUESTS}",
            )
        ),
        "",
        "# A station (user name = station id) writes and reads only its own topics.",
        *(f"pattern {access} {topic}" for access, topic in ACL_PATTERNS),
    ]
    return "\n".join(lines) + "\n"


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing it in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_password_file(path: Path) -> str:
    return path.read_text(encoding="utf-8").splitlines()[0]


def ensure_csms_password(csms_data_dir: Path) -> Path:
    """``<csms data dir>/mqtt.password`` (0600), generated on first use; return its path."""
    path = csms_data_dir / CSMS_PASSWORD_FILE
    if not path.exists():
        write_secret(path, new_password() + "\n")
    return path


def ensure_gateway_password(csms_data_dir: Path) -> Path:
    """``<csms data dir>/gateway.password`` (0600), the gateway workers' broker password."""
    path = csms_data_dir / GATEWAY_PASSWORD_FILE
    if not path.exists():
        write_secret(path, new_password() + "\n")
    return path


def internal_users(csms_password: str, gateway_password: str) -> list[tuple[str, str]]:
    """The ``(user, hash)`` pairs of the CSMS's own accounts."""
    csms = hash_password(csms_password)
    gateway = hash_password(gateway_password)
    return [
        (CSMS_USER, csms),
        (NODE_USER, csms),
        *((f"{GATEWAY_USER}-{k}", gateway) for k in range(1, GATEWAY_SLOTS + 1)),
    ]


def write_auth_files(
    auth_dir: Path, users: Iterable[tuple[str, str]], *, csms_user: str = CSMS_USER
) -> None:
    """Write ``passwd`` (``(user, hash)`` pairs) and ``acl`` into ``auth_dir`` atomically."""
    auth_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    passwd = "".join(f"{user}:{hashed}\n" for user, hashed in users)
    write_secret(auth_dir / PASSWD, passwd)
    write_secret(auth_dir / ACL, acl_text(csms_user))


def write_pid_file(auth_dir: Path, pid: int) -> None:
    write_secret(auth_dir / PID_FILE, f"{pid}\n")


def signal_broker(auth_dir: Path) -> bool:
    """Ask the broker that serves ``auth_dir`` to reload it (``SIGHUP``); ``False`` if none
    runs. The pid is checked to be a broker's (a stale pid file may name another process)."""
    try:
        pid = int((auth_dir / PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    if b"mosquitto" not in cmdline and b"amqtt_runner" not in cmdline:
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    return True
