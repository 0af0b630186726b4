""":class:`actors.mqtt_client.BufferedClient`'s own PUBLISH path (``on_publish_received``).

The client reads whole QoS 0/1 PUBLISH packets out of its read buffer itself; whatever else
comes (another packet type, a packet cut by a read, a malformed one) is paho's. These tests
frame packets with their own encoder (MQTT 3.1.1, section 2.2.3 and 3.3, written here, not
taken from the code under test), feed them through a socket pair in arbitrary cuts and check
that every message arrives whole, in order, with its QoS and id; then the same against a
real Mosquitto.
"""

from __future__ import annotations

import itertools
import random
import socket
import threading
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from actors.mqtt_client import BufferedClient
from tests.brokers import parse_mqtt_url
from tests.ingest_support import WAIT_S
from tests.protocol_support import FAST
from tests.test_ingest_buffered_client import TOPIC, burst_payloads, publish_burst

Delivered = tuple[str | None, bytes, int, int]
"""``(topic, payload, qos, mid)`` as the client hands it on."""


def remaining_length(n: int) -> bytes:
    """The variable-length encoding of MQTT 3.1.1 section 2.2.3 (its pseudo-code)."""
    out = bytearray()
    while True:
        digit, n = n % 128, n // 128
        out.append(digit | 0x80 if n > 0 else digit)
        if n == 0:
            return bytes(out)


def publish_packet(topic: bytes, payload: bytes, qos: int, mid: int) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    body += payload
    return bytes([0x30 | qos << 1]) + remaining_length(len(body)) + body


PINGRESP = b"\xd0\x00"


class FedClient:
    """A :class:`BufferedClient` whose socket is one end of a socket pair the test writes."""

    def __init__(self, *, fast: bool = True, manual_ack: bool = True) -> None:
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id="fast-path",
            protocol=mqtt.MQTTv311,
            manual_ack=manual_ack,
        )
        self.log: list[tuple[str, Delivered]] = []
        if fast:
            self.client.on_publish_received = lambda t, p, q, m: self.log.append(
                ("fast", (t, bytes(p), q, m))
            )
        self.client.on_message = self._on_message
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.client._sock = self.ours
        self.client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic: str | None = msg.topic
        except UnicodeDecodeError:
            topic = None
        self.log.append(("slow", (topic, bytes(msg.payload), msg.qos, msg.mid)))

    def feed(self, chunk: bytes) -> mqtt.MQTTErrorCode:
        """Write ``chunk`` (64 KiB at a time: the socket pair's buffer holds that much) and
        let the client read until the socket is empty."""
        rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        for at in range(0, len(chunk), 65_536):
            self.theirs.sendall(chunk[at : at + 65_536])
            rc = self.client.loop_read()
            while rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and self._unread():
                rc = self.client.loop_read()
        return rc

    def _unread(self) -> bool:
        try:
            return bool(self.ours.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return False

    def feed_like_paho(self, chunk: bytes) -> object:
        """Write ``chunk`` and read it: the last return code, or the type of the exception
        that came out of ``loop_read`` (paho's own path raises on some malformed packets)."""
        self.theirs.sendall(chunk)
        outcome: object = None
        for _ in range(10_000):
            try:
                outcome = self.client.loop_read()
            except Exception as exc:  # compared with paho's own path, which raises the same
                return type(exc).__name__
            if outcome != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or self.client._sock is None:
                return outcome
            if not self._unread():
                return outcome
        return "no end"

    def sent(self) -> bytes:
        """What the client wrote back (PUBACKs, PUBRECs)."""
        self.theirs.setblocking(False)
        try:
            return self.theirs.recv(1 << 20)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()

    @property
    def delivered(self) -> list[Delivered]:
        return [message for _, message in self.log]

    @property
    def fast(self) -> list[Delivered]:
        return [message for path, message in self.log if path == "fast"]

    @property
    def slow(self) -> list[Delivered]:
        return [message for path, message in self.log if path == "slow"]


@pytest.fixture
def fed() -> Iterator[FedClient]:
    client = FedClient()
    yield client
    client.close()


def _big(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


messages = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=40),
        st.one_of(
            st.binary(max_size=300),
            st.builds(_big, st.integers(16_000, 70_000), st.integers(0, 2**16)),
        ),
        st.sampled_from([0, 1]),
        st.integers(min_value=1, max_value=65_535),
    ),
    min_size=1,
    max_size=25,
)


