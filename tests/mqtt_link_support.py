"""Shared by the MqttLink tests (tests/test_mqtt_link_*.py): the bound of every wait, the station
and topics they use, a polling helper with a deadline, a burst published from a test client
and the wall clock in ms (tests/test_ack_after_apply.py uses them too)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from protocol import EvseId, StationId, meter_topic
from tests.brokers import MqttTestClient

WAIT_S = 20.0
"""Upper bound of every wait in the tests that use it (pytest-timeout stops the test anyway)."""

SID, EID = StationId("lk-001"), EvseId("1")  # EID: the station's own id
TOPIC = meter_topic(SID, EID)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``predicate`` (state another thread or process owns) until true or the deadline."""
    tick, deadline = threading.Event(), time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        tick.wait(0.02)


def publish_burst(client: MqttTestClient, topic: str, payloads: list[bytes]) -> None:
    """Publish every payload at QoS 1 back to back; return once the broker acknowledged all."""
    infos = [client.client.publish(topic, payload, qos=1) for payload in payloads]
    for info in infos:
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"publish {info.mid} not acknowledged"


def now_ms() -> int:
    return int(time.time() * 1000)
