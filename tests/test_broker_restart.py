"""A broker killed with ``kill -9`` starts again at once on its port, and clients are back
within a few seconds (bounded reconnect back-off, docs/broker-security.md)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.broker import EmbeddedBroker
from protocol.mqtt_settings import BACKOFF_MAX_S, MqttSettings
from tests.brokers import MqttClientFactory
from tests.conftest import SecureBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def binds_without_reuseaddr(port: int) -> bool:
    """What the old port check did (and what failed for ~60 s after a crash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_killed_broker_restarts_on_its_port_at_once_and_clients_come_back(
    secure_broker: SecureBroker, mqtt_client: MqttClientFactory, tmp_path: Path
) -> None:
    old = secure_broker.broker
    port = old.port
    password = secure_broker.station("st-k")
    # A client with the station's own back-off, reconnecting by itself.
    settings = MqttSettings(
        host="127.0.0.1", port=port, username="st-k", password=password, client_id="st-k"
    )
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="st-k", clean_session=False)
    settings.apply_to(client)
    client.reconnect_delay_set(min_delay=0.25, max_delay=BACKOFF_MAX_S)  # type: ignore[arg-type]
    connects: list[float] = []
    connected = threading.Event()

    def on_connect(c: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
        connects.append(time.monotonic())
        connected.set()

    client.on_connect = on_connect
    client.connect_async("127.0.0.1", port, keepalive=5)
    client.loop_start()
    try:
        assert connected.wait(10)
        connected.clear()
        others = [
            mqtt_client(secure_broker.url, f"st-k{i}", username=f"st-k{i}", password=pw)
            for i, pw in enumerate(secure_broker.station(f"st-k{i}") for i in range(5))
        ]
        assert old.pid is not None
        os.kill(old.pid, signal.SIGKILL)
        old.stop()  # reaps it
        for other in others:
            other.kill()
        # Connections the dead broker held are in TIME_WAIT on its port (what used to block):
        time_wait = not binds_without_reuseaddr(port)

        started = time.monotonic()
        again = EmbeddedBroker(
            port=port,
            data_dir=old.data_dir,
            prefer=old.kind,
            auth_dir=old.auth_dir,
            start_timeout=10,
        ).start()
        try:
            restart_s = time.monotonic() - started
            assert connected.wait(BACKOFF_MAX_S + 5), "the client did not come back"
            back_s = connects[-1] - started
            print(
                f"{old.kind}: TIME_WAIT on the port: {time_wait}; restarted in {restart_s:.2f} s;"
                f" client back {back_s:.2f} s after the restart began"
            )
            assert restart_s < 5
            assert back_s < BACKOFF_MAX_S + 5
        finally:
            again.stop()
    finally:
        client.loop_stop()
        client.disconnect()
