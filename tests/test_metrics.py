"""Metrics: Prometheus ``/metrics`` on a running fleet, the operators' summary against the stored
sessions, the EVSE sample store on both databases, and the recorder's batching."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import argon2
import falcon.testing
import pykka
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from actors.bridge import BridgeStats
from actors.evse_state import EvseState
from actors.fleet_view import FleetView
from actors.listeners import ListenerHost, Tick
from actors.live import LiveHub
from actors.messages import EvseChanged
from actors.metrics import CsmsMetrics
from actors.metrics_recorder import (
    MetricsRecorder,
    SampleRetention,
)
from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from gateway.auth import LocalAuthenticator
from protocol import CommandName, EvseDescriptor, EvseId, EvseStatus, StationId
from storage import DuplicateError, EvseSample, Storage
from tests import api_fixtures
from tests.api_fixtures import EVSE_IDS, PASSWORD, Running

if TYPE_CHECKING:
    from tests.storage_fixtures import FakeClock

pytest_plugins = ("tests.storage_fixtures",)
running = api_fixtures.running

DAY_MS = 86_400_000
MINUTE_MS = 60_000


def scrape(
    client: falcon.testing.TestClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` over plain HTTP without a token, as ``{(sample name, labels): value}``."""
    result = client.simulate_get("/metrics", protocol="http")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(result.text)
        for sample in family.samples
    }


# -- /metrics on a running fleet ---------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_metrics_move_when_a_driver_starts_charging(running: Running) -> None:
    evse = EVSE_IDS[0]
    # Each EVSE actor tells the supervisor before the watcher, so once an ask to the
    # supervisor returns, the FleetView shows what the watcher saw.
    running.system.evse_ref(evse)
    before = scrape(running.client)
    assert before[("smartcharge_evses", (("status", "Available"),))] == len(EVSE_IDS)
    assert before[("smartcharge_evses", (("status", "Charging"),))] == 0

    token, _ = running.driver("alice@example.com")
    started = running.call("POST", f"/api/v1/evses/{evse}/start", token)
    assert started.status_code == 201, started.json
    running.watcher.wait_for(running.watcher.status_is(evse, "Charging"), "Charging")
    running.system.evse_ref(evse)

    after = scrape(running.client)
    start = (("command", "start"),)
    assert (
        after[("smartcharge_mqtt_messages_received_total", ())]
        > before[("smartcharge_mqtt_messages_received_total", ())]
    )
    assert after[("smartcharge_mqtt_messages_sent_total", ())] >= 1
    assert after[("smartcharge_command_round_trip_seconds_count", start)] == 1
    assert after[("smartcharge_command_round_trip_seconds_sum", start)] > 0
    assert after[("smartcharge_evses", (("status", "Charging"),))] == 1
    assert after[("smartcharge_sessions_active", ())] == 1
    assert after[("smartcharge_actor_restarts_total", ())] == 0
    assert after[("smartcharge_mqtt_messages_malformed_total", ())] == 0


def test_metrics_count_timeouts_and_open_streams_per_system() -> None:
    first, second = CsmsSystem(CsmsConfig()), CsmsSystem(CsmsConfig())
    first.metrics.observe_command(CommandName.STOP, None)
    first.metrics.observe_command(CommandName.INFO, 0.2)
    first.hub.subscribe(lambda event: True)

    ours = scrape(falcon.testing.TestClient(create_app(first)))
    theirs = scrape(falcon.testing.TestClient(create_app(second)))

    assert ours[("smartcharge_command_timeouts_total", (("command", "stop"),))] == 1
    assert ours[("smartcharge_command_round_trip_seconds_count", (("command", "info"),))] == 1
    assert ours[("smartcharge_sse_streams", ())] == 1
    assert ("smartcharge_command_timeouts_total", (("command", "stop"),)) not in theirs
    assert theirs[("smartcharge_sse_streams", ())] == 0


# -- /api/v1/metrics/summary -------------------------------------------------------------------


