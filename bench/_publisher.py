"""The station side of ``bench ingest``: a paho publisher in its own process (its own GIL).

It plays ``stations`` x ``evses`` EVSEs that are charging: per EVSE a status report
(Charging), then meter values with a rising ``seq``, ``ts`` and energy register, every
:data:`STATUS_EVERY`-th round a status report toggling Charging <-> SuspendedEV (both legal,
same session), so the CSMS applies every message and fans every one out. Nothing is retained
(the benchmark controls what each subscriber sees). QoS 1, at most :data:`MAX_IN_FLIGHT`
unacknowledged publishes.

Driven over a :class:`multiprocessing.connection.Connection`: each request is a tuple, each
answer a dict (see :func:`serve`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from protocol import (
    EvseDescriptor,
    EvseId,
    StationBirth,
    StationDescriptor,
    StationId,
    encode,
    meter_topic,
    status_topic,
)

__all__ = ["STATUS_EVERY", "Stream", "serve"]

STATUS_EVERY: Final = 10
MAX_IN_FLIGHT: Final = 1_000
_METER = (
    '{"v":2,"evse_id":"%s","session_id":"%s","power_w":11000.0,"energy_wh":%d.0,'
    '"soc":50.0,"epoch":1,"seq":%d,"ts":%d}'
)
_STATUS = (
    '{"v":2,"epoch":1,"seq":%d,"ts":%d,"evse_id":"%s","status":"%s","soc":50.0,"power_w":11000.0,'
    '"energy_wh":%d.0,"session_id":"%s","session_energy_wh":0.0}'
)


@dataclass
class Stream:
    """Deterministic messages of a charging fleet; ``seq`` keeps rising across calls."""

    stations: int
    evses_per_station: int = 2
    ids: list[tuple[str, str]] = field(default_factory=list)  # (station id, its evse id)
    keys: list[str] = field(default_factory=list)  # the CSMS's ids: station.evse
    topics: list[tuple[str, str]] = field(default_factory=list)  # (status topic, meter topic)
    seq: list[int] = field(default_factory=list)
    suspended: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ids = [
            (f"bs{s:05d}", str(j))
            for s in range(self.stations)
            for j in range(1, self.evses_per_station + 1)
        ]
        self.keys = [f"{sid}.{eid}" for sid, eid in self.ids]
        self.topics = [(status_topic(sid, eid), meter_topic(sid, eid)) for sid, eid in self.ids]
        self.seq = [0] * len(self.ids)
        self.suspended = [False] * len(self.ids)

    @property
    def evses(self) -> int:
        return len(self.ids)

    def births(self) -> list[tuple[str, bytes]]:
        out = []
        for s in range(self.stations):
            sid = StationId(f"bs{s:05d}")
            evses = tuple(
                EvseDescriptor(id=EvseId(str(j))) for j in range(1, self.evses_per_station + 1)
            )
            station = StationDescriptor(id=sid, name=sid, lat=45.0, lon=9.0, evses=evses)
            topic, payload, _ = encode(StationBirth(station=station, ts=_now_ms(), epoch=1))
            out.append((topic, payload))
        return out

    def status(self, i: int, ts: int, status: str = "Charging") -> tuple[str, bytes, int]:
        sid, eid = self.ids[i]
        self.seq[i] += 1
        seq = self.seq[i]
        payload = _STATUS % (seq, ts, eid, status, seq * 10, f"s-{sid}-{eid}")
        return self.topics[i][0], payload.encode(), seq

    def next(self, k: int, ts: int) -> tuple[str, bytes, int, int]:
        """The ``k``-th message of a stream: ``(topic, payload, evse index, seq)``."""
        i = k % len(self.ids)
        if self.seq[i] % STATUS_EVERY == STATUS_EVERY - 1:
            self.suspended[i] = not self.suspended[i]
            status = "SuspendedEV" if self.suspended[i] else "Charging"
            topic, payload, seq = self.status(i, ts, status)
            return topic, payload, i, seq
        sid, eid = self.ids[i]
        self.seq[i] += 1
        seq = self.seq[i]
        payload = (_METER % (eid, f"s-{sid}-{eid}", seq * 10, seq, ts)).encode()
        return self.topics[i][1], payload, i, seq


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Publisher:
    def __init__(self, url: str, stream: Stream) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from protocol.mqtt_settings import parse_mqtt_url

        self.stream = stream
        self.window = threading.Semaphore(MAX_IN_FLIGHT)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-publisher", protocol=mqtt.MQTTv311
        )
        self.client.max_inflight_messages_set(MAX_IN_FLIGHT)
        self.client.on_publish = lambda *_: self.window.release()
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        settings = parse_mqtt_url(url)
        settings.apply_to(self.client)
        self.client.connect(settings.host, settings.port, keepalive=30)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("publisher could not connect")

    def _send(self, topic: str, payload: bytes) -> None:
        self.window.acquire()
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != 0:
            raise RuntimeError(f"publish failed: rc {info.rc}")

    def _settle(self) -> int:
        """Wait until the broker acknowledged everything; the time it did, ns."""
        for _ in range(MAX_IN_FLIGHT):
            self.window.acquire()
        for _ in range(MAX_IN_FLIGHT):
            self.window.release()
        return time.time_ns()

    def hello(self) -> dict[str, Any]:
        """Births of every station, then a Charging status per EVSE."""
        count = 0
        for topic, payload in self.stream.births():
            self._send(topic, payload)
            count += 1
        for i in range(self.stream.evses):
            self.stream.suspended[i] = False
            topic, payload, _ = self.stream.status(i, _now_ms())
            self._send(topic, payload)
            count += 1
        return {"count": count, "acked_ns": self._settle(), "last_seq": list(self.stream.seq)}

    def run(self, n: int, rate: float, record: bool) -> dict[str, Any]:
        """Publish ``n`` messages (at ``rate``/s, or as fast as acks allow when 0)."""
        times: list[int] = []
        keys: list[tuple[int, int]] = []
        start = time.time_ns()
        period_ns = int(1e9 / rate) if rate > 0 else 0
        for k in range(n):
            if period_ns:
                due = start + k * period_ns
                ahead = due - time.time_ns()
                if ahead > 200_000:
                    time.sleep(ahead / 1e9)
            now = time.time_ns()
            topic, payload, i, seq = self.stream.next(k, now // 1_000_000)
            if record:
                times.append(now)
                keys.append((i, seq))
            self._send(topic, payload)
        end = time.time_ns()
        return {
            "count": n,
            "start_ns": start,
            "end_ns": end,
            "acked_ns": self._settle(),
            "times": times,
            "keys": keys,
            "last_seq": list(self.stream.seq),
        }

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def serve(conn: Connection, url: str, stations: int, evses_per_station: int) -> None:
    """Child process entry: answers ``("hello",)`` and ``("run", n, rate, record)``."""
    publisher = _Publisher(url, Stream(stations, evses_per_station))
    conn.send({"ready": True})
    try:
        while True:
            request = conn.recv()
            if request[0] == "hello":
                conn.send(publisher.hello())
            elif request[0] == "run":
                conn.send(publisher.run(int(request[1]), float(request[2]), bool(request[3])))
            else:
                break
    finally:
        publisher.close()
        conn.close()
