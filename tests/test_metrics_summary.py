"""Metrics: the operators' summary (``/api/v1/metrics/summary``) against the stored sessions,
and the EVSE sample store (MetricsStore) on both databases: time order, downsampling and
coarser passes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import argon2
import falcon.testing
import pytest
from sqlalchemy import text

from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from gateway.auth import LocalAuthenticator
from storage import DuplicateError, EvseSample, Storage
from tests.api_fixtures import PASSWORD

if TYPE_CHECKING:
    from tests.storage_fixtures import FakeClock


pytest_plugins = ("tests.storage_fixtures",)

DAY_MS = 86_400_000
MINUTE_MS = 60_000


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
