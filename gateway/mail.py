"""Mail for people (password resets, email confirmation), through an SMTP server by URL.

``smtp://host:port`` (plain, e.g. a local relay), ``smtp+starttls://`` or ``smtps://`` (TLS);
an optional ``user@`` takes its password from ``SMARTCHARGE_SMTP_PASSWORD`` (never the URL);
``?from=address`` sets the sender (default ``smartcharge@<host>``).

:class:`SmtpMailer` sends from a thread of its own: a request thread only puts the message
on a bounded queue, so a slow or dead SMTP server never holds a request (each connection
also has a ``timeout_s``). The thread starts on the first message, in the process that sends
(gunicorn's worker, after the fork).
"""

from __future__ import annotations

import logging
import os
import queue
import smtplib
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from actors.scheduling import run_as_normal_thread

__all__ = ["Mailer", "SmtpMailer", "SmtpSettings", "parse_smtp_url"]

log = logging.getLogger(__name__)

SMTP_PASSWORD_ENV = "SMARTCHARGE_SMTP_PASSWORD"
SCHEMES = {"smtp": (25, "plain"), "smtp+starttls": (587, "starttls"), "smtps": (465, "tls")}


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Queue ``message`` for delivery; never blocks on the network."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    security: str = "plain"
    """``plain``, ``starttls`` or ``tls``."""
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0


def parse_smtp_url(url: str, env: dict[str, str] | None = None) -> SmtpSettings:
    """``smtp[s|+starttls]://[user@]host[:port][?from=addr]``; a ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"SMTP URL {url!r}: the scheme must be one of {sorted(SCHEMES)}")
    if parts.password is not None:
        raise ValueError(f"no password in the SMTP URL: use the {SMTP_PASSWORD_ENV} variable")
    if not parts.hostname:
        raise ValueError(f"SMTP URL {url!r} names no host")
    default_port, security = SCHEMES[parts.scheme]
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    environ = os.environ if env is None else env
    return SmtpSettings(
        host=parts.hostname,
        port=parts.port or default_port,
        sender=query.get("from", [f"smartcharge@{parts.hostname}"])[0],
        security=security,
        username=username,
        password=environ.get(SMTP_PASSWORD_ENV) if username else None,
    )


class SmtpMailer:
    """:class:`Mailer` over SMTP, one connection per message, from its own thread."""

    def __init__(self, settings: SmtpSettings, *, max_queued: int = 1000) -> None:
        self.settings = settings
        self._queue: queue.Queue[EmailMessage | None] = queue.Queue(max_queued)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        if message["From"] is None:
            message["From"] = self.settings.sender
        self._start()
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log.error("mail queue full: dropped a message to %s", message["To"])

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (within ``timeout_s``), then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_s)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="smtp-mailer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        run_as_normal_thread()  # started by the sessions listener host (actors.scheduling)
        while (message := self._queue.get()) is not None:
            try:
                self._deliver(message)
            except (OSError, smtplib.SMTPException) as exc:
                log.error("could not mail %s via %s: %s", message["To"], self.settings.host, exc)

    def _deliver(self, message: EmailMessage) -> None:
        s = self.settings
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout_s, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        with smtp:
            if s.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if s.username is not None:
                smtp.login(s.username, s.password or "")
            smtp.send_message(message)
