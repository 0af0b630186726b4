"""``python -m bench ingest``: station messages through Mosquitto into an in-process CSMS.

A private Mosquitto (the production config of :class:`gateway.broker.EmbeddedBroker`), a
publisher in its own process (:mod:`bench._publisher`: S stations x 2 EVSEs charging, meter
values plus a status report every 10th round, QoS 1, nothing retained) and, in this process,
either a bare paho subscriber (the baseline) or a :class:`actors.system.CsmsSystem` without
storage, in its production configuration (its MQTT client in a child process, whose CPU is
counted with this process's in ``cpu_s_per_1k``), whose only extra listener
(:class:`Probe`, on its own subscriber actor) counts a message as processed when the EVSE
actor's change reaches it. Every message must be applied:
the CSMS's count of distinct accepted ``seq`` values must equal what was published, and the
:class:`FleetView` (written by the EVSE actors) must end at each EVSE's last ``seq``.

Four figures, each against the bare subscriber on the same broker in the same run:

- **keep-up** (the headline): ``n`` messages published as fast as the acks allow; messages/s
  = n / (last processed - first published), with the publish-to-processed lag p99;
- **drain**: both subscribers' persistent sessions are disconnected while the stations
  publish births, a status per EVSE and a backlog; then each connects (for the CSMS: a fresh
  :class:`CsmsSystem`, as after a restart) and the drain is timed to the last message;
- **keep-up with storage**: the keep-up again, with a CSMS on SQLite (every production
  listener: sessions, the state recorder, metrics); then every EVSE's last ``seq`` must be in
  the database (``persisted_after_s``: how long after the last message that took);
- **latency** at a steady 2,000 msg/s: publish time (``time.time_ns`` in the publisher; the
  payload's ``ts`` field carries the same instant in ms) to the time the listener sees the
  EVSE's new state; p50/p99. ``ts_p99`` is the same from the ms ``ts`` field (up to 1 ms high).

And, for the design's price, ``shape``: the latency run again on
:class:`bench._inline_shape.InlineCsms`, the same ingest path with every EVSE's step on the
link's reader thread instead of an actor per EVSE (``actor_per_evse_cpu_ratio``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from actors.listeners import EvseListener
from actors.messages import EvseChanged
from actors.system import CsmsConfig, CsmsSystem
from bench._ingest_parts import (
    BareSubscriber,
    PublisherProcess,
    cpu_s,
    lat_summary,
    link_cpu_s,
    per_message_us,
    thread_cpu_s,
)
from bench._inline_shape import InlineCsms
from bench._publisher import Stream
from bench._support import loadavg, mosquitto, wait_for
from bench.common import BenchmarkError, Options, Result, benchmark, percentile
from protocol import MeterValues, StatusReport, parse
from storage import open_storage

__all__ = ["Probe", "run"]

NAME: Final = "ingest"
KEEP_UP_TARGET: Final = 0.8
DRAIN_TARGET: Final = 0.75
LATENCY_TARGET_MS: Final = 5.0
STEADY_RATE: Final = 2_000.0

log = logging.getLogger(__name__)


class Probe(EvseListener):
    """Counts applied messages (a new, higher ``seq`` per EVSE) on its subscriber's thread."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.applied = 0
        self.recording = False
        self.times: dict[tuple[str, int], int] = {}
        self.ts_lag_ms: list[float] = []

    def evse_changed(self, event: EvseChanged) -> None:
        state = event.state
        if state.seq > self.last.get(state.evse_id, 0):
            now = time.time_ns()
            self.last[state.evse_id] = state.seq
            self.applied += 1
            if self.recording:
                self.times[(state.evse_id, state.seq)] = now
                self.ts_lag_ms.append(now / 1e6 - state.ts)


