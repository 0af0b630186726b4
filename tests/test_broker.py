"""The embedded brokers (gateway/broker.py) and the test infrastructure around them."""

from __future__ import annotations

import os
import queue
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from gateway.broker import BrokerError, EmbeddedBroker, port_is_free
from gateway.broker_probe import _ephemeral_range, free_port
from tests.brokers import (
    REPO_ROOT,
    MqttClientFactory,
    MqttTestClient,
    listening_sockets,
    parse_mqtt_url,
)

pytestmark = pytest.mark.integration

TIMEOUT = 15.0


def unique_topic(name: str) -> str:
    return f"sc-test/{uuid.uuid4().hex[:10]}/{name}"


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def read_lines(stream: IO[str]) -> queue.Queue[str]:
    """Lines of ``stream`` as they arrive, read by a daemon thread; '' marks EOF."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` (not necessarily our child) has exited, without polling."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(pidfd)


# -- both brokers ----------------------------------------------------------------------------


def test_qos1_publish_reaches_subscriber(broker_url: str, mqtt_client: MqttClientFactory) -> None:
    topic = unique_topic("qos1")
    subscriber = mqtt_client(broker_url)
    subscriber.subscribe(topic, qos=1)
    publisher = mqtt_client(broker_url)

    publisher.publish(topic, b'{"n": 1}', qos=1)

    msg = subscriber.get_on(topic, timeout=TIMEOUT)
    assert msg.payload == b'{"n": 1}'
    assert msg.qos == 1
    assert not msg.retain


def test_retained_message_reaches_late_subscriber(
    broker_url: str, mqtt_client: MqttClientFactory
) -> None:
    topic = unique_topic("retained")
    publisher = mqtt_client(broker_url)
    publisher.publish(topic, b"online", qos=1, retain=True)
    publisher.close()

    late = mqtt_client(broker_url)
    late.subscribe(topic, qos=1)

    msg = late.get_on(topic, timeout=TIMEOUT)
    assert msg.payload == b"online"
    assert msg.retain


def test_last_will_is_sent_when_a_client_dies(
    broker_url: str, mqtt_client: MqttClientFactory
) -> None:
    will_topic = unique_topic("will")
    watcher = mqtt_client(broker_url)
    watcher.subscribe(will_topic, qos=1)
    victim = mqtt_client(broker_url, will=(will_topic, b"offline", 1, False))

    victim.kill()  # TCP connection dropped without DISCONNECT

    msg = watcher.get_on(will_topic, timeout=TIMEOUT)
    assert msg.payload == b"offline"


def test_no_last_will_after_a_clean_disconnect(
    broker_url: str, mqtt_client: MqttClientFactory
) -> None:
    will_topic = unique_topic("will")
    watcher = mqtt_client(broker_url)
    watcher.subscribe(will_topic, qos=1)
    leaver = mqtt_client(broker_url, will=(will_topic, b"offline", 1, False))
    leaver.close()
    # A marker published after the DISCONNECT: once it arrives, a will would have arrived too.
    marker = unique_topic("marker")
    watcher.subscribe(marker, qos=1)
    mqtt_client(broker_url).publish(marker, b"x", qos=1)

    received = watcher.get(timeout=TIMEOUT)
    while received.topic != marker:
        assert received.topic != will_topic, "last will sent after a clean DISCONNECT"
        received = watcher.get(timeout=TIMEOUT)


def test_broker_listens_on_loopback_only(any_broker: EmbeddedBroker) -> None:
    assert any_broker.pid is not None
    assert listening_sockets(any_broker.pid) == [("127.0.0.1", any_broker.port)]
    # 127.0.0.2 is loopback too: a socket bound to 0.0.0.0 would accept it, ours must not.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", any_broker.port), timeout=TIMEOUT).close()


def test_url_and_kind(any_broker: EmbeddedBroker, request: pytest.FixtureRequest) -> None:
    assert any_broker.kind == request.node.callspec.params["any_broker"]
    assert parse_mqtt_url(any_broker.url) == ("127.0.0.1", any_broker.port)
    assert any_broker.running


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_context_manager_stops_the_broker(kind: str, tmp_path: Path) -> None:
    try:
        broker = EmbeddedBroker(port=0, data_dir=tmp_path, prefer=kind)  # type: ignore[arg-type]
    except BrokerError as exc:
        pytest.skip(str(exc))
    with broker as running:
        assert running is broker
        assert broker.running
        port = broker.port
    assert not broker.running
    assert port_is_free(port)
    assert broker.stop() is None  # stopping twice is harmless


# -- port selection --------------------------------------------------------------------------


@pytest.fixture
def port_1883_taken() -> Iterator[None]:
    """Make sure 127.0.0.1:1883 is busy (it is when a system Mosquitto runs; else we bind it)."""
    if not port_is_free(1883):
        yield
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 1883))
        sock.listen()
        yield


@pytest.mark.usefixtures("port_1883_taken")
def test_default_port_falls_back_to_a_free_one(tmp_path: Path) -> None:
    with EmbeddedBroker(port=None, data_dir=tmp_path) as broker:
        assert broker.port != 1883
        assert not port_is_free(broker.port)


def test_an_explicit_busy_port_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        broker = EmbeddedBroker(port=busy, data_dir=tmp_path)
        with pytest.raises(BrokerError, match="already in use"):
            broker.start()
        assert not broker.running


# -- Mosquitto specifics ---------------------------------------------------------------------


def test_mosquitto_config(mosquitto_broker: EmbeddedBroker) -> None:
    config = mosquitto_broker.config_path.read_text().splitlines()
    assert f"listener {mosquitto_broker.port} 127.0.0.1" in config
    assert "max_queued_messages 100000" in config
    assert "autosave_on_changes false" in config
    assert "autosave_interval 1" in config
    assert mosquitto_broker.log_path.exists()


def test_mosquitto_keeps_retained_messages_across_restarts(
    mosquitto_broker: EmbeddedBroker, mqtt_client: MqttClientFactory
) -> None:
    topic = unique_topic("persisted")
    mqtt_client(mosquitto_broker.url).publish(topic, b"kept", qos=1, retain=True)

    assert mosquitto_broker.stop() == 0
    mosquitto_broker.start()

    late = mqtt_client(mosquitto_broker.url)
    late.subscribe(topic, qos=1)
    assert late.get_on(topic, timeout=TIMEOUT).payload == b"kept"


# -- amqtt specifics -------------------------------------------------------------------------


def test_amqtt_broker_exits_when_its_parent_dies(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, threading
        from gateway.broker import EmbeddedBroker
        broker = EmbeddedBroker(port=0, data_dir={str(tmp_path)!r}, prefer="amqtt").start()
        print(broker.pid, flush=True)
        threading.Event().wait()
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert parent.stdout is not None
        line = read_lines(parent.stdout).get(timeout=TIMEOUT)
        broker_pid = int(line)
        parent.kill()  # SIGKILL: no chance to stop the broker
        parent.wait(timeout=TIMEOUT)
        assert wait_for_exit(broker_pid, TIMEOUT), "amqtt broker outlived its parent"
    finally:
        parent.kill()
        parent.wait()


# -- `smartcharge broker` --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_broker_command_runs_until_sigterm(
    kind: str, tmp_path: Path, mqtt_client: MqttClientFactory, request: pytest.FixtureRequest
) -> None:
    if kind == "mosquitto":
        request.getfixturevalue("mosquitto_available")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.broker",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--kind",
            kind,
            "--anonymous",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        lines = read_lines(proc.stdout)
        first = lines.get(timeout=TIMEOUT)
        assert first.startswith(f"{kind} broker listening on mqtt://127.0.0.1:"), first
        url = first.split()[-1]
        client = mqtt_client(url)
        topic = unique_topic("cli")
        client.subscribe(topic)
        client.publish(topic, b"hi")
        assert client.get_on(topic, timeout=TIMEOUT).payload == b"hi"
        client.close()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0, proc.stderr.read() if proc.stderr else ""
        remaining = []
        while (line := lines.get(timeout=TIMEOUT)) != "":
            remaining.append(line)
        assert any("stopped" in line for line in remaining), remaining
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def mosquitto_available(tmp_path: Path) -> None:
    """Skip (or, under SMARTCHARGE_REQUIRE_ALL=1, fail) when mosquitto is not installed."""
    try:
        EmbeddedBroker(port=0, data_dir=tmp_path, prefer="mosquitto")
    except BrokerError as exc:
        pytest.skip(str(exc))


# -- SMARTCHARGE_REQUIRE_ALL -----------------------------------------------------------------


@pytest.mark.parametrize("require_all", ["1", ""])
def test_require_all_turns_skips_into_failures(tmp_path: Path, require_all: str) -> None:
    # The real conftest, in a directory of its own (it imports tests.brokers via PYTHONPATH).
    (tmp_path / "conftest.py").write_text((REPO_ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_skips.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_skipped():
                pytest.skip("no frobnicator here")

            @pytest.fixture
            def needs_thing():
                pytest.skip("thing missing")

            def test_skipped_in_fixture(needs_thing):
                pass

            @pytest.mark.xfail(reason="known bug", strict=True)
            def test_xfail():
                assert False

            def test_ok():
                pass
            """
        )
    )
    env = subprocess_env()
    env["SMARTCHARGE_REQUIRE_ALL"] = require_all
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    out = result.stdout + result.stderr
    if require_all:
        assert result.returncode == 1, out
        # a skip in a test body fails it; a skip in a fixture is a setup error
        assert "1 failed, 1 passed, 1 xfailed, 1 error" in out, out
        assert "no frobnicator here" in out
        assert "thing missing" in out
    else:
        assert result.returncode == 0, out
        assert "1 passed, 2 skipped, 1 xfailed" in out, out


def test_test_client_reports_timeouts(mosquitto_url: str, mqtt_client: MqttClientFactory) -> None:
    client: MqttTestClient = mqtt_client(mosquitto_url)
    client.subscribe(unique_topic("silence"))
    with pytest.raises(queue.Empty):
        client.get(timeout=0.2)


def test_free_port_is_bindable_and_outside_the_kernels_ephemeral_range() -> None:
    """A port from ``bind(0)`` lies where any outgoing connection can take it before the
    server binds it; ``free_port`` draws below that range (Linux: 32768-60999)."""
    low, high = _ephemeral_range()
    ports = {free_port() for _ in range(20)}
    for port in ports:
        assert not low <= port <= high, f"{port} is in the ephemeral range {low}-{high}"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # still free: nothing kept it
    assert len(ports) > 1, "drawn at random, not one fixed port"
