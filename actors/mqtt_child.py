"""The child process of :class:`~actors.mqtt_link.MqttLink`: ``python -m actors.mqtt_child FD``.

It runs a :class:`~actors.mqtt_session.PahoSession` and relays it over the socket ``FD``
(:class:`multiprocessing.connection.Connection` framing; the messages are listed in
:mod:`actors.mqtt_link`). Its settings, password included, arrive as one JSON line on stdin,
never on the command line (``ps`` shows that). It imports only paho, :mod:`protocol` and the
session: ``actors/__init__.py`` imports nothing until a name is used.

Two threads: paho's network thread sends the batches and the connection changes; the main
thread receives the parent's requests (publish, acknowledge, stop). When the parent dies its
``recv`` fails, and the child disconnects and exits.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from actors.mqtt_session import Batch, PahoSession
from protocol.mqtt_settings import MqttSettings

__all__ = ["run"]


def run(config: dict[str, Any], fd: int) -> None:
    """Relay between the parent on ``fd`` and the broker until told to stop or orphaned."""
    conn = Connection(fd)
    send_lock = threading.Lock()

    def send(message: Any) -> None:
        try:
            with send_lock:
                conn.send(message)
        except OSError:
            # The parent is gone: exit before paho acknowledges what it could not take
            # (the broker keeps it for the session's next connection).
            os._exit(1)

    def on_batch(batch: Batch, generation: int, mids: list[int]) -> None:
        send(("msgs", batch, (generation, mids)))

    def on_state(up: bool, detail: str, failure: bool) -> None:
        send(("up", detail) if up else ("down", detail, failure))

    settings = MqttSettings.from_json(config["settings"])
    session = PahoSession(
        settings,
        keepalive=config["keepalive"],
        on_batch=on_batch,
        on_state=on_state,
        read_linger_s=config.get("linger_s", 0.0),
    )
    session.start()
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            if request[0] == "stop":
                break
            if request[0] == "ack":
                for generation, mids in request[1]:
                    session.ack(generation, mids)
                continue
            _, topic, payload, retain = request
            error = session.publish(topic, payload, retain)
            if error is not None:
                send(("pubfail", topic, error))
    finally:
        session.stop()


if __name__ == "__main__":
    # Ctrl-C or a SIGTERM to the whole process group: the parent decides when this child
    # stops (it sends "stop", or its end of the socket closes when it dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="mqtt-link %(levelname)s %(message)s")
    run(json.loads(sys.stdin.readline()), int(sys.argv[1]))