def _bare_run(
    bare: BareSubscriber, pub: PublisherProcess, n: int, rate: float, timeout: float
) -> dict[str, Any]:
    bare.count, bare.times, bare.recording = 0, [], True
    cpu0 = cpu_s()
    sent = pub.call("run", n, rate, True)
    wait_for(lambda: bare.count >= n, f"{n} messages at the bare subscriber", timeout)
    cpu = cpu_s() - cpu0
    bare.recording = False
    if bare.count != n:
        raise BenchmarkError(f"bare subscriber got {bare.count} messages, {n} were published")
    lags = [r - p for r, p in zip(bare.times, sent["times"], strict=True)]
    elapsed_s = (bare.times[-1] - sent["start_ns"]) / 1e9
    return {
        "rate": round(n / elapsed_s, 1),
        "publisher_rate": round(n / ((sent["end_ns"] - sent["start_ns"]) / 1e9), 1),
        "lag": lat_summary(lags),
        "cpu_s_per_1k": round(cpu / n * 1000, 4),
    }


def _csms_run(
    system: CsmsSystem | InlineCsms,
    probe: Probe,
    stream: Stream,
    pub: PublisherProcess,
    n: int,
    rate: float,
    timeout: float,
) -> dict[str, Any]:
    probe.times, probe.ts_lag_ms, probe.recording = {}, [], True
    target = probe.applied + n
    cpu0, link0, threads0 = cpu_s(), link_cpu_s(), thread_cpu_s()
    sent = pub.call("run", n, rate, True)
    wait_for(lambda: probe.applied >= target, f"{n} messages applied by the CSMS", timeout)
    done_ns = max(probe.times.values())
    link_cpu = link_cpu_s() - link0
    by_thread = per_message_us(threads0, thread_cpu_s(), n)
    cpu = cpu_s() - cpu0 + link_cpu
    probe.recording = False
    if probe.applied != target:
        raise BenchmarkError(f"the CSMS applied {probe.applied - target + n} of {n} messages")
    lags = [
        probe.times[(stream.keys[i], seq)] - t
        for (i, seq), t in zip(sent["keys"], sent["times"], strict=True)
    ]
    _check_view(system, stream, sent["last_seq"])
    stream.seq = list(sent["last_seq"])
    return {
        "rate": round(n / ((done_ns - sent["start_ns"]) / 1e9), 1),
        "publisher_rate": round(n / ((sent["end_ns"] - sent["start_ns"]) / 1e9), 1),
        "lag": lat_summary(lags),
        "ts_p99": round(percentile(probe.ts_lag_ms, 99), 3),
        "cpu_s_per_1k": round(cpu / n * 1000, 4),
        "mqtt_process_cpu_s_per_1k": round(link_cpu / n * 1000, 4),
        "cpu_us_per_msg_by_thread": by_thread,
    }


def _inline_run(url: str, pub: PublisherProcess, stream: Stream, n: int) -> dict[str, Any]:
    """The latency run again on :class:`InlineCsms` (no actor per EVSE), same broker."""
    probe = Probe()
    inline = InlineCsms(url, probe)
    try:
        if not inline.connected.wait(10):
            raise BenchmarkError("the inline shape did not connect to the broker")
        time.sleep(0.2)  # the SUBACK
        hello = pub.call("hello")
        wait_for(lambda: probe.applied >= stream.evses, "hello at the inline shape", 30)
        stream.seq = list(hello["last_seq"])
        return _csms_run(inline, probe, stream, pub, n, STEADY_RATE, n / 200 + 60)
    finally:
        inline.stop()


def _check_stored(store: Any, stream: Stream, last_seq: list[int]) -> float:
    """Wait until storage holds every EVSE's last ``seq``; seconds it took."""
    want = {eid: seq for eid, seq in zip(stream.keys, last_seq, strict=True)}
    t0 = time.perf_counter()

    def stored() -> bool:
        rows = {row.evse_id: row.state.get("seq") for row in store.evse_states.all()}
        return all(rows.get(eid) == seq for eid, seq in want.items())

    wait_for(stored, "storage to hold every EVSE's last seq", 30)
    return time.perf_counter() - t0