@FAST
@given(messages, st.lists(st.integers(min_value=1, max_value=90_000), max_size=8))
def test_every_message_arrives_whole_and_in_order_whatever_the_cuts(
    sent: list[tuple[bytes, bytes, int, int]], cuts: list[int]
) -> None:
    fed = FedClient()
    try:
        stream = b"".join(publish_packet(t, p, q, m) for t, p, q, m in sent)
        points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
        for a, b in itertools.pairwise(points):
            assert fed.feed(stream[a:b]) == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        expected = []
        for topic, payload, qos, mid in sent:
            try:
                name: str | None = topic.decode("utf-8")
            except UnicodeDecodeError:
                name = None
            expected.append((name, payload, qos, mid if qos else 0))
        assert fed.delivered == expected
        if not cuts and len(stream) <= 65_536:  # one read holds every packet whole
            assert fed.slow == [], "packets that lie whole in the buffer take the fast path"
    finally:
        fed.close()


def test_packets_that_lie_whole_in_one_read_take_the_fast_path_in_order(fed: FedClient) -> None:
    sent = [(f"t/{i}".encode(), f"payload {i}".encode(), i % 2, i + 1) for i in range(50)]
    assert fed.feed(b"".join(publish_packet(*m) for m in sent)) == 0
    assert fed.slow == []
    assert fed.fast == [(t.decode(), p, q, m if q else 0) for t, p, q, m in sent]


def test_a_packet_cut_by_the_read_and_other_packet_types_are_left_to_paho(fed: FedClient) -> None:
    first = publish_packet(b"a/1", b"one", 1, 7)
    second = publish_packet(b"a/2", b"two" * 100, 1, 8)
    third = publish_packet(b"a/3", b"three", 0, 0)
    fed.feed(first + PINGRESP + second[:10])
    fed.feed(second[10:] + third)
    assert fed.delivered == [
        ("a/1", b"one", 1, 7),
        ("a/2", b"two" * 100, 1, 8),
        ("a/3", b"three", 0, 0),
    ]
    assert ("a/2", b"two" * 100, 1, 8) in fed.slow, "the cut packet is paho's to finish"
    assert ("a/1", b"one", 1, 7) in fed.fast


def test_a_topic_that_is_not_utf8_is_delivered_without_one(fed: FedClient) -> None:
    fed.feed(publish_packet(b"\xff\xfe", b"x", 1, 3) + publish_packet(b"ok", b"y", 1, 4))
    assert fed.fast == [(None, b"x", 1, 3), ("ok", b"y", 1, 4)]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"\x32\x04\x00\x00\x00\x01", id="empty topic"),
        pytest.param(b"\x32\x03\x00\x09ab", id="topic longer than the packet"),
        pytest.param(b"\x32\xff\xff\xff\xff\x01", id="five length bytes"),
    ],
)
def test_a_malformed_publish_ends_the_connection_as_paho_does(fed: FedClient, bad: bytes) -> None:
    rc = fed.feed(publish_packet(b"before", b"kept", 1, 1) + bad)
    assert fed.fast == [("before", b"kept", 1, 1)]
    assert rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or fed.client._sock is None
    assert fed.slow == []


def test_a_closed_connection_is_reported(fed: FedClient) -> None:
    fed.theirs.close()
    assert fed.client.loop_read() != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS


def test_a_real_broker_burst_arrives_whole_through_the_fast_path(mosquitto_url: str) -> None:
    payloads = burst_payloads(2_000, seed=11)
    host, port = parse_mqtt_url(mosquitto_url)
    client = BufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id=f"fast-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv311,
        manual_ack=True,
    )
    got: list[bytes] = []
    slow: list[bytes] = []
    all_in = threading.Event()
    subscribed = threading.Event()

    def fast(topic: str | None, payload: bytes, qos: int, mid: int) -> None:
        assert (topic, qos) == (TOPIC, 1)
        client.ack(mid, qos)
        got.append(bytes(payload))
        if len(got) + len(slow) >= len(payloads):
            all_in.set()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        c.ack(msg.mid, msg.qos)
        slow.append(bytes(msg.payload))
        got.append(bytes(msg.payload))
        if len(got) >= len(payloads):
            all_in.set()

    client.on_publish_received = fast
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    client.connect(host, port, keepalive=60)
    client.loop_start()
    try:
        assert subscribed.wait(WAIT_S), "no SUBACK"
        publish_burst(mosquitto_url, payloads)
        assert all_in.wait(WAIT_S), f"{len(got)} of {len(payloads)} arrived"
    finally:
        client.disconnect()
        client.loop_stop()
    assert got == payloads
    assert len(slow) < len(payloads) // 2, "most messages take the fast path"


def test_the_fast_path_is_off_unless_asked_for(fed: FedClient) -> None:
    fed.client.on_publish_received = None
    fed.feed(publish_packet(b"a", b"b", 1, 9))
    assert fed.fast == []
    assert fed.slow == [("a", b"b", 1, 9)]


