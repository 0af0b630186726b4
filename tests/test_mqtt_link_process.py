"""MqttLink (the CSMS's paho client in a child process) against a real Mosquitto, the link and
its processes:

- the link alone: a burst of raw messages arrives whole and in order, in batches; the
  link publishes for the parent; ``stop()`` ends the child process and the reader thread;
- the child killed: the link reports it, starts a new child a second later, and the
  persistent session hands over what the broker queued meanwhile (nothing lost);
- the parent killed: the orphaned child notices and exits on its own.

Every wait is on a condition, a queue or a polling helper with a deadline; nothing sleeps.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import actors.mqtt_client
from actors.acks import AppliedLatch
from actors.mqtt_link import MqttLink
from protocol import commands_topic, meter_topic
from tests.brokers import MqttClientFactory, MqttTestClient, parse_mqtt_url
from tests.mqtt_link_support import SID, TOPIC, WAIT_S, publish_burst, wait_until
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
PROBE_TOPIC = meter_topic("lk-probe", "lk-probe-1")
Batch = list[tuple[str | None, bytes]]


@dataclass(frozen=True)
class State:
    up: bool
    detail: str
    failure: bool
    at: float  # time.monotonic() when reported


@dataclass
class LinkRecorder:
    """The link's callbacks: records every batch, state change and publish failure."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    batches: list[Batch] = field(default_factory=list)
    states: list[State] = field(default_factory=list)
    pubfails: list[tuple[str, str]] = field(default_factory=list)
    callback_threads: set[str] = field(default_factory=set)

    def on_messages(self, batch: Batch, latch: AppliedLatch) -> None:
        """Records the batch and counts it as applied (the child then acknowledges it)."""
        latch.release()
        with self.cond:
            self.batches.append(batch)
            self.callback_threads.add(threading.current_thread().name)
            self.cond.notify_all()

    def on_state(self, up: bool, detail: str, failure: bool) -> None:
        with self.cond:
            self.states.append(State(up, detail, failure, time.monotonic()))
            self.callback_threads.add(threading.current_thread().name)
            self.cond.notify_all()

    def on_publish_failed(self, topic: str, error: str) -> None:
        with self.cond:
            self.pubfails.append((topic, error))
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def payloads_on(self, topic: str) -> list[bytes]:
        """Every payload received on ``topic``, in arrival order (call under ``cond``)."""
        return [payload for batch in self.batches for t, payload in batch if t == topic]

    def ups(self) -> list[State]:
        return [s for s in self.states if s.up]

    def downs(self) -> list[State]:
        return [s for s in self.states if not s.up]


@pytest.fixture
def make_link() -> Iterator[Callable[[str], tuple[MqttLink, LinkRecorder]]]:
    """``make_link(url)``: a started MqttLink with a fresh client id and its recorder."""
    links: list[MqttLink] = []

    def make(url: str) -> tuple[MqttLink, LinkRecorder]:
        host, port = parse_mqtt_url(url)
        rec = LinkRecorder()
        link = MqttLink(
            host,
            port,
            client_id=f"lk-{uuid.uuid4().hex[:10]}",
            keepalive=10,
            on_messages=rec.on_messages,
            on_state=rec.on_state,
            on_publish_failed=rec.on_publish_failed,
        )
        links.append(link)
        link.start()
        return link, rec

    yield make
    for link in links:
        link.stop()
        proc = link._proc  # a failed test must not leave a child behind
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(WAIT_S)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # the state follows "(comm)"


