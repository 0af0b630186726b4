"""The embedded MQTT broker behind ``smartcharge up`` and ``smartcharge broker``.

:class:`EmbeddedBroker` runs a broker as a child process bound to loopback:

- **Mosquitto** when the ``mosquitto`` binary exists (PATH, ``/usr/sbin``, ``/usr/local/sbin``),
  with a generated config in ``data_dir``: with an ``auth_dir``, no anonymous clients, the
  password file and ACL of ``gateway.broker_accounts``, client id = user name, and optionally a
  TLS listener (``docs/broker-security.md``); persistence saved on every change (a crash loses
  nothing that was queued), ``max_queued_messages`` raised to 100,000 (the default 1,000
  silently drops messages for a subscriber that falls behind), no daemonizing.
- **amqtt** otherwise, in its own process (``python -m gateway.amqtt_runner``): zero setup but
  slower, MQTT 3.1.1 only, no sessions for anonymous clients, and it leaks retained messages to
  unrelated subscribers (``docs/facts.md``, amqtt). Good enough for a demo, not for production.

``start()`` returns once the broker has answered an MQTT CONNECT with a CONNACK, so the broker is
really serving, not just listening. ``stop()`` sends SIGTERM, waits, then kills.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Literal, Self

from gateway import broker_accounts as accounts
from gateway.broker_probe import (  # find_mosquitto, free_port, port_is_free: re-exported
    _mqtt_probe,
    find_mosquitto,
    free_port,
    port_is_free,
)
from gateway.mosquitto_conf import mosquitto_config

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_PORT",
    "BrokerError",
    "BrokerKind",
    "BrokerNotFoundError",
    "EmbeddedBroker",
    "find_mosquitto",
    "free_port",
    "main",
    "port_is_free",
]

BrokerKind = Literal["mosquitto", "amqtt"]
Preference = Literal["auto", "mosquitto", "amqtt"]

DEFAULT_PORT: Final = 1883
DEFAULT_DATA_DIR: Final = Path("var/broker")
DEFAULT_AUTH_DIR: Final = Path("var/csms/mqtt")
MOSQUITTO_MISSING: Final = "mosquitto binary not found: apt-get install mosquitto"

_PACKAGE_ROOT: Final = Path(__file__).resolve().parent.parent
_POLL_INTERVAL: Final = 0.05
_LOG_TAIL_BYTES: Final = 4000
_PORT_ATTEMPTS: Final = 3


class BrokerError(RuntimeError):
    """The broker could not be started (or stopped)."""


class BrokerNotFoundError(BrokerError):
    """The requested broker implementation is not installed."""


class EmbeddedBroker:
    """A Mosquitto or amqtt broker in a child process, bound to ``host`` (loopback by default).

    ``port=None`` takes 1883 when it is free and any free port otherwise; ``port=0`` always takes
    a free port (what tests want). ``prefer="auto"`` takes Mosquitto when installed, else amqtt;
    ``prefer="mosquitto"`` raises :class:`BrokerNotFoundError` when it is not installed.

    ``save_every_change`` (Mosquitto): snapshot the persistence file after every change (nothing
    queued is lost on ``kill -9``, but QoS 1 throughput drops ~3x: 1.0k vs 3.4k msg/s measured
    with a paho publisher and subscriber); ``False`` (the default) snapshots once a second, so
    a ``kill -9`` of the broker loses at most the last second of queued messages.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        data_dir: Path | str = DEFAULT_DATA_DIR,
        prefer: Preference = "auto",
        *,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        save_every_change: bool = False,
        auth_dir: Path | str | None = None,
        tls_port: int | None = None,
    ) -> None:
        """``auth_dir``: enforce identity and the ACL from the files there
        (``gateway.broker_accounts``); ``None`` lets anyone in (tests that are not about
        security). ``tls_port``: also listen with TLS there (0: a free port), with a
        certificate made on first run in ``<auth_dir or data_dir>/tls``."""
        if prefer not in ("auto", "mosquitto", "amqtt"):
            raise ValueError(f"prefer must be 'auto', 'mosquitto' or 'amqtt', not {prefer!r}")
        self.host = host
        self.requested_port = port
        self.data_dir = Path(data_dir).resolve()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.save_every_change = save_every_change
        self.auth_dir = None if auth_dir is None else Path(auth_dir).resolve()
        self.requested_tls_port = tls_port
        self._tls_port: int | None = None
        self._mosquitto = find_mosquitto() if prefer in ("auto", "mosquitto") else None
        if prefer == "mosquitto" and self._mosquitto is None:
            raise BrokerNotFoundError(MOSQUITTO_MISSING)
        self._kind: BrokerKind = "mosquitto" if self._mosquitto else "amqtt"
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def kind(self) -> BrokerKind:
        return self._kind

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the broker has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def secure(self) -> bool:
        """True when clients must authenticate (an ``auth_dir`` was given)."""
        return self.auth_dir is not None

    @property
    def tls_port(self) -> int | None:
        return self._tls_port

    @property
    def tls_url(self) -> str | None:
        return None if self._tls_port is None else f"mqtts://{self.host}:{self._tls_port}"

    @property
    def ca_file(self) -> Path:
        """The certificate clients verify the TLS listener with (self-signed: pinned)."""
        return self._tls_dir_root() / "tls" / "cert.pem"

    def _tls_dir_root(self) -> Path:
        return self.auth_dir if self.auth_dir is not None else self.data_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self._kind}.log"

    @property
    def config_path(self) -> Path:
        """The generated Mosquitto config (unused for amqtt)."""
        return self.data_dir / "mosquitto.conf"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the broker; return once it answers MQTT CONNECT. Raise BrokerError otherwise."""
        if self.running:
            raise BrokerError(f"the {self._kind} broker is already running at {self.url}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_auth()
        explicit = self.requested_port not in (None, 0)
        attempts = 1 if explicit else _PORT_ATTEMPTS
        last_error: BrokerError | None = None
        for _ in range(attempts):
            port = self._choose_port()
            try:
                self._tls_port = self._choose_tls_port(port)
                self._spawn(port)
                self._wait_ready(port)
            except BrokerError as exc:
                # A port picked by us may have been taken in between (another test, another
                # broker): try another one. An explicit port fails at once.
                self._terminate()
                last_error = exc
                continue
            self._port = port
            if self.auth_dir is not None and self.pid is not None:
                accounts.write_pid_file(self.auth_dir, self.pid)
            return self
        assert last_error is not None
        raise last_error

    def stop(self) -> int | None:
        """SIGTERM the broker, wait up to ``stop_timeout``, then SIGKILL. Return its exit code."""
        return self._terminate()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"<EmbeddedBroker {self._kind} {state}>"

    def reload(self) -> bool:
        """Make the broker read its password file again (after a station was added/revoked)."""
        return self.auth_dir is not None and accounts.signal_broker(self.auth_dir)

    # -- internals -------------------------------------------------------------------------

    def _prepare_auth(self) -> None:
        """Make sure the files the broker will read exist (an empty password file: nobody)."""
        if self.auth_dir is not None and not (self.auth_dir / accounts.PASSWD).exists():
            accounts.write_auth_files(self.auth_dir, [])
        if self.requested_tls_port is not None:
            from gateway.tls import ensure_self_signed_cert

            ensure_self_signed_cert(self._tls_dir_root(), hostnames=("localhost",))

    def _choose_tls_port(self, port: int) -> int | None:
        if self.requested_tls_port is None:
            return None
        if self.requested_tls_port == 0:
            while (tls := free_port(self.host)) == port:
                pass
            return tls
        if not port_is_free(self.requested_tls_port, self.host):
            raise BrokerError(f"port {self.requested_tls_port} on {self.host} is already in use")
        return self.requested_tls_port

    def _choose_port(self) -> int:
        if self.requested_port is None:
            return DEFAULT_PORT if port_is_free(DEFAULT_PORT, self.host) else free_port(self.host)
        if self.requested_port == 0:
            return free_port(self.host)
        if not port_is_free(self.requested_port, self.host):
            raise BrokerError(f"port {self.requested_port} on {self.host} is already in use")
        return self.requested_port

    def _spawn(self, port: int) -> None:
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        if self._mosquitto is not None:
            self._write_mosquitto_config(port)
            cmd = [self._mosquitto, "-c", str(self.config_path)]
            stdin: int = subprocess.DEVNULL
            env = None
        else:
            cmd = [
                sys.executable,
                "-m",
                "gateway.amqtt_runner",
                "--host",
                self.host,
                "--port",
                str(port),
                "--exit-on-stdin-eof",
            ]
            if self.auth_dir is not None:
                cmd += ["--auth-dir", str(self.auth_dir)]
            if self._tls_port is not None:
                cert_dir = self.ca_file.parent
                cmd += ["--tls-port", str(self._tls_port)]
                cmd += ["--certfile", str(cert_dir / "cert.pem")]
                cmd += ["--keyfile", str(cert_dir / "key.pem")]
            stdin = subprocess.PIPE  # the child exits when this pipe closes, i.e. when we die
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
            )
            env["PYTHONUNBUFFERED"] = "1"
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=stdin,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                # Own session: a Ctrl-C in the terminal reaches only our process, which then
                # stops the broker last, after the CSMS has flushed what it publishes.
                start_new_session=True,
            )
        except OSError as exc:
            raise BrokerError(f"cannot run {cmd[0]}: {exc}") from exc

    def _write_mosquitto_config(self, port: int) -> None:
        persistence_dir = self.data_dir / "mosquitto"
        persistence_dir.mkdir(parents=True, exist_ok=True)
        tls = None
        if self._tls_port is not None:
            cert_dir = self.ca_file.parent
            tls = (self._tls_port, cert_dir / "cert.pem", cert_dir / "key.pem")
        config = mosquitto_config(
            host=self.host,
            port=port,
            persistence_dir=persistence_dir,
            log_path=self.log_path,
            auth_dir=self.auth_dir,
            tls=tls,
            save_every_change=self.save_every_change,
        )
        self.config_path.write_text(config)

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        proc = self._proc
        assert proc is not None
        while True:
            if proc.poll() is not None:
                raise BrokerError(
                    f"the {self._kind} broker exited with code {proc.returncode} while starting "
                    f"on {self.host}:{port}; {self._log_tail()}"
                )
            if _mqtt_probe(self.host, port, timeout=1.0) and proc.poll() is None:
                return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"the {self._kind} broker did not accept MQTT connections on "
                    f"{self.host}:{port} within {self.start_timeout:.0f} s; {self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _terminate(self) -> int | None:
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=self.stop_timeout)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            code = proc.returncode
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
                tail = f.read().decode(errors="replace").strip()
        except OSError:
            return f"no log at {self.log_path}"
        return f"end of {self.log_path}:\n{tail}" if tail else f"{self.log_path} is empty"


if __name__ == "__main__":
    from gateway.broker_cli import main

    raise SystemExit(main())