def test_the_test_encoder_matches_the_specs_examples() -> None:
    # MQTT 3.1.1, table 2.4: the boundaries of one to four length bytes.
    assert remaining_length(0) == b"\x00"
    assert remaining_length(127) == b"\x7f"
    assert remaining_length(128) == b"\x80\x01"
    assert remaining_length(16_383) == b"\xff\x7f"
    assert remaining_length(16_384) == b"\x80\x80\x01"
    assert remaining_length(268_435_455) == b"\xff\xff\xff\x7f"
    # Section 3.3: fixed header, topic length and name, packet identifier, payload.
    assert publish_packet(b"ab", b"xy", 1, 258) == b"\x32\x08\x00\x02ab\x01\x02xy"
    assert publish_packet(b"ab", b"", 0, 258) == b"\x30\x04\x00\x02ab"


def test_without_manual_ack_paho_keeps_the_message_and_sends_the_puback() -> None:
    fed = FedClient(manual_ack=False)
    try:
        fed.feed(publish_packet(b"a", b"b", 1, 0x0105))
        assert fed.fast == []
        assert fed.slow == [("a", b"b", 1, 0x0105)]
        assert fed.sent() == b"\x40\x02\x01\x05", "paho's PUBACK for mid 0x0105"
    finally:
        fed.close()


def test_the_fast_path_counts_as_traffic_for_the_keepalive(fed: FedClient) -> None:
    fed.client._last_bytes_received = 0.0
    fed.feed(publish_packet(b"a", b"b", 1, 1))
    assert fed.fast == [("a", b"b", 1, 1)]
    assert fed.client._last_bytes_received > 0.0


def test_a_callback_that_raises_does_not_get_the_same_message_again(fed: FedClient) -> None:
    calls: list[int] = []

    def deliver(topic: str | None, payload: bytes, qos: int, mid: int) -> None:
        calls.append(mid)
        if mid == 2:
            raise RuntimeError("the caller failed")

    fed.client.on_publish_received = deliver
    fed.theirs.sendall(b"".join(publish_packet(b"t", b"p", 1, m) for m in (1, 2, 3)))
    with pytest.raises(RuntimeError):
        fed.client.loop_read()
    fed.client.loop_read()
    assert calls == [1, 2, 3]


# Pieces of a stream as a broker (or something posing as one) could send it.
publish_flags = st.sampled_from([0x00, 0x01, 0x08, 0x09])  # retain, dup
pieces = st.one_of(
    st.builds(
        lambda t, p, q, m, f: (
            bytes([publish_packet(t, p, q, m)[0] | f]) + publish_packet(t, p, q, m)[1:]
        ),
        st.sampled_from([b"a", b"t/1", b"\xff\xfe", b"x" * 300]),
        st.one_of(st.just(b""), st.binary(max_size=400)),
        st.sampled_from([0, 1, 2]),
        st.sampled_from([0, 1, 0xFFFF, 0x1234]),
        publish_flags,
    ),
    st.sampled_from(
        [
            PINGRESP,
            b"\x40\x02\x00\x05",  # PUBACK
            b"\x90\x03\x00\x01\x01",  # SUBACK
            b"\x30\x00",  # remaining length 0
            b"\x32\x02\x00\x00",  # empty topic, no id
            b"\x32\x03\x00\x01a",  # QoS 1 without its id
            b"\x32\x04\x00\x00\x00\x01",  # empty topic
            b"\x32\x03\x00\x09ab",  # topic longer than the packet
            b"\x30\x85\x00\x00\x01ab\x00\x00",  # a length in two bytes where one would do
            b"\x00\x80",  # command byte 0
            b"\x30\x80\x80\x80\x80\x01",  # five length bytes
            b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
        ]
    ),
)


@FAST
@given(st.lists(pieces, min_size=1, max_size=12), st.lists(st.integers(0, 6_000), max_size=6))
@example([b"\x00\x80", publish_packet(b"t/1", b"hello", 1, 5)], [2])  # cut inside a packet
def test_the_fast_path_does_what_pahos_own_path_does_with_any_stream(
    stream_pieces: list[bytes], cuts: list[int]
) -> None:
    """paho's own path (``on_publish_received`` unset) is the oracle: the same messages in
    the same order, the same outcome of the last read (a return code or an exception), the
    same packet left part-read, the socket closed or not."""
    stream = b"".join(stream_pieces)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    outcomes = []
    for client in (FedClient(fast=True), FedClient(fast=False)):
        try:
            last: object = None
            for a, b in itertools.pairwise(points):
                last = client.feed_like_paho(stream[a:b])
                if last != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or client.client._sock is None:
                    break
            part_read = dict(client.client._in_packet)
            part_read["packet"] = bytes(part_read["packet"])
            outcomes.append(
                (client.delivered, last, part_read, client.client._sock is None, client.sent())
            )
        finally:
            client.close()
    assert outcomes[0] == outcomes[1]
