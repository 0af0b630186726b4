"""The bridge's one MQTT transport, without a broker: which paho clients get built, and how a
publish that cannot go out is reported (the broker-backed behaviour is in test_mqtt_link_*.py
and test_ack_after_apply.py, for both transports)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pykka
import pytest

from actors.bridge import BridgeStats, MqttBridgeActor
from actors.messages import Publish
from actors.mqtt_link import MqttLink
from actors.mqtt_transport import InProcessLink

URL = "mqtt://127.0.0.1:1"  # never connected: nothing here starts a transport


@pytest.fixture
def built_clients(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The client id of every paho client constructed in this process from now on."""
    built: list[str] = []
    real_init = mqtt.Client.__init__

    def counting_init(self: mqtt.Client, *args: Any, **kwargs: Any) -> None:
        built.append(str(kwargs.get("client_id")))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(mqtt.Client, "__init__", counting_init)
    return built


@pytest.fixture
def _stop_actors() -> Iterator[None]:
    try:
        yield
    finally:
        pykka.ActorRegistry.stop_all()


def test_a_bridge_with_the_mqtt_process_builds_no_paho_client_here(
    built_clients: list[str],
) -> None:
    bridge = MqttBridgeActor(URL, client_id="tr-process", process=True)
    assert isinstance(bridge._transport, MqttLink)
    assert built_clients == []


def test_an_in_process_bridge_builds_exactly_one_paho_client(built_clients: list[str]) -> None:
    bridge = MqttBridgeActor(URL, client_id="tr-in-process", process=False)
    assert isinstance(bridge._transport, InProcessLink)
    assert built_clients == ["tr-in-process"]
    assert bridge._transport.session.client is not None


@pytest.mark.usefixtures("_stop_actors")
def test_a_publish_without_the_mqtt_process_counts_as_a_failure_not_as_sent() -> None:
    stats = BridgeStats()
    ref = MqttBridgeActor.start(URL, client_id="tr-unstarted", stats=stats, process=True)
    ref.tell(Publish(topic="smartcharge/v2/stations/tr/commands", payload=b"{}"))
    ref.stop(block=True, timeout=10)  # the Publish was handled before the stop
    assert (stats.publish_failures, stats.messages_out) == (1, 0)


def test_the_link_reports_a_publish_it_cannot_hand_to_its_process() -> None:
    failures: list[tuple[str, str]] = []
    link = MqttLink(
        "127.0.0.1",
        1,
        client_id="tr-link",
        keepalive=10,
        on_messages=lambda batch, latch: None,
        on_state=lambda up, detail, failure: None,
        on_publish_failed=lambda topic, error: failures.append((topic, error)),
    )
    assert not link.publish("t/1", b"x", False)
    assert failures == [("t/1", "the MQTT process is not running")]
