"""The ingest path's MQTT building block, against a real Mosquitto:
:class:`actors.mqtt_client.BufferedClient` (paho reading the socket in 64 KiB chunks, receiving
a QoS 1 burst whole and in order while another thread publishes)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

import actors.mqtt_client
from actors.mqtt_client import BufferedClient, new_client
from tests import ingest_support
from tests.brokers import MqttClientFactory, parse_mqtt_url
from tests.ingest_support import WAIT_S

_stop_actors = ingest_support._stop_actors


# ============================================================================ BufferedClient

TOPIC = "ingest-test/burst"
ECHO_TOPIC = "ingest-test/echo"
BIG = 70_000
"""A payload bigger than one 64 KiB read."""


def burst_payloads(n: int, seed: int = 20_240) -> list[bytes]:
    """``n`` random payloads from 1 byte to 70 KB: mostly small, so one read holds many
    packets and cuts the last one, with a big one (more than a whole read) every 97th."""
    rng = random.Random(seed)
    sizes = [1 + (i * 7_919) % 3_000 for i in range(n)]
    for i in range(13, n, 97):
        sizes[i] = rng.randint(60_000, BIG)
    sizes[n // 2] = BIG
    sizes[0] = 1
    return [rng.randbytes(size) for size in sizes]


class BurstSubscriber:
    """A :class:`BufferedClient` (its own network thread, ``loop_start``) subscribed to one
    topic; its callbacks run on the network thread and only record."""

    def __init__(self, url: str, expected: int) -> None:
        self.host, self.port = parse_mqtt_url(url)
        self.expected = expected
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=f"burst-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        self.payloads: list[bytes] = []
        self.topics: set[str] = set()
        self.all_in = threading.Event()
        self.on_count: Callable[[int], None] = lambda count: None
        self._subscribed = threading.Event()
        self._suback_ok = False
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            client.subscribe(TOPIC, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._suback_ok = not any(rc.is_failure for rc in reason_codes)
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.topics.add(msg.topic)
        self.payloads.append(bytes(msg.payload))
        count = len(self.payloads)
        self.on_count(count)
        if count >= self.expected:
            self.all_in.set()

    def start(self) -> BurstSubscriber:
        self.client.connect(self.host, self.port, keepalive=60)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT_S), "no SUBACK for the burst topic"
        assert self._suback_ok, "the broker refused the subscription"
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_burst(url: str, payloads: list[bytes]) -> None:
    """A plain paho client publishes every payload at QoS 1 without waiting in between,
    then waits for every PUBACK."""
    host, port = parse_mqtt_url(url)
    publisher = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"burst-pub-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv311,
    )
    publisher.max_inflight_messages_set(200)
    connected = threading.Event()
    publisher.on_connect = lambda client, userdata, flags, rc, props: connected.set()
    publisher.connect(host, port, keepalive=60)
    publisher.loop_start()
    try:
        assert connected.wait(WAIT_S), "the publisher never connected"
        infos = [publisher.publish(TOPIC, payload, qos=1) for payload in payloads]
        deadline = time.monotonic() + WAIT_S
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        assert all(info.is_published() for info in infos), "the broker did not ack the burst"
    finally:
        publisher.disconnect()
        publisher.loop_stop()


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``bufsize`` of every real socket read a :class:`BufferedClient` makes."""
    reads: list[int] = []
    real_sock_recv = mqtt.Client._sock_recv

    def sock_recv(self: mqtt.Client, bufsize: int) -> bytes:
        if isinstance(self, BufferedClient):
            reads.append(bufsize)
        return real_sock_recv(self, bufsize)

    monkeypatch.setattr(mqtt.Client, "_sock_recv", sock_recv)
    return reads


def test_this_paho_supports_the_buffered_read_path() -> None:
    assert actors.mqtt_client.SUPPORTED is True
    client = new_client(CallbackAPIVersion.VERSION2, client_id="supported-check")
    assert isinstance(client, BufferedClient)


def test_buffered_subscriber_receives_a_qos1_burst_whole_and_in_order(
    mosquitto_url: str, counted_reads: list[int]
) -> None:
    payloads = burst_payloads(3_000)
    assert max(map(len, payloads)) > 65_536, "one packet must not fit in one read"
    subscriber = BurstSubscriber(mosquitto_url, expected=len(payloads)).start()
    try:
        publish_burst(mosquitto_url, payloads)
        assert subscriber.all_in.wait(WAIT_S), (
            f"{len(subscriber.payloads)} of {len(payloads)} messages arrived"
        )
    finally:
        subscriber.close()

    assert subscriber.topics == {TOPIC}
    assert len(subscriber.payloads) == len(payloads)
    first_bad = next(
        (
            i
            for i, (got, sent) in enumerate(zip(subscriber.payloads, payloads, strict=True))
            if got != sent
        ),
        None,
    )
    assert first_bad is None, f"message {first_bad} differs (size {len(payloads[first_bad])})"
    # Stock paho reads at least three times per message (type, length, body); reading
    # 64 KiB at a time needs about one read per message even when each comes alone.
    assert set(counted_reads) == {65_536}
    assert len(counted_reads) < 2 * len(payloads), f"{len(counted_reads)} socket reads"


def test_buffered_client_publishes_from_another_thread_while_it_receives(
    mosquitto_url: str, mqtt_client: MqttClientFactory
) -> None:
    echo = mqtt_client(mosquitto_url)
    echo.subscribe(ECHO_TOPIC, qos=1)
    payloads = burst_payloads(3_000, seed=7)
    subscriber = BurstSubscriber(mosquitto_url, expected=len(payloads))
    receiving = threading.Event()
    subscriber.on_count = lambda count: receiving.set() if count >= 20 else None
    received_when_published: list[int] = []
    failures: list[BaseException] = []

    def publish_echoes() -> None:
        try:
            assert receiving.wait(WAIT_S), "the burst never started arriving"
            infos = []
            for i in range(20):
                received_when_published.append(len(subscriber.payloads))
                infos.append(subscriber.client.publish(ECHO_TOPIC, f"echo-{i}", qos=1))
            for info in infos:
                info.wait_for_publish(WAIT_S)
                assert info.is_published(), f"echo {info.mid} not acknowledged"
        except BaseException as exc:  # reported on the test thread
            failures.append(exc)

    side = threading.Thread(target=publish_echoes, name="echo-publisher")
    subscriber.start()
    try:
        side.start()
        publish_burst(mosquitto_url, payloads)
        side.join(WAIT_S)
        assert not side.is_alive(), "the echo publisher is stuck"
        assert not failures, failures
        assert subscriber.all_in.wait(WAIT_S), "the burst did not all arrive"
    finally:
        subscriber.close()

    assert received_when_published[0] < len(payloads), "published only after the burst"
    assert [echo.get(timeout=WAIT_S).payload for _ in range(20)] == [
        f"echo-{i}".encode() for i in range(20)
    ]
    assert subscriber.payloads == payloads