def _check_view(system: CsmsSystem | InlineCsms, stream: Stream, last_seq: list[int]) -> None:
    def settled() -> bool:
        for eid, seq in zip(stream.keys, last_seq, strict=True):
            view = system.view.evse(eid)
            if view is None or view.state.seq != seq:
                return False
        return True

    wait_for(settled, "the FleetView to reach every EVSE's last seq", 30)


def _start_csms(
    url: str, probe: Probe, storage: Any = None, client_id: str = "bench-csms"
) -> CsmsSystem:
    config = CsmsConfig(mqtt_url=url, client_id=client_id, listeners=(probe,), storage=storage)
    system = CsmsSystem(config).start(wait_connected_s=10)
    if not system.mqtt_connected.is_set():
        system.stop()
        raise BenchmarkError("the CSMS did not connect to the broker")
    time.sleep(0.2)  # the SUBACK
    return system


def _self_check(stream: Stream) -> None:
    """The publisher's templates must parse into what the CSMS expects."""
    probe = Stream(1)
    topic, payload, _ = probe.status(0, 1)
    if not isinstance(parse(topic, payload), StatusReport):
        raise BenchmarkError("the status template does not parse")
    topic, payload, _, _ = probe.next(0, 2)
    if not isinstance(parse(topic, payload), MeterValues):
        raise BenchmarkError("the meter template does not parse")
    del stream