def summary_app(store: Storage) -> tuple[falcon.testing.TestClient, dict[str, str]]:
    """The gateway over ``store`` (a CSMS that is not started), with a token per role."""
    system = CsmsSystem(CsmsConfig(storage=store))
    auth = LocalAuthenticator(
        store.users,
        store.refresh_tokens,
        secret=b"s" * 32,
        duplicate_error=DuplicateError,
        hasher=argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    auth.create_user("ops@example.com", PASSWORD, "operator")
    tokens = {
        "driver": auth.register("driver@example.com", PASSWORD).access_token,
        "operator": auth.login("ops@example.com", PASSWORD).access_token,
    }
    app = create_app(system, auth=auth, storage=store)
    return falcon.testing.TestClient(app), tokens


def record_sessions(store: Storage, now: int) -> None:
    """Sessions today, yesterday, a week ago, 40 days ago (outside), and one still open."""
    layout = [
        ("s-today", "ap-001.1", "ap-001", now - 2 * 3600_000, 45 * MINUTE_MS, 7_000.0),
        ("s-today-2", "ap-001.2", "ap-001", now - 30 * MINUTE_MS, 20 * MINUTE_MS, 1_500.0),
        ("s-yesterday", "ap-002.1", "ap-002", now - DAY_MS - 3600_000, 90 * MINUTE_MS, 12_000.0),
        ("s-week", "ap-002.1", "ap-002", now - 7 * DAY_MS, 60 * MINUTE_MS, 9_000.0),
        ("s-old", "ap-001.1", "ap-001", now - 40 * DAY_MS, 60 * MINUTE_MS, 50_000.0),
    ]
    for sid, evse, station, started, duration, energy in layout:
        store.sessions.open(sid, evse_id=evse, station_id=station, started_at=started)
        store.sessions.close(sid, ended_at=started + duration, energy_wh=energy, end_reason="Local")
    store.sessions.open(
        "s-open", evse_id="ap-002.2", station_id="ap-002", started_at=now - 3 * 3600_000
    )
    store.sessions.update_progress("s-open", 4_000.0, 11_000.0)


def test_the_summary_matches_the_stored_sessions(store: Storage, clock: FakeClock) -> None:
    clock.advance(15 * 3600_000)  # 15:00 UTC, so "today" holds sessions
    now = clock()
    record_sessions(store, now)
    client, tokens = summary_app(store)

    result = client.simulate_get(
        "/api/v1/metrics/summary",
        headers={"Authorization": f"Bearer {tokens['operator']}"},
        protocol="https",
    )
    assert result.status_code == 200, result.json
    body = result.json

    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(text("SELECT * FROM sessions")).mappings()]

    def day(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()

    first_day = day(now - 29 * DAY_MS)
    recent = [r for r in rows if first_day <= day(r["started_at"]) <= day(now)]
    today = [r for r in recent if day(r["started_at"]) == day(now)]
    assert body["energy_today_wh"] == pytest.approx(sum(r["energy_wh"] for r in today))
    assert body["sessions_today"] == len(today) == 3
    assert len(body["energy_by_day"]) == 30
    assert body["energy_by_day"][0]["day"] == first_day
    assert body["energy_by_day"][-1]["day"] == day(now)
    by_day = {d["day"]: (d["energy_wh"], d["sessions"]) for d in body["energy_by_day"]}
    for r in recent:
        energy = sum(x["energy_wh"] for x in recent if day(x["started_at"]) == day(r["started_at"]))
        count = sum(1 for x in recent if day(x["started_at"]) == day(r["started_at"]))
        assert by_day[day(r["started_at"])] == (pytest.approx(energy), count)
    assert sum(n for _, n in by_day.values()) == len(recent) == 5
    stations = {s["station_id"]: (s["energy_wh"], s["sessions"]) for s in body["energy_by_station"]}
    for station in {r["station_id"] for r in recent}:
        mine = [r for r in recent if r["station_id"] == station]
        assert stations[station] == (pytest.approx(sum(r["energy_wh"] for r in mine)), len(mine))
    ended = [r["ended_at"] - r["started_at"] for r in recent if r["ended_at"] is not None]
    assert body["average_duration_s"] == pytest.approx(sum(ended) / len(ended) / 1000, abs=0.1)
    busy = {u["evse_id"]: u["percent"] for u in body["utilisation"]}
    assert busy == pytest.approx(
        {
            "ap-001.1": 100 * 45 / 1440,
            "ap-001.2": 100 * 20 / 1440,
            "ap-002.1": 100 * 30 / 1440,  # ran from 25 h to 23.5 h ago: 30 min in the window
            "ap-002.2": 100 * 180 / 1440,  # still open: three hours so far
        },
        abs=0.01,
    )
    assert body["window"] == {
        "now": now,
        "days": 30,
        "days_from": now - now % DAY_MS - 29 * DAY_MS,
        "utilisation_from": now - DAY_MS,
    }


def test_the_summary_is_for_operators_only(store: Storage) -> None:
    client, tokens = summary_app(store)
    driver = client.simulate_get(
        "/api/v1/metrics/summary",
        headers={"Authorization": f"Bearer {tokens['driver']}"},
        protocol="https",
    )
    anonymous = client.simulate_get("/api/v1/metrics/summary", protocol="https")
    assert driver.status_code == 403
    assert anonymous.status_code == 401


# -- MetricsStore on SQLite and PostgreSQL -----------------------------------------------------


def samples(evse_id: str, start: int, every_ms: int, count: int) -> list[EvseSample]:
    return [
        EvseSample(
            evse_id=evse_id,
            ts=start + i * every_ms,
            power_w=1000.0 * (i + 1),
            energy_wh=100.0 * i,
            soc=None if i % 2 else 20.0 + i,
        )
        for i in range(count)
    ]


def test_samples_come_back_in_time_order_within_the_range(store: Storage, clock: FakeClock) -> None:
    start = clock()
    written = [*samples("e-1", start, 10_000, 6), *samples("e-2", start, 10_000, 3)]
    assert store.metrics.add_many(reversed(written)) == 9

    series = store.metrics.series("e-1", since=start + 10_000, until=start + 50_000)

    assert [s.ts for s in series] == [start + 10_000 * i for i in range(1, 5)]
    assert series == written[1:5]
    assert store.metrics.add_many([]) == 0


def test_downsampling_keeps_one_sample_per_bucket_and_evse(
    store: Storage, clock: FakeClock
) -> None:
    bucket = 5 * MINUTE_MS
    start = clock()  # midnight: a bucket boundary
    store.metrics.add_many(
        [*samples("e-1", start, MINUTE_MS, 10), *samples("e-2", start, 2 * MINUTE_MS, 3)]
    )
    recent = samples("e-1", start + 30 * MINUTE_MS, MINUTE_MS, 2)
    store.metrics.add_many(recent)

    removed = store.metrics.downsample(older_than_ms=start + 12 * MINUTE_MS, bucket_ms=bucket)

    assert removed == 13
    e1 = store.metrics.series("e-1", since=start, until=start + DAY_MS)
    assert e1 == [
        EvseSample(  # minutes 0-4: power 1..5 kW, energy 0..400, soc 20, -, 22, -, 24
            evse_id="e-1", ts=start, power_w=3000.0, energy_wh=400.0, soc=24.0, samples=5
        ),
        EvseSample(  # minutes 5-9: power 6..10 kW, energy 500..900, soc -, 26, -, 28, -
            evse_id="e-1", ts=start + bucket, power_w=8000.0, energy_wh=900.0, soc=28.0, samples=5
        ),
        *recent,
    ]
    e2 = store.metrics.series("e-2", since=start, until=start + DAY_MS)
    assert [(s.ts, s.samples, s.power_w) for s in e2] == [(start, 3, 2000.0)]
    assert store.metrics.downsample(older_than_ms=start + 12 * MINUTE_MS, bucket_ms=bucket) == 0
    assert store.metrics.series("e-1", since=start, until=start + DAY_MS) == e1


def test_a_coarser_pass_weights_each_bucket_by_its_samples(
    store: Storage, clock: FakeClock
) -> None:
    start = clock()
    store.metrics.add_many([*samples("e-1", start, MINUTE_MS, 6)])
    store.metrics.downsample(older_than_ms=start + 5 * MINUTE_MS, bucket_ms=5 * MINUTE_MS)
    store.metrics.downsample(older_than_ms=start + 60 * MINUTE_MS, bucket_ms=60 * MINUTE_MS)

    (hour,) = store.metrics.series("e-1", since=start, until=start + DAY_MS)

    assert (hour.samples, hour.power_w, hour.energy_wh) == (6, 3500.0, 500.0)


# -- MetricsRecorder -----------------------------------------------------------------------------


class CountingStore:
    """A fake MetricsStore: counts ``add_many`` calls (each one ``insert_many``)."""

    def __init__(self) -> None:
        self.batches: list[list[EvseSample]] = []
        self.downsampled: list[tuple[int, int]] = []

    def add_many(self, samples: Iterable[EvseSample]) -> int:
        self.batches.append(list(samples))
        return len(self.batches[-1])

    def downsample(self, older_than_ms: int, bucket_ms: int) -> int:
        self.downsampled.append((older_than_ms, bucket_ms))
        return 0


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def changed(evse_id: str, power_w: float) -> EvseChanged:
    state = EvseState(
        station_id=StationId("st"),
        descriptor=EvseDescriptor(id=EvseId(evse_id)),
        status=EvseStatus.CHARGING,
        power_w=power_w,
        energy_wh=power_w / 10,
        soc=50.0,
    )
    return EvseChanged(state=state, effects=())


def test_the_recorder_writes_a_second_of_samples_in_one_insert_many() -> None:
    store, monotonic = CountingStore(), FakeMonotonic()
    recorder = MetricsRecorder(store, clock_ms=lambda: 1_000, monotonic=monotonic)

    for i in range(300):
        recorder.evse_changed(changed(f"e-{i % 7}", float(i)))
    assert store.batches == []
    monotonic.now += 1.0
    recorder.evse_changed(changed("e-0", 300.0))

    assert len(store.batches) == 1
    assert [s.power_w for s in store.batches[0]] == [float(i) for i in range(301)]
    assert store.batches[0][0] == EvseSample(
        evse_id="st.e-0", ts=1_000, power_w=0.0, energy_wh=0.0, soc=50.0
    )


def test_the_recorder_writes_early_when_the_batch_is_full() -> None:
    store = CountingStore()
    recorder = MetricsRecorder(store, max_batch=500, monotonic=FakeMonotonic())

    for i in range(1_200):
        recorder.evse_changed(changed("e-1", float(i)))

    assert [len(batch) for batch in store.batches] == [500, 500]


class FailingOnceStore(CountingStore):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def add_many(self, samples: Iterable[EvseSample]) -> int:
        if not self.failed:
            self.failed = True
            raise RuntimeError("database down")
        return super().add_many(samples)


def test_the_recorder_keeps_a_failed_batch_for_the_next_write() -> None:
    store = FailingOnceStore()
    recorder = MetricsRecorder(store, monotonic=FakeMonotonic())
    recorder.evse_changed(changed("e-1", 1.0))
    recorder.flush()
    recorder.evse_changed(changed("e-1", 2.0))
    recorder.flush()

    assert [[s.power_w for s in batch] for batch in store.batches] == [[1.0, 2.0]]


def test_the_recorder_downsamples_on_its_timer_with_the_configured_retention() -> None:
    store, monotonic = CountingStore(), FakeMonotonic()
    retention = SampleRetention(raw_s=3600, bucket_s=60, downsample_every_s=300)
    recorder = MetricsRecorder(
        store, retention=retention, clock_ms=lambda: 10_000_000, monotonic=monotonic
    )

    recorder.tick()
    monotonic.now += 299
    recorder.tick()
    monotonic.now += 1
    recorder.tick()

    assert store.downsampled == [(10_000_000 - 3_600_000, 60_000)] * 2


def test_the_recorder_subscriber_writes_on_a_tick_and_what_is_left_when_it_stops() -> None:
    store, monotonic = CountingStore(), FakeMonotonic()
    recorder = MetricsRecorder(store, monotonic=monotonic)
    subscriber = ListenerHost.start([recorder])
    try:
        subscriber.tell(changed("e-1", 1.0))
        monotonic.now += 1.0
        subscriber.ask(Tick(), timeout=5)
        assert [len(b) for b in store.batches] == [1]
        subscriber.tell(changed("e-1", 2.0))
    finally:
        subscriber.stop(timeout=5)
        pykka.ActorRegistry.stop_all()

    assert [len(b) for b in store.batches] == [1, 1]


def test_a_system_scrape_without_a_fleet_lists_every_status_at_zero() -> None:
    metrics = CsmsMetrics(view=FleetView(), bridge=BridgeStats(), hub=LiveHub())
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    statuses = {s.labels["status"]: s.value for s in families["smartcharge_evses"].samples}
    assert statuses == {str(status): 0 for status in EvseStatus}
