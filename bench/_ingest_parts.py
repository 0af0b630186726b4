"""The parts of ``python -m bench ingest`` that are not the CSMS: the baseline subscriber, the
publisher process, and how CPU and lag are counted (:mod:`bench.ingest`)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from actors.bridge import SUBSCRIPTIONS
from actors.mqtt_link import CHILD_MODULE
from bench._publisher import serve
from bench.common import BenchmarkError, ms, percentile
from protocol.mqtt_settings import parse_mqtt_url

__all__ = ["BareSubscriber", "PublisherProcess", "cpu_s", "lat_summary", "link_cpu_s"]


class BareSubscriber:
    """The baseline: paho's callback counts (and timestamps) messages, nothing else."""

    def __init__(self, url: str, client_id: str, *, persistent: bool) -> None:
        self.count = 0
        self.times: list[int] = []
        self.recording = False
        self.connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        self.client.max_queued_messages_set(60_000)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        settings = parse_mqtt_url(url)
        settings.apply_to(self.client)
        self.host, self.port = settings.host, settings.port

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(topic, 1) for topic in SUBSCRIPTIONS])
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.count += 1
        if self.recording:
            self.times.append(time.time_ns())

    def connect(self) -> None:
        self.connected.clear()
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise BenchmarkError("the bare subscriber could not connect")
        time.sleep(0.2)  # the SUBACK

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PublisherProcess:
    def __init__(self, url: str, stations: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, url, stations, 2), daemon=True)
        self.proc.start()
        if not self.conn.poll(30) or not self.conn.recv().get("ready"):
            raise BenchmarkError("the publisher process did not start")

    def call(self, *request: Any) -> dict[str, Any]:
        self.conn.send(request)
        answer: dict[str, Any] = self.conn.recv()
        return answer

    def close(self) -> None:
        self.conn.send(("bye",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def link_cpu_s() -> float:
    """CPU seconds of this process's MQTT link children (the CSMS's MQTT client process)."""
    total, me, tck = 0.0, os.getpid(), os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != me:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if CHILD_MODULE.encode() not in f.read():
                    continue
            total += (int(fields[11]) + int(fields[12])) / tck
        except (OSError, IndexError, ValueError):
            continue
    return total


def lat_summary(lags_ns: list[int]) -> dict[str, float]:
    return {
        "p50": ms(percentile(lags_ns, 50)),
        "p99": ms(percentile(lags_ns, 99)),
        "max": ms(max(lags_ns)),
    }


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of this process's threads, summed by kind (thread name without its number:
    every ``EvseActor-N`` together). From ``schedstat`` (nanoseconds) where the kernel has it:
    ``stat`` counts whole clock ticks per thread, which 200 EVSE threads each busy for less
    than a tick round down to nothing."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tck = os.sysconf("SC_CLK_TCK")
    kinds: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as f:
                spent = int(f.read().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            try:
                with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            spent = (int(fields[11]) + int(fields[12])) / tck
        name = names.get(int(tid), "other")
        kind = name.rstrip("0123456789").rstrip("-_ ") or name
        kinds[kind] = kinds.get(kind, 0.0) + spent
    return kinds


def per_message_us(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Microseconds of CPU per message by thread kind, largest first (those above 0.5 us)."""
    spent = {k: (v - before.get(k, 0.0)) * 1e6 / n for k, v in after.items()}
    return {k: round(v, 1) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0.5}