@benchmark(NAME, "MQTT ingest into the CSMS vs a bare paho subscriber: msg/s, drain, p99 lag")
def run(options: Options) -> Result:
    stations = 100
    n_keep = 10_000 if options.quick else 60_000
    n_drain = 10_000 if options.quick else 50_000
    n_lat = int(STEADY_RATE * (3 if options.quick else 15))
    stream = Stream(stations)  # mirrors the publisher's (same ids, same seqs)
    _self_check(stream)
    load: dict[str, list[float]] = {"start": loadavg()}
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        mosquitto(Path(tmp) / "broker") as broker,
    ):
        url = broker.url
        pub = PublisherProcess(url, stations)
        system: CsmsSystem | None = None
        try:
            # ---- baseline: the bare subscriber, keep-up then steady latency
            bare = BareSubscriber(url, "bench-bare", persistent=False)
            bare.connect()
            hello = pub.call("hello")
            wait_for(lambda: bare.count >= hello["count"], "hello at the bare subscriber", 30)
            bare_keep = _bare_run(bare, pub, n_keep, 0, n_keep / 500 + 30)
            bare_lat = _bare_run(bare, pub, n_lat, STEADY_RATE, n_lat / 500 + 30)
            bare.disconnect()
            load["baseline_done"] = loadavg()

            # ---- the CSMS: keep-up then steady latency
            probe = Probe()
            system = _start_csms(url, probe)
            before = probe.applied
            hello = pub.call("hello")
            evses = stream.evses
            wait_for(lambda: probe.applied >= before + evses, "hello at the CSMS", 30)
            stream.seq = list(hello["last_seq"])
            csms_keep = _csms_run(system, probe, stream, pub, n_keep, 0, n_keep / 200 + 60)
            csms_lat = _csms_run(system, probe, stream, pub, n_lat, STEADY_RATE, n_lat / 200 + 60)
            load["csms_done"] = loadavg()

            # ---- drain: both persistent sessions away while the backlog is published
            drainer = BareSubscriber(url, "bench-bare-drain", persistent=True)
            drainer.connect()
            drainer.disconnect()
            system.stop()
            system = None
            hello = pub.call("hello")
            backlog = pub.call("run", n_drain, 0, False)
            stream.seq = list(backlog["last_seq"])
            total = hello["count"] + n_drain
            drainer.count = 0
            t0 = time.perf_counter_ns()
            drainer.connect()
            wait_for(lambda: drainer.count >= total, "the bare drain", total / 500 + 30)
            bare_drain_s = (time.perf_counter_ns() - t0) / 1e9
            drainer.disconnect()
            if drainer.count != total:
                raise BenchmarkError(f"bare drain got {drainer.count} of {total}")
            applied_target = probe.applied + evses + n_drain
            t0 = time.perf_counter_ns()
            system = _start_csms(url, probe)
            wait_for(
                lambda: probe.applied >= applied_target,
                "the CSMS drain",
                total / 200 + 60,
            )
            csms_drain_s = (time.perf_counter_ns() - t0) / 1e9
            _check_view(system, stream, stream.seq)
            load["drain_done"] = loadavg()
            system.stop()
            system = None
            # ---- the other shape, same steady rate: EVSE steps on the reader thread
            inline = _inline_run(url, pub, stream, n_lat)
            # ---- the CSMS with storage (SQLite, WAL): the same keep-up, then every EVSE's
            # last state must reach the database (the state recorder coalesces, <= 0.5 s)
            store = open_storage(None, data_dir=Path(tmp) / "db")
            try:
                system = _start_csms(url, probe, store, client_id="bench-csms-db")
                before = probe.applied
                hello = pub.call("hello")
                wait_for(lambda: probe.applied >= before + evses, "hello at the CSMS (db)", 30)
                stream.seq = list(hello["last_seq"])
                csms_db = _csms_run(system, probe, stream, pub, n_keep, 0, n_keep / 200 + 60)
                csms_db["persisted_after_s"] = round(_check_stored(store, stream, stream.seq), 3)
                system.stop()
                system = None
            finally:
                store.close()
            load["storage_done"] = loadavg()
        finally:
            if system is not None:
                system.stop()
            pub.close()

    keep_ratio = round(csms_keep["rate"] / bare_keep["rate"], 3)
    storage_ratio = round(csms_db["rate"] / bare_keep["rate"], 3)
    bare_drain_rate = round(total / bare_drain_s, 1)
    csms_drain_rate = round(total / csms_drain_s, 1)
    drain_ratio = round(csms_drain_rate / bare_drain_rate, 3)
    p99 = csms_lat["lag"]["p99"]
    met = {
        "keep_up": keep_ratio >= KEEP_UP_TARGET,
        "drain": drain_ratio >= DRAIN_TARGET,
        "latency": p99 <= LATENCY_TARGET_MS,
    }
    return {
        "name": NAME,
        "figure": csms_keep["rate"],
        "unit": "msg/s",
        "better": "higher",
        "baseline": bare_keep["rate"],
        "ratio": keep_ratio,
        "target": KEEP_UP_TARGET,
        "target_of": "ratio",
        "met": all(met.values()),
        "met_by_target": met,
        "p50": csms_lat["lag"]["p50"],
        "p99": p99,
        "latency": {
            "rate": STEADY_RATE,
            "messages": n_lat,
            "csms": csms_lat,
            "baseline": bare_lat,
            "target_ms": LATENCY_TARGET_MS,
        },
        "keep_up": {"messages": n_keep, "csms": csms_keep, "baseline": bare_keep},
        "shape": {
            "what": "the latency run without an actor per EVSE (bench/_inline_shape.py)",
            "inline": inline,
            "actor_per_evse_cpu_ratio": round(csms_lat["cpu_s_per_1k"] / inline["cpu_s_per_1k"], 3),
        },
        "keep_up_storage": {
            "messages": n_keep,
            "csms": csms_db,
            "ratio": storage_ratio,
            "storage": "SQLite (WAL), every listener of the production CSMS",
        },
        "drain": {
            "messages": total,
            "figure": csms_drain_rate,
            "baseline": bare_drain_rate,
            "ratio": drain_ratio,
            "target": DRAIN_TARGET,
            "csms_s": round(csms_drain_s, 3),
            "baseline_s": round(bare_drain_s, 3),
        },
        "stations": stations,
        "evses": stream.evses,
        "storage": "keep_up, drain and latency without; keep_up_storage with SQLite",
        "loadavg": load,
        "quick": options.quick,
    }