def exists(pid: int) -> bool:
    """Whether ``pid`` is still in the process table (alive or an unreaped zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_subscribed(rec: LinkRecorder, publisher: MqttTestClient) -> None:
    """The link reports ``up`` before its SUBACK: probe until a message gets through."""
    deadline = time.monotonic() + WAIT_S
    n = 0
    while True:
        n += 1
        publisher.publish(PROBE_TOPIC, f"probe-{n}".encode())
        try:  # any probe through proves the subscription
            rec.wait_for(lambda: bool(rec.payloads_on(PROBE_TOPIC)), "a probe", 0.2)
            return
        except AssertionError:
            if time.monotonic() >= deadline:
                raise AssertionError("the link never received a probe") from None


def raw_payloads(n: int, seed: int) -> list[bytes]:
    """Meter-topic payloads valid or not: MqttLink hands over bytes without parsing them."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for i in range(n):
        match i % 6:
            case 0:
                out.append(
                    b'{"v":2,"evse_id":"1","session_id":"s1","power_w":11000.0,"epoch":1,'
                    b'"energy_wh":%d.0,"soc":50.0,"seq":%d,"ts":%d}' % (i, i, 1_700_000_000_000 + i)
                )
            case 1:
                out.append(rng.randbytes(rng.randint(1, 200)))  # not UTF-8, not JSON
            case 2:
                out.append(b"")
            case 3:
                out.append(b"\x00\xff" * rng.randint(1, 50) + str(i).encode())
            case 4:
                out.append(b'{"v":2,"i":%d}' % i)
            case _:
                out.append(str(i).encode() * rng.randint(1, 1000))
    out[n // 2] = b"L" * 100_000 + b"%d" % n  # bigger than one 64 KiB read
    return out


# ============================================================================ the link alone


def test_link_delivers_a_burst_in_order_publishes_and_stops_its_process(
    mosquitto_url: str,
    mqtt_client: MqttClientFactory,
    make_link: Callable[[str], tuple[MqttLink, LinkRecorder]],
) -> None:
    link, rec = make_link(mosquitto_url)
    pid = link.pid
    assert pid is not None
    assert pid != os.getpid()
    assert alive(pid)
    rec.wait_for(lambda: bool(rec.ups()), "the link to come up")
    assert rec.states[0] == State(True, "session present: False", False, rec.states[0].at)

    publisher = mqtt_client(mosquitto_url)
    wait_subscribed(rec, publisher)

    payloads = raw_payloads(300, seed=11)
    # Hold the child while the broker fills its socket: it must then hand them over in batches.
    os.kill(pid, signal.SIGSTOP)
    try:
        publish_burst(publisher, TOPIC, payloads)
    finally:
        os.kill(pid, signal.SIGCONT)
    rec.wait_for(
        lambda: len(rec.payloads_on(TOPIC)) >= len(payloads),
        f"{len(payloads)} messages on {TOPIC}",
    )
    with rec.cond:
        got = rec.payloads_on(TOPIC)
        batches = [b for b in rec.batches if any(t == TOPIC for t, _ in b)]
        threads = set(rec.callback_threads)
    assert len(got) == len(payloads), f"{len(got) - len(payloads)} extra messages"
    pairs = enumerate(zip(got, payloads, strict=True))
    first_bad = next((i for i, (a, b) in pairs if a != b), None)
    assert first_bad is None, f"message {first_bad} differs"
    assert all(type(p) is bytes for p in got)
    if actors.mqtt_client.SUPPORTED:  # the child batches per socket read
        assert len(batches) < len(payloads), "one batch per message"
        assert max(len(b) for b in batches) > 1
    assert threads == {f"mqtt-link-{link._config['client_id']}"}  # callbacks on the reader

    # The link publishes for the parent, live and retained.
    live = mqtt_client(mosquitto_url)
    target = commands_topic(SID)
    live.subscribe(target)
    assert link.publish(target, b"\x00hello\xff", False)
    msg = live.get_on(target, timeout=WAIT_S)
    assert (msg.payload, msg.qos, msg.retain) == (b"\x00hello\xff", 1, False)
    assert link.publish(target, b"kept", True)
    assert live.get_on(target, timeout=WAIT_S).payload == b"kept"
    late = mqtt_client(mosquitto_url)
    late.subscribe(target)
    msg = late.get_on(target, timeout=WAIT_S)
    assert (msg.payload, msg.retain) == (b"kept", True)
    assert rec.pubfails == []
    assert [s.up for s in rec.states] == [True], rec.states

    link.stop()
    assert link._proc is not None
    assert link._proc.returncode == 0, "the child had to be killed"
    assert not exists(pid), f"MQTT child {pid} still running (or unreaped) after stop()"
    assert not [t.name for t in threading.enumerate() if t.name.startswith("mqtt-link-")]
    assert not link.publish(target, b"after stop", False)
    assert link.restarts == 0


# ============================================================================ child killed


def test_killed_child_is_restarted_and_the_session_delivers_what_was_queued(
    mosquitto_url: str,
    mqtt_client: MqttClientFactory,
    make_link: Callable[[str], tuple[MqttLink, LinkRecorder]],
) -> None:
    link, rec = make_link(mosquitto_url)
    rec.wait_for(lambda: bool(rec.ups()), "the link to come up")
    publisher = mqtt_client(mosquitto_url)
    wait_subscribed(rec, publisher)

    before = [b"before-%d" % i for i in range(50)]
    publish_burst(publisher, TOPIC, before)
    rec.wait_for(lambda: len(rec.payloads_on(TOPIC)) >= len(before), "the first 50 messages")

    old_pid = link.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    rec.wait_for(lambda: bool(rec.downs()), "the link to report the child's death")
    down = rec.downs()[0]
    assert (down.up, down.failure) == (False, True)
    assert "exited" in down.detail

    # Publish while no child is there; meanwhile time the restart (it polls for the new pid).
    during = [b"during-%d" % i for i in range(200)] + [b"x" * 70_000]
    published: queue.Queue[int | BaseException] = queue.Queue()

    def publish_during() -> None:
        try:
            publish_burst(publisher, TOPIC, during)
            with rec.cond:
                published.put(len(rec.ups()))
        except BaseException as exc:  # reported on the test thread
            published.put(exc)

    threading.Thread(target=publish_during, name="lk-publish-during", daemon=True).start()
    wait_until(lambda: link.pid != old_pid, "a new child to be started")
    spawned_at = time.monotonic()
    ups_while_publishing = published.get(timeout=WAIT_S)
    assert not isinstance(ups_while_publishing, BaseException), ups_while_publishing
    # Published (and acknowledged by the broker) before any new child subscribed again.
    assert ups_while_publishing == 1, "the new child was up before the publishes were done"

    rec.wait_for(lambda: len(rec.ups()) >= 2, "a new child to connect")
    up = rec.ups()[1]
    assert up.detail == "session present: True", up
    assert spawned_at - down.at >= 0.9, "restarted before the 1 s delay"
    assert link.restarts == 1
    assert link.pid is not None
    assert link.pid != old_pid
    assert alive(link.pid)
    assert not exists(old_pid), f"the killed child {old_pid} was not reaped"

    rec.wait_for(
        lambda: set(during) <= set(rec.payloads_on(TOPIC)),
        "every message queued by the broker while the child was dead",
    )
    with rec.cond:
        got = rec.payloads_on(TOPIC)
    firsts = list(dict.fromkeys(got))  # QoS 1: a redelivery after the kill may repeat one
    assert firsts == before + during, "lost or reordered messages"
    assert got[-1] == during[-1]

    # The new child publishes for the parent too.
    sub = mqtt_client(mosquitto_url)
    sub.subscribe(commands_topic(SID))
    assert link.publish(commands_topic(SID), b"from the new child", False)
    assert sub.get_on(commands_topic(SID), timeout=WAIT_S).payload == b"from the new child"
    assert link.restarts == 1
    assert len(rec.downs()) == 1


# ============================================================================ parent killed

PARENT_SCRIPT = """
import sys, threading
from actors.mqtt_link import MqttLink

up = threading.Event()
link = MqttLink(
    sys.argv[1], int(sys.argv[2]), client_id="lk-orphan", keepalive=10,
    on_messages=lambda batch, latch: None,
    on_state=lambda is_up, detail, failure: up.set() if is_up else None,
    on_publish_failed=lambda topic, error: None,
)
link.start()
print(link.pid, flush=True)
print("up" if up.wait(20) else "not up", flush=True)
threading.Event().wait()
"""


def test_child_exits_when_its_parent_is_killed(mosquitto_url: str) -> None:
    host, port = parse_mqtt_url(mosquitto_url)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, host, str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert parent.stdout is not None
        for line in parent.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, name="lk-parent-stdout", daemon=True).start()
    child = 0
    try:
        child = int(lines.get(timeout=WAIT_S))
        assert lines.get(timeout=WAIT_S) == "up"
        assert alive(child)
        assert child != parent.pid

        parent.kill()
        assert parent.wait(WAIT_S) == -signal.SIGKILL
        wait_until(lambda: not alive(child), f"the orphaned MQTT child {child} to exit", 10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(WAIT_S)
        if child and alive(child):
            os.kill(child, signal.SIGKILL)
